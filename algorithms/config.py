"""Training configurations: `SFTConfig`, `GRPOConfig` and `AXPOConfig(GRPOConfig)`.

Modelled on TRL's `GRPOConfig` (`trl/trainer/grpo_config.py`): one dataclass per trainer, every
knob named, defaulted and justified, field names shared with TRL where the meaning is the same.
Each field's `metadata["help"]` is its only documentation: the class docstrings below list it,
grouped by concern, and the `axpo` command (`axpo_cli`) shows it as `--help`, so the two
never drift apart. Validation happens in `__post_init__`; `to_dict`/`from_dict` round-trip a
config through JSON for checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from axpo_env.config_fields import ToolCallFormat, literal_choices, string_list
from axpo_env.config_fields import check as _check
from axpo_env.config_fields import config_field as _field
from axpo_env.config_fields import documented as _document
from axpo_env.config_fields import tool_call_format_field as _format_field

REPORTERS = ("jsonl", "csv", "tensorboard", "stdout")

_C = TypeVar("_C", bound="_Config")


@dataclass
class _Config:
    """Fields and checks every trainer shares; not used on its own."""

    model: str = _field(
        "", "Checkpoint directory or Hugging Face hub name of the policy (a Qwen3-VL model or any "
        "causal LM). '' or 'tiny' uses the embedded tiny model, which builds offline in a second: "
        "for smoke tests, not for results.", "model")
    seed: int = _field(
        0, "Seed of everything random in the run (task order, sampling, branch choice), so a run "
        "is reproducible.", "training")
    weight_decay: float = _field(
        0.0, "AdamW weight decay. 0.0 as in transformers' TrainingArguments and TRL.", "training")
    warmup_steps: int = _field(
        0, "Optimizer steps of linear learning-rate warmup from 0. 0 (a constant rate) as in "
        "TrainingArguments and TRL.", "training")
    max_grad_norm: float = _field(
        1.0, "Clip the global gradient norm to this (0 disables clipping). 1.0 as in "
        "TrainingArguments and TRL.", "training")
    bf16: bool = _field(
        False, "Train in bfloat16 mixed precision. TRL defaults to True because it assumes a GPU; "
        "axpo defaults to False so the embedded tiny model trains exactly on a CPU. Turn it on for "
        "real models on GPUs with bf16 support.", "training")
    report_to: list[str] = _field(
        list(REPORTERS), "Where metrics go, comma-separated: jsonl and csv (files in "
        "output_dir), tensorboard (event files in output_dir), stdout. 'none' turns all off.",
        "logging")

    def __post_init__(self) -> None:
        name = type(self).__name__
        _check(isinstance(self.model, str), f"{name}.model must be a string, got {self.model!r}")
        _check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _check(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        _check(self.max_grad_norm >= 0,
               f"max_grad_norm must be >= 0 (0 disables clipping), got {self.max_grad_norm}")
        report_to = [self.report_to] if isinstance(self.report_to, str) else list(self.report_to)
        self.report_to = [] if report_to == ["none"] else report_to
        unknown = [r for r in self.report_to if r not in REPORTERS]
        _check(not unknown, f"report_to: unknown reporter(s) {unknown}; choose from "
               f"{list(REPORTERS)} or 'none'")
        for field_name, choices in literal_choices(type(self)).items():
            value = getattr(self, field_name)
            _check(value in choices,
                   f"{field_name} must be one of {list(choices)}, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain JSON-safe values, e.g. to save beside a checkpoint."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[_C], values: dict[str, Any]) -> _C:
        """Rebuild a config from `to_dict()` output; unknown keys are an error, not ignored."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        _check(not unknown, f"unknown {cls.__name__} key(s): {', '.join(unknown)}. "
               f"Valid keys: {', '.join(names)}")
        return cls(**values)


@_document
@dataclass
class GRPOConfig(_Config):
    """Configuration of GRPO on a tool-use environment (`Trainer(algorithm="grpo")`).

    Each step samples `tasks_per_step` tasks, runs `num_generations` multi-turn rollouts of each
    (a group), normalizes rewards within each group into advantages and updates the policy with
    the clipped surrogate loss on the tokens the policy generated (Shao et al., 2024, DeepSeekMath).
    Defaults follow TRL's `GRPOConfig` where the meaning matches; where axpo differs, the
    field says why.
    """

    # Model and environment
    env_id: str = _field(
        "AXPO-MathVista-v0", "Gymnasium id of the task environment; any registered axpo env "
        "(including plugin tasks). MathVista is the AXPO paper's visual math benchmark.", "model")
    tools: list[str] | None = _field(
        None, "Tool names the agent may call, comma-separated. None: the task's default tools.",
        "model")
    task_ids: list[str] | None = _field(
        None, "Train on these task ids only, comma-separated. None: all tasks of the split.",
        "model")
    split: str | None = _field(
        None, "Split of the task to train on. None: the task's default split.", "model")
    data_dir: str | None = _field(
        None, "The task's data: a local file/folder in the benchmark's published layout, or a "
        "hub dataset name. None: the task's bundled fixture (or its embedded generator).",
        "model")
    task_options: list[str] | None = _field(
        None, "Options for the task's constructor as KEY=VALUE pairs, comma-separated, e.g. "
        "scoring=official (values read as JSON where they parse: 3, true, 0.5). None: the "
        "task's defaults.", "model")
    render_tools: bool | None = _field(
        None, "Put the env's tool schemas in the prompt (the chat template's tools=). None: as "
        "the checkpoint records it (axpo sft records whether its demos had them, axpo train "
        "what it trained with; a model from elsewhere: yes), so a model meets the prompt it was "
        "trained on.", "model")
    tool_call_format: ToolCallFormat = _format_field(
        "model", "The envs read the agent's calls in this format and word their prompt for it "
        "(ToolUseEnv(tool_call_format=...)); the saved trajectories are read in it too.")
    max_turns: int = _field(
        4, "Agent turns per episode; each is one tool call or the final answer, so 4 allows up "
        "to 3 tool calls. Running out of turns truncates the episode with reward 0. Rollout cost "
        "grows with every turn.", "model")

    # Generation
    num_generations: int = _field(
        8, "Rollouts per task (the group size G). 8 as in TRL. At least 2: advantages compare "
        "each rollout with the rest of its group.", "generation")
    max_completion_length: int = _field(
        512, "New tokens the policy may generate per turn (thinking plus one tool call or "
        "answer). TRL's 256 caps a whole single-turn completion; a turn here needs room to think "
        "before acting, and 512 matches `SamplingParams.max_new_tokens`.", "generation")
    temperature: float = _field(
        1.0, "Sampling temperature. 1.0 as in TRL: rollouts come from the policy's own "
        "distribution, so neither the exploration GRPO needs is narrowed nor the log-"
        "probabilities of the loss rescaled.", "generation")
    top_p: float = _field(
        1.0, "Nucleus sampling mass in (0, 1]. 1.0 (off) as in TRL.", "generation")
    top_k: int = _field(
        0, "Keep only the k most likely tokens when sampling; 0 turns it off, as in TRL.",
        "generation")
    generation_batch_size: int | None = _field(
        None, "Episodes played together, each turn of them sampled in one batch (an episode "
        "that ends frees its row). None: all of the step's rollouts on this process at once, as "
        "TRL generates its whole generation batch; lower it when their KV caches do not fit.",
        "generation")
    use_vllm: bool = _field(
        False, "Sample rollouts (and AXPO's branches) with vLLM instead of transformers' "
        "generate, as TRL's use_vllm: paged, continuously batched decoding, and a branch's K "
        "continuations share their kept prefix through vLLM's prefix cache. The trainer's "
        "weights are loaded into the engine after every optimizer step. Needs `pip install "
        "axpo[vllm]` (GPU) or `bash scripts/setup.sh --vllm` (CPU).", "generation")
    vllm_mode: Literal["colocate", "server"] = _field(
        "colocate", "'colocate': the engine runs inside the training process (TRL's default); "
        "weights load into it straight from the model's tensors. 'server': the engine runs in "
        "`python -m agents.vllm_server` (another process or machine) at "
        "vllm_server_base_url; weights go there over HTTP after every step.", "generation")
    vllm_server_base_url: str | None = _field(
        None, "URL of the `agents.vllm_server` for vllm_mode='server', e.g. "
        "http://127.0.0.1:8000.", "generation")
    vllm_gpu_memory_utilization: float = _field(
        0.3, "Share of GPU memory the colocated engine takes (weights and KV cache); 0.3 as in "
        "TRL, leaving the rest to training. On CPU vLLM's KV cache is 1 GiB "
        "(VLLM_CPU_KVCACHE_SPACE) instead.", "generation")
    vllm_max_model_length: int | None = _field(
        None, "Context of the engine in tokens (prompt, all turns, tool replies). None: the "
        "model's own, at most 32768.", "generation")
    vllm_enable_sleep_mode: bool = _field(
        False, "Let the colocated engine free its GPU memory during the update and take it back "
        "for the next rollouts (vLLM's sleep mode; GPU builds only, ignored on CPU). Off as in "
        "TRL: waking costs time.", "generation")
    vllm_importance_sampling_correction: bool = _field(
        True, "Truncated importance sampling (TIS, as in TRL and verl): weight each trained "
        "token's loss by min(p_trainer / p_engine, vllm_importance_sampling_cap), the ratio of "
        "the trainer's probability of the sampled token before the update to the engine's. It "
        "corrects the mismatch between the two (bfloat16 kernels differ by ~5e-3 in logprob; "
        "float32 on CPU by ~1e-6, where the weight is 1). The step logs the gap "
        "(vllm_logprob_gap) either way.", "generation")
    vllm_importance_sampling_cap: float = _field(
        3.0, "The truncation C of the importance weight (TRL's default 3.0); tokens the engine "
        "made much less likely than the trainer would count at most C times.", "generation")

    # Training
    output_dir: str = _field(
        "runs/grpo", "Where checkpoints, config.json and logs go.", "logging")
    max_steps: int = _field(
        200, "Training steps (one batch of rollouts each). Environments have no epochs, so unlike "
        "TRL (-1: train by epochs) a run is counted in steps and this must be >= 1.", "training")
    tasks_per_step: int = _field(
        8, "Tasks sampled per step; each gets num_generations rollouts, so a step trains on "
        "tasks_per_step * num_generations = 64 rollouts by default: enough groups that some "
        "carry signal, small enough for one GPU.", "training")
    learning_rate: float = _field(
        1e-6, "Peak AdamW learning rate. 1e-6 as in TRL's GRPOConfig (and DAPO): RL fine-tuning "
        "of a pretrained policy needs small steps.", "training")
    trainable_parameters: str | None = _field(
        None, "Train only the parameters whose names this regular expression matches (re.search) "
        "and freeze the rest: 'lm_head' trains the output head alone, 'language_model|lm_head' "
        "freezes the vision tower. None trains all, as TRL does.", "training")
    use_peft: bool = _field(
        False, "Train LoRA adapters (peft) on the frozen model instead of all its weights, as "
        "TRL's use_peft. Checkpoints then hold the adapter; load_policy, axpo eval and axpo "
        "train --model load such a folder as its base with the adapter merged. The KL reference "
        "is the base (adapters off), not a copy.", "training")
    lora_r: int = _field(16, "LoRA rank (TRL's default 16).", "training")
    lora_alpha: int = _field(
        32, "LoRA scaling alpha: the update is scaled by alpha / r (TRL's default 32).",
        "training")
    lora_dropout: float = _field(0.05, "Dropout on the LoRA path (TRL's default 0.05).",
                                 "training")
    lora_target_modules: list[str] | None = _field(
        None, "Module names (or name suffixes) that get adapters, comma-separated, e.g. "
        "q_proj,v_proj. None: peft's 'all-linear', every linear layer but the output head "
        "(the vision tower's too).", "training")
    per_device_train_batch_size: int = _field(
        8, "Rollouts per forward/backward on one device: a step's rollouts are cut into padded "
        "micro-batches of this many rows (images of any size may share one). 8 as in TRL. A "
        "memory knob, together with gradient_accumulation_steps.", "training")
    gradient_accumulation_steps: int | None = _field(
        None, "Micro-batches whose gradients add up to one optimizer update. None (default): all "
        "of a step's micro-batches, so a step of rollouts makes one update whatever "
        "per_device_train_batch_size is (a memory knob only). TRL's default is 1 because its "
        "generation batch is one update's worth of rollouts (steps_per_generation); an integer "
        "here has TRL's semantics: a step whose rollouts fill more micro-batches makes several "
        "updates, with the old policy's logprobs taken before the first so the clip applies.",
        "training")
    gradient_checkpointing: bool = _field(
        False, "Recompute activations in the backward pass instead of storing them: much less "
        "memory for long multi-turn rollouts at ~30% more update time. False as in TRL's "
        "TrainingArguments.", "training")
    num_iterations: int = _field(
        1, "Optimizer updates per batch of rollouts (mu in the GRPO paper). 1 as in TRL: fully "
        "on-policy, the clip only matters when > 1.", "training")
    epsilon: float = _field(
        0.2, "Lower clip range of the probability ratio (1 - epsilon). 0.2 as in TRL and PPO.",
        "training")
    epsilon_high: float | None = _field(
        0.4, "Upper clip range (1 + epsilon_high); None: the same as epsilon (TRL's default). "
        "0.4: the AXPO paper's objective (Eq. 6, DAPO-style clip-higher with epsilon = 0.2), the "
        "same for GRPO and AXPO so that switching the algorithm changes only the exploration.",
        "training")
    beta: float = _field(
        1e-3, "KL coefficient to the initial (SFT) policy, which is then kept as a reference "
        "model (memory: a second copy of the weights). 1e-3: the AXPO paper's objective (Eq. 6) "
        "for GRPO and AXPO alike. 0.0 (TRL's default, as in DAPO and Dr. GRPO) keeps no "
        "reference model.", "training")
    loss_type: Literal["grpo", "bnpo", "dr_grpo", "dapo"] = _field(
        "dapo", "How token losses are aggregated: 'grpo' averages per sequence then over "
        "sequences (length-biased); 'bnpo' averages over the local batch's generated tokens; "
        "'dr_grpo' divides by a constant (Dr. GRPO, Liu et al., 2025); 'dapo' averages over all "
        "generated tokens of the step (DAPO). 'dapo' as in TRL: no length bias.", "training")
    scale_rewards: Literal["group", "batch", "none"] = _field(
        "group", "How advantages are scaled after subtracting the group mean: 'group' divides by "
        "the group's std (GRPO, as in TRL), 'batch' by the step's std, 'none' not at all (Dr. GRPO "
        "recommends it: the std scaling biases toward too-easy and too-hard tasks). true/false are "
        "accepted as in TRL and mean 'group'/'none'.", "training",
        aliases={"true": "group", "false": "none"})
    tool_reward: float = _field(
        0.0, "Added to the reward of every rollout that called a tool, right or wrong: > 0 is "
        "the 'GRPO + tool bonus' recipe and < 0 'GRPO + tool penalty' of the AXPO paper's Table "
        "3 (their values are not reported; 0.1 / -0.1 are a reasonable start). 0: the task's "
        "reward alone.", "training")
    reward_funcs: list[str] | None = _field(
        None, "Reward functions whose weighted sum is the reward trained on, comma-separated: "
        "built-in names (task: the task's score; tool_use: 1 if the rollout called a tool; "
        "format: 1 if it answered and every turn parsed) or import paths "
        "'package.module:function' / 'path/to/file.py:function' of a function "
        "f(trajectory, item) -> float (algorithms.rewards). Each is logged on its own as "
        "rewards/NAME/mean. None: task alone, as the paper trains. In Python, Trainer("
        "reward_funcs=...) also takes the functions themselves.", "training")
    reward_weights: list[float] | None = _field(
        None, "Weight of each of reward_funcs, in order, comma-separated. None: all 1.0, as in "
        "TRL.", "training")
    mask_truncated_completions: bool = _field(
        False, "Leave truncated rollouts (out of turns or tokens, never answered) out of the loss. "
        "False as in TRL, so an agent that never answers is penalized; DAPO recommends True for "
        "stability.", "training")

    # Logging
    logging_steps: int = _field(
        1, "Log metrics every this many steps. TRL uses 10, but here a step is a whole batch of "
        "multi-turn rollouts, so logging each one costs nothing beside it.", "logging")
    save_steps: int = _field(
        50, "Save a checkpoint every this many steps (and at the end); resume restarts from the "
        "latest. TRL's 500 would lose most of a 200-step run on a crash.", "logging")
    eval_steps: int | None = _field(
        None, "Evaluate on held-out tasks every this many steps and at the end (TRL's "
        "eval_steps): eval_num_generations rollouts of each of eval_task_ids / the eval_split, "
        "the same tasks and seeds each time, logged as eval/accuracy, eval/pass@k, "
        "eval/tool_use_rate... None: no evaluation during training.", "logging")
    eval_split: str | None = _field(
        None, "Split the held-out tasks come from. None: the training split, so set "
        "eval_task_ids to tasks the run does not train on.", "logging")
    eval_task_ids: list[str] | None = _field(
        None, "Held-out task ids, comma-separated. None: every task of eval_split.", "logging")
    eval_num_generations: int = _field(
        4, "Rollouts per held-out task: pass@k is computed with this k (4: the AXPO paper's "
        "Pass@4).", "logging")
    save_total_limit: int | None = _field(
        None, "Keep only the newest this many checkpoints in output_dir, deleting older ones "
        "after each save. None keeps all, as in TRL.", "logging")
    resume: bool = _field(
        False, "Continue from the latest checkpoint in output_dir instead of starting over.",
        "logging")
    resume_from_checkpoint: str | None = _field(
        None, "Continue from this checkpoint folder (a checkpoint-N of this or another run's "
        "output_dir) instead of the latest in output_dir; implies resume. TRL's name.",
        "logging")
    save_trajectories: bool = _field(
        False, "Save every step's rollouts and AXPO branches to output_dir/trajectories/ for "
        "`axpo view` (tool images once each, by content hash). Off by default: it costs disk "
        "and time; README 'See what the agent saw' gives the measured overhead.", "logging")

    def __post_init__(self) -> None:
        if isinstance(self.scale_rewards, bool):  # TRL's legacy spelling
            self.scale_rewards = "group" if self.scale_rewards else "none"
        super().__post_init__()
        for name in ("tools", "task_ids", "reward_funcs", "task_options", "eval_task_ids",
                     "lora_target_modules"):
            setattr(self, name, string_list(name, getattr(self, name),
                                            "None or a list of strings"))
        if self.reward_weights is not None:
            weights = [self.reward_weights] if isinstance(self.reward_weights, str | int | float) \
                else list(self.reward_weights)
            try:
                self.reward_weights = [float(w) for w in weights]
            except (TypeError, ValueError):
                raise ValueError(f"reward_weights must be numbers, got {weights!r}") from None
            _check(all(math.isfinite(w) for w in self.reward_weights),
                   f"reward_weights must be finite, got {self.reward_weights}")
        bad = [o for o in self.task_options or [] if not o.partition("=")[0].strip()
               or "=" not in o]
        _check(not bad, f"task_options must be KEY=VALUE pairs, got {bad}")
        _check(bool(self.env_id), "env_id must name a registered environment, e.g. "
               "'AXPO-MathVista-v0'")
        _check(self.max_turns >= 1, f"max_turns must be >= 1, got {self.max_turns}")
        _check(self.num_generations >= 2, "num_generations must be >= 2: group-relative "
               f"advantages compare each rollout with the others (got {self.num_generations})")
        _check(self.max_completion_length >= 1,
               f"max_completion_length must be >= 1, got {self.max_completion_length}")
        _check(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        _check(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}")
        _check(self.top_k >= 0, f"top_k must be >= 0 (0 turns it off), got {self.top_k}")
        _check(self.generation_batch_size is None or self.generation_batch_size >= 1,
               f"generation_batch_size must be None or >= 1, got {self.generation_batch_size}")
        _check(self.vllm_mode in ("colocate", "server"),
               f"vllm_mode must be 'colocate' or 'server', got {self.vllm_mode!r}")
        _check(not (self.use_vllm and self.vllm_mode == "server" and not self.vllm_server_base_url),
               "vllm_mode='server' needs vllm_server_base_url (start the server with "
               "`python -m agents.vllm_server --model MODEL`)")
        _check(0 < self.vllm_gpu_memory_utilization <= 1, "vllm_gpu_memory_utilization must be "
               f"in (0, 1], got {self.vllm_gpu_memory_utilization}")
        _check(self.vllm_max_model_length is None or self.vllm_max_model_length >= 16,
               f"vllm_max_model_length must be None or >= 16, got {self.vllm_max_model_length}")
        _check(self.vllm_importance_sampling_cap >= 1, "vllm_importance_sampling_cap must be "
               f">= 1, got {self.vllm_importance_sampling_cap}")
        _check(self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}")
        _check(self.tasks_per_step >= 1, f"tasks_per_step must be >= 1, got {self.tasks_per_step}")
        _check(self.learning_rate >= 0, f"learning_rate must be >= 0, got {self.learning_rate}")
        if self.trainable_parameters is not None:
            try:
                re.compile(self.trainable_parameters)
            except re.error as e:
                raise ValueError(f"trainable_parameters is not a regular expression "
                                 f"({self.trainable_parameters!r}: {e})") from None
        _check(self.per_device_train_batch_size >= 1, "per_device_train_batch_size must be >= 1, "
               f"got {self.per_device_train_batch_size}")
        _check(self.gradient_accumulation_steps is None or self.gradient_accumulation_steps >= 1,
               "gradient_accumulation_steps must be None (one update a step) or >= 1, got "
               f"{self.gradient_accumulation_steps}")
        _check(self.num_iterations >= 1, f"num_iterations must be >= 1, got {self.num_iterations}")
        _check(0 < self.epsilon < 1, f"epsilon must be in (0, 1), got {self.epsilon}")
        _check(self.epsilon_high is None or self.epsilon_high >= self.epsilon,
               f"epsilon_high ({self.epsilon_high}) must be >= epsilon ({self.epsilon}); "
               "use None for a symmetric clip")
        _check(self.beta >= 0, f"beta must be >= 0, got {self.beta}")
        _check(self.logging_steps >= 1, f"logging_steps must be >= 1, got {self.logging_steps}")
        _check(self.save_steps >= 1, f"save_steps must be >= 1, got {self.save_steps}")
        _check(self.lora_r >= 1 and self.lora_alpha > 0 and 0 <= self.lora_dropout < 1,
               f"LoRA needs lora_r >= 1, lora_alpha > 0 and lora_dropout in [0, 1), got "
               f"{self.lora_r}, {self.lora_alpha}, {self.lora_dropout}")
        _check(not (self.use_peft and self.trainable_parameters is not None),
               "use_peft trains the adapters alone: leave trainable_parameters unset (or pick "
               "the adapted modules with lora_target_modules)")
        _check(not (self.use_peft and self.use_vllm), "use_peft with use_vllm is not supported "
               "yet (the engine would need the adapter merged after every step): turn one off")
        _check(self.eval_steps is None or self.eval_steps >= 1,
               f"eval_steps must be None (no evaluation) or >= 1, got {self.eval_steps}")
        _check(self.eval_num_generations >= 1,
               f"eval_num_generations must be >= 1, got {self.eval_num_generations}")
        _check(self.eval_steps is not None or (self.eval_split is None
                                               and self.eval_task_ids is None),
               "eval_split / eval_task_ids are set but eval_steps is None: set eval_steps to "
               "evaluate on them")
        _check(self.save_total_limit is None or self.save_total_limit >= 1,
               f"save_total_limit must be None or >= 1, got {self.save_total_limit}")

    @property
    def task_kwargs(self) -> dict[str, Any]:
        """`task_options` as the keyword arguments of the task (JSON values where they parse)."""
        out: dict[str, Any] = {}
        for pair in self.task_options or []:
            key, _, text = pair.partition("=")
            try:
                out[key.strip()] = json.loads(text)
            except ValueError:
                out[key.strip()] = text
        return out

    @property
    def clip_range(self) -> tuple[float, float]:
        """(low, high) clip of the ratio: it must stay in [1 - low, 1 + high]."""
        high = self.epsilon if self.epsilon_high is None else self.epsilon_high
        return self.epsilon, high


@_document
@dataclass
class AXPOConfig(GRPOConfig):
    """Configuration of AXPO (`Trainer(algorithm="axpo")`): GRPO plus explorative resampling.

    "Agent Explorative Policy Optimization for Multimodal Agentic Reasoning" (AXPO, 2026). In each
    group whose tool-using rollouts are all wrong, AXPO keeps a failed rollout's ids through the
    opening `<tool_call>` of its first call, restores the environment there and resamples the
    call and everything after it (K = `resamples_per_prefix` times). Sources are ranked least
    confident first by the mean probability of their tool-call span; the step's extra budget is
    `resample_ratio` of its rollouts, in whole blocks of K, breadth-first across questions. The
    resamples form their own advantage group (Eq. 2) trained on their continuations; the source's
    reward is replaced by the recovery indicator (Eq. 3) in its group and that advantage trains
    its prefix only (Eq. 4). The switches below turn each part off (the paper's Table 2
    ablations) or swap the exploration for ARPO's (Table 3). Every GRPO parameter applies with
    the same default (the paper's objective, Eq. 6), so AXPO and GRPO differ only in exploration
    and `output_dir`.
    """

    output_dir: str = _field(
        "runs/axpo", "Where checkpoints, config.json and logs go.", "logging")
    resample_ratio: float = _field(
        0.25, "Extra rollouts a step may spend, as a share of its rollouts (r in the AXPO paper: "
        "0.25, so 64 rollouts buy 16 resamples = 4 blocks of K = 4). Whole blocks only, rounded "
        "down; unused budget is not carried to the next step. 0 turns AXPO into GRPO.", "axpo")
    resamples_per_prefix: int = _field(
        4, "K: continuations resampled from each selected prefix; they form their own advantage "
        "group (Eq. 2). 4 as in the AXPO paper.", "axpo")
    ranking: Literal["uncertainty", "random"] = _field(
        "uncertainty", "Which failed rollouts become sources: 'uncertainty' ranks them least "
        "confident first by the mean probability of the sampled tokens of their tool-call span "
        "(<tool_call> ... </tool_call>; the AXPO paper); 'random' is the paper's ablation "
        "'without uncertainty ranking'.", "axpo")
    prefix_fix: bool = _field(
        True, "Keep the source's ids through the opening <tool_call> and resample from there. "
        "False is the paper's ablation 'without prefix fix': the K resamples start from the "
        "question (a fresh episode), and no prefix credit is given.", "axpo")
    resample_subgroup: Literal["tool", "no_tool"] = _field(
        "tool", "Which all-wrong subgroup triggers resampling: 'tool' (AXPO) or 'no_tool', the "
        "paper's ablation 'resampling no-tool rollouts instead' (prefixes then end at the "
        "opening <answer> tag and are ranked by the answer span).", "axpo")
    prefix_credit: bool = _field(
        True, "Train the source's prefix with the recovery reward (Eq. 3-4) and mask its failed "
        "continuation. False is the paper's ablation 'without prefix credit': the source is "
        "trained as an ordinary rollout with its own reward.", "axpo")
    separate_advantage_group: bool = _field(
        True, "Normalize the K resamples among themselves (Eq. 2). False is the paper's ablation "
        "'without the separate advantage group': resamples join their question's group and "
        "everyone in it is normalized together.", "axpo")
    exploration: Literal["axpo", "arpo"] = _field(
        "axpo", "'axpo', or 'arpo': the ARPO baseline of the paper's Table 3 (Dong et al., 2025, "
        "arXiv 2507.19849, 'entropy-based adaptive rollout'): branch any rollout at the turn "
        "after a tool result where the entropy of the first `arpo_window` generated tokens rose "
        "most over the rollout's first turn (only rises count), resample from the start of that "
        "turn with the same budget, and normalize the branches with their group (ARPO's soft "
        "advantage attribution).", "axpo")
    arpo_window: int = _field(
        20, "ARPO: the first k generated tokens of a turn whose mean entropy measures its "
        "uncertainty (k in ARPO's entropy-based adaptive rollout; 20 is our choice, ARPO's value "
        "is not in what we could read).", "axpo")

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(0 <= self.resample_ratio <= 4,
               f"resample_ratio must be in [0, 4] (0 disables resampling), got "
               f"{self.resample_ratio}")
        _check(self.resamples_per_prefix >= 2, "resamples_per_prefix must be >= 2: the "
               f"resamples are normalized as a group (got {self.resamples_per_prefix})")
        _check(self.arpo_window >= 1, f"arpo_window must be >= 1, got {self.arpo_window}")


@_document
@dataclass
class SFTConfig(_Config):
    """Configuration of supervised fine-tuning on tool-use trajectories (`axpo sft`).

    A cold start before RL: teaches the chat format, the tool-call protocol and when to call a
    tool, from a JSONL file of chat-message trajectories. Defaults follow TRL's `SFTConfig`
    where the meaning matches.
    """

    data_path: str = _field(
        "", "JSONL file of trajectories, one chat-message list per line in the transformers "
        "format (images as paths). Required.", "data")
    max_length: int = _field(
        4096, "Tokens per trajectory; longer ones are truncated at the end. TRL uses 1024, but a "
        "multi-turn trajectory with images (hundreds of tokens each) often exceeds that, and "
        "truncation would cut the final answer SFT must teach.", "data")
    tool_call_format: ToolCallFormat = _format_field(
        "data", "The structured tool_calls of an assistant message are written so in its "
        "target text; calls already written in a message's text stay as they are.")
    tokenized_cache_size: int = _field(
        4096, "Trajectories kept tokenized (ids, labels, image tensors) after their first use, so "
        "later epochs skip the chat template and the image processor (a third of a tiny model's "
        "step); least recently used ones are dropped beyond it; 0 re-tokenizes every time. TRL "
        "tokenizes the whole dataset up front.", "data")
    output_dir: str = _field(
        "runs/sft", "Where checkpoints, config.json and logs go.", "logging")
    learning_rate: float = _field(
        2e-5, "Peak AdamW learning rate. 2e-5 as in TRL's SFTConfig, for full fine-tuning of a "
        "pretrained checkpoint; a tiny model trained from scratch wants ~1e-3.", "training")
    num_train_epochs: int = _field(
        3, "Passes over the data. 3 as in TrainingArguments and TRL.", "training")
    max_steps: int = _field(
        -1, "If > 0, stop after this many optimizer steps, overriding num_train_epochs; -1 as in "
        "TRL.", "training")
    per_device_train_batch_size: int = _field(
        8, "Trajectories per device per micro-batch. 8 as in TrainingArguments and TRL.",
        "training")
    gradient_accumulation_steps: int = _field(
        1, "Micro-batches per optimizer step. 1 as in TRL.", "training")
    logging_steps: int = _field(
        10, "Log metrics every this many optimizer steps. 10 as in TRL.", "logging")
    save_steps: int = _field(
        500, "Save a checkpoint every this many optimizer steps (and at the end). 500 as in "
        "TrainingArguments and TRL.", "logging")

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(bool(self.data_path), "data_path is required: a JSONL file of chat-message "
               "trajectories")
        _check(self.max_length >= 1, f"max_length must be >= 1, got {self.max_length}")
        _check(self.tokenized_cache_size >= 0,
               f"tokenized_cache_size must be >= 0, got {self.tokenized_cache_size}")
        _check(self.learning_rate >= 0, f"learning_rate must be >= 0, got {self.learning_rate}")
        _check(self.num_train_epochs >= 1,
               f"num_train_epochs must be >= 1, got {self.num_train_epochs}")
        _check(self.max_steps == -1 or self.max_steps >= 1,
               f"max_steps must be -1 (use num_train_epochs) or >= 1, got {self.max_steps}")
        _check(self.per_device_train_batch_size >= 1, "per_device_train_batch_size must be >= 1, "
               f"got {self.per_device_train_batch_size}")
        _check(self.gradient_accumulation_steps >= 1, "gradient_accumulation_steps must be >= 1, "
               f"got {self.gradient_accumulation_steps}")
        _check(self.logging_steps >= 1, f"logging_steps must be >= 1, got {self.logging_steps}")
        _check(self.save_steps >= 1, f"save_steps must be >= 1, got {self.save_steps}")
