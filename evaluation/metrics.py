"""Metrics of a batch of rollouts: Pass@k, the paper's Thinking-Acting Gap diagnostics, and the
per-step metrics the trainer logs (`rollout_metrics`).

The gap has two symptoms (AXPO paper, Sec. 1): the policy calls tools in few rollouts, and in
many groups the rollouts that do call tools are all wrong, so under GRPO the tool calls get no
learning signal. `thinking_acting_gap` measures both.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from math import comb
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from agents.rollout import Trajectory


class Rollout(Protocol):
    task_id: str

    @property
    def correct(self) -> bool: ...

    @property
    def used_tool(self) -> bool: ...


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased Pass@k from n samples with c correct (Chen et al., 2021)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def groups(rollouts: Iterable[Rollout]) -> dict[str, list[Rollout]]:
    """Rollouts by task, in first-seen order."""
    out: dict[str, list[Rollout]] = defaultdict(list)
    for r in rollouts:
        out[r.task_id].append(r)
    return dict(out)


def thinking_acting_gap(rollouts: Sequence[Rollout]) -> dict[str, Any]:
    """Tool-use rate, accuracy with and without tools, and the paper's all-wrong rates (Sec.
    2.2, Fig. 3): the share of groups whose tool-using subgroup is all wrong, among groups that
    have one, and the same for the no-tool subgroup."""
    by_task = groups(rollouts)
    tool_users = [r for r in rollouts if r.used_tool]
    no_tool = [r for r in rollouts if not r.used_tool]
    with_tools = [g for g in by_task.values() if any(r.used_tool for r in g)]
    all_wrong = [g for g in with_tools if not any(r.correct for r in g if r.used_tool)]
    without_tools = [g for g in by_task.values() if any(not r.used_tool for r in g)]
    all_wrong_no_tool = [g for g in without_tools
                         if not any(r.correct for r in g if not r.used_tool)]
    return {
        "rollouts": len(rollouts),
        "groups": len(by_task),
        "accuracy": _mean(r.correct for r in rollouts),
        "tool_use_rate": len(tool_users) / len(rollouts) if rollouts else 0.0,
        "accuracy_with_tools": _mean(r.correct for r in tool_users),
        "accuracy_without_tools": _mean(r.correct for r in no_tool),
        "groups_with_tool_use": len(with_tools),
        "all_wrong_tool_subgroup_share": len(all_wrong) / len(with_tools) if with_tools else 0.0,
        "groups_with_no_tool_use": len(without_tools),
        "all_wrong_no_tool_subgroup_share": (len(all_wrong_no_tool) / len(without_tools)
                                             if without_tools else 0.0),
    }


def _mean(values: Iterable[bool]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def rollout_metrics(groups: Sequence[Sequence[Trajectory]], k: int) -> dict[str, float]:
    """Reward, accuracy, Pass@k, tool use and the Thinking-Acting Gap of a step's rollouts."""
    flat = [t for g in groups for t in g]
    ok = [t for t in flat if t.error is None]
    gap = thinking_acting_gap(ok) if ok else {}
    passes = [pass_at_k(len(g), sum(t.correct for t in g), min(k, len(g))) for g in groups if g]
    return {
        "reward": float(np.mean([t.reward for t in ok])) if ok else 0.0,
        "accuracy": float(gap.get("accuracy", 0.0)),
        f"pass@{k}": float(np.mean(passes)) if passes else 0.0,
        "tool_use_rate": float(gap.get("tool_use_rate", 0.0)),
        "tool_error_rate": _ratio(sum(t.info.get("tool_errors", 0) for t in ok),
                                  sum(t.info.get("tool_calls", 0) for t in ok)),
        "all_wrong_tool_subgroup_share": float(gap.get("all_wrong_tool_subgroup_share", 0.0)),
        "all_wrong_no_tool_subgroup_share": float(
            gap.get("all_wrong_no_tool_subgroup_share", 0.0)),
        "mean_turns": float(np.mean([len(t.turns) for t in ok])) if ok else 0.0,
        "generated_tokens": float(sum(sum(t.mask) for t in ok)),
        "rollouts_failed": float(len(flat) - len(ok)),
    }


def _ratio(a: float, b: float) -> float:
    return float(a) / b if b else 0.0
