"""Trajectories and AXPO branches as JSONL that `axpo view` reads: one concept, saving.

A record is plain JSON: the question, each turn's thinking, tool call, tool reply and answer,
the score and the reference answer. Images go to `images/` beside the JSONL as files named by a
hash of their pixels, so a task image shared by a group's G rollouts (and by every later step
that draws the task again) is written once; records refer to them by relative path.

Layout of a folder (`<output_dir>/trajectories/`):
    episodes.jsonl   {"type": "episode", ...} per episode, {"type": "branch", ...} per AXPO branch
    images/<hash>.jpg|png

Nothing here imports torch: a recorded folder is readable with `axpo_env` alone.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from axpo_env import parse_turn
from axpo_env.text import valid_text

if TYPE_CHECKING:
    from agents.rollout import Trajectory, Turn

FOLDER = "trajectories"
RECORDS = "episodes.jsonl"
# The `crop` tool's reply names the exact pixel box it cut and which image it cut it from.
_CROPPED = re.compile(r"Cropped \[(\d+), (\d+), (\d+), (\d+)\] \(pixels\) of image (\d+)")


class Recorder:
    """Appends records to `<folder>/episodes.jsonl` (`episodes.rank<N>.jsonl` for the other
    processes of a distributed run), writing each distinct image once. Turns are read as the env
    read them: in its `tool_call_format`, values typed by its tool schemas (`tools`); `for_env`
    takes both from the env."""

    def __init__(self, folder: str | Path, rank: int = 0, tool_call_format: str = "hermes",
                 tools: Sequence[dict[str, Any]] | None = None):
        self.tool_call_format, self.tools = tool_call_format, tools
        self.folder = Path(folder)
        self.images = self.folder / "images"
        self.images.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / (RECORDS if rank == 0 else f"episodes.rank{rank}.jsonl")
        self._names: dict[int, tuple[Image.Image, str]] = {}  # id(image) -> (image, file name)

    @classmethod
    def for_env(cls, folder: str | Path, env: Any, rank: int = 0) -> Recorder:
        """A recorder that reads turns as `env` (any wrapper of a `ToolUseEnv`) reads them."""
        inner = getattr(env, "unwrapped", env)
        return cls(folder, rank, getattr(inner, "tool_call_format", "hermes"),
                   getattr(inner, "tool_schemas", None))

    def image(self, image: Image.Image) -> str:
        """The image's path relative to the folder; written on first sight of its pixels."""
        known = self._names.get(id(image))
        if known is not None and known[0] is image:
            return known[1]
        digest = hashlib.sha1(f"{image.mode}{image.size}".encode())
        digest.update(image.tobytes())
        rgb = image.mode in ("RGB", "L")
        name = f"images/{digest.hexdigest()[:20]}.{'jpg' if rgb else 'png'}"
        target = self.folder / name
        if not target.exists():
            tmp = target.with_suffix(".tmp" + target.suffix)
            if rgb:
                image.save(tmp, format="JPEG", quality=90)
            else:
                image.save(tmp, format="PNG", compress_level=1)
            os.replace(tmp, target)  # a crash never leaves a half-written image under its name
        self._names[id(image)] = (image, name)
        return name

    def episode(self, trajectory: Trajectory, episode_id: str, **fields: Any) -> dict[str, Any]:
        """One trajectory as a JSON-ready record (images written); `fields` add to it."""
        t = trajectory
        first = t.turns[0].snapshot if t.turns and t.turns[0].snapshot is not None else None
        task_images = [self.image(im) for im in first.images] if first else []
        seen = [(name, im.size) for name, im in
                zip(task_images, first.images if first else ())]
        turns = []
        for turn in t.turns:
            turns.append(self._turn(turn, seen))
        last = t.turns[-1] if t.turns else None
        info = t.info
        record = {
            "type": "episode", "id": episode_id, "env": first.env_id if first else None,
            "task_id": t.task_id, "group": t.index_in_group,
            "question": _question(first.messages) if first else None, "images": task_images,
            "turns": turns, "answer": info.get("answer"), "reward": float(t.reward),
            "correct": bool(info.get("correct")) and t.error is None,
            "tool_calls": int(info.get("tool_calls", 0)),
            "tool_errors": int(info.get("tool_errors", 0)),
            "truncated": bool(last and last.truncated), "error": t.error,
            "parent": list(t.parent) if t.parent else None,
        }
        record.update(fields)
        return record

    def _turn(self, turn: Turn, seen: list[tuple[str, tuple[int, int]]]) -> dict[str, Any]:
        text = turn.completion.text or ""
        parsed = parse_turn(text, self.tool_call_format, self.tools)
        call = parsed.calls[0] if parsed.calls else None
        reply_text, reply_images = [], []
        for message in turn.tool_result:
            for part in message.get("content", []):
                if part.get("type") == "image" and isinstance(part.get("image"), Image.Image):
                    im = part["image"]
                    reply_images.append(self.image(im))
                    seen.append((reply_images[-1], im.size))
                elif part.get("type") == "text":
                    reply_text.append(str(part.get("text", "")))
        out: dict[str, Any] = {
            "text": text, "thinking": parsed.thinking.removeprefix("<think>").strip(),
            "call": None if call is None else {"name": call.name, "arguments": call.arguments,
                                                "error": call.error},
            "answer": parsed.answer, "format_error": parsed.error,
            "reply": {"text": "\n".join(reply_text), "images": reply_images},
            "reward": float(turn.reward), "terminated": turn.terminated,
            "truncated": turn.truncated, "confidence": _confidence(turn),
        }
        crop = _CROPPED.search(out["reply"]["text"])
        if crop and int(crop.group(5)) < len(seen) - len(reply_images):
            source, (w, h) = seen[int(crop.group(5))]
            x1, y1, x2, y2 = (int(v) for v in crop.groups()[:4])
            out["crop"] = {"source": source, "size": [w, h],
                           "box": [x1 / w, y1 / h, x2 / w, y2 / h]}  # fractions: CSS %
        return out

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        """Append records in one write (a crash loses at most this batch; a torn last line
        is skipped by the reader). Lone surrogates in any text are written as U+FFFD."""
        text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(valid_text(text))


def record_eval(output_dir: str | Path, env: Any, samples: Sequence[int],
                trajectories: Sequence[Trajectory]) -> None:
    """`axpo eval --save-trajectories`: one batch of episodes, keyed as results.jsonl keys
    them (env, task id, sample), with the reference answer of `env`'s task."""
    task = getattr(env.unwrapped, "task", None)
    rec = Recorder.for_env(Path(output_dir) / FOLDER, env)
    rows = []
    for s, t in zip(samples, trajectories):
        env = t.turns[0].snapshot.env_id if t.turns and t.turns[0].snapshot else None
        rows.append(rec.episode(t, f"{env}/{t.task_id}/{s}", sample=s,
                                reference=_reference(task, t)))
    rec.write(rows)


def only_eval_records(folder: str | Path) -> bool:
    """Whether everything recorded in `folder` is what `record_eval` writes (episodes without a
    training step), so `axpo eval --no-resume` may delete it. A line that is not a JSON record
    (a torn write) holds nothing to keep."""
    folder = Path(folder)
    if any(folder.glob("episodes.rank*.jsonl")):  # only a distributed training run writes these
        return False
    path = folder / RECORDS
    if not path.is_file():
        return True
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                row = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(row, dict) and (row.get("type") != "episode"
                                          or row.get("step") is not None):
                return False
    return True


def record_step(trainer: Any, groups: Sequence[Sequence[Trajectory]],
                branches: Sequence[Any]) -> None:
    """`GRPOConfig.save_trajectories`: a training step's groups and its AXPO branches (source,
    cut, confidence, resamples, recovery). A no-op when the option is off."""
    cfg = trainer.config
    if not getattr(cfg, "save_trajectories", False):
        return
    step = trainer.step + 1  # the step being taken, as the metrics log counts it
    rec = Recorder.for_env(Path(trainer.output_dir) / FOLDER, trainer.envs.envs[0],
                           trainer.accelerator.process_index)
    task = _task(cfg.env_id)
    rows = []
    for g, group in enumerate(groups):
        for i, t in enumerate(group):
            rows.append(rec.episode(t, f"step{step}/g{g}/r{i}", step=step, role="rollout",
                                    reference=_reference(task, t)))
    for b, br in enumerate(branches):
        source = groups[br.group][br.source]
        ids = []
        for k, t in enumerate(br.resamples):
            ids.append(f"step{step}/g{br.group}/b{b}/k{k}")
            rows.append(rec.episode(t, ids[-1], step=step, role="resample",
                                    source=f"step{step}/g{br.group}/r{br.source}",
                                    reference=_reference(task, t)))
        cut_turn = source.turns[br.turn].completion.text if br.turn < len(source.turns) else ""
        rows.append({
            "type": "branch", "step": step, "group": br.group, "index": b,
            "source": f"step{step}/g{br.group}/r{br.source}", "turn": br.turn, "keep": br.keep,
            "score": float(br.score), "prefix": cut_turn[:_cut(cut_turn, br.keep)],
            "resamples": ids, "rewards": [float(t.reward) for t in br.resamples],
            "recovered": bool(br.recovered),
        })
    rec.write(rows)


def _cut(text: str, keep: int) -> int:
    """Characters of the turn's text kept in the prefix: through the opening `<tool_call>` of
    its action (keep > 0; the ids' cut, in characters), or none (keep == 0)."""
    if keep <= 0:
        return 0
    body = max(0, text.rfind("</think>"))
    at = text.find("<tool_call>", body)
    return len(text) if at < 0 else at + len("<tool_call>")


def _confidence(turn: Turn) -> float | None:
    """Mean probability of the action span's sampled tokens, as AXPO ranks prefixes
    (`algorithms.axpo.action_confidence`, recomputed here to keep torch out)."""
    span, logprobs = turn.action, turn.completion.logprobs
    if span is None or not logprobs[span.start:span.end]:
        return None
    chosen = logprobs[span.start:span.end]
    return sum(math.exp(v) for v in chosen) / len(chosen)


def _question(messages: Sequence[dict[str, Any]]) -> str:
    user = next((m for m in messages if m.get("role") == "user"), None)
    if user is None:
        return ""
    content = user.get("content", "")
    if isinstance(content, str):
        return content
    return "\n".join(str(p.get("text", "")) for p in content if p.get("type") == "text")


_TASKS: dict[str, Any] = {}


def _task(env_id: str) -> Any:
    """The env's loaded task (loaded once per process), for the reference answers."""
    if env_id not in _TASKS:
        import gymnasium as gym

        env = gym.make(env_id, tools=[])
        _TASKS[env_id] = env.unwrapped.task
        env.close()
    return _TASKS[env_id]


def _reference(task: Any, trajectory: Trajectory) -> Any:
    """The reference answer of the episode's item (as `episode_item` made it for its seed);
    None when the task cannot say."""
    try:
        item = task.items[task.index_of(trajectory.task_id)]
        snapshot = trajectory.turns[0].snapshot if trajectory.turns else None
        if snapshot is not None and snapshot.seed is not None:
            item = task.episode_item(item, snapshot.seed)
        answer = item.answer
        return answer if isinstance(answer, (str, int, float, bool)) or answer is None \
            else json.loads(json.dumps(answer, default=str))
    except Exception:  # a reference is a help for the reader, never a reason to fail a run
        return None
