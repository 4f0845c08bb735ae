"""MathVerse (`AI4Math/MathVerse`): each diagram problem in five versions that move information
from the text into the figure (Text Dominant, Text Lite, Vision Intensive, Vision Dominant,
Vision Only; plus Text Only in `testmini_text_only`), to see whether a model reads the diagram.

Loads the published schema (`sample_index, problem_index, problem_version, question, image,
answer, question_type (multi-choice|free-form), metadata{split, source, subject, subfield},
query_wo, query_cot, question_for_eval`) from the HF layout (`<split>.parquet` or
`<split>.json` at the root, images relative to it or under `images/`), JSON/JSONL records, or the
hub name (config = split). The prompt is the published `query_cot`.

The official scorer (github.com/ZrrSkywalker/MathVerse `evaluation/extract_answer_s1.py` and
`score_answer_s2.py`, commit 16e70602) asks GPT to extract the answer, then asks GPT whether it
matches `answer` given `question_for_eval`; its `--quick_match` rule is exact string equality
(`inst['answer'] == inst['extraction']`). With a `judge=` both modes call it (the official mode
starting after GPT's extraction: the env's extracted `<answer>` text is the extraction).

Without a judge, `scoring="official"` is the quick match: the answer must equal `answer`
character for character ("B" for "B", but not "(B)", "b" or "B. 60°"; "14" for "14", not
"14 cm"). `scoring="lenient"` (the RL default) stands in for the judge: for multi-choice the
option letter in any layout, or an answer equal to one option's text (the judge prompt's own
example accepts "This is not a function" for B); for free-form exact equality after light
normalization (case, spaces, `$`, `\\left`/`\\right`, `clean_answer`'s dressing), then
MATH-V's equivalence (`mathvision.math_equal`: same tuple, or same value to 2 decimals), with a
trailing unit dropped ("14 cm" == "14"), as the judge prompt says "0.5m and 50cm" agree.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from axpo_env.errors import DatasetError
from axpo_env.tasks.base import FIXTURES, LazyItems, Task, TaskItem
from axpo_env.tasks.loading import column, decode_image, load_rows, unique_ids
from axpo_env.tasks.math_choices import match_choice, parse_choices
from axpo_env.tasks.mathvision import math_equal
from axpo_env.tasks.scoring import clean_answer

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("sample_index", "problem_version", "question", "answer", "question_type")
QUESTION_TYPES = ("multi-choice", "free-form")
_UNIT = re.compile(
    r"(?<=[\d}])\s*(?:cm|mm|km|m|in|inches|ft|feet|units?|degrees?|°)"
    r"(?:\^?\{?[23]\}?|[²³])?\s*\.?$"
)

#: The published `query_cot` wording, for records that lack it.
COT = {
    "multi-choice": "answer the question and provide the correct option letter, e.g., A, B, C, "
    "D, at the end.",
    "free-form": "answer the question and provide the final value, e.g., 1, 2.5, 300, at the "
    "end.",
}


def build_query(question: str, question_type: str, version: str) -> str:
    """MathVerse's `query_cot` for a record that lacks it."""
    cot = COT.get(question_type, COT["free-form"])
    if version == "Vision Only":
        return ("According to the question shown in the image, please first conduct reasoning, "
                f"and then {cot}")
    return f"Please first conduct reasoning, and then {cot}\nQuestion: {question}"


def _plain(text: Any) -> str:
    s = clean_answer(text).replace("$", "").replace("\\left", "").replace("\\right", "")
    return re.sub(r"\s+", "", s).rstrip(".").lower()


def _equal(truth: str, answer: str) -> bool:
    """Quick match (exact, after spaces/$/case), then MATH-V's equivalence without units."""
    if _plain(truth) and _plain(truth) == _plain(answer):
        return True
    return math_equal(_UNIT.sub("", clean_answer(truth)), _UNIT.sub("", clean_answer(answer)))


def score_mathverse(
    response: Any, answer: Any, question_type: str, choices: Mapping[str, str] | None = None,
) -> float:
    """The rule-based fallback for MathVerse's GPT judge: 1.0 or 0.0, never an exception."""
    try:
        truth = str(answer or "").strip()
        if not truth or response is None or not str(response).strip():
            return 0.0
        if question_type == "multi-choice" and len(truth) == 1:
            letters = choices or {c: "" for c in "ABCDE"}
            return float(match_choice(response, letters, equal=_equal) == truth.upper())
        return float(_equal(truth, str(response)))
    except Exception:  # a reward must not crash a training step on odd input
        return 0.0


class MathVerse(Task):
    """MathVerse as an env task.

    `data_dir`: None (the bundled fixture), a folder holding `<split>.parquet` or
    `<split>.json` (HF layout), a JSON/JSONL/parquet file, or `"AI4Math/MathVerse"`. Splits:
    `testmini` (3,940 rows: 788 problems x 5 versions), `testmini_text_only`.
    `judge=`: `judge(item, response) -> [0, 1]`, e.g. an LLM given
    `item.metadata["question_for_eval"]` and `item.answer`, as the official scorer does.
    """

    env_id: ClassVar[str] = "AXPO-MathVerse-v0"
    default_split: ClassVar[str] = "testmini"
    default_tools: ClassVar[tuple[str, ...]] = ("crop", "python", "calculator")
    instructions: ClassVar[str] = (
        "Solve the math problem about the diagram. Part of the problem (lengths, angles, even "
        "the whole question) may be written only in the diagram: zoom in with `crop` to read it, "
        "and use `python` or `calculator` for arithmetic. Give only the final answer: the option "
        "letter for a multiple-choice question, otherwise the value or expression asked for."
    )

    def load_items(self) -> Sequence[TaskItem]:
        source = FIXTURES / "mathverse" if self.data_dir is None else self.data_dir
        rows, base = load_rows(
            "MathVerse", source, self.split, required=REQUIRED_COLUMNS,
            id_column="sample_index", schema="AI4Math/MathVerse", hub_config=self.split,
        )
        ids = unique_ids([str(i) for i in column(rows, "sample_index")], "MathVerse",
                         "sample_index")
        return LazyItems(rows, ids, lambda row: self._build(row, base))

    def _build(self, row: Mapping[str, Any], base: Path | None) -> TaskItem:
        sid = str(row["sample_index"])
        qtype, version = str(row.get("question_type") or ""), str(row.get("problem_version"))
        if qtype not in QUESTION_TYPES:
            raise DatasetError(f"MathVerse sample_index {sid!r}: unknown question_type {qtype!r}")
        question = str(row.get("question") or "")
        for_eval = str(row.get("question_for_eval") or question)
        choices = parse_choices(for_eval) if qtype == "multi-choice" else {}
        original = row.get("metadata")
        metadata = {
            **(dict(original) if isinstance(original, Mapping) else {}),
            "sample_index": sid, "problem_index": str(row.get("problem_index")),
            "problem_version": version, "question_type": qtype, "question": question,
            "question_for_eval": for_eval, "choices": choices,
            "image": row.get("image") if isinstance(row.get("image"), str) else None,
        }  # fmt: skip
        image = _image_source(row.get("image"), base)
        if image is None and version != "Text Only":
            raise DatasetError(f"MathVerse sample_index {sid!r} ({version}) has no image")
        images = () if image is None else (decode_image(image, base, f"MathVerse {sid!r}"),)
        return TaskItem(
            task_id=sid,
            question=str(row.get("query_cot") or build_query(question, qtype, version)),
            images=images,
            answer=str(row.get("answer") or "").strip(),
            metadata=metadata,
        )

    def score(self, item: TaskItem, response: str) -> float:
        """`self.judge(item, response)` when a judge was given (MathVerse's official scorer is
        a GPT judge), else the quick match (official) or `score_mathverse` (lenient)."""
        if self.judge is not None:
            try:
                return min(1.0, max(0.0, float(self.judge(item, response))))
            except Exception:
                logger.warning("MathVerse judge failed on %s; using the rule", item.task_id,
                               exc_info=True)  # fmt: skip
        if self.scoring == "official":  # `--quick_match`
            return float(bool(item.answer) and str(response) == item.answer)
        m = item.metadata
        return score_mathverse(response, item.answer, m.get("question_type", ""), m.get("choices"))


def _image_source(value: Any, base: Path | None) -> Any:
    """The image (bytes or PIL) or its path; the JSON release's paths may sit under images/."""
    if isinstance(value, Mapping) and not value.get("bytes") and not value.get("path"):
        return None
    if isinstance(value, str):
        if not value.strip():
            return None
        nested = base / "images" / value if base is not None else None
        if nested is not None and not (base / value).is_file() and nested.is_file():
            return str(nested)
    return value
