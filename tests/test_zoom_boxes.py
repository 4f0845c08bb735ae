"""The ZoomBoxes task: only a crop of the named box shows its pattern, and the expert's episode
scores 1 while a crop of another box scores 0."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from PIL import Image

import axpo_env  # noqa: F401
from algorithms.sft import load_sft_dataset, tokenize_example
from axpo_env.tasks import PAPER_BENCHMARKS
from axpo_env.tasks.zoom_boxes import (
    COLOURS,
    HOME_SHARES,
    PATTERNS,
    ZoomBoxes,
    expert_turns,
    write_expert_demos,
    zoom_box,
)

ENV = "AXPO-ZoomBoxes-v0"


def test_check_env_passes_and_crop_is_the_default_tool():
    env = gym.make(ENV)
    check_env(env.unwrapped, skip_render_check=True)
    assert env.unwrapped.tool_names == ("crop",)
    assert ENV not in PAPER_BENCHMARKS


@pytest.mark.parametrize("index", [0, 7, 41])
def test_expert_episode_crops_the_named_box_and_scores_one(index):
    env = gym.make(ENV, split="test")
    env.reset(seed=index, options={"index": index})
    item = env.unwrapped._item
    first, second = expert_turns(item)
    obs, reward, terminated, _, info = env.step(first)
    assert not terminated and info["tool_calls"] == 1 and info["tool_errors"] == 0
    assert obs["messages"][-1]["content"][0]["type"] == "image"
    _, reward, terminated, _, info = env.step(second)
    assert (reward, terminated, info["correct"]) == (1.0, True, True)


def test_crop_of_another_box_leads_to_a_wrong_answer():
    env = gym.make(ENV, split="test")
    env.reset(seed=3, options={"index": 3})
    item = env.unwrapped._item
    other = next(c for c, pattern in item.metadata["patterns"].items() if pattern != item.answer)
    first, second = expert_turns(item, colour=other)
    env.step(first)
    _, reward, terminated, _, info = env.step(second)
    assert (reward, terminated) == (0.0, True)
    assert info["answer"] == item.metadata["patterns"][other] != item.answer


def _grey(image: Image.Image, side: int) -> np.ndarray:
    """The image as the tiny model's processor sees it: downscaled to `side` pixels a side."""
    return np.asarray(image.convert("L").resize((side, side), Image.BICUBIC), dtype=float)


def test_patterns_vanish_in_the_whole_image_and_show_in_the_crop():
    """At the 128-pixel view of the whole image every box's inside is a flat tint; in the crop
    of a box, each pattern is distinct."""
    env = gym.make(ENV, split="test")
    items = env.unwrapped.task.items
    index = next(i for i in range(len(items))  # an item whose four boxes show all four
                 if len(set(items[i].metadata["patterns"].values())) == len(PATTERNS))
    env.reset(seed=0, options={"index": index})
    item = env.unwrapped._item
    view = _grey(item.images[0], 128)
    insides = [view[y1 // 2 + 2:y2 // 2 - 2, x1 // 2 + 2:x2 // 2 - 2]
               for x1, y1, x2, y2 in item.metadata["boxes"].values()]
    assert max(v.std() for v in insides) < 3  # one flat tint per box, whatever its pattern
    crops = {}
    for colour in item.metadata["boxes"]:
        env.reset(seed=0, options={"index": index})
        obs, *_ = env.step(expert_turns(item, colour=colour)[0])
        crop = _grey(obs["messages"][-1]["content"][0]["image"], 128)[20:-20, 20:-20]
        crops[item.metadata["patterns"][colour]] = crop
    assert crops["plain"].std() < 3
    for name in ("horizontal", "vertical", "checkered"):
        assert crops[name].std() > 15  # two shades of the box's colour, 2 view pixels apart
    rows, cols = crops["horizontal"].std(axis=1), crops["vertical"].std(axis=0)
    assert rows.mean() < 3 and cols.mean() < 3  # stripes: flat along their direction


def test_splits_never_overlap_and_are_deterministic():
    train, test, demo = ZoomBoxes("train"), ZoomBoxes("test"), ZoomBoxes("demo")
    assert (len(train), len(test), len(demo)) == (600, 120, 256)

    def key(item):
        meta = item.metadata
        return (item.question, tuple(map(tuple, meta["boxes"].values())),
                tuple(meta["patterns"].values()))

    train_keys, test_keys, demo_keys = ({key(t.items[i]) for i in range(len(t))}
                                        for t in (train, test, demo))
    assert (len(train_keys), len(test_keys), len(demo_keys)) == (600, 120, 256)
    assert not train_keys & test_keys and not demo_keys & (train_keys | test_keys)
    assert key(ZoomBoxes("train").items[9]) == key(train.items[9])
    assert {test.items[i].answer for i in range(len(test))} == set(PATTERNS)
    patterns = [tuple(test.items[i].metadata["patterns"].values()) for i in range(len(test))]
    assert any(len(set(p)) < len(p) for p in patterns)  # drawn per box: boxes may share one
    with pytest.raises(ValueError, match="splits"):
        ZoomBoxes("validation").load_items()


def test_the_tasks_lean_to_the_home_slot_and_the_demonstrations_do_not():
    """0.9 of the train and test items ask about the box in the top left slot, the rest about
    one elsewhere; the demo split asks about every slot alike (a quarter each), so a model
    trained on its demonstrations has no place prior for RL to build on."""
    assert HOME_SHARES == {"test": 0.9, "train": 0.9, "demo": 0.25}
    for split, size in (("train", 600), ("test", 120), ("demo", 256)):
        task = ZoomBoxes(split)
        items = [task.items[i] for i in range(len(task))]
        assert len(items) == size
        slots = [[zoom_box(s) for s in range(4)].index(it.metadata["box"]) for it in items]
        counts = [slots.count(s) for s in range(4)]
        if split == "demo":  # the home slot a quarter; the rest drawn among the other three
            assert counts[0] == 64 and all(50 <= c <= 78 for c in counts[1:])
        else:
            assert counts[0] == round(0.9 * size) and sum(counts[1:]) == size - counts[0]
            asked = {it.metadata["colour"] for it, s in zip(items, slots) if s != 0}
            assert asked == set(COLOURS)  # every colour is also asked about away from home


def test_expert_demos_round_trip_through_the_sft_loader(tmp_path):
    from agents import tiny
    from agents.hf import HFPolicy

    path = write_expert_demos(tmp_path, 3)
    examples = load_sft_dataset(path)
    assert len(examples) == 6  # three episodes, then a reading drill for each
    roles = [m["role"] for m in examples[0]["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    for episode, drill in zip(examples[:3], examples[3:]):
        assert [m["role"] for m in drill["messages"]] == ["system", "user", "assistant"]
        crop = episode["messages"][3]["content"][0]["image"]
        assert drill["messages"][1]["content"][0]["image"] == crop  # the episode's crop alone
        assert drill["messages"][2] == episode["messages"][4]  # answered as the episode is
    assert len(load_sft_dataset(write_expert_demos(tmp_path / "plain", 3, drills=False))) == 3
    item = ZoomBoxes("demo").items[0]  # the demonstrations play the demo split
    assert examples[0]["messages"][-1]["content"][-1]["text"].endswith(f"<answer>{item.answer}"
                                                                       "</answer>")
    processor = HFPolicy.from_pretrained(tiny.cached("vl")).processor
    x = tokenize_example(processor, examples[0])
    assert len(x["image_grid_thw"]) == 2  # the task image and the crop
    target = processor.tokenizer.decode(x["input_ids"][x["labels"] != -100])
    assert str(item.metadata["box"]) in target.replace("\n", " ")
    assert f"<answer>{item.answer}</answer>" in target
