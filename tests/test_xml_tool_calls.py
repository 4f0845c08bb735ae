"""The XML tool-call format of Qwen3.5/Qwen3.6/Qwen3-Coder as a protocol option beside Hermes
JSON (issue 28, item 5): rendered as their real chat templates render `tool_calls`, read back
typed by the tool's JSON schema (as vLLM's `qwen3_coder` parser types them), played by an env
built with `tool_call_format="qwen3_coder"`, and hostile XML an error message, never an
exception. Templates: tests/fixtures/templates (see its README)."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Optional

import pytest
from conftest import ToyTask, add
from transformers import AutoTokenizer

import axpo_env  # noqa: F401
from agents import tiny
from agents.chat_encoding import normalize_message
from agents.hf import HFPolicy
from agents.policy import Completion, SamplingParams
from agents.rollout import rollout
from axpo_env import ToolUseEnv, parse_turn, render_tool_call
from axpo_env.protocol import convert_tool_calls, render_tools_block
from axpo_env.tools.base import tool

TEMPLATES = Path(__file__).parent / "fixtures" / "templates"
XML = "qwen3_coder"


@tool
def probe(text: str, count: int, scale: float, flag: bool, box: list[float], opts: dict,
          note: Optional[str] = None) -> str:  # noqa: UP045 (get_json_schema reads Optional)
    """Echo the arguments with their Python types.

    Args:
        text: Any text.
        count: A count.
        scale: A scale.
        flag: A flag.
        box: A box.
        opts: Options.
        note: A note.
    """
    values = (text, count, scale, flag, box, opts, note)
    return " ".join(type(v).__name__ for v in values)


ARGS = {"text": "two\nlines <b> ü", "count": 3, "scale": 0.25, "flag": True,
        "box": [1, 2.5, 3, 4], "opts": {"k": "ü", "n": [1]}, "note": None}
CALL = render_tool_call("probe", ARGS, tool_call_format=XML)


def tokenizer(name: str, kind: str):
    return AutoTokenizer.from_pretrained(
        tiny.cached(kind, chat_template=(TEMPLATES / f"{name}.jinja").read_text()))


def xml_env(**kwargs) -> ToolUseEnv:
    env = ToolUseEnv(ToyTask(), tools=[add, probe], max_turns=8, tool_call_format=XML, **kwargs)
    env.reset(seed=0, options={"index": 1})
    return env


@pytest.mark.parametrize("name,kind", [("qwen3_5", "vl"), ("qwen3_coder", "text")])
def test_calls_render_as_the_real_templates_render_tool_calls_and_read_back_typed(name, kind):
    second = {"count": 1}
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"type": "function", "function": {"name": "probe", "arguments": ARGS}},
                    {"type": "function", "function": {"name": "probe", "arguments": second}}]},
                {"role": "tool", "content": "ok"}]
    text = tokenizer(name, kind).apply_chat_template(messages, tools=[probe.schema],
                                                     tokenize=False)
    ours = CALL + "\n" + render_tool_call("probe", second, tool_call_format=XML)
    assert ours + "<|im_end|>" in text
    turn = text[text.index("<|im_start|>assistant\n") + 22:text.index(ours) + len(ours)]
    parsed = parse_turn(turn, XML, [probe.schema])
    assert parsed.error is None and [c.arguments for c in parsed.calls] == [ARGS, second]
    assert parsed.calls[0].arguments["note"] is None and parsed.calls[0].arguments["flag"] is True


def test_the_tools_block_is_qwen3_5s_system_prompt():
    text = tokenizer("qwen3_5", "vl").apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
        tools=[add.schema, probe.schema], tokenize=False)
    block = render_tools_block([add.schema, probe.schema], XML)
    assert text.startswith("<|im_start|>system\n" + block + "\n\nS<|im_end|>")
    env = xml_env(tools_in_prompt=True)
    assert block in env.system_prompt and "<function=NAME>" in env.system_prompt
    assert '"arguments"' not in env.system_prompt.replace(block, "")  # no Hermes instructions


def test_an_xml_env_runs_calls_typed_by_the_schema_and_hermes_stays_the_default():
    env = xml_env()
    obs, _, _, _, info = env.step("<think>\nTry it.\n</think>\n\n" + CALL)
    assert obs["messages"][-1]["content"][-1]["text"] == "str int float bool list dict NoneType"
    obs, *_ = env.step(render_tool_call("add", {"a": 2, "b": 40}, tool_call_format=XML))
    assert obs["messages"][-1]["content"][-1]["text"] == "42"
    obs, *_, info = env.step(render_tool_call("add", {"a": 2, "b": 40}))  # Hermes JSON
    assert "JSON calls are not read here" in obs["messages"][-1]["content"][-1]["text"]
    assert info["tool_errors"] == 1
    obs, *_ = env.step("<tool_call>\n<function=add>\n<parameter=a>\nx\n</parameter>\n"
                       "<parameter=b>\n1\n</parameter>\n</function>\n</tool_call>")
    assert "'x' is not of type 'integer'" in obs["messages"][-1]["content"][-1]["text"]
    _, reward, terminated, _, _ = env.step("Done.\n<answer>2</answer>")
    assert terminated and reward == 1.0

    default = ToolUseEnv(ToyTask(), tools=[add])
    default.reset(seed=0)
    assert default.tool_call_format == "hermes" and "<function=" not in default.system_prompt
    obs, *_ = default.step(render_tool_call("add", {"a": 1, "b": 1}, tool_call_format=XML))
    assert "not valid JSON" in obs["messages"][-1]["content"][-1]["text"]
    with pytest.raises(ValueError, match="unknown tool_call_format"):
        ToolUseEnv(ToyTask(), tools=[add], tool_call_format="xml-ish")


def test_a_literal_closing_tag_inside_a_value_belongs_to_the_value():
    code = ("print('</parameter>')\nprint('</tool_call> <answer>7</answer>')\n"
            "s = '</function>'")
    turn = ("<think>\nI may write <tool_call> in a plan.\n</think>\n\n"
            + render_tool_call("probe", {**ARGS, "text": code}, tool_call_format=XML))
    parsed = parse_turn(turn, XML, [probe.schema])
    assert parsed.error is None and parsed.answer is None and len(parsed.calls) == 1
    assert parsed.calls[0].arguments == {**ARGS, "text": code}


HOSTILE = [
    "<tool_call>", "<tool_call>\n", "<tool_call><function=", "<tool_call>\n<function=>\n",
    "<tool_call>\n<function=a b>\n</function>\n</tool_call>",
    "<tool_call>\n<function=" + "x" * 5000 + ">\n</function>\n</tool_call>",
    "<tool_call>\n<function=add>\n<parameter=a>\n1\n</parameter>\n<parameter=a>\n2\n"
    "</parameter>\n</function>\n</tool_call>",
    "<tool_call>\n<function=add>\n<parameter=a>\n1\n</function>\n</tool_call>",
    "<tool_call>\n<function=add>\njunk\n</function>\n</tool_call>",
    "<tool_call>\n<function=add>\n<parameter=a\n1\n</parameter>\n</function>\n</tool_call>",
    "<tool_call>\n<function=add>\n</function>\nextra</tool_call>",
    "<tool_call>\n<function=nope>\n<parameter=a>\n1\n</parameter>\n</function>\n</tool_call>",
    "<tool_call>\n<function=probe>\n<parameter=box>\n" + "[" * 10_000 + "]" * 10_000
    + "\n</parameter>\n</function>\n</tool_call>",
    "<tool_call>\n<function=probe>\n<parameter=count>\n" + "9" * 5000
    + "\n</parameter>\n</function>\n</tool_call>",
    "<tool_call>\n<function=probe>\n<parameter=scale>\nnan\n</parameter>\n</function>"
    "\n</tool_call>",
    "<tool_call>\n<function=probe>\n<parameter=opts>\n{'k': 1}\n</parameter>\n</function>"
    "\n</tool_call>",
    "<function=add>\n<parameter=a>\n1\n</parameter>\n</function>",
    "<tool_call>\n<function=add>\n<parameter=a>\n1\n</parameter>\n</function>\n</tool_call>"
    "<answer>3</answer>",
    "<parameter=" * 2000, "</parameter>" * 2000,
    "<tool_call>\n<function=probe>\n<parameter=text>\n" + "</parameter>x" * 2000,
    "<tool_call>\n<function=add>\n<parameter=a>\n\ud800\x00\n</parameter>\n</function>",
]
BARE = "<function=add>\n<parameter=a>\n1\n</parameter>\n</function>"


def test_hostile_xml_is_an_error_message_never_an_exception():
    env = xml_env()
    base = env.snapshot()
    for action in HOSTILE:  # each one error message to the agent; nothing runs
        env.restore(base)
        obs, reward, terminated, _, info = env.step(action)
        text = obs["messages"][-1]["content"][-1]["text"]
        assert not terminated and info["tool_errors"] + info["format_errors"] == 1, \
            (action[:80], text)
        assert text.startswith("Error: ") or "No tool call" in text or "not both" in text
    env.restore(base)
    obs, *_ = env.step(BARE)  # a <function=...> block without <tool_call>: told to wrap it
    assert "must be inside <tool_call></tool_call>" in obs["messages"][-1]["content"][-1]["text"]

    rng = random.Random(0)
    mutants = [CALL[:i] for i in range(0, len(CALL), 7)] + ["<tool_call>" * 3000]
    for _ in range(150):
        s = list(CALL)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(s))
            s[at:at + rng.randint(0, 6)] = rng.choice(["<", ">", "\n", "=", "</parameter>",
                                                       "<tool_call>", "</function>", ""])
        mutants.append("".join(s))
    for action in mutants:  # never raises, never hangs
        start = time.perf_counter()
        parse_turn(action, XML, [probe.schema, add.schema])
        env.restore(base)
        obs, *_ = env.step(action)
        assert time.perf_counter() - start < 2.0, action[:80]
        assert obs["messages"][-1]["role"] in ("tool", "user")
    for flood in ["<tool_call>\n<function=probe>\n" + "<parameter=" * 50_000,
                  "<tool_call>\n<function=probe>\n<parameter=text>\n" + "</parameter>x" * 50_000,
                  "<tool_call>\n<function=a>\n</function>\n" * 20_000]:
        start = time.perf_counter()  # the parser is linear: a long turn cannot stall a step
        parse_turn(flood, XML, [probe.schema])
        assert time.perf_counter() - start < 2.0, flood[:80]


def test_values_that_do_not_read_as_their_type_stay_text_for_the_tool_to_refuse():
    props = [probe.schema]
    for name, raw in [("count", "9" * 5000), ("count", "3.5"), ("scale", "nan"),
                      ("flag", "yes"), ("box", "[" * 200 + "]" * 200), ("opts", "[1]"),
                      ("opts", "{'k': 1}")]:
        turn = f"<tool_call>\n<function=probe>\n<parameter={name}>\n{raw}\n</parameter>\n" \
               "</function>\n</tool_call>"
        [call] = parse_turn(turn, XML, props).calls
        assert call.error is None and call.arguments == {name: raw}, name
    [call] = parse_turn(CALL.replace("probe", "unknown"), XML, props).calls
    assert all(isinstance(v, str) for v in call.arguments.values())  # no schema: all text


def test_expert_turns_convert_and_write_xml_demos(tmp_path):
    import json

    from axpo_env.tasks import tool_arith
    from axpo_env.tasks.demos import write_expert_demos

    def expert(item):
        return [convert_tool_calls(t, XML) for t in tool_arith.expert_turns(item)]

    path = write_expert_demos(tool_arith.ToolArith.env_id, expert, tmp_path, 2,
                              tool_call_format=XML)
    for line, row in enumerate(path.read_text().splitlines()):
        messages = json.loads(row)["messages"]
        call = messages[2]["content"][0]["text"]
        assert "<function=calculator>\n<parameter=expression>\n" in call and '"name"' not in call
        a, b = call.split("</think>")[0].split("I need ")[1].split(".")[0].split(" * ")
        assert messages[3]["content"][-1]["text"] == str(int(a) * int(b)), line
    hermes = tool_arith.expert_turns(tool_arith.ToolArith(split="train").items[0])[0]
    assert convert_tool_calls(hermes, "hermes") == hermes
    assert convert_tool_calls(convert_tool_calls(hermes, XML), "hermes", XML) == hermes


def test_expert_demos_of_a_qwen3_coder_env_are_written_in_its_format(tmp_path):
    """A Hermes expert (ZoomBoxes' own) played on a qwen3_coder env: write_expert_demos
    rewrites its calls, so every crop runs and the demos teach the env's format."""
    import json

    from axpo_env.tasks import zoom_boxes
    from axpo_env.tasks.demos import write_expert_demos

    path = write_expert_demos(zoom_boxes.ZoomBoxes.env_id, zoom_boxes.expert_turns, tmp_path, 2,
                              "demo", tool_call_format=XML)
    for row in path.read_text().splitlines():
        _, _, call, reply, answer = json.loads(row)["messages"]
        assert "<function=crop>\n<parameter=bbox>\n" in call["content"][0]["text"]
        assert any(p["type"] == "image" for p in reply["content"])  # the crop ran
        assert "<answer>" in answer["content"][0]["text"]


class Scripted(HFPolicy):
    """The tiny model writing scripted turns, scored by the model (as test_real_templates)."""

    def __init__(self, base: HFPolicy, script: list[str]):
        super().__init__(base.model, base.processor)
        self.script, self.calls = script, 0

    def sample(self, prompts, n=1, sampling=None):
        text = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        out = []
        for p in prompts:
            lp, ent = self.score(p.extend(ids), range(len(p), len(p) + len(ids)), sampling)
            out.append([Completion(text, list(ids), lp, ent, list(p.ids))] * n)
        return out


def test_a_rollout_with_the_real_qwen3_5_template_records_what_it_renders():
    """ToolArith in the XML format, played by the tiny VL model with Qwen3.5's template: the
    call runs, and the trajectory's ids are what the real template renders (transformers' own
    apply_chat_template and processor) for the conversation."""
    base = HFPolicy.from_pretrained(tiny.cached(
        "vl", chat_template=(TEMPLATES / "qwen3_5.jinja").read_text()))
    call = render_tool_call("calculator", {"expression": "3 * 4"}, tool_call_format=XML)
    script = ["I will use the calculator.\n</think>\n\n" + call,
              "It says 12.\n</think>\n\n<answer>12</answer>"]
    kwargs = {"split": "test", "tools": ["calculator", "crop"], "max_turns": 3,
              "tool_call_format": XML}
    [t] = rollout("AXPO-ToolArith-v0", Scripted(base, script), ["test-0"],
                  sampling=SamplingParams(max_new_tokens=8, seed=0), env_kwargs=kwargs,
                  progress=False)
    assert t.error is None and t.turns[-1].terminated and len(t.turns) == 2
    assert t.info["tool_calls"] == 1 and t.info["tool_errors"] == 0
    assert t.turns[0].tool_result[0]["content"][-1]["text"] == "12"
    last = t.turns[-1]
    messages = [*last.snapshot.messages,
                {"role": "assistant", "content": [{"type": "text", "text": script[-1]}]}]
    msgs = [normalize_message(m, keep_images=True) for m in messages]
    tools = _schemas(kwargs)
    text = base.processor.apply_chat_template(msgs, tools=tools, tokenize=False)
    assert call in text and text.endswith("<|im_end|>\n")
    images = [p["image"] for m in msgs for p in m["content"] if p["type"] == "image"]
    expected = base.processor(text=[text[:-len("<|im_end|>\n")]], images=images,
                              return_tensors="pt")
    assert t.ids == expected["input_ids"][0].tolist()


def _schemas(kwargs: dict) -> list[dict]:
    import gymnasium as gym

    env = gym.make("AXPO-ToolArith-v0", **kwargs)
    try:
        return env.unwrapped.tool_schemas
    finally:
        env.close()
