"""Eval throughput: `axpo eval` of the tiny model over the benchmark fixtures, one episode at a
time versus batched, in one run.

    python benchmarks/eval_bench.py             # prints a markdown table; --quick to smoke-test

Both rows run the same episodes (every registered env's fixture, `--limit` items, `--samples`
each) through `evaluation.evaluate.run_eval`, as `axpo eval --model tiny` does: env resets, tool
calls, prompts rendered with the tool schemas, generation and the JSONL writes all count. The tiny
model rarely answers, so most episodes run to `--max-turns`: the numbers are an upper bound on
per-episode cost, not a measure of accuracy.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from evaluation.evaluate import EvalConfig, make_policy, resolve_envs, run_eval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 envs, 2 items: a smoke test")
    parser.add_argument("--envs", default="all", help="comma-separated env ids, or all")
    parser.add_argument("--limit", type=int, default=8,
                        help="items per env (8 x 2 samples fill a batch of 16)")
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--max-turns", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=32, help="max new tokens per turn")
    parser.add_argument("--batch", type=int, default=EvalConfig.batch_size,
                        help="the batched row's batch size (default: axpo eval's)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    envs = resolve_envs(args.envs.split(","))
    if args.quick:
        envs, args.limit = envs[:2], 2
    base = dict(model="tiny", envs=envs, samples=args.samples, limit=args.limit,
                max_turns=args.max_turns, max_completion_length=args.tokens, resume=False)
    policy = make_policy(EvalConfig(**base))

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        warm = {**base, "limit": 1, "samples": 1, "max_turns": 1, "max_completion_length": 1}
        run_eval(EvalConfig(**warm, output_dir=str(Path(tmp) / "warm")), policy, progress=False)
        for batch in (1, args.batch):
            config = EvalConfig(**base, batch_size=batch, output_dir=str(Path(tmp) / str(batch)))
            t0 = time.perf_counter()
            report = run_eval(config, policy, progress=False)
            seconds = time.perf_counter() - t0
            episodes = report.average["episodes"]
            turns = sum(m["mean_turns"] * m["episodes"] for m in report.benchmarks.values())
            rows.append((batch, episodes, turns, seconds))
    print(f"{len(envs)} envs x {args.limit} items x {args.samples} samples; max {args.max_turns}"
          f" turns of {args.tokens} tokens; torch threads {torch.get_num_threads()}\n")
    print("| batch size | episodes | turns | wall time | episodes/s | turns/s |\n"
          "|---:|---:|---:|---:|---:|---:|")
    for batch, episodes, turns, seconds in rows:
        print(f"| {batch} | {episodes} | {turns:.0f} | {seconds:.1f} s | "
              f"{episodes / seconds:.2f} | {turns / seconds:.1f} |")
    (_, e1, _, s1), (_, eb, _, sb) = rows
    print(f"| ratio batched / one at a time | | | | {(eb / sb) / (e1 / s1):.1f}x | |")


if __name__ == "__main__":
    main()
