"""Held-out evaluation during training (TRL's `eval_steps`): is the policy learning the task, or
its training questions?

Every `eval_steps` steps and at the end, the trainer plays `eval_num_generations` rollouts of
each held-out task with its rollout policy and logs the step's metrics under `eval/` (accuracy,
pass@k, tool use, the Thinking-Acting Gap shares). The tasks, the episode seeds and the sampling
seed are the same at every evaluation, so two evaluations of one run, or of two runs (GRPO and
AXPO from one start), differ only by the policy.
"""

from __future__ import annotations

import sys
from dataclasses import replace

from agents.policy import SamplingParams, TokenPolicy
from agents.rollout import EnvPool, rollout
from algorithms import preflight
from algorithms.config import GRPOConfig
from evaluation.metrics import rollout_metrics

EVAL_SEED = 7_777_777  # apart from every training step's episode and sampling seeds


class HeldOut:
    """The run's held-out tasks, checked (and their envs made) before the model loads."""

    def __init__(self, config: GRPOConfig, train_task_ids: list[str]):
        self.config = config
        held = replace(config, split=config.eval_split or config.split,
                       task_ids=config.eval_task_ids)
        try:
            env, self.task_ids = preflight.check_env(held)
        except preflight.RunError as e:
            raise preflight.RunError(f"held-out evaluation: {e}".replace(
                "(--task-ids)", "(--eval-task-ids)")) from None
        self.envs = EnvPool(held.env_id, preflight.env_kwargs(held), envs=[env])
        same_split = (held.split or None) == (config.split or None)
        overlap = set(self.task_ids) & set(train_task_ids) if same_split else set()
        if overlap:
            print(f"warning: {len(overlap)} of the {len(self.task_ids)} held-out tasks are "
                  "also trained on; set eval_task_ids or eval_split to tasks the run does not "
                  "train on", file=sys.stderr)

    def due(self, step: int) -> bool:
        cfg = self.config
        return step % cfg.eval_steps == 0 or step == cfg.max_steps  # type: ignore[operator]

    def evaluate(self, policy: TokenPolicy, sampling: SamplingParams) -> dict[str, float]:
        """`eval/`-prefixed metrics of one round of held-out rollouts."""
        cfg, k = self.config, self.config.eval_num_generations
        trajectories = rollout(self.envs, policy, self.task_ids, group_size=k,
                               sampling=replace(sampling, seed=EVAL_SEED), seed=EVAL_SEED,
                               batch_size=cfg.generation_batch_size
                               or max(1, len(self.task_ids) * k), progress=False)
        groups = [trajectories[i:i + k] for i in range(0, len(trajectories), k)]
        return {f"eval/{key}": value for key, value in rollout_metrics(groups, k).items()}

    def close(self) -> None:
        self.envs.close()
