"""What a training run leaves behind: the metrics logger, plots and checkpoints.

Shared by the RL trainer and SFT so both write the same files: stable-baselines3's logger
(stdout, JSONL, CSV, TensorBoard), PNG plots of per-step metrics, `checkpoint-N` folders.
A checkpoint loads strictly or not at all: a damaged latest one falls back to the one before it,
with a warning, unless its reader refuses it (`CheckpointRefused`: a trainer state that is
hostile or damaged stops the resume), and `.tmp-*` folders of saves that were killed are removed
at the next start.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from stable_baselines3.common.logger import KVWriter
from tqdm.auto import tqdm

CHECKPOINT_PREFIX = "checkpoint-"
RL_PLOT_KEYS = ("reward", "accuracy", "tool_use_rate", "all_wrong_tool_subgroup_share",
                "all_wrong_no_tool_subgroup_share", "axpo/recovery_rate")
_TMP_PREFIX = ".tmp-"
T = TypeVar("T")


class CheckpointError(RuntimeError):
    """A checkpoint folder that cannot be loaded as it was saved (missing, truncated or
    mismatched files); the message names the folder and the file."""


class CheckpointRefused(CheckpointError):
    """A checkpoint that must stop the resume rather than be skipped for an older one (see
    `algorithms.checkpoint_state`); the message is one line naming the file."""


def write_checkpoint(accelerator: Any, output_dir: Path, step: int,
                     write: Callable[[Path], None], keep: int | None = None) -> Path:
    """`checkpoint-<step>` under `output_dir`, filled by `write(folder)` in a temp dir that is
    renamed into place, so an interrupted save never leaves a half checkpoint; then only the
    newest `keep` checkpoints stay (None: all). Only the main process writes; every process
    waits for the others first."""
    accelerator.wait_for_everyone()
    final = Path(output_dir) / f"{CHECKPOINT_PREFIX}{step}"
    if not accelerator.is_main_process:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp(final.parent)
    tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=final.parent))
    write(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in checkpoints(final.parent)[keep:] if keep else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def remove_stale_temp(output_dir: Path) -> None:
    """Remove `.tmp-*` folders: saves killed mid-write (only the main process of one run writes
    into an output dir, so any such folder at a start or before a save is dead)."""
    for tmp in Path(output_dir).glob(f"{_TMP_PREFIX}*"):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)


def checkpoints(output_dir: Path) -> list[Path]:
    """The `checkpoint-N` folders with a trainer.json, newest first."""
    found = [p for p in Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*")
             if p.name[len(CHECKPOINT_PREFIX):].isdigit() and (p / "trainer.json").exists()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]), reverse=True)


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = checkpoints(output_dir)
    return found[0] if found else None


def read_latest(output_dir: Path, read: Callable[[Path], T]) -> tuple[Path, T] | None:
    """`read(folder)` of the newest checkpoint it succeeds on, newest first, with a warning per
    damaged one skipped; None when there is none. `read` must only read (nothing is changed
    until a whole checkpoint has been read). Checkpoints that all fail are an error, and so is
    one that `read` refuses (`CheckpointRefused`): it is raised as it is, nothing skipped."""
    remove_stale_temp(output_dir)
    failures = []
    for path in checkpoints(output_dir):
        try:
            return path, read(path)
        except CheckpointRefused:
            raise
        except Exception as e:  # a damaged checkpoint, whatever the file format raises
            failures.append(f"{path.name}: {type(e).__name__}: {str(e)[:300]}")
            warnings.warn(f"cannot load {path} ({failures[-1]}); trying the checkpoint before "
                          "it", RuntimeWarning, stacklevel=2)
    if failures:
        raise CheckpointError(f"no checkpoint in {output_dir} can be loaded ({'; '.join(failures)})"
                              ". Remove the damaged ones or start over with resume off.")
    return None


def read_one(path: Path, read: Callable[[Path], T]) -> tuple[Path, T]:
    """`read(path)` of the one checkpoint asked for; a damaged one is a `CheckpointError`."""
    try:
        return path, read(path)
    except CheckpointRefused:
        raise
    except Exception as e:
        raise CheckpointError(f"cannot load {path} ({type(e).__name__}: {str(e)[:300]})"
                              ) from None


def read_weights(folder: Path, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights saved in `folder`, checked against `model`: every parameter and buffer must
    be there (a tied copy of a saved one may be left out, as `save_pretrained` does) with its
    shape, and nothing else. A missing or truncated file raises instead of leaving the model
    at its base weights."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder} has no *.safetensors weights file")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(f))
    expected = model.state_dict()
    by_storage: dict[tuple[int, tuple], list[str]] = {}
    for key, value in expected.items():
        by_storage.setdefault((value.data_ptr(), tuple(value.shape)), []).append(key)
    missing = [k for k in expected if k not in state and not any(
        t in state for t in by_storage[(expected[k].data_ptr(), tuple(expected[k].shape))])]
    unexpected = [k for k in state if k not in expected]
    shapes = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointError(f"{folder} does not match the model: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}, other shapes {shapes[:5]}")
    return state


def plot_history(history: Sequence[dict[str, float]], path: Path, keys: Sequence[str],
                 title: str) -> None:
    """One panel per metric key against step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    for ax, key in zip(axes[0], keys):  # a key some steps lack (eval/...) plots where it is
        points = [(h["step"], h[key]) for h in history if key in h]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
        ax.set_title(key)
        ax.set_xlabel("step")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def make_logger(output_dir: Path, report_to: Sequence[str], main: bool,
                resumed_step: int = 0) -> Any:
    """stable-baselines3's logger on `output_dir`. A resumed run keeps the rows of
    progress.json/.csv up to `resumed_step` (the logger would truncate them) and drops later
    ones, which the steps it runs again will write."""
    from stable_baselines3.common.logger import CSVOutputFormat, JSONOutputFormat, configure

    formats = {"jsonl": "json", "json": "json", "csv": "csv", "tensorboard": "tensorboard"}
    chosen = [formats[f] for f in report_to if f in formats] if main else []
    kept = {name: _rows_until(output_dir / name, resumed_step)
            for name in ("progress.json", "progress.csv")} if resumed_step else {}
    logger = configure(str(output_dir), chosen)
    if main and "stdout" in report_to:
        logger.output_formats.append(_OneLine())
    for fmt in logger.output_formats:
        if isinstance(fmt, JSONOutputFormat) and kept.get("progress.json"):
            fmt.file.writelines(kept["progress.json"])
        elif isinstance(fmt, CSVOutputFormat) and kept.get("progress.csv"):
            header, *rows = kept["progress.csv"]
            fmt.file.writelines([header, *rows])
            fmt.keys = next(csv.reader([header]))
        else:
            continue
        fmt.file.flush()
    return logger


STDOUT_KEYS = {"reward": "reward", "accuracy": "acc", "tool_use_rate": "tool_use",
               "all_wrong_tool_subgroup_share": "all_wrong_tool", "axpo/resamples": "resamples",
               "axpo/recovery_rate": "recovered", "loss": "loss", "step_time": "s",
               "eval/accuracy": "eval_acc"}


class _OneLine(KVWriter):
    """The `stdout` reporter: one line a step with the numbers one watches (the files and
    TensorBoard keep them all), instead of stable-baselines3's table of every metric."""

    def write(self, key_values: dict[str, Any], key_excluded: Any, step: int = 0) -> None:
        shown = [f"{short} {float(key_values[k]):.4g}" for k, short in STDOUT_KEYS.items()
                 if k in key_values]
        tqdm.write(f"step {step} | " + " | ".join(shown))

    def close(self) -> None:
        pass


def _rows_until(path: Path, step: int) -> list[str]:
    """The lines of a progress file (JSON lines, or CSV with its header first) whose `step` is
    at most `step`; [] when there is no such file."""
    try:
        lines = path.read_text().splitlines(keepends=True)
    except (OSError, UnicodeDecodeError):
        return []
    if path.suffix == ".json":
        def step_of(line: str) -> float:
            try:
                return float(json.loads(line).get("step", math.inf))
            except (ValueError, AttributeError, TypeError):
                return math.inf
        return [line for line in lines if step_of(line) <= step]
    if not lines:
        return []
    header = next(csv.reader([lines[0]]))
    if "step" not in header:
        return []
    column = header.index("step")

    def csv_step(line: str) -> float:
        try:
            return float(next(csv.reader([line]))[column])
        except (ValueError, IndexError, StopIteration):
            return math.inf
    return [lines[0], *(line for line in lines[1:] if csv_step(line) <= step)]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
