"""MMSearch (`CaraJ/MMSearch`, end-to-end task): news and knowledge questions, most about an
image, whose answers can only be found by searching.

Loads the published `end2end` config (split `end2end`, the file `end2end.parquet`: `sample_id,
query, query_image, image_search_result, area, subfield, timestamp, gt_requery, gt_answer,
alternative_gt_answers`; `query_image` is null for text-only queries) and scores as the official
end-to-end evaluation does (github.com/CaraJ7/MMSearch `eval_end2end.py` with
`score/f1_score.py`, commit d340f3f5; also lmms-eval's `mmsearch_aggregate_results_f1_score`):
the token F1 of the answer against `gt_answer` and each of `alternative_gt_answers`, keeping the
best, after SQuAD normalization. The score is rule-based, so a `judge=` is ignored. Partial
answers earn partial reward; `info["correct"]` needs F1 = 1.

`scoring="official"` scores the text the env extracted from `<answer>` (upstream's
`prediction`) as it is, so "Answer: Paris" has F1 2/3 against "Paris". `scoring="lenient"` (the
RL default) first strips an agent's dressing with `clean_answer` (`\\boxed{...}`, "Answer:",
"The final answer is", `\\text{}`), so those answers score 1.

The official pipeline also shows the model `image_search_result`, a screenshot of an image search
for the query image; `with_image_search_result=True` adds it as the second image. Agentic-search
papers often keep only the queries with an image (171 of 300): `image_only=True`.

Search: the default `search:mmsearch` tool is BM25 over the fixture's local corpus, so episodes
on the bundled fixture are deterministic. The real benchmark needs web search: pass e.g.
`tools=["crop", SearchTool("http", url=...)]`, which makes episodes nondeterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from axpo_env.errors import DatasetError
from axpo_env.tasks.answer_match import answer_list, best_f1
from axpo_env.tasks.base import DEFAULT_SCORING, FIXTURES, Judge, LazyItems, Task, TaskItem
from axpo_env.tasks.loading import column, decode_image, load_rows, unique_ids
from axpo_env.tasks.scoring import clean_answer
from axpo_env.tools.search import SearchTool

REQUIRED_COLUMNS = ("sample_id", "query", "query_image", "gt_answer", "alternative_gt_answers")
FIXTURE_DIR = FIXTURES / "mmsearch"
FIXTURE_CORPUS = FIXTURE_DIR / "search_corpus.jsonl"
METADATA_COLUMNS = ("area", "subfield", "timestamp", "gt_requery")

INSTRUCTIONS = (
    "Answer the question, which is about the image when one is given. The answer needs facts "
    "that neither the image nor your memory hold: find out what the image shows (zoom in with "
    "`crop` to read small text, names and labels), then look the facts up with `search`. Give "
    "only the short final answer: a name, number, date or short phrase."
)


def fixture_search() -> SearchTool:
    """The `search:mmsearch` preset: BM25 over the fixture's corpus (deterministic)."""
    return SearchTool(corpus=FIXTURE_CORPUS)


def _has_image(value: Any) -> bool:
    if isinstance(value, Mapping):
        return bool(value.get("bytes") or value.get("path"))
    return value is not None and value != ""


class MMSearch(Task):
    """MMSearch's end-to-end task as an env task.

    `data_dir`: None (the bundled 6-item fixture), a local folder holding `end2end.parquet` (the
    Hub layout) or `end2end/**/*.parquet` (the Hub's parquet-converter branch), a
    parquet/JSON/JSONL file of rows, or the hub name `"CaraJ/MMSearch"` (config `end2end`).
    """

    env_id: ClassVar[str] = "AXPO-MMSearch-v0"
    default_split: ClassVar[str] = "end2end"
    default_tools: ClassVar[tuple[str, ...]] = ("search:mmsearch", "crop")
    instructions: ClassVar[str] = INSTRUCTIONS
    #: The bundled BM25 corpus is local and fixed; an HTTP search backend is not.
    nondeterministic: ClassVar[bool] = False

    def __init__(
        self, split: str | None = None, data_dir: str | Path | None = None,
        judge: Judge | None = None, scoring: str = DEFAULT_SCORING, image_only: bool = False,
        with_image_search_result: bool = False,
    ):
        super().__init__(split=split, data_dir=data_dir, judge=judge, scoring=scoring)
        self.image_only = image_only
        self.with_image_search_result = with_image_search_result

    def load_items(self) -> Sequence[TaskItem]:
        source = FIXTURE_DIR if self.data_dir is None else self.data_dir
        rows, base = load_rows(
            "MMSearch", source, self.split, required=REQUIRED_COLUMNS, id_column="sample_id",
            schema="CaraJ/MMSearch", hub_config="end2end",
            patterns=(f"{self.split}.parquet", f"{self.split}/**/*.parquet"),
        )
        if self.image_only:
            keep = [i for i, v in enumerate(column(rows, "query_image")) if _has_image(v)]
            rows = [rows[i] for i in keep] if isinstance(rows, list) else rows.select(keep)
        ids = unique_ids([str(i) for i in column(rows, "sample_id")], "MMSearch", "sample_ids")
        return LazyItems(rows, ids, lambda row: self._build(row, base))

    def _build(self, row: Mapping[str, Any], base: Path | None) -> TaskItem:
        sample_id = str(row["sample_id"])
        label = f"MMSearch sample_id {sample_id!r}"
        gt_answer = row.get("gt_answer")
        if gt_answer is None or not str(gt_answer).strip():
            raise DatasetError(f"{label} has an empty gt_answer")
        images = []
        if _has_image(row.get("query_image")):
            images.append(decode_image(row["query_image"], base, label))
            if self.with_image_search_result and _has_image(row.get("image_search_result")):
                images.append(decode_image(row["image_search_result"],
                                           base, f"{label} (image_search_result)"))
        metadata = {
            "sample_id": sample_id,
            "query": row.get("query"),
            "alternative_gt_answers": tuple(answer_list(row.get("alternative_gt_answers"))),
            "has_image": bool(images),
            **{k: row.get(k) for k in METADATA_COLUMNS},
        }
        return TaskItem(
            task_id=sample_id,
            question=str(row.get("query") or ""),
            images=tuple(images),
            answer=str(gt_answer),
            metadata=metadata,
        )

    def score(self, item: TaskItem, response: str) -> float:
        """The best token F1 against `gt_answer` and the alternatives, in [0, 1]."""
        golds = [item.answer, *item.metadata.get("alternative_gt_answers", ())]
        prediction = response if self.scoring == "official" else clean_answer(response)
        return best_f1(prediction, golds)
