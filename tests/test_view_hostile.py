"""`axpo view` and the recorder against hostile records (red-team issue 24, findings 8 and 11):
tampered fields never run a script in the page, a record of the wrong type is a visible note
instead of a traceback, broken text (lone surrogates, control characters) is repaired, and
the AXPO tree section is linear in the number of records."""

from __future__ import annotations

import copy
import json
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from axpo_view import Run, write_report
from axpo_view.html import render
from axpo_view.record import Recorder

MARK = "XSS-MARK"
PAYLOAD = f"<script>alert('{MARK}')</script>"


def episode(**fields: Any) -> dict[str, Any]:
    record = {
        "type": "episode", "id": "step1/g0/r0", "env": "E", "task_id": "t1", "step": 1,
        "role": "rollout", "group": 0, "question": "what?", "images": ["images/a.jpg"],
        "answer": "2",
        "reward": 0.0, "correct": False, "tool_calls": 1, "tool_errors": 1, "truncated": False,
        "error": None, "parent": [0, 3], "reference": "3",
        "turns": [{"text": "t", "thinking": "hm", "answer": None, "format_error": None,
                   "call": {"name": "crop", "arguments": {"bbox": [0, 0, 1, 1]}, "error": None},
                   "reply": {"text": "Cropped", "images": ["images/b.jpg"]}, "reward": 0.0,
                   "terminated": False, "truncated": False, "confidence": 0.5,
                   "crop": {"source": "images/a.jpg", "size": [4, 4], "box": [0, 0, 1, 1]}}],
    }
    record.update(fields)
    return record


def branch(**fields: Any) -> dict[str, Any]:
    record = {"type": "branch", "step": 1, "group": 0, "index": 0, "source": "step1/g0/r0",
              "turn": 0, "keep": 3, "score": 0.5, "prefix": "<tool_call>",
              "resamples": ["step1/g0/b0/k0"], "rewards": [1.0], "recovered": True}
    record.update(fields)
    return record


def resample() -> dict[str, Any]:
    return episode(id="step1/g0/b0/k0", role="resample", source="step1/g0/r0", parent=[0, 3],
                   correct=True, reward=1.0)


def report(tmp_path: Path, rows: list[Any], lines: list[str] = ()) -> str:
    """Write `rows` (and raw `lines`) as a trajectories folder; the report page's text."""
    folder = tmp_path / "run" / "trajectories"
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows) + "".join(line + "\n" for line in lines)
    (folder / "episodes.jsonl").write_text(text, encoding="utf-8")
    return write_report(tmp_path / "run").read_text(encoding="utf-8")


def put(record: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    record = copy.deepcopy(record)
    target = record
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return record


class Scripts(HTMLParser):
    def __init__(self, html: str):
        super().__init__()
        self.scripts, self.text = 0, []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.scripts += tag == "script"

    def handle_data(self, data):
        self.text.append(data)


# Each field a record's value reaches the page from, as (record kind, path in the record).
FIELDS = [("branch", (k,)) for k in ("step", "group", "index", "turn", "keep", "source",
                                     "prefix", "score", "recovered")] + [
    ("branch", ("resamples", 0)), ("branch", ("rewards", 0)),
    *[("episode", (k,)) for k in ("id", "env", "task_id", "step", "role", "question", "answer",
                                  "reference", "error", "reward", "correct", "tool_calls",
                                  "tool_errors", "truncated", "source", "parent", "group")],
    ("episode", ("images", 0)), ("episode", ("parent", 0)),
    *[("episode", ("turns", 0, k)) for k in ("text", "thinking", "answer", "format_error",
                                             "confidence", "reply", "call", "crop")],
    ("episode", ("turns", 0, "call", "name")), ("episode", ("turns", 0, "call", "arguments")),
    ("episode", ("turns", 0, "call", "error")), ("episode", ("turns", 0, "reply", "text")),
    ("episode", ("turns", 0, "reply", "images", 0)), ("episode", ("turns", 0, "crop", "source")),
    ("episode", ("turns", 0, "crop", "box", 0)),
]


@pytest.mark.parametrize(("kind", "path"), FIELDS, ids=lambda v: "/".join(map(str, v))
                         if isinstance(v, tuple) else v)
def test_a_script_in_any_field_is_escaped_never_run(tmp_path, kind, path):
    rows = [episode(), resample(), branch()]
    if kind == "branch":
        rows[2] = put(rows[2], path, PAYLOAD)
    else:  # the resample: shown in its episode, its branch and (as `source`) its tree
        if path[:2] == ("turns", 0) and "call" not in path:  # a turn that shows its text
            rows[1]["turns"][0].update(call=None, format_error="not a call")
        rows[1] = put(rows[1], path, PAYLOAD)
    page = report(tmp_path, rows)
    assert "<script>alert" not in page
    assert Scripts(page).scripts == 1  # the page's own filter script, none from the data


def test_a_script_in_a_summary_or_a_results_row_is_escaped(tmp_path):
    run = tmp_path / "eval"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({
        "k": 2, "benchmarks": {PAYLOAD: {"pass@1": PAYLOAD, "tasks": [PAYLOAD]}},
        "average": {"episodes": PAYLOAD}}))
    (run / "results.jsonl").write_text(json.dumps({
        "type": "episode", "env": PAYLOAD, "task_id": PAYLOAD, "sample": PAYLOAD,
        "response": PAYLOAD, "answer": PAYLOAD, "reward": 0.0, "correct": False,
        "tool_calls": 2, "tool_errors": 0, "truncated": False, "error": PAYLOAD}) + "\n")
    page = write_report(run).read_text(encoding="utf-8")
    assert "<script>alert" not in page and Scripts(page).scripts == 1
    assert page.count(PAYLOAD.replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#x27;"))


WRONG = [
    ("episode", ("tool_calls",), "3"), ("episode", ("tool_errors",), [1]),
    ("episode", ("question",), ["a", "list"]), ("episode", ("id",), 7),
    ("episode", ("id",), None), ("episode", ("step",), "1"), ("episode", ("turns",), "x"),
    ("episode", ("turns", 0), 1), ("episode", ("turns", 0, "reply"), ["x"]),
    ("episode", ("turns", 0, "call"), "crop"), ("episode", ("turns", 0, "thinking"), {"a": 1}),
    ("episode", ("turns", 0, "crop", "box"), [0, 1]), ("episode", ("turns", 0, "crop"), 3),
    ("episode", ("images",), "a.png"), ("episode", ("images", 0), 5),
    ("episode", ("parent",), "0"), ("episode", ("correct",), "yes"),
    ("episode", ("reward",), "1.0"), ("branch", ("step",), "1"), ("branch", ("step",), None),
    ("branch", ("rewards",), "x"), ("branch", ("resamples", 0), 3), ("branch", ("keep",), 1.5),
    ("branch", ("recovered",), "no"), ("branch", ("group",), True),
]


@pytest.mark.parametrize(("kind", "path", "value"), WRONG, ids=lambda v: repr(v)[:30])
def test_a_record_of_the_wrong_type_is_a_note_not_a_traceback(tmp_path, kind, path, value):
    rows = [episode(), resample(), branch()]
    if kind == "branch":
        rows[2] = put(rows[2], path, value)
    else:
        rows[1] = put(rows[1], path, value)
    page = Scripts(report(tmp_path, rows))
    body = " ".join(page.text)
    assert "1 record(s) with a field of the wrong type" in body
    assert "step1/g0/r0" in body  # the good records are still shown


def test_records_that_are_not_records_are_counted_not_raised(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    nested = json.dumps(episode(answer=json.loads("[" * 300 + "]" * 300)))
    page = Scripts(report(tmp_path, [episode(), [1, 2], "str", 3, None],
                          [deep, "{\"torn", nested]))
    body = " ".join(page.text)
    # a list, a string, 3, null, one too deep to parse, a torn line, one too deep to show
    assert "7 line(s) were not JSON records" in body
    assert "step1/g0/r0" in body


def test_a_summary_of_the_wrong_shape_is_a_note(tmp_path):
    for summary in ([1, 2], {"benchmarks": [1]}, {"benchmarks": {"b": 3}, "k": "2"},
                    {"average": "x", "k": 2.5}):
        run = tmp_path / f"eval{len(list(tmp_path.iterdir()))}"
        run.mkdir()
        (run / "summary.json").write_text(json.dumps(summary))
        (run / "results.jsonl").write_text(json.dumps({
            "type": "episode", "env": "E", "task_id": "t", "sample": 0, "response": "r",
            "tool_calls": "abc", "tool_errors": 0}) + "\n" + json.dumps({
            "type": "episode", "env": "E", "task_id": "t", "sample": 1, "response": ["r"]})
            + "\n" + json.dumps({"type": "episode", "env": "E", "task_id": "t", "sample": 2,
                                 "response": "fine", "tool_calls": 1}) + "\n")
        body = " ".join(Scripts(write_report(run).read_text(encoding="utf-8")).text)
        assert "summary.json" in body and "2 record(s) with a field of the wrong type" in body
        assert "E/t/2" in body


def test_lone_surrogates_and_control_characters_are_repaired(tmp_path):
    bad = episode(id="step1/g0/r0\ud800", question="a\udfffb\x00c\x1bd\x7f\x85",
                  turns=[{"thinking": "\ud83d", "reply": {"text": "x\ud800", "images": []},
                          "call": {"name": "s\udc80", "arguments": {"q\ud800": "\ud800"}}}])
    raw = json.dumps(bad)  # ASCII with \ud800-style escapes, as a server could send
    assert "\\ud800" in raw
    folder = tmp_path / "run" / "trajectories"
    folder.mkdir(parents=True)
    (folder / "episodes.jsonl").write_bytes(raw.encode() + b"\n" + b"{\"id\": \"\xff\xfe\"}\n")
    page = write_report(tmp_path / "run").read_text(encoding="utf-8")
    assert "step1/g0/r0\ufffd" in page and "a\ufffdb" in page
    for c in ("\x00", "\x1b", "\x7f", "\x85"):
        assert c not in page
    assert "\u2400" in page and "\u241b" in page  # NUL and ESC shown as their pictures


def test_the_recorder_repairs_lone_surrogates_on_write(tmp_path):
    rec = Recorder(tmp_path / "trajectories")
    row = {"type": "episode", "id": "x\ud800", "question": "a\udfffb", "pair": "\ud83d\ude00",
           "turns": [{"reply": {"text": "search result \udc80", "images": []}}],
           "\ud800key": 1}
    rec.write([row])
    rec.write([row])  # a rerun appends the same episode again
    lines = (tmp_path / "trajectories" / "episodes.jsonl").read_bytes().decode("utf-8")
    rows = [json.loads(line) for line in lines.splitlines()]
    assert len(rows) == 2
    assert rows[0]["id"] == "x\ufffd" and rows[0]["question"] == "a\ufffdb"
    assert rows[0]["pair"] == "\U0001f600"  # a surrogate pair is the character it encodes
    assert rows[0]["turns"][0]["reply"]["text"] == "search result \ufffd"
    assert rows[0]["\ufffdkey"] == 1


class Counted(list):
    """A list that counts how often it is walked."""

    walks = 0

    def __iter__(self):
        Counted.walks += 1
        return super().__iter__()


def training_records(steps: int, groups: int, text: str = "") -> list[dict[str, Any]]:
    """Per step and group: two rollouts, one branch from the first, one resample."""
    rows = []
    for s in range(1, steps + 1):
        for g in range(groups):
            ids = [f"step{s}/g{g}/r0", f"step{s}/g{g}/r1", f"step{s}/g{g}/b0/k0"]
            for i, rid in enumerate(ids):
                rows.append({"type": "episode", "id": rid, "env": "E", "task_id": f"t{g}",
                             "step": s, "role": "resample" if i == 2 else "rollout",
                             "question": text, "images": [], "reward": float(i == 2),
                             "correct": i == 2, "tool_calls": 1, "tool_errors": 0,
                             "truncated": False, "error": None, "answer": "1",
                             "source": ids[0] if i == 2 else None,
                             "turns": [{"text": text, "thinking": text, "answer": "1",
                                        "reply": {"text": "", "images": []}}]})
            rows.append({"type": "branch", "step": s, "group": g, "index": 0,
                         "source": ids[0], "turn": 0, "keep": 3, "score": 0.5,
                         "prefix": text, "resamples": [ids[2]], "rewards": [1.0],
                         "recovered": True})
    return rows


def walks(steps: int, groups: int) -> int:
    rows = training_records(steps, groups)
    run = Run(Path("run"), Path("run"),
              episodes=Counted(r for r in rows if r["type"] == "episode"),
              branches=Counted(r for r in rows if r["type"] == "branch"))
    Counted.walks = 0
    render(run, Path("run/report.html"))
    return Counted.walks


def test_the_axpo_tree_walks_the_records_a_fixed_number_of_times():
    # a renderer that scans every record per step or per group walks them once per step or
    # group; a linear one walks them the same few times however many steps there are
    assert walks(2, 2) == walks(20, 8) <= 10


def test_a_big_training_run_renders_in_seconds(tmp_path):
    # 600 steps x 16 groups, as the red team's 11 MB file (which took 104 s to render)
    rows = training_records(600, 16, text="x" * 40)
    start = time.perf_counter()
    page = report(tmp_path, rows)
    elapsed = time.perf_counter() - start
    assert page.count("class='tree'") == 600 * 16
    assert elapsed < 20, f"{elapsed:.1f} s"


def test_an_image_path_the_file_system_refuses_is_a_missing_image(tmp_path):
    page = Scripts(report(tmp_path, [episode(images=["x" * 5000, "images/../" * 600])]))
    assert " ".join(page.text).count("image missing") >= 2


def test_a_results_file_given_as_a_file_shows_its_episodes(tmp_path):
    rows = [{"type": "config", "env": "E", "config": {}}] + [
        {"type": "episode", "env": "E", "task_id": "t", "index": 0, "sample": s, "seed": s,
         "correct": s == 0, "reward": float(s == 0), "answer": "4", "tool_calls": 1,
         "tool_errors": 0, "format_errors": 0, "turns": 2, "truncated": False, "error": None,
         "response": f"answer {s}"} for s in range(2)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    body = " ".join(Scripts(write_report(tmp_path / "results.jsonl").read_text()).text)
    assert "E/t/0" in body and "E/t/1" in body and "from results.jsonl" in body
