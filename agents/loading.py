"""Turning a model spec into a policy, loading a checkpoint, and encoding conversations for it.

`load_policy(spec)` is the one place a model string becomes a policy, for `axpo train`, `axpo sft`
and `axpo eval` alike. `load_processor` loads a Qwen3-VL processor even where torchvision
(needed by the video processor's class check) is missing; `encode` turns an env observation into
model inputs, the same way for a real Qwen3-VL processor, our tiny one, or a text model's
tokenizer (images then become a short note). torch is imported only where a local model is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from axpo_env.errors import ModelLoadError

if TYPE_CHECKING:
    import torch

TINY = "tiny"
VLLM = "vllm:"  # a spec's prefix: sample with vLLM (agents.vllm_policy)


def is_server(spec: str) -> bool:
    """Whether a model spec is an OpenAI-compatible server's URL."""
    return spec.startswith(("http://", "https://"))


def is_tiny(spec: str) -> bool:
    """Whether a model spec means the embedded tiny model: '' or 'tiny' (a local folder named
    tiny wins over the name)."""
    return spec == "" or spec == TINY and not Path(spec).exists()


def load_policy(spec: str | Path, *, token_level: bool = False, device: str | None = None,
                dtype: Any = None, api_key: str | None = None,
                served_model_name: str | None = None, timeout_s: float = 60.0,
                max_workers: int = 8, vllm_settings: Any = None, **kwargs: Any) -> Any:
    """The policy a model spec names.

    - '' or 'tiny': the embedded tiny Qwen3-VL (`agents.tiny`), built offline; smoke tests only.
    - an http(s) URL: `OpenAIPolicy` on that OpenAI-compatible server (no torch needed), asking
      for `served_model_name` or else the first model its GET /models lists; `api_key` defaults
      to $OPENAI_API_KEY.
    - 'vllm:' + a checkpoint folder, hub name or 'tiny': `VLLMPolicy`, a vLLM engine in this
      process (`vllm_settings`, an `agents.vllm_engine.EngineSettings`); 'vllm:' + the URL of
      a running `python -m agents.vllm_server`: `VLLMPolicy` on it (the processor comes from
      the model path the server reports).
    - anything else: a checkpoint folder or hub name, loaded with `HFPolicy.from_pretrained`
      (`kwargs` go there). `device` "auto" is cuda when available; `dtype` a torch dtype or its
      name, "auto" meaning bfloat16 on a GPU and float32 elsewhere (default float32).

    `token_level=True` (training) refuses a server: RL and SFT need the model's token ids.
    Raises `ModelLoadError` with what to check when nothing loads.
    """
    spec = str(spec)
    if spec.startswith(VLLM):
        return _vllm_policy(spec[len(VLLM):], dtype, timeout_s, vllm_settings)
    if is_server(spec):
        if token_level:
            raise ModelLoadError(f"{spec} is a server URL; training needs a local checkpoint "
                                 "(a folder or hub name) whose token ids it can score")
        from agents.openai import OpenAIPolicy

        key = api_key or os.environ.get("OPENAI_API_KEY")
        name = served_model_name or served_model(spec, key, timeout_s)
        return OpenAIPolicy(spec, model=name, api_key=key, timeout_s=timeout_s,
                            max_workers=max_workers)
    import torch

    from agents import tiny
    from agents.hf import HFPolicy

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else None
    if dtype == "auto":
        dtype = "bfloat16" if device and device.startswith("cuda") else "float32"
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    path = tiny.cached("vl") if is_tiny(spec) else spec
    try:
        return HFPolicy.from_pretrained(path, dtype=dtype, device=device, **kwargs)
    except (OSError, ValueError) as e:  # not a checkpoint folder, nor a valid hub id
        raise ModelLoadError(f"cannot load model {spec!r}: neither a checkpoint folder nor a "
                             f"model id the Hub (or its cache) has ({type(e).__name__}: {e})"
                             ) from None


def _vllm_policy(target: str, dtype: Any, timeout_s: float, settings: Any) -> Any:
    from agents import tiny
    from agents.vllm_engine import EngineSettings, RemoteEngine
    from agents.vllm_policy import VLLMPolicy

    if is_server(target):
        path = RemoteEngine(target, timeout_s=30).info()["model"]
        try:
            return VLLMPolicy.from_server(target, path, timeout_s=max(timeout_s, 600.0))
        except OSError as e:
            raise ModelLoadError(f"the vLLM server at {target} serves {path!r}, whose processor "
                                 f"this machine cannot load ({e})") from None
    settings = settings or EngineSettings()
    if dtype not in (None, "auto"):
        import dataclasses

        settings = dataclasses.replace(settings, dtype=str(dtype).removeprefix("torch."))
    return VLLMPolicy.from_pretrained(tiny.cached("vl") if is_tiny(target) else target, settings)


def load_generation_config(path: str | Path) -> Any:
    """The checkpoint's generation config (its EOS ids), or None where it has none."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(path)
    except OSError:
        return None


def served_model(base_url: str, api_key: str | None, timeout: float) -> str:
    """The first model id a server's GET /models lists (one bounded exchange: a deadline, a size
    cap, same-origin redirects only; see `axpo_env.tools._http.fetch`)."""
    import time

    from axpo_env.text import valid_text
    from axpo_env.tools._http import fetch, new_session, parse_json

    url = f"{base_url.rstrip('/')}/models"
    try:
        reply = fetch(new_session(1), "GET", url, time.monotonic() + min(timeout, 30), 4 << 20,
                      headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
        if reply.status >= 400:
            raise ValueError(f"HTTP {reply.status}")
        return valid_text(str(parse_json(reply.body)["data"][0]["id"]))[:200]
    except Exception as e:
        raise ModelLoadError(f"cannot list the models served at {url} ({type(e).__name__}: "
                             f"{e}); check the URL (it usually ends in /v1) or pass "
                             "--served-model-name") from None


def load_processor(path: str | Path, **kwargs: Any) -> Any:
    """The processor for a checkpoint dir: Qwen3-VL's processor if the dir has image
    preprocessing files, else its tokenizer. With torchvision this is plain AutoProcessor; without
    it, Qwen3VLProcessor with the video-processor class check relaxed. Works the same for our tiny
    dirs and real Qwen3-VL checkpoints."""
    from transformers import AutoProcessor, AutoTokenizer

    from agents.torchvision_free import has_torchvision, processor_class

    path = Path(path)
    if not any((path / f).exists() for f in ("preprocessor_config.json", "processor_config.json")):
        return AutoTokenizer.from_pretrained(path, **kwargs)
    if has_torchvision():
        return AutoProcessor.from_pretrained(path, **kwargs)
    return processor_class().from_pretrained(path, **kwargs)


def load_model(path: str | Path, **kwargs: Any) -> Any:
    """The model in `path`, by its config: image-text-to-text for VL models, else causal LM."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(path)
    is_vl = getattr(config, "vision_config", None) is not None
    auto = AutoModelForImageTextToText if is_vl else AutoModelForCausalLM
    return auto.from_pretrained(path, **kwargs)


def encode(
    processor_or_tokenizer: Any,
    messages: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    tools: Sequence[Mapping[str, Any]] | None = None,
    add_generation_prompt: bool = True,
) -> dict[str, torch.Tensor]:
    """Model inputs (batch of one) for a conversation, through the chat template.

    `messages` may also be an env observation ({"messages", "tools"}). With a processor that has
    an image processor (real Qwen3-VL or ours) the result has input_ids, attention_mask and, when
    there are images, pixel_values, image_grid_thw and mm_token_type_ids (1 on image pads); each
    `<|image_pad|>` is expanded to grid_thw.prod() // merge_size**2 copies. With a bare tokenizer
    (text-only model) image parts become a short note and content one string. Special-token
    strings inside system, user and tool text stay plain text (see `agents.chat_encoding`).
    """
    if isinstance(messages, Mapping):
        tools = tools if tools is not None else (messages.get("tools") or None)
        messages = messages["messages"]
    from agents.chat_encoding import ChatEncoder

    return ChatEncoder(processor_or_tokenizer).encode_messages(messages, tools,
                                                               add_generation_prompt)


def normalize_message(message: Mapping[str, Any], keep_images: bool) -> dict[str, Any]:
    """A plain-dict copy of a message; image parts become {"type": "image", "image": PIL}
    (an "image"/"url"/"path" that is not a PIL image goes through transformers' load_image)."""
    from PIL import Image
    from transformers.image_utils import load_image

    def image_of(part: Mapping[str, Any]) -> Image.Image:
        img = part.get("image", part.get("url", part.get("path")))
        return img if isinstance(img, Image.Image) else load_image(img)

    out = dict(message)
    content = message.get("content")
    if content is None:
        out["content"] = ""
    elif not isinstance(content, str):
        parts = []
        for p in content:
            if not (p.get("type") == "image" or "image" in p):
                parts.append(dict(p))
            elif keep_images:
                parts.append({"type": "image", "image": image_of(p)})
            else:  # a text-only model is told an image was there, not shown it
                img = p.get("image")
                size = f" {img.width}x{img.height}" if isinstance(img, Image.Image) else ""
                parts.append({"type": "text", "text": f"[image{size}: not shown, this model "
                                                      "reads text only]"})
        out["content"] = parts
    return out
