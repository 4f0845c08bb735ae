"""The image-placeholder check a rollout runs on every turn's token sequence.

A Qwen-VL forward pass fills each run of `<|image_pad|>` ids with one image's features and
raises for the whole batch when the runs and the images disagree. `rollout` checks a sequence
before it is sampled from (and when an episode ends, before anyone trains on it), so such a
mismatch ends that one episode with `Trajectory.error` saying what was wrong, whatever made it
(a chat template that drops or adds an image, a policy that kept a sampled pad id, a video slot).
No torch here: the rollout loop imports none.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from agents.tokens import TokenPrompt


def image_slot_error(prompt: TokenPrompt, patches_per_token: int = 4,
                     slot_ids: Collection[int] = ()) -> str | None:
    """None when the runs of image-pad ids in `prompt.ids` are its images' slots, one run per
    image (or per few adjacent images), each as long as its images' `grid // merge**2`; else
    what is wrong. `slot_ids`: other vision slot ids (`<|video_pad|>`), which no prompt may
    hold (rollouts pass no videos)."""
    pad = prompt.image_pad_id
    others = [i for i, t in enumerate(prompt.ids) if t in slot_ids and t != pad]
    if others:
        return (f"image placeholder mismatch: {len(others)} video slot id(s) (first at "
                f"position {others[0]}) with no video behind them")
    if pad is None:
        return None
    counts = prompt.image_pad_counts(patches_per_token)
    if prompt.images and len(prompt.images) != len(counts):
        return (f"image placeholder mismatch: {len(prompt.images)} image(s) recorded for "
                f"{len(counts)} image grid(s)")
    runs = _runs(prompt.ids, pad)
    k = 0
    for start, length in runs:
        need = 0
        while need < length and k < len(counts):
            need, k = need + counts[k], k + 1
        if need != length:
            return _mismatch(runs, counts, f"the run at position {start} has {length} pad id(s)")
    if k != len(counts):
        return _mismatch(runs, counts, f"{len(counts) - k} image(s) have no pad ids")
    return None


def policy_slot_error(prompt: TokenPrompt | None, policy: Any) -> str | None:
    """`image_slot_error` with a token policy's settings; None for text-only policies."""
    if prompt is None or getattr(policy, "is_vision", True) is False:
        return None
    return image_slot_error(prompt, getattr(policy, "patches_per_token", 4),
                            getattr(policy, "vision_slot_ids", ()))


def _runs(ids: Sequence[int], pad: int) -> list[tuple[int, int]]:
    """(start, length) of each maximal run of `pad` in `ids`."""
    runs: list[tuple[int, int]] = []
    start = None
    for i, t in enumerate(ids):
        if t == pad and start is None:
            start = i
        elif t != pad and start is not None:
            runs.append((start, i - start))
            start = None
    if start is not None:
        runs.append((start, len(ids) - start))
    return runs


def _mismatch(runs: list[tuple[int, int]], counts: list[int], detail: str) -> str:
    shown = ", ".join(str(n) for _, n in runs[:6]) + (", ..." if len(runs) > 6 else "")
    wanted = ", ".join(str(n) for n in counts[:6]) + (", ..." if len(counts) > 6 else "")
    return (f"image placeholder mismatch: {len(runs)} run(s) of <|image_pad|> ids ({shown or '-'})"
            f" for {len(counts)} image(s) needing ({wanted or '-'}); {detail}")
