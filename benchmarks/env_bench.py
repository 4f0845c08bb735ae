"""Env throughput: steps/s per tool, snapshot+restore versus deepcopy, warm versus fresh Python,
diverged Python restores from a fork versus replayed.

    python benchmarks/env_bench.py            # prints a markdown table; --quick for a smoke run

Every ratio is measured in this one run, side by side, on the bundled MathVista fixture.
"""

from __future__ import annotations

import argparse
import copy
import pickle
import statistics
import time
from collections.abc import Callable

import gymnasium as gym

import axpo_env  # noqa: F401
from axpo_env import render_tool_call
from axpo_env.tools.python import PythonTool

ZOOM_ITEM = {"task_id": "11"}  # 1200x900 image with tiny text


def per_second(fn: Callable[[], object], n: int) -> tuple[float, float]:
    """(calls per second, median milliseconds per call) over n calls."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n / sum(times), statistics.median(times) * 1e3


def make_env(tools: list, max_turns: int = 10_000):
    env = gym.make("AXPO-MathVista-v0", tools=tools, max_turns=max_turns).unwrapped
    env.reset(seed=0, options=ZOOM_ITEM)
    return env


def steps_per_second(env, action: str, n: int, turns: int = 8) -> tuple[float, float]:
    """Time n steps of `action` in episodes of `turns` turns. Resets are not timed, and each is
    followed by a 0.2 s pause, untimed too: the policy generating its first turn."""
    times = []
    while len(times) < n:
        env.reset(seed=0, options=ZOOM_ITEM)
        time.sleep(0.2)
        for _ in range(min(turns, n - len(times))):
            t0 = time.perf_counter()
            env.step(action)
            times.append(time.perf_counter() - t0)
    return n / sum(times), statistics.median(times) * 1e3


def bench_tools(n: int) -> list[tuple[str, str, str]]:
    calls = {
        "crop": render_tool_call("crop", {"bbox": [1100, 840, 1160, 875]}),
        "python": render_tool_call("python", {"code": "x = sum(range(1000))\nprint(x)"}),
        "calculator": render_tool_call("calculator", {"expression": "7384 * 5926 + sqrt(2)"}),
        "search": render_tool_call("search", {"query": "area of a triangle"}),
        "malformed call": "<tool_call>{oops</tool_call>",
    }
    rows = []
    for name, action in calls.items():
        env = make_env([name if name != "malformed call" else "calculator"], max_turns=8)
        env.step(action)  # warm-up: start the Python worker, build the BM25 index
        rate, ms = steps_per_second(env, action, n)
        rows.append((f"step: {name}", f"{rate:,.0f} steps/s", f"{ms:.3f} ms"))
        env.close()
    return rows


def bench_snapshot(n: int) -> list[tuple[str, str, str]]:
    # deepcopy needs tools it can copy: the search tool holds a lock, the python tool a process.
    env = make_env(["crop", "calculator"])
    for box in ([1100, 840, 1160, 875], [0, 0, 600, 450], [600, 450, 1200, 900]):
        env.step(render_tool_call("crop", {"bbox": box}))
    rate_snap, ms_snap = per_second(lambda: env.restore(env.snapshot()), n)
    rate_copy, ms_copy = per_second(lambda: copy.deepcopy(env), max(3, n // 100))
    size = len(pickle.dumps(env.snapshot()))
    env.close()
    return [
        ("snapshot()+restore(), 3 crops in", f"{rate_snap:,.0f} /s", f"{ms_snap:.4f} ms"),
        ("copy.deepcopy(env), same env and state", f"{rate_copy:,.0f} /s", f"{ms_copy:.2f} ms"),
        ("  ratio deepcopy / snapshot+restore", f"{ms_copy / ms_snap:,.0f}x", ""),
        ("  pickled snapshot size", f"{size / 1e6:.2f} MB", "(pickling carries the pixels)"),
    ]


def bench_python(n: int) -> list[tuple[str, str, str]]:
    rows = []
    cell = render_tool_call("python", {"code": "print(1 + 1)"})
    for isolation in ("bwrap", "rlimits"):
        try:
            warm_tool, fresh_tool = (PythonTool(isolation=isolation),
                                     PythonTool(isolation=isolation, fresh_worker_per_call=True))
        except axpo_env.AxpoError as e:
            rows.append((f"python ({isolation})", "skipped", str(e)[:60]))
            continue
        ms = {}
        for label, tool, count in (("warm worker", warm_tool, n), ("fresh interpreter", fresh_tool,
                                                                    max(3, n // 10))):
            env = make_env([tool])
            env.step(cell)
            _, ms[label] = per_second(lambda env=env: env.step(cell), count)
            env.close()
        for label, value in ms.items():
            rows.append((f"python call, {label} ({isolation})", f"{1e3 / value:,.1f} calls/s",
                         f"{value:.2f} ms"))
        rows.append((f"  ratio fresh / warm ({isolation})",
                     f"{ms['fresh interpreter'] / ms['warm worker']:.1f}x", ""))
    for isolation in ("bwrap", "rlimits"):
        rows += bench_restore(n, isolation)
    return rows


def _pss_mb(pidfd: int) -> float:
    """Proportional set size of the process behind `pidfd` (its shared pages split)."""
    with open(f"/proc/self/fdinfo/{pidfd}") as f:
        pid = next(int(line.split()[1]) for line in f if line.startswith("Pid:"))
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Pss:")) / 1024


def bench_restore(n: int, isolation: str) -> list[tuple[str, str, str]]:
    """A restore that diverged, timed as restore() + the next call: from the snapshot's paused
    fork, and replayed (snapshot_forks=0: the cells run again in a fresh interpreter, started
    in the background as a spare or forked from the zygote). Untimed between them, standing for
    the policy generating the branch's turn: until a spare is ready, if there is one."""
    rows = []
    cell = render_tool_call("python", {"code": "print(1 + 1)"})
    for forks in (4, 0):
        try:
            env = make_env([PythonTool(isolation=isolation, snapshot_forks=forks)])
        except axpo_env.AxpoError as e:
            return [(f"restore ({isolation})", "skipped", str(e)[:60])]
        tool = env.tools[0]
        for i in range(3):
            env.step(render_tool_call("python", {"code": f"v{i} = {i}"}))
        snap = env.snapshot()
        times, after_snap = [], []
        for _ in range(max(3, n // 10)):
            env.step(render_tool_call("python", {"code": "v0 = -1"}))  # diverge
            t0 = time.perf_counter()
            env.restore(snap)
            t1 = time.perf_counter()
            if tool._box.pending is not None:
                tool._box.pending.exception()  # blocks until the spare has started
            t2 = time.perf_counter()
            env.step(cell)
            times.append(t1 - t0 + time.perf_counter() - t2)
            env.snapshot()  # a turn's snapshot: the next call takes its fork first
            t0 = time.perf_counter()
            env.step(cell)
            after_snap.append(time.perf_counter() - t0)
        how = f"from its fork ({tool.restore_mode})" if forks else "replayed (snapshot_forks=0)"
        ms = statistics.median(times) * 1e3
        rows.append((f"restore diverged session (3 cells) + call, {how}, {isolation}",
                     f"{1e3 / ms:,.1f} /s", f"{ms:.2f} ms"))
        if forks:
            ms = statistics.median(after_snap) * 1e3
            rows.append((f"  python call right after snapshot() (takes a fork), {isolation}",
                         f"{1e3 / ms:,.1f} calls/s", f"{ms:.2f} ms"))
            kept = tool._box.worker.forks.forks.values()
            pss = statistics.median(_pss_mb(f.pidfd) for f in kept)
            rows.append((f"  paused fork memory (PSS, median of {len(kept)}), {isolation}",
                         f"{pss:.1f} MB", ""))
        env.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions (smoke test)")
    parser.add_argument("--python-only", action="store_true", help="only the python tool rows")
    args = parser.parse_args()
    n = 20 if args.quick else 200
    rows = [] if args.python_only else bench_tools(n) + bench_snapshot(n * 10)
    rows += bench_python(n)
    print("| measure | rate | median time |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
