"""Trainer step time: our GRPO against TRL's `GRPOTrainer`, and AXPO's overhead over GRPO.

    pip install -e .[bench]                  # TRL, for this benchmark only
    python benchmarks/trainer_bench.py       # prints a markdown table; --quick to smoke-test

Everything runs on the tiny text Qwen3 from `agents.tiny` (CPU), the one model both trainers
load the same way (TRL's text path needs no processor). Two parts, each measured side by side
with the trainers' steps interleaved, so load from other jobs hits both alike:

1. TRL versus ours, single turn: the same ToolArith prompts (our env's prompt as text, no
   tools, one turn), G, batch, temperature, beta=0, learning rate and the env's correctness
   reward. Every completion is exactly `--tokens` long in both (EOS and stop strings are held
   off), so both generate and train on the same number of tokens.
2. AXPO versus GRPO in our Trainer on the real multi-turn ToolArith env with the calculator,
   from a briefly SFT-ed start (tool calls made, answers mostly wrong: AXPO's resampling
   triggers). The learning rate is 0 (the update still runs in full), so both see the same
   policy and the same first rollouts every step; the difference is AXPO's exploration and
   the update on its resamples. AXPO runs with the paper's budget (r = 0.25 of the step's 64
   rollouts: 4 blocks of K = 4 resamples); beta is 0 in both, so neither keeps a reference.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import axpo_env  # noqa: F401  (registers the envs)
from agents import tiny
from agents.hf import HFPolicy
from algorithms import axpo
from algorithms.config import AXPOConfig, GRPOConfig, SFTConfig
from algorithms.sft import train_sft
from algorithms.trainer import Trainer
from axpo_env.tasks.tool_arith import write_expert_demos

ENV = "AXPO-ToolArith-v0"


class Phases:
    """Wall time spent inside wrapped callables, per name, collected step by step."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)

    def wrap(self, name: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent[name] += time.perf_counter() - t0

        return timed

    def take(self) -> dict[str, float]:
        out = dict(self.spent)
        self.spent.clear()
        return out


def force_length(policy: HFPolicy, trainer: Trainer, tokens: int) -> None:
    """Every turn exactly `tokens` long, as TRL's generation_kwargs={"min_new_tokens": n}.
    `SamplingParams` has no min_new_tokens, so the model's generate gets it as a keyword. The
    image/video slot ids are suppressed too (in TRL's run as well): sampled, they end our turn
    early (`HFPolicy._completion`), and the two runs would train on different token counts."""
    trainer.sampling = replace(trainer.sampling, stop=())
    policy.decoding = "generate"  # min_new_tokens is a keyword of generate, not of our loop
    policy.model.generate = functools.partial(policy.model.generate, min_new_tokens=tokens,
                                              suppress_tokens=sorted(policy.vision_slot_ids))


def our_step(trainer: Trainer, phases: Phases, log: list[dict]) -> None:
    """One training step of ours, timed, with the global RNG left as it was (TRL's sampling
    draws from it between our steps)."""
    with torch.random.fork_rng(devices=[]):
        t0 = time.perf_counter()
        m = trainer.training_step()
        seconds = time.perf_counter() - t0
    spent = phases.take()
    log.append({"time": seconds, "tokens": m.get("trained_tokens", 0.0),
                "update": spent.get("update", 0.0), "explore": spent.get("explore", 0.0),
                "resamples": m.get("axpo/resamples", 0.0),
                "triggered": m.get("axpo/triggered_questions", 0.0),
                "first_tokens": m["generated_tokens"], "reward": m["reward"],
                "turns": m["mean_turns"], "tool_use": m["tool_use_rate"]})


# ------------------------------------------------------------------------ part 1: TRL vs ours


def single_turn(args: argparse.Namespace, root: Path) -> tuple[list[dict], list[dict]]:
    """TRL's GRPOTrainer and ours on the same model, prompts and batch, steps interleaved."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer

    path = tiny.build(root / "text", kind="text", seed=0)
    pool = [f"train-{i}" for i in range(16)]
    env_kwargs = {"tools": [], "max_turns": 1}
    env = gym.make(ENV, **env_kwargs)
    policy = HFPolicy.from_pretrained(path, render_tools=False)
    rows = []
    for task in pool:  # our env's exact prompt, as the text TRL tokenizes back to the same ids
        obs, _ = env.reset(seed=0, options={"task_id": task})
        rows.append({"prompt": policy.tokenizer.decode(policy.prompt(obs).ids), "task_id": task})
    common = dict(num_generations=args.group, max_completion_length=args.tokens,
                  per_device_train_batch_size=args.prompts * args.group,  # one update a step
                  temperature=1.0, top_p=1.0, top_k=0, beta=0.0, learning_rate=1e-6,
                  epsilon=0.2, epsilon_high=None, loss_type="dapo", scale_rewards="group", seed=0)

    # ours
    cfg = GRPOConfig(env_id=ENV, tools=[], max_turns=1, task_ids=pool,
                     tasks_per_step=args.prompts, max_steps=10**6, save_steps=10**6,
                     output_dir=str(root / "ours"), report_to="none", **common)
    ours = Trainer("grpo", cfg, policy)
    force_length(policy, ours, args.tokens)
    phases, ours_log = Phases(), []
    ours.update = phases.wrap("update", ours.update)

    # TRL: same pool, tasks * G completions per optimizer step, one generation per step
    trl_log: list[dict] = []

    def reward(prompts: list, completions: list[str], completion_ids: list, task_id: list,
               **_: Any) -> list[float]:
        trl_log.append({"tokens": float(sum(len(c) for c in completion_ids))})
        scores = []
        for text, task in zip(completions, task_id):
            env.reset(seed=0, options={"task_id": task})
            scores.append(float(env.step(text)[1]))
        return scores

    class Interleave(TrainerCallback):
        """Time each TRL step from the end of our previous step, then run one of ours."""

        def on_train_begin(self, *a: Any, **k: Any) -> None:
            self.mark = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            trl_log[-1]["time"] = time.perf_counter() - self.mark
            trl_log[-1]["update"] = trl_log[-1]["time"] - trl_phases.take().get("rollout", 0.0)
            our_step(ours, phases, ours_log)
            self.mark = time.perf_counter()

    trl_cfg = TRLConfig(
        output_dir=str(root / "trl"), max_steps=args.warmup + args.steps,
        generation_kwargs={"min_new_tokens": args.tokens,
                           "suppress_tokens": sorted(policy.vision_slot_ids)},
        lr_scheduler_type="constant",
        gradient_checkpointing=False,  # TRL defaults to True; ours does not checkpoint
        bf16=False, use_cpu=True, report_to="none", save_strategy="no",
        logging_steps=10**6, disable_tqdm=True, **common)
    trl = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(path), reward_funcs=reward,
                      args=trl_cfg, train_dataset=Dataset.from_list(rows),
                      processing_class=AutoTokenizer.from_pretrained(path),
                      callbacks=[Interleave()])
    trl_phases = Phases()
    trl._generate_and_score_completions = trl_phases.wrap(
        "rollout", trl._generate_and_score_completions)
    with contextlib.redirect_stdout(io.StringIO()):  # TRL prints its run summary
        trl.train()
    env.close()
    return trl_log[args.warmup:], ours_log[args.warmup:]


# ---------------------------------------------------------------- part 2: AXPO vs GRPO (ours)


def sft_start(root: Path, steps: int, demos: int = 256) -> Path:
    """The tiny text model after a short SFT on the scripted expert: it calls the calculator
    but mostly copies the numbers wrong, the regime where AXPO resamples."""
    base = tiny.build(root / "base", kind="text", seed=0)
    write_expert_demos(root, demos)
    with contextlib.redirect_stderr(io.StringIO()):  # the SFT progress bar
        return train_sft(SFTConfig(
            model=str(base), data_path=str(root / "demos.jsonl"), output_dir=str(root / "sft"),
            max_steps=steps, learning_rate=3e-3, warmup_steps=min(20, steps // 4),
            per_device_train_batch_size=8, logging_steps=10**6, save_steps=steps,
            report_to="none"))


def multi_turn(args: argparse.Namespace, root: Path) -> tuple[list[dict], list[dict]]:
    """GRPO and AXPO steps interleaved on the multi-turn env with tools, same start and seeds."""
    start = sft_start(root, args.sft_steps)
    common = dict(model=str(start), env_id=ENV, task_ids=[f"train-{i}" for i in range(256, 512)],
                  tasks_per_step=8, num_generations=8, max_completion_length=48, max_turns=3,
                  # micro-batches of 8, one update a step (the default None): with a fixed 8,
                  # AXPO's 16 extra rows would spill into a second update and pay old logprobs
                  per_device_train_batch_size=8, gradient_accumulation_steps=None,
                  temperature=1.0, beta=0.0, learning_rate=0.0, seed=0, max_steps=10**6,
                  save_steps=10**6, report_to="none")
    phases = Phases()
    trainers = {
        "grpo": Trainer("grpo", GRPOConfig(output_dir=str(root / "grpo"), **common),
                        HFPolicy.from_pretrained(start, render_tools=False)),
        "axpo": Trainer("axpo", AXPOConfig(output_dir=str(root / "axpo"), **common),
                        HFPolicy.from_pretrained(start, render_tools=False)),
    }
    for t in trainers.values():
        t.update = phases.wrap("update", t.update)
    logs: dict[str, list[dict]] = {"grpo": [], "axpo": []}
    explore = axpo.explore
    axpo.explore = phases.wrap("explore", explore)  # the Trainer calls it as axpo.explore
    try:
        for step in range(args.warmup + args.steps):
            order = ("grpo", "axpo") if step % 2 == 0 else ("axpo", "grpo")
            for name in order:
                our_step(trainers[name], phases, logs[name])
    finally:
        axpo.explore = explore
    return logs["grpo"][args.warmup:], logs["axpo"][args.warmup:]


# ------------------------------------------------------------------------------------ report


def mean(log: list[dict], key: str) -> float:
    return float(np.mean([r[key] for r in log]))


def row(label: str, log: list[dict], detail: str) -> tuple:
    """ms/step, tokens/step, ms/token; rollout is what is left beside update and exploration
    (TRL: its generate-and-score call; the update is the rest of its step)."""
    t, n = mean(log, "time"), mean(log, "tokens")
    return (label, f"{t * 1e3:,.0f}", f"{n:,.0f}", f"{t * 1e3 / n:.3f}",
            f"{rollout_ms(log):,.0f}", f"{mean(log, 'update') * 1e3:,.0f}", detail)


def rollout_ms(log: list[dict]) -> float:
    explore = mean(log, "explore") if "explore" in log[0] else 0.0
    return (mean(log, "time") - mean(log, "update") - explore) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="measured steps per trainer")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--prompts", type=int, default=4, help="prompts per step (part 1)")
    parser.add_argument("--group", type=int, default=8, help="completions per prompt, G (part 1)")
    parser.add_argument("--tokens", type=int, default=64, help="completion length (part 1)")
    parser.add_argument("--sft-steps", type=int, default=150, help="SFT before part 2")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 1 by default: a 1M-parameter model's ops are too "
                        "small to split, and a second thread only waits on a shared machine")
    parser.add_argument("--quick", action="store_true", help="1 step each, short SFT")
    parser.add_argument("--single-turn-only", action="store_true",
                        help="only part 1 (TRL against ours)")
    parser.add_argument("--multi-turn-only", action="store_true",
                        help="only part 2 (AXPO against GRPO)")
    args = parser.parse_args()
    try:
        import trl
    except ImportError:
        print("trainer_bench needs TRL for the comparison: pip install -e .[bench]",
              file=sys.stderr)
        return 2
    if args.quick:
        args.steps, args.sft_steps = 1, 20
    import transformers

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers 5 renames
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="axpo-trainer-bench-") as tmp:
        trl_log, ours_log = ([], []) if args.multi_turn_only else single_turn(args, Path(tmp))
        grpo_log, axpo_log = ([], []) if args.single_turn_only else multi_turn(args, Path(tmp))

    per_step = f"{args.prompts} prompts x G={args.group} x {args.tokens} tokens"
    if args.single_turn_only:
        grpo_log = axpo_log = ours_log  # part 2's rows are dropped below
    if args.multi_turn_only:
        trl_log = ours_log = grpo_log  # part 1's rows are dropped below
    turns = (f"{mean(grpo_log, 'turns'):.2f} turns/episode, "
             f"tool use {mean(grpo_log, 'tool_use'):.2f}")
    same = all(g["first_tokens"] == a["first_tokens"] and g["reward"] == a["reward"]
               for g, a in zip(grpo_log, axpo_log))
    t_trl, t_ours = mean(trl_log, "time"), mean(ours_log, "time")
    t_grpo, t_axpo = mean(grpo_log, "time"), mean(axpo_log, "time")
    tok = {name: mean(log, "time") / mean(log, "tokens")
           for name, log in (("grpo", grpo_log), ("axpo", axpo_log))}
    rows = [
        row(f"TRL {trl.__version__} GRPOTrainer, single turn", trl_log, per_step),
        row("ours, Trainer('grpo'), single turn", ours_log, per_step),
        ("  ratio ours / TRL", f"{t_ours / t_trl:.2f}x", "",
         f"{(t_ours / mean(ours_log, 'tokens')) / (t_trl / mean(trl_log, 'tokens')):.2f}x",
         f"{(t_ours - mean(ours_log, 'update')) / (t_trl - mean(trl_log, 'update')):.2f}x",
         f"{mean(ours_log, 'update') / mean(trl_log, 'update'):.2f}x", ""),
        row("ours, Trainer('grpo'), ToolArith multi-turn", grpo_log,
            f"8 tasks x G=8, <= 3 turns of <= 48 tokens; {turns}"),
        row("ours, Trainer('axpo'), ToolArith multi-turn", axpo_log,
            f"{mean(axpo_log, 'resamples'):.1f} resamples/step from "
            f"{mean(axpo_log, 'triggered'):.1f} all-wrong tool groups (r = "
            f"{AXPOConfig().resample_ratio}, K = {AXPOConfig().resamples_per_prefix}); explore "
            f"{mean(axpo_log, 'explore') * 1e3:,.0f} ms/step"),
        ("  AXPO overhead over GRPO", f"{(t_axpo - t_grpo) * 1e3:+,.0f} "
         f"({(t_axpo / t_grpo - 1) * 100:+.0f}%)",
         f"{mean(axpo_log, 'tokens') - mean(grpo_log, 'tokens'):+,.0f}", "",
         f"{(rollout_ms(axpo_log) - rollout_ms(grpo_log)):+,.0f}",
         f"{(mean(axpo_log, 'update') - mean(grpo_log, 'update')) * 1e3:+,.0f}",
         "same first rollouts as GRPO every step" if same else "first rollouts differed"),
        ("  ratio axpo / grpo", f"{t_axpo / t_grpo:.2f}x", "",
         f"{tok['axpo'] / tok['grpo']:.2f}x", "", "", ""),
    ]
    if args.single_turn_only:
        rows = rows[:3]
    if args.multi_turn_only:
        rows = rows[3:]
    print(f"\n{args.steps} measured steps after {args.warmup} warm-up per trainer; "
          f"{time.perf_counter() - t0:.0f} s in all\n")
    print("| run | ms/step | tokens/step | ms/token | rollout ms | update ms | detail |\n"
          "|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
