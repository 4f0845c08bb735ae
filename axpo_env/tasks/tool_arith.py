"""ToolArith: a synthetic task whose answer needs the calculator, for the embedded training demo.

Each item shows two numbers (in the question and drawn in the image) and asks for their product.
A small model cannot multiply 3-digit by 2-digit numbers in its head, but it can learn to copy
them into a calculator call and copy the result into its answer: the tool is the only way to
be right, which makes tool use, and the Thinking-Acting Gap, measurable on a CPU in minutes.
Items are generated from a seed: `split="train"` (512) and `split="test"` (64) never overlap.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image, ImageDraw

from axpo_env.protocol import render_answer, render_tool_call
from axpo_env.tasks import demos
from axpo_env.tasks.base import LazyItems, Task, TaskItem

SIZES = {"train": 512, "test": 64}


def _numbers(split: str) -> list[tuple[int, int]]:
    rng = np.random.default_rng(2026)
    pairs = sorted({(int(a), int(b)) for a, b in zip(rng.integers(100, 1000, 4000),
                                                     rng.integers(10, 100, 4000))})
    rng.shuffle(pairs)
    test, train = pairs[:SIZES["test"]], pairs[SIZES["test"]:SIZES["test"] + SIZES["train"]]
    return train if split == "train" else test


def _image(a: int, b: int) -> Image.Image:
    img = Image.new("RGB", (96, 48), "white")
    draw = ImageDraw.Draw(img)
    draw.text((8, 6), f"{a}", fill="black")
    draw.text((8, 26), f"x {b}", fill="black")
    return img


class ToolArith(Task):
    """Products of a 3-digit and a 2-digit number; the calculator is the way to be right."""

    env_id: ClassVar[str] = "AXPO-ToolArith-v0"
    default_tools: ClassVar[tuple[str, ...]] = ("calculator",)
    default_split: ClassVar[str] = "train"
    instructions: ClassVar[str] = ("Answer with the exact number. Tool: calculator(expression)"
                                   " evaluates a math expression.")

    def load_items(self) -> Sequence[TaskItem]:
        if self.split not in SIZES:
            raise ValueError(f"ToolArith has splits {sorted(SIZES)}, not {self.split!r}")
        pairs = _numbers(self.split)
        ids = [f"{self.split}-{i}" for i in range(len(pairs))]

        def build(row: tuple[str, int, int]) -> TaskItem:
            task_id, a, b = row
            return TaskItem(task_id, f"What is {a} * {b}?", (_image(a, b),), str(a * b),
                            {"a": a, "b": b})

        return LazyItems([(i, a, b) for i, (a, b) in zip(ids, pairs)], ids, build)

    def score(self, item: TaskItem, response: str) -> float:
        return float(response.strip().replace(",", "") == item.answer)


def expert_turns(item: TaskItem) -> list[str]:
    """What a competent agent writes: think, call the calculator, then answer its result."""
    a, b = item.metadata["a"], item.metadata["b"]
    return [
        f"<think>\nI need {a} * {b}. I will use the calculator.\n</think>\n\n"
        + render_tool_call("calculator", {"expression": f"{a} * {b}"}),
        f"<think>\nThe calculator says {a * b}.\n</think>\n\n" + render_answer(str(a * b)),
    ]


def write_expert_demos(folder: str | Path, count: int) -> Path:
    """Write `count` scripted expert episodes of the train split as SFT JSONL
    (`folder/demos.jsonl`); see `axpo_env.tasks.demos.write_expert_demos`."""
    return demos.write_expert_demos(ToolArith.env_id, expert_turns, folder, count)
