"""What samples a trainer's rollouts: its own model (`HFPolicy`) or a vLLM engine kept in sync.

With `use_vllm`, rollouts and AXPO's branches come from `agents.vllm_policy.VLLMPolicy`, colocated
in the training process or on `agents.vllm_server`; the trainer's model still computes every
loss. After each optimizer step the model's weights go to the engine (`sync`), so the next
rollouts sample the updated policy. What remains between the two is kernel noise (float32 on
CPU: ~1e-6 in logprob; bfloat16: ~5e-3), measured each step as `vllm_logprob_gap` and, with
`vllm_importance_sampling_correction`, corrected by truncated importance sampling
(`importance_weights`, TRL's and verl's TIS).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from agents.hf import HFPolicy
from algorithms.config import GRPOConfig
from algorithms.grpo import TrainSample, pad_left
from axpo_env.errors import ModelLoadError


def rollout_policy(config: GRPOConfig, policy: HFPolicy) -> Any:
    """The policy that samples: `policy` itself, or a `VLLMPolicy` on the same checkpoint
    holding `policy`'s current weights (`config.use_vllm`)."""
    if not config.use_vllm:
        return policy
    from agents.vllm_engine import EngineSettings, RemoteEngine
    from agents.vllm_policy import VLLMPolicy

    path = getattr(policy.model.config, "_name_or_path", "") or ""
    if not path or not Path(path).exists():
        raise ModelLoadError("use_vllm needs the policy's checkpoint folder for the engine to "
                             f"start from; this model names {path!r}. Pass a model path (or "
                             "save the model with save_pretrained first).")
    generation_config = getattr(policy.model, "generation_config", None)
    if config.vllm_mode == "server":
        engine = RemoteEngine(config.vllm_server_base_url or "")
    else:
        from agents.vllm_engine import LocalEngine

        settings = EngineSettings(
            dtype="bfloat16" if config.bf16 else "float32",
            max_model_len=config.vllm_max_model_length,
            gpu_memory_utilization=config.vllm_gpu_memory_utilization,
            enable_sleep_mode=config.vllm_enable_sleep_mode, seed=config.seed)
        engine = LocalEngine(path, settings)
    vllm = VLLMPolicy(engine, policy.processor, generation_config, policy.render_tools)
    sync(vllm, policy.model)
    return vllm


def sync(rollouts: Any, model: Any) -> float:
    """Load `model`'s weights into a vLLM rollout policy; seconds taken (0 for HFPolicy)."""
    if isinstance(rollouts, HFPolicy):
        return 0.0
    start = time.perf_counter()
    rollouts.update_weights(model)
    return time.perf_counter() - start


def sampled_logprobs(rows: Sequence[TrainSample], width: int) -> torch.Tensor:
    """The engine's logprob of each row's trained ids, at prediction positions (`[B, width]`,
    left-padded like the loss's tensors)."""
    return pad_left([torch.tensor(s.trajectory.logprobs[1:], dtype=torch.float32)
                     for s in rows], width)


def importance_weights(old: torch.Tensor, sampled: torch.Tensor, mask: torch.Tensor,
                       cap: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Truncated importance sampling: min(exp(old - sampled), cap) per token, with the gap
    between the trainer's (`old`) and the engine's (`sampled`) logprobs as diagnostics."""
    m = mask.bool()
    gap = (old - sampled).masked_fill(~m, 0.0)
    weights = torch.exp(gap).clamp(max=cap).masked_fill(~m, 1.0)
    count = max(int(m.sum()), 1)
    stats = {"vllm_logprob_gap": float(gap.abs().sum()) / count,
             "vllm_logprob_gap_max": float(gap.abs().max()) if m.any() else 0.0,
             "vllm_is_weight_mean": float(weights[m].mean()) if m.any() else 1.0,
             "vllm_is_capped": float((torch.exp(gap) > cap)[m].float().mean())
             if m.any() else 0.0}
    return weights, stats
