"""Math-VR (`gogoduan/Math-VR-bench`): math problems that need visual reasoning (drawing an
auxiliary line, plotting a function), released with CodePlot-CoT (arXiv 2510.11718).

Schema, as the official scripts of github.com/HKU-MMLab/Math-VR-CodePlot-CoT read it
(`Math-VR-Infer.py`, `Math-VR-Eval.py`, `summarize_score.py` at commit 494c5ad9; the later
`Math-VR-Eval.py` 8924aa0f and `summarize_score.py` 835e3f90 keep the same AC rule): one parquet
split `test` (`data/test-00000-of-00001.parquet`) with `id` (the row's index), `question` (text
with `<image1>` ... `<image8>` markers), `image1` ... `image8`, `category` (`text` |
`multimodal`), `number_of_answers`, `answers`, `total_score`, `scoring_points`, `scores`.

Official scoring (`scoring="official"`): `Math-VR-Eval.py` asks GPT-4.1 to grade the solution
against `answers` and the rubric and to reply in JSON; `summarize_score.py` then counts Answer
Correctness (AC, the paper's number) as `result["is_fully_correct"] is True`. The official mode
starts after the judge: give `judge=` a function returning that JSON reply (text or dict) and
the verdict is read exactly as upstream reads it (the JSON between the first "{" and the last
"}"; only a JSON `true` counts, the string "true" does not), or a number in [0, 1] when your
judge gives its verdict directly. Two differences stay: upstream's judge reads the whole
solution while the env hands it the extracted final answer, and upstream leaves a question whose
judge never returned JSON out of the average while here it scores 0. Without a judge the
official mode applies the rubric's first step literally ("if the answers match exactly, award
the full max_score"): the answer must equal `answers` after trimming spaces; that is a strict
stand-in, not the GPT verdict.

Lenient mode (`scoring="lenient"`, the RL default), without a judge: an answer is right when
it equals `answers` by MATH-V's equivalence (`mathvision.math_equal`: LaTeX dressing dropped,
same value to 2 decimals, same tuple); a multi-part answer ("(1) 3; (2) 5") must match part by
part, split on ";" or new lines. With a judge both modes use the judge.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from axpo_env.errors import DatasetError
from axpo_env.tasks.base import FIXTURES, LazyItems, Task, TaskItem
from axpo_env.tasks.loading import column, decode_image, load_rows, unique_ids
from axpo_env.tasks.mathvision import math_equal

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("id", "question", "category", "answers")
CATEGORIES = ("text", "multimodal")
MAX_IMAGES = 8
_MARKER = re.compile(r"<image([1-8])>")
_PART_LABEL = re.compile(r"^\s*(?:\(\s*\d+\s*\)|\d+[.)](?=\s)|[①-⑩])\s*")


def judge_verdict(reply: Any) -> float:
    """AC from a judge's reply as `summarize_score.py` reads it: 1.0 only when the JSON's
    `is_fully_correct` is the JSON value true; a number is taken as the verdict itself."""
    if isinstance(reply, bool):
        return float(reply)
    if isinstance(reply, (int, float)):
        return min(1.0, max(0.0, float(reply))) if math.isfinite(reply) else 0.0
    if isinstance(reply, str):  # `extract_json`: first "{" to last "}"
        start, end = reply.find("{"), reply.rfind("}") + 1
        try:
            reply = json.loads(reply[start:end]) if start >= 0 and end > start else None
        except (ValueError, RecursionError):
            return 0.0
    if isinstance(reply, Mapping):
        return 1.0 if reply.get("is_fully_correct") is True else 0.0
    return 0.0


def _parts(text: str) -> list[str]:
    """A multi-part answer split into its parts, each without its "(1)" label."""
    pieces = [p for p in re.split(r"[;；\n]", text) if p.strip()]
    return [_PART_LABEL.sub("", p).strip() for p in pieces]


def score_official(response: Any, answers: Any) -> float:
    """The rubric's exact-match step: 1.0 when the answer equals `answers` (spaces trimmed)."""
    try:
        truth = str(answers or "").strip()
        return float(bool(truth) and response is not None and str(response).strip() == truth)
    except Exception:  # str() of a hostile object
        return 0.0


def score_lenient(response: Any, answers: Any) -> float:
    """MATH-V equivalence of the whole answer, or of each part of a multi-part answer."""
    try:
        truth, text = str(answers or "").strip(), str(response or "").strip()
        if not truth or not text:
            return 0.0
        if math_equal(truth, text):
            return 1.0
        want, got = _parts(truth), _parts(text)
        if len(want) < 2 or len(want) != len(got):
            return 0.0
        return float(all(math_equal(w, g) for w, g in zip(want, got, strict=True)))
    except Exception:  # a reward must not crash a training step on odd input
        return 0.0


class MathVR(Task):
    """Math-VR as an env task.

    `data_dir`: None (the bundled fixture), a folder holding `data/test-*.parquet` (the Hub
    layout), a parquet/JSON/JSONL file, or the hub name `"gogoduan/Math-VR-bench"`.
    `category="text"` or `"multimodal"` keeps one subset (`Math-VR-Infer.py --type`).
    """

    env_id: ClassVar[str] = "AXPO-MathVR-v0"
    default_split: ClassVar[str] = "test"
    default_tools: ClassVar[tuple[str, ...]] = ("python", "crop", "calculator")
    instructions: ClassVar[str] = (
        "Solve the math problem. It may need a figure you do not have: draw it with `python` "
        "(matplotlib is available) and look at the plot, add auxiliary lines, and check your "
        "computations with `calculator` or `python`. Give only the final answer; for a question "
        "with several parts, give each part's answer in order, separated by semicolons."
    )

    def __init__(self, split: str | None = None, data_dir: str | Path | None = None,
                 category: str | None = None, **options: Any):
        if category is not None and category not in CATEGORIES:
            raise ValueError(f"category must be one of {CATEGORIES} or None, got {category!r}")
        super().__init__(split=split, data_dir=data_dir, **options)
        self.category = category

    def load_items(self) -> Sequence[TaskItem]:
        source = FIXTURES / "mathvr" if self.data_dir is None else self.data_dir
        rows, base = load_rows(
            "Math-VR", source, self.split, required=REQUIRED_COLUMNS, id_column="id",
            schema="gogoduan/Math-VR-bench",
        )
        if self.category is not None:
            keep = [i for i, c in enumerate(column(rows, "category")) if c == self.category]
            rows = [rows[i] for i in keep] if isinstance(rows, list) else rows.select(keep)
        ids = unique_ids([str(i) for i in column(rows, "id")], "Math-VR", "ids")
        return LazyItems(rows, ids, lambda row: self._build(row, base))

    def _build(self, row: Mapping[str, Any], base: Path | None) -> TaskItem:
        qid = str(row["id"])
        label = f"Math-VR id {qid!r}"
        category = str(row.get("category") or "")
        if category not in CATEGORIES:
            raise DatasetError(f"{label}: unknown category {category!r} (expected text or "
                               "multimodal)")
        question = str(row.get("question") or "")
        images = []
        for n in (int(m) for m in _MARKER.findall(question)):  # in the order the text cites
            value = row.get(f"image{n}")
            if value is None or (isinstance(value, Mapping) and not any(value.values())):
                raise DatasetError(f"{label}: its question cites <image{n}> but image{n} is "
                                   "empty")
            images.append(decode_image(value, base, f"{label} image{n}"))
        answers = row.get("answers")
        if isinstance(answers, (list, tuple)):
            answers = "; ".join(str(a) for a in answers)
        metadata = {
            "id": qid, "category": category, "question": question,
            "number_of_answers": row.get("number_of_answers"),
            "total_score": row.get("total_score"),
            "scoring_points": row.get("scoring_points"), "scores": row.get("scores"),
        }  # fmt: skip
        return TaskItem(
            task_id=qid,
            question=_MARKER.sub("", question).strip(),
            images=tuple(images),
            answer=str(answers if answers is not None else "").strip(),
            metadata=metadata,
        )

    def score(self, item: TaskItem, response: str) -> float:
        """The judge's verdict when one was given (read as `summarize_score.py` reads it),
        else the mode's rule (see the module docstring)."""
        if self.judge is not None:
            try:
                return judge_verdict(self.judge(item, response))
            except Exception:
                logger.warning("Math-VR judge failed on %s; scoring by rule", item.task_id,
                               exc_info=True)
        if self.scoring == "official":
            return score_official(response, item.answer)
        return score_lenient(response, item.answer)
