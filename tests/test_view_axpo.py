"""`axpo view` of an AXPO training step: each triggered group as a tree (the group's rollouts,
the selected source, its cut prefix and tool-call confidence, the K resamples with their
rewards, the recovery indicator), recorded by `save_trajectories=True` through the trainer."""

from __future__ import annotations

import json

import pytest

from agents import tiny
from agents.hf import HFPolicy
from algorithms.config import AXPOConfig
from algorithms.trainer import Trainer
from axpo_env.tasks.mathvista import MathVista
from axpo_view import write_report
from tests.test_view import Parsed
from tests.wrong_calls import WrongCallsThenRight

TASK = "13"
GOOD, BAD = [0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]


class CropsTheWrongRegion(WrongCallsThenRight):
    """Every rollout crops BAD and answers wrong, so the tool-using subgroup is all wrong and
    AXPO triggers; of each block of resamples (continuing the kept `<tool_call>`), the first
    crops GOOD and answers right. Ids are scored by the model, so confidences are real."""

    CALL = '{"name": "crop", "arguments": {"bbox": %s}}</tool_call>'
    THINK, WRONG, RIGHT = "zoom in", BAD, GOOD
    answer = MathVista().items[MathVista().index_of(TASK)].answer

    def reply_to(self, tool_response):
        return self.answer if "Cropped [0, 0," in tool_response else "-7"


@pytest.fixture(scope="module")
def axpo_step(tmp_path_factory):
    out = tmp_path_factory.mktemp("axpo-view")
    base = HFPolicy.from_pretrained(tiny.cached("vl"))
    cfg = AXPOConfig(max_steps=1, tasks_per_step=1, num_generations=4, max_completion_length=8,
                     max_turns=3, task_ids=[TASK], tools=["crop"], output_dir=str(out),
                     report_to=["jsonl"], save_steps=100, seed=3, resample_ratio=1.0,
                     resamples_per_prefix=2, save_trajectories=True)
    (metrics,) = Trainer("axpo", cfg, CropsTheWrongRegion(base.model, base.processor)).train()
    return out, metrics


def test_a_step_is_recorded_with_its_branches(axpo_step):
    out, metrics = axpo_step
    rows = [json.loads(line) for line in (out / "trajectories" / "episodes.jsonl").open()]
    branches = [r for r in rows if r["type"] == "branch"]
    episodes = [r for r in rows if r["type"] == "episode"]
    assert len(branches) == metrics["axpo/selected_prefixes"] == 2
    assert len(episodes) == 4 + 2 * 2  # the group and the resamples
    for b in branches:
        assert b["prefix"].endswith("<tool_call>")  # cut right after the opening tag
        assert b["rewards"] == [1.0, 0.0] and b["recovered"]
        assert 0 < b["score"] <= 1
    assert all(r["reference"] == CropsTheWrongRegion.answer for r in episodes)


def test_report_draws_each_triggered_group_as_a_tree(axpo_step):
    out, _ = axpo_step
    page = Parsed(write_report(out).read_text())
    (tree,) = page.classes["tree"]  # one triggered group
    assert tree["data-step"] == "1" and tree["data-group"] == "0"
    assert len(page.classes["rollout"]) == 4
    assert len(page.classes["src"]) == 2  # the two selected sources, marked in their group
    assert len(page.classes["branch"]) == 2 and len(page.classes["resample"]) == 4
    assert len(page.classes["cut"]) == 2 and len(page.classes["confidence"]) == 2
    assert page.body.count("recovered: a resample is right") == 2
    assert len(page.classes["episode"]) == 8
    assert "ep-step1_g0_b0_k0" in page.ids and "ep-step1_g0_r0" in page.ids
    # the right resample's crop box is GOOD, drawn on the task image
    box = page.ids["ep-step1_g0_b0_k0"]
    assert box["data-correct"] == "1" and box["data-role"] == "resample"
    assert any("left:0.00%;top:0.00%;width:50.00%;height:50.00%" in b["style"]
               for b in page.classes["box"])
    for src in page.images:
        assert (out / src).is_file()


def test_axpo_report_loads_in_a_real_browser_without_console_errors(axpo_step, tmp_path):
    from tests.test_view import chromium

    out, _ = axpo_step
    dom, console = chromium(write_report(out), tmp_path / "axpo.png")
    assert console == []
    page = Parsed(dom)
    assert "ep-step1_g0_b0_k0" in page.ids and len(page.classes["tree"]) == 1
    assert "recovered: a resample is right" in page.body
