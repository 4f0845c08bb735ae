"""Hostile records around `axpo eval` (issue 24): text that is not valid Unicode, finished rows
in results.jsonl with impossible values, and dataset images that are not regular files.
Each must end as a clear message or a rerun, never a crash, a hang or lost data."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from PIL import Image

from agents.policy import Completion
from axpo_env.errors import DatasetError
from axpo_env.tasks import loading
from axpo_env.tasks.loading import decode_image
from evaluation.evaluate import run_eval
from evaluation.results import ResultsFile
from tests.test_eval import VISTA, Scripted, arith_script, config


class Answering:
    """Answers every question at once with `text`."""

    def __init__(self, text: str):
        self.text, self.calls = text, 0

    def generate(self, conversations, n=1, sampling=None):
        self.calls += len(conversations)
        return [[Completion(self.text)] * n for _ in conversations]


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


# ------------------------------------------------------------------ #8 lone surrogates


def test_a_lone_surrogate_in_an_answer_is_written_as_valid_utf8_and_resumes(tmp_path):
    cfg = config(tmp_path, samples=2, limit=2)
    run_eval(cfg, Answering("<think>\ud800</think><answer>7\ud800</answer>"), progress=False)
    results = Path(cfg.output_dir) / "results.jsonl"
    text = results.read_bytes().decode("utf-8")  # strict: valid UTF-8
    rows = [json.loads(line) for line in text.splitlines()]
    episodes = [r for r in rows if r["type"] == "episode"]
    assert len(episodes) == 4
    assert all("\ufffd" in r["response"] and "\ud800" not in r["response"] for r in episodes)

    again = Answering("<answer>7</answer>")
    report = run_eval(cfg, again, progress=False)  # a rerun finishes, recomputing nothing
    assert again.calls == 0 and report.benchmarks[cfg.envs[0]]["episodes"] == 4


def test_a_results_file_holding_lone_surrogates_is_read_and_repaired(tmp_path):
    cfg = config(tmp_path, samples=2, limit=2)
    run_eval(cfg, Scripted(arith_script(2)), progress=False)
    results = Path(cfg.output_dir) / "results.jsonl"
    lines = _lines(results)
    row = json.loads(lines[1])
    row["response"] = "escaped \ud800 here"
    lines[1] = json.dumps(row) + "\n"  # ASCII JSON: the escape \ud800
    row = json.loads(lines[2])
    row["response"] = "raw \udc80 here"
    raw = json.dumps(row, ensure_ascii=False).encode("utf-8", "surrogatepass") + b"\n"
    results.write_bytes(lines[0].encode() + lines[1].encode() + raw
                        + "".join(lines[3:]).encode())

    policy = Scripted(arith_script(2))
    report = run_eval(cfg, policy, progress=False)
    assert sum(policy.seen.values()) == 0 and report.benchmarks[cfg.envs[0]]["episodes"] == 4
    file = ResultsFile(results, resume=True)
    file.close()
    responses = [r["response"] for r in file.rows if r["type"] == "episode"]
    assert "escaped \ufffd here" in responses and "raw \ufffd\ufffd\ufffd here" in responses


# ------------------------------------------------------------------ #10 impossible values


@pytest.mark.parametrize("field, value", [
    ("tool_errors", "9" * 4000), ("turns", "9" * 4000), ("tool_calls", "-1"),
    ("turns", "-3"), ("reward", "NaN"), ("reward", "Infinity"), ("sample", "9" * 4000),
])
def test_a_finished_row_with_an_impossible_value_runs_again_with_a_warning(
        tmp_path, capsys, field, value):
    cfg = config(tmp_path, samples=2, limit=2)
    run_eval(cfg, Scripted(arith_script(2)), progress=False)
    results = Path(cfg.output_dir) / "results.jsonl"
    lines = _lines(results)
    row = json.loads(lines[2])
    row["tool_calls"] = 1  # so a huge tool_errors reaches the division of the summary
    lines[2] = json.dumps(row).replace(f'"{field}": {json.dumps(row[field])}',
                                       f'"{field}": {value}') + "\n"
    assert value in lines[2]
    results.write_text("".join(lines), encoding="utf-8")
    capsys.readouterr()

    policy = Scripted(arith_script(2))
    report = run_eval(cfg, policy, progress=False)
    assert sum(policy.seen.values()) == 1  # only that episode ran again
    err = capsys.readouterr().err
    assert f"{results} line 3" in err and field in err
    m = report.benchmarks[cfg.envs[0]]
    assert m["episodes"] == 4 and 0 <= m["mean_turns"] <= cfg.max_turns
    assert math.isfinite(m["pass@1"])
    assert len(_lines(results)) == len(lines) + 1  # nothing lost: the bad line stays, a new one


# ------------------------------------------------------------------ #10 image paths


@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "directory"])
def test_an_image_path_that_is_not_a_regular_file_is_a_clear_error(tmp_path, kind):
    if kind == "dev_zero":
        path = "/dev/zero"
        if not Path(path).exists():
            pytest.skip("no /dev/zero here")
    elif kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no fifos here")
        path = str(tmp_path / "pipe.png")
        os.mkfifo(path)
    else:
        path = str(tmp_path)
    with pytest.raises(DatasetError, match=r"MathVista pid '7'.*not a regular file"):
        decode_image(path, None, "MathVista pid '7'")


def test_an_image_file_over_the_size_cap_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(loading, "MAX_IMAGE_BYTES", 1000)
    big = tmp_path / "big.png"
    Image.new("RGB", (200, 200)).save(big, format="BMP")
    small = tmp_path / "small.png"
    Image.new("RGB", (4, 4), "white").save(small)
    with pytest.raises(DatasetError, match=r"pid '8'.*larger than 1000 bytes"):
        decode_image(str(big), None, "pid '8'")
    assert decode_image(str(small), None, "pid '9'").size == (4, 4)


def test_an_eval_over_a_dev_zero_image_is_an_error_row_naming_it(tmp_path):
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero here")
    data = tmp_path / "vista"
    data.mkdir()
    Image.new("RGB", (32, 32), "white").save(data / "ok.png")
    records = [{"pid": pid, "question": f"How many? ({pid})", "answer": "7",
                "question_type": "free_form", "answer_type": "integer", "image": image}
               for pid, image in (("ok", "ok.png"), ("zero", "/dev/zero"))]
    (data / "testmini.json").write_text(json.dumps(records))
    cfg = config(tmp_path, envs=[VISTA], split=None, data_dir=[str(data)], samples=1)
    report = run_eval(cfg, Answering("<answer>7</answer>"), progress=False)
    rows = [json.loads(line) for line in _lines(Path(cfg.output_dir) / "results.jsonl")]
    bad = [r for r in rows if r.get("task_id") == "zero"]
    assert len(bad) == 1 and "pid 'zero'" in bad[0]["error"]
    assert "not a regular file" in bad[0]["error"]
    assert report.benchmarks[VISTA]["errors"] == 1
