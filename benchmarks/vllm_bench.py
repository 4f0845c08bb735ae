"""vLLM rollouts against transformers' generate (CPU): throughput, a trainer step, a branch's cost.

    bash scripts/setup.sh --vllm                 # vLLM's CPU build, once
    python benchmarks/vllm_bench.py              # prints a markdown table (~10 min on 2 cores)
    python benchmarks/vllm_bench.py --quick      # smoke test: small batches, one repeat
    python benchmarks/vllm_bench.py --skip-large --skip-trainer   # parts or models alone

Two models: the tiny Qwen3-VL (`agents.tiny.cached("vl")`, ~1.6M parameters) and a larger one
built the same way with a wider, deeper text tower (`--large-*`, by default 640 wide, 10 layers,
10 heads of 64, GQA 10/2: ~50M parameters, the tiny vocabulary, seed 0). Float32 throughout. Each
vLLM engine runs in this process (`LocalEngine`); its start-up (15-50 s here) is paid once per
run and reported on its own row. Three parts:

1. Rollout throughput: the same batch (`--prompts` MathVista prompts, tools not rendered so a
   prompt is ~370 ids, x `--samples` samples, `--tokens` new tokens, temperature 1, no stop
   strings) sampled by `HFPolicy.sample` and by `VLLMPolicy.sample`, alternating which goes first
   each repeat; the best of `--repeat` is reported. Tokens are the ids kept in the completions
   (EOS ends a row early in both; transformers still steps a finished row until the batch ends).
   Both sample with seed 0.
   The "of which vllm.LLM.generate" column is the time inside vLLM; the rest is ours
   (requests, decoding the completions, entropy from the top-20 logprobs).
2. One GRPO and one AXPO step of `Trainer` with `use_vllm=True` against `use_vllm=False` (tiny
   model, AXPO-MathVista-v0 with its tools rendered, 2 tasks x G=4, 64 new tokens a turn), the
   two trainers' steps interleaved; columns are the trainer's own `history` metrics. The
   trainer's construction time is reported too: with `use_vllm` it holds the engine's start and
   its first weight load. Tasks and seeds are the same on both sides, the samples are not (two
   samplers). At this size AXPO buys no resamples (r = 0.25 of 8 rollouts is no whole block of
   K = 4), and the untrained model calls no tools anyway: its step is GRPO's plus the search for
   branch points.
3. AXPO's branch with vLLM's prefix caching on and off (two engines, one after the other): a
   first completion of `--first-tokens` is sampled, a prefix of the prompt plus its first 3/4 is
   kept, and K=4 continuations of the rest are sampled with `sample_shared` ("branch"), against
   K fresh samples of the whole turn from the prompt ("regenerate"), alternating the two. Seeded
   (the same samples in both engines). The
   branch's cost is reported as a share of regenerating the turn, for each engine.

On a machine shared with other jobs, compare rows measured side by side (the ratios), not runs.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

# vLLM logs every step's thread-binding warning at WARNING; keep the table readable
# (--verbose keeps them). Set before vLLM is imported.
_VERBOSE = "--verbose" in sys.argv
if not _VERBOSE:
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")

import gymnasium as gym  # noqa: E402

import axpo_env  # noqa: E402,F401  (registers the envs)
from agents import tiny  # noqa: E402
from agents.hf import HFPolicy  # noqa: E402
from agents.policy import SamplingParams  # noqa: E402

ENV = "AXPO-MathVista-v0"


def build_large(root: Path, args: argparse.Namespace) -> Path:
    """The tiny model's tokenizer and vision tower with a bigger text tower (seed 0)."""
    half = args.large_head_dim // 2
    section = [half - 2 * (half * 5 // 16), half * 5 // 16, half * 5 // 16]  # 64: [12, 10, 10]
    text = {"hidden_size": args.large_hidden, "intermediate_size": args.large_intermediate,
            "num_hidden_layers": args.large_layers, "num_attention_heads": args.large_heads,
            "num_key_value_heads": args.large_kv_heads, "head_dim": args.large_head_dim,
            "rope_parameters": {"rope_type": "default", "rope_theta": 5_000_000.0,
                                "mrope_section": section, "mrope_interleaved": True}}
    return tiny.build(root / "large", kind="vl", seed=0, text_config=text,
                      vision_config={"out_hidden_size": args.large_hidden})


def parameters(policy: HFPolicy) -> str:
    n = sum(p.numel() for p in policy.model.parameters())
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def start_engine(path: Path, caching: bool = True) -> tuple[Any, float]:
    from agents.vllm_policy import EngineSettings, VLLMPolicy

    t0 = time.perf_counter()
    policy = VLLMPolicy.from_pretrained(
        path, EngineSettings(dtype="float32", enable_prefix_caching=caching), render_tools=False)
    return policy, time.perf_counter() - t0


def close_engine(policy: Any) -> None:
    policy.close()
    del policy
    gc.collect()


class InnerClock:
    """Seconds spent inside the engine's `vllm.LLM.generate` (the rest of a call is ours)."""

    def __init__(self, policy: Any):
        self.llm, self.seconds = policy.engine.llm, 0.0
        self.generate = self.llm.generate

        def timed(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return self.generate(*a, **k)
            finally:
                self.seconds += time.perf_counter() - t0

        self.llm.generate = timed

    def take(self) -> float:
        out, self.seconds = self.seconds, 0.0
        return out

    def remove(self) -> None:
        self.llm.generate = self.generate


def tokens_of(per_prompt: list) -> int:
    return sum(len(c.token_ids) for cs in per_prompt for c in cs)


# ------------------------------------------------------------------- part 1: throughput


def mathvista_prompts(policy: Any, count: int) -> list:
    env = gym.make(ENV)
    prompts = [policy.prompt(env.reset(seed=i, options={"index": i})[0]) for i in range(count)]
    env.close()
    return prompts


def throughput(name: str, hf: HFPolicy, vllm: Any, args: argparse.Namespace) -> list[tuple]:
    prompts = mathvista_prompts(hf, args.prompts)
    same = [p.ids for p in mathvista_prompts(vllm, args.prompts)] == [p.ids for p in prompts]
    assert same, "HFPolicy and VLLMPolicy render different prompt ids"
    seeded = SamplingParams(max_new_tokens=args.tokens, stop=(), seed=0)
    warm = SamplingParams(max_new_tokens=4, stop=(), seed=None)
    hf.sample(prompts[:1], n=2, sampling=warm)  # first calls pay one-off setup
    vllm.sample(prompts[:1], n=2, sampling=warm)
    clock = InnerClock(vllm)
    best: dict[str, tuple[float, int, float]] = {}
    runs = {"hf": lambda: hf.sample(prompts, n=args.samples, sampling=seeded),
            "vllm": lambda: vllm.sample(prompts, n=args.samples, sampling=seeded)}
    for r in range(args.repeat):
        for key in ("hf", "vllm") if r % 2 == 0 else ("vllm", "hf"):
            clock.take()
            t0 = time.perf_counter()
            out = runs[key]()
            seconds = time.perf_counter() - t0
            if key not in best or seconds < best[key][0]:
                best[key] = (seconds, tokens_of(out), clock.take())
    clock.remove()
    batch = f"{args.prompts} prompts x {args.samples} x {args.tokens} tok"
    (t_hf, n_hf, _), (t_v, n_v, inner) = best["hf"], best["vllm"]
    return [
        (f"{name}: HFPolicy.sample (generate), {batch}", n_hf, f"{t_hf:.2f} s",
         f"{n_hf / t_hf:,.0f} tok/s", ""),
        (f"{name}: VLLMPolicy.sample, {batch}", n_v, f"{t_v:.2f} s", f"{n_v / t_v:,.0f} tok/s",
         f"of which vllm.LLM.generate {inner:.2f} s"),
        (f"{name}:   ratio vLLM / generate (tok/s)", "", "",
         f"{(n_v / t_v) / (n_hf / t_hf):.2f}x", f"best of {args.repeat}, order alternated"),
    ]


# ------------------------------------------------------------------- part 3: branch cost


def first_completion(vllm: Any, prompt: Any, args: argparse.Namespace) -> list[int]:
    """A long first turn sampled by the engine (as a rollout leaves it in its prefix cache):
    the first of 8 seeded samples that ran to `--first-tokens`, else the longest."""
    out = vllm.sample([prompt], n=8, sampling=SamplingParams(
        max_new_tokens=args.first_tokens, stop=(), seed=11))[0]
    full = [c for c in out if c.finish_reason == "length"]
    return list((full[0] if full else max(out, key=lambda c: len(c.token_ids))).token_ids)


def branch_cost(vllm: Any, prompt: Any, ids: list[int], args: argparse.Namespace) -> dict:
    keep = len(ids) * 3 // 4
    prefix = prompt.extend(ids[:keep])
    k = args.branch_k
    rest = SamplingParams(max_new_tokens=args.first_tokens - keep, stop=(), seed=1)
    whole = SamplingParams(max_new_tokens=args.first_tokens, stop=(), seed=2)
    # the rollout that sampled `ids` left them in the cache; the same call for both engines
    vllm.sample([prefix], n=1, sampling=SamplingParams(max_new_tokens=1, stop=(), seed=3))
    runs = {"branch": lambda: [vllm.sample_shared(prefix, k, rest)],
            "regen": lambda: vllm.sample([prompt], n=k, sampling=whole)}
    best: dict[str, tuple[float, int]] = {}
    for r in range(args.repeat):
        for key in ("branch", "regen") if r % 2 == 0 else ("regen", "branch"):
            t0 = time.perf_counter()
            out = runs[key]()
            seconds = time.perf_counter() - t0
            if key not in best or seconds < best[key][0]:
                best[key] = (seconds, tokens_of(out))
    return {"keep": keep, "prefix": len(prefix), "prompt": len(prompt), **best}


def branch_rows(name: str, on: dict, off: dict, args: argparse.Namespace) -> list[tuple]:
    rows = []
    for label, m in (("on", on), ("off", off)):
        (t_b, n_b), (t_r, n_r) = m["branch"], m["regen"]
        rows += [
            (f"{name}: branch, prefix caching {label}: sample_shared(prefix, K={args.branch_k})",
             n_b, f"{t_b * 1e3:,.0f} ms", f"{t_b / t_r:.0%} of regenerating",
             f"prefix {m['prefix']} ids = prompt {m['prompt']} + kept {m['keep']}"),
            (f"{name}: regenerate the turn, prefix caching {label}: K={args.branch_k} from the "
             "prompt", n_r, f"{t_r * 1e3:,.0f} ms", "100%",
             f"{args.first_tokens} new tokens max"),
        ]
    (t_on, _), (t_off, _) = on["branch"], off["branch"]
    rows.append((f"{name}:   ratio branch time, caching off / on", "", "",
                 f"{t_off / t_on:.2f}x", f"best of {args.repeat}, order alternated"))
    return rows


def model_parts(name: str, path: Path, args: argparse.Namespace) -> list[tuple]:
    """Part 1 and part 3 on one model: the caching engine serves both, then the other one."""
    rows: list[tuple] = []
    hf = HFPolicy.from_pretrained(path, render_tools=False)
    size = parameters(hf)
    name = f"{name} ({size})"
    vllm, start = start_engine(path, caching=True)
    rows.append((f"{name}: vLLM engine start (prefix caching on)", "", f"{start:.1f} s",
                 "once per run", "VLLMPolicy.from_pretrained"))
    if not args.skip_throughput:
        rows += throughput(name, hf, vllm, args)
    del hf
    gc.collect()
    if args.skip_branch:
        close_engine(vllm)
        return rows
    prompt = mathvista_prompts(vllm, 1)[0]
    ids = first_completion(vllm, prompt, args)
    on = branch_cost(vllm, prompt, ids, args)
    close_engine(vllm)
    vllm, start = start_engine(path, caching=False)
    rows.append((f"{name}: vLLM engine start (prefix caching off)", "", f"{start:.1f} s",
                 "once per run", ""))
    off = branch_cost(vllm, prompt, ids, args)
    close_engine(vllm)
    return rows + branch_rows(name, on, off, args)


# ------------------------------------------------------------------- part 2: trainer step

STEP_KEYS = ("step_time", "rollout_time", "explore_time", "update_time", "weight_sync_time")


def trainer_rows(root: Path, args: argparse.Namespace) -> list[tuple]:
    from algorithms.config import AXPOConfig, GRPOConfig
    from algorithms.trainer import Trainer

    path = tiny.cached("vl")
    common = dict(model=str(path), env_id=ENV, tasks_per_step=2, num_generations=4,
                  max_completion_length=64, seed=0, max_steps=10**6, save_steps=10**6,
                  report_to="none")
    rows = []
    for algorithm, config_cls in (("grpo", GRPOConfig), ("axpo", AXPOConfig)):
        trainers, init = {}, {}
        for use_vllm in (False, True):
            key = "vllm" if use_vllm else "generate"
            t0 = time.perf_counter()
            trainers[key] = Trainer(algorithm, config_cls(
                output_dir=str(root / f"{algorithm}-{key}"), use_vllm=use_vllm, **common))
            init[key] = time.perf_counter() - t0
        logs: dict[str, list[dict]] = {"generate": [], "vllm": []}
        for step in range(args.warmup_steps + args.steps):
            for key in ("generate", "vllm") if step % 2 == 0 else ("vllm", "generate"):
                metrics = trainers[key].training_step()
                if step >= args.warmup_steps:
                    logs[key].append(metrics)
        for key in ("generate", "vllm"):
            log = logs[key]

            def mean(k: str, log: list[dict] = log) -> float:
                return sum(m.get(k, 0.0) for m in log) / len(log)

            times = " / ".join(f"{mean(k):.2f}" for k in STEP_KEYS)
            detail = (f"{mean('generated_tokens'):.0f} tokens, {mean('mean_turns'):.1f} turns")
            if algorithm == "axpo":
                detail += f", {mean('axpo/resamples'):.0f} resamples"
            if key == "vllm":
                detail += f", logprob gap {mean('vllm_logprob_gap'):.1e}"
            rows.append((f"tiny: {algorithm.upper()} step, use_vllm={key == 'vllm'}",
                         f"{init[key]:.1f} s", times, detail))
        rows.append((f"tiny:   {algorithm.upper()} engine start in Trainer(use_vllm=True)",
                     f"{init['vllm'] - init['generate']:.1f} s", "",
                     "construction time over use_vllm=False: engine start + first weight load"))
        trainers["vllm"].rollouts.close()
        for t in trainers.values():
            t.envs.close()
        del trainers
        gc.collect()
    return rows


# ------------------------------------------------------------------------------- report


def table(header: tuple, rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 2 prompts x 4 samples x 32 tokens, one repeat")
    parser.add_argument("--prompts", type=int, default=8, help="part 1: prompts in the batch")
    parser.add_argument("--samples", type=int, default=8, help="part 1: samples per prompt")
    parser.add_argument("--tokens", type=int, default=128, help="part 1: max new tokens")
    parser.add_argument("--large-prompts", type=int, default=4,
                        help="part 1 on the large model: prompts (its generate is slow on CPU)")
    parser.add_argument("--large-samples", type=int, default=4,
                        help="part 1 on the large model: samples per prompt")
    parser.add_argument("--repeat", type=int, default=2,
                        help="timed repeats per side (order alternated); the best is reported")
    parser.add_argument("--steps", type=int, default=2, help="part 2: measured steps per trainer")
    parser.add_argument("--warmup-steps", type=int, default=1,
                        help="part 2: untimed steps first (the first step pays one-off setup)")
    parser.add_argument("--first-tokens", type=int, default=256,
                        help="part 3: the first completion's length; 3/4 of it is kept")
    parser.add_argument("--branch-k", type=int, default=4, help="part 3: K continuations")
    parser.add_argument("--large-hidden", type=int, default=640)
    parser.add_argument("--large-intermediate", type=int, default=2048)
    parser.add_argument("--large-layers", type=int, default=10)
    parser.add_argument("--large-heads", type=int, default=10)
    parser.add_argument("--large-kv-heads", type=int, default=2)
    parser.add_argument("--large-head-dim", type=int, default=64,
                        help="vLLM's CPU attention needs 32 or more")
    parser.add_argument("--skip-large", action="store_true", help="the tiny model only")
    parser.add_argument("--skip-throughput", action="store_true", help="no part 1")
    parser.add_argument("--skip-trainer", action="store_true", help="no part 2")
    parser.add_argument("--skip-branch", action="store_true", help="no part 3")
    parser.add_argument("--verbose", action="store_true", help="keep vLLM's log")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.samples, args.tokens, args.repeat = 2, 4, 32, 1
        args.large_prompts, args.large_samples, args.first_tokens = 2, 2, 64
        args.warmup_steps = 0
    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    t0 = time.perf_counter()
    model_table, step_table = [], []
    with tempfile.TemporaryDirectory(prefix="axpo-vllm-bench-") as tmp:
        if not (args.skip_throughput and args.skip_branch):
            model_table += model_parts("tiny", tiny.cached("vl"), args)
        if not args.skip_trainer:
            step_table += trainer_rows(Path(tmp), args)
        if not args.skip_large and not (args.skip_throughput and args.skip_branch):
            large = build_large(Path(tmp), args)
            small = dict(prompts=args.prompts, samples=args.samples)
            args.prompts, args.samples = args.large_prompts, args.large_samples
            model_table += model_parts("large", large, args)
            args.prompts, args.samples = small["prompts"], small["samples"]
    if model_table:
        print(table(("measure", "generated tokens", "time", "rate or share", "detail"),
                    model_table))
        print()
    if step_table:
        print(table(("trainer step (tiny, 2 tasks x G=4, 64 tok/turn)", "construction",
                     "step / rollout / explore / update / weight sync (s)", "detail"),
                    step_table))
        print()
    print(f"total {time.perf_counter() - t0:.0f} s; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
