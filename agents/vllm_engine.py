"""A vLLM engine that samples token-id prompts and takes new weights: in this process or a server.

`LocalEngine` holds a `vllm.LLM` in the calling process (the trainer's, for `vllm_mode=
"colocate"`, as TRL does): weights are loaded into it straight from the trainer's tensors.
`RemoteEngine` speaks to `python -m agents.vllm_server` (`vllm_mode="server"`) over HTTP, with
the same two calls. `agents.vllm_policy.VLLMPolicy` sits on either.

The wire format is plain JSON, the same in both: a request is
`{"ids": [...], "images": [PIL or PNG bytes], "n": k, "seed": s}` with ONE `<|image_pad|>` per
image (vLLM expands it; ids it returned, fed back, would be expanded again), and a sample is
`{"token_ids", "logprobs", "entropies", "finish_reason", "prompt_token_ids"}`.

Logprobs are of the distribution sampled from (`logprobs_mode="processed_logprobs"`: after
temperature, top-k and top-p), as `HFPolicy` records them. vLLM reports no entropy: it is
estimated from the `entropy_top_k` most likely tokens, the remaining mass spread evenly over the
rest of the vocabulary (exact where the top k hold all the mass, e.g. under top-p; an upper
bound otherwise).
"""

from __future__ import annotations

import base64
import contextlib
import io
import math
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from axpo_env.errors import ModelLoadError


class EngineError(RuntimeError):
    """The engine failed as a whole (not one prompt): down, died, or answered nonsense."""


@dataclass(frozen=True)
class EngineSettings:
    """How to start a vLLM engine (names follow TRL's `vllm_*` fields where they mean the same).

    dtype "auto": bfloat16 on a GPU, float32 on CPU (vLLM's CPU kernels in float32 match a
    transformers forward pass to ~1e-6; in bfloat16 to ~5e-3). `max_model_len` None: the model's
    own, at most 32768. `gpu_memory_utilization` applies on a GPU; on CPU the KV cache takes
    `cpu_kv_cache_gib` GiB (vLLM's VLLM_CPU_KVCACHE_SPACE, unless already set).
    """

    dtype: str = "auto"
    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.3
    cpu_kv_cache_gib: int = 1
    max_num_seqs: int = 64
    max_images_per_prompt: int = 8
    enable_prefix_caching: bool = True
    enable_sleep_mode: bool = False
    enforce_eager: bool = True
    entropy_top_k: int = 20
    seed: int = 0


def _cause(e: BaseException) -> str:
    """An exception in one line: its type and the last line of its message."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[-1] if text else ''}"


def _on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _prepare_process(settings: EngineSettings) -> None:
    """Environment every vLLM process of ours needs: the engine in this process (weights load
    from our tensors), the no-torchvision processor here and in vLLM's helper processes."""
    from agents.torchvision_free import child_env, install

    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    # The engine shares this process with the trainer: pinning OpenMP threads to cores (vLLM's
    # CPU default) would pin the trainer too and make torch.set_num_threads a no-op.
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(settings.cpu_kv_cache_gib))
    os.environ.update(child_env())
    install()


@contextlib.contextmanager
def _hidden_from_kernel_scan() -> Iterator[None]:
    """Hide llvmlite's ffi module while vLLM starts in this process.

    vLLM's CPU worker (0.32) rebinds its Triton kernels by scanning every loaded module's
    namespace and calling `vars(value).get`; llvmlite's `ffi.lib`, loaded with numba (bm25s, the
    search tool's index, imports it), answers `vars` with a C-function wrapper and the engine
    dies at start. The scan has nothing to find there.
    """
    hidden = {k: sys.modules.pop(k) for k in ("llvmlite.binding.ffi",) if k in sys.modules}
    try:
        yield
    finally:
        sys.modules.update(hidden)


class LocalEngine:
    """A `vllm.LLM` in this process. Raises `ModelLoadError` naming the cause when vLLM is not
    installed or cannot load the model."""

    def __init__(self, path: str | Path, settings: EngineSettings | None = None):
        self.settings = settings = settings or EngineSettings()
        self.path = str(path)
        _prepare_process(settings)
        try:
            import vllm
        except ImportError as e:
            raise ModelLoadError(
                f"vLLM is not installed ({e}); on a GPU `pip install axpo[vllm]`, on CPU "
                "`bash scripts/setup.sh --vllm` (see README, 'Rollouts on vLLM')") from None
        dtype = settings.dtype
        if dtype == "auto":
            dtype = "bfloat16" if _on_gpu() else "float32"
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(self.path)
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"cannot load model {self.path!r} into vLLM: no config "
                                 f"({type(e).__name__}: {e})") from None
        text = getattr(config, "text_config", config)
        self.is_vision = getattr(config, "vision_config", None) is not None
        self.max_model_len = settings.max_model_len or min(
            int(getattr(text, "max_position_embeddings", 0) or 32768), 32768)
        self.vocab_size = int(getattr(text, "vocab_size", 0) or 0)
        extra: dict[str, Any] = {}
        if self.is_vision:
            extra["limit_mm_per_prompt"] = {"image": settings.max_images_per_prompt, "video": 0}
        if not _on_gpu():
            # vLLM's CPU build crashes on a seeded request whose prefill is split across steps
            # ("CPU Generator does not use offset"): schedule every prompt's prefill whole.
            extra["enable_chunked_prefill"] = False
            extra["max_num_batched_tokens"] = max(self.max_model_len, 8192)
        if _on_gpu():
            extra["gpu_memory_utilization"] = settings.gpu_memory_utilization
            extra["enable_sleep_mode"] = settings.enable_sleep_mode
        import random

        import numpy as np
        import torch

        set_num_threads = torch.set_num_threads  # vLLM's CPU worker replaces it with a no-op
        # vLLM seeds the process's global RNGs with its own seed; the caller's draws go on
        # as if no engine had started
        rng = random.getstate(), np.random.get_state(), torch.get_rng_state()
        try:
            with _hidden_from_kernel_scan():
                self.llm = vllm.LLM(
                    model=self.path, dtype=dtype, max_model_len=self.max_model_len,
                    seed=settings.seed, enforce_eager=settings.enforce_eager,
                    enable_prefix_caching=settings.enable_prefix_caching,
                    max_num_seqs=settings.max_num_seqs, logprobs_mode="processed_logprobs",
                    distributed_executor_backend="uni", **extra)
        except Exception as e:
            raise ModelLoadError(f"vLLM cannot load {self.path!r}: {_cause(e)}") from e
        finally:
            if os.environ.get("VLLM_CPU_OMP_THREADS_BIND") == "nobind":
                torch.set_num_threads = set_num_threads
            random.setstate(rng[0])
            np.random.set_state(rng[1])
            torch.set_rng_state(rng[2])
        self.asleep = False

    def info(self) -> dict[str, Any]:
        return {"model": self.path, "max_model_len": self.max_model_len,
                "is_vision": self.is_vision, **{"settings": asdict(self.settings)}}

    def generate(self, requests: Sequence[Mapping[str, Any]], sampling: Mapping[str, Any]
                 ) -> list[list[dict[str, Any]]]:
        """For each request, its `n` samples (see the module docstring)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        self.wake_up()
        prompts, params, owner = [], [], []
        for r, request in enumerate(requests):
            data = {"image": [_image(x) for x in request.get("images", ())]} \
                if request.get("images") else None
            prompt = TokensPrompt(prompt_token_ids=list(request["ids"]))
            if data:
                prompt["multi_modal_data"] = data
            for k in range(int(request.get("n", 1))):
                seed = request.get("seed")
                prompts.append(prompt)
                params.append(SamplingParams(
                    n=1, max_tokens=int(sampling["max_new_tokens"]),
                    temperature=float(sampling["temperature"]), top_p=float(sampling["top_p"]),
                    top_k=int(sampling["top_k"] or 0), stop=list(sampling["stop"]) or None,
                    stop_token_ids=list(sampling.get("stop_token_ids") or []) or None,
                    include_stop_str_in_output=True, skip_special_tokens=False,
                    logprobs=self.settings.entropy_top_k,
                    seed=None if seed is None else (int(seed) + k) % (2 ** 63)))
                owner.append(r)
        try:
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
        except Exception as e:  # vLLM fails a whole batch; the caller cannot retry one request
            raise EngineError(f"vLLM engine for {self.path!r} failed: {_cause(e)}") from e
        results: list[list[dict[str, Any]]] = [[] for _ in requests]
        for r, out in zip(owner, outputs):
            results[r].append(self._sample(out))
        return results

    def _sample(self, out: Any) -> dict[str, Any]:
        c = out.outputs[0]
        ids = list(c.token_ids)
        logprobs, entropies = [], []
        for t, ranked in zip(ids, c.logprobs or []):
            logprobs.append(float(ranked[t].logprob))
            entropies.append(_entropy([v.logprob for v in ranked.values()], self.vocab_size))
        return {"token_ids": ids, "logprobs": logprobs, "entropies": entropies,
                "finish_reason": c.finish_reason or "stop",
                "prompt_token_ids": list(out.prompt_token_ids or [])}

    def update_weights(self, named: Iterable[tuple[str, Any]]) -> None:
        """Load new weights (checkpoint names, e.g. a transformers `state_dict()`) in place and
        drop every cache the old weights computed: prefix (KV) and image encoder outputs. The
        worker's reload clears its own multimodal caches, so the processor-side and scheduler-
        side ones are cleared too (left alone, the next request with a seen image fails with
        'Encoder cache miss')."""
        self.wake_up()
        try:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": list(named)})
        except Exception as e:
            raise EngineError(f"vLLM engine for {self.path!r} could not load the new weights: "
                              f"{_cause(e)}") from e
        self.llm.reset_mm_cache()
        self.llm.llm_engine.reset_encoder_cache()
        self.llm.reset_prefix_cache()

    def sleep(self) -> None:
        """Free the GPU memory of weights and KV cache between rollouts (sleep mode; GPU only)."""
        if self.settings.enable_sleep_mode and _on_gpu() and not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True

    def wake_up(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            shutdown = getattr(engine, "shutdown", None)
            if callable(shutdown):
                shutdown()
            del llm


def _entropy(logprobs: Sequence[float], vocab_size: int) -> float:
    """Entropy of a distribution known by its top logprobs; the rest of the mass is spread
    evenly over the `vocab_size - len(logprobs)` other tokens."""
    ps = [math.exp(x) for x in logprobs if x > -math.inf]
    h = -sum(p * math.log(p) for p in ps if p > 0)
    rest, others = max(0.0, 1.0 - sum(ps)), vocab_size - len(logprobs)
    if rest > 1e-12 and others > 0:
        h -= rest * math.log(rest / others)
    return h


def _image(x: Any) -> Any:
    """A PIL image from a PIL image or PNG/JPEG bytes (or their base64 text)."""
    from PIL import Image

    if isinstance(x, Image.Image):
        return x.convert("RGB")
    if isinstance(x, str):
        x = base64.b64decode(x)
    return Image.open(io.BytesIO(x)).convert("RGB")


def png_base64(image: Any) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


class RemoteEngine:
    """The client of `python -m agents.vllm_server`: the same calls as `LocalEngine`, over HTTP.
    Every failure of the server as a whole (down, too slow, a wrong answer) is an
    `EngineError` naming the URL and the cause."""

    def __init__(self, base_url: str, timeout_s: float = 600.0):
        from axpo_env.tools._http import new_session

        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = new_session(2)
        self.settings_seen = self._call("GET", "/health", timeout=30)
        self.max_model_len = int(self.settings_seen["max_model_len"])
        self.is_vision = bool(self.settings_seen["is_vision"])

    def _call(self, method: str, path: str, payload: Any = None, timeout: float | None = None
              ) -> Any:
        import time

        from axpo_env.tools._http import HTTPProblem, fetch, parse_json

        url = self.base_url + path
        try:
            reply = fetch(self.session, method, url, time.monotonic() + (timeout or
                          self.timeout_s), 512 << 20, json=payload)
            body = parse_json(reply.body)
        except HTTPProblem as e:
            raise EngineError(f"vLLM server {url}: {e}") from None
        except ValueError as e:
            raise EngineError(f"vLLM server {url} answered something that is not JSON "
                              f"({e})") from None
        if reply.status >= 400:
            detail = body.get("detail", body) if isinstance(body, dict) else body
            raise EngineError(f"vLLM server {url}: HTTP {reply.status}: {str(detail)[:500]}")
        return body

    def info(self) -> dict[str, Any]:
        return dict(self.settings_seen)

    def generate(self, requests: Sequence[Mapping[str, Any]], sampling: Mapping[str, Any]
                 ) -> list[list[dict[str, Any]]]:
        wire = [{**r, "images": [x if isinstance(x, str) else png_base64(x)
                                 for x in r.get("images", ())]} for r in requests]
        body = self._call("POST", "/generate", {"requests": wire, "sampling": dict(sampling)})
        return check_samples(body, [int(r.get("n", 1)) for r in requests], self.base_url)

    def update_weights(self, named: Iterable[tuple[str, Any]]) -> None:
        """Send the weights as one safetensors blob (a 2B model in bfloat16 is ~4 GB a step:
        fine on one machine or a fast network; NCCL would be the next step at scale)."""
        from safetensors.torch import save

        blob = save({k: v.detach().contiguous().cpu() for k, v in named})
        url = self.base_url + "/update_weights"
        try:
            resp = self.session.post(url, data=blob, timeout=self.timeout_s,
                                     headers={"Content-Type": "application/octet-stream"})
        except Exception as e:
            raise EngineError(f"vLLM server {url}: {type(e).__name__}: {e}") from None
        if resp.status_code >= 400:
            raise EngineError(f"vLLM server {url}: HTTP {resp.status_code}: {resp.text[:500]}")

    def sleep(self) -> None:
        pass

    def close(self) -> None:
        self.session.close()


def check_samples(body: Any, counts: Sequence[int], where: str) -> list[list[dict[str, Any]]]:
    """A server's samples, checked for shape: one list per request of `counts[r]` samples, each
    with int token ids and one float logprob and entropy per id. Raises `EngineError`."""

    def bad(why: str) -> EngineError:
        return EngineError(f"vLLM server {where} answered the wrong shape: {why}")

    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list) or len(results) != len(counts):
        raise bad(f"expected 'results' with {len(counts)} entries")
    for r, (samples, n) in enumerate(zip(results, counts)):
        if not isinstance(samples, list) or len(samples) != n:
            raise bad(f"request {r}: expected {n} samples")
        for s in samples:
            if not isinstance(s, dict):
                raise bad(f"request {r}: a sample is not an object")
            ids, lps, ents = s.get("token_ids"), s.get("logprobs"), s.get("entropies")
            if not (isinstance(ids, list) and all(type(t) is int for t in ids)):
                raise bad(f"request {r}: token_ids are not integers")
            for name, values in (("logprobs", lps), ("entropies", ents)):
                if not (isinstance(values, list) and len(values) == len(ids) and all(
                        isinstance(v, (int, float)) and math.isfinite(v) for v in values)):
                    raise bad(f"request {r}: {name} missing or not one number per token")
            if not isinstance(s.get("prompt_token_ids"), list):
                raise bad(f"request {r}: no prompt_token_ids")
    return results
