"""The `qwen3_coder` tool-call format: Qwen3.5, Qwen3.6 and Qwen3-Coder models call tools as

    <tool_call>
    <function=crop>
    <parameter=bbox>
    [0, 0, 0.5, 0.5]
    </parameter>
    </function>
    </tool_call>

(their chat templates render a call's `arguments` so, and vLLM reads them back with its
`qwen3_coder` tool parser). A value is raw text: one newline after `<parameter=NAME>` and one
before `</parameter>` are layout. It is typed by the tool's JSON schema, as vLLM types it: a
string parameter keeps the text as it is; integer, number, boolean and null are read from it
(`True`/`False`/`None`, what the template's `| string` writes, count too); object and array are
JSON. A value that does not read as its type stays text, so the tool's own argument check says
what is wrong. Parameters and tools the schema does not know stay text.

Every failure to read a call is a `ToolCall` with an `error` for the agent; nothing raises. A
`</parameter>`, `</function>` or `</tool_call>` written inside a value (code that prints one)
belongs to the value unless what follows it is the call's own structure.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from axpo_env.protocol import _MAX_DEPTH, CALL_CLOSE, CALL_OPEN, ToolCall, _depth

FUNC_OPEN, FUNC_CLOSE = "<function=", "</function>"
PARAM_OPEN, PARAM_CLOSE = "<parameter=", "</parameter>"
CALL_FORMAT = ("<tool_call>\n<function=NAME>\n<parameter=ARGUMENT>\nVALUE\n</parameter>\n"
               "</function>\n</tool_call>")
_BAD_NAME = re.compile(r"[\s<>{}\"']")  # vLLM's rule: no whitespace, quotes, <>{}
_INTEGER = re.compile(r"[+-]?\d+")
_MAX_NAME = 200
_STRING_TYPES = {"string", "str", "text", "varchar", "char", "enum"}

#: The tool section of Qwen3.5's system prompt (its chat template's wording), for templates
#: that cannot take `tools=`.
TOOLS_HEAD = "# Tools\n\nYou have access to the following functions:\n\n<tools>"
TOOLS_TAIL = (
    "\n</tools>\n\nIf you choose to call a function ONLY reply in the following format with NO "
    "suffix:\n\n<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>"
    "\nvalue_1\n</parameter>\n<parameter=example_parameter_2>\nThis is the value for the second "
    "parameter\nthat can span\nmultiple lines\n</parameter>\n</function>\n</tool_call>\n\n"
    "<IMPORTANT>\nReminder:\n- Function calls MUST follow the specified format: an inner "
    "<function=...></function> block must be nested within <tool_call></tool_call> XML tags\n"
    "- Required parameters MUST be specified\n- You may provide optional reasoning for your "
    "function call in natural language BEFORE the function call, but NOT after\n- If there is "
    "no function call available, answer the question like normal with your current knowledge "
    "and do not tell the user about function calls\n</IMPORTANT>"
)


class _Bad(Exception):
    """A call that cannot be read: its message goes to the agent."""


def tools_block(schemas: Sequence[Mapping[str, Any]]) -> str:
    lines = "".join("\n" + json.dumps(s, ensure_ascii=False) for s in schemas)
    return TOOLS_HEAD + lines + TOOLS_TAIL


def render_call(name: str, arguments: Any) -> str:
    """One call as Qwen3.5's and Qwen3-Coder's templates render a `tool_calls` entry: objects
    and arrays as JSON (`tojson`: non-ASCII kept), anything else as Jinja's `| string` writes
    it (`True`, `None`, `0.5`). `arguments`: a mapping, or its JSON text."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            raise ValueError(f"arguments of {name!r} are not JSON: {arguments[:80]!r}") from None
    if not isinstance(arguments, Mapping):
        raise ValueError(f"arguments of {name!r} must be an object, got "
                         f"{type(arguments).__name__}")
    for n in (name, *arguments):
        if not _good_name(n):
            raise ValueError(f"{n!r} cannot be written as a <function=...>/<parameter=...> "
                             "name (empty, too long, or has whitespace or one of <>{}\"')")
    out = [f"{CALL_OPEN}\n{FUNC_OPEN}{name}>\n"]
    for key, value in arguments.items():
        if isinstance(value, Mapping) or (isinstance(value, Sequence)
                                          and not isinstance(value, str)):
            value = json.dumps(value, ensure_ascii=False)
        out.append(f"{PARAM_OPEN}{key}>\n{value}\n{PARAM_CLOSE}\n")
    out.append(f"{FUNC_CLOSE}\n{CALL_CLOSE}")
    return "".join(out)


def find_calls(body: str, tools: Sequence[Mapping[str, Any]] | None = None
               ) -> list[tuple[ToolCall, int, int]]:
    """Each call of `body` (a turn's text after its thinking) with where its text starts (at
    `<tool_call>`) and ends. `tools`: the tool schemas that type the values (None: all text)."""
    properties = _properties(tools or ())
    found, pos = [], 0
    while (start := body.find(CALL_OPEN, pos)) >= 0:
        call, pos = _read_call(body, start + len(CALL_OPEN), properties)
        found.append((call, start, pos))
    return found


def _read_call(text: str, i: int, properties: Mapping[str, Any]) -> tuple[ToolCall, int]:
    """The call whose `<tool_call>` ends at `i`, and where the text after it starts. A call
    that cannot be read ends at the next `</tool_call>` (or the end of the text)."""
    name = None
    try:
        i = _skip_space(text, i)
        if not text.startswith(FUNC_OPEN, i):
            json_call = "JSON calls are not read here; " if text.startswith("{", i) else ""
            raise _Bad(f"{json_call}<tool_call> must be followed by <function=NAME>. Write "
                       f"{CALL_FORMAT}")
        name, i = _read_name(text, i + len(FUNC_OPEN), "function")
        props = properties.get(name)
        arguments: dict[str, Any] = {}
        while True:
            i = _skip_space(text, i)
            if text.startswith(FUNC_CLOSE, i):
                i = _skip_space(text, i + len(FUNC_CLOSE))
                if text.startswith(CALL_CLOSE, i):
                    return ToolCall(name, arguments), i + len(CALL_CLOSE)
                if i == len(text):  # the turn ended where </tool_call> would be: accepted
                    return ToolCall(name, arguments), i
                raise _Bad("</function> must be followed by </tool_call>.")
            if not text.startswith(PARAM_OPEN, i):
                where = "ends" if i == len(text) else "has unexpected text"
                raise _Bad(f"The call to {name!r} {where} before </function>. Write each "
                           "argument as <parameter=ARGUMENT>\nVALUE\n</parameter>, then "
                           "</function>\n</tool_call>.")
            key, i = _read_name(text, i + len(PARAM_OPEN), "parameter")
            if key in arguments:
                raise _Bad(f"The parameter {key!r} is given twice.")
            if text.startswith("\n", i):
                i += 1
            end = _value_end(text, i)
            if end < 0:
                raise _Bad(f"The parameter {key!r} is not closed with </parameter>.")
            value = text[i:end]
            arguments[key] = _typed(value[:-1] if value.endswith("\n") else value,
                                    props.get(key) if isinstance(props, Mapping) else None)
            i = end + len(PARAM_CLOSE)
    except _Bad as e:
        stop = text.find(CALL_CLOSE, i)
        stop = len(text) if stop < 0 else stop + len(CALL_CLOSE)
        return ToolCall(name, None, str(e)), stop


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _good_name(name: Any) -> bool:
    return (isinstance(name, str) and 0 < len(name) <= _MAX_NAME
            and not _BAD_NAME.search(name))


def _read_name(text: str, i: int, what: str) -> tuple[str, int]:
    """The NAME of `<function=NAME>` / `<parameter=NAME>` (the text from `i` to `>`)."""
    end = text.find(">", i, i + _MAX_NAME + 1)
    if end < 0:
        raise _Bad(f"<{what}= must be followed by a name and '>' (at most {_MAX_NAME} "
                   f"characters). Write {CALL_FORMAT}")
    name = text[i:end]
    if not _good_name(name):
        raise _Bad(f"{name[:60]!r} is not a {what} name (no spaces, quotes or <>{{}}).")
    return name, end + 1


def _value_end(text: str, i: int) -> int:
    """Where the value that starts at `i` ends: the first `</parameter>` followed by the call's
    own structure (another parameter, `</function>`, `</tool_call>` or the end of the text), so
    one written inside the value (code that prints it) stays in the value. -1: never closed."""
    first = pos = text.find(PARAM_CLOSE, i)
    while pos >= 0:
        after = _skip_space(text, pos + len(PARAM_CLOSE))
        if after == len(text) or text.startswith((PARAM_OPEN, FUNC_CLOSE, CALL_CLOSE), after):
            return pos
        pos = text.find(PARAM_CLOSE, pos + len(PARAM_CLOSE))
    return first


# ------------------------------------------------------------------------------ typing values

def _properties(tools: Sequence[Any]) -> dict[str, Any]:
    """{tool name: its parameters' `properties`} from tool schemas (OpenAI style or bare)."""
    out: dict[str, Any] = {}
    for schema in tools:
        fn = schema.get("function", schema) if isinstance(schema, Mapping) else None
        if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
            params = fn.get("parameters")
            props = params.get("properties") if isinstance(params, Mapping) else None
            out[fn["name"]] = props if isinstance(props, Mapping) else {}
    return out


def _types(prop: Any) -> list[str]:
    """The JSON types a property admits, in the order its schema lists them."""
    if not isinstance(prop, Mapping):
        return []
    kind = prop.get("type")
    types = [kind] if isinstance(kind, str) else [t for t in kind if isinstance(t, str)] \
        if isinstance(kind, list) else []
    for key in ("anyOf", "oneOf"):
        options = prop.get(key)
        if isinstance(options, list):
            for option in options:
                if isinstance(option, Mapping) and isinstance(option.get("type"), str):
                    types.append(option["type"])
    if not types and "enum" in prop:
        types = ["string"]
    if prop.get("nullable"):
        types.append("null")
    return [t.strip().lower() for t in types]


_FAIL = object()


def _typed(text: str, prop: Any) -> Any:
    """`text` read as the property's type (the first listed type it reads as); else itself."""
    types = _types(prop)
    if "null" in types and text.strip() in ("null", "None"):
        return None
    for kind in types:
        if kind in _STRING_TYPES:
            return text
        value = _as(kind, text.strip())
        if value is not _FAIL:
            return value
    return text


def _as(kind: str, text: str) -> Any:
    if kind.startswith(("int", "uint", "long")):
        if _INTEGER.fullmatch(text):
            try:
                return int(text)
            except ValueError:  # more than 4300 digits
                return _FAIL
        return _FAIL
    if kind.startswith(("num", "float", "double")):
        if _INTEGER.fullmatch(text):
            return _as("integer", text)
        try:
            value = float(text)
        except ValueError:
            return _FAIL
        return value if math.isfinite(value) else _FAIL
    if kind in ("boolean", "bool"):
        return {"true": True, "false": False}.get(text.lower(), _FAIL)
    if kind == "null":
        return None if text in ("null", "None") else _FAIL
    if kind in ("object", "array", "dict", "list"):
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            return _FAIL
        want = dict if kind in ("object", "dict") else list
        if not isinstance(value, want) or _depth(value, _MAX_DEPTH):
            return _FAIL
        return value
    return _FAIL
