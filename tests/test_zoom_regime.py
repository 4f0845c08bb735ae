"""ZoomRegime (issue 26): ZoomBoxes on a 3x3 grid with a mixed SFT start. Only a crop of the named
box shows its pattern, the splits are disjoint and lean to the home slot as configured, and the
demonstrations crop in `tool_share` of the episodes."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import axpo_env  # noqa: F401
from algorithms.sft import load_sft_dataset
from axpo_env.tasks import PAPER_BENCHMARKS
from axpo_env.tasks.zoom_regime import (
    COLOURS,
    PATTERNS,
    ZoomRegime,
    demo_plan,
    expert_turns,
    guess_turns,
    write_expert_demos,
    zoom_box,
)

ENV = "AXPO-ZoomRegime-v0"


def test_check_env_passes_and_crop_is_the_default_tool():
    env = gym.make(ENV)
    check_env(env.unwrapped, skip_render_check=True)
    assert env.unwrapped.tool_names == ("crop",)
    assert ENV not in PAPER_BENCHMARKS
    item = env.unwrapped.task.items[0]
    assert item.images[0].size == (384, 384) and len(item.metadata["boxes"]) == 9


@pytest.mark.parametrize("index", [0, 7])
def test_expert_crop_scores_one_and_a_crop_of_another_box_shows_its_pattern(index):
    env = gym.make(ENV, split="test")
    env.reset(seed=index, options={"index": index})
    item = env.unwrapped._item
    first, second = expert_turns(item)
    obs, _, terminated, _, info = env.step(first)
    assert not terminated and info["tool_calls"] == 1 and info["tool_errors"] == 0
    assert obs["messages"][-1]["content"][0]["type"] == "image"
    _, reward, terminated, _, info = env.step(second)
    assert (reward, terminated, info["correct"]) == (1.0, True, True)
    other = next(c for c, p in item.metadata["patterns"].items() if p != item.answer)
    env.reset(seed=index, options={"index": index})
    for turn in expert_turns(item, colour=other):
        _, reward, terminated, _, info = env.step(turn)
    assert (reward, terminated) == (0.0, True)
    assert info["answer"] == item.metadata["patterns"][other]


def test_a_guess_answers_without_the_tool_and_scores_by_the_pattern():
    env = gym.make(ENV, split="test")
    env.reset(seed=0, options={"index": 2})
    item = env.unwrapped._item
    _, reward, terminated, _, info = env.step(guess_turns(item, item.answer)[0])
    assert (reward, terminated, info["tool_calls"]) == (1.0, True, 0)
    task = env.unwrapped.task
    assert task.score(item, f" {item.answer.upper()} ") == 1.0
    assert task.score(item, next(p for p in PATTERNS if p != item.answer)) == 0.0


def test_crop_of_each_box_is_its_slot_middle():
    task = ZoomRegime("test")
    item = task.items[5]
    boxes = item.metadata["boxes"]
    assert set(boxes) == set(COLOURS)
    assert sorted(map(tuple, boxes.values())) == sorted(tuple(zoom_box(s)) for s in range(9))
    assert boxes[item.metadata["colour"]] == item.metadata["box"] == zoom_box(
        item.metadata["slot"])


def test_splits_never_overlap_and_lean_to_home_as_configured():
    def keys(task):
        return {(it.question, tuple(map(tuple, it.metadata["boxes"].values())),
                 tuple(it.metadata["patterns"].values()))
                for it in (task.items[i] for i in range(len(task)))}

    train, test, demo = ZoomRegime("train"), ZoomRegime("test"), ZoomRegime("demo")
    assert (len(train), len(test), len(demo)) == (600, 120, 256)
    k_train, k_test, k_demo = keys(train), keys(test), keys(demo)
    assert (len(k_train), len(k_test), len(k_demo)) == (600, 120, 256)
    assert not k_train & k_test and not k_demo & (k_train | k_test)
    home = [train.items[i].metadata["slot"] == 0 for i in range(600)]
    assert np.mean(home) == 0.5
    none = ZoomRegime("train", home_share=0.0)
    assert not any(none.items[i].metadata["slot"] == 0 for i in range(600))
    # the demo split (what SFT sees) is the same whatever the home share: one start serves all
    assert keys(ZoomRegime("demo", home_share=0.0)) == k_demo
    assert 0.05 < np.mean([demo.items[i].metadata["slot"] == 0 for i in range(256)]) < 0.2
    small = ZoomRegime("test", grid=2)
    assert small.items[0].images[0].size == (256, 256) and len(small.items[0].metadata[
        "boxes"]) == 4
    with pytest.raises(ValueError, match="grid"):
        ZoomRegime("test", grid=4)
    with pytest.raises(ValueError, match="splits"):
        ZoomRegime("validation").load_items()


def test_task_options_reach_the_task():
    env = gym.make(ENV, task_options={"grid": 2, "home_share": 1.0})
    task = env.unwrapped.task
    assert (task.grid, task.home_share) == (2, 1.0)
    assert all(task.items[i].metadata["slot"] == 0 for i in range(20))


def test_demo_plan_crops_in_the_configured_share():
    plan = demo_plan(256, 0.35)
    assert sum(p is None for p in plan) == round(256 * 0.35)
    assert set(p for p in plan if p is not None) == set(PATTERNS)
    assert demo_plan(256, 0.35) == plan and demo_plan(256, 0.35, seed=1) != plan


def test_demos_mix_crops_and_guesses_and_every_item_gets_a_drill(tmp_path):
    path = write_expert_demos(tmp_path, 10, tool_share=0.4)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    episodes, drills = rows[:10], rows[10:]
    assert len(drills) == 10
    tool = [e for e in episodes if len(e["messages"]) == 5]
    guess = [e for e in episodes if len(e["messages"]) == 3]
    assert (len(tool), len(guess)) == (4, 6)
    for e in tool:
        assert "I will crop the" in e["messages"][2]["content"][0]["text"]
    for e in guess:
        text = e["messages"][2]["content"][0]["text"]
        assert "without a crop" in text and "<tool_call>" not in text
    assert all(d["messages"][1]["content"][0]["image"].startswith("drills/") for d in drills)
    assert len(load_sft_dataset(path)) == 20  # every image resolves
    with pytest.raises(ValueError, match="tool_share"):
        write_expert_demos(tmp_path, 2, tool_share=1.5)


def test_snapshot_restores_the_episode():
    env = gym.make(ENV, split="test").unwrapped
    env.reset(seed=0, options={"index": 4})
    snap = env.snapshot()
    item = env._item
    obs, *_ = env.step(expert_turns(item)[0])
    env.reset(seed=1, options={"index": 9})
    env.restore(snap)
    assert env._item.task_id == item.task_id
    again, *_ = env.step(expert_turns(item)[0])
    a, b = obs["messages"][-1]["content"][0]["image"], again["messages"][-1]["content"][0]["image"]
    assert np.array_equal(np.asarray(a), np.asarray(b))
