"""AXPO (Agent Explorative Policy Optimization, 2026): resample the tool call of failed rollouts.

Under GRPO a group whose tool-using rollouts are all wrong gives its tool calls no learning
signal (the paper's Thinking-Acting Gap). For such a group AXPO

1. keeps a failed rollout's ids through the opening `<tool_call>` of its first call (`prefix`),
2. ranks those sources least confident first by the mean probability of the sampled tokens of
   the serialized call (`<tool_call>` ... `</tool_call>`),
3. spends `resample_ratio` of the step's rollouts, in blocks of K, breadth-first across the
   triggered questions,
4. restores the env before that turn and samples K continuations of the prefix (`resample`),
5. trains two streams: the K resamples as their own group on their continuations (Eq. 2), and
   the source's prefix with the advantage it gets in its group when its reward is replaced by the
   recovery reward, 1 if any resample is right (Eq. 3-4); its failed continuation is masked.

Each step of that is a switch of `AXPOConfig` (the paper's Table 2 ablations), and
`exploration="arpo"` swaps in ARPO's entropy-triggered branching (its Table 3 baseline).
Decisions where the paper is silent: a rollout with several calls is cut at its first call; a
group of K resamples with equal rewards gets advantage 0 (the std gets TRL's 1e-4, so 0 / 1e-4);
questions in a breadth-first round are served least confident candidate first; the budget counts
the rollouts this process made, and an unspent budget is not carried over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from agents.policy import SamplingParams, TokenPolicy
from agents.rollout import BranchPoint, Envs, Trajectory, branch_many
from algorithms.config import AXPOConfig
from algorithms.grpo import TrainBatch, grpo_batch, shaped_reward, train_sample, trainable
from algorithms.loss import group_advantages


@dataclass
class Branch:
    """Resamples of one question: from `source`'s turn `turn`, keeping its first `keep`
    generated ids (through the opening tag; 0 resamples the whole turn). `score` ranked it."""

    group: int
    source: int
    turn: int
    keep: int
    score: float
    resamples: list[Trajectory] = field(default_factory=list)

    @property
    def recovered(self) -> bool:
        return any(t.correct for t in self.resamples)


def tool_using_subgroup(group: Sequence[Trajectory]) -> list[int]:
    """Indices of the rollouts that made at least one tool call."""
    return [i for i, t in enumerate(group) if t.used_tool]


def no_tool_subgroup(group: Sequence[Trajectory]) -> list[int]:
    return [i for i, t in enumerate(group) if not t.used_tool]


def all_wrong(group: Sequence[Trajectory], members: Sequence[int]) -> bool:
    return bool(members) and not any(group[i].correct for i in members)


def action_confidence(trajectory: Trajectory, turn: int) -> float:
    """Mean probability of the sampled tokens of the turn's action span (the serialized tool
    call, tags included, no thinking, no EOS): the paper's uncertainty score, free of any extra
    forward pass. Lower means less confident."""
    t = trajectory.turns[turn]
    span = t.action
    return float(np.mean(np.exp(t.completion.logprobs[span.start:span.end])))


def candidates(group: Sequence[Trajectory], g: int, config: AXPOConfig) -> list[Branch]:
    """Where AXPO may branch in one group, best first; empty unless the subgroup it resamples
    (tool-using, or no-tool for the ablation) exists and is all wrong."""
    kind = "call" if config.resample_subgroup == "tool" else "answer"
    members = (tool_using_subgroup if kind == "call" else no_tool_subgroup)(group)
    if not all_wrong(group, members):
        return []
    found = []
    for i in members:
        t = group[i]
        first = next((j for j, turn in enumerate(t.turns)
                      if turn.action is not None and turn.action.kind == kind), None)
        if t.error is not None or first is None:
            continue
        keep = t.turns[first].action.opened  # the whole opening tag stays in the prefix
        found.append(Branch(g, i, first, keep, action_confidence(t, first)))
    if not config.prefix_fix:  # ablation: the resamples start from the question
        found = [replace(b, turn=0, keep=0) for b in found]
    return sorted(found, key=lambda b: b.score)  # least confident first


def arpo_candidates(group: Sequence[Trajectory], g: int, config: AXPOConfig) -> list[Branch]:
    """ARPO's branch points: turns right after a tool result whose first `arpo_window` tokens
    are more uncertain (mean entropy) than the rollout's first turn; any rollout, right or
    wrong. Scored by minus the entropy rise, so the biggest rise comes first."""
    found = []
    for i, t in enumerate(group):
        if t.error is not None or not t.turns:
            continue
        w = config.arpo_window
        initial = float(np.mean(t.turns[0].completion.entropies[:w] or [0.0]))
        for j in range(1, len(t.turns)):
            after_call = t.turns[j - 1].action is not None and t.turns[j - 1].action.kind == "call"
            rise = float(np.mean(t.turns[j].completion.entropies[:w] or [0.0])) - initial
            if after_call and rise > 0:
                found.append(Branch(g, i, j, 0, -rise))
    return sorted(found, key=lambda b: b.score)


def allocate(per_group: Sequence[list[Branch]], blocks: int, config: AXPOConfig,
             rng: np.random.Generator) -> list[Branch]:
    """Breadth-first: round r gives every triggered question its r-th candidate before any
    gets an (r+1)-th, until `blocks` are spent. Within a round, best score first ('uncertainty')
    or a random order ('random', which also draws each question's candidates at random)."""
    if config.ranking == "random":
        per_group = [[c[i] for i in rng.permutation(len(c))] for c in per_group]
    chosen: list[Branch] = []
    for r in range(max((len(c) for c in per_group), default=0)):
        round_r = [c[r] for c in per_group if len(c) > r]
        if config.ranking == "random":
            round_r = [round_r[i] for i in rng.permutation(len(round_r))]
        else:
            round_r.sort(key=lambda b: b.score)
        chosen += round_r[:blocks - len(chosen)]
        if len(chosen) >= blocks:
            break
    return chosen


def explore(groups: Sequence[Sequence[Trajectory]], policy: TokenPolicy, env: Envs,
            config: AXPOConfig, sampling: SamplingParams, rng: np.random.Generator,
            env_kwargs: dict | None = None) -> tuple[list[Branch], dict[str, float]]:
    """Pick the step's branch points and resample K continuations from each. Returns the
    branches (with their resamples) and the paper's diagnostics."""
    find = arpo_candidates if config.exploration == "arpo" else candidates
    per_group = [find(group, g, config) for g, group in enumerate(groups)]
    n_rollouts = sum(len(group) for group in groups)
    blocks = int(config.resample_ratio * n_rollouts // config.resamples_per_prefix)
    branches = allocate([c for c in per_group if c], blocks, config, rng)
    points = [BranchPoint(groups[b.group][b.source], b.turn, b.keep, config.resamples_per_prefix)
              for b in branches]  # one batch: every branch's resamples play on together
    if sampling.seed is not None:  # not the random stream of the step's first rollouts
        sampling = replace(sampling, seed=sampling.seed + 104_729)
    for chosen, resamples in zip(branches, branch_many(points, policy, env, sampling,
                                                       env_kwargs=env_kwargs)):
        chosen.resamples = resamples
    made = [t for b in branches for t in b.resamples]
    stats = {
        "axpo/triggered_questions": float(sum(bool(c) for c in per_group)),
        "axpo/selected_prefixes": float(len(branches)),
        "axpo/resamples": float(len(made)),
        "axpo/resamples_correct": float(sum(t.correct for t in made)),
        "axpo/recovery_rate": float(np.mean([b.recovered for b in branches])) if branches else 0.0,
        "axpo/budget_blocks": float(blocks),
    }
    return branches, stats


def axpo_batch(groups: Sequence[Sequence[Trajectory]], branches: Sequence[Branch],
               config: AXPOConfig) -> TrainBatch:
    """GRPO's batch with AXPO's two streams written in (Eq. 2-5). Rows not explored keep their
    GRPO advantage and weight; the resample rows are added on top (normalizers unchanged)."""
    batch = grpo_batch(groups, config)
    row = {id(s.trajectory): s for s in batch.samples}
    arpo = config.exploration == "arpo"
    joint = arpo or not config.separate_advantage_group
    scale = "group" if config.scale_rewards == "batch" else config.scale_rewards

    def rewards(trajectories: Sequence[Trajectory]) -> torch.Tensor:
        return torch.tensor([shaped_reward(t, config) for t in trajectories])

    for g, group in enumerate(groups):
        mine = [b for b in branches if b.group == g]
        originals = [t for t in group if trainable(t)]
        resamples = [t for b in mine for t in b.resamples if trainable(t)]
        if not mine:
            continue
        if joint:  # ablation / ARPO: resamples join the group, everyone normalized together
            members = originals + resamples
            for t, a in zip(members, group_advantages(rewards(members), [0] * len(members),
                                                      scale)):
                row.setdefault(id(t), train_sample(t, config)).advantages.fill_(float(a))
        for b in mine:
            continuations = [t for t in b.resamples if trainable(t)]
            if not joint and continuations:  # Eq. 2: the K resamples are their own group
                resample_advantages = group_advantages(
                    rewards(continuations), [0] * len(continuations), scale)
                for t, a in zip(continuations, resample_advantages):
                    row[id(t)] = train_sample(t, config, float(a))
            source = group[b.source]
            if arpo or not config.prefix_credit or not config.prefix_fix \
                    or id(source) not in row or not b.resamples:
                continue
            recovery_reward = max(shaped_reward(t, config) for t in b.resamples)  # Eq. 3
            at = next(i for i, t in enumerate(originals) if t is source)
            credited = rewards(originals)
            credited[at] = recovery_reward
            others = [t for t in resamples if joint]
            if others:
                credited = torch.cat([credited, rewards(others)])
            prefix_advantage = group_advantages(credited, [0] * len(credited), scale)[at]  # Eq. 4
            cut = source.turns[b.turn].generated_start + b.keep  # ids before this: t1_src
            src = row[id(source)]
            src.mask[cut - 1:] = 0  # the failed continuation is masked
            src.advantages.fill_(float(prefix_advantage))
    batch.samples = [s for s in row.values() if s.mask.any()]
    return batch

