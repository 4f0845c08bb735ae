"""MATH-Vision's official verdict, step by step as upstream computes it.

Follows github.com/mathllm/MATH-V `evaluation/evaluate.py` (`evaluate`: the answer clean-up,
then `is_equal(gt, answer) or is_equal(gt_option_text, answer)`) and `evaluation/utils.py`
(`find_math_answer`, `_strip_string`, `_fix_sqrt`, `_fix_fracs`, `_fix_a_slash_b`,
`eval_tuple`, `is_equal`), commit 1d361180b02cbff417c77c02acf1b4cacf2d55ea. Upstream has no LLM
step: `response` here is the text the env extracted from `<answer>` (upstream's `response`).

Quirks kept: the ground truth is not cleaned, but latex2sympy blanks its "$", so an option
"$\\frac{6}{25}$" answered verbatim matches while "$6 \\mathrm{~m}$" never does;
`_fix_fracs` runs only when the answer contains "sqrt"; "0.5" becomes "\\frac{1}{2}"; only
"\\%" is removed, so "50%" and "45°" do not parse; a value matches when both sides round to the
same 2 decimals. Upstream's `eval(str(latex2sympy(x)))` is `mathv_latex.latex2sympy_value`,
which reproduces it without latex2sympy2 or eval: "(3,-4.0)" is "(3,-4)" there, "(4/2,3)" is
"(2.0,3)", "5.**" is 5, "\\frac34" is nothing. Checked against the real upstream scorer
(latex2sympy2 1.9.1, separate venv) on the 16 model outputs MATH-V released and every ground
truth and option answered verbatim: 31,685 distinct cases, every verdict the same.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from axpo_env.tasks.mathv_latex import latex2sympy_value

_FLAGS = ("the final answer is", "the answer is", "the correct answer is", "the answer should be")


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _fix_sqrt(s: str) -> str:
    parts = s.split("\\sqrt")
    out = parts[0]
    for part in parts[1:]:
        out += f"\\sqrt{{{part[0]}}}{part[1:]}" if part and part[0] != "{" else "\\sqrt" + part
    return out


def _fix_fracs(s: str) -> str:
    parts = s.split("\\frac")
    out = parts[0]
    for part in parts[1:]:
        out += "\\frac"
        if part and part[0] == "{":
            out += part
        elif len(part) < 2:
            return s
        elif part[1] != "{":
            out += f"{{{part[0]}}}{{{part[1]}}}{part[2:]}"
        else:
            out += f"{{{part[0]}}}{part[1:]}"
    return out


def _fix_a_slash_b(s: str) -> str:
    pieces = s.split("/")
    if len(pieces) != 2:
        return s
    try:
        a, b = int(pieces[0]), int(pieces[1])
    except ValueError:
        return s
    return f"\\frac{{{a}}}{{{b}}}" if s == f"{a}/{b}" else s


def _strip_string(s: str) -> str:
    for old, new in (("\n", ""), ("\\!", ""), ("\\\\", "\\"), ("tfrac", "frac"),
                     ("dfrac", "frac"), ("\\left", ""), ("\\right", ""), ("^{\\circ}", ""),
                     ("^\\circ", ""), ("\\$", ""), ("$", "")):  # fmt: skip
        s = s.replace(old, new)
    s = s.split("\\text{ ")[0]  # _remove_right_units
    s = s.replace("\\%", "").replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    if len(s.split("=")) == 2:
        s = s.split("=")[-1]
    if len(s.split("\\approx")) == 2:
        s = s.split("\\approx")[-1]
    if "sqrt" in s:
        s = _fix_sqrt(s)
    s = s.replace(" ", "")
    if "sqrt" in s:
        s = _fix_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _fix_a_slash_b(s)


def find_math_answer(s: str) -> str:
    """Upstream's `find_math_answer`: the boxed content (first "oxed{" to the last "}"), the
    value after "=", LaTeX and a few units removed, then `_strip_string`."""
    s = s.lower().replace("{}", "")
    boxed = re.findall("oxed{(.*)}", s, flags=re.S)
    ans = boxed[-1] if boxed else s
    if ans.find("}") != -1 and (ans.find("{") == -1 or ans.find("}") < ans.find("{")):
        ans = ans.split("}")[0]
    ans = ans.split("=")[-1].split("\\approx")[-1]
    for old, new in ((" ", ""), ("\\,", ""), ("∞", "\\infty"), ("+\\infty", "\\infty"),
                     ("\\\\", "\\"), ("\n", ""), ("\\text", ""), ("\\mbox", ""),
                     ("bmatrix", "pmatrix"), ("\\left", ""), ("\\right", ""), ("^{\\circ}", ""),
                     ("^\\circ", ""), ("{m}^3", ""), ("m^3", ""), ("{units}", ""), ("units", ""),
                     ("{km}", ""), ("km", "")):  # fmt: skip
        ans = ans.replace(old, new)
    return _strip_string(ans)


def extract_model_answer(response: str) -> str:
    """`evaluate()`'s clean-up of a response into `model_answer`."""
    answer = response.strip()
    for c in "ABCDE":
        if (answer.endswith((f" {c}.", f" ({c}).")) or
                answer.startswith((f"{c}\n", f"({c})\n", f"({c}) {c}\n"))):
            answer = c
    tail = answer.split("is ")[-1].rstrip(".")
    if _is_number(tail):
        answer = tail
    if "oxed{" not in answer:
        for flag in _FLAGS:
            for variant in (flag, flag.replace("the", "The")):
                raw = answer
                answer = answer.split(variant)[-1].strip()
                if variant in raw:
                    answer = answer.split("\n")[0].split(". ")[0]
    elif answer.count("oxed{") > 1:
        answer = "\\boxed{" + answer.split("oxed{")[-1]
    answer = find_math_answer(answer)
    for c in "abcde":
        answer = answer.replace(f"({c})", c)
    for c in "abcde":
        answer = answer.replace(f"{{{c}}}", c)
    return answer.rstrip(".").lstrip(":").strip()


def eval_tuple(s: str) -> str:
    """Upstream's `eval_tuple`: "(2*3, 5+2)" -> "(6,7)"; the original on any failure."""
    parts = s[1:-1].split(",")
    try:
        for open_, close in (("(", ")"), ("[", "]")):
            if s[0] == open_ and s[-1] == close and len(parts) > 1:
                inner = ",".join(p if "infty" in p or p in ("a", "-a")
                                 else str(round(latex2sympy_value(p), 2)) for p in parts)
                return f"{open_}{inner}{close}"
    except (ValueError, IndexError):
        return s
    return s


def is_equal(asw: str, gt_asw: str) -> bool:
    """Upstream's `is_equal`: same lowercased text, same evaluated tuple, or same value to 2
    decimals."""
    asw, gt_asw = asw.lower(), gt_asw.lower()
    if not asw.replace(" ", "") or not gt_asw.replace(" ", ""):
        return False
    if gt_asw.strip() == asw.strip():
        return True
    asw, gt_asw = eval_tuple(asw), eval_tuple(gt_asw)
    if gt_asw == asw:
        return True
    try:
        return round(latex2sympy_value(gt_asw), 2) == round(latex2sympy_value(asw), 2)
    except (ValueError, OverflowError):
        return False


def score_official(response: Any, answer: Any, options: Sequence[str] = ()) -> float:
    """1.0 when MATH-V's `evaluate` marks `response` correct for ground truth `answer` (a
    letter when there are `options`), else 0.0; never raises."""
    try:
        truth = str(answer)
        options = [str(o) for o in options or ()]
        value = ""
        if options:
            index = ord(truth) - ord("A") if len(truth) == 1 else -1
            if not 0 <= index < len(options):
                return 0.0  # upstream raises (IndexError/TypeError) on such a row
            value = options[index]
        model_answer = extract_model_answer(str(response or ""))
        return float(is_equal(truth, model_answer) or is_equal(value, model_answer))
    except Exception:  # a scorer never raises on model text
        return 0.0
