"""HR-Bench (`DreamMr/HR-Bench`): multiple-choice questions on 4K and 8K images.

800 rows per resolution in VLMEvalKit's schema (`index, question, answer, category, A, B, C, D,
cycle_category, image`): `category` is `single` (one small region) or `cross` (relations
between distant regions), each question appears with its options rotated (`cycle_category`
0-3), and `image` is base64 text, or, VLMEvalKit's convention for repeated images, the `index`
of the row that carries it. The hub repository ships `hr_bench_4k.{parquet,tsv}` and
`hr_bench_8k.{parquet,tsv}` (splits `hrbench_4k` / `hrbench_8k` of config
`hrbench_version_split`). The prompt is VLMEvalKit's `ImageMCQDataset.build_prompt`, which the
authors' `HRBenchDataset` inherits; a row scores 1 when the answer names `answer` by
VLMEvalKit's exact matching (`vlmeval_choices.py`: its current rules with
`scoring="official"`, the pre-August-2025 rules plus two documented tolerances with
`scoring="lenient"`, the RL default), the per-row `hit` that `report_acc_hrbench`
(`vlmeval/dataset/utils/hrbench.py`) averages per cycle and category.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from axpo_env.errors import DatasetError
from axpo_env.tasks.base import FIXTURES, LazyItems, Task, TaskItem
from axpo_env.tasks.loading import column, decode_image, load_rows, unique_ids
from axpo_env.tasks.vlmeval_choices import LETTERS, score_choice

REQUIRED_COLUMNS = ("index", "question", "answer", "category", "A", "B", "C", "D", "image")
HUB_CONFIG = "hrbench_version_split"


def build_prompt(row: Mapping[str, Any], choices: Mapping[str, str]) -> str:
    """VLMEvalKit's multiple-choice prompt: optional hint, question, "A. ..." options."""
    prompt = f"Hint: {row['hint']}\n" if _present(row.get("hint")) else ""
    prompt += f"Question: {row['question']}\n"
    prompt += "Options:\n" + "".join(f"{k}. {v}\n" for k, v in choices.items())
    return prompt + "Please select the correct answer from the options above. \n"


class HRBench(Task):
    """HR-Bench at one resolution; `HRBench4K` and `HRBench8K` are the registered tasks.

    `data_dir`: None (the bundled fixture), a folder holding `hr_bench_4k.parquet` or
    `hr_bench_4k.tsv` (8k likewise), one such file, or a hub name (`"DreamMr/HR-Bench"`).
    Images are decoded only when their item is used, and few are cached: an 8K image is 100 MB
    of pixels.
    """

    default_tools: ClassVar[tuple[str, ...]] = ("crop", "python")
    instructions: ClassVar[str] = (
        "Answer the multiple-choice question about the very large image. The detail it asks "
        "about is small and a downscaled view will not show it: zoom in with `crop` on the "
        "regions that matter (for a question about several objects, crop each of them), then "
        "give only the option letter, e.g. C."
    )
    file_stem: ClassVar[str] = ""
    cache_size: ClassVar[int] = 16

    def load_items(self) -> Sequence[TaskItem]:
        source = FIXTURES / "hrbench" if self.data_dir is None else self.data_dir
        rows, base = load_rows(
            "HR-Bench", source, self.split, required=REQUIRED_COLUMNS, id_column="index",
            patterns=(f"{self.file_stem}.parquet", f"{self.file_stem}.tsv"),
            schema="DreamMr/HR-Bench", hub_config=HUB_CONFIG,
        )
        ids = unique_ids([_index(i) for i in column(rows, "index")], "HR-Bench", "index values")
        position = {i: n for n, i in enumerate(ids)}
        return LazyItems(rows, ids, lambda row: self._build(row, position, base),
                         cache_size=self.cache_size)

    def _build(self, row: Mapping[str, Any], position: Mapping[str, int], base: Path | None,
               ) -> TaskItem:
        index = _index(row["index"])
        label = f"HR-Bench index {index!r}"
        choices = {k: str(row[k]) for k in LETTERS if k in row and _present(row[k])}
        answer = str(row["answer"]).strip()
        if answer not in choices:
            raise DatasetError(f"{label}: answer {answer!r} is not one of its options "
                               f"{', '.join(choices) or 'none'}")
        image = row["image"]
        if isinstance(image, str) and len(image) <= 64 and _index(image) in position:
            # VLMEvalKit's convention: the index of the row carrying the image. Its item's
            # image is reused, so the rotated cycles of a question share one decoded image.
            if _index(image) == index:
                raise DatasetError(f"{label}: its image field names its own index")
            images = self.items[position[_index(image)]].images
        else:
            images = (decode_image(image, base, label),)
        meta = {
            "index": index, "question": row["question"], "category": row["category"],
            "cycle_category": row.get("cycle_category"), "choices": choices,
        }
        return TaskItem(task_id=index, question=build_prompt(row, choices),
                        images=images, answer=answer, metadata=meta)

    def score(self, item: TaskItem, response: str) -> float:
        """1.0 when the response names the correct option (letter, or its text), else 0.0."""
        return score_choice(response, item.metadata["choices"], item.answer, self.scoring)


class HRBench4K(HRBench):
    """HR-Bench 4K: 3840x2160 images."""

    env_id: ClassVar[str] = "AXPO-HRBench4K-v0"
    default_split: ClassVar[str] = "hrbench_4k"
    file_stem: ClassVar[str] = "hr_bench_4k"


class HRBench8K(HRBench):
    """HR-Bench 8K: 7680x4320 images (about 100 MB each once decoded, so 8 are cached)."""

    env_id: ClassVar[str] = "AXPO-HRBench8K-v0"
    default_split: ClassVar[str] = "hrbench_8k"
    file_stem: ClassVar[str] = "hr_bench_8k"
    cache_size: ClassVar[int] = 8


def _index(value: Any) -> str:
    """Row indices as text ("7", not "7.0"), whatever type the file reader gave them."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _present(value: Any) -> bool:
    """False for the empty cells of a 2- or 3-option row (None, NaN, "")."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return str(value).strip() != ""
