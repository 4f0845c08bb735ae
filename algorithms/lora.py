"""LoRA training through `peft` (TRL's `use_peft` / `peft_config`): the trainer updates low-rank
adapters on a frozen base, so a 2B-8B policy's optimizer state is megabytes, not gigabytes.

A LoRA run's checkpoints hold the adapter (`adapter_config.json`, `adapter_model.safetensors`,
as `PeftModel.save_pretrained` writes them) beside the processor and trainer state;
`agents.load_policy` loads such a folder as its base model with the adapter merged, so `axpo
eval`, `axpo view` and a further `axpo train --model` take it like any checkpoint. The KL
reference is the base itself, the adapter switched off (TRL's way): no second copy of the model.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from algorithms.config import GRPOConfig
from algorithms.outputs import CheckpointError


def lora_config(config: GRPOConfig) -> Any:
    """The `peft.LoraConfig` the run's fields describe."""
    from peft import LoraConfig

    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout,
                      target_modules=config.lora_target_modules or "all-linear")


def wrap(model: Any, peft_config: Any) -> Any:
    """`model` with fresh adapters: only they train."""
    from peft import get_peft_model

    return get_peft_model(model, peft_config)


def record_base(folder: Path, base_model: str) -> None:
    """Make the adapter saved in `folder` name `base_model` as its base, the spec `load_policy`
    loads it by (peft records the loaded model's path: for the tiny model, a temporary
    folder)."""
    path = folder / "adapter_config.json"
    saved = json.loads(path.read_text())
    saved["base_model_name_or_path"] = base_model
    path.write_text(json.dumps(saved, indent=2))


def is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


@contextlib.contextmanager
def base_only(model: Any) -> Iterator[None]:
    """The base model's outputs: the adapters off for the duration (the KL reference)."""
    with model.disable_adapter():
        yield


def read_adapter(folder: Path, model: Any) -> dict[str, torch.Tensor]:
    """The adapter weights saved in `folder`, checked against `model`'s adapters: every one
    there with its shape, nothing else."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file

    file = folder / "adapter_model.safetensors"
    if not file.is_file():
        raise CheckpointError(f"{folder} has no adapter_model.safetensors (a LoRA run's "
                              "checkpoint); was it written by a run without use_peft?")
    state = load_file(file)
    expected = get_peft_model_state_dict(model)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointError(f"{folder}'s adapter does not match the run's: missing "
                              f"{missing[:3]}, unexpected {unexpected[:3]}, other shapes "
                              f"{shapes[:3]} (lora_r / lora_target_modules differ?)")
    return state


def apply_adapter(model: Any, state: dict[str, torch.Tensor]) -> None:
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(model, state)
