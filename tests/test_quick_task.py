"""make_task: a registered env from records and a scoring function (axpo_env.tasks.quick)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env
from PIL import Image

import axpo_env  # noqa: F401
from axpo_env import DatasetError, render_tool_call, tool
from axpo_env.tasks.quick import RecordsTask, exact_score, make_task, number_score

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _unregister_made_tasks():
    """Tests that list every registered env (`--envs all`) must not meet these."""
    yield
    for env_id in [e for e in gym.registry if e.startswith("QuickTest-")]:
        del gym.registry[env_id]


@tool
def count_letter(word: str, letter: str) -> int:
    """Count how often a letter occurs in a word.

    Args:
        word: The word to look in.
        letter: The letter to count.
    """
    return word.count(letter)


def letters(words):
    return [{"question": f"How many '{w[0]}' in '{w}'?", "answer": str(w.count(w[0])),
             "word": w} for w in words]


def right(item, response):
    return response.strip() == item.answer


def test_records_and_a_score_function_make_a_registered_env_that_passes_check_env():
    cls = make_task("QuickTest-Letters-v0", {"train": letters(["banana", "apple", "kiwi"]),
                                             "test": letters(["cherry"])},
                    right, tools=[count_letter], instructions="Count with the tool.")
    assert issubclass(cls, RecordsTask) and cls.env_id == "QuickTest-Letters-v0"
    env = gym.make("QuickTest-Letters-v0")
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0, options={"task_id": "train-1"})
    assert obs["messages"][0]["content"][0]["text"].startswith("Count with the tool.")
    assert obs["messages"][1]["content"] == [{"type": "text", "text": "How many 'a' in 'apple'?"}]
    assert [t["function"]["name"] for t in obs["tools"]] == ["count_letter"]
    assert env.unwrapped.task.items[1].metadata == {"word": "apple"}
    obs, *_ = env.step(render_tool_call("count_letter", {"word": "apple", "letter": "a"}))
    assert obs["messages"][-1]["content"][-1]["text"] == "1"
    _, reward, terminated, _, info = env.step("<answer>1</answer>")
    assert (reward, terminated, info["correct"]) == (1.0, True, True)
    test = gym.make("QuickTest-Letters-v0", split="test")
    assert test.unwrapped.task.task_ids == ["test-0"]


def test_snapshot_and_restore_replay_a_made_task_exactly():
    make_task("QuickTest-Snap-v0", letters(["banana", "apple"]), right, tools=[count_letter])
    env = gym.make("QuickTest-Snap-v0").unwrapped
    env.reset(seed=3, options={"index": 0})
    env.step(render_tool_call("count_letter", {"word": "banana", "letter": "b"}))
    snap = env.snapshot()
    assert pickle.loads(pickle.dumps(snap)) == snap
    wrong = env.step("<answer>7</answer>")
    env.restore(snap)
    right_one = env.step("<answer>1</answer>")
    env.restore(snap)
    assert env.step("<answer>7</answer>")[1:] == wrong[1:]
    assert right_one[1] == 1.0 and wrong[1] == 0.0


@pytest.mark.parametrize("score, answer, response, expected", [
    ("exact", "Paris", r"\boxed{paris}", 1.0),
    ("exact", "Paris", "The answer is: Paris.", 1.0),
    ("exact", ["NYC", "New York"], "new york", 1.0),
    ("exact", "Paris", "Lyon", 0.0),
    ("exact", "Paris", "", 0.0),
    ("number", "1200", "1,200", 1.0),
    ("number", 0.5, "0.5000000001", 1.0),
    ("number", "3", "three", 0.0),
    ("number", "3", "nan", 0.0),
])
def test_builtin_scores(score, answer, response, expected):
    cls = make_task("QuickTest-Score-v0", [{"question": "q", "answer": answer}], score,
                    register=False)
    task = cls()
    assert task.score(task.items[0], response) == expected
    assert {"exact": exact_score, "number": number_score}[score](task.items[0], response) \
        == expected


def test_a_score_function_that_raises_scores_zero_and_warns_once():
    def as_float(item, response):
        return float(response) == float(item.answer)

    task = make_task("QuickTest-Raise-v0", [{"question": "q", "answer": "2"}], as_float,
                     register=False)()
    with pytest.warns(RuntimeWarning, match="as_float raised ValueError.*warned once"):
        assert task.score(task.items[0], "two") == 0.0
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert task.score(task.items[0], "three") == 0.0  # no second warning
    assert task.score(task.items[0], "2.0") == 1.0


@pytest.mark.parametrize("value", [2.0, -1, float("nan"), "yes", None])
def test_a_score_outside_zero_one_is_an_error_naming_the_function_and_item(value):
    task = make_task("QuickTest-Range-v0", [{"question": "q", "answer": "a", "id": "q1"}],
                     lambda item, response: value, register=False)()
    with pytest.raises(ValueError, match=r"returned .* for item 'q1'; a score is a number in"):
        task.score(task.items[0], "a")


def test_splits_unknown_split_and_one_list_are_clear_errors():
    make_task("QuickTest-Splits-v0", {"dev": letters(["abc"]), "test": letters(["xyz"])})
    assert gym.make("QuickTest-Splits-v0").unwrapped.task.split == "dev"  # the first key
    with pytest.raises(DatasetError, match="no split 'train'; its splits: 'dev', 'test'"):
        gym.make("QuickTest-Splits-v0", split="train").unwrapped.task.load_items()
    make_task("QuickTest-OneList-v0", letters(["abc"]))
    with pytest.raises(DatasetError, match="one split, 'train', not 'test'"):
        gym.make("QuickTest-OneList-v0", split="test").unwrapped.task.load_items()


def test_bad_records_name_what_is_missing():
    task = make_task("QuickTest-Bad-v0", [{"prompt": "q", "answer": "a"}], register=False)()
    with pytest.raises(DatasetError, match="record 0 lack.*'question'.*found: 'prompt', "
                                           "'answer'.*columns="):
        task.load_items()
    task = make_task("QuickTest-Bad-v0", [{"prompt": "q", "answer": "a"}],
                     columns={"question": "prompt"}, register=False)()
    assert task.items[0].question == "q"
    dupes = [{"id": 1, "question": "q", "answer": "a"}, {"id": 1, "question": "r", "answer": "b"}]
    with pytest.raises(DatasetError, match="duplicate ids: 1"):
        make_task("QuickTest-Bad-v0", dupes, register=False)().load_items()
    with pytest.raises(ValueError, match="score must be a function"):
        make_task("QuickTest-Bad-v0", [], "fuzzy")


def test_a_folder_of_split_files_with_images_and_data_dir(tmp_path):
    for split, color in (("train", "red"), ("test", "blue")):
        folder = tmp_path / "colors"
        folder.mkdir(exist_ok=True)
        Image.new("RGB", (20, 10), color).save(folder / f"{color}.png")
        row = {"pid": color, "problem": "Which color?", "solution": color, "img": f"{color}.png"}
        (folder / f"{split}.jsonl").write_text(json.dumps(row) + "\n")
    columns = {"question": "problem", "answer": "solution", "image": "img", "id": "pid"}
    make_task("QuickTest-Folder-v0", tmp_path / "colors", "exact", columns=columns,
              tools=["crop"])
    env = gym.make("QuickTest-Folder-v0", split="test")
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0, options={"task_id": "blue"})
    image = obs["messages"][1]["content"][0]["image"]
    assert image.size == (20, 10) and image.getpixel((0, 0)) == (0, 0, 255)
    assert env.step("<answer>Blue</answer>")[1] == 1.0
    # data_dir= reads other data of the same layout
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"pid": "x", "problem": "Q?", "solution": "y",
                                 "img": str(tmp_path / "colors" / "red.png")}) + "\n")
    task = gym.make("QuickTest-Folder-v0", data_dir=str(other)).unwrapped.task
    assert task.task_ids == ["x"] and task.items[0].images[0].getpixel((0, 0)) == (255, 0, 0)


def test_in_memory_images_and_a_datasets_dataset():
    import datasets

    red = Image.new("RGB", (8, 8), "red")
    rows = [{"question": "Color?", "answer": "red", "images": [red, red]},
            {"question": "Nothing?", "answer": "x"}]
    make_task("QuickTest-Memory-v0", datasets.Dataset.from_list(
        [{"question": r["question"], "answer": r["answer"]} for r in rows]))
    assert gym.make("QuickTest-Memory-v0").unwrapped.task.task_ids == ["train-0", "train-1"]
    task = make_task("QuickTest-Memory-v0", rows, register=False)()
    assert len(task.items[0].images) == 2 and task.items[1].images == ()
    check_env(gym.make("QuickTest-Memory-v0").unwrapped, skip_render_check=True)


def test_making_an_id_again_replaces_it_but_a_builtin_id_is_refused():
    make_task("QuickTest-Again-v0", letters(["abc"]))
    make_task("QuickTest-Again-v0", letters(["xyz", "xyzzy"]))
    assert len(gym.make("QuickTest-Again-v0").unwrapped.task) == 2
    with pytest.raises(ValueError, match="AXPO-MathVista-v0 is already registered"):
        make_task("AXPO-MathVista-v0", letters(["abc"]))


def test_a_made_task_scores_by_its_own_rule_in_axpo_eval():
    from evaluation.evaluate import _has_scoring_modes

    make_task("QuickTest-Eval-v0", letters(["abc"]))
    assert not _has_scoring_modes("QuickTest-Eval-v0")  # no official/lenient switch to report
    assert _has_scoring_modes("AXPO-MathVista-v0")


PLUGIN = textwrap.dedent('''
    from axpo_env.tasks.quick import make_task

    Letters = make_task("QuickPlugin-Letters-v0", [{"question": "q", "answer": "a"}])
''')

CHILD = textwrap.dedent('''
    import json
    import axpo_env
    from evaluation import resolve_envs

    print(json.dumps({"envs": resolve_envs(["QuickPlugin-Letters-v0"]),
                      "registered": "QuickPlugin-Letters-v0" in axpo_env.registered_envs()}))
''')


def test_a_made_task_shipped_under_the_entry_point_group_is_in_every_program(tmp_path):
    site = tmp_path / "site"
    info = site / "quick_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: quick-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[axpo_env.tasks]\nletters = quick_plugin:Letters\n")
    (site / "quick_plugin.py").write_text(PLUGIN)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"envs": ["QuickPlugin-Letters-v0"], "registered": True}


def test_write_expert_demos_refuses_a_count_beyond_the_split(tmp_path):
    from axpo_env.tasks.demos import write_expert_demos

    with pytest.raises(ValueError, match=r"count must be in 1\.\.120 .*split 'test'.*got 121"):
        write_expert_demos("AXPO-ZoomBoxes-v0", lambda item: [], tmp_path, 121, split="test")
