"""The AXPO paper's tool-call diversity probe (Sec. 2.2): how many different tool calls does a
policy make from a fixed failed prefix?

Fix a failed tool-using rollout's ids through the opening `<tool_call>` of its first call, sample
`n` continuations of that turn, and cluster the calls: the same tool with equal normalized
arguments is one cluster; box arguments (four numbers, e.g. a crop's `bbox`) match at IoU >= 0.5.
The paper measures 2.9-3.4 clusters of 16 on average and ~30% of prefixes collapsing to one: the
room AXPO's resampling has to find a better call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from agents.policy import SamplingParams, TokenPolicy
from agents.rollout import Trajectory
from axpo_env import parse_turn

MALFORMED = ("<malformed>", {})


def tool_call_diversity(policy: TokenPolicy, trajectories: Sequence[Trajectory], n: int = 16,
                        sampling: SamplingParams | None = None, iou: float = 0.5,
                        tool_call_format: str = "hermes",
                        tools: Sequence[dict[str, Any]] | None = None) -> dict[str, float]:
    """Probe every failed tool-using rollout of `trajectories` (as recorded by
    `agents.rollout`). Returns `prefixes` probed, `mean_clusters` and `collapsed_share` (the
    share of prefixes whose `n` calls fall in one cluster). Calls that do not parse form one
    cluster of their own. `tool_call_format` and `tools`: the env's (`env.unwrapped`'s
    attributes of those names), so calls are read as the env read them."""
    sampling = sampling or SamplingParams()
    counts = []
    for t in trajectories:
        first = next((turn for turn in t.turns
                      if turn.action is not None and turn.action.kind == "call"), None)
        if t.correct or not t.used_tool or first is None or t.sequence is None:
            continue
        keep = first.action.opened
        kept = policy.tokenizer.decode(first.completion.token_ids[:keep],
                                       skip_special_tokens=False)
        prefix = t.sequence.prefix(first.generated_start + keep, policy.patches_per_token)
        completions = policy.sample_shared(prefix, n, sampling)
        calls = [_first_call(kept + c.text, tool_call_format, tools) for c in completions]
        counts.append(len(cluster_calls(calls, iou)))
    return {
        "prefixes": float(len(counts)),
        "mean_clusters": float(np.mean(counts)) if counts else 0.0,
        "collapsed_share": float(np.mean([c == 1 for c in counts])) if counts else 0.0,
    }


def cluster_calls(calls: Sequence[tuple[str, dict[str, Any]]], iou: float = 0.5
                  ) -> list[list[int]]:
    """Greedy clustering of (name, arguments) calls: each joins the first cluster whose first
    member it matches. Returns the clusters as lists of indices."""
    clusters: list[list[int]] = []
    for i, call in enumerate(calls):
        home = next((c for c in clusters if _same_call(calls[c[0]], call, iou)), None)
        if home is None:
            clusters.append([i])
        else:
            home.append(i)
    return clusters


def _first_call(text: str, tool_call_format: str = "hermes",
                tools: Sequence[dict[str, Any]] | None = None) -> tuple[str, dict[str, Any]]:
    calls = parse_turn(text, tool_call_format, tools).calls
    if not calls or calls[0].error is not None:
        return MALFORMED
    return calls[0].name, calls[0].arguments


def _same_call(a: tuple[str, dict], b: tuple[str, dict], iou: float) -> bool:
    (name_a, args_a), (name_b, args_b) = a, b
    if name_a != name_b or set(args_a) != set(args_b):
        return False
    for key, value in args_a.items():
        other = args_b[key]
        if _is_box(value) and _is_box(other):
            if _iou(value, other) < iou:
                return False
        elif _normalize(value) != _normalize(other):
            return False
    return True


def _is_box(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 4
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value))


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ax0, ay0, ax1, ay1 = (float(v) for v in a)
    bx0, by0, bx1, by1 = (float(v) for v in b)
    w = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    h = max(0.0, min(ay1, by1) - max(ay0, by0))
    union = max(0.0, ax1 - ax0) * max(0.0, ay1 - ay0) + max(0.0, bx1 - bx0) * max(
        0.0, by1 - by0) - w * h
    return w * h / union if union > 0 else float(a == b)


def _normalize(value: Any) -> Any:
    """Equal meaning, equal value: case and whitespace of strings, float noise of numbers."""
    if isinstance(value, str):
        return " ".join(value.lower().split())
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return round(float(value), 6)
    if isinstance(value, list | tuple):
        return tuple(_normalize(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _normalize(v)) for k, v in value.items()))
    return repr(value)
