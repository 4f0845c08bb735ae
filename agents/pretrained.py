"""What a checkpoint folder holds, loaded: the model, its processor, its generation config.

Below every policy (`agents.hf`, `agents.vllm_policy`) and above nothing of theirs.
`load_processor` loads a Qwen3-VL processor even where torchvision (needed by the video
processor's class check) is missing. Works the same for our tiny dirs and real checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# How the checkpoint's prompts are rendered, written beside its weights by `axpo sft` and `axpo
# train` and read by every loader, so a model meets in RL and eval the prompt it was trained on.
PROMPT_FILE = "axpo_prompt.json"


def save_prompt_settings(folder: str | Path, render_tools: bool) -> None:
    """Record in a checkpoint folder whether its prompts carry the tool schemas."""
    (Path(folder) / PROMPT_FILE).write_text(json.dumps({"render_tools": bool(render_tools)}))


def recorded_render_tools(path: str | Path, default: bool = True) -> bool:
    """Whether the checkpoint's prompts carry the tool schemas, as recorded there; `default`
    for a checkpoint with no record (a hub model, or one saved by something else)."""
    try:
        value = json.loads((Path(path) / PROMPT_FILE).read_text()).get("render_tools")
    except (OSError, ValueError, AttributeError):
        return default
    return value if isinstance(value, bool) else default


def load_generation_config(path: str | Path) -> Any:
    """The checkpoint's generation config (its EOS ids), or None where it has none."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(path)
    except OSError:
        return None


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
