"""The clipped policy-gradient loss of GRPO/AXPO, written to match TRL's `GRPOTrainer`.

Pure torch on padded `[B, T]` tensors, no model code, so GRPO and AXPO share one loss and a test
can check it by hand. Conventions follow TRL (`trl/trainer/grpo_trainer.py`): group advantages
divide by the unbiased std plus 1e-4, the KL to the reference is the k3 estimator, and the
`loss_type` names pick TRL's token aggregations. Diagnostics are computed beside the math they
watch, as in CleanRL's `ppo.py`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

STD_EPS = 1e-4  # TRL adds this to the std so all-equal groups give 0, not 0/0
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
SCALE_MODES = ("group", "batch", "none")


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of `x` over positions where `mask` is set; an empty selection gives 0, not NaN."""
    m = mask.to(x.dtype)
    if dim is None:
        return (x * m).sum() / m.sum().clamp(min=1.0)
    return (x * m).sum(dim) / m.sum(dim).clamp(min=1.0)


def group_advantages(
    rewards: Tensor,
    group_ids: Sequence[Hashable] | Tensor,
    scale_rewards: str = "group",
) -> Tensor:
    """Each reward minus its group's mean, scaled by a std (GRPO) or not (Dr. GRPO).

    `scale_rewards`: "group" divides by the group's std, "batch" by the whole batch's std (more
    robust when a group's std is tiny), "none" keeps raw differences (Dr. GRPO argues the std
    scaling biases toward too-easy and too-hard tasks). Stds are unbiased (`torch.std`), plus
    1e-4, as in TRL. Groups need not be contiguous; a group of one gets advantage 0.
    """
    if scale_rewards not in SCALE_MODES:
        raise ValueError(f"scale_rewards must be one of {SCALE_MODES}, got {scale_rewards!r}")
    rewards = rewards if rewards.is_floating_point() else rewards.float()
    if isinstance(group_ids, Tensor):
        group_ids = group_ids.tolist()
    if len(group_ids) != rewards.numel():
        raise ValueError(f"got {rewards.numel()} rewards but {len(group_ids)} group ids")
    index: dict[Hashable, int] = {}
    slots = [index.setdefault(g, len(index)) for g in group_ids]  # first-seen order
    idx = torch.tensor(slots, dtype=torch.long, device=rewards.device)
    zeros = torch.zeros(len(index), dtype=rewards.dtype, device=rewards.device)
    count = zeros.index_add(0, idx, torch.ones_like(rewards))
    mean = zeros.index_add(0, idx, rewards) / count
    advantages = rewards - mean[idx]
    if scale_rewards == "group":
        var = zeros.index_add(0, idx, advantages**2) / (count - 1).clamp(min=1.0)  # Bessel
        advantages = advantages / (var.sqrt()[idx] + STD_EPS)
    elif scale_rewards == "batch":
        std = rewards.std() if rewards.numel() > 1 else rewards.new_zeros(())
        advantages = advantages / (std + STD_EPS)
    return advantages


def policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    loss_type: str = "dapo",
    max_completion_length: int | None = None,
    ref_logprobs: Tensor | None = None,
    beta: float = 0.0,
    num_items_in_batch: int | Tensor | None = None,
    num_processes: int = 1,
    importance_weights: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Clipped surrogate loss (plus `beta` * k3 KL to a reference) and its diagnostics.

    `logprobs`, `old_logprobs`, `ref_logprobs`, `mask`: `[B, T]`, mask 1 on tokens trained on;
    `advantages`: `[B]` (or `[B, T]`). `epsilon_high` defaults to `epsilon`; DAPO's clip-higher
    uses 0.28. `loss_type` aggregates tokens as TRL does:
      - "grpo": mean over each sequence's tokens, then over sequences (favours short answers);
      - "bnpo": sum over tokens / tokens in this batch;
      - "dr_grpo": sum / (B * max_completion_length), a constant, so no length bias;
      - "dapo": sum / tokens in the whole generation batch. Pass `num_items_in_batch` (the
        token count over all micro-batches and processes of a generation step, as TRL does) and
        `num_processes` so that accumulated, DDP-averaged gradients equal one big batch's;
        without it, this micro-batch's own count is used.
    TRL further divides "grpo", "bnpo" and "dr_grpo" by the gradient-accumulation steps; that is
    left to the trainer. Stats: `clipfrac` (token fraction whose gradient the clip removes,
    TRL's `clip_ratio/region_mean`), `clipfrac_low`, `clipfrac_high`, `approx_kl` (CleanRL's k3
    `(ratio - 1) - log ratio` of old to new), `kl` (k3 to the reference, when given),
    `ratio_mean`, `pg_loss`.
    `importance_weights` `[B, T]` (no gradient) multiply each token's clipped loss before the KL
    term is added, as TRL applies truncated importance sampling to vLLM rollouts.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if beta != 0.0 and ref_logprobs is None:
        raise ValueError("beta != 0 needs ref_logprobs (the reference model's token logprobs)")
    if loss_type == "dr_grpo" and max_completion_length is None:
        raise ValueError("loss_type='dr_grpo' needs max_completion_length (the generation cap)")
    epsilon_high = epsilon if epsilon_high is None else epsilon_high
    mask = mask.bool()
    m = mask.to(logprobs.dtype)
    # Padding may hold garbage (even inf); fill it so 0 * inf never turns gradients into NaN.
    logprobs = logprobs.masked_fill(~mask, 0.0)
    old_logprobs = old_logprobs.detach().masked_fill(~mask, 0.0)
    adv = advantages.detach().to(logprobs.dtype)
    adv = adv.unsqueeze(1) if adv.dim() == 1 else adv

    logratio = logprobs - old_logprobs
    ratio = torch.exp(logratio)
    pg_loss1 = -adv * ratio
    pg_loss2 = -adv * torch.clamp(ratio, 1 - epsilon, 1 + epsilon_high)
    per_token_loss = torch.max(pg_loss1, pg_loss2)
    with torch.no_grad():
        is_low_clipped = (ratio < 1 - epsilon) & (adv < 0)
        is_high_clipped = (ratio > 1 + epsilon_high) & (adv > 0)
        stats = {
            "clipfrac": masked_mean((is_low_clipped | is_high_clipped).to(m.dtype), m).item(),
            "clipfrac_low": masked_mean(is_low_clipped.to(m.dtype), m).item(),
            "clipfrac_high": masked_mean(is_high_clipped.to(m.dtype), m).item(),
            "approx_kl": masked_mean((ratio - 1) - logratio, m).item(),
            "ratio_mean": masked_mean(ratio, m).item(),
            "pg_loss": masked_mean(per_token_loss, m).item(),
        }
    if importance_weights is not None:
        per_token_loss = per_token_loss * importance_weights.detach().to(per_token_loss.dtype)

    if ref_logprobs is not None:
        ref_diff = ref_logprobs.detach().masked_fill(~mask, 0.0) - logprobs
        per_token_kl = torch.exp(ref_diff) - ref_diff - 1  # k3: unbiased, always >= 0
        stats["kl"] = masked_mean(per_token_kl.detach(), m).item()
        if beta != 0.0:
            per_token_loss = per_token_loss + beta * per_token_kl

    total = (per_token_loss * m).sum()
    if loss_type == "grpo":
        loss = masked_mean(per_token_loss, m, dim=-1).mean()
    elif loss_type == "bnpo":
        loss = total / m.sum().clamp(min=1.0)
    elif loss_type == "dr_grpo":
        loss = total / (per_token_loss.size(0) * max_completion_length)
    else:  # dapo
        n = m.sum() if num_items_in_batch is None else torch.as_tensor(num_items_in_batch)
        loss = total / (n.to(total.dtype).clamp(min=1.0) / num_processes)
    return loss, stats


@dataclass(frozen=True)
class Normalizers:
    """What a step's optimizer updates divide by, counted over the step's own rollouts on every
    process (so rows AXPO adds never dilute them) and fixed before the first backward.

    `sequences`/`tokens`: rollouts and trained tokens summed over processes; `micro_batches`:
    the most micro-batches those rollouts fill on one process (TRL's `steps_per_generation`);
    `windows`: optimizer updates they make, `ceil(micro_batches / gradient_accumulation_steps)`.
    """

    sequences: float
    tokens: float
    micro_batches: int
    windows: int
    num_processes: int = 1

    @classmethod
    def of(cls, sequences: float, tokens: float, micro_batches: int,
           gradient_accumulation_steps: int, num_processes: int = 1) -> Normalizers:
        micro_batches = max(1, int(micro_batches))
        return cls(float(sequences), float(tokens), micro_batches,
                   math.ceil(micro_batches / gradient_accumulation_steps), num_processes)


def update_loss(loss: Tensor, loss_type: str, rows: int, norm: Normalizers) -> Tensor:
    """Scale one micro-batch's `policy_loss` (computed with `num_items_in_batch=norm.tokens /
    norm.windows` for "dapo") to its share of one optimizer update, as TRL's `GRPOTrainer` does.

    Each update normalizes by its share of the step: `sequences / windows` rollouts,
    `tokens / windows` tokens, `micro_batches / windows` micro-batches (TRL: rows of
    `per_device_train_batch_size` times `gradient_accumulation_steps`; when the step's rollouts
    fill whole micro-batches this is TRL's loss exactly). Per process, since DDP averages
    gradients over processes:
      - "grpo", "dr_grpo": TRL's mean over the micro-batch's rows divided by the accumulation
        steps, i.e. `rows` times the micro-batch loss over `sequences / windows / processes`;
      - "bnpo": the micro-batch's own token mean divided by the accumulation steps;
      - "dapo": already divided by the update's tokens over all processes (`policy_loss`).
    """
    share = norm.sequences / norm.windows / norm.num_processes
    if loss_type in ("grpo", "dr_grpo"):
        return loss * (rows / share)
    if loss_type == "bnpo":
        return loss / (norm.micro_batches / norm.windows)
    return loss
