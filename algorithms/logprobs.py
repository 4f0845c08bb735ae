"""Log-probabilities of the trained ids of a micro-batch, as TRL computes them for its loss.

Rows are whole trajectories (prompt, env replies, completions) left-padded to one width; the
loss needs the log-probability of each trained id at the training temperature. Two ways to get
them, with the same values and layout: one forward pass over whole rows, whose LM head skips
the positions before the batch's first trained token (for a long multimodal prompt, most of
the row), or, when rows share a prompt (a GRPO group, AXPO's resamples of one prefix) and the
model allows it, each distinct prompt run once (`HFPolicy.forward_shared`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from agents.hf import HFPolicy, TokenPrompt, warp
from agents.policy import SamplingParams
from algorithms.grpo import TrainSample


def row_logprobs(policy: HFPolicy, rows: Sequence[TrainSample], model: Any, unwrapped: Any,
                 temperature: float, grad: bool) -> torch.Tensor:
    """`[B, width - 1]` log-probabilities of ids[1:] of the left-padded rows under `model`
    (`unwrapped`: the same module without its DDP wrapper); 0 before the batch's first trained
    position. `grad`: whether the pass keeps gradients."""
    prompts: list[TokenPrompt] = [s.trajectory.sequence for s in rows]  # type: ignore[misc]
    width = max(len(p) for p in prompts)
    # per row, the position whose logits predict its first trained id
    own = [int(s.mask.nonzero()[0]) if s.mask.any() else len(p) - 2
           for p, s in zip(prompts, rows)]
    sampling = SamplingParams(temperature=temperature)
    with torch.set_grad_enabled(grad):
        if shares_prefixes(policy, prompts, own):
            return shared_logprobs(policy, prompts, own, model, unwrapped, width, sampling)
        firsts = [width - len(p) + int(s.mask.nonzero()[0]) for p, s in zip(prompts, rows)
                  if s.mask.any()]
        keep = width - min(firsts, default=width - 2)  # logits from the first trained position
        logits, ids = policy.forward_logits(prompts, model, keep)
        warped = warp(logits[:, :-1], sampling)
        logp = warped.gather(-1, ids[:, width - keep + 1:, None]).squeeze(-1) \
            - warped.logsumexp(-1)
        return torch.cat([logp.new_zeros(len(rows), width - keep), logp], dim=1)


def shares_prefixes(policy: HFPolicy, prompts: Sequence[TokenPrompt], starts: Sequence[int]
                    ) -> bool:
    """Whether `shared_logprobs` applies and saves work: text-only rows of a text model
    (Qwen3-VL's multimodal positions are not rebuilt for a split pass), no gradient
    checkpointing (it drops the cache), and at least two rows with the same prompt before
    their first trained position."""
    if policy.is_vision or policy.model.is_activation_checkpointing:
        return False
    if any(p.pixel_values is not None for p in prompts) or min(starts, default=0) < 1:
        return False
    return len({tuple(p.ids[:s]) for p, s in zip(prompts, starts)}) < len(prompts)


def shared_logprobs(policy: HFPolicy, prompts: Sequence[TokenPrompt], starts: Sequence[int],
                    model: Any, unwrapped: Any, width: int, sampling: SamplingParams
                    ) -> torch.Tensor:
    """`row_logprobs` with each distinct prompt prefix run once: a group of G rollouts of one
    task pays its prompt's forward and backward once, not G times."""
    logits, targets = policy.forward_shared(prompts, starts, model, unwrapped)
    warped = warp(logits, sampling)
    valid = targets >= 0
    logp = warped.gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1) \
        - warped.logsumexp(-1)
    # row b's prediction j (of ids[starts[b] + j + 1]) goes to its left-padded column;
    # the columns past a row's end all land in a spare last column, dropped
    lengths = torch.tensor([len(p) for p in prompts], device=logp.device)
    first = width - lengths + torch.tensor(list(starts), device=logp.device)
    cols = first[:, None] + torch.arange(logp.shape[1], device=logp.device)
    cols = torch.where(valid, cols, torch.full_like(cols, width - 1))
    out = logp.new_zeros(len(prompts), width).scatter(1, cols, logp.masked_fill(~valid, 0))
    return out[:, :width - 1]
