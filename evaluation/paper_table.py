"""The AXPO paper's Pass@4 table beside a run's own (`axpo eval --paper-table 2B|4B|8B`).

The numbers are the authors' per-benchmark Pass@4 (in percent) for the agentic base model
(Qwen3-VL-{2B,4B,8B}-Thinking used as an agent), SFT + GRPO and SFT + AXPO, and the 32B base,
copied from the `RESULTS_DATA` object of `script.js` in the authors' project page, the public
repository github.com/ByungKwanLee/AXPO-page (`SOURCE` names the commit). The page averages a
row as the unweighted mean of its benchmarks (`meanAt` in script.js), and so does this module;
the averages of the numbers below reproduce the ones the paper states (2B 66.8 -> 69.6, 4B 71.7
-> 74.1, 8B 74.0 -> 75.8 for GRPO -> AXPO: tests/test_paper_table.py).

The run's column is Pass@4 with the unbiased estimator (Chen et al., 2021) per item, averaged
over items: exactly Pass@4 with 4 samples an item, the estimate of it with more. With fewer than
4 the column shows Pass@n, lower than Pass@4 would be, and a warning says so. Averages compare
like with like: over the nine benchmarks as published, and over only the benchmarks this run
covered, for the paper's rows and the run alike. Notes flag what makes a number incomparable
(a bundled fixture instead of the benchmark, a scoring mode other than official).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation.metrics import pass_at_k
from evaluation.report import PAPER_TABLE_FILES

SOURCE = {
    "repository": "https://github.com/ByungKwanLee/AXPO-page",
    "file": "script.js",
    "object": "RESULTS_DATA",
    "commit": "922b4cf55683e252d8789e6517c2429bc14ca110",  # HEAD when copied (2026-05-29)
    "file_commit": "519c10492e2bef409b5c138fe00aeb4cb652378b",  # the last change to script.js
}
#: The page's benchmark columns (its BENCH_NAMES) and the env each maps to, in its order.
BENCHMARKS: tuple[tuple[str, str], ...] = (
    ("MathVision", "AXPO-MathVision-v0"), ("DynaMath", "AXPO-DynaMath-v0"),
    ("Math-VR", "AXPO-MathVR-v0"), ("V*", "AXPO-VStar-v0"),
    ("VisualProbe", "AXPO-VisualProbe-v0"), ("HR-Bench 4K", "AXPO-HRBench4K-v0"),
    ("HR-Bench 8K", "AXPO-HRBench8K-v0"), ("HR-MMSearch", "AXPO-HRMMSearch-v0"),
    ("MMSearch", "AXPO-MMSearch-v0"),
)
#: Pass@4 (%) per benchmark in `BENCHMARKS` order: RESULTS_DATA as the page holds it.
PASS_AT_4: dict[str, dict[str, tuple[float, ...]]] = {
    "2B": {
        "Base": (32.6, 76.6, 28.9, 81.7, 15.1, 79.0, 77.0, 18.7, 46.3),
        "GRPO": (55.9, 80.2, 58.0, 94.2, 60.4, 83.5, 85.5, 28.2, 55.7),
        "AXPO": (61.2, 83.6, 60.0, 94.2, 60.4, 88.5, 88.0, 33.4, 57.3),
    },
    "4B": {
        "Base": (64.8, 82.6, 65.1, 95.8, 44.3, 83.5, 81.0, 27.5, 55.7),
        "GRPO": (69.7, 85.8, 71.9, 97.9, 57.5, 88.0, 84.5, 33.1, 57.0),
        "AXPO": (74.3, 87.0, 72.1, 97.9, 65.1, 91.0, 90.0, 32.1, 57.0),
    },
    "8B": {
        "Base": (63.5, 85.2, 68.3, 92.7, 55.7, 85.5, 82.5, 33.8, 59.0),
        "GRPO": (75.0, 87.0, 74.3, 96.9, 63.2, 87.5, 84.5, 38.0, 59.3),
        "AXPO": (75.7, 87.0, 74.1, 95.3, 67.9, 90.0, 89.0, 42.0, 61.0),
    },
    "32B": {"Base": (73.0, 89.4, 73.9, 97.4, 64.2, 90.5, 90.0, 38.0, 59.3)},
}
SCALES = ("2B", "4B", "8B")  # the scales with Base, +GRPO and +AXPO rows
METHODS = ("Base", "GRPO", "AXPO")
#: The Pass@4 averages the paper's text states (GRPO, AXPO), which `PASS_AT_4` must reproduce.
STATED_AVERAGES = {"2B": (66.8, 69.6), "4B": (71.7, 74.1), "8B": (74.0, 75.8)}
FILES = PAPER_TABLE_FILES
K = 4


def paper_average(scale: str, method: str, envs: Iterable[str] | None = None) -> float:
    """The page's average of a row: the unweighted mean over `envs` (default: all nine)."""
    wanted = set(envs) if envs is not None else {e for _, e in BENCHMARKS}
    values = [v for (_, e), v in zip(BENCHMARKS, PASS_AT_4[scale][method]) if e in wanted]
    return sum(values) / len(values)


def _run_pass4(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Pass@4 (%) of one env's episode rows: per item Pass@min(4, n), averaged over items."""
    by_task: dict[str, list[bool]] = {}
    for r in rows:
        by_task.setdefault(str(r["task_id"]), []).append(bool(r["correct"]))
    ns = [len(c) for c in by_task.values()]
    value = sum(pass_at_k(len(c), sum(c), min(K, len(c))) for c in by_task.values()) / len(ns)
    return {"pass@4": 100 * value, "items": len(ns), "samples": min(ns),
            "max_samples": max(ns)}


@dataclass
class PaperTable:
    """The paper's rows for one scale beside a run's Pass@4, with the notes that qualify it."""

    scale: str
    rows: list[dict[str, Any]]
    averages: dict[str, dict[str, Any]]
    covered: list[str]
    others: list[str]  # envs of the run the paper's table does not have
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "source": SOURCE, "metric": "pass@4 (%)",
                "benchmarks": self.rows, "averages": self.averages, "covered": self.covered,
                "not_in_paper": self.others, "notes": self.notes,
                "paper_32B_base": dict(zip((e for _, e in BENCHMARKS), PASS_AT_4["32B"]["Base"]))}

    def markdown(self) -> str:
        s = self.scale
        head = (f"| Benchmark | Env | Paper {s} Base | Paper {s} +GRPO | Paper {s} +AXPO | "
                "This run Pass@4 | Items x samples |")
        lines = [head, "|---|---|---:|---:|---:|---:|---:|"]
        for r in self.rows:
            run = "–" if r["run"] is None else f"{r['run']:.1f}"
            size = "–" if r["items"] is None else f"{r['items']} x {_samples(r)}"
            lines.append(f"| {r['benchmark']} | {r['env']} | {r['Base']:.1f} | {r['GRPO']:.1f} "
                         f"| {r['AXPO']:.1f} | {run} | {size} |")
        for a in self.averages.values():
            run = "–" if a["run"] is None else f"{a['run']:.1f}"
            lines.append(f"| **{a['label']}** | | {a['Base']:.1f} | {a['GRPO']:.1f} | "
                         f"{a['AXPO']:.1f} | {run} | |")
        src = SOURCE
        lines += ["", f"Paper: Pass@4 (%) of Qwen3-VL-{s}-Thinking as an agent (Base), after SFT + "
                  f"GRPO and after SFT + AXPO, from the authors' project page ({src['repository']}"
                  f", {src['file']} {src['object']}, commit {src['commit'][:12]}). Averages are "
                  "unweighted means over benchmarks, as the paper's."]
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines)

    def write(self, output_dir: str | Path) -> list[Path]:
        """paper_table.md and paper_table.json in `output_dir`."""
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        md, js = out / FILES[0], out / FILES[1]
        md.write_text(self.markdown() + "\n", encoding="utf-8")
        js.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n",
                      encoding="utf-8")
        return [md, js]


def _samples(row: Mapping[str, Any]) -> str:
    lo, hi = row["samples"], row["max_samples"]
    return str(lo) if lo == hi else f"{lo}-{hi}"


def build(scale: str, rows: Sequence[Mapping[str, Any]],
          settings: Mapping[str, Mapping[str, Any] | None] | None = None) -> PaperTable:
    """The table for `scale` (2B, 4B or 8B) from a run's episode rows (results.jsonl's, any
    envs) and, optionally, each env's saved settings (its data_dir and scoring, for the notes)."""
    if scale not in SCALES:
        raise ValueError(f"paper_table must be one of {list(SCALES)}, got {scale!r}")
    settings = settings or {}
    by_env: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_env.setdefault(str(r["env"]), []).append(r)
    paper_envs = [e for _, e in BENCHMARKS]
    out_rows, covered = [], []
    for i, (name, env) in enumerate(BENCHMARKS):
        run = _run_pass4(by_env[env]) if by_env.get(env) else None
        if run:
            covered.append(env)
        out_rows.append({"benchmark": name, "env": env,
                         **{m: PASS_AT_4[scale][m][i] for m in METHODS},
                         "run": run and run["pass@4"], "items": run and run["items"],
                         "samples": run and run["samples"],
                         "max_samples": run and run["max_samples"]})
    runs = {r["env"]: r["run"] for r in out_rows if r["run"] is not None}
    averages = {"paper": {"label": f"Average, all {len(BENCHMARKS)} (as published)",
                          "benchmarks": paper_envs,
                          **{m: paper_average(scale, m) for m in METHODS},
                          "run": _mean(list(runs.values())) if len(runs) == len(paper_envs)
                          else None}}
    if covered and len(covered) < len(paper_envs):
        averages["covered"] = {
            "label": f"Average, the {len(covered)} this run covered", "benchmarks": covered,
            **{m: paper_average(scale, m, covered) for m in METHODS},
            "run": _mean(list(runs.values()))}
    others = [e for e in by_env if e not in paper_envs]
    table = PaperTable(scale, out_rows, averages, covered, others)
    table.notes = _notes(table, settings)
    return table


def _notes(table: PaperTable, settings: Mapping[str, Mapping[str, Any] | None]) -> list[str]:
    notes = []
    n = len(BENCHMARKS)
    if not table.covered:
        notes.append(f"This run covered none of the paper's {n} benchmarks (evaluate them with "
                     "--envs paper); only the published numbers are shown.")
    elif len(table.covered) < n:
        missing = [r["benchmark"] for r in table.rows if r["run"] is None]
        notes.append(f"This run covered {len(table.covered)} of the paper's {n} benchmarks (not "
                     f"{', '.join(missing)}): compare the run with the paper on the average over "
                     "the benchmarks it covered, not with the published 9-benchmark average.")
    ran = [r for r in table.rows if r["run"] is not None]
    few = [f"{r['benchmark']} ({r['samples']})" for r in ran if r["samples"] < K]
    many = [f"{r['benchmark']} ({_samples(r)})" for r in ran if r["samples"] > K]
    uneven = [r["benchmark"] for r in ran if r["samples"] != r["max_samples"]]
    if few:
        notes.append(f"WARNING: Pass@4 needs 4 samples per item; some items have fewer: "
                     f"{', '.join(few)}. Those items count Pass@n, lower than their Pass@4: "
                     "not comparable with the paper. Run with --samples 4.")
    if many:
        notes.append(f"Samples per item are not 4 ({', '.join(many)}): Pass@4 is the unbiased "
                     "estimate from them (Chen et al., 2021); the paper's numbers used 4.")
    if uneven:
        notes.append(f"Items have unequal sample counts on {', '.join(uneven)} (an unfinished "
                     "run?): each item counts Pass@min(4, n).")
    fixture = [r["benchmark"] for r in ran
               if (s := settings.get(r["env"])) is not None and s.get("data_dir") is None]
    if fixture:
        notes.append(f"{', '.join(fixture)}: evaluated on axpo's small bundled fixture, not the "
                     "benchmark's test set (--data-dir): not comparable with the paper.")
    modes = {r["benchmark"]: s.get("scoring") for r in ran
             if (s := settings.get(r["env"])) is not None and s.get("scoring") != "official"}
    if modes:
        notes.append("Not scored in official mode: " + ", ".join(
            f"{b} ({m})" for b, m in modes.items()) + "; the paper's numbers follow each "
            "benchmark's own scoring.")
    if table.others:
        notes.append(f"Also in this run, not in the paper's table: {', '.join(table.others)}.")
    return notes


def from_results(saved: Any, scale: str) -> PaperTable:
    """The table of a finished eval's `evaluation.results.SavedResults` (the latest row of each
    episode; every env it holds)."""
    rows = [r for env in saved.envs() for r in saved.episodes(env).values()]
    return build(scale, rows, {env: saved.settings(env) for env in saved.envs()})


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
