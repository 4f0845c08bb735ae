"""`agents.load_policy`: the one way a model spec becomes a policy (train, sft and eval)."""

from __future__ import annotations

import pytest

from agents import load_policy
from agents.hf import HFPolicy
from agents.loading import is_server, is_tiny
from axpo_env.errors import ModelLoadError


def test_empty_and_tiny_both_name_the_embedded_tiny_model(tmp_path, monkeypatch):
    assert is_tiny("") and is_tiny("tiny")
    assert not is_tiny("Qwen/Qwen3-VL-2B-Instruct") and not is_tiny("./tiny-model")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").mkdir()
    assert not is_tiny("tiny")  # a local folder named tiny wins over the name


def test_tiny_loads_an_hf_policy_and_a_url_is_a_server():
    assert isinstance(load_policy("tiny"), HFPolicy)
    assert is_server("http://127.0.0.1:8000/v1") and not is_server("runs/sft/checkpoint-5")


def test_training_refuses_a_server_and_a_missing_model_says_what_to_check(tmp_path):
    with pytest.raises(ModelLoadError, match="training needs a local checkpoint"):
        load_policy("http://127.0.0.1:9/v1", token_level=True)
    with pytest.raises(ModelLoadError, match="neither a checkpoint folder"):
        load_policy(str(tmp_path / "no-such-model"))
