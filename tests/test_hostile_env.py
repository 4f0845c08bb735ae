"""The hostile-input suite through the env: after each bad turn the episode goes on, and so
does the next episode."""

from __future__ import annotations

import gymnasium as gym
import pytest

import axpo_env  # noqa: F401
from axpo_env import EpisodeEndedError, render_tool_call
from axpo_env.tools.python import PythonTool
from axpo_env.tools.search import SearchTool


def py(code):
    return render_tool_call("python", {"code": code})


def calc(expression):
    return render_tool_call("calculator", {"expression": expression})


def crop(bbox, **kw):
    return render_tool_call("crop", {"bbox": bbox, **kw})


HOSTILE = [
    ('<tool_call>{"name": "crop", "arguments": {"bbox": [1, 2, </tool_call>', "not valid JSON"),
    (render_tool_call("laser", {}), "unknown tool 'laser'"),
    (render_tool_call("crop", {}), "'bbox' is a required property"),
    (crop([0, 0, 10, 10], zoom=3), "Additional properties"),
    (crop("everything"), "is not of type 'array'"),
    (calc("1") + calc("2"), "2 tool calls in one turn"),
    (crop([500, 500, 100, 100]), "inverted"),
    (crop([5000, 5000, 6000, 6000]), "entirely outside"),
    ('<tool_call>{"name": "crop", "arguments": {"bbox": [0, 0, NaN, 1]}}</tool_call>', "finite"),
    (crop([10, 10, 10, 50]), "zero"),
    (crop([0, 0, 0.5, 0.5], image_index=7), "image_index"),
    ("A" * 100_000, "100000 characters"),
    (py("while True: pass"), "time limit"),
    (py("bytearray(10**10)"), "MemoryError"),
    (py("import os\nwhile True: os.fork()"), "not allowed"),
    (py("import socket\nsocket.socket().connect(('1.1.1.1', 80))"), "not allowed"),
    (py("open('/tmp/../etc/axpo-x', 'w')"), "only the working directory is writable"),
    (py("print('x' * 10**8)"), "truncated"),
    (py("import os\nos._exit(9)"), "crashed"),
    (calc("9**9**9**9"), "too large"),
    (calc("factorial(10**9)"), "factorial"),
    (calc("(" * 5000 + "1" + ")" * 5000), "too long"),
    (calc("(" * 400 + "1" + ")" * 400), "nest"),
    ('<tool_call>{"name": "calculator", "arguments": {"expression": ' + "7" * 5000 + "}}"
     "</tool_call>", "more than 4300 digits"),
    ("<tool_call>" + "[" * 15_000 + "]" * 15_000 + "</tool_call>", "nests too deeply"),
    ('<tool_call>{"name": "calculator", "arguments": ' + '{"a":' * 5000 + "1" + "}" * 5000
     + "}</tool_call>", "nests too deeply"),
    ('<tool_call>{"name": "calculator", "arguments": "' + "[" * 15_000 + '"}</tool_call>',
     "must be a JSON object"),
]


@pytest.fixture(scope="module")
def env():
    tools = ["crop", PythonTool(timeout=1.0), "calculator",
             SearchTool(backend="http", url="http://127.0.0.1:9/retrieve", timeout_s=0.5,
                        retries=0)]
    env = gym.make("AXPO-MathVista-v0", tools=tools, max_turns=50).unwrapped
    yield env
    env.close()


@pytest.mark.parametrize("action,expected", HOSTILE, ids=[a[:40] for a, _ in HOSTILE])
def test_bad_turn_is_a_message_and_the_env_keeps_working(env, action, expected):
    env.reset(seed=0, options={"task_id": "13"})
    env.step(py("kept = 41"))
    obs, reward, terminated, truncated, info = env.step(action)
    reply = obs["messages"][-1]["content"][-1]["text"]
    assert expected.lower() in reply.lower(), reply
    assert (reward, terminated, truncated) == (0.0, False, False)
    obs, *_ = env.step(py("print(kept + 1)"))  # the same episode goes on, session intact
    assert obs["messages"][-1]["content"][-1]["text"] == "42"
    obs, *_ = env.step(calc("6 * 7"))
    assert obs["messages"][-1]["content"][-1]["text"] == "42"
    env.reset(seed=1, options={"task_id": "13"})  # and so does the next episode
    _, reward, terminated, *_ = env.step("<answer>43757584</answer>")
    assert (reward, terminated) == (1.0, True)


def test_search_server_down_is_a_message(env):
    env.reset(seed=0)
    obs, *_ , info = env.step(render_tool_call("search", {"query": "eiffel tower"}))
    assert obs["messages"][-1]["content"][-1]["text"].startswith("Error:")
    assert info["tool_errors"] == 1


def test_action_after_the_end_is_a_clear_exception(env):
    env.reset(seed=0, options={"task_id": "13"})
    env.step("<answer>1</answer>")
    with pytest.raises(EpisodeEndedError, match="call reset"):
        env.step("<answer>2</answer>")


@pytest.mark.parametrize("text", ["</tool_call>", "<answer>7</answer>", "\\boxed{7}"])
def test_protocol_tags_inside_a_calls_json_belong_to_the_call(env, text):
    """Code that prints a closing tag or an answer is one call, not a broken call or an answer."""
    env.reset(seed=0, options={"task_id": "13"})
    obs, reward, terminated, truncated, info = env.step(py(f"print({text!r})"))
    assert obs["messages"][-1]["content"][-1]["text"] == text
    assert (terminated, info["tool_errors"], info["format_errors"]) == (False, 0, 0)


def test_a_scorer_that_fails_on_the_answer_scores_zero(env, monkeypatch):
    env.reset(seed=0, options={"task_id": "13"})

    def broken(item, answer):
        raise ValueError("the scorer choked")

    monkeypatch.setattr(env.task, "score", broken)
    _, reward, terminated, *_ = env.step("<answer>" + "9" * 5000 + "</answer>")
    assert (reward, terminated) == (0.0, True)
