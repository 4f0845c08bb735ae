"""`axpo eval --rescore DIR`: a finished eval's saved answers scored again (another mode, or a
fixed scorer) without a model; what changed is printed, the original is never touched, and
hostile or damaged saved files are one-line errors.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agents.policy import Completion
from axpo_cli.cli import main
from axpo_env.tasks.tool_arith import ToolArith
from evaluation.evaluate import run_eval
from evaluation.rescore import MARKER, _check_target, rescore
from evaluation.results import EvalError
from tests.test_eval import ARITH, Boxed, Scripted, arith_script, config

MATHVR, VSTAR = "AXPO-MathVR-v0", "AXPO-VStar-v0"


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def boxed_run(tmp_path_factory):
    """Math-VR answered right but in \\boxed{}: wrong in official mode, right in lenient."""
    tmp = tmp_path_factory.mktemp("boxed")
    cfg = config(tmp, envs=[MATHVR], split=None, samples=2, limit=3)
    report = run_eval(cfg, Boxed(), progress=False)
    assert report.benchmarks[MATHVR]["pass@1"] == 0.0
    return Path(cfg.output_dir)


def test_rescoring_in_another_mode_says_what_changed_and_keeps_the_original(boxed_run, capsys):
    original = (boxed_run / "results.jsonl").read_bytes()
    assert main(["eval", "--rescore", str(boxed_run), "--scoring", "lenient"]) == 0
    out, err = capsys.readouterr()
    assert f"Rescored 6 episodes of {boxed_run} in lenient mode (saved in official mode)" in out
    assert "6 changed verdicts: 6 wrong -> right (MathVR-v0 0 #0, " in out
    assert "0 right -> wrong" in out
    assert "| AXPO-MathVR-v0 | official -> lenient | 6 | 6 | 0.0% -> 100.0% | 0.0% -> 100.0% |" \
        in out
    target = boxed_run / "rescored-lenient"
    assert f"are in {target}" in err and "Traceback" not in err
    assert (boxed_run / "results.jsonl").read_bytes() == original  # never rewritten
    rows = _lines(target / "results.jsonl")
    assert rows[0]["type"] == "config" and rows[0]["config"]["scoring"] == "lenient"
    episodes = rows[1:]
    assert len(episodes) == 6 and all(r["correct"] and r["reward"] == 1.0 for r in episodes)
    assert all(r["before"] == {"correct": False, "reward": 0.0, "scoring": "official"}
               for r in episodes)
    summary = json.loads((target / "summary.json").read_text())
    assert summary["benchmarks"][MATHVR]["pass@1"] == 1.0
    assert summary["scoring"] == {MATHVR: "lenient"}
    changes = json.loads((target / MARKER).read_text())
    assert (changes["episodes"], changes["changed"]) == (6, 6)
    assert changes["benchmarks"][MATHVR]["pass@1"] == [0.0, 1.0]
    assert {c["task_id"] for c in changes["changes"]} == {"0", "1", "2"}

    # the rescored folder rescored back: the verdicts return, and it may be replaced
    back = rescore(target, "official", str(boxed_run / "back"), "runs/eval")
    assert len(back.changes) == 6 and not any(c["after"] for c in back.changes)
    assert back.after.benchmarks[MATHVR]["pass@1"] == 0.0
    again = rescore(target, "official", str(boxed_run / "back"), "runs/eval")  # replaces it
    assert (again.target / "results.jsonl").read_text().count('"type": "episode"') == 6


def test_the_same_mode_changes_nothing_even_where_options_are_shuffled_by_seed(tmp_path):
    class AlwaysA:  # V* shows its options in an order drawn from the episode's seed
        def generate(self, conversations, n=1, sampling=None):
            return [[Completion("<answer>A</answer>")] * n for _ in conversations]

    cfg = config(tmp_path, envs=[VSTAR], split=None, samples=4, limit=3)
    run_eval(cfg, AlwaysA(), progress=False)
    verdicts = [r["correct"] for r in _lines(Path(cfg.output_dir) / "results.jsonl")[1:]]
    assert 0 < sum(verdicts) < len(verdicts)  # "A" is right only in some orders
    same = rescore(cfg.output_dir, "official", str(tmp_path / "same"), "runs/eval")
    assert same.changes == [] and same.episodes == 12

    rows = _lines(Path(cfg.output_dir) / "results.jsonl")  # rows from before seeds were saved
    _write(tmp_path / "old" / "results.jsonl", [{k: v for k, v in r.items() if k != "seed"}
                                                 for r in rows])
    assert rescore(tmp_path / "old", "official", str(tmp_path / "o2"), "runs/eval").changes == []


def test_a_fixed_scorer_rescores_answers_and_unanswered_episodes_stay_wrong(tmp_path,
                                                                            monkeypatch):
    cfg = config(tmp_path)  # ToolArith, 4 items x 4 samples, 3 of them never answer
    before = run_eval(cfg, Scripted(arith_script()), progress=False).benchmarks[ARITH]
    assert before["pass@1"] == pytest.approx(0.375) and before["truncated"] == 3
    monkeypatch.setattr(ToolArith, "score", lambda self, item, response: 1.0)
    done = rescore(cfg.output_dir, "official", cfg.output_dir, "runs/eval")
    assert done.target == Path(cfg.output_dir) / "rescored-official"  # never DIR itself
    assert len(done.changes) == 7 and all(c["after"] for c in done.changes)
    assert done.kept[ARITH] == 3  # truncated: no answer to score
    assert done.after.benchmarks[ARITH]["pass@1"] == pytest.approx((1 + 1 + 0.75 + 0.5) / 4)

    monkeypatch.setattr(ToolArith, "score", lambda self, item, response: 1 / 0)
    failing = rescore(cfg.output_dir, "official", str(tmp_path / "f"), "runs/eval")
    assert failing.failures == 13 and failing.after.benchmarks[ARITH]["pass@1"] == 0.0


# ------------------------------------------------------------------ hostile and damaged files


@pytest.fixture
def saved(boxed_run, tmp_path):
    """A copy of a finished run's results.jsonl to damage."""
    folder = tmp_path / "copy"
    folder.mkdir()
    shutil.copy(boxed_run / "results.jsonl", folder / "results.jsonl")
    return folder


def _damage(folder: Path, change) -> None:
    rows = _lines(folder / "results.jsonl")
    change(rows)
    _write(folder / "results.jsonl", rows)


def _rescore_fails(folder, capsys, *extra) -> str:
    assert main(["eval", "--rescore", str(folder), *extra]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err


def test_a_folder_without_results_is_a_clear_error(tmp_path, capsys):
    assert "no results.jsonl there" in _rescore_fails(tmp_path / "nothing", capsys)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "results.jsonl").write_text("")
    assert "holds no finished episodes" in _rescore_fails(tmp_path / "empty", capsys)


def test_a_line_that_is_not_json_or_not_a_row_names_its_line(saved, capsys):
    text = (saved / "results.jsonl").read_text().splitlines()
    (saved / "results.jsonl").write_text("\n".join([*text[:2], "{not json", *text[2:]]) + "\n")
    assert "line 3 is not JSON" in _rescore_fails(saved, capsys)
    (saved / "results.jsonl").write_text("\n".join([*text[:2], "[1, 2]", *text[2:]]) + "\n")
    assert "line 3 is not a row axpo eval writes" in _rescore_fails(saved, capsys)


@pytest.mark.parametrize("change, message", [
    (lambda rows: rows[1].update(answer=["0"]), '"answer" is a list, not a string or null'),
    (lambda rows: rows[1].update(task_id="no-such-item"), "has no such item"),
    (lambda rows: [r.update(env="Nope-v0") for r in rows], "Nope-v0, which is not registered"),
    (lambda rows: rows.pop(0), "has episodes but no config line"),
])
def test_a_hostile_episode_row_is_a_one_line_error(saved, capsys, change, message):
    _damage(saved, change)
    assert message in _rescore_fails(saved, capsys)


def test_a_torn_last_line_is_left_out_and_the_original_is_left_as_it_is(saved):
    data = (saved / "results.jsonl").read_bytes() + b'{"type": "episode", "env": "AXPO-Ma'
    (saved / "results.jsonl").write_bytes(data)
    done = rescore(saved, "lenient", "runs/eval", "runs/eval")
    assert done.episodes == 6 and (saved / "results.jsonl").read_bytes() == data


def test_an_impossible_count_leaves_that_episode_out_with_a_warning(saved, capsys):
    _damage(saved, lambda rows: rows[1].update(turns=-1))
    done = rescore(saved, "lenient", "runs/eval", "runs/eval")
    assert done.episodes == 5 and "is not trusted" in capsys.readouterr().err


def test_it_never_writes_over_an_evals_own_results(saved, boxed_run, capsys):
    err = _rescore_fails(saved, capsys, "--output-dir", str(boxed_run))
    assert "holds the results of an axpo eval, not of a rescore" in err
    with pytest.raises(EvalError, match="never writes over"):
        _check_target(saved, saved)


def test_the_rescored_folder_goes_where_output_dir_says(saved, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    assert main(["eval", "--rescore", str(saved), "--output-dir", str(elsewhere),
                 "--model", "ignored"]) == 0
    err = capsys.readouterr().err
    assert "--model is not used" in err and (elsewhere / MARKER).is_file()
    assert not (saved / "rescored-official").exists()


def test_the_rescored_folder_shows_the_new_verdicts_in_axpo_view(tmp_path, capsys):
    from axpo_view import load, write_report

    cfg = config(tmp_path, envs=[MATHVR], split=None, samples=1, limit=2,
                 save_trajectories=True)
    run_eval(cfg, Boxed(), progress=False)
    out = Path(cfg.output_dir)
    original = (out / "trajectories" / "episodes.jsonl").read_bytes()
    assert main(["eval", "--rescore", str(out), "--scoring", "lenient"]) == 0
    assert "trajectories/ (for axpo view)" in capsys.readouterr().err
    target = out / "rescored-lenient"
    assert (out / "trajectories" / "episodes.jsonl").read_bytes() == original
    records = _lines(target / "trajectories" / "episodes.jsonl")
    assert len(records) == 2 and all(r["correct"] and r["reward"] == 1.0 for r in records)
    assert all(r["rescored"] == {"correct": False, "reward": 0.0, "scoring": "official"}
               for r in records)
    images = [im for r in records for im in r["images"]]
    assert images and all((target / "trajectories" / im).is_file() for im in images)
    run = load(target)
    assert len(run.episodes) == 2 and all(e["correct"] for e in run.episodes)
    assert not any(e.get("from_results") for e in run.episodes)  # the full episodes, rescored
    page = write_report(target).read_text()
    assert page.count("rescored: was wrong in official mode") == 2
    assert "image missing" not in page

    # --no-resume starts the eval over: the rescore of the deleted results goes with them
    run_eval(config(tmp_path, envs=[MATHVR], split=None, samples=1, limit=2, resume=False),
             Boxed(), progress=False)
    assert not target.exists()
    assert "rescored-lenient" in capsys.readouterr().err
