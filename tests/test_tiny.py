"""agents.tiny: tiny checkpoints go through the real from_pretrained path, the chat template has
Qwen3-VL-Thinking's structure, and `encode` builds the inputs Qwen3-VL needs."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from agents import chat_encoding, pretrained, tiny

TOOLS = [{"type": "function", "function": {
    "name": "crop", "description": "Crop a region.",
    "parameters": {"type": "object", "properties": {"bbox": {"type": "array"}},
                   "required": ["bbox"]}}}]
CALL = '<tool_call>\n{"name": "crop", "arguments": {"bbox": [0, 0, 32, 32]}}\n</tool_call>'


def _image(h: int = 64, w: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))


def _conversation() -> list[dict]:
    """System, user image + question, a thinking assistant tool call, two tool results."""
    return [
        {"role": "system", "content": [{"type": "text", "text": "Answer the question."}]},
        {"role": "user", "content": [{"type": "image", "image": _image()},
                                     {"type": "text", "text": "What is 2 + 2?"}]},
        {"role": "assistant", "content": [{"type": "text",
                                           "text": "Let me look closer.\n</think>\n\n" + CALL}]},
        {"role": "tool", "content": [{"type": "image", "image": _image(48, 96, seed=1)},
                                     {"type": "text", "text": "Cropped (image index 1)"}]},
        {"role": "tool", "content": "second result"},
    ]


@pytest.fixture(scope="module")
def vl():
    path = tiny.cached("vl")
    return pretrained.load_model(path, local_files_only=True), pretrained.load_processor(
        path, local_files_only=True)


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_build_reloads_through_from_pretrained(tmp_path):
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoTokenizer,
        Qwen3ForCausalLM,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
    )

    vl_dir = tiny.build(tmp_path / "vl", kind="vl")
    text_dir = tiny.build(tmp_path / "text", kind="text")
    vl_model = AutoModelForImageTextToText.from_pretrained(vl_dir, local_files_only=True)
    text_model = AutoModelForCausalLM.from_pretrained(text_dir, local_files_only=True)
    assert isinstance(vl_model, Qwen3VLForConditionalGeneration)
    assert isinstance(text_model, Qwen3ForCausalLM)
    assert 1_000_000 <= _params(vl_model) <= 5_000_000
    assert 1_000_000 <= _params(text_model) <= 5_000_000

    tok = AutoTokenizer.from_pretrained(vl_dir, local_files_only=True)
    assert 1000 <= len(tok) <= 2000
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.chat_template == tiny.CHAT_TEMPLATE
    cfg = vl_model.config
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert cfg.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert cfg.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert cfg.vision_end_token_id == tok.convert_tokens_to_ids("<|vision_end|>")
    assert cfg.text_config.vocab_size == len(tok)
    assert sum(cfg.text_config.rope_parameters["mrope_section"]) == cfg.text_config.head_dim // 2
    assert cfg.vision_config.out_hidden_size == cfg.text_config.hidden_size
    assert max(cfg.vision_config.deepstack_visual_indexes) < cfg.vision_config.depth

    processor = pretrained.load_processor(vl_dir, local_files_only=True)
    assert isinstance(processor, Qwen3VLProcessor)
    assert processor.chat_template == tiny.CHAT_TEMPLATE
    assert processor.image_processor.merge_size == 2
    assert processor.image_token_id == cfg.image_token_id
    text_tok = pretrained.load_processor(text_dir, local_files_only=True)  # no processor: tokenizer
    assert not hasattr(text_tok, "image_processor") and len(text_tok) == len(tok)
    assert isinstance(pretrained.load_model(text_dir), Qwen3ForCausalLM)


def test_special_and_added_tokens_are_single_tokens():
    tok = pretrained.load_processor(tiny.cached("text"), local_files_only=True)
    for t in tiny.SPECIAL_TOKENS + tiny.ADDED_TOKENS:
        ids = tok.encode(t, add_special_tokens=False)
        assert len(ids) == 1 and tok.convert_ids_to_tokens(ids[0]) == t, t
    ids = tok.encode("Think.</think>\n\n" + CALL, add_special_tokens=False)
    # Added (non-special) tokens survive skip_special_tokens, as in Qwen; special ones do not.
    assert tok.decode(ids, skip_special_tokens=True) == "Think.</think>\n\n" + CALL
    assert tok.decode(tok.encode("<|im_start|>hi<|im_end|>", add_special_tokens=False),
                      skip_special_tokens=True) == "hi"


def test_chat_template_has_qwen3_vl_thinking_structure(vl):
    _, processor = vl
    text = processor.tokenizer.apply_chat_template(
        _conversation(), tools=TOOLS, add_generation_prompt=True, tokenize=False)
    tools_json = ('{"type": "function", "function": {"name": "crop", "description": "Crop a '
                  'region.", "parameters": {"type": "object", "properties": {"bbox": {"type": '
                  '"array"}}, "required": ["bbox"]}}}')
    pad = "<|vision_start|><|image_pad|><|vision_end|>"
    assert text == (
        "<|im_start|>system\nAnswer the question.\n\n# Tools\n\nYou may call one or more "
        "functions to assist with the user query.\n\nYou are provided with function signatures "
        f"within <tools></tools> XML tags:\n<tools>\n{tools_json}\n</tools>\n\nFor each function "
        "call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
        f"<|im_start|>user\n{pad}What is 2 + 2?<|im_end|>\n"
        f"<|im_start|>assistant\n<think>\nLet me look closer.\n</think>\n\n{CALL}<|im_end|>\n"
        f"<|im_start|>user\n<tool_response>\n{pad}Cropped (image index 1)\n</tool_response>\n"
        "<tool_response>\nsecond result\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n<think>\n"
    )
    # The processor renders the same template.
    assert processor.apply_chat_template(_conversation(), tools=TOOLS, add_generation_prompt=True,
                                         tokenize=False) == text


def test_chat_template_without_tools_and_old_reasoning():
    tok = pretrained.load_processor(tiny.cached("text"), local_files_only=True)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "<think>\nold thought\n</think>\n\nHello"},
        {"role": "user", "content": [{"type": "text", "text": "Again"}]},
        {"role": "assistant", "content": "new thought</think>\n\nBye"},
    ]
    text = tok.apply_chat_template(messages, tokenize=False)
    # Reasoning before the last real user query is dropped, as Qwen3's templates do.
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\nAgain<|im_end|>\n"
        "<|im_start|>assistant\n<think>\nnew thought\n</think>\n\nBye<|im_end|>\n"
    )
    assert "# Tools" not in text


def test_encode_expands_image_pads_like_the_manual_path(vl):
    _, processor = vl
    enc = chat_encoding.encode(processor, _conversation(), tools=TOOLS)
    assert set(enc) == {"input_ids", "attention_mask", "pixel_values", "image_grid_thw",
                        "mm_token_type_ids"}
    grid = enc["image_grid_thw"]
    merge = processor.image_processor.merge_size
    pad_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    ids = enc["input_ids"][0]
    assert grid.shape == (2, 3) and grid[:, 0].tolist() == [1, 1]
    assert int((ids == pad_id).sum()) == int((grid.prod(-1) // merge**2).sum())
    assert torch.equal(enc["mm_token_type_ids"][0], (ids == pad_id).long())
    assert enc["pixel_values"].shape[0] == int(grid.prod(-1).sum())
    assert enc["attention_mask"].bool().all()

    # Processor-free path: image processor, expand each pad, tokenize: the same ids and pixels.
    text = processor.tokenizer.apply_chat_template(
        _conversation(), tools=TOOLS, add_generation_prompt=True, tokenize=False)
    images = [_image(), _image(48, 96, seed=1)]
    pixels = processor.image_processor(images=images, return_tensors="pt")
    pieces = text.split("<|image_pad|>")
    counts = (pixels["image_grid_thw"].prod(-1) // merge**2).tolist()
    expanded = pieces[0] + "".join("<|image_pad|>" * n + rest
                                   for n, rest in zip(counts, pieces[1:]))
    manual = processor.tokenizer(expanded, add_special_tokens=False)["input_ids"]
    assert ids.tolist() == manual
    assert torch.equal(enc["pixel_values"], pixels["pixel_values"])
    assert torch.equal(enc["image_grid_thw"], pixels["image_grid_thw"])


def test_encode_with_a_tokenizer_and_an_observation():
    tok = pretrained.load_processor(tiny.cached("text"), local_files_only=True)
    observation = {"messages": _conversation(), "tools": TOOLS}
    enc = chat_encoding.encode(tok, observation)
    assert set(enc) == {"input_ids", "attention_mask"}
    text = tok.decode(enc["input_ids"][0])
    assert "<|image_pad|>" not in text and "# Tools" in text  # no image pads, tools rendered
    assert "not shown, this model reads text only]" in text  # the image became a note
    assert text.endswith("<|im_start|>assistant\n<think>\n")
    assert chat_encoding.encode(tok, observation["messages"], add_generation_prompt=False)[
        "input_ids"].shape[1] < enc["input_ids"].shape[1]


def test_forward_and_generate_with_an_image(vl):
    model, processor = vl
    enc = chat_encoding.encode(processor, _conversation(), tools=TOOLS)
    with torch.no_grad():
        logits = model(**enc).logits
    assert logits.shape == (1, enc["input_ids"].shape[1], model.config.text_config.vocab_size)
    assert torch.isfinite(logits).all()
    out = model.generate(**enc, max_new_tokens=8, min_new_tokens=8, do_sample=False,
                         output_logits=True, return_dict_in_generate=True)
    assert out.sequences.shape == (1, enc["input_ids"].shape[1] + 8)
    assert len(out.logits) == 8 and all(torch.isfinite(s).all() for s in out.logits)
    # Step 0's raw logits are the forward pass's last position.
    torch.testing.assert_close(out.logits[0][0], logits[0, -1], rtol=1e-4, atol=1e-4)


def test_env_observation_runs_through_the_tiny_vl_model(vl, toy_env):
    model, processor = vl
    obs, _ = toy_env.reset(seed=0, options={"index": 1})
    obs, *_ = toy_env.step('Paint it.</think>\n\n<tool_call>\n{"name": "paint", '
                           '"arguments": {"value": 128}}\n</tool_call>')
    assert obs["messages"][-1]["role"] == "tool"
    enc = chat_encoding.encode(processor, obs)
    assert enc["image_grid_thw"].shape[0] == 2  # the task image and the tool's image
    with torch.no_grad():
        assert torch.isfinite(model(**enc).logits).all()


def _generate(path) -> list[int]:
    model, processor = pretrained.load_model(path), pretrained.load_processor(path)
    enc = chat_encoding.encode(processor, _conversation()[:2])
    out = model.generate(**enc, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    return out[0, enc["input_ids"].shape[1]:].tolist()


def test_same_seed_same_weights_and_generations(tmp_path):
    state = torch.get_rng_state()
    a = tiny.build(tmp_path / "a", kind="vl", seed=3)
    b = tiny.build(tmp_path / "b", kind="vl", seed=3)
    c = tiny.build(tmp_path / "c", kind="vl", seed=4)
    assert torch.equal(torch.get_rng_state(), state)  # building leaves the caller's RNG alone
    wa, wb, wc = (pretrained.load_model(p).state_dict() for p in (a, b, c))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)
    assert _generate(a) == _generate(b)
    ta, tb = (pretrained.load_model(tiny.build(tmp_path / f"t{s}", kind="text", seed=7))
              .state_dict() for s in "ab")
    assert all(torch.equal(ta[k], tb[k]) for k in ta)


def test_cached_builds_once():
    assert tiny.cached("vl") == tiny.cached("vl")
    assert tiny.cached("text") != tiny.cached("vl")
    with pytest.raises(ValueError, match="kind"):
        tiny.build("/nonexistent-never-created", kind="audio")  # type: ignore[arg-type]


def test_encode_loads_image_parts_given_by_path(vl, tmp_path):
    _, processor = vl
    file = tmp_path / "image.png"
    _image().save(file)
    by_path = [{"role": "user", "content": [{"type": "image", "path": str(file)},
                                            {"type": "text", "text": "What is it?"}]}]
    by_pil = [{"role": "user", "content": [{"type": "image", "image": _image()},
                                           {"type": "text", "text": "What is it?"}]}]
    a, b = chat_encoding.encode(processor, by_path), chat_encoding.encode(processor, by_pil)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cached_removes_the_dirs_killed_processes_left(tmp_path, monkeypatch):
    import subprocess
    import sys

    from agents import tiny as tiny_module

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    left = tmp_path / f"axpo-tiny-vl-{dead}-abc123"
    mine = tmp_path / f"axpo-tiny-vl-{os.getpid()}-def456"
    other = tmp_path / "axpo-tiny-notes"
    for d in (left, mine, other):
        d.mkdir()
    tiny_module._remove_leftovers(tmp_path)
    assert not left.exists() and mine.exists() and other.exists()
