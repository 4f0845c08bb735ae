"""Make docs/view_eval.png and docs/view_axpo.png: `axpo view` reports of a scripted eval run and
a scripted AXPO step (the same scripted policies as tests/test_view*.py), shot with headless
Chromium. Run from the repository root:

    python scripts/make_view_screenshots.py [workdir]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def shoot(page: Path, opened: str | None, target: Path, size: str) -> None:
    """Screenshot the top of `page`, with the episode `opened` unfolded (in a copy of the
    page), and save it as a small palette PNG."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        sys.exit("chromium not found: apt-get install chromium")
    if opened:
        html = page.read_text(encoding="utf-8")
        tag = f"<details class='episode' id='{opened}'"
        assert tag in html, opened
        page = page.with_name("report-screenshot.html")
        page.write_text(html.replace(tag, tag + " open"), encoding="utf-8")
    raw = target.with_suffix(".raw.png")
    subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={size}", f"--screenshot={raw}", page.resolve().as_uri()],
                   check=True, capture_output=True)
    Image.open(raw).convert("RGB").quantize(128).save(target, optimize=True)
    raw.unlink()
    print(f"{target}: {target.stat().st_size // 1024} KB")


def main(work: Path) -> None:
    from agents import tiny
    from agents.hf import HFPolicy
    from algorithms.config import AXPOConfig
    from algorithms.trainer import Trainer
    from axpo_env.tasks.mathvista import MathVista
    from axpo_view import write_report
    from evaluation.evaluate import EvalConfig, run_eval
    from tests.test_view import VISTA, CropThenAnswer
    from tests.test_view_axpo import TASK, CropsTheWrongRegion

    items = MathVista().items
    cfg = EvalConfig(model="scripted", envs=[VISTA], samples=3, limit=2, max_turns=3,
                     batch_size=4, output_dir=str(work / "eval"), save_trajectories=True,
                     resume=False)
    run_eval(cfg, CropThenAnswer({it.question: it.answer for it in items}), progress=False)
    page = write_report(work / "eval")
    shoot(page, f"ep-{VISTA}_{items[0].task_id}_0", ROOT / "docs" / "view_eval.png",
          "1200,1700")

    shutil.rmtree(work / "axpo", ignore_errors=True)
    base = HFPolicy.from_pretrained(tiny.cached("vl"))
    acfg = AXPOConfig(max_steps=1, tasks_per_step=1, num_generations=4,
                      max_completion_length=8, max_turns=3, task_ids=[TASK], tools=["crop"],
                      output_dir=str(work / "axpo"), report_to=["jsonl"], save_steps=100,
                      seed=3, resample_ratio=1.0, resamples_per_prefix=2,
                      save_trajectories=True)
    Trainer("axpo", acfg, CropsTheWrongRegion(base.model, base.processor)).train()
    shoot(write_report(work / "axpo"), None, ROOT / "docs" / "view_axpo.png", "1200,900")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/view-demo"))
