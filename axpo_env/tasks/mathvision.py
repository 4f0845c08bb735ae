"""MATH-Vision (`MathLLMs/MathVision`): competition math problems whose figures carry the data.

Loads the published schema (`id, question, options, image, decoded_image, answer, solution,
level, subject`) from the HF parquet layout (`data/<split>-*.parquet`), the GitHub layout
(`data/<split>.jsonl` with `images/` beside `data/`), JSON/JSONL records, or the hub name.

Scoring, `scoring="official"`: `mathvision_official.score_official`, MATH-V's own
`evaluation/evaluate.py` + `utils.py` (github.com/mathllm/MATH-V, commit 1d361180) step by step:
the answer cleaned as `evaluate()` and `find_math_answer` do, then
`is_equal(gt_letter, answer) or is_equal(gt_option_text, answer)`, values computed as
latex2sympy2 + eval compute them (`mathv_latex`).

`scoring="lenient"` (the RL default), `score_mathvision` below. Where it departs from upstream,
every departure but the last accepting more:
- an option letter is read from "(B)", "Option B", "B. text", "\\boxed{B}" and compared with
  the ground-truth letter directly (upstream only recognises a few layouts such as "... B.");
- the ground truth goes through the same cleaning as the answer (upstream leaves
  "$6 \\mathrm{~m}$" raw, so nothing matches it);
- the answer is unwrapped by `scoring.clean_answer` ("Answer:", the last `\\boxed{}`,
  `\\text{}`/`\\mathrm{}`), and "°", "%", "\\%", "$", "≈" and the units "km", "m^3", "units"
  are dropped (upstream drops "^\\circ", "\\%" and "$" only, so "45°" and "50%" never match);
- "π" counts as \\pi and e-notation ("1e4") as a number, which latex2sympy reads as neither;
- functions (\\sin, \\log) are not evaluated: upstream evaluates them (in radians).
Both modes read thousands commas ("1,536") and ratios ("1:2") as latex2sympy does. Lenient
numbers are evaluated by a whitelisted arithmetic AST (`latex_value`), never by `eval`.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from axpo_env.errors import DatasetError
from axpo_env.tasks.base import FIXTURES, LazyItems, Task, TaskItem
from axpo_env.tasks.loading import column, decode_image, load_rows, unique_ids
from axpo_env.tasks.math_choices import LETTERS, option_letter
from axpo_env.tasks.scoring import clean_answer

REQUIRED_COLUMNS = ("id", "question", "options", "answer")
IMAGE_COLUMNS = ("decoded_image", "image")
_MAX_EXPR = 200  # longer "numbers" are not numbers; bounds parsing work
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


# ----------------------------------------------------------------------------- answers
def normalize_math_answer(text: Any) -> str:
    """MATH-V's `find_math_answer` + `_strip_string`: the comparable core of an answer."""
    s = clean_answer(text).lower().replace("{}", "")
    s = re.split(r"=|\\approx|≈", s)[-1]
    s = re.sub(r"\\(?:mathrm|mathbf|textbf|text|mbox)\s*\{([^{}]*)\}", r"\1", s)
    for old, new in (("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("∞", "\\infty"),
                     ("+\\infty", "\\infty"), ("\\\\", "\\"), ("bmatrix", "pmatrix")):
        s = s.replace(old, new)
    for junk in ("\\left", "\\right", "\\!", "\\,", "\\;", "\\quad", "^{\\circ}", "^\\circ", "°",
                 "\\text", "\\mbox", "\\$", "$", "\\%", "%", "{m}^3", "m^3", "{units}", "units",
                 "{km}", "km", "~", "\n", " "):  # fmt: skip
        s = s.replace(junk, "")
    s = re.sub(r"(?<![a-z}])[({]([a-e])[)}]", r"\1", s)  # "(b)" -> "b", not \frac{a}
    s = s.rstrip(".").lstrip(":").strip()
    return "0" + s if s.startswith(".") else s


def _group(s: str, i: int) -> tuple[str, int] | None:
    """The `{...}` group (or single character) starting at `s[i]`, and the index after it."""
    if i >= len(s):
        return None
    if s[i] != "{":
        return s[i], i + 1
    depth = 0
    for j in range(i, len(s)):
        depth += {"{": 1, "}": -1}.get(s[j], 0)
        if depth == 0:
            return s[i + 1 : j], j + 1
    return None


def _latex_to_python(s: str) -> str | None:
    """LaTeX arithmetic as Python arithmetic text, or None when it is not arithmetic."""
    for _ in range(20):  # \frac and \sqrt, innermost-last; bounded
        m = re.search(r"\\(frac|sqrt)", s)
        if not m:
            break
        i = m.end()
        if m.group(1) == "frac":
            a = _group(s, i)
            b = _group(s, a[1]) if a else None
            if not (a and b):
                return None
            s = f"{s[:m.start()]}(({a[0]})/({b[0]})){s[b[1]:]}"
        else:
            root = "2"
            if s[i : i + 1] == "[":
                close = s.find("]", i)
                if close < 0:
                    return None
                root, i = s[i + 1 : close], close + 1
            a = _group(s, i)
            if not a:
                return None
            s = f"{s[:m.start()]}(({a[0]})**(1/({root}))){s[a[1]:]}"
    s = s.replace("\\pi", "pi").replace("π", "pi").replace("\\cdot", "*").replace("\\times", "*")
    s = s.replace("\\div", "/").replace("^", "**").replace("{", "(").replace("}", ")")
    if "\\" in s:
        return None
    return re.sub(r"(?<=[\d)])(?=pi|e(?![+\-]?\d)|\()", "*", s)  # 2pi, 3(4), (1)(2)


_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
           ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}  # fmt: skip


def _eval_node(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return float(node.value)
    if isinstance(node, ast.Name) and node.id in ("pi", "e"):
        return math.pi if node.id == "pi" else math.e
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _eval_node(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_eval_node(node.left), _eval_node(node.right))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        base, exp = _eval_node(node.left), _eval_node(node.right)
        if abs(exp) > 64 or abs(base) > 1e12:
            raise ValueError("power too large")
        return math.pow(base, exp)
    raise ValueError(f"not arithmetic: {type(node).__name__}")


def latex_value(text: Any) -> float | None:
    """The number a short LaTeX/plain expression denotes ("\\frac{3}{8}", "2\\sqrt{5}", "9π",
    "1.5e3", "1,536", "1:2"), else None. Whitelisted AST only: nothing is executed.

    Thousands commas and a ratio "a:b" are read as latex2sympy reads them (MATH-V's evaluator;
    the official mode uses `mathv_latex.latex2sympy_value`, which follows it exactly)."""
    s = str(text).strip()
    if not s or len(s) > _MAX_EXPR:
        return None
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    if s.count(":") == 1:
        num, den = (latex_value(part) for part in s.split(":"))
        return num / den if num is not None and den else None
    try:
        value = float(s)
    except ValueError:
        try:
            code = _latex_to_python(s.lower())
            value = _eval_node(ast.parse(code, mode="eval").body) if code else math.nan
        except Exception:  # SyntaxError, ValueError, ZeroDivisionError, OverflowError, ...
            return None
    return value if isinstance(value, float) and math.isfinite(value) else None


def _tuple_key(s: str) -> str:
    """MATH-V's `eval_tuple`: "(2*3, 5+2)" -> "(6.0,7.0)"; other text unchanged."""
    pairs = {"(": ")", "[": "]"}
    if len(s) < 3 or pairs.get(s[0]) != s[-1] or "," not in s:
        return s
    parts = []
    for part in s[1:-1].split(","):
        v = None if "infty" in part or part in ("a", "-a") else latex_value(part)
        parts.append(part if v is None else str(round(v, 2)))
    return s[0] + ",".join(parts) + s[-1]


def math_equal(truth: Any, answer: Any) -> bool:
    """MATH-V's `is_equal` on cleaned answers: same text, same tuple, or same value to 2
    decimals. Never raises."""
    try:
        a, b = normalize_math_answer(answer), normalize_math_answer(truth)
        if not a or not b:
            return False
        if a == b or _tuple_key(a) == _tuple_key(b):
            return True
        va, vb = latex_value(a), latex_value(b)
        return va is not None and vb is not None and round(va, 2) == round(vb, 2)
    except Exception:  # a reward must not crash a training step on odd input
        return False


def score_mathvision(response: Any, answer: Any, options: Sequence[str] = ()) -> float:
    """1.0 when `response` matches the ground-truth letter or its option's text, else 0.0."""
    truth = str(answer or "").strip()
    if not truth or response is None:
        return 0.0
    options = [str(o) for o in options or ()]
    if options:
        letter = option_letter(response, len(options))
        if letter is not None:
            return float(letter == truth.upper())
        idx = LETTERS.find(truth.upper()) if len(truth) == 1 else -1
        value = options[idx] if 0 <= idx < len(options) else ""
        return float(math_equal(truth, response) or math_equal(value, response))
    return float(math_equal(truth, response))


# ----------------------------------------------------------------------------- task
def build_query(question: str, options: Sequence[str]) -> str:
    """The question with its choices as MATH-V's inference scripts write them; when the choices
    are only letters (drawn in the figure) the letters are named."""
    if not options:
        return question
    letters = LETTERS[: len(options)]
    if "".join(options) == letters:
        return f"{question}\nChoices: {', '.join(letters)} (shown in the image)"
    lines = "\n".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(options))
    return f"{question}\n{lines}"


class MathVision(Task):
    """MATH-Vision as an env task.

    `data_dir`: None (the bundled fixture), a folder or file in the HF layout
    (`data/<split>-*.parquet`), the GitHub layout (`data/<split>.jsonl`, `images/<id>.jpg`),
    JSON/JSONL records, or the hub name `"MathLLMs/MathVision"`. Splits: `testmini`, `test`.
    """

    env_id: ClassVar[str] = "AXPO-MathVision-v0"
    default_split: ClassVar[str] = "testmini"
    default_tools: ClassVar[tuple[str, ...]] = ("crop", "python", "calculator")
    instructions: ClassVar[str] = (
        "Solve the competition math problem; the figure holds data the text leaves out. Zoom "
        "in with `crop` on small labels and use `python` or `calculator` for arithmetic. Give "
        "only the final answer: the option letter for a multiple-choice question, otherwise a "
        "number or a simple expression such as 3/8, 2\\sqrt{5} or (3, 2)."
    )

    def load_items(self) -> Sequence[TaskItem]:
        source = FIXTURES / "mathvision" if self.data_dir is None else self.data_dir
        rows, base = load_rows(
            "MATH-Vision", source, self.split, required=REQUIRED_COLUMNS,
            any_of=[IMAGE_COLUMNS], id_column="id", schema="MathLLMs/MathVision",
        )
        ids = unique_ids([str(i) for i in column(rows, "id")], "MATH-Vision", "ids")
        return LazyItems(rows, ids, lambda row: self._build(row, base))

    def _build(self, row: Mapping[str, Any], base: Path | None) -> TaskItem:
        qid = str(row["id"])
        options = [str(o) for o in (row.get("options") if row.get("options") is not None else [])]
        answer = str(row.get("answer") or "").strip()
        if options and not (len(answer) == 1 and 0 <= LETTERS.find(answer) < len(options)):
            raise DatasetError(
                f"MATH-Vision id {qid!r}: answer {answer!r} is not one of the option letters "
                f"{LETTERS[:len(options)]}"
            )
        metadata = {
            "id": qid, "options": options, "level": row.get("level"),
            "subject": row.get("subject"), "solution": row.get("solution"),
            "image": row.get("image") if isinstance(row.get("image"), str) else None,
        }  # fmt: skip
        image = _image_source(row, base)
        return TaskItem(
            task_id=qid,
            question=build_query(str(row.get("question") or ""), options),
            images=(decode_image(image, base, f"MATH-Vision id {qid!r}"),),
            answer=answer,
            metadata=metadata,
        )

    def score(self, item: TaskItem, response: str) -> float:
        """MATH-V's rule in the task's scoring mode: 1.0 or 0.0, never an exception."""
        options = item.metadata.get("options") or ()
        if self.scoring == "official":
            from axpo_env.tasks.mathvision_official import score_official

            return score_official(response, item.answer, options)
        return score_mathvision(response, item.answer, options)


def _image_source(row: Mapping[str, Any], base: Path | None) -> Any:
    """`decoded_image` when present, else the `image` path, which in the GitHub layout is
    relative to the folder above `data/`."""
    src = row.get("decoded_image")
    if isinstance(src, Mapping) and not src.get("bytes") and not src.get("path"):
        src = None
    if src is not None:
        return src
    path = row.get("image")
    if isinstance(path, str) and base is not None and not (base / path).is_file():
        if (base.parent / path).is_file():
            return str(base.parent / path)
    return path
