"""Decoding cost of the tiny RL step: transformers' `generate` (before) against `agents.decode`'s
loop (after), side by side in one run.

    python benchmarks/decode_bench.py --checkpoint runs/tiny/seed0/sft/checkpoint-300
    python benchmarks/decode_bench.py --quick     # smoke test on an untrained tiny VL

The setting is examples/train_tiny.py's: the tiny Qwen3-VL on AXPO-ZoomBoxes-v0, 4 questions x 8
rollouts, up to 3 turns of up to 64 new tokens, one torch thread, RL training the output head.
Three measures, each taken with `HFPolicy.decoding = "generate"` and `"loop"` in turn (the
order alternates every repeat, so load from other jobs hits both alike); medians over repeats:

1. a step's first turn, 32 rows (4 prompts x 8, each group's rows sharing their prompt as the
   rollout shares it): ms per decode step (the call's time, prefill included, over the steps
   its longest row ran; both paths sample the same ids, so the same steps) and s a call;
2. a rollout batch (32 episodes, every turn): s;
3. a GRPO step (rollouts, rewards, update) of `Trainer('grpo')`: s, one trainer per path from
   the same checkpoint and seed, so both sample the same rollouts.

Without `--checkpoint` it uses `agents.tiny.cached("vl")`, an untrained model whose turns run
their 64 tokens and three turns (the worst case for the loop's dropping of finished rows).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import torch

import axpo_env  # noqa: F401  (registers the envs)
from agents import tiny
from agents.hf import HFPolicy
from agents.policy import SamplingParams
from agents.rollout import rollout
from algorithms.config import GRPOConfig
from algorithms.trainer import Trainer

ENV = "AXPO-ZoomBoxes-v0"
PATHS = ("generate", "loop")


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None,
                        help="a tiny VL SFT checkpoint (examples/train_tiny.py writes one)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--grpo-steps", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.grpo_steps = 1, 1
    torch.set_num_threads(args.threads)
    checkpoint = Path(args.checkpoint) if args.checkpoint else tiny.cached("vl")
    policy = HFPolicy.from_pretrained(checkpoint, render_tools=False)
    env = gym.make(ENV, max_turns=3)
    prompts = []
    for i in range(4):  # a step's first turn: 4 prompts, each the whole group's (8 rows)
        obs, _ = env.reset(seed=i, options={"index": i})
        prompts += [policy.prompt(obs)] * 8
    env.close()

    times: dict[str, dict[str, list[float]]] = {p: {} for p in PATHS}
    detail: dict[str, str] = {}

    def record(path: str, key: str, seconds: float) -> None:
        times[path].setdefault(key, []).append(seconds)

    # 1 and 2: one turn of 32 rows; a rollout batch
    for r in range(args.repeats):
        for path in PATHS if r % 2 == 0 else PATHS[::-1]:
            policy.decoding = path
            sampling = SamplingParams(max_new_tokens=args.tokens, seed=r)
            seconds, out = timed(policy.sample, prompts, sampling=sampling)
            steps = max(len(c[0].token_ids) for c in out)
            record(path, "turn", seconds)
            record(path, "step_ms", seconds / steps * 1e3)
            detail.setdefault(f"turn{r}", f"{steps} steps, "
                              f"{sum(len(c[0].token_ids) for c in out)} tokens")
            seconds, trajs = timed(
                rollout, ENV, policy, list(range(4)), group_size=8, seed=r,
                sampling=SamplingParams(max_new_tokens=args.tokens, seed=r),
                env_kwargs={"max_turns": 3}, batch_size=32, progress=False)
            record(path, "rollout", seconds)
            detail.setdefault(f"rollout{r}", (
                sum(len(t.turns) for t in trajs),
                sum(len(turn.completion.token_ids) for t in trajs for turn in t.turns)))

    # 3: GRPO steps, one trainer per path, stepping in turn
    with tempfile.TemporaryDirectory(prefix="axpo-decode-bench-") as root:
        trainers = {}
        for path in PATHS:
            p = HFPolicy.from_pretrained(checkpoint, render_tools=False)
            p.decoding = path
            config = GRPOConfig(
                model=str(checkpoint), env_id=ENV, max_steps=10**6, tasks_per_step=4,
                num_generations=8, max_completion_length=args.tokens, max_turns=3,
                learning_rate=1e-3, temperature=1.0, seed=0, save_steps=10**6,
                report_to="none", epsilon_high=0.4, beta=0.0, trainable_parameters="^lm_head",
                output_dir=str(Path(root) / path))
            trainers[path] = Trainer("grpo", config, p)
        for s in range(args.grpo_steps + 1):  # the first step of each is a warm-up
            for path in PATHS if s % 2 == 0 else PATHS[::-1]:
                t = trainers[path]
                seconds, metrics = timed(t.training_step)
                if s:
                    record(path, "grpo", seconds)
                    record(path, "grpo_rollout", metrics["rollout_time"])
        for t in trainers.values():
            t.envs.close()

    def med(path: str, key: str) -> float:
        return statistics.median(times[path][key])

    turns, tokens = zip(*(v for k, v in detail.items() if k.startswith("rollout")))
    rows = [
        ("first turn, 4 x 8 rows: ms per decode step", "step_ms", 1, "{:.1f}",
         detail["turn0"] + " (repeat 0)"),
        ("first turn, 4 x 8 rows: s a call", "turn", 1, "{:.2f}", ""),
        ("rollout batch, 4 x 8 episodes: s", "rollout", 1, "{:.2f}",
         f"{statistics.median(turns):.0f} turns, {statistics.median(tokens):.0f} tokens"),
        ("GRPO step: s", "grpo", 1, "{:.2f}", "rollouts + rewards + update"),
        ("  of which rollout: s", "grpo_rollout", 1, "{:.2f}", ""),
    ]
    print(f"checkpoint {checkpoint}, {args.threads} thread(s), medians of {args.repeats} "
          f"repeats ({args.grpo_steps} GRPO steps after a warm-up)\n")
    print("| measure | before: generate | after: loop | before / after | detail |")
    print("|---|---|---|---|---|")
    for label, key, _, fmt, note in rows:
        before, after = med("generate", key), med("loop", key)
        print(f"| {label} | {fmt.format(before)} | {fmt.format(after)} | "
              f"{before / after:.2f}x | {note} |")
    print("\nall samples (s or ms):")
    for path in PATHS:
        print(path, {k: [round(x, 3) for x in v] for k, v in times[path].items()})


if __name__ == "__main__":
    main()
