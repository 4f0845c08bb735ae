"""Is an SFT start in the AXPO paper's regime? Build it and measure it before any RL (issue 26).

    OMP_NUM_THREADS=1 python examples/regime_probe.py                      # the default variant
    python examples/regime_probe.py --variants tool_share=0.35 tool_share=0.5 --seeds 0,1,2
    python examples/regime_probe.py --variants grid=2,tool_share=0.35 --tasks 32

A variant is `key=value,...` over the options of AXPO-ZoomRegime-v0 (`grid`, `home_share`) and
of its demonstrations (`tool_share`: the share of expert episodes that crop; the others answer
with a guess). For each variant and seed, in a worker process of one torch thread: the SFT start
as `examples/train_tiny.py` builds it (a seeded tiny Qwen3-VL, its tokenizer trained on the
demonstrations' text, 300 SFT steps at lr 3e-3 on 256 episodes and 256 reading drills), then
`--group` rollouts of each of the first `--tasks` train tasks at temperature 1 (64 new tokens a
turn, up to 3 turns, as the RL runs sample), and from every group whose tool-using rollouts are
all wrong, AXPO's resample: its least confident source (`algorithms.axpo.candidates`) kept
through the opening `<tool_call>`, `--k` continuations (`agents.rollout.branch_many`). Printed
per variant and seed:

- tool use: share of rollouts with a tool call (paper: 20-35% under GRPO);
- aw-tool: among groups with a tool-using rollout, the share whose tool-using rollouts are all
  wrong (paper: ~40%), and aw-none the same for the no-tool subgroup;
- recovery: among those all-wrong groups, the share where at least one of the K resamples is
  right (paper: ~12-15% per step), and res acc the resamples' accuracy;
- acc tool / acc none: accuracy of tool-using and of no-tool rollouts; hit: share of calls
  that crop the asked box; read: accuracy of the rollouts whose call did (how well the start
  reads a crop);
- pull-away: share of groups whose tool-using rollouts are all wrong while a no-tool rollout is
  right (GRPO pushes those groups away from the tool), and A(tool): the mean GRPO advantage of
  tool-using rollouts (negative: GRPO's update moves away from the tool on average).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # train_tiny, beside this file

import train_tiny  # noqa: E402

import axpo_env  # noqa: E402, F401
from agents.policy import SamplingParams  # noqa: E402
from agents.rollout import BranchPoint, branch_many, rollout  # noqa: E402
from algorithms.axpo import candidates  # noqa: E402
from algorithms.config import AXPOConfig  # noqa: E402
from axpo_env.tasks.zoom_regime import (  # noqa: E402
    DEFAULT_GRID,
    DEFAULT_HOME_SHARE,
    DEFAULT_TOOL_SHARE,
    ZoomRegime,
    write_expert_demos,
)
from evaluation.metrics import thinking_acting_gap  # noqa: E402

ENV = ZoomRegime.env_id
DEFAULTS = {"grid": DEFAULT_GRID, "home_share": DEFAULT_HOME_SHARE,
            "tool_share": DEFAULT_TOOL_SHARE}
COLUMNS = ("tool use", "aw-tool", "aw-none", "recovery", "res acc", "acc tool", "acc none",
           "hit", "read", "pull-away", "A(tool)", "accuracy")


def parse_variant(text: str) -> dict[str, Any]:
    """'grid=3,tool_share=0.35' -> the full option set (defaults filled in)."""
    out = dict(DEFAULTS)
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key not in DEFAULTS:
            raise ValueError(f"unknown variant option {key!r}; choose from {', '.join(DEFAULTS)}")
        out[key] = int(value) if key == "grid" else float(value)
    return out


def sft_start(out: Path, variant: dict[str, Any], steps: int, seed: int) -> Path:
    """train_tiny's SFT start on this variant's demonstrations."""
    data = write_expert_demos(out / "demos", 256, tool_share=variant["tool_share"],
                              grid=variant["grid"], seed=seed)
    return train_tiny.train_start(out, data, steps, seed)


_BBOX = re.compile(r'"bbox"\s*:\s*\[([^\]]*)\]')


def hits(trajectory: Any, item: Any) -> bool | None:
    """Whether the first call crops the asked box (None: no call)."""
    for turn in trajectory.turns:
        if turn.action is not None and turn.action.kind == "call":
            found = _BBOX.search(turn.completion.text)
            try:
                return found is not None and [int(float(v)) for v in found.group(1).split(",")] \
                    == item.metadata["box"]
            except ValueError:
                return False
    return None


def measure(policy: Any, variant: dict[str, Any], tasks: int, group: int, k: int,
            seed: int) -> dict[str, float]:
    """The start's regime diagnostics on the first `tasks` train tasks (see the module doc)."""
    env_kwargs = {"split": "train", "max_turns": 3,
                  "task_options": {"grid": variant["grid"], "home_share": variant["home_share"]}}
    sampling = SamplingParams(max_new_tokens=train_tiny.MAX_NEW_TOKENS, seed=seed)
    trajs = rollout(ENV, policy, list(range(tasks)), group_size=group, seed=seed,
                    sampling=sampling, env_kwargs=env_kwargs, progress=False)
    gap = thinking_acting_gap([t for t in trajs if t.error is None])
    groups = [trajs[i:i + group] for i in range(0, len(trajs), group)]
    config = AXPOConfig(model="-", env_id=ENV, resamples_per_prefix=k)
    best = [c[0] for g, grp in enumerate(groups) if (c := candidates(grp, g, config))]
    points = [BranchPoint(groups[b.group][b.source], b.turn, b.keep, k) for b in best]
    resamples = branch_many(points, policy, ENV, sampling, env_kwargs=env_kwargs) if points \
        else []
    task = ZoomRegime("train", **env_kwargs["task_options"])
    called = [(t, h) for t in trajs
              if (h := hits(t, task.items[int(t.task_id.split("-")[1])])) is not None]
    hit = [h for _, h in called]
    read = [t.correct for t, h in called if h]
    pull = [g for g in groups if any(t.used_tool for t in g)
            and not any(t.correct for t in g if t.used_tool)
            and any(t.correct for t in g if not t.used_tool)]
    advantages = []
    for g in groups:
        r = np.array([float(t.correct) for t in g])
        if r.std() > 0:
            advantages += [a for a, t in zip((r - r.mean()) / r.std(), g) if t.used_tool]
    made = [t for rs in resamples for t in rs]
    return {
        "tool use": gap["tool_use_rate"], "aw-tool": gap["all_wrong_tool_subgroup_share"],
        "aw-none": gap["all_wrong_no_tool_subgroup_share"],
        "recovery": float(np.mean([any(t.correct for t in rs) for rs in resamples]))
        if resamples else 0.0,
        "res acc": float(np.mean([t.correct for t in made])) if made else 0.0,
        "acc tool": gap["accuracy_with_tools"], "acc none": gap["accuracy_without_tools"],
        "hit": float(np.mean(hit)) if hit else 0.0,
        "read": float(np.mean(read)) if read else 0.0, "pull-away": len(pull) / len(groups),
        "A(tool)": float(np.mean(advantages)) if advantages else 0.0,
        "accuracy": gap["accuracy"], "triggered": float(len(points)),
        "groups with tool": float(gap["groups_with_tool_use"]),
        "errors": float(sum(t.error is not None for t in trajs)),
    }


def job(args: argparse.Namespace, name: str, seed: int) -> dict[str, float]:
    """One variant and seed: its SFT start, then the measurement (in a worker, one thread)."""
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    variant = parse_variant(name)
    out = args.out / re.sub(r"[^A-Za-z0-9_.=-]", "_", name or "default") / f"seed{seed}"
    sft = out / "sft" / f"checkpoint-{args.sft_steps}"
    if not (args.reuse and sft.is_dir()):
        sft = sft_start(out, variant, args.sft_steps, seed)
    row = measure(train_tiny.load(sft), variant, args.tasks, args.group, args.k, seed)
    row["seconds"] = time.perf_counter() - t0
    (out / "probe.json").write_text(json.dumps(row, indent=1))
    print(f"{name or 'default'} seed {seed}: done in {row['seconds']:.0f} s", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=[""],
                        help="each 'key=value,...' over grid, home_share, tool_share "
                        f"(defaults {DEFAULTS})")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sft-steps", type=int, default=300)
    parser.add_argument("--tasks", type=int, default=48, help="train tasks (question groups)")
    parser.add_argument("--group", type=int, default=8, help="rollouts per task")
    parser.add_argument("--k", type=int, default=4, help="AXPO resamples per prefix")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--reuse", action="store_true",
                        help="reuse an SFT checkpoint already under --out")
    parser.add_argument("--out", type=Path, default=Path("runs/regime"))
    args = parser.parse_args()
    for v in args.variants:
        parse_variant(v)  # fail before any work
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [(v, s) for v in args.variants for s in seeds]
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    with (mock.patch.dict(os.environ, TQDM_DISABLE="1"),
          ProcessPoolExecutor(min(args.workers, len(jobs)), ctx) as pool):
        rows = list(pool.map(job, [args] * len(jobs), *zip(*jobs)))
    print(f"\n{args.tasks} train tasks x {args.group} rollouts per start, K={args.k} resamples "
          "from each all-wrong tool-using group's least confident call")
    print("| variant | seed | " + " | ".join(COLUMNS) + " | triggered |")
    print("|---" * (len(COLUMNS) + 3) + "|")
    for (v, s), row in zip(jobs, rows):
        name = ", ".join(f"{k}={val}" for k, val in parse_variant(v).items())
        print(f"| {name} | {s} | " + " | ".join(f"{row[c]:.3f}" for c in COLUMNS)
              + f" | {row['triggered']:.0f}/{row['groups with tool']:.0f} |")
    for v in args.variants:
        got = [row for (w, _), row in zip(jobs, rows) if w == v]
        if len(got) > 1:
            cells = [f"{np.mean([r[c] for r in got]):.3f}" for c in COLUMNS]
            print(f"| {v or 'default'} | mean | " + " | ".join(cells) + " | |")
    print(f"\nwall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
