"""How a config dataclass declares a field so that its docstring and the `axpo` command agree.

Each field's `metadata["help"]` is its only documentation and `metadata["group"]` its section:
`documented` writes the grouped list into the class docstring, and `axpo_cli.cli` turns every
field into a flag with that help. The configs (`algorithms.config`, `evaluation.evaluate`)
import this module, so it lives below both, in the package everything else builds on; it imports
nothing of the project and costs no torch.
"""

from __future__ import annotations

import dataclasses
import functools
import textwrap
import typing
from dataclasses import field
from typing import Any, Literal

GROUPS = {  # docstring and --help sections, in display order
    "model": "Parameters that control the model and the environment",
    "generation": "Parameters that control generation",
    "training": "Parameters that control the training",
    "axpo": "Parameters that control AXPO's exploration (only with --algo axpo)",
    "data": "Parameters that control the data",
    "logging": "Parameters that control logging and checkpoints",
}


def config_field(default: Any, help: str, group: str, **metadata: Any) -> Any:
    """A dataclass field whose help text and docstring section travel in its metadata."""
    meta = {"help": help, "group": group, **metadata}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def documented(cls: type) -> type:
    """Append the grouped parameter list, built from the fields' help, to the class docstring."""
    lines = ["", "    Parameters:"]
    fields = dataclasses.fields(cls)
    for group, title in GROUPS.items():
        members = [f for f in fields if f.metadata.get("group") == group]
        if not members:
            continue
        lines += ["", f"        > {title}", ""]
        for f in members:
            default = f.default_factory() if callable(f.default_factory) else f.default
            lines.append(f"        {f.name} (`{f.type}`, defaults to `{default!r}`):")
            lines += textwrap.wrap(f.metadata["help"], 92, initial_indent=" " * 12,
                                   subsequent_indent=" " * 12)
    cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n" + "\n".join(lines) + "\n"
    return cls


def check(ok: bool, message: str) -> None:
    """A config's validation: `ValueError(message)` unless `ok` (the CLI prints the message)."""
    if not ok:
        raise ValueError(message)


def string_list(name: str, value: Any, expected: str = "a string or a list of strings"
                ) -> list[str] | None:
    """A list field's value as a list of strings: one string is a one-element list (iterated,
    `split="test"` was the splits 't', 'e', 's', 't'); anything but strings is a ValueError
    naming the field and what it expects."""
    if value is None or isinstance(value, str):
        return value if value is None else [value]
    items = list(value) if isinstance(value, (list, tuple)) else None
    check(items is not None and all(isinstance(v, str) for v in items),
          f"{name} must be {expected}, got {value!r}")
    return items


@functools.cache
def literal_choices(cls: type) -> dict[str, tuple[str, ...]]:
    """The allowed values of each `Literal[...]` field of a config class, by field name."""
    hints = typing.get_type_hints(cls)
    return {f.name: typing.get_args(hints[f.name]) for f in dataclasses.fields(cls)
            if typing.get_origin(hints[f.name]) is Literal}


#: The values of the `tool_call_format` field of every config (`axpo_env.protocol`'s formats).
ToolCallFormat = Literal["hermes", "qwen3_coder"]


def tool_call_format_field(group: str, what: str) -> Any:
    """The `tool_call_format` field of a config: `what` says where the format applies."""
    return config_field(
        "hermes", "How tool calls are written: 'hermes', Hermes JSON in <tool_call> tags "
        "(Qwen2.5, Qwen3, Qwen3-VL); 'qwen3_coder', <tool_call><function=NAME><parameter=ARG> "
        f"XML (Qwen3.5, Qwen3.6, Qwen3-Coder). {what}", group)
