"""What `Trainer` checks before it loads the model, so that a typo costs a second, not minutes.

A real VLM takes minutes to load; an unknown env id, tool name, task id or reward function, or a
`resume` into a run of another algorithm, env or set of trainable parameters would otherwise
surface after it, as a traceback. Each is a `RunError` here: one line naming the fix.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

from algorithms.config import GRPOConfig
from algorithms.outputs import checkpoints
from algorithms.rewards import RewardError, RewardFunc, Rewards
from axpo_env import AxpoError, registered_envs

# Settings a resumed run must share with the run that wrote the checkpoint: the optimizer's
# state, the history and the metrics would not mean what they say otherwise.
RESUME_MUST_MATCH = ("env_id", "trainable_parameters", "use_peft", "lora_r", "lora_target_modules",
                     "tool_call_format")


class RunError(ValueError):
    """A training run that cannot start as configured; the message says what to change."""


def env_kwargs(config: GRPOConfig) -> dict[str, Any]:
    """The keyword arguments every env of the run is made with."""
    kwargs: dict[str, Any] = {"max_turns": config.max_turns}
    if config.tools is not None:
        kwargs["tools"] = list(config.tools)
    if config.tool_call_format != "hermes":  # a plugin env need not take the keyword
        kwargs["tool_call_format"] = config.tool_call_format
    if config.split is not None:
        kwargs["split"] = config.split
    if config.data_dir is not None:
        kwargs["data_dir"] = config.data_dir
    if config.task_options:
        kwargs["task_options"] = config.task_kwargs
    return kwargs


def check_env(config: GRPOConfig) -> tuple[gym.Env, list[str]]:
    """One env of the run, made as the run makes them (env id, tools), and the run's task ids,
    checked against it. The caller owns the env (the trainer's pool reuses it)."""
    try:
        env = gym.make(config.env_id, **env_kwargs(config))
        known = list(env.unwrapped.task.task_ids)  # loads the data: a bad split or path fails
    except gym.error.Error as e:  # not registered (gymnasium suggests a near name)
        raise RunError(f"unknown env {config.env_id!r} ({e}); registered: "
                       f"{', '.join(registered_envs())} (--env-id)") from None
    except TypeError as e:  # an option the task's constructor does not take
        reason = str(e).split(" was raised from the environment creator")[0]
        raise RunError(f"cannot make {config.env_id} with task_options {config.task_options}: "
                       f"{reason} (--task-options)") from None
    except (AxpoError, ValueError, LookupError) as e:  # tools, options, split, data (DatasetError)
        made = ", ".join(f"{k}={v!r}" for k, v in env_kwargs(config).items() if k != "max_turns")
        raise RunError(f"cannot make {config.env_id}" + (f" with {made}" if made else "")
                       + f": {' '.join(str(e).split())}") from None
    unknown = [t for t in config.task_ids or [] if t not in known]
    if unknown:
        env.close()
        shown = ", ".join(known[:20]) + (" ..." if len(known) > 20 else "")
        raise RunError(f"task id(s) {unknown} are not in {config.env_id}; its ids: {shown} "
                       "(--task-ids)")
    return env, list(config.task_ids or known)


def check_rewards(config: GRPOConfig, funcs: Sequence[str | RewardFunc] | None = None
                  ) -> Rewards:
    """The run's reward functions (`funcs`, else `config.reward_funcs`), imported and matched
    with their weights."""
    try:
        return Rewards.of(funcs if funcs is not None else config.reward_funcs,
                          config.reward_weights, config.tool_reward)
    except RewardError as e:
        raise RunError(f"{e} (--reward-funcs, --reward-weights)") from None


def check_resume(algorithm: str, config: GRPOConfig) -> Path | None:
    """The checkpoint a `resume` run continues from (None: no checkpoint, a fresh start),
    after checking that it was written by a run of the same algorithm and settings."""
    if config.resume_from_checkpoint:
        found = [Path(config.resume_from_checkpoint)]
        if not (found[0] / "trainer.json").is_file():
            raise RunError(f"--resume-from-checkpoint {found[0]}: not a checkpoint folder (no "
                           "trainer.json); give a checkpoint-N folder of a run")
    elif not config.resume:
        return None
    else:
        found = checkpoints(Path(config.output_dir))
    if not found:
        return None
    try:
        saved = json.loads((found[0] / "trainer.json").read_text())
    except (OSError, ValueError):
        return found[0]  # damaged: the trainer falls back to an older one, with a warning
    fix = f"resume off, or another --output-dir than {config.output_dir}"
    if saved.get("algorithm", algorithm) != algorithm:
        raise RunError(f"--resume: {found[0]} is a {saved['algorithm']} run, this is "
                       f"{algorithm}; use --algo {saved['algorithm']}, or {fix}")
    old = saved.get("config", {})
    for name in RESUME_MUST_MATCH:
        if name in old and old[name] != getattr(config, name):
            raise RunError(f"--resume: {found[0]} was trained with {name}={old[name]!r}, this "
                           f"run has {getattr(config, name)!r}; set it back, or {fix}")
    return found[0]
