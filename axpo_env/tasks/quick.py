"""A task from your own data and a scoring function, without writing a `Task` subclass.

    from axpo_env.tasks.quick import make_task

    def score(item, response):          # Task.score's signature: the TaskItem, the answer text
        return response.strip() == item.answer

    make_task("Capitals-v0", {"train": [{"question": "Capital of France?", "answer": "Paris"}],
                              "test": [{"question": "Capital of Peru?", "answer": "Lima"}]},
              score, tools=["python"])
    env = gym.make("Capitals-v0", split="test")

A record is a dict: `question` (text), `answer` (whatever `score` compares with), optionally
`image` (one) or `images` (a list; each a path, a PIL image, bytes or base64 text), `id`, and any
other fields, which land in `item.metadata` for the scorer. Data is a list of records (one split),
a dict split -> records, a `datasets.Dataset`/`DatasetDict`, or where such records are stored:
a JSON/JSONL/CSV/parquet file, a folder of `<split>.jsonl` (or `data/<split>-*.parquet`) files,
or a hub dataset name, read by the loader every benchmark uses (`axpo_env.tasks.loading`).
`gym.make(env_id, data_dir=...)` points the task at other data of the same layout.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from axpo_env.errors import DatasetError
from axpo_env.tasks.answer_match import normalize_answer
from axpo_env.tasks.base import Judge, LazyItems, Task, TaskItem
from axpo_env.tasks.loading import decode_image, load_rows, unique_ids
from axpo_env.tasks.scoring import clean_answer

#: `score(item, response) -> float | bool`: `response` is the final answer's text (inside
#: `<answer>`), `item` the `TaskItem` (`item.answer`, `item.metadata`); 1 is right, 0 wrong.
Score = Callable[[TaskItem, str], float]
#: Records in memory or where they are stored (see the module docstring).
Data = Iterable[Mapping[str, Any]] | Mapping[str, Iterable[Mapping[str, Any]]] | str | Path

FIELDS = ("question", "answer", "image", "images", "id")
_ONE_SPLIT = "train"


def exact_score(item: TaskItem, response: str) -> float:
    """1 when the answer equals `item.answer` (or one of a list of answers) after dropping
    `\\boxed{}` / "Answer:" and SQuAD's normalization (case, punctuation, articles, spaces)."""
    golds = item.answer if isinstance(item.answer, (list, tuple)) else [item.answer]
    said = normalize_answer(clean_answer(response))
    return float(bool(said) and any(said == normalize_answer(g) for g in golds if g is not None))


def number_score(item: TaskItem, response: str) -> float:
    """1 when the answer is the number `item.answer` (relative tolerance 1e-6; thousands commas,
    `$`, `%`, `\\boxed{}` and "Answer:" ignored)."""
    said, gold = _number(clean_answer(response)), _number(item.answer)
    return float(said is not None and gold is not None
                 and math.isclose(said, gold, rel_tol=1e-6, abs_tol=1e-9))


SCORES: dict[str, Score] = {"exact": exact_score, "number": number_score}


def _number(value: Any) -> float | None:
    text = re.sub(r"[,$%\s]", "", str(value))
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


class RecordsTask(Task):
    """A task whose items are records and whose scorer is a function; `make_task` makes the
    subclasses. Class attributes: `data` (as `make_task` takes it), `score_fn`, `columns`
    (record field -> column name), `image_root` (where relative image paths are read)."""

    data: ClassVar[Any] = None
    score_fn: ClassVar[Score] = staticmethod(exact_score)
    columns: ClassVar[Mapping[str, str]] = {}
    image_root: ClassVar[Path | None] = None
    _warned: ClassVar[bool] = False

    def __init__(self, split: str | None = None, data_dir: str | Path | None = None,
                 judge: Judge | None = None):
        # no `scoring=`: one function scores, so `axpo eval` reports it as the task's own rule
        super().__init__(split=split, data_dir=data_dir, judge=judge)

    def load_items(self) -> Sequence[TaskItem]:
        name, col = self.env_id, {f: self.columns.get(f, f) for f in FIELDS}
        rows, base = self._rows()
        table = hasattr(rows, "column_names")  # a datasets.Dataset: columns checked once
        if not table:
            rows = list(rows)
        if len(rows) == 0:
            raise DatasetError(f"{name} split {self.split!r} has no records")
        for i, keys in enumerate([rows.column_names] if table else rows):
            if not isinstance(keys, Mapping) and not table:
                raise DatasetError(f"{name} split {self.split!r}, record {i}: expected a dict "
                                   f"with {col['question']!r} and {col['answer']!r}, got "
                                   f"{type(keys).__name__}")
            missing = [col[f] for f in ("question", "answer") if col[f] not in keys]
            if missing:
                where = "its columns" if table else f"record {i}"
                raise DatasetError(f"{name} split {self.split!r}: {where} lack(s) "
                                   f"{' and '.join(map(repr, missing))} (found: "
                                   f"{', '.join(map(repr, keys)) or 'nothing'}); make_task("
                                   "columns=...) maps other names")
        given = (list(rows[col["id"]]) if col["id"] in rows.column_names else [None] * len(rows)
                 ) if table else [r.get(col["id"]) for r in rows]
        ids = unique_ids([str(g) if g is not None else f"{self.split}-{i}"
                          for i, g in enumerate(given)], name, "ids")

        def build(index: int) -> TaskItem:
            row = dict(rows[index])
            images = row.pop(col["images"], None) or []
            images = list(images) if isinstance(images, (list, tuple)) else [images]
            one = row.pop(col["image"], None)
            if one is not None:
                images.insert(0, one)
            question, answer = row.pop(col["question"]), row.pop(col["answer"])
            row.pop(col["id"], None)
            label = f"{name} item {ids[index]!r}"
            return TaskItem(ids[index], str(question),
                            tuple(decode_image(im, base, label) for im in images), answer, row)

        return LazyItems(list(range(len(ids))), ids, build)

    def _rows(self) -> tuple[Any, Path | None]:
        """The split's rows and the folder relative image paths are read from."""
        source = self.data_dir if self.data_dir is not None else self.data
        if isinstance(source, (str, Path)):
            required = [self.columns.get(f, f) for f in ("question", "answer")]
            return load_rows(self.env_id, source, self.split, required=required,
                             id_column=self.columns.get("id", "id"))
        if isinstance(source, Mapping):
            if self.split not in source:
                raise DatasetError(f"{self.env_id} has no split {self.split!r}; its splits: "
                                   f"{', '.join(map(repr, source))}")
            return source[self.split], self.image_root
        if self.split == self.default_split:
            return source, self.image_root
        raise DatasetError(
            f"{self.env_id} has one split, {self.default_split!r}, not {self.split!r}; give "
            "make_task a dict {'train': [...], 'test': [...]} for more")

    def score(self, item: TaskItem, response: str) -> float:
        """`score_fn(item, response)` as a float. An exception in it counts as a wrong answer
        (model text is hostile: `float("Paris")` must not end a training run), with one
        warning per task; a value that is not a number in [0, 1] is a bug and raises."""
        fn = type(self).score_fn
        try:
            value = fn(item, response)
        except Exception as e:
            if not type(self)._warned:
                type(self)._warned = True
                warnings.warn(f"{self.env_id}: the score function {_name(fn)} raised "
                              f"{type(e).__name__}: {e} (on answer {response[:80]!r}); such "
                              "answers score 0 (warned once)", RuntimeWarning, stacklevel=2)
            return 0.0
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not -1e-9 <= number <= 1 + 1e-9:  # also refuses nan
            raise ValueError(f"{self.env_id}: the score function {_name(fn)} returned {value!r} "
                             f"for item {item.task_id!r}; a score is a number in [0, 1]")
        return min(1.0, max(0.0, number))


def make_task(
    env_id: str,
    data: Data,
    score: Score | str = "exact",
    *,
    tools: Sequence[Any] = Task.default_tools,
    instructions: str = Task.instructions,
    default_split: str | None = None,
    columns: Mapping[str, str] | None = None,
    image_root: str | Path | None = None,
    nondeterministic: bool = False,
    register: bool = True,
) -> type[RecordsTask]:
    """A `Task` subclass over `data`, scored by `score`, registered as `gym.make(env_id)`.

    Args:
        env_id: the Gymnasium id, "Name-v0". Making the same id again replaces the task it
            made before (re-running a notebook cell); a built-in or other env's id is an error.
        data: records (see the module docstring): a list (one split, "train" unless
            `default_split` says otherwise), a dict split -> records, a `datasets` dataset, a
            file, a folder or a hub name.
        score: `score(item, response) -> float | bool` in [0, 1] (as `Task.score`), or "exact"
            (`exact_score`, the default) or "number" (`number_score`).
        tools: the tools an env gets without `tools=`: names ("crop", "python", "calculator",
            "search", registered ones) or `Tool` objects (`@tool` functions).
        instructions: the system prompt's task instructions, before the answer-format rule.
        default_split: the split `gym.make` loads without `split=`; default the first key of a
            dict, else "train".
        columns: record field -> the data's column name, e.g. {"question": "problem",
            "answer": "solution", "image": "decoded_image", "id": "pid"}.
        image_root: the folder relative image paths of in-memory records are read from (default:
            the current directory); a file's or folder's paths are read from beside it.
        nondeterministic: True when the tools make episodes non-deterministic (web search).
        register: False makes the class without registering it (use `ToolUseEnv(cls())`).
    """
    fn = SCORES.get(score) if isinstance(score, str) else score
    if not callable(fn):
        raise ValueError(f"score must be a function (item, response) -> float or one of "
                         f"{sorted(SCORES)}, got {score!r}")
    unknown = sorted(set(columns or {}) - set(FIELDS))
    if unknown:
        raise ValueError(f"columns maps record fields {list(FIELDS)}, not {unknown}")
    if not isinstance(data, (str, Path, Mapping)) and hasattr(data, "__iter__") \
            and not hasattr(data, "column_names"):
        data = list(data)  # a generator would be used up by the first load
    if default_split is None:
        if isinstance(data, Mapping) and data:
            default_split = str(next(iter(data)))
        else:
            default_split = _ONE_SPLIT
    attrs = {
        "env_id": env_id, "data": data, "score_fn": staticmethod(fn),
        "columns": dict(columns or {}), "image_root": Path(image_root) if image_root else None,
        "default_tools": tuple(tools), "instructions": instructions,
        "default_split": default_split, "nondeterministic": nondeterministic,
        "__doc__": f"{env_id}: a task made by axpo_env.tasks.quick.make_task.",
    }
    cls = type(re.sub(r"\W", "_", env_id), (RecordsTask,), attrs)
    if register:
        _register(cls)
    return cls


def _register(cls: type[RecordsTask]) -> None:
    import gymnasium as gym

    spec = gym.registry.get(cls.env_id)
    if spec is not None:
        made = spec.kwargs.get("task")
        if not (isinstance(made, type) and issubclass(made, RecordsTask)):
            raise ValueError(f"{cls.env_id} is already registered ({spec.entry_point}, "
                             f"task {made!r}); choose another env id")
        del gym.registry[cls.env_id]  # made by make_task before: replace it quietly
    gym.register(id=cls.env_id, entry_point="axpo_env.env:ToolUseEnv", kwargs={"task": cls},
                 nondeterministic=cls.nondeterministic)


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


__all__ = ["RecordsTask", "SCORES", "Score", "exact_score", "make_task", "number_score"]
