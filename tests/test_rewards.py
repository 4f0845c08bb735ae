"""Custom reward functions: loaded by name, import path or callable, weighted, logged one by one,
and read by GRPO's advantages and AXPO's recovery reward alike (rollouts and resamples)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from agents import tiny
from agents.hf import HFPolicy
from algorithms import axpo
from algorithms.config import AXPOConfig, GRPOConfig
from algorithms.grpo import grpo_batch
from algorithms.preflight import RunError
from algorithms.rewards import RewardError, Rewards, format_reward, load_reward_func
from algorithms.trainer import Trainer
from axpo_env.tasks.base import TaskItem
from tests.test_axpo import make_traj, tokenizer  # noqa: F401  (the fixture)
from tests.test_trainer import WrongCallsThenRecoverable, config

ROOT = Path(__file__).resolve().parents[1]
ITEM = TaskItem("q", "question", (), "42")
EPS = 1e-4  # TRL's std epsilon


def test_names_import_paths_and_callables_load(tmp_path):
    (tmp_path / "my_rewards.py").write_text("def length(trajectory, item):\n    return 3.0\n")
    assert load_reward_func("task")[0] == "task"
    name, func = load_reward_func(f"{tmp_path / 'my_rewards.py'}:length")
    assert name == "length" and func(None, ITEM) == 3.0
    assert load_reward_func("algorithms.rewards:format_reward") == ("format_reward",
                                                                      format_reward)
    assert load_reward_func(_boom) == ("boom", _boom)


@pytest.mark.parametrize("spec, message", [
    ("nonsense", "not a built-in"),
    ("no_such_module_xyz:f", "cannot import no_such_module_xyz"),
    ("tests.test_rewards:missing", "has no function 'missing'"),
    ("/nowhere/r.py:f", "cannot import /nowhere/r.py"),
])
def test_a_reward_function_that_does_not_load_is_one_clear_error(spec, message):
    with pytest.raises(RewardError, match=message):
        Rewards.of([spec], None)


def test_weights_default_to_one_and_tool_reward_is_the_weighted_tool_use_term():
    r = Rewards.of(None, None, tool_reward=0.1)
    assert (r.names, r.weights) == (["task", "tool_use"], [1.0, 0.1])
    assert Rewards.of(["task", "format"], None).weights == [1.0, 1.0]
    with pytest.raises(RewardError, match="2 value"):
        Rewards.of(["task"], [1.0, 2.0])
    with pytest.raises(RewardError, match="not both"):
        Rewards.of(["task", "tool_use"], None, tool_reward=0.1)
    with pytest.raises(RewardError, match="distinct names"):
        Rewards.of(["task", "task"], None)


def test_the_default_functions_train_exactly_what_they_did_before(tokenizer):  # noqa: F811
    """task + tool_reward * tool_use, scored, equals the unscored fallback of shaped_reward."""
    cfg = GRPOConfig(tool_reward=0.1)
    group = [make_traj(tokenizer, c, t) for c, t in [(1, 1), (0, 1), (0, 0), (1, 0)]]
    before = [float(s.advantages[0]) for s in grpo_batch([group], cfg).samples]
    Rewards.of(None, None, cfg.tool_reward).score(group, lambda t: ITEM)
    assert [t.training_reward for t in group] == pytest.approx([1.1, 0.1, 0.0, 1.0])
    assert [float(s.advantages[0]) for s in grpo_batch([group], cfg).samples] == before


def test_grpo_advantages_normalize_the_weighted_sum(tokenizer):  # noqa: F811
    """task [1, 0, 0, 1] and a length term [0.5, 1, 0, 0] weighted 1 and 0.4: rewards
    [1.2, 0.4, 0, 1.0], mean 0.65, deviations [0.55, -0.25, -0.65, 0.35], unbiased variance
    0.91 / 3, std 0.5507571, advantages deviation / (std + 1e-4)."""
    group = [make_traj(tokenizer, c, False) for c in (1, 0, 0, 1)]
    length = dict(zip(map(id, group), [0.5, 1.0, 0.0, 0.0]))
    rewards = Rewards.of(["task", lambda t, item: length[id(t)]], [1.0, 0.4])
    rewards.score(group, lambda t: ITEM)
    assert group[0].reward_terms == {"task": 1.0, "<lambda>": 0.5}
    std = math.sqrt(0.91 / 3)
    expected = [d / (std + EPS) for d in (0.55, -0.25, -0.65, 0.35)]
    got = [float(s.advantages[0]) for s in grpo_batch([group], GRPOConfig()).samples]
    assert got == pytest.approx(expected, abs=1e-5)
    m = rewards.metrics(group)
    assert m["rewards/task/mean"] == 0.5 and m["rewards/<lambda>/mean"] == 0.375
    assert m["training_reward"] == pytest.approx(0.65)


def test_axpo_recovery_reward_is_the_best_resamples_training_reward(tokenizer):  # noqa: F811
    """Group [tool wrong (source), tool wrong, no-tool right, no-tool wrong]; the source's two
    resamples score 0.3 and 0.8 under the custom reward (none right). Eq. 3: the source's
    reward becomes 0.8, so its prefix advantage is (0.8 - 0.45) / (std([0.8, 0, 1, 0]) + eps)
    with the group [0.8, 0, 1, 0]: mean 0.45, unbiased variance 0.83 / 3."""
    group = [make_traj(tokenizer, c, t) for c, t in [(0, 1), (0, 1), (1, 0), (0, 0)]]
    resamples = [make_traj(tokenizer, False, True) for _ in range(2)]
    value = dict(zip(map(id, group + resamples), [0, 0, 1, 0, 0.3, 0.8]))
    rewards = Rewards.of([lambda t, item: value[id(t)]], None)
    rewards.score(group + resamples, lambda t: ITEM)
    cfg = AXPOConfig(resamples_per_prefix=2)
    branch = axpo.Branch(group=0, source=0, turn=0, keep=3, score=0.1, resamples=resamples)
    batch = axpo.axpo_batch([group], [branch], cfg)
    source = next(s for s in batch.samples if s.trajectory is group[0])
    expected = (0.8 - 0.45) / (math.sqrt(0.83 / 3) + EPS)
    assert float(source.advantages[0]) == pytest.approx(expected, abs=1e-5)
    rows = {id(s.trajectory): float(s.advantages[0]) for s in batch.samples}
    d = 0.25 / (math.sqrt(2 * 0.25 ** 2) + EPS)  # Eq. 2: the resamples are their own group
    assert [rows[id(t)] for t in resamples] == pytest.approx([-d, d], abs=1e-5)


def test_a_failing_or_non_numeric_reward_function_names_itself_and_the_task(tokenizer):  # noqa: F811
    group = [make_traj(tokenizer, True, False)]
    with pytest.raises(RewardError, match=r"'boom' failed on task 'q': ZeroDivisionError"):
        Rewards.of([_boom], None).score(group, lambda t: ITEM)
    for bad in (float("nan"), "1", None, True):
        with pytest.raises(RewardError, match="finite number"):
            Rewards.of([lambda t, item, v=bad: v], None).score(group, lambda t: ITEM)


def _boom(trajectory, item):
    return 1 / 0


_boom.__name__ = "boom"


def test_the_trainer_scores_rollouts_and_axpo_resamples_and_logs_each_term(tmp_path):
    seen = []

    def counted(trajectory, item):
        seen.append((trajectory.parent is not None, item.task_id, item.answer))
        return 0.5

    base = HFPolicy.from_pretrained(tiny.cached("vl"))
    policy = WrongCallsThenRecoverable(base.model, base.processor)
    cfg = config(AXPOConfig, tmp_path, max_steps=1, max_turns=3, resample_ratio=1.0,
                 resamples_per_prefix=2, reward_weights=[1.0, 0.2])
    (metrics,) = Trainer("axpo", cfg, policy, reward_funcs=["task", counted]).train()
    assert sorted(seen) == [(False, "13", "43757584")] * 4 + [(True, "13", "43757584")] * 4
    assert metrics["rewards/counted/mean"] == 0.5 and metrics["rewards/counted/std"] == 0.0
    assert metrics["rewards/task/mean"] == 0.0  # every rollout of the group is wrong
    assert metrics["training_reward"] == pytest.approx(0.1)
    assert metrics["axpo/resamples"] == 4 and metrics["axpo/recovery_rate"] == 1.0
    logged = json.loads((tmp_path / "progress.json").read_text().splitlines()[0])
    assert logged["rewards/counted/mean"] == 0.5


def test_reward_funcs_from_the_command_line_and_refused_before_the_model_loads(tmp_path):
    """The CLI takes names and import paths with weights; a bad one stops at once, one line."""
    cfg = GRPOConfig(reward_funcs="task", reward_weights="0.5")  # one string, one function
    assert (cfg.reward_funcs, cfg.reward_weights) == (["task"], [0.5])
    with pytest.raises(ValueError, match="reward_weights must be numbers"):
        GRPOConfig(reward_weights=["heavy"])
    bad = config(GRPOConfig, tmp_path, reward_funcs=["task", "no_such_mod_q:f"])
    with pytest.raises(RunError, match="cannot import no_such_mod_q.*--reward-funcs"):
        Trainer("grpo", bad, policy="/nonexistent/model")  # refused before loading it
    out = subprocess.run(
        [sys.executable, "-m", "axpo_cli", "train", "--algo", "grpo", "--model",
         "/nonexistent/model", "--reward-funcs", "task,format", "--reward-weights", "1,2,3",
         "--output-dir", str(tmp_path / "run")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].endswith(
        "reward_weights has 3 value(s) for 2 reward function(s) (task, format) "
        "(--reward-funcs, --reward-weights)")
    assert "Traceback" not in out.stderr


def test_a_config_file_names_reward_functions_and_numeric_weights(tmp_path):
    from axpo_cli.cli import parse

    path = tmp_path / "run.yaml"
    path.write_text("algo: grpo\nreward_funcs: [task, format]\nreward_weights: [1.0, 0.25]\n"
                    "task_ids: [1, 2]\n")
    config = parse(["train", "--config", str(path)])[-1]
    assert (config.reward_funcs, config.reward_weights) == (["task", "format"], [1.0, 0.25])
    assert config.task_ids == ["1", "2"]  # MathVista's ids, written as YAML numbers


def test_the_axpo_command_imports_a_reward_module_from_the_working_folder(tmp_path):
    (tmp_path / "my_rewards.py").write_text("def f(trajectory, item):\n    return 1.0\n")
    axpo = Path(sys.executable).parent / "axpo"
    out = subprocess.run([str(axpo), "train", "--algo", "grpo", "--model", "/nonexistent/model",
                          "--reward-funcs", "my_rewards:f", "--output-dir", "run"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2
    assert "cannot load model '/nonexistent/model'" in out.stderr  # past the rewards: imported
