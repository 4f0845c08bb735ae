"""algorithms: GRPO and AXPO trainers, SFT, and their configs.

    from algorithms import Trainer, AXPOConfig

    Trainer("axpo", AXPOConfig(env_id="AXPO-MathVista-v0", model="<checkpoint>")).train()

Names are imported on first use, so `import algorithms` (and reading a config) costs no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AXPOConfig": "algorithms.config", "GRPOConfig": "algorithms.config",
    "SFTConfig": "algorithms.config", "Trainer": "algorithms.trainer",
    "train_sft": "algorithms.sft", "tool_call_diversity": "algorithms.diagnostics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'algorithms' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
