"""Text that UTF-8 can hold, wherever it enters the project or is written out.

A JSON `"\\ud800"` escape from a server, a search corpus or a tampered file decodes to a lone
surrogate, which Python holds but cannot encode: the first `write` or `json.dumps(...,
ensure_ascii=False)` of it crashes, and a results file that keeps it crashes every rerun. One
repair for all: a surrogate pair becomes the character it encodes, a lone surrogate U+FFFD.
"""

from __future__ import annotations

from typing import Any


def valid_text(value: Any) -> Any:
    """`value` (a str, or dicts, lists and tuples holding them, keys too) with every string valid
    UTF-8; other values come back as they are."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if isinstance(value, dict):
        return {valid_text(k): valid_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [valid_text(v) for v in value]
    return value
