"""Scale benchmark: rollouts, an AXPO branch, a GRPO and an AXPO step of a Qwen3-VL at the
published 2B shape (random weights from its config: no download), on the real MathVista env.

    python benchmarks/scale_bench.py            # the 2B shape, bf16: needs a GPU (~30 GB)
    python benchmarks/scale_bench.py --small    # a small shape on CPU, e.g. to smoke-test

Prints generation tokens/s (rollouts, and K resamples branched from a kept prefix), update
tokens/s (every id of the trained rows, forward and backward), step time per phase and peak
memory (accelerator memory on a GPU, the process's peak RSS on CPU). Random weights never
answer, so every turn is forced to `--tokens` new tokens and each episode runs `--turns` turns;
AXPO's resampling does not trigger on them, which is why the branch is timed on its own. The
tokenizer and processor are the embedded tiny model's (same special tokens, smaller BPE).
The 2B shape is Qwen3-VL-2B-Instruct's published config.json; TRL's GRPOTrainer on the same
model is not run here (its multimodal multi-turn path differs from ours).
"""

from __future__ import annotations

import argparse
import functools
import math
import resource
import sys
import tempfile
import time
from dataclasses import replace
from typing import Any

import torch

import axpo_env  # noqa: F401  (registers the envs)
from agents import pretrained, tiny
from agents.hf import HFPolicy
from agents.rollout import branch, rollout
from algorithms.config import AXPOConfig, GRPOConfig
from algorithms.trainer import Trainer

#: Qwen3-VL-2B-Instruct's towers (its config.json); ids and tokens come from the tiny model.
#: Checked 2026-11-26 against torchtitan's `qwen3_vl_configs["2B"]` (github.com/pytorch/
#: torchtitan, torchtitan/experiments/qwen3_vl/__init__.py: "Qwen3 1.7B LLM + ViT": dim 2048,
#: 28 layers, FFN 6144, 16 heads, 8 KV heads, head_dim 128, rope theta 5e6, tied embeddings,
#: mrope [24, 20, 20]; ViT dim 1024, FFN 4096, 24 layers, 16 heads, patch 16, out 2048, 2304
#: position embeddings, deepstack [5, 11, 17]); the Qwen3VLVisionConfig defaults of
#: sgl_jax (sgl_jax.srt.multimodal.configs) give the same vision tower. Patch 16, temporal
#: patch 2, merge 2 and rms_norm_eps 1e-6 come from the tiny config, which has the same. The
#: hub's config.json itself was not readable from here (no download).
SHAPES: dict[str, dict[str, Any]] = {
    "2b": {
        "text_config": {
            "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28,
            "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
            "vocab_size": 151936, "max_position_embeddings": 262144,
            "rope_parameters": {"rope_type": "default", "rope_theta": 5_000_000.0,
                                "mrope_section": [24, 20, 20], "mrope_interleaved": True}},
        "vision_config": {
            "depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16,
            "out_hidden_size": 2048, "num_position_embeddings": 2304,
            "deepstack_visual_indexes": [5, 11, 17]},
        "tie_word_embeddings": True,
    },
    "small": {
        "text_config": {
            "hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
            "rope_parameters": {"rope_type": "default", "rope_theta": 5_000_000.0,
                                "mrope_section": [12, 10, 10], "mrope_interleaved": True}},
        "vision_config": {
            "depth": 2, "hidden_size": 128, "intermediate_size": 256, "num_heads": 4,
            "out_hidden_size": 256, "num_position_embeddings": 256,
            "deepstack_visual_indexes": [1]},
        "tie_word_embeddings": True,
    },
}


def build_policy(shape: str, device: str, dtype: torch.dtype) -> HFPolicy:
    """A randomly initialized Qwen3-VL of `shape` behind the tiny model's processor."""
    from transformers import AutoConfig, GenerationConfig, Qwen3VLForConditionalGeneration

    path = tiny.cached("vl")
    config = AutoConfig.from_pretrained(path)
    for tower in ("text_config", "vision_config"):
        for key, value in SHAPES[shape][tower].items():
            setattr(getattr(config, tower), key, value)
    config.tie_word_embeddings = SHAPES[shape]["tie_word_embeddings"]
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen3VLForConditionalGeneration._from_config(config, dtype=dtype)
    model.generation_config = GenerationConfig.from_pretrained(path)
    return HFPolicy(model.eval(), pretrained.load_processor(path))


def forced(trainer: Trainer, tokens: int) -> None:
    """Every turn exactly `tokens` new tokens (random weights would stop anywhere)."""
    trainer.sampling = replace(trainer.sampling, stop=())
    trainer.policy.decoding = "generate"  # min_new_tokens is a keyword of generate
    model = trainer.policy.model
    if not isinstance(model.generate, functools.partial):
        model.generate = functools.partial(model.generate, min_new_tokens=tokens)


def peak_memory_gb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def run(args: argparse.Namespace) -> list[tuple[str, str]]:
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    bf16 = device == "cuda"
    policy = build_policy("small" if args.small else "2b", device,
                          torch.bfloat16 if bf16 else torch.float32)
    params = sum(p.numel() for p in policy.model.parameters())
    rollouts = args.tasks * args.group
    tmp = tempfile.mkdtemp(prefix="axpo-scale-bench-")
    common = dict(
        env_id="AXPO-MathVista-v0", tasks_per_step=args.tasks, num_generations=args.group,
        max_completion_length=args.tokens, max_turns=args.turns, bf16=bf16, beta=0.0,
        learning_rate=1e-6, per_device_train_batch_size=args.micro_batch,
        gradient_accumulation_steps=math.ceil(rollouts / args.micro_batch),
        gradient_checkpointing=args.gradient_checkpointing, max_steps=10**6,
        save_steps=10**6, report_to="none", seed=0)
    grpo = Trainer("grpo", GRPOConfig(output_dir=f"{tmp}/grpo", **common), policy)
    forced(grpo, args.tokens)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    t0 = time.perf_counter()  # rollouts alone: generation throughput
    trajs = rollout(grpo.envs, policy, grpo.task_ids[:args.tasks], group_size=args.group,
                    sampling=grpo.sampling, batch_size=rollouts, progress=False)
    rollout_s = time.perf_counter() - t0
    generated = sum(sum(t.mask) for t in trajs)
    t0 = time.perf_counter()  # one AXPO branch: K resamples from a kept prefix
    resamples = branch(trajs[0], 0, args.tokens // 2, policy, args.resamples, grpo.envs,
                       grpo.sampling)
    branch_s = time.perf_counter() - t0
    resampled = sum(sum(t.train_mask) for t in resamples)

    steps = {}
    for name, trainer in (("grpo", grpo), ("axpo", None)):
        if trainer is None:
            trainer = Trainer("axpo", AXPOConfig(output_dir=f"{tmp}/axpo", **common), policy)
            forced(trainer, args.tokens)
        steps[name] = trainer.training_step()
    g = steps["grpo"]
    update_ids = g["trained_rollouts"] * (sum(len(t.ids) for t in trajs) / len(trajs))
    a = steps["axpo"]
    return [
        ("model", f"Qwen3-VL {'small' if args.small else '2B'} shape, {params / 1e6:,.1f}M "
                  f"parameters, {'bf16' if bf16 else 'fp32'}, {device}"
                  f"{' (' + torch.cuda.get_device_name() + ')' if device == 'cuda' else ''}"),
        ("batch", f"{args.tasks} tasks x G={args.group}, {args.turns} turns x {args.tokens} "
                  f"tokens, micro-batches of {args.micro_batch}"),
        ("rollout: generation tokens/s", f"{generated / rollout_s:,.0f} ({generated} tokens "
                                         f"in {rollout_s:.2f} s)"),
        ("AXPO branch: generation tokens/s", f"{resampled / branch_s:,.0f} ({args.resamples} "
                                             f"resamples, {branch_s:.2f} s)"),
        ("GRPO step: update tokens/s", f"{update_ids / g['update_time']:,.0f} "
                                       f"({g['update_time']:.2f} s)"),
        ("GRPO step: time", f"{g['step_time']:.2f} s (rollout {g['rollout_time']:.2f} s)"),
        ("AXPO step: time", f"{a['step_time']:.2f} s (rollout {a['rollout_time']:.2f} s, "
                            f"explore {a['explore_time']:.2f} s, triggered "
                            f"{a['axpo/triggered_questions']:.0f})"),
        ("peak memory", f"{peak_memory_gb(device):.2f} GiB "
                        f"({'accelerator' if device == 'cuda' else 'process RSS'})"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the small shape (CPU-sized)")
    parser.add_argument("--cpu", action="store_true", help="stay on CPU even with a GPU")
    parser.add_argument("--tasks", type=int, default=4, help="tasks per step")
    parser.add_argument("--group", type=int, default=8, help="rollouts per task, G")
    parser.add_argument("--turns", type=int, default=2, help="turns per episode")
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per turn")
    parser.add_argument("--resamples", type=int, default=4, help="K of the branch")
    parser.add_argument("--micro-batch", type=int, default=8,
                        help="per_device_train_batch_size")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args(argv)
    rows = run(args)
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
