"""results.jsonl: the resumable record of an `axpo eval` run.

One `{"type": "config", "env", "config"}` line per env holds the settings its results depend on;
then one `{"type": "episode", ...}` line per finished episode. Lines are written a batch at a
time and fsynced, so a crash loses at most the batch in flight; a torn last line is dropped when
the file is opened again. Text is valid UTF-8 both ways: a lone surrogate (a model's or a search
engine's text) becomes U+FFFD. A finished episode whose numbers are impossible (a negative or
huge count, a NaN reward) is not trusted: a warning names its line and the episode runs again.
`SavedResults.read` reads a finished run's file without changing it (`--rescore`, `--paper-table`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from axpo_env.text import valid_text


class EvalError(ValueError):
    """Input `axpo eval` cannot run with (an unknown env, a results file it cannot resume): the
    message says what to change."""


_EPISODE_FIELDS: dict[str, tuple[type, ...]] = {
    "env": (str,), "task_id": (str,), "sample": (int,), "correct": (bool,),
    "reward": (int, float), "tool_calls": (int,), "tool_errors": (int,), "turns": (int,),
    "truncated": (bool,), "error": (str, type(None)),
}
MAX_COUNT = 10**6  # far above any episode's turns, tool calls or samples


def _row_problem(row: Any) -> str | None:
    """What is wrong with a parsed results.jsonl line, or None: resume and the report index
    these fields, so a line of the wrong shape must stop here, with its line number."""
    if not isinstance(row, dict):
        return f"a JSON {type(row).__name__}, not an object"
    if row.get("type") == "config":
        if not isinstance(row.get("env"), str) or not isinstance(row.get("config"), dict):
            return 'a config row needs "env" (a string) and "config" (an object)'
        return None
    if row.get("type") != "episode":
        return f'"type" is {row.get("type")!r}, not "config" or "episode"'
    for key, types in _EPISODE_FIELDS.items():
        value = row.get(key)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            return f'"{key}" is {str(value)[:40]!r}, not {" or ".join(t.__name__ for t in types)}'
    return None


def _value_problem(row: dict[str, Any]) -> str | None:
    """What is impossible in an episode row of the right shape, or None: counts must be ints in
    [0, MAX_COUNT] (a 4000-digit one overflowed the summary); the reward a finite number."""
    for key, types in _EPISODE_FIELDS.items():
        value = row[key]
        if types == (int,) and not 0 <= value <= MAX_COUNT:
            return f'"{key}" is {str(value)[:40]}, not from 0 to {MAX_COUNT}'
    if not -MAX_COUNT <= row["reward"] <= MAX_COUNT:  # NaN, an infinity, a huge int
        return f'"reward" is {str(row["reward"])[:40]}, not a finite number'
    return None


def read_rows(path: Path, hint: str = "use another --output-dir",
              skipped: str = "that episode runs again") -> tuple[list[dict[str, Any]], int]:
    """The trusted rows of a results.jsonl, read without changing it, and the byte length of
    its complete lines (a torn last line is left out). A line that is not JSON or not a row
    `axpo eval` writes is an `EvalError` naming it (`hint`: what to do besides removing it); an
    episode with impossible numbers is left out with a warning (`skipped`: what follows)."""
    data = path.read_bytes()
    complete = data[:data.rfind(b"\n") + 1]  # drop a torn last line
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(complete.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8", "replace"))
        except (ValueError, RecursionError) as e:
            raise EvalError(f"{path} line {n} is not JSON ({str(e)[:200]}); remove "
                            f"that line or {hint}") from None
        problem = _row_problem(row)
        if problem:
            raise EvalError(f"{path} line {n} is not a row axpo eval writes ({problem}); "
                            f"remove that line or {hint}")
        problem = _value_problem(row) if row["type"] == "episode" else None
        if problem:
            print(f"axpo eval: warning: {path} line {n} is not trusted ({problem}); "
                  f"{skipped}", file=sys.stderr)
            continue
        rows.append(valid_text(row))
    return rows, len(complete)


class SavedResults:
    """The rows of a results.jsonl by env: what resume, `--rescore` and `--paper-table` read."""

    def __init__(self, path: Path, rows: list[dict[str, Any]]):
        self.path, self.rows = path, rows

    @classmethod
    def read(cls, folder: str | Path, flag: str) -> SavedResults:
        """A finished eval's results (`folder`: its output dir, or the results.jsonl itself),
        read without changing a byte; `flag` names the option in the errors."""
        path = Path(folder).expanduser()
        path = path / "results.jsonl" if path.is_dir() else path
        if not path.is_file():
            raise EvalError(f"{flag} {folder}: no results.jsonl there; give the --output-dir "
                            "of a finished axpo eval")
        try:
            rows, _ = read_rows(path, hint="fix the file", skipped="that episode is left out")
        except OSError as e:
            raise EvalError(f"{flag} {folder}: cannot read {path} ({e.strerror or e})") from None
        return cls(path, rows)

    def envs(self) -> list[str]:
        """The envs that have finished episodes, in the order they first appear."""
        return list(dict.fromkeys(r["env"] for r in self.rows if r["type"] == "episode"))

    def settings(self, env: str) -> dict[str, Any] | None:
        found = [r["config"] for r in self.rows if r.get("type") == "config" and r["env"] == env]
        return found[-1] if found else None

    def episodes(self, env: str) -> dict[tuple[str, int], dict[str, Any]]:
        """The latest row of each (task id, sample) of `env`."""
        return {(r["task_id"], r["sample"]): r for r in self.rows
                if r.get("type") == "episode" and r["env"] == env}


class ResultsFile(SavedResults):
    """results.jsonl: a config line per env, then one line per finished episode.

    A torn last line (the process died mid-write) is dropped on open; an episode with impossible
    numbers is skipped with a warning (it runs again; its line stays in the file); any other bad
    line is an error, not silently skipped."""

    def __init__(self, path: Path, resume: bool):
        super().__init__(path, [])
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and not resume:
            print(f"axpo eval: --no-resume: starting over; the results in {path} are discarded",
                  file=sys.stderr)
            path.unlink()
        if path.exists():
            self._read()
        self._file = path.open("a", encoding="utf-8")

    def _read(self) -> None:
        rows, complete = read_rows(self.path)
        self.rows.extend(rows)
        if complete < self.path.stat().st_size:
            with self.path.open("r+b") as f:
                f.truncate(complete)

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Write rows in one go and make them durable before the next batch starts."""
        rows = [valid_text(r) for r in rows]
        self._file.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        self._file.flush()
        os.fsync(self._file.fileno())
        self.rows.extend(rows)

    def close(self) -> None:
        self._file.close()


def check_settings(file: ResultsFile, env: str, settings: dict[str, Any]) -> None:
    old, settings = file.settings(env), valid_text(settings)  # as the file holds them
    if old is None or old == settings:
        return
    diff = "; ".join(f"{k}: {old.get(k)!r} then, {settings.get(k)!r} now"
                     for k in sorted(set(old) | set(settings)) if old.get(k) != settings.get(k))
    raise EvalError(f"{file.path} holds {env} results run with other settings ({diff}). Use "
                    "another --output-dir, the same settings, or --no-resume to discard them.")
