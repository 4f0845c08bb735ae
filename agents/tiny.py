"""Tiny Qwen3-VL / Qwen3 checkpoints built offline, for tests and the embedded defaults.

Tests and examples need a real `from_pretrained` checkpoint without downloads: `build` trains a
byte-level BPE tokenizer on an embedded corpus in well under a second, gives it a chat template
with the structure of Qwen3-VL-Thinking's, builds a seeded 1-5M-parameter model from a config and
saves everything with `save_pretrained`, so every consumer goes through `agents.pretrained`, the
real `from_pretrained` path.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from agents.torchvision_free import processor_class, video_processor

#: Qwen's special tokens, in Qwen's order (they follow the BPE vocabulary, as in Qwen).
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
#: Added (non-special) tokens: one token each, and kept when decoding with skip_special_tokens.
ADDED_TOKENS = (
    "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>",
)
#: Qwen2/3's pre-tokenizer split: contractions, letter runs, single digits, punctuation, spaces.
_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# The structure of Qwen3-VL-*-Thinking's template (image/video parts, tools in the system prompt,
# tool results in <tool_response> inside one user turn, reasoning kept only after the last real
# user query, generation prompt opening <think>), written out with plainer Jinja.
CHAT_TEMPLATE = r"""
{%- set image_count = namespace(value=0) %}
{%- set video_count = namespace(value=0) %}
{%- macro render_content(content, do_vision_count) %}
{%- if content is string %}{{- content }}
{%- else %}{%- for item in content %}
{%- if item.type == 'image' or 'image' in item or 'image_url' in item %}
{%- if do_vision_count %}{%- set image_count.value = image_count.value + 1 %}{%- endif %}
{%- if add_vision_id %}{{- 'Picture ' ~ image_count.value ~ ': ' }}{%- endif %}
{{- '<|vision_start|><|image_pad|><|vision_end|>' }}
{%- elif item.type == 'video' or 'video' in item %}
{%- if do_vision_count %}{%- set video_count.value = video_count.value + 1 %}{%- endif %}
{%- if add_vision_id %}{{- 'Video ' ~ video_count.value ~ ': ' }}{%- endif %}
{{- '<|vision_start|><|video_pad|><|vision_end|>' }}
{%- elif 'text' in item %}{{- item.text }}
{%- endif %}
{%- endfor %}{%- endif %}
{%- endmacro %}
{%- if tools %}
{{- '<|im_start|>system\n' }}
{%- if messages[0].role == 'system' %}{{- render_content(messages[0].content, false) + '\n\n' }}
{%- endif %}
{{- '# Tools\n\nYou may call one or more functions to assist with the user query.\n\n' }}
{{- 'You are provided with function signatures within <tools></tools> XML tags:\n<tools>' }}
{%- for tool in tools %}{{- '\n' + (tool | tojson) }}{%- endfor %}
{{- '\n</tools>\n\nFor each function call, return a json object with function name and arguments'
    ' within <tool_call></tool_call> XML tags:\n<tool_call>\n'
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\n' + render_content(messages[0].content, false) + '<|im_end|>\n' }}
{%- endif %}
{%- set ns = namespace(last_query_index=messages|length - 1) %}
{%- for message in messages %}
{%- if message.role == 'user' %}
{%- set content = render_content(message.content, false) %}
{%- if not (content.startswith('<tool_response>') and content.endswith('</tool_response>')) %}
{%- set ns.last_query_index = loop.index0 %}
{%- endif %}
{%- endif %}
{%- endfor %}
{%- for message in messages %}
{%- set content = render_content(message.content, true) %}
{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}
{{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>\n' }}
{%- elif message.role == 'assistant' %}
{%- set reasoning_content = '' %}
{%- if message.reasoning_content is string %}
{%- set reasoning_content = message.reasoning_content %}
{%- elif '</think>' in content %}
{%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1]
    .lstrip('\n') %}
{%- set content = content.split('</think>')[-1].lstrip('\n') %}
{%- endif %}
{%- if loop.index0 > ns.last_query_index and (loop.last or reasoning_content) %}
{{- '<|im_start|>assistant\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n'
    + content.lstrip('\n') }}
{%- else %}
{{- '<|im_start|>assistant\n' + content }}
{%- endif %}
{%- for tool_call in message.tool_calls or [] %}
{%- if not loop.first or content %}{{- '\n' }}{%- endif %}
{%- if tool_call.function %}{%- set tool_call = tool_call.function %}{%- endif %}
{{- '<tool_call>\n{"name": "' + tool_call.name + '", "arguments": ' }}
{%- if tool_call.arguments is string %}{{- tool_call.arguments }}
{%- else %}{{- tool_call.arguments | tojson }}{%- endif %}
{{- '}\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>\n' }}
{%- elif message.role == 'tool' %}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}
{%- endif %}
{{- '\n<tool_response>\n' + content + '\n</tool_response>' }}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\n' }}{%- endif %}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n<think>\n' }}{%- endif %}
""".strip()

_CORPUS = r"""
You are a helpful assistant. Answer the question about the image. Think step by step.
What is the value of x in the figure? Give your final answer inside <answer></answer>.
Which option is correct? Choices: (A) 12 (B) 15 (C) 18 (D) 21. The answer is B.
The triangle has sides 3, 4 and 5, so its area is 3 * 4 / 2 = 6 square units.
How many objects are left after you subtract all the red cubes? There are 7 objects left.
Let me zoom into the top left corner of the image to read the small text.
The chart shows sales of 120, 245.5 and 310 units in 2019, 2020 and 2021.
Find the sum: 17 + 25 = 42. The product is 6 * 7 = 42. The square root of 144 is 12.
The image shows a bar chart, a table, a red car, a small dog and a blue sign.
I need to compute the answer with Python first, then check it with the calculator.
Okay, so the question asks for the difference between the largest and smallest values.
Wait, that does not look right. Let me check the labels on the horizontal axis again.
In the right triangle, the hypotenuse is 10 and one leg is 6, so the other leg is 8.
Angle ABC is 90 degrees and angle BCA is 35 degrees, hence angle CAB is 55 degrees.
Hint: Please answer the question and provide the correct option letter at the end.
Question: Is the number of green buses greater than the number of purple motorbikes?
The person on the left is wearing a white shirt, a black hat and brown shoes.
<answer>42</answer> <answer>B</answer> <answer>3.14</answer> <answer>red</answer>
<tool_response>
Cropped region 128x96 (image index 1). Result: 14.142135623730951. Error: unknown tool.
</tool_response>
<tool_response>
1. Eiffel Tower: a wrought iron lattice tower in Paris, 330 metres tall. url: https://example.org
Error: the tool 'python' failed: ZeroDivisionError: division by zero
</tool_response>
# Tools
You may call one or more functions to assist with the user query.
You are provided with function signatures within <tools></tools> XML tags:
For each function call, return a json object with function name and arguments within
<tool_call></tool_call> XML tags: {"name": <function-name>, "arguments": <args-json-object>}
0 1 2 3 4 5 6 7 8 9 10 100 1000 0.5 -1 2.75 1e-3 3/4 50% $12.99 (x, y) [1, 2, 3]
for i in range(10):
    print(i ** 2 + 2 * i, np.array([[1, 2], [3, 4]]).mean(axis=0))
The quick brown fox jumps over the lazy dog. Question: what color is the bus? Hint: look left.
"""
#: (name, description, {argument: (json type, example)}): tool schemas and calls for the corpus.
_TOOLS = (
    ("crop", "Crop a region of an image and zoom in on it, to read small text.",
     {"bbox": ("array", [0, 0, 128, 96]), "image_index": ("integer", 0),
      "normalized": ("boolean", True)}),
    ("python", "Run Python code in a persistent session. Use print() to see output.",
     {"code": ("string", "import math\nprint(math.sqrt(2) * 10)")}),
    ("calculator", "Evaluate a math expression exactly with sympy.",
     {"expression": ("string", "solve(x**2 - 4, x) + (3 + 4) * 5 / 2")}),
    ("search", "Search an encyclopedia for facts.",
     {"query": ("string", "tallest building in the world"), "top_k": ("integer", 3)}),
)
_NOUNS = ("apples", "books", "cars", "birds", "students", "coins", "boxes", "flowers", "trees",
          "people", "bottles", "cookies", "pencils", "houses", "chairs", "planes", "shapes",
          "circles", "squares", "triangles", "marbles", "tickets", "stamps", "bridges", "towers")
_VERBS = ("has", "buys", "sells", "finds", "loses", "gives away", "collects", "counts", "paints",
          "draws", "measures", "orders", "borrows", "returns", "removes", "adds", "sees")


def _corpus() -> list[str]:
    """The embedded text, tool schemas and calls as templates render them, and word problems."""
    lines = _CORPUS.strip().splitlines()
    for name, doc, args in _TOOLS:
        props = {k: {"type": t, "description": f"The {k}."} for k, (t, _) in args.items()}
        lines.append(json.dumps({"type": "function", "function": {
            "name": name, "description": doc, "parameters": {
                "type": "object", "properties": props, "required": list(args)[:1]}}}))
        call = {"name": name, "arguments": {k: v for k, (_, v) in args.items()}}
        lines.append(f"<tool_call>\n{json.dumps(call)}\n</tool_call>")
    for i, noun in enumerate(_NOUNS):
        for j, verb in enumerate(_VERBS):
            a, b = 3 + i * 7 % 19, 2 + j * 5 % 13
            lines.append(f"Anna {verb} {a} {noun} and Ben {verb} {b} more {noun}. How many "
                         f"{noun} in total? {a} + {b} = {a + b}. <answer>{a + b}</answer>")
    return lines * 3 + ["\n".join(lines)] * 3


def _train_tokenizer(vocab_size: int, corpus: Sequence[str] = ()) -> Any:
    """A byte-level BPE with Qwen's pre-tokenizer split, special tokens appended after the vocab;
    `corpus` lines are learned beside the embedded ones."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus() + list(corpus) * 3, trainer=trainer)
    return tok


def build_tokenizer(vocab_size: int = 1536, corpus: Sequence[str] = ()) -> Any:
    """A `PreTrainedTokenizerFast` with Qwen's special tokens, eos/pad and the chat template;
    `corpus`: text of the task to come (e.g. its demonstrations), so its words and numbers get
    tokens of their own: shorter sequences, and a number is one decision, not several."""
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    tok = _train_tokenizer(vocab_size, corpus)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ADDED_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token=None, bos_token=None, model_max_length=32768, padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _image_processor(min_pixels: int, max_pixels: int) -> Any:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    # Qwen3-VL's preprocessing: 16-pixel patches, 2x2 merge, mean/std 0.5.
    return Qwen2VLImageProcessorPil(
        patch_size=16, temporal_patch_size=2, merge_size=2, image_mean=[0.5] * 3,
        image_std=[0.5] * 3, size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
    )


#: Both kinds' text tower: 4 layers, 128 wide, GQA 4/2 heads of 32.
_TEXT_SIZES = {"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 4,
               "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
               "max_position_embeddings": 8192, "rms_norm_eps": 1e-6}


def _vl_config(tok: Any, **overrides: Any) -> Any:
    from transformers import Qwen3VLConfig

    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = {
        **_TEXT_SIZES, "vocab_size": len(tok),
        # mrope_section sums to head_dim / 2 (Qwen3-VL: [24, 20, 20] for head_dim 128).
        "rope_parameters": {"rope_type": "default", "rope_theta": 5_000_000.0,
                            "mrope_section": [6, 5, 5], "mrope_interleaved": True},
        "pad_token_id": ids["<|endoftext|>"], "eos_token_id": tok.eos_token_id,
        "bos_token_id": ids["<|endoftext|>"],
    }
    vision = {
        "depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 4,
        "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
        "out_hidden_size": 128, "num_position_embeddings": 256,
        "deepstack_visual_indexes": [0, 1], "hidden_act": "gelu_pytorch_tanh",
    }
    text.update(overrides.pop("text_config", {}))
    vision.update(overrides.pop("vision_config", {}))
    return Qwen3VLConfig(
        text_config=text, vision_config=vision, tie_word_embeddings=False,
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        **overrides,
    )


def _text_config(tok: Any, **overrides: Any) -> Any:
    from transformers import Qwen3Config

    pad = tok.convert_tokens_to_ids("<|endoftext|>")
    return Qwen3Config(**{**_TEXT_SIZES, "vocab_size": len(tok), "tie_word_embeddings": False,
                          "pad_token_id": pad, "bos_token_id": pad,
                          "eos_token_id": tok.eos_token_id, **overrides})


def build(
    path: str | Path,
    kind: Literal["vl", "text"] = "vl",
    seed: int = 0,
    vocab_size: int = 1536,
    min_pixels: int = 32 * 32,
    max_pixels: int = 128 * 128,
    chat_template: str | None = None,
    corpus: Sequence[str] = (),
    **config_overrides: Any,
) -> Path:
    """Write a tiny seeded checkpoint to `path` and return it.

    "vl": Qwen3VLForConditionalGeneration (~1.6M params) + tokenizer + Qwen3-VL processor files;
    "text": Qwen3ForCausalLM (~1.1M params) + the same tokenizer. `min_pixels`/`max_pixels`
    bound the image area (64x64 -> 4 image tokens). `chat_template`: Jinja text to ship instead
    of the embedded one (e.g. a real Qwen template, to test against it). `corpus`: extra text the
    tokenizer learns (see `build_tokenizer`). `config_overrides` go
    to the config
    (`text_config=` / `vision_config=` dicts update the VL towers). Same seed, same weights.
    """
    from transformers import GenerationConfig, Qwen3ForCausalLM, Qwen3VLForConditionalGeneration

    if kind not in ("vl", "text"):
        raise ValueError(f"kind must be 'vl' or 'text', got {kind!r}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(vocab_size, corpus)
    template = chat_template or CHAT_TEMPLATE
    tok.chat_template = template
    if kind == "vl":
        config, model_cls = _vl_config(tok, **config_overrides), Qwen3VLForConditionalGeneration
    else:
        config, model_cls = _text_config(tok, **config_overrides), Qwen3ForCausalLM
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(seed)
        model = model_cls(config).eval()
    pad = tok.convert_tokens_to_ids("<|endoftext|>")
    model.generation_config = GenerationConfig(
        eos_token_id=[tok.eos_token_id, pad], pad_token_id=pad, bos_token_id=pad)
    model.save_pretrained(path)
    if kind == "vl":
        processor = processor_class()(
            image_processor=_image_processor(min_pixels, max_pixels), tokenizer=tok,
            video_processor=video_processor(), chat_template=template)
        processor.save_pretrained(path)
    else:
        tok.save_pretrained(path)
    return path


_CACHE: dict[tuple, Path] = {}
_LEFTOVER = re.compile(r"axpo-tiny-(?:vl|text)-(\d+)-\w+")


def cached(kind: Literal["vl", "text"] = "vl", seed: int = 0,
           chat_template: str | None = None) -> Path:
    """`build` once per process into a temp dir (removed at exit); tests call this a lot.
    The dir is named with our pid, and the first call removes the dirs of processes that were
    killed before their exit handler ran."""
    key = (kind, seed, chat_template)
    if not _CACHE:
        _remove_leftovers(Path(tempfile.gettempdir()))
    if key not in _CACHE or not (_CACHE[key] / "config.json").exists():
        root = Path(tempfile.mkdtemp(prefix=f"axpo-tiny-{kind}-{os.getpid()}-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _CACHE[key] = build(root, kind=kind, seed=seed, chat_template=chat_template)
    return _CACHE[key]


def _remove_leftovers(parent: Path) -> None:
    for entry in parent.glob("axpo-tiny-*"):
        m = _LEFTOVER.fullmatch(entry.name)
        if m and entry.is_dir() and not entry.is_symlink() and not _alive(int(m.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, not ours to signal
        return True
    return True
