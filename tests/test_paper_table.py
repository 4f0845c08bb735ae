"""`axpo eval --paper-table 2B|4B|8B`: the authors' Pass@4 (from their project page) beside the
run's own, per benchmark and averaged as the paper averages; also from a finished run's folder.
"""

from __future__ import annotations

import json
from math import comb
from pathlib import Path

import pytest

from axpo_cli.cli import main, parse
from axpo_env import registered_envs
from axpo_env.tasks import PAPER_BENCHMARKS
from evaluation import paper_table as pt
from evaluation.evaluate import EvalConfig, run_eval
from evaluation.report import report_files
from tests.test_eval import Boxed, config

MATHVR, VSTAR = "AXPO-MathVR-v0", "AXPO-VStar-v0"


def test_the_embedded_numbers_reproduce_the_averages_the_paper_states():
    for scale, (grpo, axpo) in pt.STATED_AVERAGES.items():
        assert round(pt.paper_average(scale, "GRPO"), 1) == grpo
        assert round(pt.paper_average(scale, "AXPO"), 1) == axpo
    delta = {name: round(a - g, 1) for (name, _), a, g in
             zip(pt.BENCHMARKS, pt.PASS_AT_4["8B"]["AXPO"], pt.PASS_AT_4["8B"]["GRPO"])}
    # the page's 8B row: AXPO loses on V* and Math-VR, gains most on VisualProbe, HR-8K, HR-MMS
    assert (delta["V*"], delta["Math-VR"]) == (-1.6, -0.2)
    assert (delta["VisualProbe"], delta["HR-Bench 8K"], delta["HR-MMSearch"]) == (4.7, 4.5, 4.0)
    assert all(len(row) == 9 for rows in pt.PASS_AT_4.values() for row in rows.values())
    assert pt.SOURCE["repository"].endswith("ByungKwanLee/AXPO-page")
    assert len(pt.SOURCE["commit"]) == 40 and pt.SOURCE["file"] == "script.js"


def test_each_paper_column_maps_to_a_registered_env_in_the_papers_order():
    envs = [env for _, env in pt.BENCHMARKS]
    assert tuple(envs) == PAPER_BENCHMARKS
    assert set(envs) <= set(registered_envs())


def _rows(env, corrects_per_item):
    return [{"env": env, "task_id": f"t{i}", "sample": s, "correct": c}
            for i, cs in enumerate(corrects_per_item) for s, c in enumerate(cs)]


def test_a_partial_run_is_averaged_only_over_the_benchmarks_it_covered():
    rows = (_rows(MATHVR, [[1, 0, 0, 0], [0, 0, 0, 0]])   # Pass@4 = 50
            + _rows(VSTAR, [[1, 1, 1, 1]])                 # Pass@4 = 100
            + _rows("AXPO-MathVista-v0", [[1, 1, 1, 1]]))  # not a paper column
    table = pt.build("8B", rows, {MATHVR: {"data_dir": "/data/mathvr", "scoring": "official"},
                                  VSTAR: {"data_dir": None, "scoring": "lenient"}})
    by_env = {r["env"]: r for r in table.rows}
    assert by_env[MATHVR]["run"] == 50.0 and by_env[VSTAR]["run"] == 100.0
    assert (by_env[MATHVR]["items"], by_env[MATHVR]["samples"]) == (2, 4)
    assert by_env["AXPO-DynaMath-v0"]["run"] is None
    assert table.covered == [MATHVR, VSTAR] and table.others == ["AXPO-MathVista-v0"]
    published, covered = table.averages["paper"], table.averages["covered"]
    assert published["run"] is None and round(published["AXPO"], 1) == 75.8
    assert covered["run"] == 75.0
    assert covered["AXPO"] == pytest.approx((74.1 + 95.3) / 2)
    assert covered["GRPO"] == pytest.approx((74.3 + 96.9) / 2)
    text = table.markdown()
    assert "| Math-VR | AXPO-MathVR-v0 | 68.3 | 74.3 | 74.1 | 50.0 | 2 x 4 |" in text
    assert "| **Average, the 2 this run covered** | | 80.5 | 85.6 | 84.7 | 75.0 | |" in text
    notes = "\n".join(table.notes)
    assert "covered 2 of the paper's 9 benchmarks" in notes
    assert "V*: evaluated on axpo's small bundled fixture" in notes
    assert "Not scored in official mode: V* (lenient)" in notes
    assert "not in the paper's table: AXPO-MathVista-v0" in notes
    assert "WARNING" not in notes and pt.SOURCE["commit"][:12] in text


def test_other_sample_counts_than_four_are_flagged_and_estimated_without_bias():
    few = pt.build("2B", _rows(MATHVR, [[1, 0]]))
    assert few.rows[2]["run"] == 100.0  # Pass@2 of that item: not Pass@4
    assert any(n.startswith("WARNING: Pass@4 needs 4 samples") for n in few.notes)
    many = pt.build("2B", _rows(MATHVR, [[1] + [0] * 7]))
    assert many.rows[2]["run"] == pytest.approx(100 * (1 - comb(7, 4) / comb(8, 4)))  # 50.0
    assert any("unbiased estimate from them" in n for n in many.notes)
    assert not any(n.startswith("WARNING") for n in many.notes)
    full = pt.build("4B", [r for env in PAPER_BENCHMARKS for r in _rows(env, [[1, 1, 1, 1]])])
    assert "covered" not in full.averages and full.averages["paper"]["run"] == 100.0
    with pytest.raises(ValueError, match="2B, 4B or 8B|one of"):
        pt.build("32B", [])


def test_the_flag_and_the_yaml_key_take_a_scale(tmp_path, capsys):
    assert parse(["eval", "--model", "m", "--paper-table", "8b"])[2].paper_table == "8B"
    yaml = tmp_path / "eval.yaml"
    yaml.write_text("model: m\npaper_table: 4B\n")
    assert parse(["eval", "--config", str(yaml)])[2].paper_table == "4B"
    assert parse(["eval", "--model", "m"])[2].paper_table is None
    with pytest.raises(SystemExit):
        parse(["eval", "--model", "m", "--paper-table", "16B"])
    assert "invalid choice: '16B'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="paper_table must be 2B, 4B or 8B"):
        EvalConfig(model="m", paper_table="1B")


@pytest.fixture(scope="module")
def mathvr_run(tmp_path_factory):
    """Math-VR, always right (lenient), 4 samples of 2 items, with the 8B table."""
    tmp = tmp_path_factory.mktemp("paper")
    cfg = config(tmp, envs=[MATHVR], split=None, samples=4, limit=2, scoring="lenient",
                 paper_table="8B")
    return cfg, run_eval(cfg, Boxed(), progress=False)


def test_an_eval_with_paper_table_prints_and_writes_it(mathvr_run):
    cfg, report = mathvr_run
    table = report.paper
    assert table is not None and table.scale == "8B" and table.covered == [MATHVR]
    assert table.rows[2]["run"] == 100.0 and table.rows[2]["items"] == 2
    out = cfg.output_dir
    saved = json.loads(open(f"{out}/paper_table.json").read())
    assert saved["scale"] == "8B" and saved["source"]["commit"] == pt.SOURCE["commit"]
    assert saved["benchmarks"][2]["run"] == 100.0
    assert saved["averages"]["covered"]["run"] == 100.0
    md = open(f"{out}/paper_table.md").read()
    assert md.strip() == table.markdown().strip()
    names = {p.name for p in report_files(Path(out))}
    assert {"paper_table.md", "paper_table.json"} <= names  # --no-resume deletes them too


def test_the_table_of_a_finished_run_prints_without_a_model(mathvr_run, capsys):
    cfg, _ = mathvr_run
    assert main(["eval", "--paper-table", "2B", "--output-dir", cfg.output_dir]) == 0
    out, err = capsys.readouterr()
    assert "| Math-VR | AXPO-MathVR-v0 | 28.9 | 58.0 | 60.0 | 100.0 | 2 x 4 |" in out
    assert "Not scored in official mode: Math-VR (lenient)" in out
    assert "paper_table.md/.json is in" in err and "Traceback" not in err
    assert json.loads(open(f"{cfg.output_dir}/paper_table.json").read())["scale"] == "2B"


def test_the_table_without_a_model_needs_a_finished_run(tmp_path, capsys):
    assert main(["eval", "--paper-table", "8B", "--output-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "no results.jsonl there" in err and "Traceback" not in err
    with pytest.raises(SystemExit):  # neither a model, a rescore nor a table
        parse(["eval", "--envs", MATHVR])
