"""The trainer's state beside the weights in a checkpoint (optimizer, scheduler, every RNG), in a
`trainer_state.pt` that loads without running any code.

It holds only tensors, dicts, lists, tuples, strings and numbers (numpy's RNG keys as a list of
ints), and it is read with `torch.load(weights_only=True)`, whose unpickler builds nothing else:
a file that asks for anything more (a payload, or the numpy array an axpo before issue 24
pickled) is refused before any of it is built. A trainer state that cannot be read whole is
refused too, never skipped in favour of an older checkpoint: saves are atomic, so a damaged or
foreign file means something else changed the folder, and the user should look at it first.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from algorithms.outputs import CheckpointRefused

FILE = "trainer_state.pt"
KEYS = {"optimizer", "scheduler", "torch_rng", "python_rng", "numpy_rng", "trainer_rng"}


def save_trainer_state(folder: Path, optimizer: Any, scheduler: Any,
                       rng: np.random.Generator) -> None:
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
                "numpy_rng": (name, keys.tolist(), pos, has_gauss, cached_gaussian),
                "trainer_rng": rng.bit_generator.state}, Path(folder) / FILE)


def read_trainer_state(folder: Path, optimizer: Any) -> dict[str, Any]:
    """The state saved in `folder`, checked against `optimizer` and ready for
    `apply_trainer_state`; `CheckpointRefused` (one line, naming the file) when it cannot be
    read safely and whole."""
    path = Path(folder) / FILE
    todo = (f"Not resuming from an older checkpoint instead: look at {folder}, then remove it to "
            "resume from the one before, or start over with resume off.")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        unsafe = _globals(path, e)
        if unsafe and all(g.startswith("numpy") for g in unsafe):
            why = (": refused: an older axpo (before issue 24) pickled numpy's RNG state in it, "
                   "which cannot be read without running pickle. Start a new run from its "
                   f"weights with --model {folder} (its optimizer and RNG state are lost).")
        elif unsafe:
            why = (f": refused: it asks to run {', '.join(unsafe)}, which no trainer state "
                   f"holds; nothing was run. {todo}")
        else:
            why = f" cannot be read ({_line(e)}). {todo}"
        raise CheckpointRefused(f"{path}{why}") from None
    try:
        return _checked(saved, optimizer)
    except Exception as e:
        raise CheckpointRefused(f"{path} is not a trainer state axpo wrote ({_line(e)}). "
                                f"{todo}") from None


def apply_trainer_state(saved: dict[str, Any], optimizer: Any, scheduler: Any,
                        rng: np.random.Generator) -> None:
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["torch_rng"])
    random.setstate(saved["python_rng"])
    np.random.set_state(saved["numpy_rng"])
    rng.bit_generator.state = saved["trainer_rng"]


def _checked(saved: Any, optimizer: Any) -> dict[str, Any]:
    """`saved` with numpy's keys back as an array, after trying every part on a throwaway, so
    that applying it cannot fail halfway."""
    if not isinstance(saved, dict) or saved.keys() != KEYS:
        raise ValueError(f"its keys are not {sorted(KEYS)}")
    groups = saved["optimizer"]["param_groups"]
    if [len(g["params"]) for g in groups] != [len(g["params"]) for g in optimizer.param_groups]:
        raise ValueError("its optimizer has other parameter groups than the model's")
    if not isinstance(saved["optimizer"]["state"], dict) or not isinstance(saved["scheduler"],
                                                                           dict):
        raise TypeError("its optimizer or scheduler state is not a dict")
    name, keys, *rest = saved["numpy_rng"]
    numpy_rng = (name, np.asarray(keys, dtype=np.uint32), *rest)
    np.random.RandomState().set_state(numpy_rng)
    random.Random().setstate(saved["python_rng"])
    np.random.default_rng().bit_generator.state = saved["trainer_rng"]
    torch.Generator().set_state(saved["torch_rng"])
    return {**saved, "numpy_rng": numpy_rng}


def _globals(path: Path, error: Exception) -> list[str]:
    """The imports the file asks for that the safe loader refused (none: it is merely damaged)."""
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a zip checkpoint: the loader's message names the first one
        return re.findall(r"GLOBAL ([\w.]+)", str(error))[:1]


def _line(error: Exception) -> str:
    """The error in one short line (of the safe loader's long message, what it did not take)."""
    found = re.search(r"[Uu]nsupported [^\n]*", str(error))
    text = found[0] if found else " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:160]}" if text else type(error).__name__
