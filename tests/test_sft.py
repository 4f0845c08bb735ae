"""SFT: only assistant tokens are labelled (exactly what the model generates each turn), images
become pads and pixels, bad data names its line, the tiny model learns, checkpoints load."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from agents import tiny
from agents.hf import HFPolicy
from agents.policy import SamplingParams
from agents.pretrained import load_processor
from algorithms.config import SFTConfig
from algorithms.outputs import latest_checkpoint
from algorithms.sft import IGNORE, _collate, load_sft_dataset, tokenize_example, train_sft
from axpo_cli import cli
from axpo_env.errors import DatasetError

CROP = {"type": "function", "function": {
    "name": "crop", "description": "Crop a region of an image and zoom in on it.",
    "parameters": {"type": "object", "properties": {"bbox": {"type": "array"}},
                   "required": ["bbox"]}}}


def _call(name: str, **arguments) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def _png(seed: int, size: tuple[int, int] = (48, 40)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (*size[::-1], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def trajectories() -> list[dict]:
    """Four tool-use trajectories: image question, crop call, tool result with image, answer."""
    data_url = "data:image/png;base64," + base64.b64encode(_png(9)).decode()
    out = []
    for i in range(4):
        image = "images/chart.png" if i % 2 == 0 else data_url
        out.append({"tools": [CROP], "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": [{"type": "image", "image": image},
                                         {"type": "text", "text": f"How many boxes? ({i})"}]},
            {"role": "assistant", "content": "", "reasoning_content": f"Let me zoom in {i}.",
             "tool_calls": [_call("crop", bbox=[0, 0, 32, 32])]},
            {"role": "tool", "content": [{"type": "text", "text": "Cropped region 32x32."},
                                         {"type": "image", "image": "images/crop.png"}]},
            {"role": "assistant", "content": f"There are {i + 3} boxes. <answer>{i + 3}</answer>"},
        ]})
    return out


@pytest.fixture
def data(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "chart.png").write_bytes(_png(1))
    (tmp_path / "images" / "crop.png").write_bytes(_png(2, (64, 64)))
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in trajectories()))
    return path


@pytest.fixture(scope="module")
def processor():
    return load_processor(tiny.cached("vl"))


def spans(x: dict) -> list[tuple[int, int]]:
    """[start, end) of each run of labelled tokens."""
    on = (x["labels"] != IGNORE).tolist() + [False]
    out, start = [], None
    for i, flag in enumerate(on):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            out.append((start, i))
            start = None
    return out


def test_labels_are_exactly_the_assistant_turns(data, processor):
    tok = processor.tokenizer
    x = tokenize_example(processor, load_sft_dataset(data)[0])
    assert torch.equal(x["labels"][x["labels"] != IGNORE], x["input_ids"][x["labels"] != IGNORE])
    texts = [tok.decode(x["input_ids"][a:b]) for a, b in spans(x)]
    assert texts == [
        'Let me zoom in 0.\n</think>\n\n<tool_call>\n{"name": "crop", "arguments": '
        '{"bbox": [0, 0, 32, 32]}}\n</tool_call>',  # the stop string ends the turn
        "There are 3 boxes. <answer>3</answer>",  # as written: no empty thinking inserted
    ]
    header = tok("<|im_start|>assistant\n<think>\n", add_special_tokens=False)["input_ids"]
    for a, _ in spans(x):  # the generation prompt is context, never a target
        assert x["input_ids"][a - len(header):a].tolist() == header
    # Nothing of the system, user or tool turns is labelled.
    context = tok.decode(x["input_ids"][x["labels"] == IGNORE])
    for text in ("helpful assistant", "How many boxes", "Cropped region", "<tool_response>"):
        assert text in context
    assert "<tool_response>" not in "".join(texts) and "<|im_start|>" not in "".join(texts)


def test_layout_matches_the_template_where_it_keeps_everything(data, processor):
    """With one user query and reasoning in every turn the template drops nothing, so the
    turn-by-turn layout must equal its render of the whole conversation."""
    example = load_sft_dataset(data)[0]
    example["messages"][-1]["reasoning_content"] = "Count them."
    x = tokenize_example(processor, example)
    tok = processor.tokenizer
    full = processor.apply_chat_template(
        [{**m, "content": [p if p["type"] != "image" else {"type": "image"}
                           for p in m["content"]]} if isinstance(m["content"], list) else m
         for m in example["messages"]], tools=example["tools"], tokenize=False)
    text = tok.decode(x["input_ids"]).replace("<|image_pad|>", "")
    assert text + "<|im_end|>\n" == full.replace("<|image_pad|>", "")


def test_reasoning_the_template_would_drop_is_still_learned(processor):
    """Qwen3's template drops thinking before the last user query when re-rendering; the
    labels are what the model generated in that turn, thinking included."""
    example = {"tools": None, "messages": [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "<think>\nTwo plus two.\n</think>\n\n<answer>4</answer>"},
        {"role": "user", "content": "And 3 + 3?"},
        {"role": "assistant", "content": "<answer>6</answer>", "reasoning_content": "Six."},
    ]}
    x = tokenize_example(processor, example)
    texts = [processor.tokenizer.decode(x["input_ids"][a:b]) for a, b in spans(x)]
    assert texts == ["Two plus two.\n</think>\n\n<answer>4</answer>",
                     "Six.\n</think>\n\n<answer>6</answer>"]


def test_images_expand_to_pads_and_pixels(data, processor):
    x = tokenize_example(processor, load_sft_dataset(data)[1])  # a data-URL image + a file
    pads = int((x["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>"))
               .sum())
    grid = x["image_grid_thw"]
    assert grid.shape == (2, 3)
    assert pads == int(grid.prod(-1).sum()) // 4 and pads > 0
    assert x["pixel_values"].shape[0] == int(grid.prod(-1).sum())
    assert (x["labels"][x["input_ids"] == processor.tokenizer.convert_tokens_to_ids(
        "<|image_pad|>")] == IGNORE).all()


def test_truncation_cuts_the_end_but_never_through_an_image(data, processor):
    example = load_sft_dataset(data)[0]
    full = tokenize_example(processor, example)
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    last_pad = int((full["input_ids"] == pad).nonzero().max())
    cut = tokenize_example(processor, example, max_length=last_pad)  # inside the 2nd image
    assert len(cut["input_ids"]) < last_pad and cut["image_grid_thw"].shape[0] == 1
    assert int((cut["input_ids"] == pad).sum()) == int(cut["image_grid_thw"].prod()) // 4
    assert torch.equal(cut["input_ids"], full["input_ids"][:len(cut["input_ids"])])


@pytest.mark.parametrize("line, message", [
    ("{not json", "not valid JSON"),
    ('{"messages": "hi"}', "'messages' list"),
    ('{"messages": [{"role": "robot", "content": "x"}]}', "message 0"),
    ('{"messages": [{"role": "user", "content": "x"}]}', "no assistant message"),
    ('{"messages": [{"role": "user", "content": [{"type": "image", "image": "gone.png"}]}, '
     '{"role": "assistant", "content": "x"}]}', "gone.png"),
])
def test_bad_lines_name_their_line(data, line, message):
    with data.open("a") as f:
        f.write("\n" + line + "\n")  # a blank line (skipped), then the bad one: line 6
    with pytest.raises(DatasetError, match=rf"line 6: .*{message}"):
        load_sft_dataset(data)


def test_corrupt_image_names_its_line(data, processor):
    (data.parent / "images" / "chart.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="line 1: cannot tokenize"):
        tokenize_example(processor, load_sft_dataset(data)[0])


def test_padding_and_batching_do_not_change_the_loss(data, processor):
    """Right padding, and vision inputs concatenated in batch order, are exact."""
    model = HFPolicy.from_pretrained(tiny.cached("vl"))
    examples = load_sft_dataset(data)
    examples[1]["messages"][-1]["content"] += " Counting each box twice to be sure." * 3
    items = [tokenize_example(processor, e) for e in examples[:3]]

    def loss(batch):
        inputs = _collate(batch, model.pad_id, model.image_pad_id, torch.device("cpu"),
                          torch.float32)
        labels = inputs.pop("labels")[:, 1:]
        with torch.no_grad():
            logits = model.model(**inputs).logits[:, :-1]
        keep = labels != IGNORE
        return torch.nn.functional.cross_entropy(logits[keep], labels[keep], reduction="sum")

    assert torch.allclose(loss(items), sum(loss([x]) for x in items), rtol=1e-4)


def test_epochs_count_steps_when_max_steps_is_unset(data, tmp_path):
    cfg = SFTConfig(data_path=str(data), output_dir=str(tmp_path / "e"), num_train_epochs=2,
                    per_device_train_batch_size=3, report_to="none")  # 4 examples: 2 steps/epoch
    history = json.loads((train_sft(cfg) / "trainer.json").read_text())["history"]
    assert [(h["step"], h["epoch"]) for h in history] == [(1, 0), (2, 0), (3, 1), (4, 1)]


def test_training_drops_the_loss_and_the_checkpoint_generates(data, tmp_path):
    cfg = SFTConfig(data_path=str(data), output_dir=str(tmp_path / "run"), learning_rate=3e-3,
                    max_steps=30, per_device_train_batch_size=2, gradient_accumulation_steps=2,
                    logging_steps=5, save_steps=20, report_to=["jsonl"], seed=0)
    final = train_sft(cfg)
    assert final == tmp_path / "run" / "checkpoint-30" == latest_checkpoint(tmp_path / "run")
    history = json.loads((final / "trainer.json").read_text())["history"]
    assert len(history) == 30 and history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert all(h["grad_norm"] > 0 and h["tokens"] > 0 for h in history)
    logged = [json.loads(line) for line in (tmp_path / "run" / "progress.json").open()]
    assert len(logged) == 6 and {"loss", "learning_rate", "grad_norm", "tokens"} <= set(logged[0])
    assert (tmp_path / "run" / "checkpoint-20").is_dir() and (tmp_path / "run" / "metrics.png")\
        .stat().st_size > 0
    assert not list((tmp_path / "run").glob(".tmp-*"))

    policy = HFPolicy.from_pretrained(final)
    example = load_sft_dataset(data)[0]
    conversation = {"messages": example["messages"][:2], "tools": example["tools"]}
    [[completion]] = policy.generate([conversation], sampling=SamplingParams(
        max_new_tokens=8, temperature=1.0, seed=0))
    assert completion.finish_reason != "error" and completion.token_ids


def test_same_seed_same_run(data, tmp_path):
    def run(name):
        cfg = SFTConfig(data_path=str(data), output_dir=str(tmp_path / name), max_steps=3,
                        per_device_train_batch_size=1, learning_rate=1e-3, report_to="none")
        return json.loads((train_sft(cfg) / "trainer.json").read_text())["history"]

    assert run("a") == run("b")


def test_cli_runs_sft_end_to_end(data, tmp_path):
    out = tmp_path / "cli"
    assert cli.main(["sft", "--data-path", str(data), "--model", "", "--max-steps", "2",
                     "--per-device-train-batch-size", "2", "--output-dir", str(out),
                     "--report-to", "none"]) == 0
    assert (out / "checkpoint-2" / "model.safetensors").exists()
    HFPolicy.from_pretrained(out / "checkpoint-2")


def test_text_model_gets_the_same_targets_and_trains(data, tmp_path):
    """A text-only causal LM's tokenizer: images become a note, the targets are unchanged."""
    tok = load_processor(tiny.cached("text"))
    x = tokenize_example(tok, load_sft_dataset(data)[0])
    assert "pixel_values" not in x and "[image" in tok.decode(x["input_ids"])
    assert [tok.decode(x["input_ids"][a:b]) for a, b in spans(x)][1] == \
        "There are 3 boxes. <answer>3</answer>"
    cfg = SFTConfig(data_path=str(data), output_dir=str(tmp_path / "t"), max_steps=2,
                    report_to="none")
    HFPolicy.from_pretrained(train_sft(cfg, policy=str(tiny.cached("text"))))


def test_an_end_of_turn_the_model_wrote_is_learned_once(processor):
    """A turn that ended with EOS (a rollout turn the model closed itself) keeps it as a
    target, and the env's reply does not repeat it, as `HFPolicy.continue_prompt` lays it out;
    a turn cut by a stop string has no end-of-turn target."""
    example = {"tools": None, "messages": [
        {"role": "user", "content": "Hi?"},
        {"role": "assistant", "content": "Hello.\n</think>\n\nNo tool.<|im_end|>"},
        {"role": "user", "content": "Answer?"},
        {"role": "assistant", "content": "Done.\n</think>\n\n<answer>4</answer>"},
    ]}
    x = tokenize_example(processor, example)
    tok = processor.tokenizer
    texts = [tok.decode(x["input_ids"][a:b]) for a, b in spans(x)]
    assert texts == ["Hello.\n</think>\n\nNo tool.<|im_end|>",
                     "Done.\n</think>\n\n<answer>4</answer>"]
    assert tok.decode(x["input_ids"]).count("<|im_end|>") == 3  # turn 1, user, nothing after


def test_structured_tool_calls_are_learned_in_the_configured_format(data, processor, tmp_path):
    tok = processor.tokenizer
    x = tokenize_example(processor, load_sft_dataset(data)[0], tool_call_format="qwen3_coder")
    first = tok.decode(x["input_ids"][slice(*spans(x)[0])])
    assert first == ("Let me zoom in 0.\n</think>\n\n<tool_call>\n<function=crop>\n"
                     "<parameter=bbox>\n[0, 0, 32, 32]\n</parameter>\n</function>\n</tool_call>")
    out = tmp_path / "xml"
    assert cli.main(["sft", "--data-path", str(data), "--model", "", "--max-steps", "1",
                     "--per-device-train-batch-size", "2", "--output-dir", str(out),
                     "--report-to", "none", "--tool-call-format", "qwen3_coder"]) == 0
    assert (out / "checkpoint-1" / "model.safetensors").exists()


def test_a_call_the_format_cannot_write_is_refused_before_training(data, tmp_path):
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[1]["messages"][2]["tool_calls"] = [_call("zoom in", bbox=[0, 0, 1, 1])]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = SFTConfig(data_path=str(data), max_steps=1, output_dir=str(tmp_path / "o"),
                    report_to=["none"], tool_call_format="qwen3_coder")
    with pytest.raises(DatasetError, match="line 2: a tool call cannot be written as "
                       "tool_call_format='qwen3_coder'"):
        train_sft(cfg, "")
