"""What `--save-trajectories` costs: eval wall time and disk, saving off vs on.

Two runs, each alternated off/on `--repeats` times (best time kept, as CPU neighbours add noise):
- a scripted crop policy on the HR-Bench 4K fixture (3840x2160 task images, a 1536-px zoomed
  crop per episode): no model time at all, so the ratio is the worst case, and the absolute
  milliseconds per episode are what saving adds to any model;
- the embedded tiny model (`--model tiny`) on the MathVista fixture: a real generate loop.

    python benchmarks/save_trajectories_bench.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def timed(cfg, policy) -> float:
    from evaluation.evaluate import run_eval

    shutil.rmtree(cfg.output_dir, ignore_errors=True)
    t0 = time.perf_counter()
    run_eval(cfg, policy, progress=False)
    return time.perf_counter() - t0


def bench(name: str, make_cfg, make_policy, repeats: int) -> None:
    best = {False: float("inf"), True: float("inf")}
    for _ in range(repeats):
        for save in (False, True):
            cfg = make_cfg(save)
            best[save] = min(best[save], timed(cfg, make_policy()))
    out = Path(make_cfg(True).output_dir)
    episodes = sum(1 for _ in (out / "trajectories" / "episodes.jsonl").open())
    saved, images = du(out / "trajectories"), len(list((out / "trajectories/images").iterdir()))
    results = (out / "results.jsonl").stat().st_size
    extra = best[True] - best[False]
    print(f"| {name} | {episodes} | {best[False]:.2f} s | {best[True]:.2f} s | "
          f"{extra / episodes * 1000:+.0f} ms ({extra / best[False]:+.0%}) | "
          f"{saved / 1024:.0f} KB ({images} images; {saved / episodes / 1024:.0f} KB/episode) "
          f"| {results / 1024:.1f} KB |")


def main(repeats: int = 2) -> None:
    from axpo_env.tasks.hrbench import HRBench4K
    from evaluation.evaluate import EvalConfig, make_policy
    from tests.test_view import CropThenAnswer

    work = Path(tempfile.mkdtemp())
    print("| run | episodes | saving off | saving on | added per episode | trajectories/ "
          "| results.jsonl |\n|---|---|---|---|---|---|---|")
    items = HRBench4K().items
    answers = {it.question: str(it.answer) for it in items}
    bench("scripted crop, HR-Bench 4K fixture (5 items x 4)",
          lambda save: EvalConfig(model="scripted", envs=["AXPO-HRBench4K-v0"], samples=4,
                                  max_turns=3, batch_size=8, save_trajectories=save,
                                  output_dir=str(work / f"hr{save}")),
          lambda: CropThenAnswer(answers), repeats)
    tiny_cfg = EvalConfig(model="tiny", envs=["AXPO-MathVista-v0"], samples=2, limit=4,
                          max_turns=2, max_completion_length=32, batch_size=8)
    policy = make_policy(tiny_cfg)
    bench("tiny model, MathVista fixture (4 items x 2)",
          lambda save: EvalConfig(**{**tiny_cfg.to_dict(), "save_trajectories": save,
                                     "output_dir": str(work / f"tiny{save}")}),
          lambda: policy, repeats)
    shutil.rmtree(work)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
