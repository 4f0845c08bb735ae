"""ZoomBoxes: a synthetic multimodal task where the crop call's arguments decide, for the
embedded training demo.

The 256x256 image is a 2x2 grid of 128-pixel slots, each holding a box framed in red, green,
blue or yellow and filled with a 1-pixel pattern in two shades of its colour (horizontal
stripes, vertical stripes, a checkerboard, or plain), drawn for each box on its own. The question
names a box by its colour and asks for its pattern. The tiny VL model sees the whole image at
128x128, where every pattern averages to its box's flat tint: the colours are visible, the
patterns are not. A `crop` of the box's middle (32 pixels a side) is shown at 4x the detail,
where the pattern is plain to see. So the agent must find the named box and put its middle into
the crop's bbox; a crop of another box shows that box's pattern, which is the asked one only by
chance (a quarter of the time). That is the failure AXPO targets: from a fixed thinking prefix
("I will crop the red box"), resampling the call's bbox can turn a wrong rollout right. Drawing
each box's pattern on its own (rather than four different ones) keeps a crop of a random box
(0.25 + 0.75 * 0.25 = 0.44) better than answering without one (0.25): with four different
patterns the two paid the same, and RL from a start that crops at random dropped the tool.

The asked box sits in the top left slot (the home slot) in 0.9 of the train and test items,
anywhere else otherwise; in the `demo` split, whose items the expert demonstrations play, it
sits in every slot alike. So an agent trained on the demonstrations crops a box at random (a
place prior it never saw), and RL on the tasks has the call's bbox to fix: cropping the top
left box pays 0.9 + 0.1 * 0.25 = 0.925, a random one 0.25 + 0.75 * 0.25 = 0.44, and beyond the
prior, by looking, 1. A prior shared by all colours, not one home per colour: a tiny model learns
within minutes where the box usually is, not which word goes with which place (a home per
colour was learned in SFT on some seeds and not on others, and by RL not at all).

Items come in a seeded order: `split="train"` (600), `"test"` (120) and `"demo"` (256) never
overlap.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image

from axpo_env.protocol import render_answer, render_tool_call
from axpo_env.tasks import demos
from axpo_env.tasks.base import LazyItems, Task, TaskItem

SIZES = {"test": 120, "train": 600, "demo": 256}
HOME_SLOT = 0  # the top left
#: The share of each split's items whose asked box sits in the home slot: the tasks lean to
#: it; the demonstrations do not (0.25: every slot alike).
HOME_SHARES = {"test": 0.9, "train": 0.9, "demo": 0.25}
SIDE, SLOT = 256, 128  # image side and box (slot) side, pixels
GRID = SIDE // SLOT
FRAME = 8  # frame width, pixels
ZOOM = 32  # side of the crop that shows a box's pattern, pixels
COLOURS = {"red": (220, 30, 30), "green": (30, 170, 30), "blue": (30, 60, 220),
           "yellow": (230, 200, 20)}
PATTERNS = ("horizontal", "vertical", "checkered", "plain")

#: One item: the slot of each box (in COLOURS order), its pattern index, the colour asked for.
_Key = tuple[tuple[int, ...], tuple[int, ...], int]


@functools.cache  # every env instance loads a split: draw them all once per process
def _split_keys() -> dict[str, tuple[_Key, ...]]:
    """Every split's items, drawn without replacement from all 24 box layouts x 256 pattern
    assignments x 4 questions, `HOME_SHARES[split]` of each with the asked box in the home
    slot, each in a seeded order; the splits take consecutive runs of the two shuffled pools
    (home, away), in SIZES order, so no two share an item."""
    rng = np.random.default_rng(2026_11)
    keys = [(slots, patterns, asked)
            for slots in itertools.permutations(range(GRID * GRID), len(COLOURS))
            for patterns in itertools.product(range(len(PATTERNS)), repeat=len(COLOURS))
            for asked in range(len(COLOURS))]
    home = [k for k in keys if k[0][k[2]] == HOME_SLOT]
    away = [k for k in keys if k[0][k[2]] != HOME_SLOT]
    home, away = ([pool[i] for i in rng.permutation(len(pool))] for pool in (home, away))
    splits = {}
    for name, size in SIZES.items():
        at_home = round(size * HOME_SHARES[name])
        chosen = home[:at_home] + away[:size - at_home]
        home, away = home[at_home:], away[size - at_home:]
        order = np.random.default_rng(len(chosen)).permutation(len(chosen))
        splits[name] = tuple(chosen[i] for i in order)
    return splits


def slot_box(slot: int, grid: int = GRID) -> list[int]:
    """The slot's [x1, y1, x2, y2] in pixels on a `grid` x `grid` layout (slots are numbered row
    by row from the top left)."""
    x, y = slot % grid * SLOT, slot // grid * SLOT
    return [x, y, x + SLOT, y + SLOT]


def zoom_box(slot: int, grid: int = GRID) -> list[int]:
    """The crop that shows a box's pattern: the middle ZOOM pixels of its slot, which the tiny
    model sees at 4 view pixels per image pixel (the whole image at 1/2); it starts on an even
    pixel, so every crop of one pattern looks the same."""
    x1, y1, x2, y2 = slot_box(slot, grid)
    q = (SLOT - ZOOM) // 2
    return [x1 + q, y1 + q, x2 - q, y2 - q]


@functools.cache  # 16 distinct fills; drawing one costs more than the rest of an image
def _fill(pattern: str, colour: tuple[int, int, int], side: int) -> np.ndarray:
    """A side x side fill in two shades of `colour` whose every 2x2 block averages to the same
    tint (so downscaling by 2 or more erases the pattern, not the colour); drawn from even
    image coordinates."""
    y, x = np.mgrid[:side, :side]
    ink = {"horizontal": y % 2, "vertical": x % 2, "checkered": (x + y) % 2}.get(pattern)
    c = np.array(colour, float)
    light, dark = (c + 255) / 2, c / 2
    if ink is None:
        out = np.broadcast_to((light + dark) / 2, (side, side, 3))
    else:
        out = np.where(ink[..., None] == 1, light, dark)
    out = np.round(out).astype(np.uint8)
    out.flags.writeable = False  # shared by every image drawn with it
    return out


def _image(slots: Sequence[int], patterns: Sequence[int], grid: int = GRID,
           colours: dict[str, tuple[int, int, int]] = COLOURS) -> Image.Image:
    """The boxes drawn on a `grid` x `grid` layout: box i in colour i at slots[i]."""
    side = grid * SLOT
    pixels = np.full((side, side, 3), 255, np.uint8)
    for colour, slot, pattern in zip(colours.values(), slots, patterns):
        x1, y1, x2, y2 = slot_box(slot, grid)
        pixels[y1:y2, x1:x2] = colour
        inner = SLOT - 2 * FRAME
        pixels[y1 + FRAME:y2 - FRAME, x1 + FRAME:x2 - FRAME] = _fill(PATTERNS[pattern], colour,
                                                                     inner)
    return Image.fromarray(pixels)


class ZoomBoxes(Task):
    """Name the pattern inside one of four coloured boxes; only a crop of that box shows it."""

    env_id: ClassVar[str] = "AXPO-ZoomBoxes-v0"
    default_tools: ClassVar[tuple[str, ...]] = ("crop",)
    default_split: ClassVar[str] = "train"
    instructions: ClassVar[str] = (
        f"Each coloured box holds a pattern ({', '.join(PATTERNS)}) too fine to see. "
        "crop(bbox) zooms in; bbox is [x1, y1, x2, y2] in pixels.")

    def load_items(self) -> Sequence[TaskItem]:
        if self.split not in SIZES:
            raise ValueError(f"ZoomBoxes has splits {sorted(SIZES)}, not {self.split!r}")
        keys = _split_keys()[self.split]
        ids = [f"{self.split}-{i}" for i in range(len(keys))]

        def build(row: tuple[str, _Key]) -> TaskItem:
            task_id, (slots, patterns, asked) = row
            colour = list(COLOURS)[asked]
            return TaskItem(
                task_id, f"What pattern is inside the {colour} box?",
                (_image(slots, patterns),), PATTERNS[patterns[asked]],
                {"colour": colour, "box": zoom_box(slots[asked]),
                 "boxes": {c: zoom_box(s) for c, s in zip(COLOURS, slots)},
                 "patterns": {c: PATTERNS[p] for c, p in zip(COLOURS, patterns)}})

        return LazyItems(list(zip(ids, keys)), ids, build)

    def score(self, item: TaskItem, response: str) -> float:
        return float(response.strip().lower() == item.answer)


def expert_turns(item: TaskItem, colour: str | None = None) -> list[str]:
    """What a competent agent writes: name the box, crop its slot, then answer what the crop
    shows. `colour` crops another box instead (what a wrong rollout does)."""
    colour = colour or item.metadata["colour"]
    seen = item.metadata["patterns"][colour]
    return [
        f"<think>\nI will crop the {item.metadata['colour']} box.\n</think>\n\n"
        + render_tool_call("crop", {"bbox": item.metadata["boxes"][colour]}),
        f"<think>\nThe crop shows the {seen} pattern.\n</think>\n\n" + render_answer(seen),
    ]


def write_expert_demos(folder: str | Path, count: int, drills: bool = True) -> Path:
    """Write `count` scripted expert episodes of the demo split as SFT JSONL
    (`folder/demos.jsonl`; see `axpo_env.tasks.demos.write_expert_demos`), and with `drills` one
    reading drill per episode after them: the episode's crop alone, asked for its pattern and
    answered as the episode's second turn is. The drills teach the reading of a crop directly,
    in ~80 tokens instead of ~280: without them a tiny model learns to read the crop inside
    episodes only after 300-500 SFT steps, and on some seeds not by then."""
    path = demos.write_expert_demos(ZoomBoxes.env_id, expert_turns, folder, count, "demo")
    if not drills:
        return path
    episodes = [json.loads(line) for line in path.read_text().splitlines()]
    with open(path, "a") as f:
        for episode in episodes:
            system, _, _, tool, answer = episode["messages"]
            crop = next(p for p in tool["content"] if p["type"] == "image")
            user = {"role": "user", "content": [crop, {"type": "text", "text": DRILL_QUESTION}]}
            f.write(json.dumps({"messages": [system, user, answer]}) + "\n")
    return path


#: The question of a reading drill (see `write_expert_demos`).
DRILL_QUESTION = "What pattern is inside this box?"
