"""Math-VR: the bundled fixture in the published schema, the env, and its two scoring modes
(official: the verdict after Math-VR-Eval.py's GPT-4.1 judge, as summarize_score.py reads it;
lenient: MATH-V equivalence, part by part)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import axpo_env  # noqa: F401  (registers the envs)
from axpo_env.errors import DatasetError
from axpo_env.tasks.mathvr import MathVR, judge_verdict, score_lenient, score_official

ROOT = Path(__file__).resolve().parents[1]
ENV = "AXPO-MathVR-v0"


def test_fixture_loads_in_the_published_schema():
    task = MathVR()
    assert task.task_ids == ["0", "1", "2", "3", "4", "5"]
    cats = [task.items[i].metadata["category"] for i in range(6)]
    assert cats.count("text") == 3 and cats.count("multimodal") == 3
    two = task.items[3]  # cites <image1> and <image2>: both shown, markers removed
    assert len(two.images) == 2 and "<image" not in two.question
    assert task.items[1].metadata["number_of_answers"] == 2
    assert MathVR(category="text").task_ids == ["2", "4", "5"]


def test_fixture_script_reproduces_the_bundle(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location(
        "make_mathvr_fixture", ROOT / "scripts" / "make_mathvr_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "OUT", tmp_path)
    module.main()
    rel = "data/test-00000-of-00001.parquet"
    bundled = Path(axpo_env.tasks.base.FIXTURES) / "mathvr" / rel
    assert (tmp_path / rel).read_bytes() == bundled.read_bytes()


def test_check_env_passes():
    env = gym.make(ENV)
    check_env(env.unwrapped, skip_render_check=True)


def test_scripted_episode_computes_with_a_tool_then_answers():
    env = gym.make(ENV, tools=["calculator"]).unwrapped
    obs, _ = env.reset(seed=0, options={"task_id": "0"})
    assert obs["messages"][1]["content"][0]["type"] == "image"
    call = '{"name": "calculator", "arguments": {"expression": "12**2 - 6**2"}}'
    obs, reward, terminated, _, info = env.step(f"<tool_call>{call}</tool_call>")
    assert not terminated and "108" in obs["messages"][-1]["content"][-1]["text"]
    _, reward, terminated, _, info = env.step("<answer>\\boxed{108}</answer>")
    assert terminated and reward == 1.0 and info["correct"] and info["tool_calls"] == 1


@pytest.mark.parametrize("scoring, answer, reward", [
    ("lenient", "(1) 13; (2) 60/13", 1.0), ("lenient", "13; 4.62", 1.0),
    ("official", "(1) 13; (2) 60/13", 1.0), ("official", "13; 4.62", 0.0),
])  # fmt: skip
def test_episode_reward_follows_the_scoring_option(scoring, answer, reward):
    env = gym.make(ENV, task_options={"scoring": scoring}).unwrapped
    env.reset(seed=0, options={"task_id": "1"})
    assert env.step(f"<answer>{answer}</answer>")[1] == reward


# The official verdict comes after the judge: summarize_score.py counts AC as
# `result["is_fully_correct"] is True` on the JSON that extract_json cut out of the reply.
@pytest.mark.parametrize("reply, expected", [
    ('{"id": "0", "is_fully_correct": true, "final_score": 4}', 1.0),
    ('Here is my grading:\n```json\n{"is_fully_correct": true}\n```', 1.0),
    ('{"is_fully_correct": "true", "final_score": 4}', 0.0),  # a string is not `True`
    ('{"is_fully_correct": "True"}', 0.0),
    ('{"is_fully_correct": false, "final_score": 4}', 0.0),  # full score, not fully correct
    ('{"is_fully_correct": 1}', 0.0),  # 1 is not True
    ("not json at all", 0.0), ('{"is_fully_correct": true', 0.0),
    ({"is_fully_correct": True}, 1.0), (1.0, 1.0), (0.0, 0.0), (float("nan"), 0.0), (None, 0.0),
])  # fmt: skip
def test_judge_reply_is_read_as_summarize_score_reads_it(reply, expected):
    assert judge_verdict(reply) == expected


@pytest.mark.parametrize("response, answers, official, lenient", [
    ("108", "108", 1, 1), (" 108 ", "108", 1, 1), ("\\boxed{108}", "108", 0, 1),
    ("108.0", "108", 0, 1), ("x = 108", "108", 0, 1), ("107", "108", 0, 0),
    ("1/4", "\\frac{1}{4}", 0, 1), ("0.25", "\\frac{1}{4}", 0, 1),
    ("\\frac{1}{4}", "\\frac{1}{4}", 1, 1),
    ("(1, 3)", "(1, 3)", 1, 1), ("(1,3)", "(1, 3)", 0, 1), ("(3, 1)", "(1, 3)", 0, 0),
    ("(1) 13; (2) 60/13", "(1) 13; (2) 60/13", 1, 1), ("13; 60/13", "(1) 13; (2) 60/13", 0, 1),
    ("13\n4.62", "(1) 13; (2) 60/13", 0, 1), ("13", "(1) 13; (2) 60/13", 0, 0),
    ("13; 5", "(1) 13; (2) 60/13", 0, 0), ("", "108", 0, 0), ("108", "", 0, 0),
])  # fmt: skip
def test_rules_without_a_judge(response, answers, official, lenient):
    assert score_official(response, answers) == official
    assert score_lenient(response, answers) == lenient


@pytest.mark.parametrize("scoring", ["official", "lenient"])
def test_a_judge_decides_in_both_modes_and_a_failing_one_falls_back(scoring):
    item = MathVR().items[0]
    judged = MathVR(scoring=scoring, judge=lambda it, r: '{"is_fully_correct": true}')
    assert judged.score(item, "anything") == 1.0

    def broken(it, r):
        raise RuntimeError("API down")

    assert MathVR(scoring=scoring, judge=broken).score(item, "108") == 1.0


def test_bad_options_and_data_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="scoring must be one of"):
        MathVR(scoring="strict")
    with pytest.raises(ValueError, match="category must be one of"):
        MathVR(category="video")
    (tmp_path / "test.jsonl").write_text(
        '{"id": "0", "question": "<image1> x?", "category": "multimodal", "answers": "1"}\n')
    task = MathVR(data_dir=tmp_path)
    with pytest.raises(DatasetError, match="cites <image1> but image1 is empty"):
        task.items[0]
    (tmp_path / "test.jsonl").write_text('{"id": "0", "question": "x?", "answers": "1"}\n')
    with pytest.raises(DatasetError, match="category"):
        MathVR(data_dir=tmp_path).items[0]
