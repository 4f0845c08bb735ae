"""Supervised fine-tuning on tool-use trajectories: the cold start before GRPO/AXPO.

Tokens are laid out exactly as an `HFPolicy` rollout of the same conversation records them:
the prompt through the generation prompt, each assistant turn as the model generates it
(thinking, tool call or answer; stop strings end a turn, so no end-of-turn token is a target
unless the text has one), then the template's text for the env's reply (`ChatEncoder.reply`, the
code `HFPolicy` uses); only assistant turns carry labels. Rendering the whole conversation at
once would not do: Qwen3's thinking template drops earlier reasoning and inserts an empty
`<think>` block into turns without `</think>`, neither of which matches what the model samples.
Text of system, user and tool messages stays plain text (see `agents.chat_encoding`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from agents.chat_encoding import ChatEncoder
from agents.hf import HFPolicy
from agents.loading import load_policy
from agents.pretrained import save_prompt_settings
from algorithms.config import SFTConfig
from algorithms.outputs import (
    make_logger,
    plot_history,
    seed_everything,
    write_checkpoint,
)
from axpo_env.errors import DatasetError
from axpo_env.protocol import render_tool_call

ROLES = ("system", "user", "assistant", "tool")
IGNORE = -100  # the label of tokens that carry no loss (PyTorch's cross_entropy ignore_index)


class _Bad(ValueError):
    """What is wrong with one JSONL record; `load_sft_dataset` adds the file and line."""


def _need(ok: Any, message: str) -> None:
    if not ok:
        raise _Bad(message)


def load_sft_dataset(path: str | Path) -> list[dict[str, Any]]:
    """Read and check a JSONL file of trajectories, `{"messages": [...], "tools": [...]}` a line,
    up front, so a bad line fails before training, naming its line. Image paths are resolved
    against the file's folder and must exist; data URLs must decode. Blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file; data_path must be a JSONL file of "
                           "trajectories, one {'messages': [...]} object per line")
    examples = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            if line.strip():
                examples.append({**_check_record(json.loads(line), path.parent), "line": n})
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}, line {n}: not valid JSON ({e.msg} at column "
                               f"{e.colno})") from None
        except _Bad as e:
            raise DatasetError(f"{path}, line {n}: {e}") from None
    if not examples:
        raise DatasetError(f"{path}: no trajectories in the file")
    return examples


def _check_record(record: Any, root: Path) -> dict[str, Any]:
    _need(isinstance(record, dict) and isinstance(record.get("messages"), list),
          "expected an object with a 'messages' list")
    tools = record.get("tools")
    _need(tools is None or isinstance(tools, list) and all(isinstance(t, dict) for t in tools),
          "'tools' must be a list of JSON tool schemas")
    messages = [_check_message(m, i, root) for i, m in enumerate(record["messages"])]
    roles = [m["role"] for m in messages]
    _need("assistant" in roles, "no assistant message: nothing to learn from this trajectory")
    _need("user" in roles[:roles.index("assistant")],
          "the first assistant message must follow a user message")
    return {"messages": messages, "tools": tools or None}


def _check_message(m: Any, i: int, root: Path) -> dict[str, Any]:
    _need(isinstance(m, dict) and m.get("role") in ROLES,
          f"message {i}: expected an object with a role in {list(ROLES)}")
    content = m.get("content")
    _need(content is not None or m["role"] == "assistant" and m.get("tool_calls"), f"message "
          f"{i}: no content (only an assistant message with tool_calls may have none)")
    if not isinstance(content, list):  # a string; the template reports anything else
        return dict(m)
    parts = []
    for part in content:
        if isinstance(part, dict) and (part.get("type") == "image" or "image" in part):
            _need(m["role"] != "assistant", f"message {i}: an assistant turn cannot have images")
            part = {"type": "image", "image": _resolve_image(part, i, root)}
        parts.append(part)
    return {**m, "content": parts}


def _resolve_image(part: dict, i: int, root: Path) -> str:
    src = part.get("image", part.get("url", part.get("path")))
    _need(isinstance(src, str) and src,
          f"message {i}: an image part needs 'image': a file path or a data URL")
    if src.startswith("data:"):
        try:
            base64.b64decode(src.split(",", 1)[1], validate=True)
        except (IndexError, binascii.Error):
            raise _Bad(f"message {i}: image data URL is not valid base64") from None
        return src
    if src.startswith(("http://", "https://")):
        return src
    file = Path(src) if os.path.isabs(src) else root / src
    _need(file.is_file(), f"message {i}: image file not found: {file}")
    return str(file)


def tokenize_example(processor: Any, example: dict[str, Any],
                     max_length: int | None = None,
                     tool_call_format: str = "hermes") -> dict[str, torch.Tensor]:
    """input_ids and labels (IGNORE except on assistant turns), plus pixel_values and
    image_grid_thw when there are images. Longer than `max_length`: cut at the end (never
    through an image's tokens), as the config documents. Structured `tool_calls` are written
    in `tool_call_format` (`assistant_text`)."""
    chat = ChatEncoder(processor)
    try:
        ids, labels, pixels, grids = [], [], [], []
        for text, target, images in _pieces(chat, example["messages"], example.get("tools"),
                                            tool_call_format):
            piece_ids, vision = chat.encode(text, images)
            piece = torch.tensor(piece_ids, dtype=torch.long)
            if vision:
                pixels.append(vision["pixel_values"])
                grids.append(vision["image_grid_thw"])
            ids.append(piece)
            labels.append(piece if target else torch.full_like(piece, IGNORE))
    except Exception as e:  # a bad image or a template that cannot render it: name the line
        raise DatasetError(f"line {example.get('line', '?')}: cannot tokenize this trajectory: "
                           f"{type(e).__name__}: {e}") from e
    out = {"input_ids": torch.cat(ids), "labels": torch.cat(labels)}
    if pixels:
        out["pixel_values"], out["image_grid_thw"] = torch.cat(pixels), torch.cat(grids)
    if max_length is not None and len(out["input_ids"]) > max_length:
        out = _truncate(out, max_length, chat.tokenizer, processor)
    return out


def _pieces(chat: ChatEncoder, msgs: list[dict], tools: list[dict] | None,
            tool_call_format: str = "hermes") -> list[tuple[str, bool, list[Any]]]:
    """(text, is_assistant_target, images in it) segments laid out as an `HFPolicy` rollout
    lays them out: the prompt through the generation prompt, each assistant turn as the model
    writes it, then `ChatEncoder.reply` for the env's messages up to the next turn."""
    eos = chat.tokenizer.eos_token or ""
    turns = [i for i, m in enumerate(msgs) if m["role"] == "assistant"]
    text, images = chat.render(msgs[:turns[0]], tools, True)
    pieces = [(text, False, images)]
    for k, i in enumerate(turns):
        target = assistant_text(msgs[i], opened_thinking=pieces[-1][0].endswith("<think>\n"),
                                tool_call_format=tool_call_format)
        pieces.append((target, True, []))
        if k + 1 < len(turns):
            ended = eos if eos and target.endswith(eos) else None  # the model ended it
            reply, images = chat.reply(msgs[i + 1:turns[k + 1]], tools, ended_with=ended)
            pieces.append((reply, False, images))
    return pieces


def assistant_text(message: dict[str, Any], opened_thinking: bool,
                   tool_call_format: str = "hermes") -> str:
    """What the model generates for an assistant message: its text as it is (no end-of-turn
    token unless the text has one; no empty thinking block the template would insert), with
    `reasoning_content` and `tool_calls` written as Qwen's templates write them (`tool_calls`
    in `tool_call_format`: Qwen3's Hermes JSON, or Qwen3.5's `qwen3_coder` XML). After a
    generation prompt that already opened `<think>` (`opened_thinking`), a leading `<think>` in
    the text is that same tag and is not generated again."""
    content = message.get("content") or ""
    if not isinstance(content, str):
        content = "".join(p.get("text", "") for p in content
                          if isinstance(p, dict) and p.get("type", "text") == "text")
    head, reasoning = "", message.get("reasoning_content")
    if isinstance(reasoning, str):
        head = ("" if opened_thinking else "<think>\n") + reasoning.strip("\n") + "\n</think>\n\n"
        content = content.lstrip("\n")
    elif opened_thinking and content.startswith("<think>"):
        content = content[len("<think>"):]
        content = content[1:] if content.startswith("\n") else content
    for j, call in enumerate(message.get("tool_calls") or []):
        fn = call.get("function", call) if isinstance(call, dict) else {}
        content += ("\n" if j or content else "") + render_tool_call(
            str(fn.get("name")), fn.get("arguments", {}), ensure_ascii=False,
            tool_call_format=tool_call_format)
    return head + content


def _check_calls(examples: list[dict[str, Any]], tool_call_format: str) -> None:
    """Every structured `tool_calls` entry can be written in `tool_call_format`, checked before
    the model loads (`qwen3_coder` needs JSON-object arguments and names without spaces)."""
    for example in examples:
        for message in example["messages"]:
            if message["role"] == "assistant" and message.get("tool_calls"):
                try:
                    assistant_text(message, False, tool_call_format)
                except (ValueError, TypeError, AttributeError) as e:
                    raise DatasetError(f"line {example.get('line', '?')}: a tool call cannot be "
                                       f"written as tool_call_format={tool_call_format!r}: "
                                       f"{e}") from None


def _truncate(ex: dict[str, torch.Tensor], end: int, tok: Any, processor: Any
              ) -> dict[str, torch.Tensor]:
    """Keep the first `end` tokens, moved back to before an image they would cut in two."""
    ids, grid = ex["input_ids"], ex.get("image_grid_thw")
    kept = 0
    if grid is not None:
        merge = getattr(processor.image_processor, "merge_size", 2)
        pads = (ids == tok.convert_tokens_to_ids("<|image_pad|>")).nonzero().flatten().tolist()
        start_id, seen = tok.convert_tokens_to_ids("<|vision_start|>"), 0
        for n in (grid.prod(-1) // merge ** 2).tolist():
            first, last = pads[seen], pads[seen + n - 1]
            if last >= end:
                if first <= end:  # an image's pads, or its <|vision_start|>, are cut
                    end = first - int(first > 0 and int(ids[first - 1]) == start_id)
                break
            kept, seen = kept + 1, seen + n
    out = {"input_ids": ids[:end], "labels": ex["labels"][:end]}
    if kept:
        out["pixel_values"] = ex["pixel_values"][:int(grid[:kept].prod(-1).sum())]
        out["image_grid_thw"] = grid[:kept]
    return out


def _collate(items: Sequence[dict[str, torch.Tensor]], pad_id: int, image_pad_id: int | None,
             device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Right-pad a micro-batch (labels IGNORE on padding); vision inputs in batch order."""
    width = max(len(x["input_ids"]) for x in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels, mask = torch.full_like(ids, IGNORE), torch.zeros_like(ids)
    for b, x in enumerate(items):
        n = len(x["input_ids"])
        ids[b, :n], labels[b, :n], mask[b, :n] = x["input_ids"], x["labels"], 1
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    with_images = [x for x in items if "pixel_values" in x]
    if with_images and image_pad_id is not None:
        batch["pixel_values"] = torch.cat([x["pixel_values"] for x in with_images]).to(dtype)
        batch["image_grid_thw"] = torch.cat([x["image_grid_thw"] for x in with_images])
        batch["mm_token_type_ids"] = (ids == image_pad_id).long()
    return {k: v.to(device) for k, v in batch.items()}


def _schedule(n: int, cfg: SFTConfig, rng: np.random.Generator, shard: slice
              ) -> Iterator[tuple[int, list[list[int]]]]:
    """(epoch, micro-batches of example indices) per optimizer step, reshuffled every epoch;
    an epoch's last step takes the micro-batches left over, as in transformers' Trainer."""
    bs, accum, epoch = cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps, 0
    while True:
        order = rng.permutation(n)[shard].tolist()
        micro = [order[i:i + bs] for i in range(0, len(order), bs)]
        for i in range(0, len(micro), accum):
            yield epoch, micro[i:i + accum]
        epoch += 1


def train_sft(config: SFTConfig, policy: HFPolicy | str | Path | None = None) -> Path:
    """Fine-tune on `config.data_path` and return the final checkpoint dir.

    `policy`: an `HFPolicy` (trained in place), a model spec for `agents.load_policy` (a
    checkpoint path; '' or 'tiny': the embedded tiny Qwen3-VL), or None for `config.model`.
    The loss is the mean cross-entropy over the assistant tokens of an optimizer step (all its
    micro-batches together), so long and short turns weigh the same per token however the step
    is split into micro-batches.
    """
    from accelerate import Accelerator
    from transformers import get_linear_schedule_with_warmup

    cfg = config
    seed_everything(cfg.seed)
    examples = load_sft_dataset(cfg.data_path)
    _check_calls(examples, cfg.tool_call_format)
    if not isinstance(policy, HFPolicy):
        policy = load_policy(policy or cfg.model, token_level=True)
    accelerator = Accelerator(mixed_precision="bf16" if cfg.bf16 else "no")
    shard = slice(accelerator.process_index, None, accelerator.num_processes)
    local = len(range(len(examples))[shard])
    per_epoch = math.ceil(math.ceil(local / cfg.per_device_train_batch_size)
                          / cfg.gradient_accumulation_steps)
    total = cfg.max_steps if cfg.max_steps > 0 else cfg.num_train_epochs * per_epoch
    model = policy.model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate,
                                  weight_decay=cfg.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, cfg.warmup_steps, total)
    model, optimizer = accelerator.prepare(model, optimizer)
    out_dir, main = Path(cfg.output_dir), accelerator.is_main_process
    logger = make_logger(out_dir, cfg.report_to, main)
    history: list[dict[str, float]] = []
    tokens, losses, saved = 0, [], None
    plan = _schedule(len(examples), cfg, np.random.default_rng(cfg.seed), shard)
    tokenized = functools.lru_cache(maxsize=cfg.tokenized_cache_size)(
        lambda j: tokenize_example(policy.processor, examples[j], cfg.max_length,
                                   cfg.tool_call_format))
    # other ranks off; no explicit `disable` on the main one, so TQDM_DISABLE applies
    bar = tqdm(range(1, total + 1), desc="sft", unit="step", **({} if main else {"disable": True}))
    for step in bar:
        epoch, micro = next(plan)
        batches = [b for b in (_micro_batch(tokenized, examples, idx, cfg.max_length)
                               for idx in micro) if b]
        targets = sum(int((x["labels"][1:] != IGNORE).sum()) for b in batches for x in b)
        lr, loss_sum = optimizer.param_groups[0]["lr"], 0.0
        for k, items in enumerate(batches):
            inputs = _collate(items, policy.pad_id, policy.image_pad_id, accelerator.device,
                              policy.model.dtype)
            labels = inputs.pop("labels")[:, 1:]
            sync = k == len(batches) - 1
            with contextlib.nullcontext() if sync else accelerator.no_sync(model):
                with accelerator.autocast():
                    logits = model(**inputs).logits[:, :-1]
                keep = labels != IGNORE
                loss = torch.nn.functional.cross_entropy(
                    logits[keep].float(), labels[keep], reduction="sum") / max(targets, 1)
                accelerator.backward(loss)
            loss_sum += float(loss.detach())
            tokens += int(inputs["attention_mask"].sum())
        norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm or math.inf)
        if targets:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        losses.append(loss_sum)
        history.append({"step": step, "epoch": epoch, "loss": loss_sum, "learning_rate": lr,
                        "grad_norm": float(norm), "tokens": tokens})
        bar.set_postfix(loss=f"{loss_sum:.3f}")
        if step % cfg.logging_steps == 0 or step == total:
            for key, value in {**history[-1], "loss": float(np.mean(losses))}.items():
                if key != "step":
                    logger.record(key, value)
            logger.dump(step)
            losses = []
        if step % cfg.save_steps == 0 or step == total:
            saved = _save(accelerator, model, policy.processor, out_dir, step, cfg, history,
                          render_tools=any(e.get("tools") for e in examples))
    logger.close()
    policy.model.eval()
    if main:
        plot_history(history, out_dir / "metrics.png", ("loss", "learning_rate", "grad_norm"),
                     "sft")
    return saved


def _micro_batch(tokenized: Callable[[int], dict[str, torch.Tensor]], examples: list[dict],
                 idx: list[int], max_length: int) -> list[dict[str, torch.Tensor]]:
    """Tokenized examples; one that truncation left without an assistant token is skipped."""
    out = []
    for j in idx:
        x = tokenized(j)
        if (x["labels"][1:] != IGNORE).any():
            out.append(x)
        else:
            warnings.warn(f"line {examples[j]['line']}: no assistant token within max_length="
                          f"{max_length}; skipped", stacklevel=2)
    return out


def _save(accelerator: Any, model: Any, processor: Any, out_dir: Path, step: int,
          cfg: SFTConfig, history: list[dict[str, float]], render_tools: bool) -> Path:
    """Model, processor, the prompt settings (`render_tools`: whether the demos' prompts carried
    tool schemas, so RL and eval render them alike) and trainer.json, written atomically like
    the RL trainer's."""

    def write(folder: Path) -> None:
        accelerator.unwrap_model(model).save_pretrained(folder)
        processor.save_pretrained(folder)
        save_prompt_settings(folder, render_tools)
        (folder / "trainer.json").write_text(json.dumps(
            {"step": step, "algorithm": "sft", "config": cfg.to_dict(), "history": history},
            indent=1))

    return write_checkpoint(accelerator, out_dir, step, write)
