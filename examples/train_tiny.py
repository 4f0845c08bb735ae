"""The embedded default: SFT a tiny Qwen3-VL on tool-use demonstrations, then GRPO, AXPO and
GRPO at AXPO's rollout budget side by side from the same start and seeds, on CPU.

    python examples/train_tiny.py [--steps 10] [--out runs/tiny]
    python examples/train_tiny.py --seeds 3          # the study over seeds: mean +- SE per row
    python examples/train_tiny.py --runs grpo,axpo,axpo-random,arpo
    python examples/train_tiny.py --study            # AXPO vs GRPO in the paper's regime

`--study` is `--task regime --seeds 5 --runs` STUDY_RUNS: AXPO-ZoomRegime-v0 (a 3x3 grid, an SFT
start that calls the tool in about a third of its rollouts; `axpo_env.tasks.zoom_regime`), GRPO,
AXPO, GRPO at AXPO's rollout budget and the paper's Table 2 ablations over five seeds, with 95%
intervals over seeds and the paired differences AXPO - GRPO per seed (README, "AXPO against
GRPO in the paper's regime").

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
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
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
from axpo_env.tasks import zoom_boxes, zoom_regime
from evaluation.metrics import groups, pass_at_k, thinking_acting_gap


@dataclass(frozen=True)
class DemoTask:
    """A task the demo can run: its env id, split sizes and expert demonstrations writer
    (folder, count, seed) -> SFT JSONL."""

    env: str
    sizes: dict[str, int]
    write_demos: Callable[[Path, int, int], Path]
    lr: float  # RL's learning rate on the head


TASKS = {
    # every demo crops; the asked box sits top left in 0.9 of the items (where RL learns to crop)
    "boxes": DemoTask("AXPO-ZoomBoxes-v0", zoom_boxes.SIZES,
                      lambda folder, count, seed: zoom_boxes.write_expert_demos(folder, count),
                      lr=1e-3),
    # the paper's regime: a third of the demos crop, the rest guess; nine boxes, home share 0.5
    "regime": DemoTask("AXPO-ZoomRegime-v0", zoom_regime.SIZES,
                       lambda folder, count, seed: zoom_regime.write_expert_demos(
                           folder, count, seed=seed), lr=3e-3),
}
ENV = TASKS["boxes"].env
SIZES = TASKS["boxes"].sizes
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
#: `--study`: the baselines and the Table 2 ablations that matter on the regime task.
STUDY_RUNS = ("grpo", "axpo", "grpo-equal-compute", "axpo-no-prefix-fix", "axpo-random",
              "axpo-no-prefix-credit", "axpo-joint-group")


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


def sft_start(out: Path, steps: int, demos: int, seed: int = 0, task: str = "boxes") -> Path:
    """The SFT stage on `demos` of the task's expert episodes; returns the checkpoint."""
    return train_start(out, TASKS[task].write_demos(out / "demos", demos, seed), steps, seed)


def train_start(out: Path, data: Path, steps: int, seed: int = 0) -> Path:
    """A seeded tiny Qwen3-VL, its tokenizer trained on the demonstrations' text too,
    fine-tuned on the SFT JSONL `data` for `steps` steps; returns the checkpoint."""
    # rope_theta 1e4 instead of Qwen3-VL's 5e6: with 32-dim heads, 5e6 leaves the tiny model
    # almost no positional resolution, and copying (question -> call, crop -> answer) needs it
    # (ToolArith held-out accuracy after the same SFT: 0.14 with 5e6, 0.69 with 1e4).
    rope = {"rope_type": "default", "rope_theta": 1e4, "mrope_section": [6, 5, 5],
            "mrope_interleaved": True}
    base = tiny.build(out / "base", kind="vl", seed=seed, corpus=demo_texts(data),
                      text_config={"rope_parameters": rope})
    return train_sft(SFTConfig(model=str(base), data_path=str(data), output_dir=str(
        out / "sft"), max_steps=steps, learning_rate=3e-3, warmup_steps=20,
        per_device_train_batch_size=8, logging_steps=50, save_steps=steps, seed=seed,
        report_to=["csv"]))


def evaluate(policy: HFPolicy, tasks: int = 64, seed: int = 1234, env: str = ENV
             ) -> dict[str, float]:
    """Held-out accuracy, Pass@4 and tool use at sampling temperature 1 (the first `tasks` test
    tasks, 4 samples each: 256 episodes at 64; the standard error of an accuracy near 0.4 is
    about 0.03). Every policy is evaluated on the same tasks and sampling seeds."""
    test_ids = [f"test-{i}" for i in range(tasks)]
    trajs = rollout(env, policy, test_ids, group_size=4, seed=seed,
                    sampling=SamplingParams(max_new_tokens=MAX_NEW_TOKENS, seed=seed),
                    env_kwargs={"split": "test", "max_turns": 3}, progress=False)
    passes = [pass_at_k(len(g), sum(t.correct for t in g), 4) for g in groups(trajs).values()]
    return {**thinking_acting_gap(trajs), "pass@4": float(np.mean(passes))}


#: The per-step diagnostics the table and plot show (AXPO paper, Section 3).
KEYS = ("accuracy", "tool_use_rate", "all_wrong_tool_subgroup_share",
        "all_wrong_no_tool_subgroup_share", "axpo/resamples", "axpo/recovery_rate")


def sft_job(args: argparse.Namespace, seed: int) -> tuple[Path, dict[str, float]]:
    """One seed's SFT start and its held-out result (in a worker process, one thread)."""
    t0 = time.perf_counter()
    sft = seed_dir(args, seed) / "sft" / f"checkpoint-{args.sft_steps}"
    if not (args.reuse and sft.is_dir()):
        sft = sft_start(seed_dir(args, seed), args.sft_steps, args.demos, seed, args.task)
    start = evaluate(load(sft), args.eval_tasks, env=TASKS[args.task].env)
    print(f"seed {seed}: SFT start ({time.perf_counter() - t0:.0f} s): test accuracy "
          f"{start['accuracy']:.3f}, tool use {start['tool_use_rate']:.3f}", flush=True)
    return sft, start


def rl_job(args: argparse.Namespace, sft: Path, run: str, seed: int) -> tuple[list, dict]:
    """One run from an SFT start: its per-step history and held-out result (in a worker)."""
    t0 = time.perf_counter()
    algo, overrides = RUNS[run]
    common = dict(model=str(sft), env_id=TASKS[args.task].env, max_steps=args.steps,
                  tasks_per_step=args.tasks_per_step, num_generations=8,
                  max_completion_length=MAX_NEW_TOKENS, max_turns=3, learning_rate=args.lr,
                  temperature=1.0, seed=seed, save_steps=args.steps, report_to=["jsonl", "csv"],
                  epsilon_high=0.4, beta=0.0,  # the paper's clip for all; no KL: a 2x faster demo
                  trainable_parameters=RL_TRAINS)
    cls = AXPOConfig if algo == "axpo" else GRPOConfig
    config = cls(output_dir=str(seed_dir(args, seed) / run), **{**common, **overrides})
    trainer = Trainer(algo, config, load(sft))
    history = trainer.train()
    result = evaluate(trainer.policy, args.eval_tasks, env=TASKS[args.task].env)
    result.update(  # the run's compute, in rollouts and in tokens trained on
        {key: sum(h.get(f, 0.0) for h in history) for key, f in COMPUTE.items()})
    print(f"seed {seed}: {run} ({time.perf_counter() - t0:.0f} s): test accuracy "
          f"{result['accuracy']:.3f}, tool use {result['tool_use_rate']:.3f}", flush=True)
    return history, result


#: What a run spent, summed over its steps: held-out key -> per-step history key.
COMPUTE = {"resamples": "axpo/resamples", "resamples_correct": "axpo/resamples_correct",
           "trained_rollouts": "trained_rollouts", "trained_tokens": "trained_tokens"}


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


#: Student's t, two-sided 95%, by degrees of freedom (beyond 10: the normal's 1.96, a little
#: narrow); no scipy for one table.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
       9: 2.262, 10: 2.228}


def mean_ci(values: list[float]) -> str:
    """'mean [lo, hi]': the 95% t-interval of the mean over seeds ('mean' for one value)."""
    if len(values) == 1:
        return f"{values[0]:+.3f}"
    half = T95.get(len(values) - 1, 1.96) * np.std(values, ddof=1) / np.sqrt(len(values))
    mean = float(np.mean(values))
    return f"{mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}]"


def pairs(runs: list[str]) -> list[tuple[str, str]]:
    """The paired comparisons to print: AXPO against every other run, every run against GRPO."""
    out = [("axpo", r) for r in runs if "axpo" in runs and r != "axpo"]
    return out + [(r, "grpo") for r in runs if "grpo" in runs and r not in ("grpo", "axpo")]


def report(seeds: list[dict[str, Any]], runs: list[str], args: argparse.Namespace) -> None:
    """Per-step diagnostics, held-out results with intervals over seeds, paired differences."""
    n = len(seeds)
    print(f"\nper step, mean over {n} seed(s); all_wrong_*: share of question groups whose "
          "tool-using (no-tool) rollouts are all wrong; axpo/resamples: resampled rollouts")
    for run in runs:
        print("\n| step | " + " | ".join(f"{run} {k}" for k in KEYS) + " |")
        print("|---" * (1 + len(KEYS)) + "|")
        for s in range(args.steps):
            cells = [f"{np.mean([x['histories'][run][s].get(k, 0.0) for x in seeds]):.3f}"
                     for k in KEYS]
            print(f"| {s + 1} | " + " | ".join(cells) + " |")
    print(f"\n| held-out test ({args.eval_tasks} tasks x 4, {n} seed(s)) | accuracy | Pass@4 | "
          "tool use | resamples (correct) | rollouts trained | tokens trained |\n"
          "|---|---|---|---|---|---|---|")
    for row in seeds[0]["held_out"]:
        got = [x["held_out"][row] for x in seeds]
        spent = {key: sum(g.get(key, 0) for g in got) / n for key in COMPUTE}
        extra = (f"{spent['resamples']:.0f} ({spent['resamples_correct']:.0f}) | "
                 f"{spent['trained_rollouts']:.0f} | {spent['trained_tokens']:.0f}"
                 if row != "SFT start" else " | |")
        print(f"| {row} | {mean_se([g['accuracy'] for g in got])} | "
              f"{mean_se([g['pass@4'] for g in got])} | "
              f"{mean_se([g['tool_use_rate'] for g in got])} | {extra} |")
    print("(mean +- standard error over seeds; resamples and compute: mean per run)")
    if not (compared := pairs(runs)):
        return
    print(f"\npaired differences on the held-out test, per seed, mean [95% t-interval over {n} "
          "seed(s)]")
    print("| difference | " + " | ".join(f"seed {i}" for i in range(n)) + " | mean [95% CI] |")
    print("|---" * (n + 2) + "|")
    for a, b in compared:
        for key, name in (("accuracy", "accuracy"), ("pass@4", "Pass@4"),
                          ("tool_use_rate", "tool use")):
            diffs = [x["held_out"][f"after {a}"][key] - x["held_out"][f"after {b}"][key]
                     for x in seeds]
            print(f"| {a} - {b}, {name} | " + " | ".join(f"{d:+.3f}" for d in diffs)
                  + f" | {mean_ci(diffs)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="regime",
                        help="boxes: AXPO-ZoomBoxes-v0 (every demo crops); regime: "
                        "AXPO-ZoomRegime-v0 (the paper's regime: a third of the demos crop)")
    parser.add_argument("--steps", type=int, default=8, help="RL steps per run")
    parser.add_argument("--tasks-per-step", type=int, default=4,
                        help="questions per RL step (each sampled num_generations=8 times)")
    parser.add_argument("--sft-steps", type=int, default=300)
    parser.add_argument("--demos", type=int, default=256, help="expert episodes for SFT")
    parser.add_argument("--lr", type=float, default=None,
                        help="RL learning rate (default 3e-3 on regime, 1e-3 on boxes)")
    parser.add_argument("--out", type=Path, default=None, help="default runs/tiny (runs/study "
                        "with --study)")
    parser.add_argument("--eval-tasks", type=int, default=None,
                        help="held-out tasks (default 32; 64 with --study)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="repeat the whole study (SFT and RL) over this many seeds and "
                        "report mean +- standard error (default 1; 5 with --study)")
    parser.add_argument("--runs", default=None, help="comma-separated, from: "
                        f"{', '.join(RUNS)} (default grpo,axpo,grpo-equal-compute)")
    parser.add_argument("--reuse", action="store_true", help="start from the SFT checkpoint "
                        "already under --out where there is one (the same settings are yours to "
                        "keep)")
    parser.add_argument("--study", action="store_true", help="the comparison in the paper's "
                        "regime: --task regime --seeds 5 --eval-tasks 64 --runs "
                        + ",".join(STUDY_RUNS) + " (each still settable)")
    args = parser.parse_args()
    if args.study:
        args.task = "regime"
    study_default = {"out": Path("runs/study"), "eval_tasks": 64, "seeds": 5,
                     "runs": ",".join(STUDY_RUNS)}
    plain_default = {"out": Path("runs/tiny"), "eval_tasks": 32, "seeds": 1,
                     "runs": "grpo,axpo,grpo-equal-compute"}
    for key, value in (study_default if args.study else plain_default).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.lr = TASKS[args.task].lr if args.lr is None else args.lr
    runs = args.runs.split(",")
    sizes = TASKS[args.task].sizes
    if unknown := [r for r in runs if r not in RUNS]:
        parser.error(f"unknown run(s) {', '.join(unknown)}; choose from {', '.join(RUNS)}")
    if not 1 <= args.demos <= sizes["demo"]:
        parser.error(f"--demos must be in [1, {sizes['demo']}], got {args.demos}")
    if not 1 <= args.eval_tasks <= sizes["test"]:
        parser.error(f"--eval-tasks must be in [1, {sizes['test']}], got {args.eval_tasks}")
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    t0 = time.perf_counter()
    seeds = study(args, runs)
    report(seeds, runs, args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "study.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "seeds": seeds}, indent=1))
    plot(seeds, runs, args.out / "comparison.png")
    print(f"\nwall time {time.perf_counter() - t0:.0f} s; plot: {args.out / 'comparison.png'}; "
          f"every number: {args.out / 'study.json'}")


def plot(seeds: list[dict[str, Any]], runs: list[str], path: Path) -> None:
    """Per-step diagnostics, mean over seeds with a +-1 standard error band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = (len(KEYS) + 1) // 2
    fig, axes = plt.subplots(2, cols, figsize=(4 * cols, 6.5), squeeze=False)
    for ax, key in zip(axes.flat, KEYS):
        for run in runs:
            curves = np.array([[h.get(key, 0.0) for h in x["histories"][run]] for x in seeds])
            steps = np.arange(1, curves.shape[1] + 1)
            mean = curves.mean(0)
            ax.plot(steps, mean, marker="o", label=run)
            if len(seeds) > 1:
                se = curves.std(0, ddof=1) / np.sqrt(len(seeds))
                ax.fill_between(steps, mean - se, mean + se, alpha=0.15)
        ax.set_title(key)
        ax.set_xlabel("step")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(runs), 4))
    fig.suptitle(f"per step, mean over {len(seeds)} seed(s)"
                 + (" +- 1 standard error" if len(seeds) > 1 else ""))
    fig.tight_layout(rect=(0, 0.04 * (1 + (len(runs) - 1) // 4), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
