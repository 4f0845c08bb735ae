"""HR-MMSearch (`sensenova/HR-MMSearch`): knowledge-intensive questions about high-resolution
images, answered by zooming in on a detail and searching for a fact about it.

Loads the published schema (`sample_id, query, query_image, ground_truth, difficulty, category`;
the Hub ships one split, `train`, as `data/train-*.parquet`) and scores as SenseNova-MARS's
official evaluation does (github.com/OpenSenseNova/SenseNova-MARS `inference/eval.py`,
`llm_judge_score`, commit c6e45eb9): a normalized exact match against the ground truth first
(`normalize_answer`/`em_check`: SQuAD normalization that keeps a lone "a"), and only when that
fails an LLM judge (GPT-4o there). Here the judge is the one given as `judge=`; without one the
exact match is the whole score.

`scoring="official"` matches the text the env extracted from `<answer>` (upstream's
`extract_answer_allow_no_tag`) as it is. `scoring="lenient"` (the RL default) first strips an
agent's dressing with `clean_answer` (`\\boxed{...}`, "Answer:", "The final answer is",
`\\text{}`), so "\\boxed{Paris}" matches "Paris"; there `fallback="contains"` also accepts an
answer that contains the ground truth as whole words, a stand-in for the judge (not official).

Search: the default `search:hrmmsearch` tool is BM25 over the fixture's local corpus, so episodes
on the bundled fixture are deterministic. The real benchmark needs web search: pass e.g.
`tools=["crop", SearchTool("http", url=...)]`, which makes episodes nondeterministic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from axpo_env.errors import DatasetError
from axpo_env.tasks.answer_match import contains_match, exact_match
from axpo_env.tasks.base import DEFAULT_SCORING, FIXTURES, Judge, LazyItems, Task, TaskItem
from axpo_env.tasks.loading import column, decode_image, load_rows, unique_ids
from axpo_env.tasks.scoring import clean_answer
from axpo_env.tools.search import SearchTool

REQUIRED_COLUMNS = ("sample_id", "query", "query_image", "ground_truth")
FIXTURE_DIR = FIXTURES / "hrmmsearch"
FIXTURE_CORPUS = FIXTURE_DIR / "search_corpus.jsonl"
FALLBACKS = ("em", "contains")

INSTRUCTIONS = (
    "Answer the question about the image. The answer is a fact that the image does not show: "
    "first find out what the image shows (zoom in with `crop` to read small text, signs and "
    "labels), then look the fact up with `search`. Give only the short final answer: a name, "
    "number, date or short phrase."
)


def fixture_search() -> SearchTool:
    """The `search:hrmmsearch` preset: BM25 over the fixture's corpus (deterministic)."""
    return SearchTool(corpus=FIXTURE_CORPUS)


def _ground_truths(value: Any) -> list[str]:
    """The published `ground_truth` is one string; JSONL conversions may hold a list."""
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, Sequence):
        return [str(v) for v in value if v is not None and str(v).strip()]
    return [] if value is None else [str(value)]


class HRMMSearch(Task):
    """HR-MMSearch as an env task.

    `data_dir`: None (the bundled 6-item fixture), a local folder in the Hub layout
    (`data/train-*.parquet`), a parquet/JSON/JSONL file of rows, or the hub name
    `"sensenova/HR-MMSearch"`. `fallback`: "em" (the official rule without a judge) or
    "contains" (see the module docstring).
    """

    env_id: ClassVar[str] = "AXPO-HRMMSearch-v0"
    default_split: ClassVar[str] = "train"
    default_tools: ClassVar[tuple[str, ...]] = ("search:hrmmsearch", "crop")
    instructions: ClassVar[str] = INSTRUCTIONS
    #: The bundled BM25 corpus is local and fixed; an HTTP search backend is not.
    nondeterministic: ClassVar[bool] = False

    def __init__(
        self, split: str | None = None, data_dir: str | Path | None = None,
        judge: Judge | None = None, scoring: str = DEFAULT_SCORING, fallback: str = "em",
    ):
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
        super().__init__(split=split, data_dir=data_dir, judge=judge, scoring=scoring)
        self.fallback = fallback

    def load_items(self) -> Sequence[TaskItem]:
        source = FIXTURE_DIR if self.data_dir is None else self.data_dir
        rows, base = load_rows(
            "HR-MMSearch", source, self.split, required=REQUIRED_COLUMNS, id_column="sample_id",
            schema="sensenova/HR-MMSearch",
        )
        ids = unique_ids([str(i) for i in column(rows, "sample_id")], "HR-MMSearch", "sample_ids")
        return LazyItems(rows, ids, lambda row: self._build(row, base))

    def _build(self, row: Mapping[str, Any], base: Path | None) -> TaskItem:
        sample_id = str(row["sample_id"])
        label = f"HR-MMSearch sample_id {sample_id!r}"
        answers = _ground_truths(row.get("ground_truth"))
        if not answers:
            raise DatasetError(f"{label} has an empty ground_truth")
        metadata = {
            "sample_id": sample_id,
            "query": row.get("query"),
            "ground_truths": tuple(answers),
            "difficulty": row.get("difficulty"),
            "category": row.get("category"),
        }
        return TaskItem(
            task_id=sample_id,
            question=str(row.get("query") or ""),
            images=(decode_image(row.get("query_image"), base, label),),
            answer=answers[0],
            metadata=metadata,
        )

    def score(self, item: TaskItem, response: str) -> float:
        """1.0 on a normalized exact match; else the judge's score when a judge was given;
        else the lenient mode's fallback rule (0.0 for "em" and in official mode)."""
        golds = item.metadata.get("ground_truths") or (item.answer,)
        prediction = response if self.scoring == "official" else clean_answer(response)
        if exact_match(prediction, golds, keep_lone_a=True):
            return 1.0
        if self.judge is not None:
            verdict = float(self.judge(item, response))
            return min(max(verdict, 0.0), 1.0) if math.isfinite(verdict) else 0.0
        if (self.scoring == "lenient" and self.fallback == "contains"
                and contains_match(prediction, golds, keep_lone_a=True)):
            return 1.0
        return 0.0
