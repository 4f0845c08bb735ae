"""HFPolicy: a transformers checkpoint (Qwen3-VL or a text-only causal LM) as a `Policy`.

Two layers. `generate(conversations)` renders env observations with the model's own chat
template (tools passed as `tools=`) and samples. Under it, `sample(prompts)` works on
`TokenPrompt`s, token ids plus the images they reference, which is what multi-turn rollouts use
so the ids trained on are exactly the ids the model was fed and generated (see `agents.rollout`).

Logprobs and entropies are those of the distribution actually sampled from: temperature, top-k
and top-p are applied by our own `warp`, which records them, and `score` applies the same
`warp` to a teacher-forced forward pass, so re-scoring reproduces them.

Decoding runs `agents.decode.decode` (prefill, then one forward per token, finished rows
dropped); `HFPolicy.decoding = "generate"` runs transformers' `generate` with a recording logits
processor instead, the reference the loop is tested against (same ids for a seed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from agents import pretrained
from agents.chat_policy import ChatTokenPolicy, eos_ids
from agents.decode import PER_TOKEN, can_select_rows, decode, takes_positions
from agents.policy import Completion, SamplingParams
from agents.tokens import TokenPrompt


def warp(logits: torch.Tensor, sampling: SamplingParams) -> torch.Tensor:
    """Logits of the sampling distribution: temperature, then top-k, then top-p (as vLLM/HF)."""
    logits = logits.float()
    if sampling.temperature > 0:
        logits = logits / sampling.temperature
    if sampling.top_k and sampling.top_k < logits.shape[-1]:
        kth = torch.topk(logits, sampling.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = (cum - sorted_logits.softmax(-1)) >= sampling.top_p  # keep the first > p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def logprobs_and_entropy(warped: torch.Tensor, tokens: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of `tokens` and entropy of each row of a warped logits tensor."""
    logp = warped.log_softmax(-1)
    p = logp.exp()
    entropy = -(p * logp.masked_fill(p == 0, 0.0)).sum(-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1), entropy


class _Recorder:
    """A logits processor that warps the scores and records what sampling needs to report.

    At step t it sees the token sampled at t-1 (the last input id), so it gathers that token's
    logprob from the distribution it stored one step earlier; the final token is gathered after
    `generate` returns."""

    def __init__(self, sampling: SamplingParams):
        self.sampling = sampling
        self.logp: list[torch.Tensor] = []
        self.entropy: list[torch.Tensor] = []
        self._prev: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self._gather(input_ids[:, -1])
        warped = warp(scores, self.sampling)
        self._prev = warped.log_softmax(-1)
        p = self._prev.exp()
        self.entropy.append(-(p * self._prev.masked_fill(p == 0, 0.0)).sum(-1))
        return warped

    def _gather(self, tokens: torch.Tensor) -> None:
        if self._prev is not None:
            self.logp.append(self._prev.gather(-1, tokens.unsqueeze(-1)).squeeze(-1))
            self._prev = None

    def finish(self, last_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._gather(last_tokens)
        return torch.stack(self.logp, 1), torch.stack(self.entropy, 1)


class HFPolicy(ChatTokenPolicy):
    """A transformers model and its processor (or tokenizer) behind the `Policy` interface.

    Args:
        model: a `Qwen3VLForConditionalGeneration` or any causal LM.
        processor: its processor (VL models) or tokenizer (text models).
        max_context: tokens the model may see; default from the config. A prompt that leaves no
            room for `max_new_tokens` is an error completion, never silently truncated.
        render_tools: pass the env's tool schemas to the chat template (`tools=`). False keeps
            prompts short for tiny models that know their tools from training; the system
            prompt then has to name them.
    """

    #: "loop": `agents.decode` (the default, cheaper); "generate": transformers' `generate`
    #: with a recording logits processor (the reference; same ids and records for a seed).
    decoding = "loop"

    def __init__(self, model: Any, processor: Any, max_context: int | None = None,
                 render_tools: bool = True):
        self.model = model.eval()
        self._pieces: dict[int, str] = {}
        text_config = getattr(model.config, "text_config", model.config)
        super().__init__(processor, eos_ids(getattr(model, "generation_config", None),
                                            getattr(processor, "tokenizer", processor)),
                         max_context or int(getattr(text_config, "max_position_embeddings", 0)
                                            or 32768), render_tools)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, dtype: Any = None,
                        device: str | None = None, max_context: int | None = None,
                        render_tools: bool | None = None,
                        **kwargs: Any) -> HFPolicy:
        """Load any checkpoint dir or hub name: VL models with their processor, text models
        with their tokenizer. `render_tools` None: as the checkpoint records
        (`agents.pretrained.PROMPT_FILE`), else True."""
        if render_tools is None:
            render_tools = pretrained.recorded_render_tools(name_or_path)
        model = pretrained.load_model(name_or_path, dtype=dtype or torch.float32, **kwargs)
        if device:
            model = model.to(device)
        return cls(model, pretrained.load_processor(name_or_path), max_context=max_context,
                   render_tools=render_tools)

    @property
    def core(self) -> Any:
        """The transformers model the decoding loop calls: a peft model's base model, its
        adapters in place (PeftModel.forward takes no position ids, and Qwen3-VL's cached
        decoding needs them)."""
        get_base_model = getattr(self.model, "get_base_model", None)
        return get_base_model() if callable(get_base_model) else self.model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def sample(self, prompts: Sequence[TokenPrompt | Completion], n: int = 1,
               sampling: SamplingParams | None = None) -> list[list[Completion]]:
        """`n` completions per prompt, sampled in one batch. Entries that are already error
        Completions, or whose prompt leaves no room for `max_new_tokens`, come back as errors."""
        sampling = sampling or SamplingParams()
        out: list[list[Completion]] = [[] for _ in prompts]
        batch: list[tuple[int, TokenPrompt]] = []
        for i, p in enumerate(prompts):
            if isinstance(p, Completion):
                out[i] = [p] * n
            elif (error := self.too_long(p, sampling)) is not None:
                out[i] = [error] * n
            else:
                batch += [(i, p)] * n
        if batch:
            for (i, p), completion in zip(batch, self._sample_batch([p for _, p in batch],
                                                                   sampling)):
                completion.prompt_token_ids = p.ids
                out[i].append(completion)
        return out

    def _sample_batch(self, prompts: list[TokenPrompt], sampling: SamplingParams
                      ) -> list[Completion]:
        inputs = self._collate(prompts)
        if self.decoding == "loop":
            shared = self._prefill_shared(prompts, inputs)
            if shared is not None:
                batch, extra = shared
                return self._generate(batch, sampling, **extra)
        return self._generate(inputs, sampling)

    def _prefill_shared(self, prompts: list[TokenPrompt], inputs: dict[str, torch.Tensor]
                        ) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """A batch whose rows repeat prompts (a GRPO group's first turn: the same prompt, the
        same image, 8 times) prefills each distinct prompt once, all but its last id, and
        indexes the key/value states out to the rows; the last id of every row then runs in
        the first decoding step, with the position ids `generate` gives the whole batch.
        Returns (inputs, extra) for `_generate`, or None where nothing repeats."""
        from transformers import DynamicCache

        keys: dict[tuple[Any, ...], int] = {}
        rows = [keys.setdefault((tuple(p.ids), id(p.pixel_values)), len(keys)) for p in prompts]
        ids = inputs["input_ids"]
        mm = inputs.get("mm_token_type_ids")
        if len(keys) == len(prompts) or ids.shape[1] < 2 or (mm is not None
                                                             and bool(mm[:, -1].any())):
            return None
        firsts = [rows.index(k) for k in range(len(keys))]
        head = self._collate([prompts[b] for b in firsts])
        if head["input_ids"].shape[1] != ids.shape[1]:
            return None
        head = {k: v[:, :-1] if k in PER_TOKEN else v for k, v in head.items()}
        position = None
        core = self.core
        if takes_positions(core):
            position = core._prepare_position_ids_for_generation(
                ids, {k: v for k, v in inputs.items() if k != "input_ids"})
            index = torch.tensor(firsts, device=ids.device)
            head["position_ids"] = (position[:, index] if position.ndim == 3
                                    else position[index])[..., :-1]
        cache = DynamicCache(config=self.model.config)
        if not can_select_rows(cache):  # e.g. linear-attention layers: prefill every row
            return None
        core(**head, cache=cache, use_cache=True, logits_to_keep=1)
        cache.batch_select_indices(torch.tensor(rows, device=ids.device))
        batch = {k: v for k, v in inputs.items() if k in PER_TOKEN}
        return batch, {"cache": cache, "position_ids": position}

    @torch.no_grad()
    def sample_shared(self, prompt: TokenPrompt, n: int, sampling: SamplingParams | None = None
                      ) -> list[Completion]:
        """`n` completions of one prompt whose prefill runs once: its KV cache is computed a
        single time and shared by the n samples (what branching from a kept prefix needs)."""
        sampling = sampling or SamplingParams()
        if len(prompt) + sampling.max_new_tokens > self.max_context or n == 1:
            return self.sample([prompt], n=n, sampling=sampling)[0]
        from transformers import DynamicCache

        inputs = self._collate([prompt])
        per_token = ("input_ids", "attention_mask", "mm_token_type_ids")
        cache = DynamicCache(config=self.model.config)
        head = {k: v[:, :-1] if k in per_token else v for k, v in inputs.items()}
        self.core(**head, cache=cache, use_cache=True)  # images are encoded here
        cache.batch_repeat_interleave(n)
        batch = {k: v.repeat(n, 1) for k, v in inputs.items() if k in per_token}
        completions = self._generate(batch, sampling, cache=cache)
        for c in completions:
            c.prompt_token_ids = prompt.ids
        return completions

    def _generate(self, inputs: dict[str, torch.Tensor], sampling: SamplingParams,
                  **extra: Any) -> list[Completion]:
        if self.decoding == "generate":
            return self._generate_hf(inputs, sampling, **extra)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        stops = [s for s in sampling.stop if s]
        rows = decode(self.core, inputs, sampling, warp,
                      end_ids=[*self.eos_ids, *self.vision_slot_ids],
                      stopped=lambda ids: self._has_stop(ids, stops),
                      stop_chars="".join({s[-1] for s in stops}), token_text=self._piece,
                      cache=extra.get("cache"), position_ids=extra.get("position_ids"))
        return [self._completion(r.ids, r.logprobs, r.entropies, sampling) for r in rows]

    def _piece(self, token: int) -> str:
        if (text := self._pieces.get(token)) is None:
            text = self._pieces[token] = self.tokenizer.decode([token],
                                                               skip_special_tokens=False)
        return text

    def _has_stop(self, ids: list[int], stops: Sequence[str]) -> bool:
        text = self.tokenizer.decode(ids, skip_special_tokens=False)
        return any(s in text for s in stops)

    def _generate_hf(self, inputs: dict[str, torch.Tensor], sampling: SamplingParams,
                     **extra: Any) -> list[Completion]:
        recorder = _Recorder(sampling)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        from transformers import GenerationConfig, LogitsProcessorList

        # Our `_Recorder` warps; transformers' own warpers must stay off. top_k=None would not
        # do that: generate fills an unset top_k with its default of 50, which then cut the
        # distribution after the recorder had recorded it (sampled != recorded). 0 disables.
        config = GenerationConfig(
            do_sample=sampling.temperature > 0, temperature=1.0, top_k=0, top_p=1.0,
            max_new_tokens=sampling.max_new_tokens, pad_token_id=self.pad_id,
            eos_token_id=self.eos_ids, stop_strings=list(sampling.stop) or None,
            return_dict_in_generate=True)
        result = self.model.generate(
            **inputs, **extra, generation_config=config, tokenizer=self.tokenizer,
            logits_processor=LogitsProcessorList([recorder]))
        new = result.sequences[:, inputs["input_ids"].shape[1]:]
        logp, entropy = recorder.finish(new[:, -1])
        return [self._completion(new[b].tolist(), logp[b].tolist(), entropy[b].tolist(),
                                 sampling) for b in range(new.shape[0])]

    def _completion(self, ids: list[int], logp: list[float], entropy: list[float],
                    sampling: SamplingParams) -> Completion:
        end, reason = self.turn_end(ids, sampling.stop)
        ids = ids[:end]
        return Completion(
            text=self.tokenizer.decode(ids, skip_special_tokens=False), token_ids=ids,
            logprobs=logp[:end], entropies=entropy[:end], finish_reason=reason)

    def _collate(self, prompts: list[TokenPrompt]) -> dict[str, torch.Tensor]:
        """Left-pad a batch; vision inputs are concatenated in batch order."""
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, p in enumerate(prompts):
            ids[b, width - len(p):] = torch.tensor(p.ids)
            mask[b, width - len(p):] = 1
        inputs = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
        with_images = [p for p in prompts if p.pixel_values is not None]
        if with_images:
            inputs["pixel_values"] = torch.cat([p.pixel_values for p in with_images]).to(
                self.device, self.model.dtype)
            inputs["image_grid_thw"] = torch.cat([p.image_grid_thw for p in with_images]).to(
                self.device)
            inputs["mm_token_type_ids"] = (ids == self.image_pad_id).long().to(self.device)
        return inputs

    # ------------------------------------------------------------------------------ scoring

    def forward_logits(self, prompts: Sequence[TokenPrompt], model: Any = None,
                       logits_to_keep: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits for a left-padded batch: (logits[b, t] predicts ids[b, t+1],
        the padded ids). Gradients flow: trainers call this, with `model` set to the wrapped
        (DDP) training model or a frozen reference of the same architecture.
        `logits_to_keep` > 0: only the last that many positions' logits (the LM head is skipped
        on the prompt, as TRL does)."""
        inputs = self._collate(list(prompts))
        extra = {"logits_to_keep": logits_to_keep} if logits_to_keep else {}
        logits = (model or self.model)(**inputs, use_cache=False, **extra).logits
        return logits, inputs["input_ids"]

    def forward_shared(self, prompts: Sequence[TokenPrompt], starts: Sequence[int],
                       model: Any = None, prefix_model: Any = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits of text-only rows from position `starts[b]` on, where rows
        that agree on `ids[:starts[b]]` (a group's shared prompt) run that prefix once: its
        key/value states are computed in one pass per distinct prefix and indexed out to the
        rows, so gradients reach the prefix through every row that attends to it. Equal to
        `forward_logits` on the same positions (RoPE sees the same relative positions).

        Returns (logits, targets): `logits[b, j]` predicts `targets[b, j] = ids[starts[b] + j
        + 1]`; past a row's end the target is -1. `prefix_model` runs the prefix (default:
        `model`), e.g. the plain module under a DDP-wrapped `model`, whose gradient hooks fire
        once for both uses. Needs a cache-capable causal LM without gradient checkpointing."""
        from transformers import DynamicCache

        model = model or self.model
        prefix_model = prefix_model or model
        index: dict[tuple[int, ...], int] = {}
        group = [index.setdefault(tuple(p.ids[:s]), len(index)) for p, s in zip(prompts, starts)]
        heads = [TokenPrompt(list(key)) for key in index]
        head = self._collate(heads)
        cache = DynamicCache(config=prefix_model.config)
        prefix_model(**head, cache=cache, use_cache=True, logits_to_keep=1)
        rows = torch.tensor(group, device=self.device)
        cache.batch_select_indices(rows)  # indexing: differentiable, one prefix -> many rows
        tails = [p.ids[s:] for p, s in zip(prompts, starts)]
        width = max(len(t) for t in tails)
        ids = torch.full((len(tails), width), self.pad_id, dtype=torch.long)
        targets = torch.full((len(tails), width), -1, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, tail in enumerate(tails):  # right-padded: positions follow each prefix's end
            ids[b, :len(tail)] = torch.tensor(tail)
            targets[b, :len(tail) - 1] = ids[b, 1:len(tail)]
            mask[b, :len(tail)] = 1
        attention = torch.cat([head["attention_mask"][rows], mask.to(self.device)], dim=1)
        logits = model(input_ids=ids.to(self.device), attention_mask=attention, cache=cache,
                       use_cache=True).logits
        return logits, targets.to(logits.device)

    @torch.no_grad()
    def score(self, prompt: TokenPrompt, positions: Sequence[int],
              sampling: SamplingParams | None = None) -> tuple[list[float], list[float]]:
        """Logprobs and entropies of `prompt.ids[t]` for each t in `positions`, under the
        same warped distribution `sample` draws from."""
        sampling = sampling or SamplingParams()
        logits, _ = self.forward_logits([prompt])
        pos = torch.tensor(list(positions), device=logits.device)
        warped = warp(logits[0, pos - 1], sampling)
        tokens = torch.tensor([prompt.ids[t] for t in positions], device=logits.device)
        logp, entropy = logprobs_and_entropy(warped, tokens)
        return logp.tolist(), entropy.tolist()
