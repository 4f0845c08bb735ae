"""prompt_format="deepeyes": DeepEyes' system prompt, question suffix and tool-reply format,
so a DeepEyes checkpoint sees in our env what it saw in its own eval."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from agents import tiny
from agents.hf import HFPolicy
from agents.policy import Completion
from axpo_env import ToolUseEnv
from axpo_env.prompt_formats import DEEPEYES_SYSTEM_PROMPT, DEEPEYES_USER_PROMPT
from tests.conftest import ToyTask

CALL = ('<think>zoom</think><tool_call>{"name": "image_zoom_in_tool", "arguments": '
        '{"bbox_2d": [0, 0, 40, 30], "label": "x"}}</tool_call>')
TEMPLATES = Path(__file__).parent / "fixtures" / "templates"


@pytest.fixture
def env():
    e = ToolUseEnv(ToyTask(), tools=["crop:deepeyes"], max_turns=4, prompt_format="deepeyes")
    yield e
    e.close()


def test_prompts_are_deepeyes_texts_byte_for_byte(env):
    # sha256 of the texts in Visual-Agent/DeepEyes eval/eval_vstar.py (instruction_prompt_system,
    # USER_PROMPT_V2), taken when they were copied.
    assert hashlib.sha256(DEEPEYES_SYSTEM_PROMPT.encode()).hexdigest()[:16] == "1fc5b8b5ebdc9b24"
    assert hashlib.sha256(DEEPEYES_USER_PROMPT.encode()).hexdigest()[:16] == "e46e076069f511f8"
    obs, _ = env.reset(seed=0, options={"index": 1})
    system, user = obs["messages"]
    assert system["content"] == [{"type": "text", "text": DEEPEYES_SYSTEM_PROMPT}]
    assert user["content"][-1]["text"] == "What is 1 + 1?" + DEEPEYES_USER_PROMPT
    assert obs["tools"] == []  # the system prompt lists the tool; no second tools block


def test_zoom_reply_is_a_tool_response_user_turn_with_the_image(env):
    env.reset(seed=0, options={"index": 0})
    obs, reward, terminated, truncated, info = env.step(CALL)
    reply = obs["messages"][-1]
    assert reply["role"] == "user" and info["tool_calls"] == 1 and info["tool_errors"] == 0
    assert [p["type"] for p in reply["content"]] == ["text", "image", "text", "text"]
    texts = [p["text"] for p in reply["content"] if p["type"] == "text"]
    assert texts == ["<tool_response>", DEEPEYES_USER_PROMPT, "</tool_response>"]
    assert reply["content"][1]["image"].size == (40, 30)  # native crop, as DeepEyes' toolbox
    obs, *_ = env.step('<tool_call>{"name": "image_zoom_in_tool", "arguments": '
                       '{"bbox_2d": [5, 5, 5, 9]}}</tool_call>')
    error = obs["messages"][-1]
    assert error["role"] == "user" and error["content"][0]["text"].startswith("Error: ")


def test_snapshot_and_restore_keep_the_format(env):
    env.reset(seed=0, options={"index": 0})
    snap = env.snapshot()
    a, *_ = env.step(CALL)
    env.restore(snap)
    b, *_ = env.step(CALL)
    assert [m["role"] for m in a["messages"]] == [m["role"] for m in b["messages"]]
    assert a["messages"][-1]["content"][2] == b["messages"][-1]["content"][2]


def test_a_qwen_vl_template_renders_the_reply_as_deepeyes_eval_sends_it(env):
    """Rendered by the Qwen VL template, the reply is DeepEyes' `<tool_response><image>` +
    prompt + `</tool_response>` user turn."""
    template = (TEMPLATES / "qwen3vl_instruct.jinja").read_text()
    policy = HFPolicy.from_pretrained(tiny.cached("vl", chat_template=template))
    obs, _ = env.reset(seed=0, options={"index": 0})
    prompt = policy.prompt(obs)
    text = policy.tokenizer.decode(prompt.ids)
    assert text.startswith("<|im_start|>system\n" + DEEPEYES_SYSTEM_PROMPT + "<|im_end|>\n")
    assert "# Tools\n\nYou may call" not in text  # no template tools block on top
    ids = policy.tokenizer(CALL, add_special_tokens=False)["input_ids"]
    obs, *_ = env.step(CALL)
    _, env_ids = policy.continue_prompt(prompt, Completion(CALL, ids), obs["messages"][-1:])
    pads = policy.tokenizer.decode(env_ids).count("<|image_pad|>")
    assert policy.tokenizer.decode(env_ids) == (
        "<|im_end|>\n<|im_start|>user\n<tool_response><|vision_start|>" + "<|image_pad|>" * pads
        + "<|vision_end|>" + DEEPEYES_USER_PROMPT + "</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n")


def test_unknown_prompt_format_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown prompt_format 'deepeye'.*deepeyes"):
        ToolUseEnv(ToyTask(), tools=["crop:deepeyes"], prompt_format="deepeye")
