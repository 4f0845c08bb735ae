"""What a tool is, how a Python function becomes one, and how tools are found by name.

A tool is a function with type hints and a Google-style docstring; `@tool` turns it into a `Tool`
whose JSON schema is `transformers.utils.get_json_schema(fn)`, so it renders through any chat
template's `tools=`. Stateful tools (the Python session) subclass `Tool` and implement
`snapshot()`/`restore()`. Tools from other packages are found under the entry-point group
`axpo_env.tools`.
"""

from __future__ import annotations

import copy
import functools
import inspect
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from PIL import Image

from axpo_env.errors import ToolCallError, ToolNotFoundError

ENTRY_POINT_GROUP = "axpo_env.tools"


@dataclass(frozen=True)
class ToolResult:
    """What a tool call gives back to the agent: text, and images that join the episode's images.

    `note_image_index`: the env adds "(image index N)" to the text so the agent can name the
    images later; presets that copy a source tool's reply exactly turn it off."""

    text: str
    images: tuple[Image.Image, ...] = ()
    note_image_index: bool = True


@dataclass(frozen=True)
class ToolContext:
    """What a tool may read of the episode. `images[0]` is the task image; tool images follow.

    `task` is the `TaskItem` of the episode (question, metadata), `seed` the episode's seed.
    """

    images: tuple[Image.Image, ...] = ()
    task: Any = None
    seed: int | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)


class Tool:
    """Base of every tool. Subclasses set `name`, `schema` and implement `run`.

    Lifecycle inside an env: `spawn()` once per env (stateful tools return a fresh instance),
    `reset(ctx)` at each episode start, `run(arguments, ctx)` per call, `snapshot()`/`restore()`
    around branching, `close()` with the env.
    """

    name: str = ""
    #: True when `run` may give different results for the same input (web search).
    nondeterministic: bool = False

    @property
    def schema(self) -> dict[str, Any]:
        """The tool's schema as `{"type": "function", "function": {...}}` (transformers' format)."""
        raise NotImplementedError

    def run(self, arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Run one call with arguments already checked against the schema."""
        raise NotImplementedError

    def __call__(self, arguments: Mapping[str, Any], ctx: ToolContext | None = None) -> ToolResult:
        """Check `arguments` against the schema, then run. Bad arguments raise `ToolCallError`."""
        args = validate_arguments(self.schema, arguments)
        return self.run(args, ctx or ToolContext())

    def spawn(self) -> Tool:
        """The instance one env uses; stateless tools share themselves."""
        return self

    def reset(self, ctx: ToolContext) -> None:
        """Start of an episode: forget per-episode state."""

    def snapshot(self) -> Any:
        """Picklable per-episode state (None for stateless tools)."""
        return None

    def restore(self, state: Any) -> None:
        """Go back to a state returned by `snapshot()`."""

    def close(self) -> None:
        """Release processes or connections."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class FunctionTool(Tool):
    """A stateless tool made from a typed, documented function (see `tool`)."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None):
        self.fn = fn
        self.name = name or fn.__name__
        params = inspect.signature(fn).parameters
        self._wants_ctx = "ctx" in params
        functools.update_wrapper(self, fn)

    @functools.cached_property
    def schema(self) -> dict[str, Any]:
        # Imported here: transformers costs ~1 s to import and most envs never need it twice.
        from transformers.utils import get_json_schema

        schema = get_json_schema(_without_ctx(self.fn))
        schema["function"]["name"] = self.name
        return schema

    def run(self, arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
        out = self.fn(ctx=ctx, **arguments) if self._wants_ctx else self.fn(**arguments)
        return as_tool_result(out)

    def __reduce__(self) -> Any:
        # `@tool` replaces the module's function by this object, so pickle it by reference.
        module = sys.modules.get(self.fn.__module__)
        if module is not None and getattr(module, self.fn.__qualname__, None) is self:
            return self.fn.__qualname__
        return (FunctionTool, (self.fn, self.name))


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """Make a `Tool` from a function with type hints and a Google-style docstring.

    The function may take a `ctx: ToolContext` parameter (left out of the schema) and may return
    a str, a PIL image, a list of those, or a `ToolResult`.

        @tool
        def word_count(text: str) -> int:
            '''Count the words in a text.

            Args:
                text: The text to count.
            '''
            return len(text.split())
    """
    if fn is None:
        return lambda f: FunctionTool(f, name=name)
    return FunctionTool(fn, name=name)


def as_tool_result(out: Any) -> ToolResult:
    """Normalise what a tool function returned into a `ToolResult`."""
    if isinstance(out, ToolResult):
        return out
    if isinstance(out, Image.Image):
        return ToolResult(text="", images=(out,))
    if isinstance(out, (list, tuple)):
        texts = [str(x) for x in out if not isinstance(x, Image.Image)]
        images = tuple(x for x in out if isinstance(x, Image.Image))
        return ToolResult(text="\n".join(texts), images=images)
    return ToolResult(text="" if out is None else str(out))


def _without_ctx(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A stand-in for `fn` whose signature, hints and docstring omit the injected `ctx`."""
    sig = inspect.signature(fn)
    if "ctx" not in sig.parameters:
        return fn

    def shim(*args: Any, **kwargs: Any) -> Any:  # never called; only inspected
        raise NotImplementedError

    shim.__name__ = fn.__name__
    shim.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[p for n, p in sig.parameters.items() if n != "ctx"]
    )
    shim.__annotations__ = {k: v for k, v in fn.__annotations__.items() if k != "ctx"}
    doc_lines = (fn.__doc__ or "").splitlines()
    shim.__doc__ = "\n".join(line for line in doc_lines if not line.strip().startswith("ctx:"))
    return shim


# ---------------------------------------------------------------------------------------------
# Arguments: checked against the schema with jsonschema, so every mistake gets a precise message.


@functools.lru_cache(maxsize=256)
def _validator_for(schema_key: str) -> Any:
    import json

    import jsonschema

    params = _strict_parameters(json.loads(schema_key))
    return jsonschema.Draft202012Validator(params)


def _strict_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """transformers' schema dialect -> plain JSON Schema: `nullable` becomes a null type, and
    arguments not in the schema are rejected."""
    params = copy.deepcopy(params)
    params.setdefault("type", "object")
    params.setdefault("additionalProperties", False)
    for prop in params.get("properties", {}).values():
        if prop.pop("nullable", False) and "type" in prop:
            types = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
            prop["type"] = [*types, "null"]
    return params


def validate_arguments(schema: Mapping[str, Any], arguments: Any) -> dict[str, Any]:
    """Check call arguments against a tool schema; raise `ToolCallError` saying what is wrong."""
    import json

    if not isinstance(arguments, Mapping):
        raise ToolCallError(
            f'"arguments" must be a JSON object, got {type(arguments).__name__}.'
        )
    params = schema.get("function", schema).get("parameters", {})
    validator = _validator_for(json.dumps(params, sort_keys=True))
    errors = sorted(validator.iter_errors(dict(arguments)), key=lambda e: list(e.path))
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in err.path)
        message = err.message if len(err.message) < 300 else err.message[:300] + "..."
        raise ToolCallError(f"bad arguments{' at ' + where if where else ''}: {message}")
    return dict(arguments)


# ---------------------------------------------------------------------------------------------
# Registry: built-ins, tools registered at run time, and entry points of other packages.

_BUILTINS: dict[str, str] = {
    "crop": "axpo_env.tools.crop:crop",
    "crop:qwen3vl": "axpo_env.tools.crop:qwen3vl_zoom",
    "crop:deepeyes": "axpo_env.tools.crop:deepeyes_zoom",
    "crop:pixel_reasoner": "axpo_env.tools.crop:pixel_reasoner_crop",
    "crop:axpo": "axpo_env.tools.zoom_in:axpo_zoom",
    "python": "axpo_env.tools.python:PythonTool",
    "calculator": "axpo_env.tools.calculator:calculator",
    "search": "axpo_env.tools.search:SearchTool",
    "search:serper": "axpo_env.tools.search:web_search",
    "search:tavily": "axpo_env.tools.tavily:TavilySearchTool",
    "image_search": "axpo_env.tools.image_search:ImageSearchTool",
    # `search` (the name the agent sees) over a search benchmark's bundled fixture corpus
    "search:hrmmsearch": "axpo_env.tasks.hrmmsearch:fixture_search",
    "search:mmsearch": "axpo_env.tasks.mmsearch:fixture_search",
}
#: Named tool sets: a name here in `tools=[...]` stands for all of its tools.
TOOL_SETS: dict[str, tuple[str, ...]] = {
    # The tools the AXPO paper authors' models call (their project page, ByungKwanLee/AXPO-page):
    # image_zoom_in (0-1000 bbox_2d, label, img_idx), python (code), tavily-search (query,
    # max_results; offline over the local corpus unless $TAVILY_API_KEY is set).
    "authors": ("crop:axpo", "python", "search:tavily"),
}
_REGISTRY: dict[str, Tool | Callable[[], Tool]] = {}
_LOCK = threading.Lock()


def register_tool(obj: Tool | Callable[[], Tool], name: str | None = None) -> None:
    """Make a tool (or a zero-argument factory of one) findable by name in `gym.make(tools=...)`."""
    key = name or getattr(obj, "name", None) or getattr(obj, "__name__", None)
    if not key:
        raise ValueError("register_tool needs a name for this object")
    with _LOCK:
        _REGISTRY[key] = obj


def available_tools() -> list[str]:
    """Every tool name that `get_tool` resolves."""
    names = set(_BUILTINS) | set(_REGISTRY)
    names |= {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(names)


def get_tool(spec: str | Tool | Callable[..., Any]) -> Tool:
    """Resolve a name, a `Tool`, a Tool class or a plain function into a `Tool` instance."""
    if isinstance(spec, Tool):
        return spec
    if isinstance(spec, str):
        return _instantiate(_lookup(spec), spec)
    return _instantiate(spec, getattr(spec, "__name__", repr(spec)))


def resolve_tools(specs: Iterable[str | Tool | Callable[..., Any]]) -> list[Tool]:
    """Tools for one env: each resolved and spawned (a `TOOL_SETS` name gives each of its
    tools); names must be unique."""
    tools = [get_tool(s).spawn() for s in _expand(specs)]
    names = [t.name for t in tools]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"tools share the name(s) {dupes}; the agent could not tell them apart")
    return tools


def _expand(specs: Iterable[str | Tool | Callable[..., Any]]) -> list[Any]:
    """`specs` with each tool-set name replaced by its tools (a registered tool of the same
    name wins)."""
    out: list[Any] = []
    for s in specs:
        is_set = isinstance(s, str) and s in TOOL_SETS and s not in _REGISTRY
        out.extend(TOOL_SETS[s] if is_set else [s])  # type: ignore[index]
    return out


def _lookup(name: str) -> Any:
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _BUILTINS:
        return _load_object(_BUILTINS[name])
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()
    if name in TOOL_SETS:
        raise ToolNotFoundError(
            f"{name!r} is a set of tools ({', '.join(TOOL_SETS[name])}), not one tool: pass it "
            f"in gym.make(..., tools=[{name!r}]) or resolve_tools([{name!r}])."
        )
    raise ToolNotFoundError(
        f"no tool named {name!r}. Available: {', '.join(available_tools())}; tool sets: "
        f"{', '.join(TOOL_SETS)}. "
        f"Pass a Tool object, register one with axpo_env.register_tool, or ship it under the "
        f"entry-point group {ENTRY_POINT_GROUP!r}."
    )


def _load_object(path: str) -> Any:
    import importlib

    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def _instantiate(obj: Any, name: str) -> Tool:
    if isinstance(obj, Tool):
        return obj
    if isinstance(obj, type) and issubclass(obj, Tool):
        return obj()
    if callable(obj):
        params = inspect.signature(obj).parameters
        if not params:  # a factory
            made = obj()
            if isinstance(made, Tool):
                return made
        return FunctionTool(obj)
    raise TypeError(f"cannot make a tool from {name!r} ({type(obj).__name__})")
