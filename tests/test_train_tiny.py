"""The embedded default runs end to end (a few steps of each stage) and reports what it says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_train_tiny_runs_every_stage_and_writes_table_and_plot(tmp_path):
    cmd = [sys.executable, str(ROOT / "examples" / "train_tiny.py"), "--out", str(tmp_path),
           "--sft-steps", "2", "--demos", "4", "--steps", "1", "--eval-tasks", "2",
           "--runs", "grpo,arpo"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "| step | grpo accuracy" in text and "arpo all_wrong_tool_subgroup_share" in text
    assert "| after grpo |" in text and "| after arpo |" in text
    assert "held-out test (2 tasks x 4)" in text
    assert (tmp_path / "comparison.png").stat().st_size > 0
    assert (tmp_path / "arpo" / "progress.csv").is_file()
    assert (tmp_path / "sft" / "checkpoint-2").is_dir()
