"""The embedded default: SFT a tiny Qwen3-VL on tool-use demonstrations, then GRPO, AXPO and
GRPO at AXPO's rollout budget side by side from the same start and seeds, on CPU.

    python examples/train_tiny.py [--steps 10] [--out runs/tiny]
    python examples/train_tiny.py --seeds 3          # the study over seeds: mean +- SE per row
    python examples/train_tiny.py --runs grpo,axpo,axpo-random,arpo

The task (AXPO-ZoomBoxes-v0) shows four coloured boxes, each filled with a pattern too fine to
see at the resolution the model sees the whole image, and asks for the pattern of one box: a
crop of the named box shows it; a crop of another box shows that box's pattern (right by chance
a quarter of the time). The asked box sits in the top left slot in 0.9 of the tasks; the
scripted demonstrations SFT learns from play a split where it sits anywhere alike. So SFT
teaches the format and the reading of a crop and leaves the crop's place at random; where to
crop is what RL learns, and a crop of the wrong box is the failure AXPO's resampling of the call
(from a fixed thinking prefix) fixes. RL trains the output head alone (RL_TRAINS). The SFT of
each seed, then every run from it, run in worker processes of one torch thread each, side by
side on the cores: the results do not depend on the machine's thread count. Prints a per-step
table (accuracy, tool-use rate, all-wrong shares of the tool-using and no-tool subgroups, AXPO's
recovery rate) and held-out test accuracy before and after each run; writes
runs/tiny/comparison.png. `--runs` adds the paper's ablations and baselines (Table 2 and 3),
each a name in RUNS.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
from tqdm.auto import tqdm

import axpo_env  # noqa: F401
from agents import tiny
from agents.hf import HFPolicy
from agents.policy import SamplingParams
from agents.rollout import rollout
from algorithms.config import AXPOConfig, GRPOConfig, SFTConfig
from algorithms.sft import train_sft
from algorithms.trainer import Trainer
from axpo_env.tasks.zoom_boxes import SIZES, write_expert_demos
from evaluation.metrics import thinking_acting_gap

ENV = "AXPO-ZoomBoxes-v0"
#: New tokens per turn: the crop call is ~50 tokens, the answer ~25.
MAX_NEW_TOKENS = 64
#: What RL trains: the output head alone. Adam moves every trained weight by about the learning
#: rate each step, whatever its gradient; on this 1.6M-parameter model that noise, over all
#: weights, breaks it within 8 steps in a third of the runs (the first update alone can drop a
#: token the SFT model was sure of by 8 nats), while the head alone learns where to crop in every
#: run (README, "The embedded default").
RL_TRAINS = "^lm_head"
#: What `--runs` can name: (algorithm, config overrides), all from the same SFT start and seeds.
#: The AXPO paper's Table 2 ablations and Table 3 recipes, each one switch; "grpo-equal-compute"
#: gives GRPO the 25% extra rollouts AXPO spends (10 instead of 8 per question).
RUNS = {
    "grpo": ("grpo", {}),
    "axpo": ("axpo", {}),
    "grpo-equal-compute": ("grpo", {"num_generations": 10}),
    "grpo-2x": ("grpo", {"num_generations": 16}),
    "grpo-tool-bonus": ("grpo", {"tool_reward": 0.1}),
    "grpo-tool-penalty": ("grpo", {"tool_reward": -0.1}),
    "arpo": ("axpo", {"exploration": "arpo"}),
    "axpo-no-prefix-fix": ("axpo", {"prefix_fix": False}),
    "axpo-no-tool": ("axpo", {"resample_subgroup": "no_tool"}),
    "axpo-random": ("axpo", {"ranking": "random"}),
    "axpo-no-prefix-credit": ("axpo", {"prefix_credit": False}),
    "axpo-joint-group": ("axpo", {"separate_advantage_group": False}),
}


def load(checkpoint: Path) -> HFPolicy:
    """The policy as trained: tools named by the system prompt, not rendered as schemas."""
    return HFPolicy.from_pretrained(checkpoint, render_tools=False)


def demo_texts(path: Path) -> list[str]:
    """Every text of the demonstrations (prompts, turns, tool replies), for the tokenizer."""
    texts = []
    for line in path.read_text().splitlines():
        for message in json.loads(line)["messages"]:
            parts = message["content"]
            parts = [{"type": "text", "text": parts}] if isinstance(parts, str) else parts
            texts += [p["text"] for p in parts if p["type"] == "text"]
    return texts


def sft_start(out: Path, steps: int, demos: int, seed: int = 0) -> Path:
    """The SFT stage: a seeded tiny Qwen3-VL, its tokenizer trained on the demonstrations' text
    too, fine-tuned on `demos` expert episodes for `steps` steps; returns the checkpoint."""
    # rope_theta 1e4 instead of Qwen3-VL's 5e6: with 32-dim heads, 5e6 leaves the tiny model
    # almost no positional resolution, and copying (question -> call, crop -> answer) needs it
    # (ToolArith held-out accuracy after the same SFT: 0.14 with 5e6, 0.69 with 1e4).
    rope = {"rope_type": "default", "rope_theta": 1e4, "mrope_section": [6, 5, 5],
            "mrope_interleaved": True}
    data = write_expert_demos(out / "demos", demos)
    base = tiny.build(out / "base", kind="vl", seed=seed, corpus=demo_texts(data),
                      text_config={"rope_parameters": rope})
    return train_sft(SFTConfig(model=str(base), data_path=str(data), output_dir=str(
        out / "sft"), max_steps=steps, learning_rate=3e-3, warmup_steps=20,
        per_device_train_batch_size=8, logging_steps=50, save_steps=steps, seed=seed,
        report_to=["csv"]))


def evaluate(policy: HFPolicy, tasks: int = 64, seed: int = 1234) -> dict[str, float]:
    """Held-out accuracy and tool use at sampling temperature 1 (the first `tasks` test tasks,
    4 samples each: 256 episodes at 64; the standard error of an accuracy near 0.4 is about
    0.03)."""
    test_ids = [f"test-{i}" for i in range(tasks)]
    trajs = rollout(ENV, policy, test_ids, group_size=4, seed=seed,
                    sampling=SamplingParams(max_new_tokens=MAX_NEW_TOKENS, seed=seed),
                    env_kwargs={"split": "test", "max_turns": 3}, progress=False)
    return thinking_acting_gap(trajs)


#: The per-step diagnostics the table and plot show (AXPO paper, Section 3).
KEYS = ("accuracy", "tool_use_rate", "all_wrong_tool_subgroup_share",
        "all_wrong_no_tool_subgroup_share", "axpo/recovery_rate")


def sft_job(args: argparse.Namespace, seed: int) -> tuple[Path, dict[str, float]]:
    """One seed's SFT start and its held-out result (in a worker process, one thread)."""
    t0 = time.perf_counter()
    sft = sft_start(seed_dir(args, seed), args.sft_steps, args.demos, seed=seed)
    start = evaluate(load(sft), args.eval_tasks)
    print(f"seed {seed}: SFT start ({time.perf_counter() - t0:.0f} s): test accuracy "
          f"{start['accuracy']:.3f}, tool use {start['tool_use_rate']:.3f}", flush=True)
    return sft, start


def rl_job(args: argparse.Namespace, sft: Path, run: str, seed: int) -> tuple[list, dict]:
    """One run from an SFT start: its per-step history and held-out result (in a worker)."""
    t0 = time.perf_counter()
    algo, overrides = RUNS[run]
    common = dict(model=str(sft), env_id=ENV, max_steps=args.steps,
                  tasks_per_step=args.tasks_per_step, num_generations=8,
                  max_completion_length=MAX_NEW_TOKENS, max_turns=3, learning_rate=args.lr,
                  temperature=1.0, seed=seed, save_steps=args.steps, report_to=["jsonl", "csv"],
                  epsilon_high=0.4, beta=0.0,  # the paper's clip for all; no KL: a 2x faster demo
                  trainable_parameters=RL_TRAINS)
    cls = AXPOConfig if algo == "axpo" else GRPOConfig
    config = cls(output_dir=str(seed_dir(args, seed) / run), **{**common, **overrides})
    trainer = Trainer(algo, config, load(sft))
    history = trainer.train()
    result = evaluate(trainer.policy, args.eval_tasks)
    result.update(
        resamples=sum(h.get("axpo/resamples", 0.0) for h in history),
        resamples_correct=sum(h.get("axpo/resamples_correct", 0.0) for h in history),
        trained_rollouts=sum(h.get("trained_rollouts", 0.0) for h in history))
    print(f"seed {seed}: {run} ({time.perf_counter() - t0:.0f} s): test accuracy "
          f"{result['accuracy']:.3f}, tool use {result['tool_use_rate']:.3f}", flush=True)
    return history, result


def seed_dir(args: argparse.Namespace, seed: int) -> Path:
    return args.out / f"seed{seed}" if args.seeds > 1 else args.out


def _one_thread() -> None:
    """Worker set-up: one torch thread each, so jobs share the cores side by side (faster on
    these small matrices than two threads on one job) and results do not depend on the
    machine's thread count."""
    import torch

    torch.set_num_threads(1)


def study(args: argparse.Namespace, runs: list[str]) -> list[dict[str, Any]]:
    """The comparison over seeds: every seed's SFT start, then every run from it, each in a
    worker process; per seed, held-out results and per-step histories."""
    workers = (os.cpu_count() or 1) + 1  # one spare so no core idles while a round ends
    ctx = multiprocessing.get_context("spawn")
    seeds = range(args.seeds)
    # side by side, workers' bars would overwrite each other: one SFT keeps its bar, more do not
    quiet = {"TQDM_DISABLE": "1"} if args.seeds > 1 else {}
    with (mock.patch.dict(os.environ, quiet),
          ProcessPoolExecutor(min(workers, args.seeds), ctx, _one_thread) as pool):
        starts = list(pool.map(sft_job, [args] * args.seeds, seeds))
    jobs = [(seed, run) for seed in seeds for run in runs]
    # the workers inherit it (restored after, also when a run fails, to whatever the user had)
    with (mock.patch.dict(os.environ, TQDM_DISABLE="1"),
          ProcessPoolExecutor(min(workers, len(jobs)), ctx, _one_thread) as pool):
        futures = {job: pool.submit(rl_job, args, starts[job[0]][0], job[1], job[0])
                   for job in jobs}
        for _ in tqdm(as_completed(futures.values()), "RL runs", len(jobs), unit="run"):
            pass
        done = {job: f.result() for job, f in futures.items()}
    return [{"held_out": {"SFT start": starts[seed][1],
                          **{f"after {run}": done[seed, run][1] for run in runs}},
             "histories": {run: done[seed, run][0] for run in runs}} for seed in seeds]


def mean_se(values: list[float]) -> str:
    """'mean' for one value, 'mean +- standard error' (of the mean, n-1) for several."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} +- {np.std(values, ddof=1) / np.sqrt(len(values)):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="RL steps per run")
    parser.add_argument("--tasks-per-step", type=int, default=4,
                        help="questions per RL step (each sampled num_generations=8 times)")
    parser.add_argument("--sft-steps", type=int, default=300)
    parser.add_argument("--demos", type=int, default=SIZES["demo"],
                        help=f"expert episodes for SFT (<= {SIZES['demo']})")
    parser.add_argument("--lr", type=float, default=1e-3, help="RL learning rate")
    parser.add_argument("--out", type=Path, default=Path("runs/tiny"))
    parser.add_argument("--eval-tasks", type=int, default=32,
                        help=f"held-out tasks (<= {SIZES['test']})")
    parser.add_argument("--seeds", type=int, default=1,
                        help="repeat the whole study (SFT and RL) over this many seeds and "
                        "report mean +- standard error")
    parser.add_argument("--runs", default="grpo,axpo,grpo-equal-compute",
                        help=f"comma-separated, from: {', '.join(RUNS)}")
    args = parser.parse_args()
    runs = args.runs.split(",")
    if unknown := [r for r in runs if r not in RUNS]:
        parser.error(f"unknown run(s) {', '.join(unknown)}; choose from {', '.join(RUNS)}")
    if not 1 <= args.demos <= SIZES["demo"]:
        parser.error(f"--demos must be in [1, {SIZES['demo']}], got {args.demos}")
    if not 1 <= args.eval_tasks <= SIZES["test"]:
        parser.error(f"--eval-tasks must be in [1, {SIZES['test']}], got {args.eval_tasks}")
    t0 = time.perf_counter()
    seeds = study(args, runs)

    n = len(seeds)
    print(f"\nper step, mean over {n} seed(s); all_wrong_*: share of question groups whose "
          "tool-using (no-tool) rollouts are all wrong")
    print("| step | " + " | ".join(f"{r} {k}" for r in runs for k in KEYS) + " |")
    print("|---" * (1 + len(KEYS) * len(runs)) + "|")
    for s in range(args.steps):
        cells = [f"{np.mean([x['histories'][r][s].get(k, 0.0) for x in seeds]):.3f}"
                 for r in runs for k in KEYS]
        print(f"| {s + 1} | " + " | ".join(cells) + " |")
    rows = list(seeds[0]["held_out"])
    print(f"\n| held-out test ({args.eval_tasks} tasks x 4, {n} seed(s)) | accuracy | tool use "
          "| resamples (correct) | rollouts trained |\n|---|---|---|---|---|")
    for row in rows:
        got = [x["held_out"][row] for x in seeds]
        made = sum(g.get("resamples", 0) for g in got) / n
        right = sum(g.get("resamples_correct", 0) for g in got) / n
        trained = sum(g.get("trained_rollouts", 0) for g in got) / n
        extra = f"{made:.0f} ({right:.0f}) | {trained:.0f}" if row != "SFT start" else " |"
        print(f"| {row} | {mean_se([g['accuracy'] for g in got])} | "
              f"{mean_se([g['tool_use_rate'] for g in got])} | {extra} |")
    print("\nResamples come from all-wrong tool-using groups (here: crops of the wrong box); a "
          "correct one is a learning signal for the tool call that GRPO's group did not have.")
    plot(seeds, runs, args.out / "comparison.png")
    print(f"\nwall time {time.perf_counter() - t0:.0f} s; plot: {args.out / 'comparison.png'}")


def plot(seeds: list[dict[str, Any]], runs: list[str], path: Path) -> None:
    """Per-step diagnostics, mean over seeds with a +-1 standard error band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(KEYS), figsize=(4 * len(KEYS), 3))
    for ax, key in zip(axes, KEYS):
        for run in runs:
            curves = np.array([[h.get(key, 0.0) for h in x["histories"][run]] for x in seeds])
            steps = np.arange(1, curves.shape[1] + 1)
            mean = curves.mean(0)
            ax.plot(steps, mean, marker="o", label=run)
            if len(seeds) > 1:
                se = curves.std(0, ddof=1) / np.sqrt(len(seeds))
                ax.fill_between(steps, mean - se, mean + se, alpha=0.2)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
