"""We-Math (`We-Math/We-Math`): multi-step visual math problems split into their one-step
sub-problems, to tell missing knowledge from failing to combine it.

Loads the published schema (`ID, split, knowledge concept, question, option, answer,
image_path, key, question number, knowledge concept description`) from the HF layout
(`data/testmini-*.parquet`, `image_path` an image), the `testmini.json` release (`image_path`
relative, e.g. "3steps/image/165-3.png"), JSON/JSONL records, or the hub name. One problem
shares its `ID` across its rows; `key` says which step a row is ("2steps_1", "2steps_2",
"2steps_multi", "3steps_1" ... "3steps_multi"), so an item's id is "<ID>/<key>".

Scoring follows the official `evaluation/accuracy.py` (`load_and_process_data`) and
`four_dimensional_metrics.py` of github.com/We-Math/We-Math (commit 681e0404).
`scoring="official"` (`score_official`): the text after the last "Answer" (case-sensitive),
stripped, with every `<`, `>`, `:` and `.` removed, must start with the correct letter A-H: its
first character counts, so "Because ..." reads as B and "(B)" as nothing.
`scoring="lenient"` (the RL default, `score_wemath`): the letter must stand alone ("B", "(B)",
"B. 40", "<Answer>: <<B>>", "Option B", `\\boxed{B}`, or a lone lower-case "b"), read after
the last "answer" in any case, so a word that merely starts with a capital is not an option.
The four-dimensional metrics (IK, IG, CM, RM) combine per-item results across the steps of a
problem; `metadata` keeps `ID` and `key` for that.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from axpo_env.errors import DatasetError
from axpo_env.tasks.base import FIXTURES, LazyItems, Task, TaskItem
from axpo_env.tasks.loading import column, decode_image, load_rows, unique_ids
from axpo_env.tasks.math_choices import LETTERS, option_letter, parse_choices

REQUIRED_COLUMNS = ("ID", "question", "option", "answer", "key", "image_path")

#: The official prompt's hint (the `<Thought process>: <Answer>:` template is replaced by the
#: env's own answer format).
HINT = (
    "Now, we require you to solve a multiple-choice math question. Please briefly describe your "
    "thought process and provide the final answer(option)."
)


def score_wemath(response: Any, answer: Any, n_options: int = len(LETTERS)) -> float:
    """1.0 when `response` names the correct option letter, else 0.0; never raises."""
    truth = str(answer or "").strip().upper()
    return float(bool(truth) and option_letter(response, n_options) == truth)


def score_official(response: Any, answer: Any) -> float:
    """We-Math's `load_and_process_data` verdict: 1.0 or 0.0, never raises."""
    try:
        text = re.sub(r"[<>:.]", "", str(response).split("Answer")[-1].strip()).strip()
        letter = text[0] if text and text[0] in "ABCDEFGH" else None
        return float(letter is not None and letter == str(answer))
    except Exception:  # str() of a hostile object
        return 0.0


class WeMath(Task):
    """We-Math as an env task.

    `data_dir`: None (the bundled fixture: one 2-step and one 3-step problem), a folder in the
    HF layout, `testmini.json` (images relative to it), a JSON/JSONL/parquet file, or
    `"We-Math/We-Math"`. Split: `testmini` (1,740 rows: 525 problems and their steps).
    """

    env_id: ClassVar[str] = "AXPO-WeMath-v0"
    default_split: ClassVar[str] = "testmini"
    default_tools: ClassVar[tuple[str, ...]] = ("crop", "python", "calculator")
    instructions: ClassVar[str] = (
        "Solve the multiple-choice math question about the figure. Zoom in with `crop` to read "
        "small labels and use `python` or `calculator` for arithmetic. Give only the letter of "
        "the correct option, e.g. B."
    )

    def load_items(self) -> Sequence[TaskItem]:
        source = FIXTURES / "wemath" if self.data_dir is None else self.data_dir
        rows, base = load_rows(
            "We-Math", source, self.split, required=REQUIRED_COLUMNS, id_column="ID",
            schema="We-Math/We-Math",
        )
        ids = unique_ids([f"{i}/{k}" for i, k in zip(column(rows, "ID"), column(rows, "key"),
                                                       strict=True)], "We-Math", "(ID, key)")
        return LazyItems(rows, ids, lambda row: self._build(row, base))

    def _build(self, row: Mapping[str, Any], base: Path | None) -> TaskItem:
        item_id = f"{row['ID']}/{row['key']}"
        option = str(row.get("option") or "")
        choices = parse_choices(option)
        answer = str(row.get("answer") or "").strip().upper()
        if len(answer) != 1 or answer not in LETTERS[: len(choices) or len(LETTERS)]:
            raise DatasetError(
                f"We-Math {item_id!r}: answer {row.get('answer')!r} is not one of the option "
                f"letters of {option!r}"
            )
        metadata = {
            "ID": str(row["ID"]), "key": str(row["key"]), "split": row.get("split"),
            "knowledge concept": row.get("knowledge concept"),
            "knowledge concept description": row.get("knowledge concept description"),
            "question number": row.get("question number"), "option": option,
            "choices": choices, "steps": str(row["key"]).split("_")[0],
        }  # fmt: skip
        image = _image_source(row.get("image_path"), base)
        return TaskItem(
            task_id=item_id,
            question=f"{HINT}\nQuestion: {row.get('question') or ''}\nOption: {option}",
            images=(decode_image(image, base, f"We-Math {item_id!r}"),),
            answer=answer,
            metadata=metadata,
        )

    def score(self, item: TaskItem, response: str) -> float:
        """We-Math's rule in the task's scoring mode: 1.0 or 0.0, never an exception."""
        if self.scoring == "official":
            return score_official(response, item.answer)
        n = len(item.metadata.get("choices") or {}) or len(LETTERS)
        return score_wemath(response, item.answer, n)


def _image_source(value: Any, base: Path | None) -> Any:
    """The image, or its path; `testmini.json`'s relative paths may sit under `testmini/`."""
    if isinstance(value, str) and base is not None and not (base / value).is_file():
        for folder in ("testmini", "data"):
            if (base / folder / value).is_file():
                return str(base / folder / value)
    return value
