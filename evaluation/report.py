"""What `axpo eval` reports: metrics per benchmark and on average, as markdown, CSV, JSON, PNG.

Per benchmark, over its items (tasks) and their k samples each:

- Pass@1 and Pass@k: the unbiased estimator (Chen et al., 2021) per task, averaged over tasks.
- tool-use rate: share of episodes with at least one tool call.
- tool-error rate: share of tool calls that failed (None when no tool was called).
- mean turns: agent turns per episode.
- all-wrong tool share: among tasks with a tool-using episode, the share whose tool-using
  episodes are all wrong (the Thinking-Acting Gap's symptom, `metrics.thinking_acting_gap`);
  None when no episode used a tool.
- all-wrong no-tool share: the same for the episodes without a tool call, among tasks that have
  one (the AXPO paper's Fig. 3 shows the two side by side); None when every episode used a tool.
- truncated / errors: episodes that never answered within the turn limit, and episodes cut short
  by a failure (a corrupt image, a server error). Both count as wrong answers.

The average row is the unweighted mean over benchmarks (each benchmark counts once, as
multi-benchmark tables report); counts are summed. Metrics that are None are left out of it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation.metrics import pass_at_k, thinking_acting_gap

AVERAGE = "average"
COUNTS = ("tasks", "episodes", "truncated", "errors")
SUMMARIES = ("summary.md", "summary.csv", "summary.json")
PAPER_TABLE_FILES = ("paper_table.md", "paper_table.json")  # `evaluation.paper_table`
_PLOTTED = ("tool_use_rate", "tool_error_rate", "mean_turns", "all_wrong_tool_share",
            "all_wrong_no_tool_share")  # and pass@1, pass@k


@dataclass
class Report:
    """Metrics by benchmark (env id) in evaluation order, plus their average."""

    k: int
    benchmarks: dict[str, dict[str, Any]]
    average: dict[str, Any]
    #: The scoring mode of each benchmark ("official", "lenient", or "own rule" for a task
    #: without modes); empty when unknown.
    scoring: dict[str, str] = field(default_factory=dict)
    #: The AXPO paper's table beside this run's (`evaluation.paper_table.PaperTable`), when
    #: `paper_table` asked for it.
    paper: Any = None

    def scoring_line(self) -> str:
        """One line saying how the answers were scored, naming benchmarks that differ."""
        if not self.scoring:
            return ""
        modes = list(self.scoring.values())
        main = max(set(modes), key=modes.count)
        odd = [f"{env} {mode}" for env, mode in self.scoring.items() if mode != main]
        note = {"official": "each benchmark's published scoring rules, quirks included",
                "lenient": "axpo's lenient rules, the RL reward; not comparable with "
                           "published numbers"}.get(main, "")
        line = f"Scoring: {main}" + (f" ({note})" if note else "")
        return line + (f"; except {', '.join(odd)}" if odd else "") + "."

    @property
    def pass_k(self) -> str:
        return f"pass@{self.k}"

    @property
    def rate_keys(self) -> list[str]:
        """The metrics that are shares in [0, 1] or means: one plot each."""
        keys = ["pass@1", self.pass_k] if self.k > 1 else ["pass@1"]
        return keys + list(_PLOTTED)

    def rows(self) -> list[dict[str, Any]]:
        """One flat record per benchmark, then the average: the CSV and JSON rows."""
        return [{"benchmark": name, **m} for name, m in
                [*self.benchmarks.items(), (AVERAGE, self.average)]]


@dataclass(frozen=True)
class _Episode:
    task_id: str
    correct: bool
    used_tool: bool


def benchmark_metrics(rows: Sequence[Mapping[str, Any]], k: int) -> dict[str, Any]:
    """The metrics of one benchmark from its results.jsonl episode rows."""
    episodes = [_Episode(str(r["task_id"]), bool(r["correct"]), r["tool_calls"] > 0)
                for r in rows]
    by_task: dict[str, list[bool]] = {}
    for e in episodes:
        by_task.setdefault(e.task_id, []).append(e.correct)
    gap = thinking_acting_gap(episodes)
    calls = sum(r["tool_calls"] for r in rows)
    out: dict[str, Any] = {
        "tasks": len(by_task), "episodes": len(rows),
        "pass@1": _mean([pass_at_k(len(c), sum(c), 1) for c in by_task.values()]),
        f"pass@{k}": _mean([pass_at_k(len(c), sum(c), min(k, len(c)))
                            for c in by_task.values()]),
        "tool_use_rate": gap["tool_use_rate"],
        "tool_error_rate": sum(r["tool_errors"] for r in rows) / calls if calls else None,
        "mean_turns": _mean([r["turns"] for r in rows]),
        "all_wrong_tool_share": (gap["all_wrong_tool_subgroup_share"]
                                 if gap["groups_with_tool_use"] else None),
        "all_wrong_no_tool_share": (gap["all_wrong_no_tool_subgroup_share"]
                                    if gap["groups_with_no_tool_use"] else None),
        "accuracy_with_tools": gap["accuracy_with_tools"] if calls else None,
        "accuracy_without_tools": (gap["accuracy_without_tools"]
                                   if gap["tool_use_rate"] < 1 else None),
        "truncated": sum(bool(r["truncated"]) for r in rows),
        "errors": sum(bool(r.get("error")) for r in rows),
    }
    return out


def summarize(rows: Sequence[Mapping[str, Any]], k: int,
              order: Sequence[str] | None = None) -> Report:
    """A `Report` from episode rows of one or more envs (`order`: the envs' display order)."""
    by_env: dict[str, list[Mapping[str, Any]]] = {e: [] for e in order or []}
    for r in rows:
        by_env.setdefault(r["env"], []).append(r)
    benchmarks = {env: benchmark_metrics(rs, k) for env, rs in by_env.items() if rs}
    average: dict[str, Any] = {}
    for key in next(iter(benchmarks.values()), {}):
        values = [m[key] for m in benchmarks.values() if m[key] is not None]
        if key in COUNTS:
            average[key] = sum(values)
        else:
            average[key] = _mean(values) if values else None
    return Report(k, benchmarks, average)


def markdown(report: Report) -> str:
    """The table printed on stdout: rates in percent, None as a dash."""
    columns = [("tasks", "Tasks"), ("episodes", "Episodes"), ("pass@1", "Pass@1")]
    if report.k > 1:
        columns.append((report.pass_k, f"Pass@{report.k}"))
    columns += [("tool_use_rate", "Tool use"), ("tool_error_rate", "Tool errors"),
                ("mean_turns", "Mean turns"), ("all_wrong_tool_share", "All-wrong tool tasks"),
                ("all_wrong_no_tool_share", "All-wrong no-tool tasks"),
                ("truncated", "Truncated"), ("errors", "Errors")]
    lines = ["| Benchmark | " + " | ".join(t for _, t in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for row in report.rows():
        name = f"**{row['benchmark']}**" if row["benchmark"] == AVERAGE else row["benchmark"]
        lines.append(f"| {name} | " + " | ".join(fmt(key, row[key]) for key, _ in columns)
                     + " |")
    if report.scoring:
        lines += ["", report.scoring_line()]
    return "\n".join(lines)


def fmt(key: str, value: Any) -> str:
    """How the markdown table shows a metric."""
    if value is None:
        return "–"
    if key in COUNTS:
        return str(value)
    if key == "mean_turns":
        return f"{value:.2f}"
    return f"{100 * value:.1f}%"


def write_report(report: Report, output_dir: Path, config: Mapping[str, Any]) -> dict[str, Path]:
    """summary.md, summary.csv, summary.json and one bar chart per metric under plots/."""
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {name.rpartition(".")[2]: output_dir / name for name in SUMMARIES}
    paths["md"].write_text(markdown(report) + "\n", encoding="utf-8")
    rows = report.rows()
    with paths["csv"].open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    paths["json"].write_text(json.dumps(
        {"k": report.k, "config": dict(config), "scoring": report.scoring,
         "benchmarks": report.benchmarks, "average": report.average}, indent=2) + "\n",
        encoding="utf-8")
    for key in report.rate_keys:
        paths[key] = plot_metric(report, key, output_dir / "plots")
    return paths


def plot_metric(report: Report, key: str, folder: Path) -> Path:
    """A bar per benchmark and one for the average; None values get no bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [*report.benchmarks, AVERAGE]
    values = [m[key] for m in [*report.benchmarks.values(), report.average]]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(names) + 1.5), 3.6))
    heights = [v if v is not None else 0.0 for v in values]
    colors = ["tab:blue"] * len(report.benchmarks) + ["tab:gray"]
    bars = ax.bar(range(len(names)), heights, color=colors)
    for bar, value in zip(bars, values):
        ax.annotate(fmt(key, value), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)), [n.removeprefix("AXPO-") for n in names], rotation=30,
                  ha="right", fontsize=8)
    if key != "mean_turns":
        ax.set_ylim(0, 1.08)
    ax.set_title(key)
    fig.tight_layout()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / _plot_name(key)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_name(key: str) -> str:
    return key.replace("@", "_at_") + ".png"


def report_files(output_dir: Path) -> list[Path]:
    """The files `write_report` writes that exist in `output_dir` (the summaries and every
    chart, pass@k of any k), and the paper table: what `--no-resume` removes so no stale one
    outlives its run."""
    plots = output_dir / "plots"
    found = [output_dir / name for name in (*SUMMARIES, *PAPER_TABLE_FILES)]
    found += [plots / _plot_name(key) for key in ("pass@1", *_PLOTTED)]
    found += [p for p in sorted(plots.glob("pass_at_*.png")) if p.stem[8:].isdigit()]
    return [p for p in dict.fromkeys(found) if p.is_file()]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
