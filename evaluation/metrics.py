"""Metrics of a batch of rollouts: Pass@k and the paper's Thinking-Acting Gap diagnostics.

The gap has two symptoms (AXPO paper, Sec. 1): the policy calls tools in few rollouts, and in
many groups the rollouts that do call tools are all wrong, so under GRPO the tool calls get no
learning signal. `thinking_acting_gap` measures both.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from math import comb
from typing import Any, Protocol


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
