"""The scale benchmark runs end to end on its small CPU shape and reports every measure."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))

import scale_bench  # noqa: E402


def test_scale_bench_small_shape_reports_throughput_times_and_memory(capsys):
    assert scale_bench.main(["--small", "--cpu", "--tasks", "1", "--group", "2", "--turns",
                             "1", "--tokens", "4", "--resamples", "2", "--micro-batch", "1"]) == 0
    table = capsys.readouterr().out
    for measure in ("generation tokens/s", "update tokens/s", "GRPO step: time",
                    "AXPO step: time", "AXPO branch", "peak memory"):
        assert f"| {measure}" in table or measure in table
    assert "(8 tokens in" in table  # 2 rollouts x 1 turn x 4 forced tokens
