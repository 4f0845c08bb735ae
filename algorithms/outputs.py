"""What a training run leaves behind: the metrics logger, plots and checkpoint discovery.

Shared by the RL trainer and SFT so both write the same files: stable-baselines3's logger
(stdout, JSONL, CSV, TensorBoard), PNG plots of per-step metrics, `checkpoint-N` folders.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_PREFIX = "checkpoint-"
RL_PLOT_KEYS = ("reward", "accuracy", "tool_use_rate", "all_wrong_tool_subgroup_share",
                "all_wrong_no_tool_subgroup_share", "axpo/recovery_rate")


def write_checkpoint(accelerator: Any, output_dir: Path, step: int,
                     write: Callable[[Path], None]) -> Path:
    """`checkpoint-<step>` under `output_dir`, filled by `write(folder)` in a temp dir that is
    renamed into place, so an interrupted save never leaves a half checkpoint. Only the main
    process writes; every process waits for the others first."""
    accelerator.wait_for_everyone()
    final = Path(output_dir) / f"{CHECKPOINT_PREFIX}{step}"
    if not accelerator.is_main_process:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    write(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = [p for p in Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*")
             if p.name[len(CHECKPOINT_PREFIX):].isdigit() and (p / "trainer.json").exists()]
    return max(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]), default=None)


def plot_history(history: Sequence[dict[str, float]], path: Path, keys: Sequence[str],
                 title: str) -> None:
    """One panel per metric key against step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    steps = [h["step"] for h in history]
    for ax, key in zip(axes[0], keys):
        ax.plot(steps, [h.get(key, 0.0) for h in history], marker="o")
        ax.set_title(key)
        ax.set_xlabel("step")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def make_logger(output_dir: Path, report_to: Sequence[str], main: bool) -> Any:
    from stable_baselines3.common.logger import configure

    formats = {"jsonl": "json", "json": "json", "csv": "csv", "tensorboard": "tensorboard",
               "stdout": "stdout"}
    chosen = [formats[f] for f in report_to if f in formats] if main else []
    return configure(str(output_dir), chosen)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
