"""Resuming never unpickles (issue 24, finding 2): a hostile, truncated or foreign
`trainer_state.pt` is refused with one clear line and a nonzero exit. It is not skipped
with a warning in favour of an older checkpoint."""

from __future__ import annotations

import os
import pickle
import random
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from agents import tiny
from algorithms.config import GRPOConfig
from algorithms.outputs import CheckpointError
from algorithms.trainer import Trainer
from axpo_cli import cli
from tests.test_trainer import config, make_policy


class Payload:
    """Unpickling this makes the folder `marker`: proof that the file's code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    Trainer("grpo", config(GRPOConfig, out, save_steps=1), make_policy()).train()
    return out


def _copy(run_dir, tmp_path) -> tuple[Path, Path]:
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    return out, out / "checkpoint-2" / "trainer_state.pt"


def _saved(state: Path) -> dict:
    return torch.load(state, weights_only=False)  # the file the fixture's run just wrote


def _hostile(state: Path, marker: Path) -> None:
    saved = _saved(state)
    saved["optimizer"] = Payload(marker)
    torch.save(saved, state)


def _hostile_raw(state: Path, marker: Path) -> None:
    state.write_bytes(pickle.dumps(Payload(marker), protocol=2))  # not even a torch file


def _truncated(state: Path, marker: Path) -> None:
    state.write_bytes(state.read_bytes()[:len(state.read_bytes()) // 2])


def _foreign(state: Path, marker: Path) -> None:
    torch.save({"optimizer": [1, 2], "weights": torch.zeros(3)}, state)


def _old_format(state: Path, marker: Path) -> None:
    """As axpo wrote it before issue 24: numpy's RNG state pickled with its ndarray."""
    saved = _saved(state)
    saved["numpy_rng"] = np.random.RandomState(0).get_state()
    torch.save(saved, state)


@pytest.mark.parametrize("damage, message", [
    (_hostile, "refused: it asks to run .*mkdir.*nothing was run"),
    (_hostile_raw, "refused: it asks to run .*mkdir.*nothing was run"),
    (_truncated, "cannot be read"),
    (_foreign, "not a trainer state"),
    (_old_format, "older axpo.*--model"),
], ids=["hostile pickle", "hostile raw pickle", "truncated", "foreign contents",
        "pre-issue-24 numpy state"])
def test_a_bad_trainer_state_is_refused_not_skipped(run_dir, tmp_path, damage, message):
    out, state = _copy(run_dir, tmp_path)
    marker = tmp_path / "payload-ran"
    damage(state, marker)
    with warnings.catch_warnings(record=True) as seen, \
            pytest.raises(CheckpointError, match=message) as refused:
        warnings.simplefilter("always")
        Trainer("grpo", config(GRPOConfig, out, resume=True), make_policy())
    assert not [w for w in seen if "checkpoint before it" in str(w.message)]  # not skipped
    assert str(state) in str(refused.value) and "\n" not in str(refused.value)
    assert not marker.exists()
    assert (out / "checkpoint-2").is_dir()  # left as found, for the user to look at


def test_the_saved_state_loads_without_pickle_and_restores_every_rng(tmp_path):
    trainer = Trainer("grpo", config(GRPOConfig, tmp_path, max_steps=1), make_policy())
    trainer.train()
    trainer.save_checkpoint()
    torch.load(tmp_path / "checkpoint-1" / "trainer_state.pt", weights_only=True)
    expected = (random.random(), np.random.random(), torch.rand(()), trainer.rng.random())
    for draw in (random.random, np.random.random, lambda: torch.rand(()), trainer.rng.random):
        draw()  # move every generator on, so the resume has to put each one back
    resumed = Trainer("grpo", config(GRPOConfig, tmp_path, resume=True), make_policy())
    assert resumed.step == 1
    assert (random.random(), np.random.random(), torch.rand(()), resumed.rng.random()) == expected


def _cli_resume(out: Path) -> list[str]:
    return ["train", "--algo", "grpo", "--model", str(tiny.cached("vl")), "--resume",
            "--output-dir", str(out), "--max-steps", "1", "--tasks-per-step", "1",
            "--num-generations", "4", "--max-completion-length", "8", "--max-turns", "2",
            "--task-ids", "13", "--tools", "calculator", "--report-to", "jsonl", "--seed", "3"]


def test_axpo_train_resume_exits_nonzero_on_a_hostile_state(run_dir, tmp_path):
    out, state = _copy(run_dir, tmp_path)
    marker = tmp_path / "payload-ran"
    _hostile(state, marker)
    done = subprocess.run([sys.executable, "-m", "axpo_cli", *_cli_resume(out)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TQDM_DISABLE": "1"})
    assert not marker.exists()
    assert done.returncode == 1, done.stderr[-2000:]
    (line,) = [s for s in done.stderr.splitlines() if s.startswith("axpo train:")]
    assert str(state) in line and "refused" in line
    assert "Traceback" not in done.stderr


def test_axpo_train_resume_exits_nonzero_on_a_truncated_state(run_dir, tmp_path, capsys):
    out, state = _copy(run_dir, tmp_path)
    _truncated(state, tmp_path / "unused")
    assert cli.main(_cli_resume(out)) == 1
    err = capsys.readouterr().err
    assert f"axpo train: error: {state}" in err and "cannot be read" in err
