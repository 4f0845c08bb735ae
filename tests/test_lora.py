"""LoRA through peft: only the adapters train, the checkpoint holds them and loads merged, resume
is exact, the KL reference is the base, and what cannot combine is refused before loading."""

from __future__ import annotations

import json

import pytest
import torch

from agents.loading import load_policy
from agents.tokens import TokenPrompt
from algorithms.config import GRPOConfig
from algorithms.preflight import RunError
from algorithms.trainer import Trainer
from tests.test_trainer import config, make_policy


def lora(tmp_path, **kw):
    return config(GRPOConfig, tmp_path, use_peft=True, lora_r=4, lora_alpha=8,
                  lora_dropout=0.0, save_steps=1, **kw)


def adapters(trainer):
    return {k: v.detach().clone() for k, v in trainer.policy.model.named_parameters()
            if "lora_" in k}


def test_only_the_adapters_train_and_the_checkpoint_loads_merged(tmp_path):
    policy = make_policy()
    base = {k: v.detach().clone() for k, v in policy.model.state_dict().items()}
    trainer = Trainer("grpo", lora(tmp_path), policy)
    history = trainer.train()
    assert all(h["grad_norm"] > 0 for h in history)
    model = trainer.policy.model
    frozen = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
              for k, v in model.state_dict().items() if "lora_" not in k}
    assert frozen.keys() == base.keys()
    assert all(torch.equal(frozen[k], base[k]) for k in base)  # the base never moved
    assert any(v.abs().sum() > 0 for k, v in adapters(trainer).items() if "lora_B" in k)

    folder = tmp_path / "checkpoint-2"
    assert (folder / "adapter_model.safetensors").is_file()
    assert not list(folder.glob("model*.safetensors"))  # megabytes, not the whole model
    recorded = json.loads((folder / "adapter_config.json").read_text())
    assert recorded["base_model_name_or_path"] == policy.model.name_or_path
    merged = load_policy(folder)
    prompt = TokenPrompt(merged.tokenizer("<answer>7</answer> and more",
                                          add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        want = trainer.policy.forward_logits([prompt], model)[0]
        got = merged.forward_logits([prompt], merged.model)[0]
    assert torch.allclose(want, got, atol=1e-5)
    fresh = make_policy()
    with torch.no_grad():
        before = fresh.forward_logits([prompt], fresh.model)[0]
    assert not torch.allclose(got, before, atol=1e-4)  # the merged adapter changed the model


def test_resume_of_a_lora_run_continues_exactly(tmp_path):
    straight = Trainer("grpo", lora(tmp_path / "s"), make_policy())
    straight.train()
    Trainer("grpo", lora(tmp_path / "r", max_steps=1), make_policy()).train()
    resumed = Trainer("grpo", lora(tmp_path / "r", resume=True), make_policy())
    assert resumed.step == 1
    resumed.train()
    a, b = adapters(straight), adapters(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(RunError, match="use_peft=True"):  # a LoRA run is not resumed in full
        Trainer("grpo", config(GRPOConfig, tmp_path / "r", resume=True, max_steps=3),
                "no/such/model")


def test_the_kl_reference_is_the_base_with_the_adapters_off(tmp_path):
    """At the first update the adapters are zero (lora_B starts at 0), so the policy is the
    base and the KL to it is 0; after one update it is not."""
    history = Trainer("grpo", lora(tmp_path, beta=0.5, learning_rate=5e-2), make_policy()).train()
    assert history[0]["kl"] == pytest.approx(0.0, abs=1e-7)
    assert history[1]["kl"] > 1e-6


@pytest.mark.parametrize("change, message", [
    ({"trainable_parameters": "lm_head"}, "leave trainable_parameters unset"),
    ({"use_vllm": True}, "not supported yet"),
    ({"lora_r": 0}, "lora_r >= 1"),
])
def test_what_lora_cannot_combine_with_is_a_config_error(change, message):
    with pytest.raises(ValueError, match=message):
        GRPOConfig(use_peft=True, **change)


def test_a_run_of_the_embedded_model_records_tiny_as_its_base(tmp_path):
    """Not the temporary folder the tiny model was built in: another process loads it."""
    Trainer("grpo", lora(tmp_path, max_steps=1), "tiny").train()
    recorded = json.loads((tmp_path / "checkpoint-1" / "adapter_config.json").read_text())
    assert recorded["base_model_name_or_path"] == "tiny"
