"""The paper's tool-call diversity probe: clusters of calls from one fixed failed prefix."""

from __future__ import annotations

import pytest

from agents import tiny
from agents.actions import find_action
from agents.hf import TokenPrompt
from agents.policy import Completion
from agents.pretrained import load_processor
from agents.rollout import Trajectory, Turn
from algorithms.diagnostics import cluster_calls, tool_call_diversity
from axpo_env import render_tool_call


def test_calls_cluster_by_tool_normalized_arguments_and_box_iou():
    calls = [
        ("crop", {"bbox": [0, 0, 10, 10]}),
        ("crop", {"bbox": [1, 1, 10, 10]}),     # IoU 81/100 with the first: same
        ("crop", {"bbox": [0, 0, 10, 4]}),      # IoU 0.4: another cluster
        ("calculator", {"expression": "6*7"}),
        ("calculator", {"expression": " 6*7 "}),  # whitespace only: same
        ("calculator", {"expression": "6*8"}),
        ("<malformed>", {}), ("<malformed>", {}),
    ]
    assert cluster_calls(calls) == [[0, 1], [2], [3, 4], [5], [6, 7]]
    assert len(cluster_calls(calls, iou=0.3)) == 4  # 0.4 >= 0.3 joins the box clusters


@pytest.fixture(scope="module")
def tokenizer():
    return load_processor(tiny.cached("text"))


def failed_call(tokenizer, thinking: str) -> Trajectory:
    text = f"<think>{thinking}</think>\n" + render_tool_call("crop", {"bbox": [0, 0, 1, 1]})
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    turn = Turn(None, 0, [5, 5], Completion(text, ids, [-1.0] * len(ids), [1.0] * len(ids)),
                action=find_action(text, ids, tokenizer))
    return Trajectory("q", 0, turns=[turn], sequence=TokenPrompt([5, 5] + ids), reward=0.0,
                      info={"correct": False, "tool_calls": 1})


def test_probe_counts_clusters_per_failed_prefix_and_the_collapsed_share(tokenizer):
    boxes = {"diverse": ["[0, 0, 5, 5]", "[6, 6, 9, 9]", "[0, 0, 5, 5]", "oops"],
             "collapsed": ["[0, 0, 5, 5]"] * 4}

    class Probe:  # the policy: continuations of the kept call, per prefix
        patches_per_token = 4

        def __init__(self):
            self.tokenizer = tokenizer
            self.prefixes = []

        def sample_shared(self, prompt, n, sampling=None):
            self.prefixes.append(tokenizer.decode(prompt.ids[2:]))
            kind = "diverse" if "diverse" in self.prefixes[-1] else "collapsed"
            return [Completion(f'{{"name": "crop", "arguments": {{"bbox": {b}}}}}</tool_call>')
                    for b in boxes[kind][:n]]

    probe = Probe()
    right = failed_call(tokenizer, "right")
    right.info["correct"] = True  # a correct rollout is not probed
    stats = tool_call_diversity(probe, [failed_call(tokenizer, "diverse"),
                                        failed_call(tokenizer, "collapsed"), right], n=4)
    assert probe.prefixes == ["<think>diverse</think>\n<tool_call>",
                              "<think>collapsed</think>\n<tool_call>"]
    # diverse: {[0,0,5,5] x2}, {[6,6,9,9]}, {malformed} = 3 clusters; collapsed: 1
    assert stats == {"prefixes": 2.0, "mean_clusters": 2.0, "collapsed_share": 0.5}


def test_probe_reads_qwen3_coder_calls_as_the_env_reads_them(tokenizer):
    import gymnasium as gym

    env = gym.make("AXPO-ZoomBoxes-v0", tool_call_format="qwen3_coder")
    fmt, schemas = env.unwrapped.tool_call_format, env.unwrapped.tool_schemas
    env.close()
    text = "<think>look</think>\n" + render_tool_call("crop", {"bbox": [0, 0, 1, 1]},
                                                      tool_call_format=fmt)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    turn = Turn(None, 0, [5, 5], Completion(text, ids, [-1.0] * len(ids), [1.0] * len(ids)),
                action=find_action(text, ids, tokenizer))
    failed = Trajectory("q", 0, turns=[turn], sequence=TokenPrompt([5, 5] + ids), reward=0.0,
                        info={"correct": False, "tool_calls": 1})
    boxes = ["[0, 0, 10, 10]", "[1, 1, 10, 10]", "[6, 6, 9, 9]"]  # IoU 0.81, then 0

    class Probe:
        patches_per_token = 4
        tokenizer = None

        def sample_shared(self, prompt, n, sampling=None):
            return [Completion(f"\n<function=crop>\n<parameter=bbox>\n{b}\n</parameter>\n"
                               "</function>\n</tool_call>") for b in boxes[:n]]

    probe = Probe()
    probe.tokenizer = tokenizer
    assert turn.action.kind == "call"
    # the boxes typed as lists by the crop's schema: the first two are one call at IoU 0.81
    read = tool_call_diversity(probe, [failed], n=3, tool_call_format=fmt, tools=schemas)
    assert read["mean_clusters"] == 2.0
    # read as Hermes JSON, every call would be one malformed cluster
    assert tool_call_diversity(probe, [failed], n=3)["mean_clusters"] == 1.0
