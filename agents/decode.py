"""A lean sampling loop for `HFPolicy`: prefill, then one forward per token, without
transformers' `generate`.

At the tiny sizes the embedded examples train (a 1.6M-parameter Qwen3-VL, 32 rows, 64 new
tokens), a decoding step is mostly per-call bookkeeping, not arithmetic, and `generate` adds its
own on top: a logits-processor list, stop-string criteria over every row, a running `input_ids`
concatenation, and it keeps computing rows that have already finished until the last one does.
This loop feeds the model exactly what `generate` feeds it (the same position ids, from the
model's own `_prepare_position_ids_for_generation`; the same cache; the same mask, dropped when
it has no padding), samples from the same warped distribution with the same random stream, and
records logprobs and entropies of the sampled ids as the recorder does. What it does not do:
run a row after it has finished (EOS, an image/video slot id, or a stop string), so a batch gets
cheaper as its rows end.

The random stream stays `generate`'s: `torch.multinomial` of one sample from a (rows, vocab)
tensor draws (rows x vocab) Exp(1) variables and takes argmax(p / q) per row, so drawing that
whole tensor every step, finished rows included, and taking only the live rows' argmax gives
the live rows the ids `generate` gives them (`tests/test_decode.py` checks both).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from agents.policy import SamplingParams

#: Inputs with one entry per prompt position.
PER_TOKEN = ("input_ids", "attention_mask", "mm_token_type_ids")


@dataclass
class Decoded:
    """One row's sampled ids and, per id, its logprob and its distribution's entropy."""

    ids: list[int]
    logprobs: list[float]
    entropies: list[float]


def multinomial_rows(probs: torch.Tensor, rows: torch.Tensor, total: int) -> torch.Tensor:
    """`torch.multinomial(full, 1)` for the `rows` of a (total, vocab) batch whose other rows
    are not computed: torch draws one sample as argmax(p / q) with q ~ Exp(1) drawn for the
    whole (total, vocab) tensor; the same draw here, the argmax on the live rows only.
    (Checked on CPU by tests/test_decode.py; not checked on CUDA.)"""
    q = torch.empty((total, probs.shape[-1]), dtype=probs.dtype,
                    device=probs.device).exponential_(1)
    return (probs / q[rows]).argmax(-1)


def takes_positions(model: Any) -> bool:
    """Whether the model's forward takes `position_ids` (generate then computes them)."""
    return "position_ids" in inspect.signature(model.forward).parameters


def can_select_rows(cache: Any) -> bool:
    """Whether every layer of `cache` can keep a subset of its batch rows (attention layers can;
    the recurrent states of linear-attention layers cannot, in transformers 5.25)."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(callable(getattr(layer, "batch_select_indices", None))
                                for layer in layers)


def decode(model: Any, inputs: dict[str, torch.Tensor], sampling: SamplingParams,
           warp: Callable[[torch.Tensor, SamplingParams], torch.Tensor], *,
           end_ids: Sequence[int], stopped: Callable[[list[int]], bool] | None = None,
           stop_chars: str = "", token_text: Callable[[int], str] | None = None,
           cache: Any = None, position_ids: torch.Tensor | None = None) -> list[Decoded]:
    """Sample up to `sampling.max_new_tokens` ids for each row of a left-padded batch.

    `inputs`: what `HFPolicy._collate` builds (ids, mask, images); with `cache`, a cache that
    already holds the first positions (as `sample_shared` prefills), and then `position_ids`
    of the whole batch where the model takes them (default: computed here as `generate`
    computes them, which needs the images when the cache is empty). A row ends after
    an id in `end_ids` (EOS, image/video slots) or when `stopped(row ids)` is true, which is
    asked only when `token_text(id)` of the new id holds one of `stop_chars` (the stop
    strings' last characters); its rows then leave the batch, where the cache can drop rows
    (`can_select_rows`), else they run on as in `generate`, their outputs unused. Seeding is
    the caller's (`torch.manual_seed`)."""
    from transformers import DynamicCache

    ids = inputs["input_ids"]
    total, width = ids.shape
    device = ids.device
    cache = cache if cache is not None else DynamicCache(config=model.config)
    past = cache.get_seq_length()
    mask = inputs.get("attention_mask")
    kwargs = {k: v for k, v in inputs.items() if k != "input_ids"}
    position = position_ids
    if position is None and takes_positions(model):
        position = model._prepare_position_ids_for_generation(ids, {**kwargs, "cache": cache})
    if mask is not None and bool((mask == 1).all()):
        mask = None  # as generate: no padding, no mask (the causal fast path)
    step_inputs = {k: (v[:, past:] if k in PER_TOKEN else v) for k, v in kwargs.items()
                   if k != "attention_mask"}
    if position is not None:
        step_inputs["position_ids"] = position[..., past:]
    ends = torch.tensor(sorted(set(end_ids)), dtype=torch.long, device=device)
    rows = torch.arange(total, device=device)  # batch rows still computed, in order
    live = list(range(total))  # their original indices
    out = [Decoded([], [], []) for _ in range(total)]
    ended = [False] * total  # rows that ended but stay in the batch (cache cannot drop them)
    shrink: bool | None = None
    logits = model(input_ids=ids[:, past:], attention_mask=mask, cache=cache, use_cache=True,
                   logits_to_keep=1, **step_inputs).logits
    for step in range(sampling.max_new_tokens):
        scores = logits[:, -1].to(copy=True, dtype=torch.float32)
        warped = warp(scores, sampling)
        logp = warped.log_softmax(-1)
        p = logp.exp()
        entropy = -(p * logp.masked_fill(p == 0, 0.0)).sum(-1)
        if sampling.temperature > 0:
            token = multinomial_rows(torch.softmax(warped, -1), rows, total)
        else:
            token = warped.argmax(-1)
        chosen = logp.gather(-1, token[:, None]).squeeze(-1)
        done = torch.isin(token, ends)
        token_list, chosen_list, entropy_list = token.tolist(), chosen.tolist(), entropy.tolist()
        finished = done.tolist()
        for j, b in enumerate(live):
            if ended[b]:
                finished[j] = True
                continue
            row = out[b]
            row.ids.append(token_list[j])
            row.logprobs.append(chosen_list[j])
            row.entropies.append(entropy_list[j])
            if (not finished[j] and stopped is not None and token_text is not None
                    and any(c in token_text(token_list[j]) for c in stop_chars)
                    and stopped(row.ids)):
                finished[j] = True
        if step + 1 == sampling.max_new_tokens or all(finished):
            break
        keep = [j for j, f in enumerate(finished) if not f]
        token = token[:, None]
        if shrink is None:
            shrink = can_select_rows(cache)
        if not shrink:
            for j, b in enumerate(live):
                ended[b] = finished[j]
        elif len(keep) < len(live):
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            token = token[index]
            rows = rows[index]
            live = [live[j] for j in keep]
            if mask is not None:
                mask = mask[index]
            if position is not None:
                position = position[:, index] if position.ndim == 3 else position[index]
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        extra = {}
        if position is not None:
            position = position[..., -1:] + 1
            extra["position_ids"] = position
        logits = model(input_ids=token, attention_mask=mask, cache=cache, use_cache=True,
                       **extra).logits
    return out
