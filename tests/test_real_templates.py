"""The real chat templates of Qwen3-VL-Thinking, Qwen3-VL-Instruct and Qwen3 (text) in a tiny
checkpoint: rollouts, re-scoring, SFT and eval work, and a trajectory's ids are what the real
template renders for its conversation. Templates: tests/fixtures/templates (see its README)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import axpo_env  # noqa: F401
from agents import tiny
from agents.chat_encoding import normalize_message
from agents.hf import HFPolicy
from agents.policy import Completion, SamplingParams
from agents.rollout import rollout
from algorithms.sft import IGNORE, tokenize_example
from axpo_env import render_tool_call
from evaluation.evaluate import EvalConfig, run_eval

TEMPLATES = Path(__file__).parent / "fixtures" / "templates"
SAMPLING = SamplingParams(max_new_tokens=8, temperature=1.0, seed=0)
ENV = "AXPO-ToolArith-v0"
ENV_KWARGS = {"split": "test", "tools": ["calculator", "crop"], "max_turns": 3}
CALL = render_tool_call("calculator", {"expression": "3 * 4"})

#: template file -> (model kind, the turns a model of that family writes, canonically spaced).
CASES = {
    "qwen3vl_thinking": ("vl", ["I will use the calculator.\n</think>\n\n" + CALL,
                                "It says 12.\n</think>\n\n<answer>12</answer>"]),
    "qwen3vl_instruct": ("vl", [CALL, "<answer>12</answer>"]),
    "qwen3_text": ("text", ["<think>\nI will use the calculator.\n</think>\n\n" + CALL,
                            "<think>\nIt says 12.\n</think>\n\n<answer>12</answer>"]),
}


class Scripted(HFPolicy):
    """The tiny model writing scripted turns (tokenized as the model would emit them), with
    logprobs scored by the model, so an episode is a real multi-turn rollout."""

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


def checkpoint(name: str) -> Path:
    kind = CASES[name][0]
    return tiny.cached(kind, chat_template=(TEMPLATES / f"{name}.jinja").read_text())


def conversation(trajectory) -> list[dict]:
    """The episode's messages: the env's before the last turn, then that turn's text."""
    last = trajectory.turns[-1]
    return [*last.snapshot.messages,
            {"role": "assistant", "content": [{"type": "text", "text": last.completion.text}]}]


def real_render(policy: HFPolicy, messages: list[dict], tools: list[dict]) -> dict:
    """What the real template renders for `messages`, tokenized by the real processor path
    (transformers' own apply_chat_template and processor call), up to the last turn's end."""
    if policy.is_vision:
        msgs = [normalize_message(m, keep_images=True) for m in messages]
    else:  # a text model: content is the message's text, images a note (ours)
        msgs = [{"role": m["role"], "content": "".join(
            p["text"] for p in normalize_message(m, keep_images=False)["content"])}
            for m in messages]
    text = policy.processor.apply_chat_template(msgs, tools=tools, tokenize=False)
    eos = policy.tokenizer.eos_token + "\n"
    assert text.endswith(eos)
    text = text[:-len(eos)]  # the last turn ends at its stop string, not at <|im_end|>
    if policy.is_vision:
        images = [p["image"] for m in msgs for p in m["content"] if p["type"] == "image"]
        return policy.processor(text=[text], images=images, return_tensors="pt")
    return policy.tokenizer([text], add_special_tokens=False, return_tensors="pt")


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    name = request.param
    base = HFPolicy.from_pretrained(checkpoint(name))
    policy = Scripted(base, CASES[name][1])
    [trajectory] = rollout(ENV, policy, ["test-0"], sampling=SAMPLING, env_kwargs=ENV_KWARGS,
                           progress=False)
    return name, base, trajectory


def test_rollout_ids_are_what_the_real_template_renders(case):
    name, policy, trajectory = case
    assert trajectory.error is None and trajectory.turns[-1].terminated
    assert len(trajectory.turns) == 2
    expected = real_render(policy, conversation(trajectory), policy_tools())
    assert trajectory.ids == expected["input_ids"][0].tolist()
    if policy.is_vision:  # the task image: its pixels and grid as the processor makes them
        assert torch.equal(trajectory.sequence.pixel_values, expected["pixel_values"])
        assert torch.equal(trajectory.sequence.image_grid_thw, expected["image_grid_thw"])
    # Only the scripted turns are trained on, and they decode to exactly the scripted text.
    mask = trajectory.mask
    generated = [policy.tokenizer.decode([t for t, m in zip(trajectory.ids, mask) if m])]
    assert generated == ["".join(CASES[name][1])]


def policy_tools() -> list[dict]:
    import gymnasium as gym

    env = gym.make(ENV, **ENV_KWARGS)
    try:
        return env.unwrapped.tool_schemas
    finally:
        env.close()


def test_rescoring_reproduces_the_recorded_logprobs(case):
    _, policy, trajectory = case
    positions = [i for i, m in enumerate(trajectory.mask) if m]
    logprobs, _ = policy.score(trajectory.sequence, positions, SAMPLING)
    recorded = [trajectory.logprobs[i] for i in positions]
    assert logprobs == pytest.approx(recorded, abs=1e-4)


def test_sft_tokenizes_the_trajectory_as_the_rollout_recorded_it(case):
    """Token for token and mask for mask: SFT on a rollout's conversation trains the ids the
    model generated, in the context it saw, and nothing else (no <|im_end|>, no empty
    thinking block the template would insert)."""
    _, policy, trajectory = case
    x = tokenize_example(policy.processor, {"messages": conversation(trajectory),
                                            "tools": policy_tools()})
    assert x["input_ids"].tolist() == trajectory.ids
    assert (x["labels"] != IGNORE).long().tolist() == trajectory.mask


def test_eval_runs_a_checkpoint_with_the_real_template(case, tmp_path):
    name = case[0]
    cfg = EvalConfig(model=str(checkpoint(name)), envs=[ENV], split=["test"], samples=1,
                     limit=1, max_turns=2, max_completion_length=8, output_dir=str(tmp_path),
                     tools=["calculator"])
    run_eval(cfg, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    episodes = [r for r in rows if r.get("type") != "config"]
    assert len(episodes) == 1 and episodes[0]["error"] is None and episodes[0]["turns"] >= 1


def test_text_model_with_real_qwen3_template_resets_and_samples():
    """The real Qwen3 template concatenates `messages[0].content + '\\n\\n'`: content must be a
    string for a text-only model (it was a list of parts, a TypeError at reset)."""
    policy = HFPolicy.from_pretrained(checkpoint("qwen3_text"))
    trajs = rollout(ENV, policy, ["test-0", "test-1"], sampling=SAMPLING, env_kwargs=ENV_KWARGS,
                    progress=False)
    assert all(t.error is None and t.turns for t in trajs)


def test_a_format_error_turn_keeps_the_ids_the_model_saw():
    """A turn with neither call nor answer gets a `user` message back. Qwen3-VL-Thinking's
    template, re-rendering the whole conversation, then drops the reasoning of every turn
    before that message; the trajectory keeps it, because those are the ids the model was fed
    when it sampled the later turns (their logprobs were computed on them), which is what the
    policy gradient needs. Each turn's ids are the template's render at the time it was sampled."""
    policy = HFPolicy.from_pretrained(checkpoint("qwen3vl_thinking"))
    script = ["I will use the calculator.\n</think>\n\n" + CALL, "Hmm.\n</think>\n\nNo idea.",
              "It says 12.\n</think>\n\n<answer>12</answer>"]
    [t] = rollout(ENV, Scripted(policy, script), ["test-0"], sampling=SAMPLING,
                  env_kwargs=ENV_KWARGS, progress=False)
    assert t.error is None and t.info["format_errors"] == 1 and t.turns[-1].terminated
    tools = policy_tools()
    whole = real_render(policy, conversation(t), tools)["input_ids"][0].tolist()
    assert whole != t.ids and len(whole) < len(t.ids)  # the re-render lost turn 1's thinking
    for k, turn in enumerate(t.turns):  # turn k saw the template's render of its prefix,
        seen = t.ids[:turn.generated_start]  # with earlier turns as they were generated
        if k == 0:
            assert seen == policy.prompt({"messages": turn.snapshot.messages,
                                          "tools": tools}).ids
        assert policy.tokenizer.decode(seen).endswith("<|im_start|>assistant\n<think>\n")
    thinking = "I will use the calculator."
    assert thinking in policy.tokenizer.decode(t.ids)
    assert thinking not in policy.tokenizer.decode(whole)


def test_branching_from_a_real_template_trajectory_keeps_the_prefix(case):
    """AXPO's move on a real template: restore turn 0, keep its thinking, resample the rest."""
    from agents.rollout import branch

    _, policy, trajectory = case
    source = trajectory.turns[0]
    keep = len(source.completion.token_ids) // 2
    branches = branch(trajectory, turn=0, keep=keep, policy=policy, n=2, env=ENV,
                      sampling=SAMPLING, env_kwargs=ENV_KWARGS)
    start = source.generated_start + keep
    for b in branches:
        assert b.error is None and b.ids[:start] == trajectory.ids[:start]
        assert b.train_from == start and sum(b.train_mask[:start]) == 0
