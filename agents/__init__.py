"""agents: policies that act in the axpo_env environments, and the rollout engine.

    from agents import HFPolicy, rollout, branch, tiny

    policy = HFPolicy.from_pretrained(tiny.cached("vl"))      # or a Qwen3-VL checkpoint
    trajectories = rollout("AXPO-MathVista-v0", policy, ["8", "11"], group_size=4)
    branches = branch(trajectories[0], turn=0, keep=20, policy=policy, n=4,
                      env="AXPO-MathVista-v0")

Names are imported on first use, so `from agents import OpenAIPolicy, rollout, load_policy`
imports no torch: only a local model (`HFPolicy`, `tiny`) needs it.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_EXPORTS = {
    "tiny": None, "HFPolicy": "agents.hf", "TokenPrompt": "agents.tokens",
    "OpenAIPolicy": "agents.openai", "Completion": "agents.policy", "Policy": "agents.policy",
    "SamplingParams": "agents.policy", "TokenPolicy": "agents.policy",
    "Trajectory": "agents.rollout", "Turn": "agents.rollout", "branch": "agents.rollout",
    "rollout": "agents.rollout", "load_policy": "agents.loading",
}

__all__ = sorted(_EXPORTS)


class _Package(types.ModuleType):
    """`agents` itself. Importing a submodule sets it as an attribute of its package, so once
    anything imported `agents.rollout` (as `branch` does), `agents.rollout` was that module, not
    the function `from agents import rollout` promises: an exported name keeps its export."""

    def __setattr__(self, name: str, value: Any) -> None:
        module = _EXPORTS.get(name)
        if module is not None and isinstance(value, types.ModuleType) \
                and value.__name__ == module:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'agents' has no attribute {name!r}")
    module = _EXPORTS[name]
    if module is None:  # a submodule
        return importlib.import_module(f"agents.{name}")
    return getattr(importlib.import_module(module), name)
