"""Offline re-scoring: `axpo eval --rescore DIR [--scoring official|lenient]`.

Scores the saved final answers of a finished eval again, with the scorers of the installed axpo
(a scorer fixed since the run) in the requested mode, without loading or running a model. Each
episode's task is rebuilt from the settings its env's config line records (split, data_dir);
the item is shown as the episode saw it (`Task.episode_item` with the episode's seed, e.g. V*'s
shuffled options) and scored as `ToolUseEnv` scores it: a score of 1 is correct; a scorer that
fails on the text scores 0. Episodes that never answered (truncated) or ended in an error stay
wrong: there is no answer to score.

The original files are never changed. The rescored results.jsonl (the same rows, with the new
`correct` and `reward` and the old ones under `before`; config lines record the new scoring),
summary.md/.csv/.json, plots/ and rescore.json (every changed verdict) go to `--output-dir`
when it names another folder than the default and DIR, else to `DIR/rescored-<mode>/`; an
earlier rescore there is replaced, an eval's own results are not (refused). When DIR has
`trajectories/` (`--save-trajectories`), a copy of its episode records with the new verdicts
(the old under `rescored`) goes to the target's `trajectories/`, its images hard-linked (copied
across file systems), so `axpo view TARGET` shows every episode as rescored. `axpo eval
--no-resume DIR` removes the `DIR/rescored-*` folders with it: they rescore results it deletes.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym

from evaluation.report import Report, summarize, write_report
from evaluation.results import EvalError, SavedResults

MARKER = "rescore.json"
SHOWN = 5  # changed verdicts named on stdout; rescore.json lists them all


@dataclass
class Rescore:
    """What a rescore read, what it changed and where it wrote."""

    source: Path
    target: Path
    scoring: str
    before: Report
    after: Report
    changes: list[dict[str, Any]]
    rows: list[dict[str, Any]]  # the rescored episode rows
    settings: dict[str, dict[str, Any]]  # each env's saved settings, scoring as rescored
    failures: int = 0
    kept: dict[str, int] = field(default_factory=dict)  # env -> episodes without an answer
    trajectories: Path | None = None  # the rescored episode records, when DIR had them

    @property
    def episodes(self) -> int:
        return len(self.rows)

    def summary(self) -> str:
        """The lines printed on stdout: counts, a few changed verdicts, a table per env."""
        up = [c for c in self.changes if c["after"]]
        down = [c for c in self.changes if not c["after"]]
        then = sorted(set(self.before.scoring.values()))
        lines = [f"Rescored {self.episodes} episodes of {self.source} in {self.scoring} mode "
                 f"(saved in {', '.join(then)} mode); no model ran.",
                 f"{len(self.changes)} changed verdict{'s' * (len(self.changes) != 1)}: "
                 f"{len(up)} wrong -> right{_names(up)}, "
                 f"{len(down)} right -> wrong{_names(down)}."]
        if self.failures:
            lines.append(f"{self.failures} answer(s) made the scorer fail and score 0 (as in "
                         "an episode).")
        k = self.after.k
        lines += ["", f"| Benchmark | Scoring | Episodes | Changed | Accuracy (Pass@1) | "
                  f"Pass@{k} |", "|---|---|---:|---:|---:|---:|"]
        for env, m in [*self.after.benchmarks.items(), ("average", self.after.average)]:
            b = self.before.benchmarks.get(env, self.before.average if env == "average" else {})
            mode = "" if env == "average" else \
                f"{self.before.scoring.get(env)} -> {self.after.scoring.get(env)}"
            changed = sum(1 for c in self.changes if env in ("average", c["env"]))
            name = f"**{env}**" if env == "average" else env
            lines.append(f"| {name} | {mode} | {m['episodes']} | {changed} | "
                         f"{_pct(b.get('pass@1'))} -> {_pct(m['pass@1'])} | "
                         f"{_pct(b.get(f'pass@{k}'))} -> {_pct(m[f'pass@{k}'])} |")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        k = self.after.k
        return {
            "source": str(self.source), "scoring": self.scoring, "episodes": self.episodes,
            "changed": len(self.changes), "scorer_failures": self.failures,
            "benchmarks": {env: {
                "scoring": [self.before.scoring.get(env), self.after.scoring.get(env)],
                "episodes": m["episodes"], "unanswered": self.kept.get(env, 0),
                "changed": sum(1 for c in self.changes if c["env"] == env),
                "pass@1": [self.before.benchmarks[env]["pass@1"], m["pass@1"]],
                f"pass@{k}": [self.before.benchmarks[env][f"pass@{k}"], m[f"pass@{k}"]],
            } for env, m in self.after.benchmarks.items()},
            "changes": self.changes,
        }


def _names(changes: Sequence[dict[str, Any]]) -> str:
    if not changes:
        return ""
    shown = ", ".join(f"{c['env'].removeprefix('AXPO-')} {c['task_id']} #{c['sample']}"
                      for c in changes[:SHOWN])
    return f" ({shown}{', ...' if len(changes) > SHOWN else ''})"


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def target_dir(source: Path, output_dir: str, default_output: str, scoring: str) -> Path:
    """Where the rescored files go (see the module docstring); never `source` itself."""
    out = Path(output_dir).expanduser()
    if output_dir == default_output or out.resolve() == source.resolve():
        return source / f"rescored-{scoring}"
    return out


def offline(config: Any) -> tuple[str, str]:
    """`axpo eval` without a model, for an `EvalConfig`: with `rescore`, the rescore (and the
    paper table of its results); else the paper table of output_dir's finished results. The
    text for stdout and the line saying where the files are; errors are `EvalError`s."""
    from evaluation import paper_table
    from evaluation.evaluate import EvalConfig, resolve_envs

    table = None
    if config.rescore:
        resolve_envs(config.envs)  # imports the modules of `module:Env-v0` names
        default = EvalConfig.__dataclass_fields__["output_dir"].default
        done = rescore(config.rescore, config.scoring, config.output_dir, default,
                       data_dirs=config.data_dir)
        text, out = done.summary(), done.target
        what = ["rescored results.jsonl", "summary.md/.csv/.json", "plots/", MARKER]
        if done.trajectories is not None:
            what.insert(1, "trajectories/ (for axpo view)")
        if config.paper_table:
            table = paper_table.build(config.paper_table, done.rows, done.settings)
    else:
        out = Path(config.output_dir)
        saved = SavedResults.read(out, "--paper-table without --model or --rescore: "
                                  "--output-dir")
        table, text, what = paper_table.from_results(saved, config.paper_table), "", []
    if table is not None:
        text += ("\n\n" if text else "") + table.markdown()
        table.write(out)
        what.append("paper_table.md/.json")
    return text, f"{', '.join(what)} {'are' if len(what) > 1 else 'is'} in {out}"


def rescore(source: str | Path, scoring: str, output_dir: str, default_output: str,
            data_dirs: Sequence[str] | None = None) -> Rescore:
    """Score the episodes saved in `source` again in `scoring` mode and write the results (see
    the module docstring). `data_dirs`: ENV=PATH pairs (a bare PATH with one env), the data to
    load instead of the saved data_dir (it moved). Errors that need the user are `EvalError`s."""
    from evaluation.envs import pairs
    from evaluation.evaluate import OWN_RULE, _has_scoring_modes

    saved = SavedResults.read(source, "--rescore")
    src = saved.path.parent
    envs = saved.envs()
    if not envs:
        raise EvalError(f"--rescore {source}: {saved.path} holds no finished episodes")
    dirs = pairs(data_dirs, envs, "--data-dir", bare_for_all=False)
    target = target_dir(src, output_dir, default_output, scoring)
    _check_target(target, src)
    old_rows, new_rows, changes, settings = [], [], [], {}
    failures, kept = 0, {}
    for env in envs:
        old = saved.settings(env)
        if old is None:
            raise EvalError(f"{saved.path}: {env} has episodes but no config line (its settings: "
                            "split, data_dir, seed); fix the file")
        if env not in gym.registry:
            raise EvalError(f"the results hold {env}, which is not registered: pass --envs "
                            f"module:{env} to import the module that registers it")
        mode = scoring if _has_scoring_modes(env) else OWN_RULE
        task = _task(env, old, mode, dirs.get(env))
        settings[env] = {**old, "scoring": mode}
        kept[env] = 0
        for row in saved.episodes(env).values():
            new, failed = _rescored(task, row, old, saved.path)
            failures += failed
            kept[env] += new is row
            old_rows.append(row)
            new_rows.append(new)
            if new["correct"] != row["correct"]:
                changes.append({"env": env, "task_id": row["task_id"], "sample": row["sample"],
                                "answer": row.get("answer"), "before": row["correct"],
                                "after": new["correct"]})
    k = max(_int(s.get("samples"), 1) for s in settings.values())
    before, after = summarize(old_rows, k, envs), summarize(new_rows, k, envs)
    before.scoring = {e: str(saved.settings(e).get("scoring", "?")) for e in envs}  # type: ignore
    after.scoring = {e: settings[e]["scoring"] for e in envs}
    result = Rescore(src, target, scoring, before, after, changes, new_rows, settings,
                     failures, kept)
    _write(result, saved)
    return result


def _int(value: Any, default: int) -> int:
    """A saved count, or `default` when the file holds something else there."""
    return value if isinstance(value, int) and not isinstance(value, bool) and \
        0 <= value <= 10**6 else default


def _task(env: str, settings: dict[str, Any], mode: str, data_dir: str | None) -> Any:
    """The env's task as the run loaded it, scoring in `mode` (a DatasetError surfaces)."""
    from evaluation.evaluate import OWN_RULE

    options = {"scoring": mode} if mode != OWN_RULE else {}
    split, data = settings.get("split"), data_dir or settings.get("data_dir")
    if not isinstance(split, str | None) or not isinstance(data, str | None):
        raise EvalError(f"{env}: the saved split/data_dir are not strings ({split!r}, {data!r})")
    made = gym.make(env, split=split, data_dir=data, task_options=options)
    try:
        return made.unwrapped.task
    finally:
        made.close()


def _rescored(task: Any, row: dict[str, Any], settings: dict[str, Any], path: Path
              ) -> tuple[dict[str, Any], int]:
    """(the row scored again, 1 if the scorer failed else 0); `row` itself when the episode has
    no answer to score (truncated, or ended in an error)."""
    answer = row.get("answer")
    if row.get("error") is not None or answer is None:
        return row, 0
    where = f"{path}: {row['env']} task {row['task_id']!r} sample {row['sample']}"
    if not isinstance(answer, str):
        raise EvalError(f"{where}: \"answer\" is a {type(answer).__name__}, not a string or "
                        "null; fix the file")
    try:
        index = task.index_of(row["task_id"])
    except KeyError as e:
        raise EvalError(f"{where}: the task as loaded now has no such item ({e.args[0]}); "
                        "the data changed since the run: pass the run's data with --data-dir"
                        ) from None
    seed = row.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):  # a row from before seeds were saved
        seed = _int(settings.get("seed"), 0) + index * _int(settings.get("samples"), 1) \
            + row["sample"]
    item = task.episode_item(task.items[index], seed)
    failed = 0
    try:
        score = float(task.score(item, answer))
    except Exception:  # as ToolUseEnv: a scorer that fails on hostile text scores 0
        score, failed = 0.0, 1
    if not math.isfinite(score):
        score, failed = 0.0, 1
    before = {"correct": row["correct"], "reward": row["reward"],
              "scoring": settings.get("scoring")}
    return {**row, "correct": score >= 1.0 - 1e-9, "reward": score, "before": before}, failed


def _check_target(target: Path, source: Path) -> None:
    if target.resolve() == source.resolve():
        raise EvalError("--rescore never writes over the results it reads; pass another "
                        "--output-dir")
    if (target / "results.jsonl").exists() and not (target / MARKER).exists():
        raise EvalError(f"{target} holds the results of an axpo eval, not of a rescore; pass "
                        "another --output-dir")


def _write(result: Rescore, saved: SavedResults) -> None:
    out = result.target
    out.mkdir(parents=True, exist_ok=True)
    lines = [{**r, "config": result.settings[r["env"]]} for r in saved.rows
             if r["type"] == "config" and r["env"] in result.settings]
    lines = list({r["env"]: r for r in lines}.values()) + result.rows  # the latest config each
    (out / MARKER).write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n",
                              encoding="utf-8")
    tmp = out / "results.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines),
                   encoding="utf-8")
    tmp.replace(out / "results.jsonl")
    write_report(result.after, out, {"rescored_from": str(result.source),
                                     "scoring": result.scoring, "settings": result.settings})
    result.trajectories = _write_trajectories(result)


def _write_trajectories(result: Rescore) -> Path | None:
    """The source's episode records (`--save-trajectories`) with the rescored verdicts, in the
    target's trajectories/ with their images (see the module docstring); None when the source
    has none. Records are copied line by line: a line that is not a record stays as it was."""
    from axpo_view.record import FOLDER, RECORDS

    src, dst = result.source / FOLDER, result.target / FOLDER
    if not (src / RECORDS).is_file():
        (dst / RECORDS).unlink(missing_ok=True)  # an earlier rescore's: not of these results
        return None
    verdicts = {f"{r['env']}/{r['task_id']}/{r['sample']}": r for r in result.rows}
    lines = []
    for line in (src / RECORDS).read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            record = None
        new = verdicts.get(record.get("id")) if isinstance(record, dict) else None
        if new is not None and "before" in new and record.get("type") == "episode":
            record = {**record, "correct": bool(new["correct"]) and record.get("error") is None,
                      "reward": new["reward"],
                      "rescored": {"correct": record.get("correct"),
                                   "reward": record.get("reward"),
                                   "scoring": new["before"].get("scoring")}}
            line = json.dumps(record, ensure_ascii=False)
        lines.append(line + "\n")
    (dst / "images").mkdir(parents=True, exist_ok=True)
    for image in (src / "images").glob("*") if (src / "images").is_dir() else ():
        target = dst / "images" / image.name
        if image.is_file() and not image.is_symlink() and not target.exists():
            try:
                os.link(image, target)
            except OSError:  # another file system, or links not allowed: a copy
                shutil.copyfile(image, target)
    tmp = dst / (RECORDS + ".tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    tmp.replace(dst / RECORDS)
    return dst


def stale_rescores(output_dir: Path) -> list[Path]:
    """The `rescored-<mode>/` folders a rescore of `output_dir` wrote there (they hold
    rescore.json): what `axpo eval --no-resume` removes with the results they rescored."""
    return sorted(p for p in output_dir.glob("rescored-*") if (p / MARKER).is_file())
