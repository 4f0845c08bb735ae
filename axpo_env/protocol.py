"""The text protocol between agent and env: tool calls and final answers.

An agent's turn is free text: optional thinking (ended by `</think>`), then either tool calls,
in the Hermes JSON format of Qwen2.5/Qwen3/Qwen3-VL (`tool_call_format="hermes"`, the default)

    <tool_call>
    {"name": "crop", "arguments": {"bbox": [0, 0, 0.5, 0.5]}}
    </tool_call>

or the XML format of Qwen3.5/Qwen3.6/Qwen3-Coder (`tool_call_format="qwen3_coder"`, see
`axpo_env.protocol_xml`)

    <tool_call>
    <function=crop>
    <parameter=bbox>
    [0, 0, 0.5, 0.5]
    </parameter>
    </function>
    </tool_call>

or a final answer `<answer>...</answer>` (a last `\\boxed{...}` is accepted too). Only the text
after the last `</think>` is parsed, so a plan that mentions `<tool_call>` inside the thinking
does not run anything. A turn with both a tool call and an answer is an error: it must be one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The protocol's tags, for code that finds them in text or token ids (`agents.actions`).
CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
THINK_END = "</think>"
_CALL_END = re.compile(r"\s*(?:</tool_call>|\Z)")
_DECODER = json.JSONDecoder()
_MAX_DEPTH = 64  # arguments nested deeper are refused: nothing downstream must recurse on them
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)

CALL_FORMAT = '<tool_call>{"name": <tool name>, "arguments": {<name>: <value>, ...}}</tool_call>'
#: The tool-call formats an env can speak (`ToolUseEnv(tool_call_format=...)`).
TOOL_CALL_FORMATS = ("hermes", "qwen3_coder")


def check_tool_call_format(name: str) -> str:
    """`name` if it is one of `TOOL_CALL_FORMATS`; else a ValueError naming them."""
    if name not in TOOL_CALL_FORMATS:
        raise ValueError(f"unknown tool_call_format {name!r}; use one of "
                         f"{list(TOOL_CALL_FORMATS)} ('hermes': Qwen2.5/Qwen3/Qwen3-VL JSON "
                         "calls; 'qwen3_coder': Qwen3.5/Qwen3.6/Qwen3-Coder XML calls)")
    return name


def call_format(tool_call_format: str = "hermes") -> str:
    """How a call is written in a format, for messages to the agent."""
    if check_tool_call_format(tool_call_format) == "hermes":
        return CALL_FORMAT
    from axpo_env import protocol_xml

    return protocol_xml.CALL_FORMAT


@dataclass(frozen=True)
class ToolCall:
    """One parsed call; `error` says why it could not be read (then name/arguments may be None)."""

    name: str | None
    arguments: dict[str, Any] | None
    error: str | None = None


@dataclass(frozen=True)
class ParsedTurn:
    """What a turn asks for: tool calls, or a final answer, or nothing readable (`error`)."""

    thinking: str
    calls: tuple[ToolCall, ...] = ()
    answer: str | None = None
    error: str | None = None


def parse_turn(text: str, tool_call_format: str = "hermes",
               tools: Sequence[Mapping[str, Any]] | None = None) -> ParsedTurn:
    """Split an agent turn into thinking, tool calls and final answer. `tools`: the tool
    schemas, which type the argument values of the `qwen3_coder` format (Hermes JSON is typed
    by itself)."""
    cut = text.rfind(THINK_END)
    thinking, body = (text[:cut], text[cut + len(THINK_END) :]) if cut >= 0 else ("", text)
    calls, outside = split_calls(body, tool_call_format, tools)
    answer = extract_answer(outside)
    if calls and answer is not None:
        return ParsedTurn(
            thinking,
            error="A turn is either tool calls or a final answer, not both. "
            "Call the tool now and answer in a later turn.",
        )
    if not calls and answer is None:
        bare = tool_call_format == "qwen3_coder" and "<function=" in outside
        return ParsedTurn(
            thinking,
            error="No tool call or final answer found. "
            + ("A <function=...> block must be inside <tool_call></tool_call>. " if bare else "")
            + f"Call a tool with {call_format(tool_call_format)}, or give the final answer as "
            "<answer>...</answer>.",
        )
    return ParsedTurn(thinking, calls=calls, answer=answer)


def extract_answer(text: str) -> str | None:
    """The last `<answer>...</answer>`, else the last `\\boxed{...}`, stripped; None if neither."""
    answers = _ANSWER.findall(text)
    if answers:
        return answers[-1].strip()
    return _last_boxed(text)


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip()
    return None


def split_calls(body: str, tool_call_format: str = "hermes",
                tools: Sequence[Mapping[str, Any]] | None = None
                ) -> tuple[tuple[ToolCall, ...], str]:
    """The tool calls in `body` (a turn's text after its thinking) and the text outside them.
    Hermes: a call's JSON is read as JSON first, so a `</tool_call>` or `<answer>` inside one of
    its strings belongs to the call; a call that is not valid JSON ends at the next
    `</tool_call>` (or the end of the text). `qwen3_coder`: see `axpo_env.protocol_xml`."""
    found = find_calls(body, tool_call_format, tools)
    outside, pos = [], 0
    for _, start, end in found:
        outside.append(body[pos:start])
        pos = end
    outside.append(body[pos:])
    return tuple(call for call, _, _ in found), "".join(outside)


def find_calls(body: str, tool_call_format: str = "hermes",
               tools: Sequence[Mapping[str, Any]] | None = None
               ) -> list[tuple[ToolCall, int, int]]:
    """Each call of `body` with where its text starts (at `<tool_call>`) and ends."""
    if check_tool_call_format(tool_call_format) == "qwen3_coder":
        from axpo_env import protocol_xml

        return protocol_xml.find_calls(body, tools)
    found, pos = [], 0
    while (at := body.find(CALL_OPEN, pos)) >= 0:
        start = at + len(CALL_OPEN)
        first = len(body) - len(body[start:].lstrip())
        try:
            obj, end = _DECODER.raw_decode(body, first)
            closing = _CALL_END.match(body, end)
        except (ValueError, RecursionError):  # not JSON, too deep, or a 5000-digit integer
            closing = None
        if closing is not None:
            call = _parse_call(body[first:end], obj)
            pos = closing.end()
        else:
            stop = body.find(CALL_CLOSE, start)
            stop = len(body) if stop < 0 else stop
            call = _parse_call(body[start:stop])
            pos = min(len(body), stop + len(CALL_CLOSE))
        found.append((call, at, pos))
    return found


def _depth(obj: Any, limit: int) -> bool:
    """Whether `obj` nests more than `limit` containers deep (iterative: no recursion)."""
    stack = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, depth + 1) for c in children)
    return False


_NOT_READ = object()


def _parse_call(raw: str, obj: Any = _NOT_READ) -> ToolCall:
    """One call from its JSON text (`obj`: already decoded). Never raises: a bad call carries
    its `error` for the agent."""
    raw = raw.strip()
    if obj is _NOT_READ:
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            why = f"The tool call is not valid JSON ({e.msg} at char {e.pos}). Write {CALL_FORMAT}."
            return ToolCall(None, None, why)
        except RecursionError:
            return ToolCall(None, None, f"The tool call nests too deeply (at most {_MAX_DEPTH}).")
        except ValueError:  # an integer of more than 4300 digits
            return ToolCall(None, None, "The tool call has an integer of more than 4300 digits; "
                            "pass such numbers as strings.")
    if _depth(obj, _MAX_DEPTH):
        return ToolCall(None, None, f"The tool call nests too deeply (at most {_MAX_DEPTH}).")
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return ToolCall(None, None, f'The tool call needs a "name" string. Write {CALL_FORMAT}.')
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):  # some models double-encode the arguments
        try:
            args = json.loads(args) if args.strip() else {}
        except (ValueError, RecursionError):
            return ToolCall(obj["name"], None, '"arguments" must be a JSON object.')
        if _depth(args, _MAX_DEPTH):
            return ToolCall(obj["name"], None, f"The arguments nest too deeply (at most "
                            f"{_MAX_DEPTH}).")
    if not isinstance(args, dict):
        return ToolCall(obj["name"], None, '"arguments" must be a JSON object.')
    return ToolCall(obj["name"], args)


def render_tool_call(name: str, arguments: Any, ensure_ascii: bool = True,
                     tool_call_format: str = "hermes") -> str:
    """The text of one tool call, as Qwen3 models write it (scripted agents, SFT data, a server's
    `tool_calls`). `arguments`: a JSON value, or a string already serialized, written as it is
    (as Qwen's chat templates write a string's `arguments`). `tool_call_format="qwen3_coder"`:
    as Qwen3.5's and Qwen3-Coder's templates render it (`ensure_ascii` does not apply; a
    string `arguments` must be a JSON object)."""
    if check_tool_call_format(tool_call_format) == "qwen3_coder":
        from axpo_env import protocol_xml

        return protocol_xml.render_call(name, arguments)
    if not isinstance(arguments, str):
        arguments = json.dumps(dict(arguments) if isinstance(arguments, Mapping) else arguments,
                               ensure_ascii=ensure_ascii)
    name_json = json.dumps(name, ensure_ascii=ensure_ascii)
    return f'{CALL_OPEN}\n{{"name": {name_json}, "arguments": {arguments}}}\n{CALL_CLOSE}'


def render_answer(answer: str) -> str:
    return f"{ANSWER_OPEN}{answer}{ANSWER_CLOSE}"


def render_tools_block(schemas: Sequence[Mapping[str, Any]],
                       tool_call_format: str = "hermes") -> str:
    """The tool section of Qwen3's system prompt (Qwen3.5's for `qwen3_coder`), for templates
    that cannot take `tools=`."""
    if check_tool_call_format(tool_call_format) == "qwen3_coder":
        from axpo_env import protocol_xml

        return protocol_xml.tools_block(schemas)
    lines = "\n".join(json.dumps(s, ensure_ascii=False) for s in schemas)
    return (
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n"
        f"<tools>\n{lines}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )


def convert_tool_calls(text: str, tool_call_format: str, source_format: str = "hermes",
                       tools: Sequence[Mapping[str, Any]] | None = None) -> str:
    """`text` (a whole turn) with every readable tool call after its thinking re-written in
    `tool_call_format`; the thinking, the text around the calls and calls that cannot be read
    (or written in the target format) stay as they are. For scripted experts written in one
    format (`render_tool_call`'s default) that must play an env of another, e.g. the expert
    demos of a `qwen3_coder` env."""
    cut = text.rfind(THINK_END)
    cut = cut + len(THINK_END) if cut >= 0 else 0
    body, out, pos = text[cut:], [text[:cut]], 0
    for call, start, end in find_calls(body, source_format, tools):
        out.append(body[pos:start])
        try:
            written = None if call.error else render_tool_call(
                call.name or "", call.arguments or {}, ensure_ascii=False,
                tool_call_format=tool_call_format)
        except ValueError:  # a name the target format cannot write
            written = None
        out.append(body[start:end] if written is None else written)
        pos = end
    out.append(body[pos:])
    return "".join(out)
