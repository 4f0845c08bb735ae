"""Reward functions: the reward a rollout trains on, as a weighted sum of named functions.

    Trainer("grpo", GRPOConfig(reward_funcs=["task", "my_rewards.py:brevity"],
                               reward_weights=[1.0, 0.2]))

TRL's `reward_funcs` / `reward_weights` and verifiers' `Rubric`, for multi-turn tool-use
episodes. A reward function takes the whole rollout and the task item it answered,

    def brevity(trajectory: Trajectory, item: TaskItem) -> float: ...

so it can read every turn (`trajectory.turns[i].completion.text`), the env's verdict and counts
(`trajectory.reward`, `trajectory.info`) and the ground truth (`item.answer`, `item.metadata`).
Config files and the CLI name a function by an import path, 'package.module:function' or
'path/to/file.py:function'; Python callers may also pass the callable itself. Built in:

- `task`: the task's score of the final answer (the env's reward; 0 when it never answered),
- `tool_use`: 1 if the rollout called a tool (`tool_reward` is this with its weight),
- `format`: 1 if the rollout answered and every turn parsed (no format errors).

The trainer scores every rollout, AXPO's resamples included, before advantages are computed:
each function's value lands in `trajectory.reward_terms`, the weighted sum in
`trajectory.training_reward`, which GRPO's advantages and AXPO's recovery reward read. Each
function is logged on its own (`rewards/NAME/mean`, `rewards/NAME/std`), as TRL logs them.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.rollout import Trajectory
from axpo_env.tasks.base import Task, TaskItem

RewardFunc = Callable[[Trajectory, TaskItem], float]


def task_reward(trajectory: Trajectory, item: TaskItem) -> float:
    """The task's score of the final answer (0 when the episode never answered)."""
    return trajectory.reward


def tool_use_reward(trajectory: Trajectory, item: TaskItem) -> float:
    """1 if the rollout made at least one tool call, right or wrong."""
    return 1.0 if trajectory.used_tool else 0.0


def format_reward(trajectory: Trajectory, item: TaskItem) -> float:
    """1 if the rollout ended with an answer and none of its turns was a format error."""
    answered = trajectory.info.get("answer") is not None
    return 1.0 if answered and trajectory.info.get("format_errors", 0) == 0 else 0.0


BUILTIN: dict[str, RewardFunc] = {
    "task": task_reward, "tool_use": tool_use_reward, "format": format_reward}


def answered_item(task: Task, trajectory: Trajectory) -> TaskItem:
    """The item as the rollout's episode showed it (a task may vary it by the episode's seed:
    V* shuffles its options), as `ToolUseEnv.restore` rebuilds it."""
    seed = trajectory.turns[0].snapshot.seed if trajectory.turns else None
    return task.episode_item(task.items[task.index_of(trajectory.task_id)], seed)


class RewardError(ValueError):
    """A reward function that cannot be loaded, or that failed or returned a non-number."""


def load_reward_func(spec: str | RewardFunc) -> tuple[str, RewardFunc]:
    """(name, function) for a built-in name, an import path or a callable."""
    if callable(spec):
        return getattr(spec, "__name__", type(spec).__name__), spec
    if spec in BUILTIN:
        return spec, BUILTIN[spec]
    where, _, attr = str(spec).rpartition(":")
    if not where or not attr:
        raise RewardError(f"reward function {spec!r}: not a built-in ({', '.join(BUILTIN)}) nor "
                          "an import path 'package.module:function' or 'file.py:function'")
    try:
        module = _import_file(Path(where)) if where.endswith(".py") \
            else importlib.import_module(where)
    except Exception as e:  # the user's module: any error while importing it is theirs
        raise RewardError(f"reward function {spec!r}: cannot import {where} "
                          f"({type(e).__name__}: {e})") from None
    func = getattr(module, attr, None)
    if not callable(func):
        raise RewardError(f"reward function {spec!r}: {where} has no function {attr!r}")
    return attr, func


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"no file {path}")
    name = f"axpo_reward_{path.stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@dataclass
class Rewards:
    """A run's reward functions with their weights. `score` writes every rollout's terms and
    training reward; `metrics` summarizes a step's."""

    names: list[str]
    funcs: list[RewardFunc]
    weights: list[float]

    @classmethod
    def of(cls, funcs: Sequence[str | RewardFunc] | None, weights: Sequence[float] | None,
           tool_reward: float = 0.0) -> Rewards:
        """The functions `funcs` (None: the task's score alone) weighted by `weights` (None: all
        1.0), plus `tool_use` weighted `tool_reward` when that is not 0."""
        loaded = [load_reward_func(f) for f in (funcs if funcs is not None else ["task"])]
        if weights is not None and len(weights) != len(loaded):
            raise RewardError(f"reward_weights has {len(weights)} value(s) for {len(loaded)} "
                              f"reward function(s) ({', '.join(n for n, _ in loaded)})")
        weights = list(weights) if weights is not None else [1.0] * len(loaded)
        if tool_reward:
            if any(n == "tool_use" for n, _ in loaded):
                raise RewardError("tool_reward adds the tool_use reward: set tool_reward or "
                                  "list tool_use in reward_funcs, not both")
            loaded.append(("tool_use", tool_use_reward))
            weights.append(tool_reward)
        names = [n for n, _ in loaded]
        if len(set(names)) < len(names):
            raise RewardError(f"reward functions need distinct names, got {names}")
        return cls(names, [f for _, f in loaded], [float(w) for w in weights])

    def score(self, trajectories: Sequence[Trajectory], item_of: Callable[[Trajectory], TaskItem]
              ) -> None:
        """Fill `reward_terms` and `training_reward` of every rollout that finished without
        error (`item_of` gives the item a rollout answered)."""
        for t in trajectories:
            if t.error is not None:
                continue
            item = item_of(t)
            t.reward_terms = {n: self._call(n, f, t, item) for n, f in zip(self.names, self.funcs)}
            t.training_reward = float(sum(w * t.reward_terms[n]
                                          for n, w in zip(self.names, self.weights)))

    @staticmethod
    def _call(name: str, func: RewardFunc, trajectory: Trajectory, item: TaskItem) -> float:
        try:
            value = func(trajectory, item)
        except Exception as e:  # a bug in the user's function: stop, naming it and the task
            raise RewardError(f"reward function {name!r} failed on task {trajectory.task_id!r}: "
                              f"{type(e).__name__}: {e}") from e
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value):
            raise RewardError(f"reward function {name!r} returned {value!r} on task "
                              f"{trajectory.task_id!r}; it must return a finite number")
        return float(value)

    def metrics(self, trajectories: Sequence[Trajectory]) -> dict[str, float]:
        """Mean and std of each function's value and of the weighted sum, over the scored
        rollouts (TRL's `rewards/NAME/mean` keys)."""
        scored = [t for t in trajectories if t.training_reward is not None]
        out: dict[str, float] = {}
        for name in self.names:
            values = [t.reward_terms[name] for t in scored]
            out[f"rewards/{name}/mean"] = float(np.mean(values)) if values else 0.0
            out[f"rewards/{name}/std"] = float(np.std(values)) if values else 0.0
        totals = [t.training_reward for t in scored]
        out["training_reward"] = float(np.mean(totals)) if totals else 0.0
        return out
