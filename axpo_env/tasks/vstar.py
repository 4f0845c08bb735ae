"""V* Bench (`craigwu/vstar_bench`): 191 questions about small objects in high-resolution photos.

Two categories: `direct_attributes` (an object's colour or material, 4 options) and
`relative_position` (left or right of another object, 2 options). The repository ships each item
as an image plus a JSON annotation (`question`, `options`, `target_object`, `bbox`) whose first
option is the correct one (`vstar_bench_eval.py` scores `option_chosen == 0`), and the same
questions as `test_questions.jsonl` rows (`image`, `text` with "(A) ..." option lines, `category`,
`question_id`, `label`). Because the correct option always comes first, the authors shuffle the
options for generation-based models (penghao-wu/vstar issue #8); so does this task, per episode:
`episode_item(item, seed)` shuffles them with the episode seed and the answer is the letter the
correct option landed on. Answers are read with VLMEvalKit's exact matching
(`vlmeval_choices.py`): its current rules with `scoring="official"`, the pre-August-2025 rules
plus two documented tolerances with `scoring="lenient"` (the RL default).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image

from axpo_env.errors import DatasetError
from axpo_env.tasks.base import FIXTURES, LazyItems, Task, TaskItem
from axpo_env.tasks.loading import (
    HUB_NAME,
    column,
    decode_image,
    has_column,
    hub_file,
    load_rows,
    unique_ids,
)
from axpo_env.tasks.vlmeval_choices import LETTERS, lettered, score_choice, shuffled_order

CATEGORIES = ("direct_attributes", "relative_position")
ROW_COLUMNS = ("text", "label", "image")
INSTRUCTION = "Answer with the option's letter from the given choices directly."
_OPTION_LINE = re.compile(r"^\(([A-Z])\)\s*(.*)$")


def build_prompt(question: str, options: Sequence[str]) -> str:
    """The published `test_questions.jsonl` text: question, "(A) ..." lines, instruction."""
    lines = [f"({LETTERS[i]}) {o}" for i, o in enumerate(options)]
    return "\n".join([question, *lines, INSTRUCTION])


def parse_prompt(text: str, label: str) -> tuple[str, list[str], int]:
    """(question, options, correct index) from a `text` field and its `label` letter."""
    question, options = [], []
    for line in str(text).splitlines():
        m = _OPTION_LINE.match(line.strip())
        if m and m.group(1) == LETTERS[len(options)]:
            options.append(m.group(2).strip())
        elif not options:
            question.append(line)
    if len(options) < 2:
        raise ValueError("fewer than two '(A) ...' option lines")
    label = str(label).strip().strip("()").upper()
    if len(label) != 1 or label not in LETTERS[: len(options)]:
        raise ValueError(f"label {label!r} names none of its {len(options)} options")
    return "\n".join(question).strip(), options, LETTERS.index(label)


class VStar(Task):
    """V* Bench as an env task.

    `data_dir`: None (the bundled 6-item fixture), a folder in the repository's layout (with
    `test_questions.jsonl`, or only the `direct_attributes/` and `relative_position/` folders of
    image + JSON pairs), a `test_questions.jsonl` / parquet file of rows, or a hub name
    (`"craigwu/vstar_bench"`, images fetched per item; `"lmms-lab/vstar-bench"` embeds them).
    `task.items` keep the published option order; episodes shuffle it (see `episode_item`).
    """

    env_id: ClassVar[str] = "AXPO-VStar-v0"
    default_split: ClassVar[str] = "test"
    default_tools: ClassVar[tuple[str, ...]] = ("crop", "python")
    instructions: ClassVar[str] = (
        "Answer the multiple-choice question about the high-resolution photo. The object asked "
        "about is small: find it, then zoom in with `crop` before judging its colour, material "
        "or position, and crop again if the region is still unclear. Give only the option "
        "letter, e.g. B."
    )

    def load_items(self) -> Sequence[TaskItem]:
        source = FIXTURES / "vstar" if self.data_dir is None else self.data_dir
        path = Path(source).expanduser()
        if path.is_dir() and not (path / "test_questions.jsonl").is_file():
            if any((path / c).is_dir() for c in CATEGORIES):
                return self._load_folders(path)
        rows, base = load_rows(
            "V*", source, self.split, required=ROW_COLUMNS, id_column="question_id",
            patterns=("test_questions.jsonl",), schema="craigwu/vstar_bench",
        )
        key = "question_id" if has_column(rows, "question_id") else "image"
        ids = unique_ids([str(q) for q in column(rows, key)], "V*", key)
        hub = str(source) if base is None and HUB_NAME.match(str(source)) else None
        return LazyItems(rows, ids, lambda row: self._from_row(row, base, hub), cache_size=16)

    def _from_row(self, row: Mapping[str, Any], base: Path | None, hub: str | None) -> TaskItem:
        qid = str(row["question_id"] if row.get("question_id") is not None else row["image"])
        label = f"V* question_id {qid!r}"
        try:
            question, options, correct = parse_prompt(row["text"], row["label"])
        except ValueError as e:
            raise DatasetError(f"{label}: cannot read its options from `text`: {e}") from None
        image = row["image"]
        if hub is not None and isinstance(image, str):
            image = hub_file(hub, [image], label)
        path = row["image"] if isinstance(row["image"], str) else None
        meta = {"question_id": qid, "category": row.get("category"), "image": path}
        return _item(qid, question, options, correct, decode_image(image, base, label), meta)

    def _load_folders(self, root: Path) -> Sequence[TaskItem]:
        """The per-item layout `vstar_bench_eval.py` reads: `<category>/<name>.<ext>` beside
        `<category>/<name>.json`, whose first option is correct."""
        records = []
        for cat in CATEGORIES:
            folder = root / cat
            for img in sorted(folder.glob("*")) if folder.is_dir() else []:
                if img.suffix.lower() in (".json", "") or img.name.startswith("."):
                    continue
                ann = img.with_suffix(".json")
                if not ann.is_file():
                    raise DatasetError(f"V* image {img} has no annotation {ann.name} beside it")
                records.append((f"{cat}/{img.name}", cat, img, ann))
        if not records:
            raise DatasetError(f"no V* images under {root}/{{{','.join(CATEGORIES)}}}")
        return LazyItems(records, [r[0] for r in records], self._from_folder, cache_size=16)

    @staticmethod
    def _from_folder(record: tuple[str, str, Path, Path]) -> TaskItem:
        name, cat, img, ann = record
        try:
            data = json.loads(ann.read_text(encoding="utf-8"))
            question, options = str(data["question"]), [str(o) for o in data["options"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DatasetError(
                f"V* annotation {ann}: expected JSON with `question` and `options` ({e!r})"
            ) from e
        if len(options) < 2:
            raise DatasetError(f"V* annotation {ann} has fewer than two options")
        meta = {"question_id": name, "category": cat, "image": name,
                "target_object": data.get("target_object"), "bbox": data.get("bbox")}
        return _item(name, question, options, 0, decode_image(str(img), None, f"V* {name}"), meta)

    def episode_item(self, item: TaskItem, seed: int) -> TaskItem:
        """The item with its options shuffled by `seed` (a pure function of item and seed)."""
        options = item.metadata["published_options"]
        order = shuffled_order(len(options), f"vstar|{item.task_id}|{seed}")
        shown = [options[i] for i in order]
        answer = LETTERS[order.index(item.metadata["correct_index"])]
        meta = {**item.metadata, "options": shown, "choices": lettered(shown)}
        return replace(item, question=build_prompt(meta["question"], shown), answer=answer,
                       metadata=meta)

    def score(self, item: TaskItem, response: str) -> float:
        """1.0 when the response names the correct option (letter, or its text), else 0.0."""
        return score_choice(response, item.metadata["choices"], item.answer, self.scoring)


def _item(
    task_id: str, question: str, options: list[str], correct: int, image: Image.Image,
    meta: Mapping[str, Any],
) -> TaskItem:
    fields = {**meta, "question": question, "published_options": options, "options": options,
              "choices": lettered(options), "correct_index": correct,
              "correct_option": options[correct]}
    return TaskItem(task_id=task_id, question=build_prompt(question, options), images=(image,),
                    answer=LETTERS[correct], metadata=fields)
