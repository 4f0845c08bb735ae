"""Find and read what `axpo view` shows: saved trajectories, eval results, training metrics.

A path may be an eval output dir (results.jsonl, summary.json, plots/, and trajectories/ when
run with --save-trajectories), a training output dir (trajectories/, progress.json,
metrics.png) or a trajectories folder or JSONL file. Bad input never raises a traceback: a torn
or non-JSON line is skipped and counted, a missing image becomes a visible placeholder, and a
path with nothing to show is a `ViewError` that says what to run.

Records are hostile input too (a tampered file, a server's broken text): every text is repaired
(`clean_text`) and every record's fields are checked against the types the page shows; a record
of another shape is left out and counted in a note, so the page never runs a record's script or
stops at a traceback.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from axpo_env.text import valid_text
from axpo_view.record import FOLDER

# Characters not written raw into the page: C0 controls but tab, newline and carriage return;
# DEL and the C1 controls; surrogates (which UTF-8 cannot hold).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_DEPTH = 100  # levels of nesting: a record nested deeper is not one the recorder writes


def clean_text(text: str) -> str:
    """`text` safe to write into UTF-8 HTML: surrogates repaired (`axpo_env.text.valid_text`), a
    C0 control shown as its picture (NUL as U+2400, ESC as U+241B, DEL as U+2421), a C1 control as
    U+FFFD."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(_picture, valid_text(text))


def _picture(match: re.Match[str]) -> str:
    c = match.group()
    return chr(0x2400 + ord(c)) if c < " " else "\u2421" if c == "\x7f" else "\ufffd"


def _clean(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if depth > _DEPTH:
        raise ValueError("nested too deep")
    if isinstance(value, list):
        return [_clean(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {clean_text(k): _clean(v, depth + 1) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class _Maybe:
    spec: Any  # None, or what `spec` says


# The shape of each record the page shows. A spec is a tuple of types (a bool is an int only
# where bool is named), _Maybe(spec), [spec] for a list of them, {key: spec} for an object (a
# missing key is None) or a predicate.
def _box(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 4 and all(_fits(v, _NUM) for v in value)


def _table(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(m, dict) for m in value.values())


_NONE = type(None)
_ANY, _NUM, _SCALAR = (object,), (int, float), (_NONE, str, int, float, bool)
_TEXT, _INT, _BOOL, _REAL = (_NONE, str), (_NONE, int), (_NONE, bool), (_NONE, int, float)
_TURN = {
    "text": _TEXT, "thinking": _TEXT, "answer": _SCALAR, "format_error": _TEXT,
    "call": _Maybe({"name": _TEXT, "arguments": _ANY, "error": _TEXT}),
    "reply": _Maybe({"text": _TEXT, "images": _Maybe([(str,)])}), "reward": _REAL,
    "terminated": _BOOL, "truncated": _BOOL, "confidence": _REAL, "last_only": _BOOL,
    "crop": _Maybe({"source": (str,), "size": _ANY, "box": _box}),
}
_EPISODE = {
    "id": (str,), "env": _TEXT, "task_id": _SCALAR, "sample": _SCALAR, "step": _INT,
    "role": _TEXT, "group": _INT, "question": _TEXT, "images": _Maybe([(str,)]),
    "turns": _Maybe([_TURN]), "answer": _ANY, "reference": _ANY, "reward": _REAL,
    "correct": _BOOL, "tool_calls": _INT, "tool_errors": _INT, "truncated": _BOOL,
    "error": _TEXT, "parent": _Maybe([(int,)]), "source": _TEXT, "from_results": _BOOL,
    "rescored": _Maybe({"correct": _BOOL, "reward": _REAL, "scoring": _TEXT}),
}
_BRANCH = {
    "step": (int,), "group": (int,), "index": (int,), "source": (str,), "turn": (int,),
    "keep": (int,), "score": _NUM, "prefix": _TEXT, "resamples": [(str,)], "rewards": [_NUM],
    "recovered": (bool,),
}
_RESULT = {  # a results.jsonl episode row, shown as a text-only episode
    "env": _TEXT, "task_id": _SCALAR, "sample": _SCALAR, "response": _TEXT, "answer": _ANY,
    "reward": _REAL, "correct": _BOOL, "tool_calls": _INT, "tool_errors": _INT,
    "truncated": _BOOL, "error": _TEXT,
}
_SUMMARY = {"k": _INT, "benchmarks": _Maybe(_table), "average": _Maybe({})}


def _fits(value: Any, spec: Any) -> bool:
    kind = type(spec)
    if kind is tuple:
        return isinstance(value, spec) and (type(value) is not bool or bool in spec
                                            or object in spec)
    if kind is _Maybe:
        return value is None or _fits(value, spec.spec)
    if kind is list:
        return type(value) is list and all(_fits(v, spec[0]) for v in value)
    if kind is dict:
        return type(value) is dict and all(_fits(value.get(k), s) for k, s in spec.items())
    return spec(value)


def _problem(value: Any, spec: Any, where: str = "") -> str | None:
    """None where `value` fits `spec`; else the first field that does not and what it holds."""
    if _fits(value, spec):
        return None
    if type(spec) is _Maybe:
        spec = spec.spec
    if type(spec) is dict and type(value) is dict:
        return next(_problem(value.get(k), s, f"{where}.{k}".lstrip("."))
                    for k, s in spec.items() if not _fits(value.get(k), s))
    if type(spec) is list and type(value) is list:
        return next(_problem(v, spec[0], f"{where}[{i}]")
                    for i, v in enumerate(value) if not _fits(v, spec[0]))
    return f"{where or 'the record'} is {json.dumps(value)[:60]}"


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
        if any(r.get("type") == "episode" and "id" not in r for r in rows):  # results.jsonl
            run.episodes = [_from_result(r) for r in _valid(rows, path, run, _RESULT)]
        else:
            _take(run, _valid(rows, path, run))
        return _checked(run)
    folder = path / FOLDER if (path / FOLDER).is_dir() else path
    run = Run(path, folder)
    for f in sorted(folder.glob("episodes*.jsonl")):
        _take(run, _valid(_read_jsonl(f, run), f, run))
    results = path / "results.jsonl"
    if results.is_file():  # episodes run without --save-trajectories: their results rows
        have = {e["id"] for e in run.episodes}
        latest = {}
        for r in _valid(_read_jsonl(results, run), results, run, _RESULT):
            latest[f"{r.get('env')}/{r.get('task_id')}/{r.get('sample')}"] = r
        run.episodes += [_from_result(r) for key, r in latest.items() if key not in have]
    if (path / "summary.json").is_file():
        try:
            summary = _clean(json.loads((path / "summary.json").read_text(encoding="utf-8")))
            problem = _problem(summary, _SUMMARY)
            if problem:
                run.warnings.append(f"summary.json is left out: {problem}, not the summary "
                                    "axpo eval writes")
            else:
                run.summary = summary
        except (OSError, ValueError, RecursionError) as e:
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


def _valid(rows: list[dict[str, Any]], path: Path, run: Run,
           episode: dict[str, Any] = _EPISODE) -> list[dict[str, Any]]:
    """The episode and branch records of `rows` whose fields have the types the page shows;
    the others are left out and counted in a note."""
    specs = {"episode": episode, "branch": _BRANCH}
    kept, problems = [], []
    for r in rows:
        kind = r.get("type")
        spec = specs.get(kind) if isinstance(kind, str) else None
        problem = spec and _problem(r, spec)
        if problem:
            problems.append(problem)
        elif spec:
            kept.append(r)
    if problems:
        run.warnings.append(f"{path.name}: {len(problems)} record(s) with a field of the wrong "
                            f"type are left out (the first: {problems[0]})")
    return kept


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
            row = _clean(json.loads(line))
        except (ValueError, RecursionError):  # not JSON, or nested deeper than a record is
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad += 1
    if bad:
        run.warnings.append(f"{path.name}: {bad} line(s) were not JSON records (a torn write, "
                            f"or nested deeper than {_DEPTH} levels) and are left out")
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
