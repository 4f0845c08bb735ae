"""What a task (benchmark) is: items in the benchmark's own schema, and its scorer.

A `Task` subclass loads its benchmark (a local file in the published schema, a hub name through
`datasets`, or the bundled fixture), turns each row into a `TaskItem`, and scores a final answer
by the benchmark's published rules. `ToolUseEnv` needs nothing else from it. Your own data and a
scoring function become a task without a subclass through `axpo_env.tasks.quick.make_task`;
docs/tasks.md is the reference for both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image

FIXTURES = Path(__file__).parent / "fixtures"

#: A model-based grader, `judge(item, response) -> score in [0, 1]`, for benchmarks whose
#: official scorer asks an LLM; tasks fall back to their published rule when none is given.
Judge = Callable[["TaskItem", str], float]

#: How a task scores (`gym.make(env_id, task_options={"scoring": ...})`):
#: "official" returns the verdict the benchmark's published scoring code returns on the same
#: extracted answer, quirks included, so numbers compare with published ones (`axpo eval`'s
#: default); "lenient" accepts the dressing an agent puts around a right answer (`\boxed{}`,
#: "Answer:", units, case) and is the default of a task made directly, i.e. the RL reward.
#: Why lenient for training: official rules reward some wrong answers (MathVista maps any text
#: to its nearest choice, We-Math reads the first character, DynaMath finds the letter in the
#: first three) and reject right ones in another format, so a policy trained on them learns
#: the scorer's quirks; each task module lists where its lenient mode departs from upstream.
SCORING_MODES = ("official", "lenient")
DEFAULT_SCORING = "lenient"


@dataclass(frozen=True)
class TaskItem:
    """One question: the prompt text, its images (shared, never copied) and the ground truth.

    `metadata` keeps the benchmark's own fields (choices, answer type, precision...) that the
    scorer needs.
    """

    task_id: str
    question: str
    images: tuple[Image.Image, ...]
    answer: Any
    metadata: Mapping[str, Any] = field(default_factory=dict)


class Task:
    """A benchmark as the env sees it. Subclasses set the class attributes and implement
    `load_items` and `score`:

    - `load_items()` returns the items of `self.split` (from `self.data_dir` when given, else
      the task's own data); it runs once, on first use of `items`, so `gym.make` stays fast.
    - `score(item, response)` returns a number in [0, 1] for the final answer's text (what the
      agent wrote inside `<answer>`): the episode's reward; a score of 1 is `info["correct"]`.
    - `episode_item(item, seed)`, optional, varies an item by the episode's seed.

    `gym.make(env_id, split=..., data_dir=..., task_options={...})` passes these (and the
    options) to the constructor. Register a subclass with `gym.register(id=Cls.env_id,
    entry_point="axpo_env.env:ToolUseEnv", kwargs={"task": Cls})`, or ship it under the
    entry-point group `axpo_env.tasks` (see `axpo_env.tasks`).

    Args:
        split: which split to load (benchmark-specific, e.g. "testmini").
        data_dir: a local file/folder in the benchmark's published schema, or a hub dataset name;
            None uses the small fixture bundled with axpo.
        judge: a model-based grader for benchmarks whose official scorer uses one; tasks that
            score by rule alone ignore it.
        scoring: "official" or "lenient" (see `SCORING_MODES`); tasks with one published rule
            and nothing to relax score the same in both.
    """

    #: Gymnasium id, e.g. "AXPO-MathVista-v0".
    env_id: ClassVar[str] = ""
    #: Tools the env gets when `gym.make` is called without `tools=`.
    default_tools: ClassVar[tuple[str, ...]] = ("crop", "python", "calculator")
    #: Instructions placed in the system prompt before the answer-format rule.
    instructions: ClassVar[str] = "Solve the task. Use the tools when they help."
    #: True when the task's tools make episodes non-deterministic (web search).
    nondeterministic: ClassVar[bool] = False
    default_split: ClassVar[str] = "test"

    def __init__(
        self, split: str | None = None, data_dir: str | Path | None = None,
        judge: Judge | None = None, scoring: str = DEFAULT_SCORING,
    ):
        if scoring not in SCORING_MODES:
            raise ValueError(f"scoring must be one of {SCORING_MODES}, got {scoring!r}")
        self.split = split or self.default_split
        self.data_dir = data_dir
        self.judge = judge
        self.scoring = scoring
        self._items: Sequence[TaskItem] | None = None

    @property
    def items(self) -> Sequence[TaskItem]:
        """The items, loaded on first use (so `gym.make` stays fast)."""
        if self._items is None:
            self._items = self.load_items()
        return self._items

    def load_items(self) -> Sequence[TaskItem]:
        raise NotImplementedError

    def episode_item(self, item: TaskItem, seed: int) -> TaskItem:
        """The item as one episode shows it; override to vary it by the episode's seed (e.g.
        V* shuffles its options). Must be a pure function of `(item, seed)`: restore calls it."""
        return item

    def score(self, item: TaskItem, response: str) -> float:
        """Score a final answer (the text inside `<answer>`) in [0, 1]."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.items)

    @property
    def task_ids(self) -> list[str]:
        """Every item's id, in order (without decoding lazily loaded images)."""
        items = self.items
        return list(items.ids) if isinstance(items, LazyItems) else [it.task_id for it in items]

    def index_of(self, task_id: str) -> int:
        """Position of `task_id`; KeyError names a few valid ids."""
        ids = self.task_ids
        try:
            return ids.index(task_id)
        except ValueError:
            some = ", ".join(repr(i) for i in ids[:5])
            name = type(self).__name__
            raise KeyError(f"{name} has no task_id {task_id!r} (e.g. {some})") from None


class LazyItems(Sequence[TaskItem]):
    """Items built from rows on first access (decoding an image only when its item is used)."""

    def __init__(self, rows: Sequence[Any], ids: list[str], build: Any, cache_size: int = 64):
        self.rows, self.ids, self._build = rows, ids, build
        self._cache: dict[int, TaskItem] = {}
        self._cache_size = cache_size

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> TaskItem:  # type: ignore[override]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        item = self._cache.get(index)
        if item is None:
            if len(self._cache) >= self._cache_size:
                self._cache.pop(next(iter(self._cache)))
            item = self._cache[index] = self._build(self.rows[index])
        return item
