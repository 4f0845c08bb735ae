"""Find and read what `axpo view` shows: saved trajectories, eval results, training metrics.

A path may be an eval output dir (results.jsonl, summary.json, plots/, and trajectories/ when
run with --save-trajectories), a training output dir (trajectories/, progress.json,
metrics.png) or a trajectories folder or JSONL file. Bad input never raises a traceback: a torn
or non-JSON line is skipped and counted, a missing image becomes a visible placeholder, and a
path with nothing to show is a `ViewError` that says what to run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from axpo_view.record import FOLDER


class ViewError(ValueError):
    """A path `axpo view` cannot make a report of; the message says what to do."""


@dataclass
class Run:
    """Everything a report shows. Image paths in records are relative to `root`."""

    path: Path
    root: Path  # the folder the records' image paths are relative to
    episodes: list[dict[str, Any]] = field(default_factory=list)
    branches: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    charts: list[Path] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)  # training metrics per step
    warnings: list[str] = field(default_factory=list)


def load(path: str | Path) -> Run:
    """Read a run from an eval dir, a training dir, a trajectories folder or a JSONL file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ViewError(f"{path}: no such file or directory; give an `axpo eval` or `axpo train` "
                        "output dir, or a trajectories folder or .jsonl file")
    if path.is_file():
        run = Run(path, path.parent)
        rows = _read_jsonl(path, run)
        if any(r.get("type") == "episode" and "turns" not in r for r in rows):
            run.episodes = [_from_result(r) for r in rows if r.get("type") == "episode"]
        else:
            _take(run, rows)
        return _checked(run)
    folder = path / FOLDER if (path / FOLDER).is_dir() else path
    run = Run(path, folder)
    for f in sorted(folder.glob("episodes*.jsonl")):
        _take(run, _read_jsonl(f, run))
    results = path / "results.jsonl"
    if results.is_file():  # episodes run without --save-trajectories: their results rows
        have = {e["id"] for e in run.episodes}
        latest = {}
        for r in _read_jsonl(results, run):
            if r.get("type") == "episode":
                latest[f"{r.get('env')}/{r.get('task_id')}/{r.get('sample')}"] = r
        run.episodes += [_from_result(r) for key, r in latest.items() if key not in have]
    if (path / "summary.json").is_file():
        try:
            run.summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            run.warnings.append(f"summary.json could not be read ({e})")
    run.charts = sorted((path / "plots").glob("*.png")) + sorted(path.glob("metrics.png"))
    if (path / "progress.json").is_file():
        run.steps = _read_jsonl(path / "progress.json", run)
    return _checked(run)


def _checked(run: Run) -> Run:
    if not run.episodes and not run.summary and not run.steps:
        raise ViewError(f"{run.path}: nothing to show (no trajectories, results.jsonl, "
                        "summary.json or progress.json). Save trajectories with `axpo eval "
                        "--save-trajectories` or `axpo train --save-trajectories`.")
    return run


def _take(run: Run, rows: list[dict[str, Any]]) -> None:
    """Add records; a re-recorded episode (a resumed eval) replaces the earlier one."""
    index = {e["id"]: i for i, e in enumerate(run.episodes)}
    for r in rows:
        if r.get("type") == "branch":
            run.branches.append(r)
        elif r.get("type") == "episode" and "id" in r:
            if r["id"] in index:
                run.episodes[index[r["id"]]] = r
            else:
                index[r["id"]] = len(run.episodes)
                run.episodes.append(r)


def _read_jsonl(path: Path, run: Run) -> list[dict[str, Any]]:
    """The file's JSON object lines; bad lines are skipped and reported in the page."""
    rows, bad = [], 0
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        run.warnings.append(f"{path.name} could not be read ({e.strerror or e})")
        return rows
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad += 1
    if bad:
        run.warnings.append(f"{path.name}: {bad} line(s) were not JSON records (a torn write?) "
                            "and are left out")
    return rows


def _from_result(r: dict[str, Any]) -> dict[str, Any]:
    """A results.jsonl row as a text-only episode (its last response, no images)."""
    response = r.get("response") or ""
    return {
        "type": "episode", "id": f"{r.get('env')}/{r.get('task_id')}/{r.get('sample')}",
        "env": r.get("env"), "task_id": r.get("task_id"), "sample": r.get("sample"),
        "question": None, "images": [], "answer": r.get("answer"), "reward": r.get("reward"),
        "correct": bool(r.get("correct")), "tool_calls": int(r.get("tool_calls") or 0),
        "tool_errors": int(r.get("tool_errors") or 0), "truncated": bool(r.get("truncated")),
        "error": r.get("error"), "reference": None, "from_results": True,
        "turns": [{"text": response, "thinking": "", "call": None, "answer": r.get("answer"),
                   "reply": {"text": "", "images": []}, "last_only": True}] if response else [],
    }
