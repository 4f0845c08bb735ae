"""Does transformers' continuous batching (paged attention, `generate_batch`) beat plain
`generate` for our rollout shape? Same tiny text model, prompts and forced lengths, interleaved.

    python benchmarks/cb_bench.py       # prints seconds per call of each, and the ratio

`generate_batch` takes token ids only (no `pixel_values`) and returns logprobs but not the
per-token entropies the rollout records, so for multimodal rollouts it is not usable as it is;
this measures whether it would be worth adapting for text turns.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import torch

from agents import tiny


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--prompt-tokens", type=int, default=160)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    from transformers import AutoModelForCausalLM, GenerationConfig
    from transformers.utils import logging

    warnings.filterwarnings("ignore")
    logging.set_verbosity_error()
    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(tiny.cached("text")).eval()
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(10, 1000, (args.prompt_tokens,), generator=gen).tolist()
               for _ in range(args.prompts)]
    config = GenerationConfig(do_sample=True, max_new_tokens=args.tokens,
                              min_new_tokens=args.tokens, pad_token_id=0, eos_token_id=-1)

    def plain() -> None:
        ids = torch.tensor(prompts)
        with torch.no_grad():
            model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)

    def continuous() -> None:
        model.generate_batch(prompts, generation_config=config, warmup=False)

    spent = {"generate": 0.0, "generate_batch": 0.0}
    for _ in range(args.rounds):
        for name, fn in (("generate", plain), ("generate_batch", continuous)):
            t0 = time.perf_counter()
            fn()
            spent[name] += time.perf_counter() - t0
    print(f"{args.prompts} prompts x {args.prompt_tokens} ids, {args.tokens} new tokens each, "
          f"{args.rounds} rounds interleaved, CPU, 1 thread")
    for name, s in spent.items():
        print(f"{name}: {s / args.rounds:.2f} s/call")
    print(f"generate_batch / generate: {spent['generate_batch'] / spent['generate']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
