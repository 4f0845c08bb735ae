"""`axpo view <path>`: see what the agent saw, as one static HTML page.

    from axpo_view import write_report
    write_report("runs/eval")          # -> runs/eval/report.html

`record` saves trajectories and AXPO branches (`axpo eval --save-trajectories`,
`GRPOConfig.save_trajectories`); `load` reads a run; `html` renders it; the `axpo view`
command (`axpo_cli`) calls `write_report`. No torch import.
"""

from __future__ import annotations

from pathlib import Path

from axpo_view.html import render
from axpo_view.load import Run, ViewError, load

__all__ = ["Run", "ViewError", "load", "write_report"]
REPORT = "report.html"


def write_report(path: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of the run at `path` to `out` (default: `report.html` in the run's
    folder) and return its path. Raises `ViewError` for a path with nothing to show."""
    run = load(path)
    folder = run.path if run.path.is_dir() else run.path.parent
    target = Path(out) if out else folder / REPORT
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(run, target), encoding="utf-8")
    return target
