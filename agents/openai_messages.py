"""Env conversations in the chat-completions wire format, and replies back in ours.

Text mode: tool results become user turns wrapped in `<tool_response>` (as Qwen's template
renders them), images become PNG data URLs encoded once per image. Native mode: the assistant's
`<tool_call>` text becomes `tool_calls` and tool results role "tool" messages with ids. Calls
are read and written in the env's `tool_call_format` (Hermes JSON or `qwen3_coder` XML).
Stop strings the server strips are put back so the env sees complete tool calls.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

from agents.policy import split_conversation
from axpo_env.protocol import THINK_END, render_tool_call, split_calls

_CLOSING_TAG = re.compile(r"</([^<>/\s]+)>")
_PNG_MODES = {"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}
_MISSING = object()


def to_openai(messages: list[Any], mode: str, urls: dict[int, Any],
              tool_call_format: str = "hermes",
              tools: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The env's messages as chat-completions messages. Native `mode`: an assistant's calls
    are read in `tool_call_format` (`tools`: the schemas that type a `qwen3_coder` call's
    values)."""
    out: list[dict[str, Any]] = []
    pending: list[str] = []  # native mode: ids of the last assistant's calls not yet answered
    last_was_tool = False
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise ValueError(f"message {i} is a {type(m).__name__}, not a dict")
        role, parts = m.get("role"), _parts(m.get("content"), urls)
        if role == "tool" and mode == "native" and pending:
            out.append({"role": "tool", "tool_call_id": pending.pop(0),
                        "content": _simplify(parts)})
        elif role == "tool":
            parts = _wrap(parts, "<tool_response>\n", "\n</tool_response>")
            if last_was_tool:  # one user turn for consecutive results, as Qwen renders them
                prev = out[-1]["content"]
                prev = prev if isinstance(prev, list) else [{"type": "text", "text": prev}]
                parts = _wrap(prev, "", "\n") + parts
                parts, out = _merge_text(parts), out[:-1]
            out.append({"role": "user", "content": _simplify(parts)})
        elif role == "assistant" and mode == "native":
            msg = _native_assistant(parts, i, tool_call_format, tools)
            pending = [c["id"] for c in msg.get("tool_calls", [])]
            out.append(msg)
        elif role in ("system", "user", "assistant", "developer"):
            out.append({"role": role, "content": _simplify(parts)})
        else:
            raise ValueError(f"message {i} has unknown role {role!r}")
        last_was_tool = role == "tool" and out[-1]["role"] == "user"
    return out


def drops_earlier_thinking(messages: Sequence[Mapping[str, Any]]) -> bool:
    """True when a user turn that is not a tool response follows an assistant turn with
    thinking: Qwen3-style templates then re-render every turn before that user turn without its
    thinking (they keep reasoning only after the last real user query). The env sends format
    errors as such a user turn; `HFPolicy` keeps the earlier thinking in the ids it feeds, a
    server re-rendering the conversation does not."""
    thought = False
    for m in messages:
        content = m.get("content")
        text = content if isinstance(content, str) else "".join(
            p.get("text", "") for p in content or () if isinstance(p, Mapping))
        if m.get("role") == "assistant" and THINK_END in text:
            thought = True
        elif (m.get("role") == "user" and thought
              and not text.strip().startswith("<tool_response>")):
            return True
    return False


def _parts(content: Any, urls: dict[int, Any]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise ValueError(f"message content must be a str or a list of parts, got {content!r:.80}")
    out = []
    for p in content:
        kind = p.get("type") if isinstance(p, Mapping) else None
        if kind == "text":
            out.append({"type": "text", "text": str(p.get("text", ""))})
        elif kind == "image":
            out.append({"type": "image_url", "image_url": {"url": _image_url(p, urls)}})
        elif kind == "image_url":
            out.append(dict(p))
        else:
            raise ValueError(f"unsupported content part {p!r:.80}: use text or image parts")
    return out


def _image_url(part: Mapping[str, Any], urls: dict[int, Any]) -> str:
    image = part.get("image", part.get("url"))
    if isinstance(image, Image.Image):
        url = urls.get(id(image)) or safe_encode(image)
        if isinstance(url, Exception):
            raise ValueError(f"cannot PNG-encode the image: {url}")
        return url
    if isinstance(image, str) and image.startswith(("http://", "https://", "data:")):
        return image
    raise ValueError(f"unsupported image {image!r:.60}: give a PIL image, an http(s) or data URL")


def collect_images(convs: list[Any]) -> dict[int, Image.Image]:
    """Every distinct PIL image object in the batch, by id, so each is encoded once."""
    found: dict[int, Image.Image] = {}
    for conv in convs:
        try:
            messages, _ = split_conversation(conv)
        except Exception:
            continue  # reported when that conversation is converted
        for m in messages:
            content = m.get("content") if isinstance(m, Mapping) else None
            for p in content if isinstance(content, list) else ():
                if isinstance(p, Mapping) and isinstance(p.get("image"), Image.Image):
                    found.setdefault(id(p["image"]), p["image"])
    return found


def _encode_png(image: Image.Image) -> str:
    if image.mode not in _PNG_MODES:
        image = image.convert("RGBA" if "A" in image.mode else "RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def safe_encode(image: Image.Image) -> str | Exception:
    try:
        return _encode_png(image)
    except Exception as e:
        return e


def _native_assistant(parts: list[dict[str, Any]], index: int, tool_call_format: str = "hermes",
                      tools: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Split the tool calls after the last `</think>` into OpenAI `tool_calls`, read by the
    env's own parser (`axpo_env.protocol`), so both agree on what a call is."""
    if any(p["type"] != "text" for p in parts):
        return {"role": "assistant", "content": parts}
    text = "".join(p["text"] for p in parts)
    cut = text.rfind(THINK_END)
    cut = cut + len(THINK_END) if cut >= 0 else 0
    head, body = text[:cut], text[cut:]
    found, outside = split_calls(body, tool_call_format, tools)
    if not found or any(c.error is not None for c in found):
        return {"role": "assistant", "content": text}  # no call, or unreadable: keep it as text
    calls = [{"id": f"call_{index}_{j}", "type": "function",
              "function": {"name": c.name,
                           "arguments": json.dumps(c.arguments, ensure_ascii=False)}}
             for j, c in enumerate(found)]
    content = (head + outside).strip()
    return {"role": "assistant", "content": content or None, "tool_calls": calls}


def _wrap(parts: list[dict[str, Any]], prefix: str, suffix: str) -> list[dict[str, Any]]:
    return _merge_text([{"type": "text", "text": prefix}, *parts, {"type": "text", "text": suffix}])


def _merge_text(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in parts:
        if p["type"] == "text" and out and out[-1]["type"] == "text":
            out[-1] = {"type": "text", "text": out[-1]["text"] + p["text"]}
        elif p["type"] != "text" or p["text"]:
            out.append(p)
    return out


def _simplify(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if not parts:
        return ""
    return parts[0]["text"] if len(parts) == 1 and parts[0]["type"] == "text" else parts


def clean_tool(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Only the keys the OpenAI schema allows (strict servers reject e.g. a `return` key)."""
    fn = schema.get("function", schema)
    keep = {k: fn[k] for k in ("name", "description", "parameters", "strict") if k in fn}
    return {"type": "function", "function": keep}


# --------------------------------------------------------------------------------------------
# Responses -> Completion


def restore_stop(text: str, choice: dict[str, Any], stops: Sequence[str]) -> str:
    """Put back the stop string the server stripped, so the env sees a closed tool call."""
    matched = choice.get("stop_reason", choice.get("matched_stop", _MISSING))
    if isinstance(matched, str):
        return text if text.endswith(matched) else text + matched
    if matched is not _MISSING:
        return text  # EOS or a stop token id: nothing was stripped
    if any(text.endswith(s) for s in stops):
        return text
    best, where = None, -1
    for stop in stops:  # no report: close the most recently opened tag among the stops
        m = _CLOSING_TAG.fullmatch(stop)
        opened = text.rfind(f"<{m.group(1)}>") if m else -1
        if opened > where and opened > text.rfind(stop):
            best, where = stop, opened
    return text + best if best else text


def render_calls(calls: list[Any], tool_call_format: str = "hermes") -> str:
    """A server's `tool_calls` as the `<tool_call>` text the env reads, in its
    `tool_call_format`. A call that format cannot write (`qwen3_coder`: arguments that are not
    a JSON object, a name with spaces) is written as Hermes JSON, which the env then refuses
    with a message that names its format."""
    rendered = []
    for call in calls:
        fn = call.get("function", {}) if isinstance(call, dict) else {}
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError:  # kept as a JSON string: the env tells the model it is broken
                args = json.dumps(args, ensure_ascii=False)
        try:
            rendered.append(render_tool_call(fn.get("name"), args, ensure_ascii=False,
                                             tool_call_format=tool_call_format))
        except ValueError:  # only qwen3_coder refuses: see the docstring
            rendered.append(render_tool_call(fn.get("name"), args, ensure_ascii=False))
    return "\n".join(rendered)
