"""VisualProbe (Mini-o3): free-form questions about small, hidden targets in large images.

Three test sets, `Mini-o3/VisualProbe_Easy`, `_Medium` and `_Hard` on the Hub (500 questions in
all), each a `val.json` list of records `{"images": [...], "problem": "<image>\\n...",
"solution": ..., "data_source": "visual_probe_<level>", "doc_id": ...}` with images under
`data/`; Mini-o3 joins the image paths to the folder holding the level folders
(`BASE_IMAGE_DIR`). Mini-o3's reported accuracy asks a judge model whether the text inside the
`<answer>` tag matches `solution` (`verl/utils/reward_score/general_qa_tool.py`); give one as
`judge=` (a `Judge`) and both scoring modes use it, the official mode starting after that judge.

Without a judge, `scoring="official"` is Mini-o3's rule-based accuracy, `inner_acc_reward` in
`verl/utils/reward_score/general_qa_tool_mc.py` (github.com/Mini-o3/Mini-o3, commit 8654dbf4):
the answer, trimmed, equals `solution` exactly (case-sensitive: "Red" is
not "red"), or it starts with "(X)" or "X." where X is `solution` itself (a capital letter).
`scoring="lenient"` (the RL default) compares after case-folding, collapsing spaces and
dropping surrounding quotes, a final period and `clean_answer`'s dressing (`\\boxed{}`,
"Answer:"), so "Red." counts for "red".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

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
from axpo_env.tasks.scoring import clean_answer

logger = logging.getLogger(__name__)

LEVELS = {"easy": "VisualProbe_Easy", "medium": "VisualProbe_Medium", "hard": "VisualProbe_Hard"}
REQUIRED_COLUMNS = ("images", "problem", "solution")
_QUOTES = "\"'`“”‘’"


def normalize(text: Any) -> str:
    """Answer text for comparison: unwrapped, case-folded, single-spaced, without surrounding
    quotes or a final period."""
    s = re.sub(r"\s+", " ", clean_answer(text)).strip()
    s = s.strip(_QUOTES).strip().rstrip(".").strip().strip(_QUOTES).strip()
    return s.casefold()


def official_rule_score(response: Any, solution: Any) -> float:
    """Mini-o3's `inner_acc_reward` on the extracted answer: exact (case-sensitive), "(X)...",
    "X. ..."."""
    try:
        predict, truth = str(response), str(solution).strip()
        if predict.strip() == truth:
            return 1.0
        for pattern in (r"^\(([A-Z])\).*$", r"^([A-Z])\..*$"):
            m = re.match(pattern, predict, re.DOTALL)
            if m and m.group(1) == truth:
                return 1.0
        return 0.0
    except Exception:  # str() of a hostile object
        return 0.0


def rule_score(response: Any, solution: Any) -> float:
    """Mini-o3's rule-based accuracy (exact, "(X) ...", "X. ..."), case- and dressing-tolerant."""
    try:
        pred, truth = normalize(response), normalize(solution)
        if not pred or not truth:
            return 0.0
        if pred == truth:
            return 1.0
        raw = clean_answer(response)
        letter = re.match(r"^\(([A-Z])\)", raw) or re.match(r"^([A-Z])\.", raw)
        return 1.0 if letter and letter.group(1) == str(solution).strip() else 0.0
    except Exception:  # a reward must not crash a training step on odd input
        return 0.0


class VisualProbe(Task):
    """VisualProbe as an env task; `split` is the level: "easy", "medium" or "hard".

    `data_dir`: None (the bundled fixture, 2 items per level), a folder holding the level
    folders (`VisualProbe_Hard/val.json`, ...) as Mini-o3's `BASE_IMAGE_DIR`, one level folder,
    its `val.json`, or a hub name (`"Mini-o3/VisualProbe_Hard"`; its images are fetched per
    item). `judge`: see the module docstring.
    """

    env_id: ClassVar[str] = "AXPO-VisualProbe-v0"
    default_split: ClassVar[str] = "hard"
    default_tools: ClassVar[tuple[str, ...]] = ("crop", "python")
    instructions: ClassVar[str] = (
        "Answer the question about the large image with a short phrase: a word, name, number "
        "or colour. The target is small and may sit among look-alikes, so search for it: zoom "
        "into candidate regions with `crop`, zoom further into a crop when needed, and check "
        "the details the question names before answering."
    )

    def load_items(self) -> Sequence[TaskItem]:
        if self.split not in LEVELS:
            raise DatasetError(f"VisualProbe has no split {self.split!r}; use one of "
                               f"{', '.join(LEVELS)}")
        source = FIXTURES / "visualprobe" if self.data_dir is None else self.data_dir
        hub = isinstance(source, str) and HUB_NAME.match(source) and not Path(source).exists()
        rows, base = load_rows(
            "VisualProbe", source if hub else self._val_json(Path(source).expanduser()),
            "validation" if hub else self.split, required=REQUIRED_COLUMNS, id_column="doc_id",
            schema="Mini-o3/VisualProbe_Hard",
        )
        docs = column(rows, "doc_id") if has_column(rows, "doc_id") else [None] * len(rows)
        ids = unique_ids([str(d) if d is not None else f"visual_probe_{self.split}_{i}"
                          for i, d in enumerate(docs)], "VisualProbe", "doc_ids")
        repo = str(source) if hub else None
        return LazyItems(range(len(ids)), ids,
                         lambda i: self._build(ids[i], rows[i], base, repo), cache_size=16)

    def _val_json(self, path: Path) -> Path:
        """The level's `val.json` under `path` (a base folder or a level folder), or `path`."""
        if not path.is_dir():
            return path
        tried = [path / LEVELS[self.split] / "val.json", path / "val.json"]
        for candidate in tried:
            if candidate.is_file():
                return candidate
        raise DatasetError(f"no VisualProbe {self.split!r} data under {path}: looked for "
                           f"{', '.join(str(t) for t in tried)}")

    def _build(
        self, task_id: str, row: Mapping[str, Any], base: Path | None, hub: str | None,
    ) -> TaskItem:
        label = f"VisualProbe doc_id {task_id!r}"
        paths = row["images"]
        if isinstance(paths, (str, bytes, Mapping)):
            paths = [paths]
        if not paths:
            raise DatasetError(f"{label} has no images")
        images = tuple(decode_image(_locate(p, base, hub, label), None, label) for p in paths)
        question = re.sub(r"\s*<image>\s*", "\n", str(row["problem"])).strip()
        source = row.get("data_source")  # "visual_probe_easy": the level the file really holds
        level = str(source).removeprefix("visual_probe_") if source else self.split
        meta = {"doc_id": task_id, "problem": row["problem"], "data_source": source,
                "level": level, "images": [p for p in paths if isinstance(p, str)]}
        return TaskItem(task_id=task_id, question=question, images=images,
                        answer=str(row["solution"]).strip(), metadata=meta)

    def score(self, item: TaskItem, response: str) -> float:
        """The judge's score when one was given (Mini-o3's reported metric), else the rule."""
        if self.judge is not None:
            try:
                return min(1.0, max(0.0, float(self.judge(item, response))))
            except Exception:
                logger.warning("VisualProbe judge failed; scoring %r by rule", item.task_id,
                               exc_info=True)
        if self.scoring == "official":
            return official_rule_score(response, item.answer)
        return rule_score(response, item.answer)


def _locate(path: Any, base: Path | None, hub: str | None, label: str) -> Any:
    """An image path of a record as a local file: beside `val.json`, in the folder above it
    (Mini-o3's `BASE_IMAGE_DIR`), or downloaded from the hub repository."""
    if not isinstance(path, str) or Path(path).is_absolute():
        return path
    if hub is not None:
        parts = path.split("/", 1)
        return hub_file(hub, [path, *parts[1:]], label)
    roots = [base, base.parent] if base is not None else [Path.cwd()]
    for root in roots:
        if (root / path).is_file():
            return str(root / path)
    where = " or ".join(str(r / path) for r in roots)
    raise DatasetError(f"{label}: image file not found at {where}")
