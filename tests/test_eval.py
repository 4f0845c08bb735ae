"""`axpo eval`: metric values against hand-computed numbers, resume after an interruption, the
report files, and bad input (unknown env, missing data, corrupt image, a model that never answers).
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image

from agents import tiny
from agents.hf import HFPolicy
from agents.openai import OpenAIPolicy
from agents.policy import Completion
from axpo_cli.cli import main, parse
from axpo_env import render_answer, render_tool_call
from axpo_env.tasks.mathvista import MathVista
from axpo_env.tasks.tool_arith import ToolArith
from evaluation.evaluate import EvalConfig, EvalError, make_policy, run_eval
from evaluation.report import markdown, summarize
from tests.openai_server import running

ARITH, VISTA = "AXPO-ToolArith-v0", "AXPO-MathVista-v0"
WRONG = "-424242"


def _text(message) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(
        p.get("text", "") for p in content if p.get("type") == "text")


class Scripted:
    """A conversation-level policy that plays a script per question: the s-th episode of a
    question follows `plans[s]` ("right", "wrong", "tool", "tool_wrong", "tool_error",
    "silent"). The plan is written into the first turn's thinking so later turns follow it."""

    def __init__(self, script: dict[str, tuple[str, list[str]]]):
        self.script = script
        self.seen: Counter[str] = Counter()

    def generate(self, conversations, n=1, sampling=None):
        return [[Completion(self._turn(c["messages"]))] * n for c in conversations]

    def _turn(self, messages) -> str:
        question = _text(next(m for m in messages if m["role"] == "user"))
        answer, plans = self.script[question]
        mine = [_text(m) for m in messages if m["role"] == "assistant"]
        if not mine:
            plan = plans[self.seen[question] % len(plans)]
            self.seen[question] += 1
        else:
            plan = re.search(r"plan=(\w+)", mine[0]).group(1)
        think = f"<think>plan={plan}</think>\n"
        if plan in ("right", "wrong"):
            return think + render_answer(answer if plan == "right" else WRONG)
        if plan == "silent":  # never answers: truncated at max_turns
            return think + "Let me think about it some more."
        if not mine:  # the tool plans call a tool first
            name = "no_such_tool" if plan == "tool_error" else "calculator"
            return think + render_tool_call(name, {"expression": "6 * 7"})
        return think + render_answer(WRONG if plan == "tool_wrong" else answer)


ARITH_PLANS = [  # per item, its 4 samples; hand-computed metrics in test_metrics_...
    ["tool", "right", "right", "right"],              # c=4, one tool user (right)
    ["tool_error", "wrong", "wrong", "wrong"],        # c=1, one failed call, then right
    ["tool_wrong", "tool_wrong", "right", "silent"],  # c=1, tool users all wrong
    ["silent", "silent", "wrong", "wrong"],           # c=0
]


def arith_script(n: int = 4, plans=None) -> dict:
    items = ToolArith(split="test").items
    plans = plans or ARITH_PLANS
    return {items[i].question: (items[i].answer, plans[i % len(plans)]) for i in range(n)}


def vista_script(n: int = 2) -> dict:
    items = MathVista().items
    return {items[i].question: (items[i].answer, ["right"]) for i in range(n)}


def config(tmp_path, **kw) -> EvalConfig:
    values = dict(model="scripted", envs=[ARITH], split=["test"], samples=4, max_turns=3,
                  limit=4, batch_size=8, output_dir=str(tmp_path / "out"))
    values.update(kw)
    return EvalConfig(**values)


@pytest.fixture(scope="module")
def two_envs(tmp_path_factory):
    """ToolArith (scripted above) and MathVista (always right), k=4, evaluated once."""
    tmp = tmp_path_factory.mktemp("eval")
    cfg = config(tmp, envs=[ARITH, VISTA], split=[f"{ARITH}=test"], batch_size=5)
    policy = Scripted({**arith_script(), **vista_script(4)})
    return cfg, run_eval(cfg, policy, progress=False)


def test_metrics_match_hand_computed_numbers(two_envs):
    _, report = two_envs
    arith = report.benchmarks[ARITH]
    assert arith["tasks"] == 4 and arith["episodes"] == 16
    assert arith["pass@1"] == pytest.approx((1 + 0.25 + 0.25 + 0) / 4)  # 0.375
    assert arith["pass@4"] == pytest.approx(3 / 4)
    assert arith["tool_use_rate"] == pytest.approx(4 / 16)
    assert arith["tool_error_rate"] == pytest.approx(1 / 4)  # 1 failed call of 4
    assert arith["mean_turns"] == pytest.approx((5 + 5 + 8 + 8) / 16)
    assert arith["all_wrong_tool_share"] == pytest.approx(1 / 3)  # item 2 of items 0, 1, 2
    assert arith["all_wrong_no_tool_share"] == pytest.approx(2 / 4)  # items 1 and 3 of all 4
    assert arith["accuracy_with_tools"] == pytest.approx(2 / 4)
    assert arith["truncated"] == 3 and arith["errors"] == 0

    vista = report.benchmarks[VISTA]
    assert (vista["pass@1"], vista["pass@4"], vista["tool_use_rate"]) == (1.0, 1.0, 0.0)
    assert vista["tool_error_rate"] is None and vista["all_wrong_tool_share"] is None

    avg = report.average  # each benchmark counts once; None metrics are left out
    assert avg["pass@1"] == pytest.approx((0.375 + 1) / 2)
    assert avg["pass@4"] == pytest.approx((0.75 + 1) / 2)
    assert avg["tool_use_rate"] == pytest.approx(0.125)
    assert avg["tool_error_rate"] == pytest.approx(0.25)
    assert avg["mean_turns"] == pytest.approx((1.625 + 1) / 2)
    assert avg["all_wrong_tool_share"] == pytest.approx(1 / 3)
    assert avg["all_wrong_no_tool_share"] == pytest.approx((0.5 + 0.0) / 2)
    assert (avg["tasks"], avg["episodes"], avg["truncated"]) == (8, 32, 3)


def test_a_model_that_never_answers_is_truncated_and_scored_wrong(two_envs):
    cfg, _ = two_envs
    rows = [json.loads(line) for line in open(f"{cfg.output_dir}/results.jsonl")]
    silent = [r for r in rows if r.get("response", "").startswith("<think>plan=silent")]
    assert len(silent) == 3
    assert all(r["truncated"] and not r["correct"] and r["turns"] == 3 and r["answer"] is None
               for r in silent)


def test_pass_at_k_is_the_unbiased_estimator_when_k_is_below_n():
    rows = [{"env": "E", "task_id": t, "correct": c, "tool_calls": 0, "tool_errors": 0,
             "turns": 1, "truncated": False, "error": None}
            for t, cs in (("a", [1, 0, 0, 0]), ("b", [1, 1, 0, 0])) for c in cs]
    m = summarize(rows, k=2).benchmarks["E"]
    # 1 - C(n-c, k) / C(n, k): a: 1 - 3/6, b: 1 - 1/6
    assert m["pass@2"] == pytest.approx((0.5 + 5 / 6) / 2)
    assert m["pass@1"] == pytest.approx((0.25 + 0.5) / 2)


def test_report_files_exist_and_agree(two_envs):
    cfg, report = two_envs
    out = cfg.output_dir
    summary = json.loads(open(f"{out}/summary.json").read())
    assert summary["k"] == 4 and summary["config"]["samples"] == 4
    with open(f"{out}/summary.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["benchmark"] for r in table] == [ARITH, VISTA, "average"]
    md = open(f"{out}/summary.md").read()
    assert md.strip() == markdown(report)
    for row in table:
        name = row["benchmark"]
        values = summary["average"] if name == "average" else summary["benchmarks"][name]
        line = next(ln for ln in md.splitlines() if name in ln)
        for key, value in values.items():
            if value is None:
                assert row[key] == ""
            else:
                assert float(row[key]) == pytest.approx(value)
        assert f"{100 * values['pass@1']:.1f}%" in line and f"{values['mean_turns']:.2f}" in line
    folder = Path(out) / "plots"
    plots = sorted(p.name for p in folder.iterdir())
    assert plots == sorted(["pass_at_1.png", "pass_at_4.png", "tool_use_rate.png",
                            "tool_error_rate.png", "mean_turns.png", "all_wrong_tool_share.png",
                            "all_wrong_no_tool_share.png"])
    for name in plots:
        with Image.open(folder / name) as im:
            assert im.format == "PNG" and im.width > 100


# ------------------------------------------------------------------------- resume


@pytest.fixture(scope="module")
def tiny_policy():
    # One thread: a tiny model gains nothing from more, and on a shared CPU the OpenMP threads
    # of several processes oversubscribe it and slow generation by an order of magnitude.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield HFPolicy.from_pretrained(tiny.cached("vl"), render_tools=False)
    torch.set_num_threads(threads)


class Interrupting(HFPolicy):
    """The tiny model, dying at its `fail_at`-th batched generate call; counts new episodes."""

    def __init__(self, base: HFPolicy, fail_at: int | None = None):
        super().__init__(base.model, base.processor, render_tools=False)
        self.fail_at, self.calls, self.episodes = fail_at, 0, 0

    def prompt(self, conversation):
        self.episodes += 1
        return super().prompt(conversation)

    def sample(self, prompts, n=1, sampling=None):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return super().sample(prompts, n=n, sampling=sampling)


def _episodes(path) -> list[dict]:
    rows = [json.loads(line) for line in open(path)]
    return sorted((r for r in rows if r["type"] == "episode"),
                  key=lambda r: (r["index"], r["sample"]))


def test_an_interrupted_run_resumes_to_the_same_results_without_recomputing(tmp_path,
                                                                            tiny_policy):
    kw = dict(samples=2, limit=5, max_turns=2, max_completion_length=6, batch_size=4,
              temperature=1.0)
    whole_cfg = config(tmp_path / "whole", **kw)
    whole = run_eval(whole_cfg, Interrupting(tiny_policy), progress=False)

    cfg = config(tmp_path / "cut", **kw)
    with pytest.raises(KeyboardInterrupt):
        run_eval(cfg, Interrupting(tiny_policy, fail_at=3), progress=False)
    saved = _episodes(f"{cfg.output_dir}/results.jsonl")
    assert 0 < len(saved) < 10 and len(saved) % 4 == 0  # whole batches only

    resumed_policy = Interrupting(tiny_policy)
    resumed = run_eval(cfg, resumed_policy, progress=False)
    # finished episodes are not rerun: the rest are (10 - saved) / 2 items, and the 2 samples
    # of an item share one rendered prompt
    assert resumed_policy.episodes == (10 - len(saved)) // 2
    final = _episodes(f"{cfg.output_dir}/results.jsonl")
    assert final == _episodes(f"{whole_cfg.output_dir}/results.jsonl")
    assert resumed.benchmarks == whole.benchmarks

    again = Interrupting(tiny_policy)
    run_eval(cfg, again, progress=False)  # everything done: nothing runs, same report
    assert again.episodes == 0


def test_resume_drops_a_torn_last_line_and_refuses_other_settings(tmp_path):
    cfg = config(tmp_path, samples=2, limit=2)
    run_eval(cfg, Scripted(arith_script(2)), progress=False)
    results = tmp_path / "out" / "results.jsonl"
    lines = results.read_text().splitlines(keepends=True)
    results.write_text("".join(lines[:-1]) + lines[-1][:20])  # died mid-write
    policy = Scripted(arith_script(2))
    run_eval(cfg, policy, progress=False)
    assert sum(policy.seen.values()) == 1  # only the torn episode ran again
    assert results.read_text().count('"type": "episode"') == 4

    with pytest.raises(EvalError, match="temperature: 1.0 then, 0.5 now"):
        run_eval(config(tmp_path, samples=2, limit=2, temperature=0.5), policy, progress=False)
    fresh = Scripted(arith_script(2))
    run_eval(config(tmp_path, samples=2, limit=2, temperature=0.5, resume=False), fresh,
             progress=False)
    assert sum(fresh.seen.values()) == 4


def test_no_resume_deletes_what_the_last_run_wrote_so_view_and_summary_agree(tmp_path,
                                                                              capsys):
    from axpo_view import load

    out = tmp_path / "out"
    run_eval(config(tmp_path, save_trajectories=True), Scripted(arith_script()), progress=False)
    assert len(load(out).episodes) == 16 and (out / "plots" / "pass_at_4.png").is_file()
    images = sorted((out / "trajectories" / "images").iterdir())

    report = run_eval(config(tmp_path, samples=1, resume=False, save_trajectories=True),
                      Scripted(arith_script()), progress=False)
    assert report.benchmarks[ARITH]["episodes"] == 4
    run = load(out)
    assert len(run.episodes) == 4 and run.summary["benchmarks"][ARITH]["episodes"] == 4
    assert not (out / "plots" / "pass_at_4.png").exists()  # the stale chart is gone too
    assert "deleted the last run's results.jsonl" in capsys.readouterr().err
    assert sorted((out / "trajectories" / "images").iterdir()) == images  # shared: kept

    # without --save-trajectories the old trajectories must not stand in for the new episodes
    run_eval(config(tmp_path, samples=2, resume=False), Scripted(arith_script()),
             progress=False)
    run = load(out)
    assert len(run.episodes) == 8 and all(e.get("from_results") for e in run.episodes)


def test_no_resume_refuses_to_delete_a_training_runs_trajectories(tmp_path):
    cfg = config(tmp_path, samples=1)
    run_eval(cfg, Scripted(arith_script()), progress=False)
    folder = tmp_path / "out" / "trajectories"
    folder.mkdir()
    training = json.dumps({"type": "episode", "id": "step1/g0/r0", "step": 1}) + "\n"
    (folder / "episodes.jsonl").write_text(training)
    with pytest.raises(EvalError, match="a training run's trajectories"):
        run_eval(config(tmp_path, samples=1, resume=False), Scripted(arith_script()),
                 progress=False)
    assert (folder / "episodes.jsonl").read_text() == training  # nothing was deleted
    assert (tmp_path / "out" / "results.jsonl").is_file()


# ------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", ['[1, 2]', '"episode"', '{"type": "episode", "env": 3}',
                                 '{"type": "config"}', '{"type": "other"}',
                                 '{"type": "episode", "env": "E", "task_id": "1", "sample": true}',
                                 "[" * 5000 + "]" * 5000])
def test_a_middle_line_of_the_wrong_shape_is_a_clear_error(tmp_path, bad):
    cfg = config(tmp_path, samples=2, limit=2)
    run_eval(cfg, Scripted(arith_script(2)), progress=False)
    results = tmp_path / "out" / "results.jsonl"
    lines = results.read_text().splitlines(keepends=True)
    results.write_text("".join(lines[:2]) + bad + "\n" + "".join(lines[2:]))
    with pytest.raises(EvalError, match="line 3 is not"):
        run_eval(cfg, Scripted(arith_script(2)), progress=False)



def test_an_unknown_env_is_refused_with_the_registered_ids(tmp_path, capsys):
    rc = main(["eval", "--model", "tiny", "--envs", "AXPO-Nope-v0",
               "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown env 'AXPO-Nope-v0'" in err and VISTA in err and ARITH in err


def test_missing_or_partial_data_exits_nonzero_with_the_dataset_message(tmp_path, capsys):
    rc = main(["eval", "--model", "tiny", "--envs", VISTA, "--data-dir",
               f"{VISTA}={tmp_path / 'nowhere'}", "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1 and "MathVista data not found" in err and "Traceback" not in err

    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "testmini.json").write_text(json.dumps(
        [{"pid": "1", "question": "q", "question_type": "free_form", "answer_type": "integer",
          "image": "1.png"}]))
    rc = main(["eval", "--model", "tiny", "--envs", VISTA, "--data-dir", str(partial),
               "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1 and "lacks required column(s) answer" in err and "Traceback" not in err


def test_a_corrupt_image_is_an_error_row_and_the_run_goes_on(tmp_path):
    data = tmp_path / "vista"
    data.mkdir()
    Image.new("RGB", (32, 32), "white").save(data / "ok.png")
    (data / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    records = [{"pid": pid, "question": f"How many? ({pid})", "answer": "7",
                "question_type": "free_form", "answer_type": "integer", "image": image}
               for pid, image in (("ok", "ok.png"), ("bad", "bad.png"))]
    (data / "testmini.json").write_text(json.dumps(records))

    class Seven:
        def generate(self, conversations, n=1, sampling=None):
            return [[Completion("<answer>7</answer>")] * n for _ in conversations]

    cfg = config(tmp_path, envs=[VISTA], split=None, data_dir=[str(data)], samples=2)
    report = run_eval(cfg, Seven(), progress=False)
    rows = _episodes(f"{cfg.output_dir}/results.jsonl")
    bad = [r for r in rows if r["task_id"] == "bad"]
    assert len(bad) == 2 and all("cannot decode image" in r["error"] and not r["correct"]
                                 for r in bad)
    m = report.benchmarks[VISTA]
    assert (m["errors"], m["pass@1"], m["episodes"]) == (2, 0.5, 4)

    Image.new("RGB", (32, 32), "white").save(data / "bad.png")  # the data gets fixed
    assert run_eval(cfg, Seven(), progress=False).benchmarks[VISTA]["errors"] == 2  # kept
    cfg.retry_errors = True
    m = run_eval(cfg, Seven(), progress=False).benchmarks[VISTA]
    assert (m["errors"], m["pass@1"], m["episodes"]) == (0, 1.0, 4)


def test_the_cli_reads_eval_flags_and_requires_a_model():
    _, algo, cfg = parse(["eval", "--model", "m", "--envs", f"{ARITH},{VISTA}",
                          "--max-new-tokens", "7", "--no-resume", "--data-dir",
                          f"{VISTA}=/d", "--limit", "3"])
    assert algo is None and isinstance(cfg, EvalConfig)
    assert (cfg.envs, cfg.max_completion_length, cfg.resume, cfg.data_dir, cfg.limit) == (
        [ARITH, VISTA], 7, False, [f"{VISTA}=/d"], 3)
    with pytest.raises(SystemExit) as e:
        parse(["eval", "--envs", VISTA])
    assert e.value.code == 2


@pytest.mark.parametrize("name", ["envs", "split", "data_dir", "tools"])
def test_a_string_for_a_list_field_is_a_one_element_list(name):
    assert getattr(EvalConfig(model="m", **{name: "test"}), name) == ["test"]  # not t, e, s, t
    assert getattr(EvalConfig(model="m", **{name: ("a", "b")}), name) == ["a", "b"]
    with pytest.raises(ValueError, match=f"{name} must be a string or a list of strings"):
        EvalConfig(model="m", **{name: ["a", 3]})


def test_split_given_as_one_string_evaluates_that_split(tmp_path):
    run_eval(config(tmp_path, split="test", samples=1, limit=1), Scripted(arith_script(1)),
             progress=False)
    rows = [json.loads(line) for line in open(tmp_path / "out" / "results.jsonl")]
    assert rows[0]["config"]["split"] == "test"
    assert rows[1]["task_id"].startswith("test-")


def test_a_model_path_that_does_not_exist_is_a_clear_error(tmp_path, capsys):
    rc = main(["eval", "--model", str(tmp_path / "nope"), "--envs", ARITH, "--limit", "1",
               "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "neither a checkpoint folder" in err and "Traceback" not in err


def test_data_dir_pairs_must_name_evaluated_envs(tmp_path):
    cfg = config(tmp_path, envs=[ARITH, VISTA], data_dir=["somewhere"])
    with pytest.raises(EvalError, match="write ENV=PATH pairs"):
        run_eval(cfg, Scripted({}), progress=False)
    cfg = config(tmp_path, envs=[ARITH], data_dir=[f"{VISTA}=x"])
    with pytest.raises(EvalError, match="not among the evaluated envs"):
        run_eval(cfg, Scripted({}), progress=False)


# ------------------------------------------------------------------------- a server URL


@pytest.fixture
def server():
    """An OpenAI-compatible server that lists one model and answers ToolArith correctly."""
    with running() as url:
        yield url


def test_a_server_url_evaluates_through_openai_policy(tmp_path, server):
    cfg = config(tmp_path, model=server, samples=2, limit=4)
    policy = make_policy(cfg)
    assert isinstance(policy, OpenAIPolicy) and policy.model == "served-vl"
    report = run_eval(cfg, progress=False)
    assert report.benchmarks[ARITH]["pass@1"] == 1.0
    with pytest.raises(EvalError, match="cannot list the models"):
        make_policy(config(tmp_path, model="http://127.0.0.1:9/v1", request_timeout=2))


def test_paper_and_all_name_the_suites():
    from evaluation.evaluate import resolve_envs

    paper = resolve_envs(["paper"])
    assert paper == [  # the AXPO paper's Table 1: reasoning, perception, search
        "AXPO-MathVision-v0", "AXPO-DynaMath-v0", "AXPO-MathVR-v0",
        "AXPO-VStar-v0", "AXPO-VisualProbe-v0", "AXPO-HRBench4K-v0", "AXPO-HRBench8K-v0",
        "AXPO-HRMMSearch-v0", "AXPO-MMSearch-v0",
    ]
    assert resolve_envs(["reasoning"]) == paper[:3]
    assert resolve_envs(["search", "perception"]) == paper[7:] + paper[3:7]
    everything = resolve_envs(["all"])
    for extra in (VISTA, "AXPO-MathVerse-v0", "AXPO-WeMath-v0"):  # not the paper's, still here
        assert extra not in paper and extra in everything and resolve_envs([extra]) == [extra]
    assert ARITH in resolve_envs(["all"]) and resolve_envs([ARITH, "paper"])[0] == ARITH


class Boxed:
    """Answers every Math-VR question right, but dressed in \\boxed{}: the official rule
    (exact match) rejects that, the lenient one accepts it."""

    def generate(self, conversations, n=1, sampling=None):
        from axpo_env.tasks.mathvr import MathVR

        answers = {it.question: it.answer for it in MathVR().items}
        out = []
        for c in conversations:
            question = _text(next(m for m in c["messages"] if m["role"] == "user"))
            out.append([Completion(f"<answer>\\boxed{{{answers[question]}}}</answer>")] * n)
        return out


@pytest.mark.parametrize("scoring, pass1", [(None, 0.0), ("official", 0.0), ("lenient", 1.0)])
def test_eval_scores_official_by_default_and_says_which_mode(tmp_path, scoring, pass1):
    extra = {} if scoring is None else {"scoring": scoring}
    cfg = config(tmp_path, envs=["AXPO-MathVR-v0"], split=None, samples=1, limit=1, **extra)
    report = run_eval(cfg, Boxed(), progress=False)
    mode = scoring or "official"
    assert report.benchmarks["AXPO-MathVR-v0"]["pass@1"] == pass1
    assert report.scoring == {"AXPO-MathVR-v0": mode}
    assert markdown(report).splitlines()[-1].startswith(f"Scoring: {mode} (")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["scoring"] == {"AXPO-MathVR-v0": mode}


def test_resuming_with_the_other_scoring_mode_is_refused(tmp_path):
    cfg = config(tmp_path, envs=["AXPO-MathVR-v0"], split=None, samples=1, limit=1)
    run_eval(cfg, Boxed(), progress=False)
    with pytest.raises(EvalError, match="scoring: 'official' then, 'lenient' now"):
        run_eval(config(tmp_path, envs=["AXPO-MathVR-v0"], split=None, samples=1, limit=1,
                        scoring="lenient"), Boxed(), progress=False)
    with pytest.raises(ValueError, match="scoring must be one of"):
        config(tmp_path, scoring="strict")


def test_a_task_without_scoring_modes_is_scored_by_its_own_rule():
    import gymnasium as gym

    from axpo_env.tasks import Task
    from evaluation.evaluate import OWN_RULE, _has_scoring_modes

    class Legacy(Task):  # a plugin written before scoring modes existed
        def __init__(self, split=None, data_dir=None, judge=None):
            super().__init__(split=split, data_dir=data_dir, judge=judge)

    gym.register(id="Legacy-v0", entry_point="axpo_env.env:ToolUseEnv", kwargs={"task": Legacy})
    try:
        assert not _has_scoring_modes("Legacy-v0") and OWN_RULE == "own rule"
        assert _has_scoring_modes(ARITH) and _has_scoring_modes("AXPO-MathVR-v0")
    finally:
        del gym.registry["Legacy-v0"]


def test_the_scoring_line_names_benchmarks_scored_otherwise():
    from evaluation.report import Report

    report = Report(1, {}, {}, scoring={"A-v0": "official", "B-v0": "official",
                                        "Plugin-v0": "own rule"})
    assert report.scoring_line() == ("Scoring: official (each benchmark's published scoring "
                                     "rules, quirks included); except Plugin-v0 own rule.")
    assert Report(1, {}, {}).scoring_line() == ""


def test_the_cli_scores_official_unless_told_lenient(capsys):
    assert parse(["eval", "--model", "tiny"])[2].scoring == "official"
    assert parse(["eval", "--model", "tiny", "--scoring", "lenient"])[2].scoring == "lenient"
    with pytest.raises(SystemExit):
        parse(["eval", "--model", "tiny", "--scoring", "strict"])
    assert "invalid choice: 'strict'" in capsys.readouterr().err


def test_tool_call_format_flag_makes_the_envs_read_qwen3_coder_calls(tmp_path, capsys):
    out = tmp_path / "xml"
    argv = ["eval", "--model", "tiny", "--envs", "AXPO-ZoomBoxes-v0", "--limit", "2",
            "--samples", "1", "--max-turns", "1", "--max-new-tokens", "8",
            "--output-dir", str(out), "--save-trajectories"]
    assert main([*argv, "--tool-call-format", "qwen3_coder"]) == 0
    settings = json.loads((out / "results.jsonl").read_text().splitlines()[0])["config"]
    assert settings["tool_call_format"] == "qwen3_coder"
    # the tiny model writes no call: the env's message says how a qwen3_coder call looks
    rows = [json.loads(line) for line in (out / "trajectories" / "episodes.jsonl").open()]
    assert rows and all("<function=NAME>" in r["turns"][0]["format_error"] for r in rows)
    capsys.readouterr()
    assert main(argv) == 2  # the default (hermes) is another setting: not mixed in
    assert "tool_call_format: 'qwen3_coder' then, None now" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, "--tool-call-format", "xml"])
    assert "invalid choice: 'xml' (choose from 'hermes', 'qwen3_coder')" in \
        capsys.readouterr().err
