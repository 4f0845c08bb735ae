"""Where a turn's action sits in its generated ids: found once, when the rollout records the turn.

AXPO cuts a failed rollout right after the opening `<tool_call>` tag and ranks it by the
confidence of the serialized call (`<tool_call>` ... `</tool_call>`), so both need the call's
token positions. The env decides what a turn did (`axpo_env.parse_turn`, on the text after
`</think>`); this module maps that decision onto the ids the model generated, so every later user
(AXPO's prefixes, its ranking, ARPO's branch points, diagnostics) reads `Turn.action` instead of
parsing again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from axpo_env.protocol import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    CALL_CLOSE,
    CALL_OPEN,
    THINK_END,
    parse_turn,
)

_TAGS = {"call": (CALL_OPEN, CALL_CLOSE), "answer": (ANSWER_OPEN, ANSWER_CLOSE)}


@dataclass(frozen=True)
class ActionSpan:
    """The turn's first action in its generated ids: `ids[start]` opens it (`<tool_call>` or
    `<answer>`), `ids[end - 1]` closes it (or the last id before EOS if the tag never closed).
    `ids[:opened]` runs through the whole opening tag: AXPO's kept prefix. It is `start + 1`
    when the tag is one token (Qwen's `<tool_call>`), more when the tokenizer splits it (a
    plain tokenizer's `'<answer'`, `'>'`)."""

    kind: Literal["call", "answer"]
    start: int
    end: int
    opened: int = -1  # -1: start + 1

    def __post_init__(self) -> None:
        if self.opened < 0:
            object.__setattr__(self, "opened", self.start + 1)


def find_action(text: str, ids: Sequence[int], tokenizer: Any) -> ActionSpan | None:
    """The span of the first tool call (or, in a turn without calls, of the `<answer>` tag) in a
    generated turn; None when the turn has neither (a format error, a bare `\\boxed{}` answer)
    or the ids do not decode to the tag. A tag inside the thinking is a plan, not an action: the
    search starts after the last `</think>`, as the env's parser does."""
    parsed = parse_turn(text)
    kind = "call" if parsed.calls else "answer" if parsed.answer is not None else None
    if kind is None:
        return None
    open_tag, close_tag = _TAGS[kind]
    body_start = _after_last(ids, tokenizer, THINK_END, 0)
    start = _first(ids, tokenizer, open_tag, body_start)
    if start is None:
        return None
    end = _after_first(ids, tokenizer, close_tag, start + 1)
    if end is None:  # never closed: up to the end, less a trailing EOS
        end = len(ids) - (1 if ids and ids[-1] == tokenizer.eos_token_id else 0)
    opened = _after_first(ids, tokenizer, open_tag, start) or start + 1
    return ActionSpan(kind, start, max(end, start + 1), min(opened, max(end, start + 1)))


def _tag_id(tokenizer: Any, tag: str) -> int | None:
    """The tag's id when the tokenizer keeps it as one token (Qwen's added tokens)."""
    ids = tokenizer(tag, add_special_tokens=False)["input_ids"]
    return ids[0] if len(ids) == 1 else None


def _first(ids: Sequence[int], tokenizer: Any, tag: str, lo: int) -> int | None:
    """Index of the token where `tag` begins, searching from `lo`."""
    tag_id = _tag_id(tokenizer, tag)
    if tag_id is not None:
        return next((i for i in range(lo, len(ids)) if ids[i] == tag_id), None)
    at = _decode(tokenizer, ids[lo:]).find(tag)
    if at < 0:
        return None
    return lo + _tokens_covering(ids[lo:], tokenizer, at + 1) - 1


def _after_first(ids: Sequence[int], tokenizer: Any, tag: str, lo: int) -> int | None:
    """Index just past the token where `tag` ends, searching from `lo`."""
    tag_id = _tag_id(tokenizer, tag)
    if tag_id is not None:
        return next((i + 1 for i in range(lo, len(ids)) if ids[i] == tag_id), None)
    at = _decode(tokenizer, ids[lo:]).find(tag)
    return None if at < 0 else lo + _tokens_covering(ids[lo:], tokenizer, at + len(tag))


def _after_last(ids: Sequence[int], tokenizer: Any, tag: str, lo: int) -> int:
    tag_id = _tag_id(tokenizer, tag)
    if tag_id is not None:
        return max((i + 1 for i in range(lo, len(ids)) if ids[i] == tag_id), default=lo)
    text = _decode(tokenizer, ids[lo:])
    at = text.rfind(tag)
    return lo if at < 0 else lo + _tokens_covering(ids[lo:], tokenizer, at + len(tag))


def _tokens_covering(ids: Sequence[int], tokenizer: Any, chars: int) -> int:
    """The fewest leading tokens whose decoded text has at least `chars` characters (binary
    search: decoded length grows with the prefix)."""
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if len(_decode(tokenizer, ids[:mid])) >= chars:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _decode(tokenizer: Any, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=False)
