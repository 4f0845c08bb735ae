"""Turning a model spec into a policy: the one place a model string becomes one, for `axpo
train`, `axpo sft` and `axpo eval` alike.

This module sits above the policies it makes (`agents.hf`, `agents.openai`, `agents.vllm_policy`);
what they load a checkpoint with is `agents.pretrained`, below them. torch is imported only where
a local model is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from axpo_env.errors import ModelLoadError

TINY = "tiny"
VLLM = "vllm:"  # a spec's prefix: sample with vLLM (agents.vllm_policy)
ADAPTER_CONFIG = "adapter_config.json"  # a LoRA run's checkpoint (algorithms.lora)


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
                max_workers: int = 8, vllm_settings: Any = None,
                render_tools: bool | None = None, tool_call_format: str = "hermes",
                **kwargs: Any) -> Any:
    """The policy a model spec names.

    - '' or 'tiny': the embedded tiny Qwen3-VL (`agents.tiny`), built offline; smoke tests only.
    - an http(s) URL: `OpenAIPolicy` on that OpenAI-compatible server (no torch needed), asking
      for `served_model_name` or else the first model its GET /models lists; `api_key` defaults
      to $OPENAI_API_KEY.
    - 'vllm:' + a checkpoint folder, hub name or 'tiny': `VLLMPolicy`, a vLLM engine in this
      process (`vllm_settings`, an `agents.vllm_engine.EngineSettings`); 'vllm:' + the URL of
      a running `python -m agents.vllm_server`: `VLLMPolicy` on it (the processor comes from
      the model path the server reports).
    - a LoRA run's checkpoint (an adapter folder): its base model, loaded by the spec the
      adapter records, with the adapter merged in.
    - anything else: a checkpoint folder or hub name, loaded with `HFPolicy.from_pretrained`
      (`kwargs` go there). `device` "auto" is cuda when available; `dtype` a torch dtype or its
      name, "auto" meaning bfloat16 on a GPU and float32 elsewhere (default float32).

    `render_tools` (a local or vLLM model): whether prompts carry the tool schemas; None: as
    the checkpoint records (`axpo sft`/`axpo train` write it), else True. `tool_call_format`
    (a server): the env's, for `OpenAIPolicy`'s native tool calls; a local model's output is
    the env's to read, so it does not apply there. `token_level=True`
    (training) refuses a server: RL and SFT need the model's token ids.
    Raises `ModelLoadError` with what to check when nothing loads.
    """
    spec = str(spec)
    if spec.startswith(VLLM):
        return _vllm_policy(spec[len(VLLM):], dtype, timeout_s, vllm_settings, render_tools)
    if is_server(spec):
        if token_level:
            raise ModelLoadError(f"{spec} is a server URL; training needs a local checkpoint "
                                 "(a folder or hub name) whose token ids it can score")
        from agents.openai import OpenAIPolicy

        key = api_key or os.environ.get("OPENAI_API_KEY")
        name = served_model_name or served_model(spec, key, timeout_s)
        return OpenAIPolicy(spec, model=name, api_key=key, timeout_s=timeout_s,
                            max_workers=max_workers, tool_call_format=tool_call_format)
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
    if (Path(path) / ADAPTER_CONFIG).is_file():
        return _merged_adapter(Path(path), dtype, device, render_tools, **kwargs)
    try:
        return HFPolicy.from_pretrained(path, dtype=dtype, device=device,
                                        render_tools=render_tools, **kwargs)
    except (OSError, ValueError) as e:  # not a checkpoint folder, nor a valid hub id
        raise ModelLoadError(f"cannot load model {spec!r}: neither a checkpoint folder nor a "
                             f"model id the Hub (or its cache) has ({type(e).__name__}: {e})"
                             ) from None


def _merged_adapter(folder: Path, dtype: Any, device: str | None, render_tools: bool | None,
                    **kwargs: Any) -> Any:
    """A LoRA run's checkpoint (`algorithms.lora`): its base model, loaded by the spec the
    adapter records, with the adapter merged in; the checkpoint's processor and prompt
    settings."""
    import json

    from agents import pretrained
    from agents.hf import HFPolicy

    try:
        base = json.loads((folder / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
        from peft import PeftModel
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelLoadError(f"cannot load the LoRA adapter in {folder}: unreadable "
                             f"{ADAPTER_CONFIG} ({type(e).__name__}: {e})") from None
    except ImportError:
        raise ModelLoadError(f"{folder} holds a LoRA adapter; loading it needs peft (pip "
                             "install peft, or the axpo[train] extra)") from None
    model = load_policy(base, dtype=dtype, device=device, **kwargs).model
    try:
        model = PeftModel.from_pretrained(model, folder).merge_and_unload()
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise ModelLoadError(f"the LoRA adapter in {folder} does not fit its base {base!r} "
                             f"({type(e).__name__}: {e})") from None
    if render_tools is None:
        render_tools = pretrained.recorded_render_tools(folder)
    return HFPolicy(model, pretrained.load_processor(folder), render_tools=render_tools,
                    max_context=kwargs.get("max_context"))


def _vllm_policy(target: str, dtype: Any, timeout_s: float, settings: Any,
                 render_tools: bool | None) -> Any:
    from agents import tiny
    from agents.vllm_engine import EngineSettings, RemoteEngine
    from agents.vllm_policy import VLLMPolicy

    if is_server(target):
        path = RemoteEngine(target, timeout_s=30).info()["model"]
        try:
            return VLLMPolicy.from_server(target, path, timeout_s=max(timeout_s, 600.0),
                                          render_tools=render_tools)
        except OSError as e:
            raise ModelLoadError(f"the vLLM server at {target} serves {path!r}, whose processor "
                                 f"this machine cannot load ({e})") from None
    settings = settings or EngineSettings()
    if dtype not in (None, "auto"):
        import dataclasses

        settings = dataclasses.replace(settings, dtype=str(dtype).removeprefix("torch."))
    return VLLMPolicy.from_pretrained(tiny.cached("vl") if is_tiny(target) else target, settings,
                                      render_tools)


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
