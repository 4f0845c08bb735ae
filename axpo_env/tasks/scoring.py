"""Answer normalization and MathVista's scoring rules, shared by the math benchmarks.

MathVista's `evaluation/calculate_score.py` (github.com/lupantech/MathVista, commit e999481e:
`normalize_extracted_answer` then `safe_equal`) in two modes. `score_official` is that code's
verdict on an extracted answer, quirks included (see `mathvista.py`); `score_answer`, the lenient
mode and the RL default, is made tolerant of the dressing an agent adds to an answer (option
letters, units, `$`, `%`, `\\boxed{}`, thousands commas, lists). `clean_answer` is shared by
the other tasks' lenient modes. Pure functions: no I/O, never raise on odd input.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Sequence
from typing import Any

_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_MAX_LEN = 2000  # lenient: longer "answers" are not answers; bounds edit distance, literal_eval

def levenshtein(a: str, b: str) -> int:
    """Edit distance (insert/delete/substitute), so MathVista needs no C extension here."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def most_similar(prediction: str, choices: Sequence[str]) -> str:
    """The choice nearest to `prediction` by edit distance (first one on ties, as upstream)."""
    dists = [levenshtein(prediction, c) for c in choices]
    return choices[dists.index(min(dists))]


def _unwrap_boxed(text: str) -> str:
    """Content of the last `\\boxed{...}` (balanced braces), else `text` unchanged."""
    starts = list(re.finditer(r"\\(?:boxed|fbox)\s*\{", text))
    if not starts:
        return text
    i = start = starts[-1].end()
    depth = 1
    while i < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[start : i - 1] if depth == 0 else text


def clean_answer(text: Any) -> str:
    """Strip the wrapping an agent puts around an answer: \\boxed{}, \\text{}, "Answer:"."""
    s = str(text).strip()[:_MAX_LEN]
    s = _unwrap_boxed(s)
    s = re.sub(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"^\**(?:the\s+)?(?:final\s+)?answer\b\s*(?:is)?\s*[:：]?\**\s*", "", s, flags=re.I)
    return s.strip().strip("*").strip()


def _letter_of(s: str, n_choices: int) -> int | None:
    """Index of an option letter written as "(B)", "B", "b.", "B) text", "Option C"."""
    m = re.search(r"\(([A-Za-z])\)", s) or re.match(
        r"^(?:option|choice)?\s*([A-Za-z])(?:[.:)]|$)", s, flags=re.I
    )
    if m:
        idx = ord(m.group(1).upper()) - ord("A")
        if 0 <= idx < n_choices:
            return idx
    return None


def normalize_choice(extraction: Any, choices: Sequence[str]) -> str | None:
    """Map an answer to one of `choices`: the letter, the text itself, else the nearest text."""
    s = clean_answer(extraction)
    choices = [str(c) for c in choices]
    if not s or not choices:
        return None
    options = [chr(ord("A") + i) for i in range(len(choices))]
    if s in options:  # upstream checks the bare letter first
        return choices[options.index(s)]
    for cand in (s, s.rstrip(".").strip()):
        if cand in choices:
            return cand
        lowered = [c.lower() for c in choices]
        if cand.lower() in lowered:
            return choices[lowered.index(cand.lower())]
    idx = _letter_of(s, len(choices))
    if idx is not None:
        return choices[idx]
    return most_similar(s, choices)


def _numeric_text(text: Any, unit: str | None) -> str:
    s = clean_answer(text).replace("\\%", "%").replace("\\$", "$").replace("\u2212", "-")
    s = re.sub(r"\^\s*\{?\\circ\}?|\\circ|\\degree|°", "", s).strip()
    s = re.sub(r"^[A-Za-z]\w*\s*=\s*", "", s)  # "x = 5"
    u = (unit or "").strip()
    if u and s.lower().endswith(u.lower()):
        s = s[: -len(u)].strip()
    if u and s.lower().startswith(u.lower()):
        s = s[len(u) :].strip()
    s = s.replace("$", "").replace("%", "").strip().rstrip(".").strip()
    if re.fullmatch(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?", s):
        s = s.replace(",", "")
    return s


def _to_float(text: str) -> float | None:
    if not _NUMBER.match(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _decimals(answer: Any) -> int:
    """Precision implied by a ground-truth float like "1.25" (used when `precision` is null)."""
    s = str(answer).strip()
    return len(s.split(".", 1)[1]) if "." in s and _NUMBER.match(s) else 0


def _normalize_list(text: Any) -> str | None:
    s = clean_answer(text).rstrip(".").strip()
    if not s:
        return None
    if not s.startswith(("[", "(")):
        s = f"[{s}]"
    try:
        value = ast.literal_eval(s)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if not isinstance(value, (list, tuple)):
        return None
    items = [int(v) if isinstance(v, float) and v.is_integer() else v for v in value]
    return str(items)


def normalize_extracted_answer(
    extraction: Any,
    choices: Sequence[str] | None,
    question_type: str,
    answer_type: str,
    precision: float | None,
    unit: str | None = None,
) -> str | None:
    """MathVista's normalization: choice text, `str(int(float(x)))`, `str(round(x, p))`, or
    `str(list)`. None when the answer cannot be read as its type (it then scores 0)."""
    if extraction is None:
        return None
    if question_type == "multi_choice":
        return normalize_choice(extraction, choices or [])
    if answer_type == "integer":
        value = _to_float(_numeric_text(extraction, unit))
        return None if value is None else str(int(value))
    if answer_type == "float":
        value = _to_float(_numeric_text(extraction, unit))
        if value is None:
            return None
        digits = 2 if precision is None or not math.isfinite(precision) else int(precision)
        return str(round(value, digits))
    if answer_type == "list":
        return _normalize_list(extraction)
    s = clean_answer(extraction).rstrip(".").strip()
    return s or None


def safe_equal(prediction: Any, answer: Any) -> bool:
    """Exact equality that never raises (as upstream)."""
    try:
        return bool(prediction == answer)
    except Exception:
        return False


def score_answer(
    response: Any,
    answer: Any,
    *,
    choices: Sequence[str] | None = None,
    question_type: str = "free_form",
    answer_type: str = "text",
    precision: float | None = None,
    unit: str | None = None,
) -> float:
    """1.0 when `response` normalizes to the ground truth, else 0.0; never raises.

    The ground truth goes through the same normalization when it parses, so a stored "1.20"
    with precision 2 is matchable (upstream compares it raw, where nothing can ever match it).
    """
    try:
        if response is None or not str(response).strip() or answer is None:
            return 0.0
        if answer_type == "float" and (precision is None or not math.isfinite(precision)):
            precision = float(_decimals(answer))
        args = (choices, question_type, answer_type, precision, unit)
        pred = normalize_extracted_answer(response, *args)
        if question_type == "multi_choice":
            truth = str(answer).strip()
            idx = _letter_of(truth, len(choices or [])) if len(truth) <= 3 else None
            if truth not in (choices or []) and idx is not None:
                truth = str((choices or [])[idx])
        else:
            truth = normalize_extracted_answer(answer, *args) or str(answer).strip()
        return 1.0 if pred is not None and safe_equal(pred, truth) else 0.0
    except Exception:  # a reward function must not crash a training step on odd input
        return 0.0


# ----------------------------------------------------------------------------- official
def normalize_official(
    extraction: Any, choices: Sequence[str] | None, question_type: str, answer_type: str,
    precision: float | None,
) -> str | None:
    """MathVista's `normalize_extracted_answer` as released: a "(X)" letter or a bare letter
    picks that choice, any other text (all of it: upstream cuts nothing) the nearest choice by
    edit distance; `str(int(float(x)))`; `str(round(float(x), int(precision)))`; `str(x)` for
    a list. None where upstream gets None (or, for free-form text, raises)."""
    if question_type == "multi_choice":
        text = extraction.strip() if isinstance(extraction, str) else str(extraction)
        letter = re.findall(r"\(([a-zA-Z])\)", text)
        if letter:
            text = letter[0].upper()
        options = [chr(ord("A") + i) for i in range(len(choices or []))]
        if text in options:
            return str((choices or [])[options.index(text)])
        return most_similar(text, [str(c) for c in choices]) if choices else None
    try:
        if answer_type == "integer":
            return str(int(float(extraction)))
        if answer_type == "float":
            return str(round(float(extraction), int(precision)))  # type: ignore[arg-type]
        if answer_type == "list":
            return str(extraction)
    except Exception:  # upstream: `except Exception: normalized_extraction = None`
        return None
    return None


def score_official(
    response: Any, answer: Any, *, choices: Sequence[str] | None = None,
    question_type: str = "free_form", answer_type: str = "text",
    precision: float | None = None, unit: str | None = None,
) -> float:
    """MathVista's `calculate_score.py` verdict: `safe_equal(normalize(extraction), answer)`
    with the stored answer as it is; never raises. `unit` is unused, as upstream."""
    try:
        pred = normalize_official(response, choices, question_type, answer_type, precision)
        return 1.0 if pred is not None and safe_equal(pred, answer) else 0.0
    except Exception:
        return 0.0
