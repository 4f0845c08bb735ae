"""Benchmarks as tasks: the built-in ones by env id, and plugins under `axpo_env.tasks`.

A plugin package declares, in its pyproject.toml,

    [project.entry-points."axpo_env.tasks"]
    my-task = "my_pkg.tasks:MyTask"     # a `Task` subclass with `env_id = "MyTask-v0"`

and `import axpo_env` registers `gym.make("MyTask-v0")` for it.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points

from axpo_env.tasks.base import SCORING_MODES, Judge, LazyItems, Task, TaskItem

ENTRY_POINT_GROUP = "axpo_env.tasks"


@dataclass(frozen=True)
class TaskSpec:
    """How to register one task env without importing its module first."""

    env_id: str
    path: str  # "module:Class"
    nondeterministic: bool = False


BUILTIN_TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("AXPO-ToolArith-v0", "axpo_env.tasks.tool_arith:ToolArith"),
    TaskSpec("AXPO-ZoomBoxes-v0", "axpo_env.tasks.zoom_boxes:ZoomBoxes"),
    TaskSpec("AXPO-ZoomRegime-v0", "axpo_env.tasks.zoom_regime:ZoomRegime"),
    # the paper's reasoning benchmarks
    TaskSpec("AXPO-MathVision-v0", "axpo_env.tasks.mathvision:MathVision"),
    TaskSpec("AXPO-DynaMath-v0", "axpo_env.tasks.dynamath:DynaMath"),
    TaskSpec("AXPO-MathVR-v0", "axpo_env.tasks.mathvr:MathVR"),
    # the paper's perception benchmarks (high-resolution images that need zooming)
    TaskSpec("AXPO-VStar-v0", "axpo_env.tasks.vstar:VStar"),
    TaskSpec("AXPO-VisualProbe-v0", "axpo_env.tasks.visualprobe:VisualProbe"),
    TaskSpec("AXPO-HRBench4K-v0", "axpo_env.tasks.hrbench:HRBench4K"),
    TaskSpec("AXPO-HRBench8K-v0", "axpo_env.tasks.hrbench:HRBench8K"),
    # the paper's search benchmarks
    # (BM25 over the bundled corpus is deterministic; an HTTP search tool is not)
    TaskSpec("AXPO-HRMMSearch-v0", "axpo_env.tasks.hrmmsearch:HRMMSearch"),
    TaskSpec("AXPO-MMSearch-v0", "axpo_env.tasks.mmsearch:MMSearch"),
    # more math benchmarks, not in the paper: `--envs all` or by name
    TaskSpec("AXPO-MathVista-v0", "axpo_env.tasks.mathvista:MathVista"),
    TaskSpec("AXPO-MathVerse-v0", "axpo_env.tasks.mathverse:MathVerse"),
    TaskSpec("AXPO-WeMath-v0", "axpo_env.tasks.wemath:WeMath"),
)

#: The synthetic tasks of the training demos, not benchmarks.
SYNTHETIC_TASKS: tuple[str, ...] = ("AXPO-ToolArith-v0", "AXPO-ZoomBoxes-v0")
#: The AXPO paper's nine benchmarks in its order and groups (Table 1: reasoning, perception,
#: search). `axpo eval --envs paper` runs exactly these.
PAPER_GROUPS: dict[str, tuple[str, ...]] = {
    "reasoning": ("AXPO-MathVision-v0", "AXPO-DynaMath-v0", "AXPO-MathVR-v0"),
    "perception": ("AXPO-VStar-v0", "AXPO-VisualProbe-v0", "AXPO-HRBench4K-v0",
                   "AXPO-HRBench8K-v0"),
    "search": ("AXPO-HRMMSearch-v0", "AXPO-MMSearch-v0"),
}
PAPER_BENCHMARKS: tuple[str, ...] = tuple(e for group in PAPER_GROUPS.values() for e in group)


def load_task_class(path: str) -> type[Task]:
    """Import "module:Class" (or a built-in env id) and check that it is a `Task`."""
    for spec in BUILTIN_TASKS:
        if path == spec.env_id:
            path = spec.path
    module, _, attr = path.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TypeError(f"{path} is not a Task subclass")
    return cls


def plugin_tasks() -> list[type[Task]]:
    """Task classes other packages ship under the `axpo_env.tasks` entry-point group.

    A broken plugin (its module fails to import, or the entry point is not a Task with an
    env_id) is skipped with a warning naming its package: one bad install must not stop
    `import axpo_env` for everyone else."""
    found = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        package = ep.dist.name if getattr(ep, "dist", None) else ep.value.split(":")[0]
        try:
            cls = ep.load()
        except Exception as e:
            warnings.warn(f"axpo_env: skipped the task plugin {ep.name!r} of package {package!r}: "
                          f"loading {ep.value} failed ({type(e).__name__}: {e})", stacklevel=2)
            continue
        if not (isinstance(cls, type) and issubclass(cls, Task) and cls.env_id):
            warnings.warn(f"axpo_env: skipped the task plugin {ep.name!r} of package {package!r}: "
                          f"{ep.value} is not a Task subclass with an env_id", stacklevel=2)
            continue
        found.append(cls)
    return found


__all__ = [
    "BUILTIN_TASKS", "ENTRY_POINT_GROUP", "Judge", "LazyItems", "PAPER_BENCHMARKS", "PAPER_GROUPS",
    "SCORING_MODES", "SYNTHETIC_TASKS", "Task", "TaskItem", "TaskSpec",
    "load_task_class", "plugin_tasks",
]
