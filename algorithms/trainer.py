"""The RL loop: rollouts -> (AXPO exploration) -> group advantages -> clipped policy update.

    Trainer(algorithm="axpo" | "grpo", config=AXPOConfig(...), policy=..., env_id=...).train()

One argument swaps the algorithm: AXPO is GRPO plus `algorithms.axpo.explore`, which adds
resampled rollouts to the groups whose tool-using rollouts are all wrong; with nothing to
explore, an AXPO step is a GRPO step. The update runs through `accelerate`, so `accelerate
launch` runs the same code on several processes. Metrics go through stable-baselines3's logger
(stdout, JSONL, CSV, TensorBoard); checkpoints are written atomically and `resume` continues
exactly.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import axpo_env  # noqa: F401  (registers the envs)
from agents.hf import HFPolicy, TokenPrompt
from agents.loading import load_policy
from agents.policy import SamplingParams
from agents.pretrained import save_prompt_settings
from agents.rollout import EnvPool, Trajectory, rollout
from algorithms import axpo, lora, preflight, rollout_engine
from algorithms.checkpoint_state import apply_trainer_state, read_trainer_state, save_trainer_state
from algorithms.config import AXPOConfig, GRPOConfig
from algorithms.grpo import TrainBatch, TrainSample, grpo_batch, pad_left
from algorithms.held_out import HeldOut
from algorithms.logprobs import row_logprobs
from algorithms.loss import Normalizers, policy_loss, update_loss
from algorithms.outputs import (
    RL_PLOT_KEYS,
    make_logger,
    plot_history,
    read_latest,
    read_one,
    read_weights,
    seed_everything,
    write_checkpoint,
)
from algorithms.rewards import RewardFunc, answered_item
from axpo_view.record import record_step
from evaluation.metrics import rollout_metrics


class Trainer:
    """GRPO or AXPO on a tool-use env.

    Args:
        algorithm: "axpo" or "grpo".
        config: an `AXPOConfig` / `GRPOConfig` (default: the algorithm's defaults).
        policy: an `HFPolicy`, or a model spec for `agents.load_policy` (a checkpoint path or
            hub name; '' or 'tiny': the embedded tiny Qwen3-VL); None for `config.model`.
        env_id: overrides `config.env_id`.
        reward_funcs: the reward functions (names, import paths or callables
            `f(trajectory, item) -> float`, `algorithms.rewards`); overrides
            `config.reward_funcs`, weighted by `config.reward_weights`.
        peft_config: a `peft.LoraConfig` to train adapters with (TRL's argument); overrides the
            config's lora_* fields and implies use_peft.
    """

    def __init__(self, algorithm: str = "axpo", config: GRPOConfig | None = None,
                 policy: HFPolicy | str | None = None, env_id: str | None = None,
                 reward_funcs: Sequence[str | RewardFunc] | None = None,
                 peft_config: Any = None):
        if algorithm not in ("axpo", "grpo"):
            raise ValueError(f"algorithm must be 'axpo' or 'grpo' (SFT: algorithms.sft), "
                             f"got {algorithm!r}")
        self.algorithm = algorithm
        self.config = config or (AXPOConfig() if algorithm == "axpo" else GRPOConfig())
        if algorithm == "axpo" and not isinstance(self.config, AXPOConfig):
            self.config = AXPOConfig(**self.config.to_dict())
        if env_id:
            self.config = replace(self.config, env_id=env_id)
        cfg = self.config
        # Before the model loads (minutes for a real VLM): env, tools, task ids, resume target.
        first_env, task_ids = preflight.check_env(cfg)
        resume_from = preflight.check_resume(algorithm, cfg)
        self.rewards = preflight.check_rewards(cfg, reward_funcs)
        self.held_out = HeldOut(cfg, task_ids) if cfg.eval_steps else None
        seed_everything(cfg.seed)
        if not isinstance(policy, HFPolicy):
            base = str(policy or cfg.model) or "tiny"
            policy = load_policy(base, token_level=True, render_tools=cfg.render_tools)
        else:
            base = policy.model.name_or_path
            if cfg.render_tools is not None:
                policy.render_tools = cfg.render_tools
        if cfg.use_peft or peft_config is not None:
            if peft_config is not None and not cfg.use_peft:
                self.config = cfg = replace(cfg, use_peft=True)
            policy.model = lora.wrap(policy.model, peft_config or lora.lora_config(cfg))
        self.base_model = base  # what a LoRA checkpoint names as its base
        self.policy = policy

        from accelerate import Accelerator

        self.accelerator = Accelerator(mixed_precision="bf16" if cfg.bf16 else "no",
                                       cpu=not torch.cuda.is_available())
        self.optimizer = torch.optim.AdamW(
            _trainable(policy.model, cfg.trainable_parameters), lr=cfg.learning_rate,
            weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)))
        if cfg.gradient_checkpointing:
            policy.model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})
        # The reference only ever runs without gradients: keep it in the training dtype. Under
        # LoRA it is the base model itself, adapters off (`_reference_logprobs`).
        self.reference = _frozen_copy(policy.model).to(
            self.accelerator.device, torch.bfloat16 if cfg.bf16 else None) \
            if cfg.beta > 0 and not cfg.use_peft else None
        # The policy keeps the plain module (generation, scoring); updates go through the
        # prepared one, which under `accelerate launch` is DDP-wrapped and syncs gradients.
        self.model, self.optimizer = self.accelerator.prepare(policy.model, self.optimizer)

        self.env_kwargs = preflight.env_kwargs(cfg)
        # One pool of envs for the whole run: rollouts and AXPO's branches of every step reuse
        # them, so the task (a benchmark's dataset) loads once per env, not once per episode.
        self.envs = EnvPool(cfg.env_id, self.env_kwargs, envs=[first_env])
        self.task_ids = task_ids
        self.sampling = SamplingParams.of(cfg, seed=cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.output_dir = Path(cfg.output_dir)
        if resume_from is not None:  # the newest checkpoint that loads whole; damaged weights
            # are warned about and skipped, a refused trainer state raises (checkpoint_state)
            found = read_one(resume_from, self._read_checkpoint) if cfg.resume_from_checkpoint \
                else read_latest(self.output_dir, self._read_checkpoint)
            if found is not None:
                self._apply_checkpoint(found[1])
                if self.accelerator.is_main_process:
                    print(f"resuming {algorithm} from {found[0]} (step {self.step} of "
                          f"{cfg.max_steps})", file=sys.stderr)
        self.logger = make_logger(self.output_dir, cfg.report_to,
                                   self.accelerator.is_main_process, resumed_step=self.step)
        # What samples: the policy itself, or a vLLM engine loaded with its (resumed) weights.
        self.rollouts = rollout_engine.rollout_policy(cfg, policy)

    # ---------------------------------------------------------------------------------- loop

    def train(self) -> list[dict[str, float]]:
        """Run until `max_steps`; returns the metrics of every step."""
        cfg = self.config
        # `disable` only for other ranks: an explicit False would override TQDM_DISABLE
        off = {} if self.accelerator.is_main_process else {"disable": True}
        bar = tqdm(range(self.step, cfg.max_steps), desc=f"{self.algorithm} training",
                   unit="step", **off)
        for _ in bar:
            metrics = self.training_step()
            bar.set_postfix(reward=f"{metrics['reward']:.2f}",
                            tool_use=f"{metrics['tool_use_rate']:.2f}")
            evaluated = self.held_out is not None and self.held_out.due(self.step)
            if evaluated:  # the same dict the history holds
                metrics.update(self.held_out.evaluate(self.rollouts, self.sampling))
            if self.step % cfg.logging_steps == 0 or self.step == cfg.max_steps or evaluated:
                for key, value in metrics.items():
                    self.logger.record(key, value)
                self.logger.dump(self.step)
            if self.step % cfg.save_steps == 0 or self.step == cfg.max_steps:
                self.save_checkpoint()
        self.logger.close()
        self.envs.close()
        if self.held_out is not None:
            self.held_out.close()
        if self.rollouts is not self.policy:
            self.rollouts.close()
        if self.accelerator.is_main_process:
            keys = RL_PLOT_KEYS + (("eval/accuracy",) if self.held_out else ())
            plot_history(self.history, self.output_dir / "metrics.png", keys, self.algorithm)
        return self.history

    def training_step(self) -> dict[str, float]:
        """One step: sample tasks, roll out groups, explore (AXPO), update."""
        cfg, t0 = self.config, time.perf_counter()
        tasks = list(self.rng.choice(self.task_ids, size=cfg.tasks_per_step,
                                     replace=len(self.task_ids) < cfg.tasks_per_step))
        # Under `accelerate launch` every process draws the same tasks and rolls out its share.
        acc = self.accelerator
        tasks = tasks[acc.process_index::acc.num_processes]  # may be empty: update copes
        sampling = replace(self.sampling, seed=cfg.seed * 100_003 + self.step)
        trajectories = rollout(self.envs, self.rollouts, tasks, group_size=cfg.num_generations,
                               sampling=sampling, seed=cfg.seed + 1000 * self.step,
                               batch_size=cfg.generation_batch_size
                               or max(1, len(tasks) * cfg.num_generations), progress=False)
        groups = [trajectories[i:i + cfg.num_generations]
                  for i in range(0, len(trajectories), cfg.num_generations)]
        self._score(trajectories)
        metrics = rollout_metrics(groups, cfg.num_generations)
        metrics.update(self.rewards.metrics(trajectories))
        metrics["rollout_time"] = (t1 := time.perf_counter()) - t0
        if self.algorithm == "axpo":
            branches, stats = axpo.explore(groups, self.rollouts, self.envs, cfg, sampling,
                                           self.rng, env_kwargs=self.env_kwargs)
            self._score([t for b in branches for t in b.resamples])  # recovery reads them
            batch = axpo.axpo_batch(groups, branches, cfg)
            metrics.update(stats)
        else:
            batch = grpo_batch(groups, cfg)
        metrics["explore_time"] = (t2 := time.perf_counter()) - t1
        record_step(self, groups, branches if self.algorithm == "axpo" else [])  # axpo view
        if cfg.use_vllm:  # frees the engine's GPU memory for the update (sleep mode only)
            self.rollouts.engine.sleep()
        metrics.update(self.update(batch))
        metrics["update_time"] = time.perf_counter() - t2
        if cfg.use_vllm:  # the next rollouts sample the updated weights
            metrics["weight_sync_time"] = rollout_engine.sync(self.rollouts, self.policy.model)
        self.step += 1
        metrics["step_time"] = time.perf_counter() - t0
        metrics["step"] = float(self.step)
        self.history.append(metrics)
        return metrics

    def _score(self, trajectories: Sequence[Trajectory]) -> None:
        """The reward functions' terms and training reward on every rollout."""
        task = self.envs.envs[0].unwrapped.task
        self.rewards.score(trajectories, lambda t: answered_item(task, t))

    # -------------------------------------------------------------------------------- update

    def update(self, batch: TrainBatch) -> dict[str, float]:
        """`num_iterations` passes of the clipped loss over the batch's rows, each row with its
        own per-token advantages and mask (GRPO: one advantage a rollout; AXPO: two streams).

        Rows run in left-padded micro-batches of `per_device_train_batch_size`; every
        `gradient_accumulation_steps` micro-batches make one optimizer update (TRL's
        semantics, `algorithms.loss.update_loss`). Under several processes every one runs the
        same number of updates and joins every gradient sync, with a zero loss where it has
        nothing to train, so none waits forever."""
        cfg, acc = self.config, self.accelerator
        size, accumulation = cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps
        samples = batch.samples
        micro = [samples[i:i + size] for i in range(0, len(samples), size)]
        (sequences, tokens), (own, most) = self._sum_and_max(
            [batch.num_sequences, batch.num_tokens],
            [math.ceil(batch.num_sequences / size), len(micro)])
        if most == 0:  # no process has anything to train: all agree, nobody syncs
            return {"loss": 0.0, "trained_rollouts": 0.0}
        accumulation = accumulation or most  # None: the whole step is one update
        norm = Normalizers.of(sequences, tokens, own, accumulation, acc.num_processes)
        updates = math.ceil(most / accumulation)
        # The old policy (the clip's anchor) only differs from the current one once an update
        # happened within the step; its and the reference's logprobs need no gradients.
        old = [self._logprobs(mb, grad=False) for mb in micro] \
            if cfg.num_iterations > 1 or updates > 1 else None
        ref = self._reference_logprobs(micro) if cfg.beta > 0 else None
        stats: dict[str, list[float]] = {}
        model = self.model
        model.train()
        for _ in range(cfg.num_iterations):
            for u in range(updates):
                window = list(range(u * accumulation, min((u + 1) * accumulation, len(micro))))
                total = 0.0
                for k, j in enumerate(window or [None]):
                    last = k == max(len(window), 1) - 1  # DDP syncs on the window's last backward
                    with contextlib.nullcontext() if last else acc.no_sync(model):
                        if j is None:
                            loss = self._idle_loss()
                        else:
                            loss, info = self._micro_batch_loss(
                                micro[j], old[j] if old else None, ref[j] if ref else None, norm)
                            for key, value in info.items():
                                stats.setdefault(key, []).append(float(value))
                        if last and acc.num_processes > 1:  # every parameter joins the sync
                            loss = loss + 0.0 * sum(p.sum() for p in model.parameters())
                        acc.backward(loss)
                    total += loss.item()
                stats.setdefault("loss", []).append(total)
                clip = cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")
                stats.setdefault("grad_norm", []).append(
                    float(acc.clip_grad_norm_(model.parameters(), clip)))
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad()
        model.eval()
        out = {k: float(np.mean(v)) for k, v in stats.items()}
        out["trained_rollouts"] = float(len(samples))
        out["trained_tokens"] = float(sum(int(s.mask.sum()) for s in samples))
        out["optimizer_updates"] = float(updates * cfg.num_iterations)
        out["learning_rate"] = float(self.scheduler.get_last_lr()[0])
        return out

    def _reference_logprobs(self, micro: Sequence[Sequence[TrainSample]]) -> list[torch.Tensor]:
        """Each micro-batch's logprobs under the KL reference: the frozen copy, or under LoRA
        the base (the adapters switched off)."""
        if self.reference is not None:
            return [self._logprobs(mb, self.reference) for mb in micro]
        with lora.base_only(self.policy.model):
            return [self._logprobs(mb, self.model, grad=False) for mb in micro]

    def _micro_batch_loss(self, rows: Sequence[TrainSample], old: torch.Tensor | None,
                          ref: torch.Tensor | None, norm: Normalizers
                          ) -> tuple[torch.Tensor, dict[str, float]]:
        """One micro-batch's clipped loss, scaled to its share of the optimizer update."""
        cfg = self.config
        logp = self._logprobs(rows)
        width = logp.shape[1]
        advantages = pad_left([s.advantages for s in rows], width).to(logp.device)
        mask = pad_left([s.mask for s in rows], width).to(logp.device)
        old = logp.detach() if old is None else old
        weights = None
        if cfg.use_vllm:  # how far the engine's sampling distribution is from the trainer's
            sampled = rollout_engine.sampled_logprobs(rows, width).to(logp.device)
            weights, gap = rollout_engine.importance_weights(
                old, sampled, mask, cfg.vllm_importance_sampling_cap)
            weights = weights if cfg.vllm_importance_sampling_correction else None
        loss, info = policy_loss(
            logp, old, advantages, mask,
            epsilon=cfg.epsilon, epsilon_high=cfg.epsilon_high, loss_type=cfg.loss_type,
            max_completion_length=cfg.max_completion_length, ref_logprobs=ref, beta=cfg.beta,
            num_items_in_batch=norm.tokens / norm.windows if cfg.loss_type == "dapo" else None,
            num_processes=norm.num_processes, importance_weights=weights)
        if cfg.use_vllm:
            info.update(gap)
        return update_loss(loss, cfg.loss_type, len(rows), norm), info

    def _idle_loss(self) -> torch.Tensor:
        """A zero loss through the (DDP) model, for a process with no rows in an update: its
        forward arms the gradient sync the other processes are waiting in."""
        pad = self.policy.pad_id
        return self.policy.forward_logits([TokenPrompt([pad, pad])], self.model)[0].sum() * 0.0

    def _sum_and_max(self, sums: list[float], maxes: list[int]
                     ) -> tuple[list[float], list[int]]:
        """`sums` summed and `maxes` maximized over processes (as they are with one)."""
        if self.accelerator.num_processes == 1:
            return [float(v) for v in sums], [int(v) for v in maxes]
        import torch.distributed as dist

        device = self.accelerator.device
        a = torch.tensor(sums, dtype=torch.float64, device=device)
        b = torch.tensor(maxes, dtype=torch.int64, device=device)
        dist.all_reduce(a, op=dist.ReduceOp.SUM)
        dist.all_reduce(b, op=dist.ReduceOp.MAX)
        return a.tolist(), b.tolist()

    def _logprobs(self, rows: Sequence[TrainSample], model: Any = None,
                  grad: bool = True) -> torch.Tensor:
        """`algorithms.logprobs.row_logprobs` of a micro-batch under `model` (default: the
        policy, the only pass with gradients) at the training temperature."""
        run = model or self.model
        return row_logprobs(self.policy, rows, run, self.accelerator.unwrap_model(run),
                            self.config.temperature, grad=grad and model is None)

    # ---------------------------------------------------------------------------- checkpoints

    def save_checkpoint(self) -> Path:
        """Model, processor, optimizer, scheduler, RNG states and step, written atomically."""

        def write(folder: Path) -> None:
            self.policy.model.save_pretrained(folder)
            if lora.is_peft(self.policy.model):
                lora.record_base(folder, self.base_model)
            self.policy.processor.save_pretrained(folder)
            save_prompt_settings(folder, self.policy.render_tools)
            save_trainer_state(folder, self.optimizer, self.scheduler, self.rng)
            (folder / "trainer.json").write_text(json.dumps(
                {"step": self.step, "algorithm": self.algorithm,
                 "config": self.config.to_dict(), "history": self.history}, indent=1))

        return write_checkpoint(self.accelerator, self.output_dir, self.step, write,
                                keep=self.config.save_total_limit)

    def load_checkpoint(self, path: Path | None) -> None:
        """Continue from a checkpoint written by `save_checkpoint` (None: start fresh). It loads
        whole or not at all: a missing, truncated or mismatched file raises before anything
        changes."""
        if path is not None:
            self._apply_checkpoint(self._read_checkpoint(Path(path)))

    def _read_checkpoint(self, path: Path) -> tuple[dict, dict, int, list]:
        saved = read_trainer_state(path, self.optimizer)  # first: a hostile one always stops
        model = self.policy.model
        state = lora.read_adapter(path, model) if lora.is_peft(model) \
            else read_weights(path, model)
        meta = json.loads((path / "trainer.json").read_text())
        return state, saved, int(meta["step"]), list(meta["history"])

    def _apply_checkpoint(self, loaded: tuple[dict, dict, int, list]) -> None:
        state, saved, self.step, self.history = loaded
        if lora.is_peft(self.policy.model):
            lora.apply_adapter(self.policy.model, state)
        else:
            self.policy.model.load_state_dict(state, strict=False)  # checked: tied copies left
        apply_trainer_state(saved, self.optimizer, self.scheduler, self.rng)


def _trainable(model: Any, pattern: str | None) -> list[Any]:
    """The parameters the optimizer updates: all, or those whose names match `pattern`, the rest
    frozen (no gradients, so no time spent on them in the backward pass)."""
    if pattern is None:  # all (under LoRA: the adapters, the only ones left trainable)
        return [p for p in model.parameters() if p.requires_grad]
    named = list(model.named_parameters())
    for name, p in named:
        p.requires_grad_(re.search(pattern, name) is not None)
    if not (params := [p for _, p in named if p.requires_grad]):
        raise ValueError(f"trainable_parameters {pattern!r} matches no parameter of the model; "
                         f"its names look like {', '.join(n for n, _ in named[:3])}")
    return params


def _frozen_copy(model: Any) -> Any:
    import copy

    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


