"""Held-out evaluation during training: when it runs, what it logs, that it repeats the same
episodes, and that a bad held-out set is refused before the model loads."""

from __future__ import annotations

import json

import pytest

from algorithms.config import GRPOConfig
from algorithms.preflight import RunError
from algorithms.trainer import Trainer
from tests.test_trainer import config, make_policy


def test_evaluates_every_eval_steps_and_at_the_end_on_the_same_episodes(tmp_path, capsys):
    cfg = config(GRPOConfig, tmp_path, max_steps=3, eval_steps=2, eval_task_ids=["13", "12"],
                 eval_num_generations=3)
    history = Trainer("grpo", cfg, make_policy()).train()
    assert ["eval/accuracy" in h for h in history] == [False, True, True]  # steps 2 and 3 (end)
    first, last = history[1], history[2]
    # the coin-flip policy ignores its weights: same episodes, same seeds -> same results
    assert {k: v for k, v in first.items() if k.startswith("eval/")} == \
        {k: v for k, v in last.items() if k.startswith("eval/")}
    # 3 rollouts each of 13 (right when the coin says so) and 12 (never right)
    assert 0 < first["eval/accuracy"] <= 0.5 and "eval/pass@3" in first
    assert first["eval/tool_use_rate"] == 0.0
    logged = [json.loads(line) for line in (tmp_path / "progress.json").read_text().splitlines()]
    assert [("eval/accuracy" in row, row["step"]) for row in logged] == \
        [(False, 1), (True, 2), (True, 3)]
    assert "1 of the 2 held-out tasks are also trained on" in capsys.readouterr().err


@pytest.mark.parametrize("change, message", [
    ({"eval_task_ids": ["nope"]}, r"held-out evaluation: task id\(s\) \['nope'\] .*"
                                  r"\(--eval-task-ids\)"),
    ({"eval_split": "train"}, "held-out evaluation: cannot make .* split='train'"),
])
def test_a_bad_held_out_set_is_refused_before_the_model_loads(tmp_path, change, message):
    with pytest.raises(RunError, match=message):
        Trainer("grpo", config(GRPOConfig, tmp_path, eval_steps=1, **change), "no/such/model")


def test_held_out_tasks_without_eval_steps_is_a_config_error():
    with pytest.raises(ValueError, match="set eval_steps"):
        GRPOConfig(eval_task_ids=["1"])
    with pytest.raises(ValueError, match="eval_steps must be None"):
        GRPOConfig(eval_steps=0)
