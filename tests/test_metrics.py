"""Pass@k and the Thinking-Acting Gap diagnostics on hand-worked cases."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from evaluation.metrics import pass_at_k, thinking_acting_gap


@dataclass
class R:
    task_id: str
    correct: bool
    used_tool: bool


@pytest.mark.parametrize("n,c,k,expected", [
    (4, 0, 1, 0.0), (4, 4, 1, 1.0), (4, 1, 1, 0.25), (4, 1, 4, 1.0),
    (4, 2, 2, 1 - 1 / 6),  # C(2,2)/C(4,2) = 1/6 chance that both picks are wrong
    (10, 3, 5, 1 - 21 / 252),
])
def test_pass_at_k_is_unbiased_estimator(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_gap_counts_tool_use_and_all_wrong_tool_subgroups():
    rollouts = [
        R("a", False, True), R("a", False, True), R("a", True, False),   # tools all wrong
        R("b", True, True), R("b", False, True), R("b", False, False),   # tools partly right
        R("c", True, False), R("c", False, False), R("c", False, False),  # no tool use
    ]
    gap = thinking_acting_gap(rollouts)
    assert gap["tool_use_rate"] == pytest.approx(4 / 9)
    assert gap["groups_with_tool_use"] == 2
    assert gap["all_wrong_tool_subgroup_share"] == pytest.approx(1 / 2)
    assert gap["accuracy_with_tools"] == pytest.approx(1 / 4)
    assert gap["accuracy_without_tools"] == pytest.approx(2 / 5)
    assert gap["accuracy"] == pytest.approx(3 / 9)
