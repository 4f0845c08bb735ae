"""MathVista (`AI4Math/MathVista`): math reasoning over charts, tables, diagrams and photos.

Loads the published schema (HF parquet, the original GitHub `testmini.json`, JSON/JSONL records,
or a hub name) and scores a final answer by MathVista's own rules (github.com/lupantech/MathVista
`evaluation/calculate_score.py`, commit e999481e: `normalize_extracted_answer` then
`safe_equal`).

`scoring="official"` (`scoring.score_official`) starts after MathVista's answer extraction
(`extract_answer.py`, rules then GPT-4): the env's extracted `<answer>` text is the
`extraction`. Quirks kept: a multiple-choice answer that is neither a letter nor "(X)" is
mapped to the nearest choice by edit distance (so "I cannot tell" still picks a choice; the
letter is matched case-sensitively, "b" is not B); integers go through `float()` ("1,000",
"5 cm", "\\boxed{5}" are wrong; "5.0" and "1e3" are read); floats are rounded to `precision`
and compared as text with the stored answer as it is; a list answer must equal the stored text
exactly ("[1,2]" is not "[1, 2]"); a free-form `text` answer is wrong (upstream raises there).

`scoring="lenient"` (the RL default, `scoring.score_answer`) departs from upstream as follows:
the answer is unwrapped (`\\boxed{}`, `\\text{}`, "Answer:"); a choice is matched by its
letter in any case and layout ("b", "B.", "Option B", "(b) text") or its text, before the
nearest choice; numbers drop `$`, `%`, degrees, thousands commas, "x =" and the unit; lists
are read as Python literals and rewritten (`[1.0, 2]` -> "[1, 2]"); the stored answer goes
through the same normalization, and a float answer without `precision` is rounded to the
answer's own decimals.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from axpo_env.errors import DatasetError
from axpo_env.tasks.base import FIXTURES, LazyItems, Task, TaskItem
from axpo_env.tasks.loading import column, decode_image, load_rows, unique_ids
from axpo_env.tasks.scoring import score_answer, score_official

REQUIRED_COLUMNS = ("pid", "question", "answer", "question_type", "answer_type")
IMAGE_COLUMNS = ("decoded_image", "image")

HINTS = {
    "multi_choice": "Hint: Please answer the question and provide the correct option letter, "
    "e.g., A, B, C, D, at the end.",
    "integer": "Hint: Please answer the question requiring an integer answer and provide the "
    "final value, e.g., 1, 2, 3, at the end.",
    "float1": "Hint: Please answer the question requiring a floating-point number with one "
    "decimal place and provide the final value, e.g., 1.2, 1.3, 1.4, at the end.",
    "float2": "Hint: Please answer the question requiring a floating-point number with two "
    "decimal places and provide the final value, e.g., 1.23, 1.34, 1.45, at the end.",
    "list": "Hint: Please answer the question requiring a Python list as an answer and provide "
    "the final list, e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end.",
    "other": "Hint: Please answer the question and provide the final answer at the end.",
}


def _image_of(row: Mapping[str, Any]) -> Any:
    """`decoded_image` (bytes or PIL) when present, else the relative `image` path."""
    src = row.get("decoded_image")
    if isinstance(src, Mapping) and not src.get("bytes") and not src.get("path"):
        src = None
    return src if src is not None else row.get("image")


def build_query(record: Mapping[str, Any]) -> str:
    """The published `query` text (hint, question with unit, lettered choices) for records that
    lack it, e.g. the original GitHub `testmini.json`."""
    qtype, atype = record.get("question_type"), record.get("answer_type")
    precision = record.get("precision")
    if qtype == "multi_choice":
        hint = HINTS["multi_choice"]
    elif atype == "float":
        hint = HINTS["float1"] if precision is not None and int(precision) == 1 else HINTS["float2"]
    else:
        hint = HINTS.get(str(atype), HINTS["other"])
    text = f"{hint}\nQuestion: {record.get('question', '')}"
    if record.get("unit"):
        text += f" (Unit: {record['unit']})"
    if record.get("choices"):
        lines = [f"({chr(ord('A') + i)}) {c}" for i, c in enumerate(record["choices"])]
        text += "\nChoices:\n" + "\n".join(lines)
    return text


class MathVista(Task):
    """MathVista as an env task.

    `data_dir`: None (the bundled 13-item fixture), a local folder or file in the HF layout
    (`data/<split>-*.parquet`), the original GitHub layout (`<split>.json`, a dict pid -> record,
    with `images/` beside it), a JSON/JSONL list of records, or a hub name (`"AI4Math/MathVista"`).
    The hub's `test` split ships without answers, so every response scores 0 there.
    """

    env_id: ClassVar[str] = "AXPO-MathVista-v0"
    default_split: ClassVar[str] = "testmini"
    default_tools: ClassVar[tuple[str, ...]] = ("crop", "python", "calculator", "search")
    instructions: ClassVar[str] = (
        "Answer the math question about the image. Details can be small: zoom in with `crop` "
        "before reading small text, numbers or labels. Use `calculator` or `python` for "
        "arithmetic instead of doing it in your head, and `search` for facts you do not know. "
        "Give only the final answer: the option letter (or the option's text) for a "
        "multiple-choice question; a bare number without units, rounded as the hint asks, for a "
        "numeric one; a Python list such as [1, 2, 3] when a list is asked for."
    )

    def load_items(self) -> Sequence[TaskItem]:
        rows, base = self._load_rows()
        ids = unique_ids([str(p) for p in column(rows, "pid")], "MathVista", "pids")
        if ids and not any(str(a or "").strip() for a in column(rows, "answer")):
            warnings.warn(
                f"MathVista split {self.split!r} has no answers (the public test split hides "
                "them): every response will score 0.",
                stacklevel=2,
            )
        return LazyItems(rows, ids, lambda row: self._build(row, base))

    def _load_rows(self) -> tuple[Any, Path | None]:
        source = FIXTURES / "mathvista" if self.data_dir is None else self.data_dir
        return load_rows(
            "MathVista", source, self.split, required=REQUIRED_COLUMNS, any_of=[IMAGE_COLUMNS],
            id_column="pid", schema="AI4Math/MathVista",
        )

    def _build(self, row: Mapping[str, Any], base: Path | None) -> TaskItem:
        pid = str(row["pid"])
        qtype, atype = row.get("question_type"), row.get("answer_type")
        if qtype not in ("multi_choice", "free_form"):
            raise DatasetError(f"MathVista pid {pid!r}: unknown question_type {qtype!r}")
        if atype not in ("text", "integer", "float", "list"):
            raise DatasetError(f"MathVista pid {pid!r}: unknown answer_type {atype!r}")
        choices = [str(c) for c in row["choices"]] if row.get("choices") else None
        if qtype == "multi_choice" and not choices:
            raise DatasetError(f"MathVista pid {pid!r} is multi_choice but has no choices")
        precision = row.get("precision")
        if precision is not None:  # parquet written by pandas stores a null as NaN
            precision = float(precision) if math.isfinite(float(precision)) else None
        fields = {
            "pid": pid,
            "question": row.get("question"),
            "image": row.get("image"),
            "choices": choices,
            "unit": row.get("unit") or None,
            "precision": precision,
            "question_type": qtype,
            "answer_type": atype,
        }
        original = row.get("metadata")
        metadata = {**(dict(original) if isinstance(original, Mapping) else {}), **fields}
        return TaskItem(
            task_id=pid,
            question=row.get("query") or build_query({**row, **fields}),
            images=(decode_image(_image_of(row), base, f"MathVista pid {pid!r}"),),
            answer=str(row["answer"]) if row.get("answer") is not None else "",
            metadata=metadata,
        )

    def score(self, item: TaskItem, response: str) -> float:
        """MathVista's rule in the task's scoring mode: 1.0 or 0.0, never an exception."""
        keys = ("choices", "question_type", "answer_type", "precision", "unit")
        rule = score_official if self.scoring == "official" else score_answer
        return rule(response, item.answer, **{k: item.metadata.get(k) for k in keys})
