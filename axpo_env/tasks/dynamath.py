"""DynaMath (`DynaMath/DynaMath_Sample`): 501 seed problems, each drawn by a program in 10
variants (`sample_variant1` ... `sample_variant10`), to test whether a model's math holds up when
the numbers, shapes or colours change.

Loads the published schema (`id, question, image, decoded_image, ground_truth, answer_type,
subject, knowledge_level`) from the HF layout (split `sample_variantN` lives in
`data/sampleN-*.parquet`), JSON/JSONL records, the GitHub seed file `dataset/dataset.json`
(`answer`/`level` instead of `ground_truth`/`knowledge_level`), or the hub name.

Scoring, `scoring="official"`: `score_official`, the per-type rule of github.com/DynaMath/DynaMath
`evaluation/opensource_json_eval.py` (commit 65a346ac; the GPT-4o/Gemini/Claude scripts beside
it share it), applied to the answer the env extracted (upstream's JSON "short answer"): `float`
is right within an absolute 0.001 after `float()` of the first space-separated word ("3π" read
as 3·π, "1,000" or "3/4" unreadable: wrong); `multiple choice` compares a one-character answer
case-sensitively, else counts it right when the letter occurs in its first three characters
("(B) 60" and "AB" both count for their letters); `text` is right when the ground truth occurs
in the answer, case-sensitively.

`scoring="lenient"` (the RL default), `score_dynamath`; its departures from upstream:
- `float`: the answer is unwrapped (`clean_answer`), thousands commas and a leading "x =" are
  dropped, and the whole expression is evaluated when the first word is not a number ("9π/2",
  "\\frac{3}{4}", "1:2"), where upstream would ask an LLM to reformat it;
- `multiple choice`: the letter is read by `match_choice` ("(b)", "Option B", the option's
  text), and "A triangle" is not read as A, nor "CAB" as its first three letters;
- `text`: case-insensitive, and an answer longer than twice the ground truth plus 3
  characters does not count, so listing every candidate cannot earn the reward.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from axpo_env.errors import DatasetError
from axpo_env.tasks.base import FIXTURES, LazyItems, Task, TaskItem
from axpo_env.tasks.loading import column, decode_image, load_rows, unique_ids
from axpo_env.tasks.math_choices import match_choice, parse_choices
from axpo_env.tasks.mathvision import latex_value
from axpo_env.tasks.scoring import clean_answer

REQUIRED_COLUMNS = ("id", "question", "answer_type")
ANSWER_COLUMNS = ("ground_truth", "answer")  # HF release / GitHub seed file
IMAGE_COLUMNS = ("decoded_image", "image")
ANSWER_TYPES = ("float", "multiple choice", "text")
TOLERANCE = 1e-3

#: Per-type instruction, after VLMEvalKit's DynaMath prompt (`Dynamath.build_prompt`).
HINTS = {
    "multiple choice": "Answer with the option letter, such as A, B, C or D.",
    "float": "Answer with a floating-point number given to three decimal places.",
    "text": "Answer with a short text, in the form the question asks for.",
}


def _number(text: str) -> float | None:
    """A numeric answer: the first word (as upstream) or the whole expression, "π" allowed."""
    s = clean_answer(text).replace("$", "").replace("\\pi", "π")
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s.split("=")[-1]).strip().rstrip(".")
    for candidate in (s.split(" ")[0] if s else "", s):
        value = latex_value(candidate)
        if value is not None:
            return value
    return None


def score_dynamath(
    response: Any, answer: Any, answer_type: str, choices: Mapping[str, str] | None = None,
) -> float:
    """1.0 when `response` is right by DynaMath's rule for `answer_type`, else 0.0."""
    try:
        truth, text = str(answer or "").strip(), clean_answer(response)
        if not truth or not text:
            return 0.0
        if answer_type == "float":
            pred, gt = _number(text), latex_value(truth.replace("π", "\\pi"))
            return float(pred is not None and gt is not None and abs(pred - gt) <= TOLERANCE)
        if answer_type == "multiple choice":
            letters = choices or {c: "" for c in "ABCDE"}
            return float(match_choice(text, letters) == truth.upper())
        pred = text.rstrip(".").strip().lower()
        return float(truth.lower() in pred and len(pred) <= 2 * len(truth) + 3)
    except Exception:  # a reward must not crash a training step on odd input
        return 0.0


def _transfer(text: str) -> float:
    """Upstream's `transfer`: "3π" -> 3·π, else `float()`; raises as upstream does."""
    if "π" in text:
        return float(text.split("π")[0]) * math.pi
    return float(text)


def score_official(response: Any, answer: Any, answer_type: str) -> float:
    """DynaMath's official per-type rule (module docstring): 1.0 or 0.0, never raises."""
    try:
        text, truth = str(response), str(answer)
        if answer_type == "float":
            value = float(text) if text.isdigit() else _transfer(text.split(" ")[0])
            return float(abs(value - float(truth)) <= TOLERANCE)
        if answer_type == "multiple choice":
            return float(text == truth) if len(text) == 1 else float(truth in text[0:3])
        return float(truth in text)
    except Exception:  # upstream marks a failure "fail"
        return 0.0


class DynaMath(Task):
    """DynaMath as an env task; `split` picks the variant (`sample_variant1` ... `10`).

    `data_dir`: None (the bundled fixture: 5 seeds in 2 variants), a folder in the HF layout,
    a JSON/JSONL/parquet file, the GitHub `dataset/dataset.json`, or `"DynaMath/DynaMath_Sample"`.
    Worst-case accuracy (a seed counts only if all its variants are right) is computed across
    splits from `info["correct"]`, keyed by `metadata["id"]`.
    """

    env_id: ClassVar[str] = "AXPO-DynaMath-v0"
    default_split: ClassVar[str] = "sample_variant1"
    default_tools: ClassVar[tuple[str, ...]] = ("crop", "python", "calculator")
    instructions: ClassVar[str] = (
        "Solve the math question about the generated figure; read values off the figure, "
        "zooming in with `crop` where labels are small, and use `python` or `calculator` for "
        "arithmetic. Give only the final answer: the option letter for a multiple-choice "
        "question, a number to three decimal places (not a fraction or expression) for a "
        "numeric one, or the short text asked for."
    )

    def load_items(self) -> Sequence[TaskItem]:
        source = FIXTURES / "dynamath" if self.data_dir is None else self.data_dir
        m = re.fullmatch(r"sample_variant(\d+)", self.split)
        patterns = [f"data/sample{m[1]}-*.parquet", f"sample{m[1]}-*.parquet"] if m else []
        rows, base = load_rows(
            "DynaMath", source, self.split, required=REQUIRED_COLUMNS,
            any_of=[ANSWER_COLUMNS, IMAGE_COLUMNS], id_column="id", patterns=patterns,
            schema="DynaMath/DynaMath_Sample",
        )
        ids = unique_ids([str(i) for i in column(rows, "id")], "DynaMath", "ids")
        return LazyItems(rows, ids, lambda row: self._build(row, base))

    def _build(self, row: Mapping[str, Any], base: Path | None) -> TaskItem:
        qid = str(row["id"])
        atype = str(row.get("answer_type") or "").strip()
        if atype not in ANSWER_TYPES:
            raise DatasetError(f"DynaMath id {qid!r}: unknown answer_type {atype!r}")
        truth = row.get("ground_truth", row.get("answer"))
        question = str(row.get("question") or "")
        choices = parse_choices(question) if atype == "multiple choice" else {}
        image = row.get("decoded_image")
        if image is None or (isinstance(image, Mapping) and not any(image.values())):
            image = row.get("image")
        metadata = {
            "id": qid, "answer_type": atype, "choices": choices, "variant": self.split,
            "subject": row.get("subject"),
            "knowledge_level": row.get("knowledge_level", row.get("level")),
        }  # fmt: skip
        return TaskItem(
            task_id=qid,
            question=f"{question}\n{HINTS[atype]}",
            images=(decode_image(image, base, f"DynaMath id {qid!r}"),),
            answer=str(truth if truth is not None else "").strip(),
            metadata=metadata,
        )

    def score(self, item: TaskItem, response: str) -> float:
        """DynaMath's rule in the task's scoring mode: 1.0 or 0.0, never an exception."""
        m = item.metadata
        if self.scoring == "official":
            return score_official(response, item.answer, m.get("answer_type", ""))
        return score_dynamath(response, item.answer, m.get("answer_type", ""), m.get("choices"))
