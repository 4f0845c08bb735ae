"""The image-placeholder check on every turn (issue 28, item 5): runs of `<|image_pad|>` ids
that do not match the images (a template that drops or adds an image, a kept pad id, text that
spells the token) end that one episode with a clear `Trajectory.error`; the batch goes on and
nothing raises out of `rollout()` or `generate()`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

import axpo_env  # noqa: F401
from agents import tiny
from agents.chat_encoding import ChatEncoder, ImagePlaceholderError
from agents.hf import HFPolicy
from agents.image_slots import image_slot_error
from agents.policy import Completion, SamplingParams
from agents.rollout import rollout
from agents.tokens import TokenPrompt
from axpo_env import render_tool_call
from axpo_env.errors import DatasetError

TEMPLATES = Path(__file__).parent / "fixtures" / "templates"
SAMPLING = SamplingParams(max_new_tokens=6, temperature=1.0, seed=0)
ENV = "AXPO-ToolArith-v0"
KWARGS = {"split": "test", "tools": ["calculator", "crop"], "max_turns": 3}
CALC = render_tool_call("calculator", {"expression": "3 * 4"})
CROP = render_tool_call("crop", {"bbox": [0, 0, 0.5, 0.5]})


@pytest.fixture(scope="module")
def vl():
    return HFPolicy.from_pretrained(tiny.cached("vl"))


def image() -> Image.Image:
    return Image.new("RGB", (64, 48), (200, 30, 30))


class PerEpisode(HFPolicy):
    """Scripted turns per batch position: call k of `sample` gives prompt b `script[k][b]`
    (ids as the model would emit them, plus `extra[k][b]` ids), scored by the model."""

    def __init__(self, base: HFPolicy, script: list[list[str]],
                 extra: dict[tuple[int, int], list[int]] | None = None):
        super().__init__(base.model, base.processor)
        self.script, self.extra, self.calls = script, extra or {}, 0

    def sample(self, prompts, n=1, sampling=None):
        k = min(self.calls, len(self.script) - 1)
        self.calls += 1
        out = []
        for b, p in enumerate(prompts):
            text = self.script[k][min(b, len(self.script[k]) - 1)]
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            lp, ent = self.score(p.extend(ids), range(len(p), len(p) + len(ids)), sampling)
            extra = self.extra.get((k, b), [])  # not scored: the model cannot read them
            ids, lp, ent = ids + extra, lp + [0.0] * len(extra), ent + [0.0] * len(extra)
            out.append([Completion(self.tokenizer.decode(ids), ids, lp, ent, list(p.ids))] * n)
        return out


def test_a_kept_image_pad_id_ends_that_episode_and_the_batch_goes_on(vl):
    """A policy that keeps a sampled <|image_pad|> id (no `turn_end` cut) in episode 0's tool
    call: the next turn would feed a pad with no image behind it, and a Qwen-VL forward pass
    raises for the whole batch. The check ends episode 0 before that; episode 1 plays on."""
    policy = PerEpisode(vl, [[CALC, CALC], ["<answer>12</answer>"]],
                        extra={(0, 0): [vl.image_pad_id]})
    bad, good = rollout(ENV, policy, ["test-0", "test-1"], sampling=SAMPLING, env_kwargs=KWARGS,
                        progress=False)
    assert bad.error.startswith("after turn 0: image placeholder mismatch")
    assert "the run at position" in bad.error and len(bad.turns) == 1
    assert good.error is None and good.done and len(good.turns) == 2


def test_a_pad_id_in_the_last_turn_is_the_episodes_error_not_a_training_crash(vl):
    policy = PerEpisode(vl, [["<answer>12</answer>"]], extra={(0, 0): [vl.image_pad_id]})
    bad, good = rollout(ENV, policy, ["test-0", "test-1"], sampling=SAMPLING, env_kwargs=KWARGS,
                        progress=False)
    assert bad.done and bad.error.startswith("after turn 0: image placeholder mismatch")
    assert good.error is None and good.done


def test_a_template_that_drops_tool_images_ends_that_episode_with_a_clear_error():
    """Qwen3.5's real template, changed to render only the text of tool results: a crop's
    image has no slot. Episode 0 (crop) ends with an error that says so; episode 1
    (calculator, no image) plays on in the same batch."""
    template = (TEMPLATES / "qwen3_5.jinja").read_text()
    shown = "{{- '\\n<tool_response>\\n' }}\n        {{- content }}"
    assert shown in template
    template = template.replace(shown, "{{- '\\n<tool_response>\\n' }}\n        {{- message."
                                "content | selectattr('type', 'equalto', 'text') | map("
                                "attribute='text') | join('') }}")
    base = HFPolicy.from_pretrained(tiny.cached("vl", chat_template=template))
    xml = {**KWARGS, "tool_call_format": "qwen3_coder"}
    crop = render_tool_call("crop", {"bbox": [0, 0, 0.5, 0.5]}, tool_call_format="qwen3_coder")
    calc = render_tool_call("calculator", {"expression": "3 * 4"},
                            tool_call_format="qwen3_coder")
    policy = PerEpisode(base, [["Crop.\n</think>\n\n" + crop, "Compute.\n</think>\n\n" + calc],
                               ["It says 12.\n</think>\n\n<answer>12</answer>"]])
    bad, good = rollout(ENV, policy, ["test-0", "test-1"], sampling=SAMPLING, env_kwargs=xml,
                        progress=False)
    assert bad.error.startswith("could not encode the env's reply: ImagePlaceholderError: "
                                "image placeholder mismatch")
    assert "wrote 0 <|image_pad|> slot(s) for the 1 image(s)" in bad.error
    assert "drops images" in bad.error and bad.info["tool_calls"] == 1
    assert good.error is None and good.turns[-1].terminated and good.info["tool_errors"] == 0


def test_assistant_text_spelling_an_image_pad_is_text_and_the_batch_goes_on(vl):
    """An earlier assistant turn whose text spells <|image_pad|> (hostile model output, or a
    conversation built by hand) in a batch with a real image: the string stays text, so the
    prompt holds only the real image's pads and the batch samples."""
    good = {"messages": [{"role": "user", "content": [{"type": "image", "image": image()},
                                                      {"type": "text", "text": "What?"}]}]}
    hostile = {"messages": [
        {"role": "user", "content": [{"type": "text", "text": "What?"}]},
        {"role": "assistant", "content": "I saw <|image_pad|> and <|video_pad|> here."},
        {"role": "user", "content": [{"type": "text", "text": "And?"}]}]}
    prompt = vl.prompt(hostile)
    assert vl.image_pad_id not in prompt.ids
    assert "I saw <|image_pad|> and <|video_pad|> here." in vl.tokenizer.decode(prompt.ids)
    out = vl.generate([good, hostile], sampling=SAMPLING)
    assert all(c[0].finish_reason in ("stop", "length") for c in out)


def test_a_template_image_slot_without_an_image_is_an_error_never_a_stray_pad(vl):
    enc = ChatEncoder(vl.processor)
    with pytest.raises(ImagePlaceholderError, match="more <.image_pad.> slots than the 0"):
        enc.encode("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Hi<|im_end|>")
    with pytest.raises(ImagePlaceholderError, match="video"):
        enc.encode("<|vision_start|><|video_pad|><|vision_end|>", [image()])
    ids, vision = enc.encode("<|vision_start|><|image_pad|><|vision_end|>", [image()])
    assert ids.count(vl.image_pad_id) == int(vision["image_grid_thw"].prod()) // 4


def test_sft_data_whose_assistant_text_spells_an_image_pad_is_a_named_line_error(vl):
    from algorithms.sft import tokenize_example

    example = {"line": 7, "messages": [
        {"role": "user", "content": [{"type": "image", "image": image()},
                                     {"type": "text", "text": "What?"}]},
        {"role": "assistant", "content": "<answer><|image_pad|></answer>"}]}
    with pytest.raises(DatasetError, match="line 7: .*image placeholder mismatch"):
        tokenize_example(vl.processor, example)


def test_image_slot_error_matches_runs_to_images():
    pad, grid = 9, torch.tensor([[1, 4, 4], [1, 2, 4]])  # 4 and 2 pad ids at merge 2
    ok = TokenPrompt([1, 9, 9, 9, 9, 2, 9, 9, 3], None, grid, pad)
    assert image_slot_error(ok) is None
    merged = TokenPrompt([1, 9, 9, 9, 9, 9, 9, 3], None, grid, pad)  # adjacent images
    assert image_slot_error(merged) is None
    short = TokenPrompt([1, 9, 9, 9, 2, 9, 9, 3], None, grid, pad)
    assert "the run at position 1 has 3 pad id(s)" in image_slot_error(short)
    extra = TokenPrompt([9, 1, 9, 9, 9, 9, 2, 9, 9], None, grid, pad)
    assert "image placeholder mismatch: 3 run(s)" in image_slot_error(extra)
    missing = TokenPrompt([1, 9, 9, 9, 9, 2], None, grid, pad)
    assert "1 image(s) have no pad ids" in image_slot_error(missing)
    stray = TokenPrompt([1, 9, 2], None, None, pad)
    assert "for 0 image(s)" in image_slot_error(stray)
    video = TokenPrompt([1, 8, 2], None, None, pad)
    assert "video slot" in image_slot_error(video, slot_ids={8, 9})
    assert image_slot_error(TokenPrompt([1, 9, 2], None, None, None)) is None  # no pad id
