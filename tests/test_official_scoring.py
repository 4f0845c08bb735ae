"""Each scorer's two modes on answers in the formats models write. Expected official verdicts
were derived by reading each benchmark's published scoring code (file and commit in each task
module's docstring), quirks included; the lenient column is axpo's documented RL reward."""

from __future__ import annotations

import contextlib
import math

import gymnasium as gym
import pytest

import axpo_env  # noqa: F401  (registers the envs)
from axpo_env.tasks.base import TaskItem
from axpo_env.tasks.dynamath import score_dynamath
from axpo_env.tasks.dynamath import score_official as dynamath_official
from axpo_env.tasks.hrmmsearch import HRMMSearch
from axpo_env.tasks.mathv_latex import NotANumber, latex2sympy_value
from axpo_env.tasks.mathverse import MathVerse
from axpo_env.tasks.mathvision import score_mathvision
from axpo_env.tasks.mathvision_official import score_official as mathv_official
from axpo_env.tasks.mmsearch import MMSearch
from axpo_env.tasks.scoring import score_answer
from axpo_env.tasks.scoring import score_official as mathvista_official
from axpo_env.tasks.visualprobe import official_rule_score, rule_score
from axpo_env.tasks.vlmeval_choices import score_choice
from axpo_env.tasks.wemath import score_official as wemath_official
from axpo_env.tasks.wemath import score_wemath

MODES = ("official", "lenient")

# ----------------------------------------------------------------------------- MATH-Vision
MV39 = ["red", "blue", "green", "Yellow", "This cannot be worked out for certain."]
MV91 = ["$6 \\mathrm{~m}$", "$8 \\mathrm{~m}$", "$10 \\mathrm{~m}$", "$11 \\mathrm{~m}$",
        "$12 \\mathrm{~m}$"]  # fmt: skip
MV_FRAC = ["$\\frac{1}{5}$", "$\\frac{6}{25}$", "$\\frac{1}{4}$", "$\\frac{7}{25}$",
           "$\\frac{1}{3}$"]  # fmt: skip


@pytest.mark.parametrize("response, answer, options, official, lenient", [
    ("1,536", "1536", [], 1, 1),  # latex2sympy reads thousands commas
    ("1:2", "\\frac{1}{2}", [], 1, 1),  # ... and a ratio
    ("45°", "45", [], 0, 1), ("45^\\circ", "45", [], 1, 1),  # only ^\circ is dropped upstream
    ("50%", "50", [], 0, 1), ("50\\%", "50", [], 1, 1),  # only \% is dropped upstream
    ("9π", "9\\pi", [], 0, 1), ("1e4", "10000", [], 0, 1),  # latex2sympy reads neither
    ("\\boxed{B}", "B", MV39, 1, 1), ("(A)", "A", MV39, 1, 1), ("Option A", "A", MV39, 0, 1),
    ("blue", "B", MV39, 1, 1), ("Blue", "B", MV39, 1, 1),
    ("The correct answer is C.", "C", MV39, 1, 1), ("The answer is 12.", "12", [], 1, 1),
    ("x = 61", "61", [], 1, 1), ("3 cm", "3", [], 0, 0),
    ("0.38", "\\frac{3}{8}", [], 1, 1), ("0.37", "\\frac{3}{8}", [], 0, 0),  # 2 decimals
    ("(3, 2)", "(3,2)", [], 1, 1), ("(2, 3)", "(3,2)", [], 0, 0),
    ("(4/2, 3)", "(2,3)", [], 0, 1),  # latex2sympy + eval: 4/2 is the float 2.0, printed "2.0"
    ("(2.0, 3)", "(2,3)", [], 1, 1), ("(3,-4.0)", "(3,-4)", [], 1, 1),  # "-4.0": Rational -4
    ("(3,-4)", "(3,-4.0)", [], 1, 1),
    ("$\\frac{6}{25}$", "B", MV_FRAC, 1, 1),  # the option verbatim: latex2sympy ignores $
    ("$6 \\sqrt{3}+4 \\pi$", "$6 \\sqrt{3}+4 \\pi$", [], 1, 1),  # the raw ground truth
    ("**The answer is 5 units.**", "5", [], 1, 1),  # "5.**": the parser stops at "."
    ("\\boxed{\\frac34}", "\\frac{3}{4}", [], 0, 1),  # \\frac needs braces in latex2sympy
    ("\\frac{-1}{1.5}", "-\\frac{2}{3}", [], 0, 1),  # sympy prints it "-1/3/2": -1/6
    ("\\sin(30)", "-0.99", [], 1, 0),  # radians, math.sin
    ("\\sqrt{20}", "2\\sqrt{5}", [], 1, 1), ("\\frac{1}{2}", "0.5", [], 1, 1),
    ("\\boxed{1} or \\boxed{2}", "2", [], 1, 1),  # the last box when there are several
    ("12 m", "E", MV91, 0, 1),  # the raw option text "$12 \mathrm{~m}$" never matches upstream
    ("", "61", [], 0, 0),
])  # fmt: skip
def test_mathvision(response, answer, options, official, lenient):
    assert mathv_official(response, answer, options) == official
    assert score_mathvision(response, answer, options) == lenient


# What the real latex2sympy2 1.9.1 + `eval(str(...))` in `from math import *` gave (recorded in a
# separate venv, its global symbol table already lost to a differential as in any real run).
UPSTREAM_EVAL = [
    ("$\\frac{6}{25}$", 0.24), ("6\\sqrt{3}+4\\pi", 22.958675459772437), ("-4.0", -4),
    ("4/2", 2.0), ("2.5", 2.5), ("1,536", 1536), ("1,5366", 9216), ("1:2", 0.5), ("5.**", 5),
    ("5)", 5), ("5 ones", 5), ("5cm", None), ("5*", None), ("2^-1", None), ("\\frac34", None),
    ("\\sqrt3", None), ("5\\circ", None), ("50\\%", 0.5), ("9π", None), ("1e4", None),
    ("e", None), ("e^{2}", 7.38905609893065), ("\\infty", None), ("|3|", None), ("x=5", None),
    ("1,2", None), ("2^{10}", 1024), ("\\sqrt[3]{8}", 2.0), ("(-8)^{1/3}", None),
    ("\\frac{-1}{1.5}", -0.16666666666666666), ("\\sin(30)", -0.9880316240928618),
    ("\\sin^{-1}0.5", 0.5235987755982989), ("\\log_2 8", 3.0), ("\\ln 5", None),
    ("\\binom{5}{2}", 10), ("3!", 6), ("\\lfloor 2.5\\rfloor", 2), ("5<6", True),
]  # fmt: skip


@pytest.mark.parametrize("text, expected", UPSTREAM_EVAL)
def test_latex2sympy_value_matches_upstream(text, expected):
    if expected is None:
        with pytest.raises(NotANumber):
            latex2sympy_value(text)
    else:
        value = latex2sympy_value(text)
        assert type(value) is type(expected) and value == pytest.approx(expected)


def test_latex2sympy_value_against_the_real_library():
    """Where latex2sympy2 is installed (not a dependency: it pins antlr4 4.7.2), compare."""
    l2s = pytest.importorskip("latex2sympy2")
    namespace = vars(math).copy()
    with contextlib.suppress(Exception):
        l2s.latex2sympy("dx")  # what every real run does to its symbol table early on
    for text, _ in UPSTREAM_EVAL:
        try:
            upstream = eval(str(l2s.latex2sympy(text)), namespace)  # noqa: S307 (fixed strings)
            round(upstream, 2)
        except Exception:
            upstream = None
        try:
            ours = latex2sympy_value(text)
        except NotANumber:
            ours = None
        assert (type(ours), ours) == (type(upstream), upstream), text


# ----------------------------------------------------------------------------- DynaMath
@pytest.mark.parametrize("response, answer, atype, official, lenient", [
    ("3.142", "3.1416", "float", 1, 1), ("3.1416 cm", "3.1416", "float", 1, 1),
    ("1π", "3.1416", "float", 1, 1), ("π", "3.1416", "float", 0, 1),  # float("") fails
    ("1,000", "1000", "float", 0, 1), ("3/4", "0.75", "float", 0, 1),
    ("3.15", "3.1416", "float", 0, 0),
    ("B", "B", "multiple choice", 1, 1), ("b", "B", "multiple choice", 0, 1),
    ("(B) 60°", "B", "multiple choice", 1, 1),
    ("AB", "B", "multiple choice", 1, 0), ("CAB", "B", "multiple choice", 1, 0),  # first three
    ("The answer is B", "B", "multiple choice", 0, 1),
    ("It is 3:30 pm", "3:30", "text", 1, 0),  # containment upstream; too long for lenient
    ("Red", "red", "text", 0, 1),  # case-sensitive upstream
])  # fmt: skip
def test_dynamath(response, answer, atype, official, lenient):
    assert dynamath_official(response, answer, atype) == official
    assert score_dynamath(response, answer, atype) == lenient


# ----------------------------------------------------------------------------- V*, HR-Bench
CHOICES = {"A": "red", "B": "blue", "C": "green", "D": "white"}


@pytest.mark.parametrize("response, official, lenient", [
    ("B", 1, 1), ("(B) blue", 1, 1), ("\\boxed{B}", 1, 1), ("blue", 1, 1),
    ("b", 0, 1),  # lower-case letters are not option words upstream
    ("B is my choice because the object in the image looks blue to me", 0, 1),  # not in last 4
    ("The answer is B. It is blue because the light hits it from the left side", 1, 1),
    ("The answer is a blue one", 0, 1),  # "answer is a" reads as A (case-insensitive regex)
    ("After zooming in on the top left corner of the image, the car looks clearly blue", 0, 1),
    ("It is blue, not green", 0, 0), ("A B", 0, 0), ("Answer: C", 0, 0),
    ("Cannot determine the answer", 0, 0),  # a refusal is Z
])  # fmt: skip
def test_vstar_and_hrbench_vlmevalkit_matching(response, official, lenient):
    assert score_choice(response, CHOICES, "B", "official") == official
    assert score_choice(response, CHOICES, "B", "lenient") == lenient


@pytest.mark.parametrize("response, official, lenient", [  # V* relative_position: 2 options
    ("A", 1, 1), ("(A) left", 1, 1), ("left", 1, 1), ("a", 0, 1), ("B", 0, 0),
    ("The object is on the left", 0, 1),  # over twice the options' length: no text match
    ("I think the answer is a", 1, 0),  # the case-insensitive "answer is" rule (2026-06)
])  # fmt: skip
def test_vstar_two_options(response, official, lenient):
    choices = {"A": "left", "B": "right"}
    assert score_choice(response, choices, "A", "official") == official
    assert score_choice(response, choices, "A", "lenient") == lenient


# ----------------------------------------------------------------------------- VisualProbe
@pytest.mark.parametrize("response, solution, official, lenient", [
    ("red", "red", 1, 1), (" red ", "red", 1, 1), ("Red", "red", 0, 1), ("red.", "red", 0, 1),
    ('"red"', "red", 0, 1), ("12 people", "12", 0, 0),
    ("(B) the left one", "B", 1, 1), ("B. left", "B", 1, 1), ("b", "B", 0, 1),
])  # fmt: skip
def test_visualprobe(response, solution, official, lenient):
    assert official_rule_score(response, solution) == official
    assert rule_score(response, solution) == lenient


# ----------------------------------------------------------------------------- search
@pytest.mark.parametrize("response, golds, official, lenient", [
    ("Paris", ["Paris"], 1, 1), ("paris.", ["Paris"], 1, 1), ("The Paris", ["Paris"], 1, 1),
    ("\\boxed{Paris}", ["Paris"], 0, 1), ("Answer: Paris", ["Paris"], 0, 1),
    ("It is Paris", ["Paris"], 0, 0), ("a", ["A"], 1, 1), ("1893", ["Paris", "1893"], 1, 1),
])  # fmt: skip
def test_hrmmsearch(response, golds, official, lenient):
    item = TaskItem("1", "q", (), golds[0], {"ground_truths": tuple(golds)})
    for mode, expected in zip(MODES, (official, lenient), strict=True):
        assert HRMMSearch(scoring=mode).score(item, response) == expected


@pytest.mark.parametrize("response, official, lenient", [
    ("Paris", 1, 1), ("Paris France", 1, 1), ("Answer: Paris", 2 / 3, 1),
    ("\\boxed{Paris}", 0, 1), ("Lyon", 0, 0), ("", 0, 0),
])  # fmt: skip
def test_mmsearch(response, official, lenient):
    item = TaskItem("1", "q", (), "Paris", {"alternative_gt_answers": ("Paris, France",)})
    for mode, expected in zip(MODES, (official, lenient), strict=True):
        assert MMSearch(scoring=mode).score(item, response) == pytest.approx(expected)


# ----------------------------------------------------------------------------- MathVista
MC = {"choices": ["3", "4", "5", "6"], "question_type": "multi_choice"}
INT, LIST = {"answer_type": "integer"}, {"answer_type": "list"}


@pytest.mark.parametrize("response, answer, kw, official, lenient", [
    ("B", "4", MC, 1, 1), ("(B) 4", "4", MC, 1, 1), ("4", "4", MC, 1, 1),
    ("b", "4", MC, 0, 1),  # not a letter upstream: nearest choice by edit distance is "3"
    ("I cannot tell 4", "4", MC, 1, 1),  # nearest choice wins
    ("5.0", "5", INT, 1, 1), ("1e3", "1000", INT, 1, 1), ("1,000", "1000", INT, 0, 1),
    ("\\boxed{5}", "5", INT, 0, 1), ("5 cm", "5", {**INT, "unit": "cm"}, 0, 1),
    ("1.25", "1.2", {"answer_type": "float", "precision": 1.0}, 1, 1),
    ("1.25", "1.25", {"answer_type": "float", "precision": None}, 0, 1),  # int(None) fails
    ("[1,2]", "[1, 2]", LIST, 0, 1), ("[1, 2]", "[1, 2]", LIST, 1, 1),
    ("a" * 2000 + "b", "b", {**MC, "choices": ["b", "a"]}, 1, 0),  # no cut before the distance
])  # fmt: skip
def test_mathvista(response, answer, kw, official, lenient):
    assert mathvista_official(response, answer, **kw) == official
    assert score_answer(response, answer, **kw) == lenient


# ----------------------------------------------------------------------------- MathVerse
@pytest.mark.parametrize("response, answer, qtype, official, lenient", [
    ("B", "B", "multi-choice", 1, 1), ("(B)", "B", "multi-choice", 0, 1),
    ("b", "B", "multi-choice", 0, 1), ("14", "14", "free-form", 1, 1),
    ("14 cm", "14", "free-form", 0, 1), (" 14", "14", "free-form", 0, 1),
    ("15", "14", "free-form", 0, 0),
])  # fmt: skip
def test_mathverse_quick_match(response, answer, qtype, official, lenient):
    item = TaskItem("1", "q", (), answer, {"question_type": qtype, "choices": {}})
    for mode, expected in zip(MODES, (official, lenient), strict=True):
        assert MathVerse(scoring=mode).score(item, response) == expected


# ----------------------------------------------------------------------------- We-Math
@pytest.mark.parametrize("response, official, lenient", [
    ("B", 1, 1), ("B. 40", 1, 1), ("<Answer>: <<B>>", 1, 1),
    ("Because the angle is 40", 1, 0),  # the first character is read
    ("(B)", 0, 1), ("answer: B", 0, 1), ("\\boxed{B}", 0, 1), ("C", 0, 0),
])  # fmt: skip
def test_wemath(response, official, lenient):
    assert wemath_official(response, "B") == official
    assert score_wemath(response, "B", 4) == lenient


# ----------------------------------------------------------------------------- the option
@pytest.mark.parametrize("env_id, form, official, lenient", [
    ("AXPO-MathVision-v0", "\\boxed{{{a}}}", 1, 1), ("AXPO-DynaMath-v0", "Answer: {a}", 0, 1),
    ("AXPO-MathVR-v0", "\\boxed{{{a}}}", 0, 1), ("AXPO-VStar-v0", "{low}", 0, 1),
    ("AXPO-VisualProbe-v0", "Answer: {a}", 0, 1), ("AXPO-HRBench4K-v0", "{low}", 0, 1),
    ("AXPO-HRMMSearch-v0", "Answer: {a}", 0, 1), ("AXPO-MMSearch-v0", "Answer: {a}", 2 / 3, 1),
    ("AXPO-MathVista-v0", "Answer: {a}", 0, 1), ("AXPO-MathVerse-v0", "Answer: {a}", 0, 1),
    ("AXPO-WeMath-v0", "{low}", 0, 1),
])  # fmt: skip
def test_gym_make_task_options_pick_the_mode(env_id, form, official, lenient):
    for mode, expected in zip(MODES, (official, lenient), strict=True):
        env = gym.make(env_id, task_options={"scoring": mode}).unwrapped
        assert env.task.scoring == mode
        env.reset(seed=0, options={"index": 0})
        a = str(env._item.answer)
        reward = env.step(f"<answer>{form.format(a=a, low=a.lower())}</answer>")[1]
        assert reward == pytest.approx(expected)
    assert gym.make(env_id).unwrapped.task.scoring == "lenient"  # the RL default
