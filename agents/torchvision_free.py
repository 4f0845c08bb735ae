"""Qwen3-VL's processor where torchvision is missing, in this process and in vLLM's.

This project installs torch's CPU build, beside which pip's torchvision wheels do not load, so
torchvision is usually absent. transformers' Qwen3-VL processor then fails in two places: its
video-processor class check wants the torchvision-only class, and `image_processing_qwen2_vl`
(which vLLM's Qwen3-VL module imports) imports torchvision at its top. `processor_class` relaxes
the first for `agents.pretrained`; `install` fixes both for vLLM, whose engine also runs in
processes it starts itself (the model registry's inspection, the engine core): those get it
through `child_env`, which puts `_site/sitecustomize.py` (a call of `install`) on PYTHONPATH.

Nothing changes where torchvision imports: then the hook installs nothing.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

_IMAGE_MODULE = "transformers.models.qwen2_vl.image_processing_qwen2_vl"
_PROCESSOR_MODULE = "transformers.models.qwen3_vl.processing_qwen3_vl"
_SITE = Path(__file__).with_name("_site")


def has_torchvision() -> bool:
    from transformers.utils import is_torchvision_available

    return is_torchvision_available()


def video_processor() -> Any:
    # The module class, not `transformers.Qwen3VLVideoProcessor` (a torchvision-only dummy).
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    return Qwen3VLVideoProcessor()


@functools.cache
def processor_class(base: type | None = None) -> type:
    """Qwen3VLProcessor (or `base`) whose video processor may be the torchvision-less module
    class.

    Only the video-processor class check is relaxed (and, without torchvision, the video
    processor is built from its module class instead of `AutoVideoProcessor`); the image pad
    expansion, mm_token_type_ids and chat template are Qwen3VLProcessor's own. Saved dirs name
    `Qwen3VLProcessor`, so a machine with torchvision loads them with AutoProcessor.
    """
    if base is None:
        from transformers import Qwen3VLProcessor as base

    class Qwen3VLProcessorNoTorchvision(base):  # type: ignore[misc, valid-type]
        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument_name == "video_processor":
                return type(argument)
            return super().check_argument_for_proper_class(argument_name, argument)

        @classmethod
        def _get_arguments_from_pretrained(cls, path: Any, processor_dict: Any = None,
                                           **kwargs: Any) -> list:
            # transformers < 5.25 loads sub-processors here.
            from transformers import AutoImageProcessor, AutoTokenizer

            if has_torchvision():
                return super()._get_arguments_from_pretrained(path, processor_dict, **kwargs)
            kwargs.pop("subfolder", None)
            made = {"image_processor": AutoImageProcessor.from_pretrained(path, **kwargs),
                    "tokenizer": AutoTokenizer.from_pretrained(path, **kwargs),
                    "video_processor": video_processor()}
            return [made[n] for n in cls.get_attributes()]

        @classmethod
        def _resolve_subprocessors(cls, path: Any, processor_dict: Any, **kwargs: Any) -> Any:
            # transformers >= 5.25 loads sub-processors here (and not in the method above); one
            # already in processor_dict as an object is kept (a kwarg would reach the tokenizer
            # too, which then fails to save).
            if not has_torchvision():
                processor_dict = {**processor_dict, "video_processor": video_processor()}
            return super()._resolve_subprocessors(path, processor_dict, **kwargs)

    # What save_pretrained records, so saved dirs are ordinary Qwen3-VL processor dirs.
    Qwen3VLProcessorNoTorchvision.__name__ = "Qwen3VLProcessor"
    Qwen3VLProcessorNoTorchvision.__qualname__ = "Qwen3VLProcessor"
    return Qwen3VLProcessorNoTorchvision


class _Hook(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves `image_processing_qwen2_vl` from its PIL twin, and swaps the relaxed processor
    into `processing_qwen3_vl` once that module has run."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname == _IMAGE_MODULE:
            return importlib.util.spec_from_loader(fullname, self)
        if fullname == _PROCESSOR_MODULE:
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is not None and spec.loader is not None:
                spec.loader = _Relaxing(spec.loader)
            return spec
        return None

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: Any) -> None:
        from transformers.models.qwen2_vl import image_processing_pil_qwen2_vl as pil

        module.__dict__.update({k: v for k, v in vars(pil).items() if not k.startswith("__")})
        module.Qwen2VLImageProcessor = pil.Qwen2VLImageProcessorPil


class _Relaxing(importlib.abc.Loader):
    def __init__(self, loader: Any):
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.loader.exec_module(module)
        module.Qwen3VLProcessor = processor_class(module.Qwen3VLProcessor)


def install() -> None:
    """Make transformers' Qwen3-VL processing importable without torchvision in this process
    (a no-op where torchvision imports, or when already done). Run before vLLM is imported."""
    if any(isinstance(f, _Hook) for f in sys.meta_path):
        return
    if importlib.util.find_spec("torchvision") is not None:
        return
    loaded = sys.modules.get(_PROCESSOR_MODULE)
    if loaded is not None:  # imported already: swap the class in place
        loaded.Qwen3VLProcessor = processor_class(loaded.Qwen3VLProcessor)
    sys.modules.pop(_IMAGE_MODULE, None)
    sys.meta_path.insert(0, _Hook())


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: os.environ) with `install` run at the start of every Python process
    started with it (PYTHONPATH gains `agents/_site`)."""
    env = dict(os.environ if env is None else env)
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(_SITE) not in parts:
        env["PYTHONPATH"] = os.pathsep.join([str(_SITE), *parts])
    return env
