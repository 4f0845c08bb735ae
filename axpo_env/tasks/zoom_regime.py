"""ZoomRegime: ZoomBoxes on a 3x3 grid, with a mixed SFT start, built to put the embedded demo in
the AXPO paper's regime (issue 26): tools called in a minority of rollouts, the tool-using
rollouts of many question groups all wrong, and no-tool rollouts right by chance often enough
that GRPO's update can move away from the tool.

The image is a `grid` x `grid` grid of 128-pixel slots (384x384 at the default grid 3), each
holding a box of its own colour (the first grid*grid of `COLOURS`), framed and filled with a
1-pixel pattern in two shades of its colour, drawn for each box on its own, as in
`axpo_env.tasks.zoom_boxes`. The question names a box by colour and asks for its pattern. The
tiny VL model sees the whole image at 128x128, where the colours are visible and the patterns
are not; a `crop` of the box's middle (32 pixels a side) shows the pattern. So the right crop
decides the answer: the named box's crop pays 1, a crop of another box pays only when that box
happens to share the pattern (a quarter of the time), a crop at a random slot 1/9 + 8/9 * 1/4 =
1/3 on the 3x3 grid, and an answer without a crop (a guess among the four patterns) 1/4.

The asked box sits in the home slot (the top left) in `home_share` of the train and test items
(default 0.5; 1/9 is no prior at all), elsewhere otherwise; in the `demo` split, whose items the
expert demonstrations play, it sits anywhere alike. So SFT leaves the crop's place at random, and
RL has something to learn about the call's bbox: cropping the home slot pays 0.5 + 0.5 * 1/4 =
0.625 at the default, against 1/3 for a random crop and 1/4 for a guess.

`write_expert_demos(..., tool_share=0.35)` writes demonstrations of which only `tool_share` crop
(name the box, crop it, answer what the crop shows); the rest name the box and answer without a
crop with a guess drawn uniformly among the patterns. Both kinds open alike ("I will crop the red
box." / "I will answer the red box without a crop."), so an SFT model samples the choice at one
word, at about `tool_share`, and a tool-using rollout's thinking prefix names the box: resampling
the call from it (AXPO) can hit the right box.

Items come in a seeded order: `split="train"` (600), `"test"` (120) and `"demo"` (256) never
overlap; the demo split does not depend on `home_share`, so one SFT start serves every share.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from axpo_env.protocol import render_answer
from axpo_env.tasks import demos, zoom_boxes
from axpo_env.tasks.base import LazyItems, Task, TaskItem
from axpo_env.tasks.zoom_boxes import (  # drawn and played as ZoomBoxes is, on a wider grid
    DRILL_QUESTION,
    PATTERNS,
    _image,
    expert_turns,
)

SIZES = {"test": 120, "train": 600, "demo": 256}
HOME_SLOT = 0  # the top left
GRIDS = (2, 3)
DEFAULT_GRID = 3
DEFAULT_HOME_SHARE = 0.5
#: The share of expert demonstrations that call the tool (the rest answer with a guess).
DEFAULT_TOOL_SHARE = 0.35
COLOURS = {**zoom_boxes.COLOURS, "purple": (140, 40, 200), "orange": (240, 130, 20),
           "cyan": (20, 200, 210), "pink": (240, 100, 180), "grey": (128, 128, 128)}

#: One item: the slot of each box (in COLOURS order), its pattern index, the colour asked for.
_Key = tuple[tuple[int, ...], tuple[int, ...], int]


def _draw(rng: np.random.Generator, n: int, home: bool | None) -> _Key:
    """A random item of n boxes; `home` True puts the asked box in the home slot, False out of
    it, None anywhere."""
    slots = [int(s) for s in rng.permutation(n)]
    patterns = tuple(int(p) for p in rng.integers(len(PATTERNS), size=n))
    asked = int(rng.integers(n))
    at = slots.index(HOME_SLOT)
    if home and asked != at:
        slots[asked], slots[at] = slots[at], slots[asked]
    elif home is False and asked == at:
        other = (asked + 1 + int(rng.integers(n - 1))) % n
        slots[asked], slots[other] = slots[other], slots[asked]
    return tuple(slots), patterns, asked


@functools.cache  # every env instance loads a split: draw them once per process and option set
def _split_keys(grid: int, home_share: float) -> dict[str, tuple[_Key, ...]]:
    """Every split's items, distinct across splits. The demo split is drawn first from its own
    stream (the asked box anywhere alike), so it is the same for every `home_share`; then test
    and train, `round(size * home_share)` of each with the asked box in the home slot, in a
    seeded order."""
    n = grid * grid
    seen: set[_Key] = set()

    def unique(rng: np.random.Generator, home: bool | None) -> _Key:
        while True:
            key = _draw(rng, n, home)
            if key not in seen:
                seen.add(key)
                return key

    rng = np.random.default_rng(2026_26_0 + grid)
    splits = {"demo": tuple(unique(rng, None) for _ in range(SIZES["demo"]))}
    rng = np.random.default_rng(2026_26_1 + grid)
    for name in ("test", "train"):
        size = SIZES[name]
        at_home = round(size * home_share)
        keys = [unique(rng, i < at_home) for i in range(size)]
        splits[name] = tuple(keys[i] for i in rng.permutation(size))
    return splits


def zoom_box(slot: int, grid: int = DEFAULT_GRID) -> list[int]:
    """The crop that shows a box's pattern (`zoom_boxes.zoom_box`, on this task's grid)."""
    return zoom_boxes.zoom_box(slot, grid)


class ZoomRegime(Task):
    """Name the pattern inside one of nine coloured boxes; only a crop of that box shows it.
    Options (`gym.make(..., task_options={...})`): `grid` (2 or 3) and `home_share`."""

    env_id: ClassVar[str] = "AXPO-ZoomRegime-v0"
    default_tools: ClassVar[tuple[str, ...]] = ("crop",)
    default_split: ClassVar[str] = "train"
    instructions: ClassVar[str] = (
        f"Each coloured box holds a pattern ({', '.join(PATTERNS)}) too fine to see. "
        "crop(bbox) zooms in; bbox is [x1, y1, x2, y2] in pixels.")

    def __init__(self, split: str | None = None, data_dir: str | Path | None = None,
                 grid: int = DEFAULT_GRID, home_share: float = DEFAULT_HOME_SHARE,
                 **kwargs: Any):
        super().__init__(split, data_dir, **kwargs)
        if grid not in GRIDS:
            raise ValueError(f"ZoomRegime grid must be one of {GRIDS}, got {grid!r}")
        if not 0.0 <= home_share <= 1.0:
            raise ValueError(f"ZoomRegime home_share must be in [0, 1], got {home_share!r}")
        self.grid, self.home_share = grid, float(home_share)

    def load_items(self) -> Sequence[TaskItem]:
        if self.split not in SIZES:
            raise ValueError(f"ZoomRegime has splits {sorted(SIZES)}, not {self.split!r}")
        grid = self.grid
        keys = _split_keys(grid, self.home_share)[self.split]
        ids = [f"{self.split}-{i}" for i in range(len(keys))]
        colours = list(COLOURS)[:grid * grid]

        def build(row: tuple[str, _Key]) -> TaskItem:
            task_id, (slots, patterns, asked) = row
            colour = colours[asked]
            return TaskItem(
                task_id, f"What pattern is inside the {colour} box?",
                (_image(slots, patterns, grid, COLOURS),), PATTERNS[patterns[asked]],
                {"colour": colour, "slot": slots[asked], "box": zoom_box(slots[asked], grid),
                 "boxes": {c: zoom_box(s, grid) for c, s in zip(colours, slots)},
                 "patterns": {c: PATTERNS[p] for c, p in zip(colours, patterns)}})

        return LazyItems(list(zip(ids, keys)), ids, build)

    def score(self, item: TaskItem, response: str) -> float:
        return float(response.strip().lower() == item.answer)


def guess_turns(item: TaskItem, guess: str) -> list[str]:
    """An answer without the tool: name the box, answer `guess` (the pattern is not visible)."""
    return [f"<think>\nI will answer the {item.metadata['colour']} box without a crop.\n"
            f"</think>\n\n" + render_answer(guess)]


def demo_plan(count: int, tool_share: float, seed: int = 0) -> list[str | None]:
    """Per demo item: None (crop, the expert) or the pattern guessed without the tool; exactly
    `round(count * tool_share)` items crop, which ones and the guesses drawn from `seed`."""
    rng = np.random.default_rng(seed)
    tool = set(rng.permutation(count)[:round(count * tool_share)].tolist())
    guesses = rng.integers(len(PATTERNS), size=count)
    return [None if i in tool else PATTERNS[guesses[i]] for i in range(count)]


def write_expert_demos(folder: str | Path, count: int, tool_share: float = DEFAULT_TOOL_SHARE,
                       drills: bool = True, grid: int = DEFAULT_GRID, seed: int = 0) -> Path:
    """Write `count` demonstrations of the demo split as SFT JSONL (`folder/demos.jsonl`):
    `round(count * tool_share)` expert episodes that crop the named box, the others answers
    without the tool with a uniform guess (`demo_plan`). With `drills`, one reading drill per
    item after them (the crop of its named box alone, asked for its pattern and answered as the
    expert's second turn), for every item, crop or not: the reading of a crop is learned alike
    whatever the tool share (crops played in `folder/drills/`)."""
    if not 0.0 <= tool_share <= 1.0:
        raise ValueError(f"tool_share must be in [0, 1], got {tool_share!r}")
    folder = Path(folder)
    options = {"task_options": {"grid": grid}}
    plan = demo_plan(count, tool_share, seed)

    def play(item: TaskItem) -> list[str]:
        guess = plan[int(item.task_id.rsplit("-", 1)[1])]  # demo-{i}: its place in the plan
        return expert_turns(item) if guess is None else guess_turns(item, guess)

    path = demos.write_expert_demos(ZoomRegime.env_id, play, folder, count, "demo", **options)
    if not drills:
        return path
    crops = demos.write_expert_demos(ZoomRegime.env_id, expert_turns, folder / "drills", count,
                                     "demo", **options)
    with open(path, "a") as f:
        for line in crops.read_text().splitlines():
            system, _, _, tool, answer = json.loads(line)["messages"]
            crop = next(p for p in tool["content"] if p["type"] == "image")
            crop = {**crop, "image": f"drills/{crop['image']}"}
            user = {"role": "user", "content": [crop, {"type": "text", "text": DRILL_QUESTION}]}
            f.write(json.dumps({"messages": [system, user, answer]}) + "\n")
    return path
