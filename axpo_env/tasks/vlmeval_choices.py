"""Lettered multiple-choice options: building them, shuffling them, and reading an answer.

The perception benchmarks (V*, HR-Bench) are scored by "exact matching" in VLMEvalKit
(`vlmeval/utils/matching_util.py`: `can_infer`, i.e. `can_infer_option` then `can_infer_text`,
called by `extract_answer_from_item` in `vlmeval/dataset/utils/multiple_choice.py`; HR-Bench's
own evaluation uses it through `HRBenchDataset`). Two versions:

- `infer_choice_official` (`scoring="official"`) follows github.com/open-compass/VLMEvalKit as
  of commit 2cf2a36c (2026-06-25, the file's last change; checked against HEAD e8e78f05 of
  2026-08-18). Since c3371551 (2025-08-04) a letter counts only when it is the only option
  letter among the words and its first occurrence is one of the last four words
  (`splits.index(ch) > len(splits) - 5`), and option text is not searched in answers longer
  than twice the options' total length; since a67ace50 (2026-06-17) "answer is B" (any case,
  `(?i)(?:correct\\s+)?answer\\s+is\\s+\\**([ABCD])\\**`, so "the answer is a cat" reads
  as A) names B when the word rule found nothing. A refusal ("Cannot determine the answer")
  is "Z", which matches no option.
- `infer_choice` (`scoring="lenient"`, the RL default) keeps the rules as they were before
  August 2025 (a letter anywhere in the answer, option text at any length, no "answer is"
  rule) and adds two tolerances for an agent's dressing: the answer is first unwrapped
  (`\\boxed{}`, "Answer:"), and a lone lowercase letter such as "b" or "(b)" counts as "B".

Pure functions that never raise.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

from axpo_env.tasks.scoring import clean_answer

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_STRIP = ".()[],:;!*#{}"  # VLMEvalKit replaces these with spaces before splitting into words
_REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
_LONE_LETTER = re.compile(r"^\(?\s*([A-Za-z])\s*[).:]?$")


def lettered(options: Sequence[str]) -> dict[str, str]:
    """`{"A": options[0], "B": options[1], ...}`."""
    return {LETTERS[i]: str(o) for i, o in enumerate(options)}


def can_infer_option(answer: str, letters: Sequence[str]) -> str | None:
    """The one option letter written as a word in `answer` ("B", "(B)", "B. red", "is B."), "Z"
    for a refusal, else None (no letter, or several)."""
    if any(r in answer for r in _REFUSALS):
        return "Z"
    text = answer
    for c in _STRIP:
        text = text.replace(c, " ")
    words = text.split()
    found = [ch for ch in letters if ch in words]
    if len(found) == 1:
        return found[0]
    if not found and "Z" in words:
        return "Z"
    return None


def can_infer_text(answer: str, choices: Mapping[str, str]) -> str | None:
    """The letter of the one option whose text (case-insensitively) appears in `answer`."""
    low = answer.lower()
    found = [k for k, v in choices.items() if str(v).lower() in low]
    return found[0] if len(found) == 1 else None


def infer_choice(response: Any, choices: Mapping[str, str]) -> str | None:
    """The option letter `response` names, by VLMEvalKit's exact-matching rules (see module
    docstring), or None when it names none or is ambiguous."""
    try:
        text = clean_answer(response)
        if not text:
            return None
        lone = _LONE_LETTER.match(text)
        if lone and lone.group(1).upper() in choices:
            return lone.group(1).upper()
        return can_infer_option(text, list(choices)) or can_infer_text(text, choices)
    except Exception:  # a reward must not crash a training step on odd input
        return None


_VERBOSE_ANSWER = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**")


def _option_official(answer: str, letters: Sequence[str]) -> str | None:
    """VLMEvalKit's current `can_infer_option` (module docstring)."""
    if "Failed to obtain answer via API" in answer:
        return None
    if any(r in answer for r in _REFUSALS):
        return "Z"
    text = answer
    for c in _STRIP:
        text = text.replace(c, " ")
    words = text.split()
    found = [ch for ch in letters if ch in words]
    if len(found) == 1 and words.index(found[0]) > len(words) - 5:
        return found[0]
    if not found and "Z" in words:
        return "Z"
    m = _VERBOSE_ANSWER.search(answer)
    return m.group(1).upper() if m and m.group(1).upper() in letters else None


def _text_official(answer: str, choices: Mapping[str, str]) -> str | None:
    """VLMEvalKit's current `can_infer_text`: skipped for answers over twice the options'
    total length."""
    low = answer.lower()
    if len(low) > 2 * sum(len(str(v)) for v in choices.values()):
        return None
    found = [k for k, v in choices.items() if str(v).lower() in low]
    return found[0] if len(found) == 1 else None


def infer_choice_official(response: Any, choices: Mapping[str, str]) -> str | None:
    """The option letter VLMEvalKit's current exact matching reads from the raw `response`
    ("Z" for a refusal), or None."""
    try:
        text = str(response)
        return _option_official(text, list(choices)) or _text_official(text, choices)
    except Exception:  # str() of a hostile object
        return None


def score_choice(response: Any, choices: Mapping[str, str], answer: str,
                 scoring: str = "lenient") -> float:
    """1.0 when `response` names the option lettered `answer` (by the `scoring` mode's
    rules), else 0.0; never raises."""
    infer = infer_choice_official if scoring == "official" else infer_choice
    return 1.0 if infer(response, choices) == answer else 0.0


def shuffled_order(n: int, key: str) -> list[int]:
    """A permutation of `range(n)` that depends only on `key` (string seeding is stable across
    processes and Python runs, unlike `hash`)."""
    order = list(range(n))
    random.Random(key).shuffle(order)
    return order
