"""Expert demonstrations for SFT: scripted turns played through the real env, written as JSONL.

The synthetic training tasks (ToolArith, ZoomBoxes) each script what a competent agent writes;
this module plays those turns through `gym.make(env_id)` so the tool results in the demos are
exactly what the env returns, and writes them in the format `axpo sft` / `train_sft` read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from axpo_env.protocol import convert_tool_calls
from axpo_env.tasks.base import TaskItem


def write_expert_demos(env_id: str, expert_turns: Callable[[TaskItem], list[str]],
                       folder: str | Path, count: int, split: str = "train",
                       tools: Sequence[Any] | None = None, **env_kwargs: Any) -> Path:
    """Play `expert_turns(item)` on the first `count` items of `split` and write the
    conversations to `folder/demos.jsonl` (images as PNGs beside it, named `img{i}.png`,
    `img{i}-{k}.png` for tool images). No tool schemas go in: a 1.5M model does not learn to
    copy numbers behind a ~500-token schema block (0/32 against 32/32 without it, on ToolArith);
    the system prompt names the tool. `tools`: the env's tools (None: the task's defaults),
    e.g. `["crop:axpo"]` for turns that call `image_zoom_in`; `env_kwargs` go to `gym.make`
    too (e.g. a `system_prompt` that names those tools, or `tool_call_format="qwen3_coder"`:
    the expert's Hermes calls, `render_tool_call`'s default, are then rewritten in that format
    with `convert_tool_calls` before the env reads them, so the demos teach the env's format)."""
    import gymnasium as gym

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    env = gym.make(env_id, split=split, tools=tools, **env_kwargs)
    available = len(env.unwrapped.task)
    fmt = getattr(env.unwrapped, "tool_call_format", "hermes")
    if not 1 <= count <= available:
        env.close()
        raise ValueError(f"write_expert_demos: count must be in 1..{available} (the items of "
                         f"{env_id} split {split!r}), got {count}")
    with open(folder / "demos.jsonl", "w") as f:
        for i in range(count):
            obs, _ = env.reset(seed=i, options={"index": i})
            for action in expert_turns(env.unwrapped._item):
                obs, *_ = env.step(convert_tool_calls(action, fmt) if fmt != "hermes" else action)
            messages, k = [], 0
            for m in obs["messages"]:
                parts = []
                for p in m["content"]:
                    if p["type"] == "image":
                        name = f"img{i}.png" if k == 0 else f"img{i}-{k}.png"
                        p["image"].save(folder / name)
                        p, k = {"type": "image", "image": name}, k + 1
                    parts.append(p)
                messages.append({"role": m["role"], "content": parts})
            f.write(json.dumps({"messages": messages}) + "\n")
    env.close()
    return folder / "demos.jsonl"
