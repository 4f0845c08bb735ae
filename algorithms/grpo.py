"""GRPO's view of a step: every rollout, its group-normalized advantage, the tokens it trains.

A `TrainBatch` is what the update consumes: per rollout, one advantage per token and a mask. GRPO
gives every generated token of a rollout the same advantage; AXPO (`algorithms.axpo`) starts from
this batch and rewrites the rows it explores. The batch also fixes the loss's normalizers from
the step's own rollouts, so rows AXPO adds never dilute the weight of the ones GRPO has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from agents.rollout import Trajectory
from algorithms.config import GRPOConfig
from algorithms.loss import group_advantages


@dataclass
class TrainSample:
    """One row of the update. Position `t` of `advantages` and `mask` belongs to the prediction
    of `ids[t + 1]` (so both have `len(ids) - 1` entries)."""

    trajectory: Trajectory
    advantages: torch.Tensor
    mask: torch.Tensor


@dataclass
class TrainBatch:
    """A step's rows and the loss normalizers, counted over the step's own rollouts (GRPO's
    batch): "dapo" divides by `num_tokens`, the other loss types by `num_sequences`."""

    samples: list[TrainSample]
    num_sequences: int
    num_tokens: int


def shaped_reward(trajectory: Trajectory, config: GRPOConfig) -> float:
    """The reward a rollout trains on: the weighted sum of the run's reward functions
    (`algorithms.rewards`), or for a rollout they did not score, the default ones: the task's
    reward plus `tool_reward` for a rollout that called a tool."""
    if trajectory.training_reward is not None:
        return trajectory.training_reward
    return trajectory.reward + (config.tool_reward if trajectory.used_tool else 0.0)


def trainable(trajectory: Trajectory) -> bool:
    """A rollout the update can use: it finished without error and generated something."""
    return trajectory.error is None and trajectory.sequence is not None and any(
        trajectory.train_mask)


def token_mask(trajectory: Trajectory, config: GRPOConfig) -> torch.Tensor:
    """The trajectory's trained ids, shifted to prediction positions; all zero for a truncated
    rollout when `mask_truncated_completions` is set."""
    mask = torch.tensor(trajectory.train_mask[1:], dtype=torch.float32)
    if config.mask_truncated_completions and any(
            turn.completion.finish_reason == "length" for turn in trajectory.turns):
        mask.zero_()
    return mask


def train_sample(trajectory: Trajectory, config: GRPOConfig, advantage: float = 0.0
                 ) -> TrainSample:
    """A row whose trained ids all carry one advantage (AXPO rewrites parts of it later)."""
    mask = token_mask(trajectory, config)
    return TrainSample(trajectory, torch.full_like(mask, advantage), mask)


def grpo_batch(groups: Sequence[Sequence[Trajectory]], config: GRPOConfig) -> TrainBatch:
    """Every trainable rollout with its group-normalized advantage on all its generated ids."""
    rows = [(g, t) for g, group in enumerate(groups) for t in group if trainable(t)]
    if not rows:
        return TrainBatch([], 0, 0)
    rewards = torch.tensor([shaped_reward(t, config) for _, t in rows], dtype=torch.float32)
    advantages = group_advantages(rewards, [g for g, _ in rows], config.scale_rewards)
    samples = [train_sample(t, config, float(a)) for (_, t), a in zip(rows, advantages)]
    return TrainBatch(samples, len(samples), int(sum(s.mask.sum() for s in samples)))


def pad_left(rows: Sequence[torch.Tensor], width: int) -> torch.Tensor:
    """Rows of per-position values right-aligned in a `[B, width]` zero tensor: the layout of
    a left-padded micro-batch (`HFPolicy.forward_logits`)."""
    out = torch.zeros(len(rows), width, dtype=rows[0].dtype if rows else torch.float32)
    for b, row in enumerate(rows):
        if len(row):
            out[b, width - len(row):] = row
    return out
