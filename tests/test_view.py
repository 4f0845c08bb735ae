"""`axpo view`: the report of an eval run and of an AXPO step shows every episode, its images,
its crop boxes and the branch tree; bad input is a clear error; the page loads in a browser."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from agents.policy import Completion
from axpo_cli.cli import main
from axpo_env import render_answer, render_tool_call
from axpo_env.tasks.mathvista import MathVista
from axpo_view import ViewError, write_report
from evaluation.evaluate import EvalConfig, run_eval

VISTA = "AXPO-MathVista-v0"
BOX = [0.1, 0.2, 0.6, 0.7]


class CropThenAnswer:
    """Conversation-level policy: crops BOX of the task image, then answers; the second sample
    of every item answers wrong, the first right. A third plan calls an unknown tool."""

    def __init__(self, answers: dict[str, str]):
        self.answers, self.seen = answers, {}

    def generate(self, conversations, n=1, sampling=None):
        return [[Completion(self._turn(c["messages"]))] * n for c in conversations]

    def _turn(self, messages):
        user = next(m for m in messages if m["role"] == "user")
        question = "".join(p.get("text", "") for p in user["content"] if p["type"] == "text")
        mine = [m for m in messages if m["role"] == "assistant"]
        if not mine:
            s = self.seen[question] = self.seen.get(question, -1) + 1
            name = "no_such_tool" if s == 2 else "crop"
            return f"<think>plan={s} look closer</think>\n" + render_tool_call(
                name, {"bbox": BOX, "image_index": 0})
        plan = int(re.search(r"plan=(\d)", str(mine[0]["content"])).group(1))
        return "<think>read it</think>\n" + render_answer(
            self.answers[question] if plan == 0 else "-4242")


class Parsed(HTMLParser):
    """Elements by class and id, image sources and the visible text of the page."""

    def __init__(self, html: str):
        super().__init__()
        self.ids, self.classes, self.images, self.text = {}, {}, [], []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids[a["id"]] = a
        for c in (a.get("class") or "").split():
            self.classes.setdefault(c, []).append(a)
        if tag == "img":
            self.images.append(a["src"])

    def handle_data(self, data):
        self.text.append(data)

    @property
    def body(self) -> str:
        return " ".join(self.text)


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("view") / "eval"
    items = MathVista().items
    cfg = EvalConfig(model="scripted", envs=[VISTA], samples=3, limit=2, max_turns=3,
                     batch_size=4, output_dir=str(out), save_trajectories=True)
    run_eval(cfg, CropThenAnswer({it.question: it.answer for it in items}), progress=False)
    return out, items


def test_eval_report_shows_every_episode_with_its_images_and_crop_box(eval_run):
    out, items = eval_run
    page = write_report(out)
    assert page == out / "report.html"
    html = Parsed(page.read_text())
    episodes = html.classes["episode"]
    assert len(episodes) == 2 * 3  # items x samples
    ids = {f"ep-{VISTA}_{items[i].task_id}_{s}" for i in range(2) for s in range(3)}
    assert {a["id"] for a in episodes} == ids
    assert sorted(a["data-correct"] for a in episodes) == ["0"] * 4 + ["1"] * 2
    assert sorted(a["data-errors"] for a in episodes) == ["0"] * 4 + ["1"] * 2
    assert all(a["data-tool"] == "1" for a in episodes)
    for src in html.images:  # every image is a file next to the report, none missing
        assert (out / src).is_file(), src
    assert "missing" not in html.classes
    # per successful crop: the source with a box at BOX (percent), beside the zoomed result
    boxes = html.classes["box"]
    assert len(boxes) == 4
    assert "left:10.00%;top:20.00%;width:50.00%;height:50.00%" in boxes[0]["style"]
    assert html.body.count("zoomed result") == 4
    assert items[0].question[:40] in html.body and str(items[0].answer) in html.body
    assert "Pass@1".lower() in html.body.lower() and "summary" in html.ids
    assert len(html.classes["thinking"]) == 6 * 2  # collapsible, one per turn


def test_images_are_saved_once_each(eval_run):
    out, items = eval_run
    images = list((out / "trajectories" / "images").iterdir())
    rows = [json.loads(line) for line in (out / "trajectories" / "episodes.jsonl").open()]
    referenced = {im for r in rows for im in r["images"]} | {
        im for r in rows for t in r["turns"] for im in t["reply"]["images"]}
    assert len(images) == len(referenced)
    distinct = {items[i].images[0].tobytes() for i in range(2)}
    # each distinct task image once, and its crop (same box, same pixels) once, however many
    # episodes show them
    assert len(images) == 2 * len(distinct)
    assert sum(len(r["images"]) for r in rows) == 6


def test_report_filters_and_missing_image_placeholder(eval_run, tmp_path):
    out, _ = eval_run
    copy = tmp_path / "copy"
    (copy / "trajectories").mkdir(parents=True)
    lines = (out / "trajectories" / "episodes.jsonl").read_text().splitlines()
    (copy / "trajectories" / "episodes.jsonl").write_text("\n".join(lines) + "\n{\"torn")
    html = Parsed(write_report(copy).read_text())
    assert len(html.classes["episode"]) == 6
    assert html.classes["missing"]  # the images folder was not copied: a visible placeholder
    assert "1 line(s) were not JSON" in html.body
    (filters,) = html.classes["filters"]
    page = (copy / "report.html").read_text()
    for name in ("env", "outcome", "tool", "errors", "truncated"):  # the filters that matter
        assert f"name='{name}'" in page
    assert f"<option value='{VISTA}'>" in page  # benchmarks to pick from


class Garbled:
    """A policy whose first turn is neither call nor answer, with terminal escapes, NUL and BEL
    in it; its second a call that is not JSON; its third an answer."""

    TEXT = "colour \x1b[31mred\x1b[0m, nul \x00, bell \x07, tab\tand\nnewline"

    def generate(self, conversations, n=1, sampling=None):
        turns = [self.TEXT, "<tool_call>{not json \x1b}</tool_call>", render_answer("1")]
        return [[Completion(turns[sum(m["role"] == "assistant" for m in c["messages"])])] * n
                for c in conversations]


def test_a_format_error_is_shown_once_and_control_characters_visibly(tmp_path):
    out = tmp_path / "eval"
    cfg = EvalConfig(model="scripted", envs=[VISTA], samples=1, limit=1, max_turns=4,
                     output_dir=str(out), save_trajectories=True)
    run_eval(cfg, Garbled(), progress=False)
    page = write_report(out).read_text(encoding="utf-8")
    body = Parsed(page).body
    # the env sends the error back as the next message; the page shows it once, as the error
    assert body.count("No tool call or final answer found") == 1
    assert body.count("The tool call is not valid JSON") == 1
    for c in ("\x1b", "\x00", "\x07"):  # never raw in the page, always shown
        assert c not in page
    assert "colour \u241b[31mred\u241b[0m, nul \u2400, bell \u2407, tab\tand\nnewline" in body
    assert "&lt;tool_call&gt;{not json \u241b}" in page  # the call that could not be read


def test_view_errors_are_one_line_not_tracebacks(tmp_path, capsys):
    assert main(["view", str(tmp_path / "nope")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    with pytest.raises(ViewError, match="nothing to show"):
        write_report(tmp_path)


def test_cli_view_prints_the_report_path(eval_run, capsys, tmp_path):
    out, _ = eval_run
    target = tmp_path / "r" / "page.html"
    assert main(["view", str(out), "--out", str(target)]) == 0
    assert capsys.readouterr().out.strip() == str(target)
    html = Parsed(target.read_text())
    for src in html.images:  # links still resolve from another folder
        assert (target.parent / src).resolve().is_file()


def test_viewer_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, axpo_view, axpo_view.record; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


def chromium(page: Path, screenshot: Path) -> tuple[str, list[str]]:
    """Load `page` from disk in headless Chromium: its DOM after the script ran, the console
    messages it logged, and a screenshot. Skips (saying why) where Chromium is not installed;
    scripts/setup.sh installs it, so CI runs this."""
    import shutil
    import subprocess

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("headless Chromium not installed (apt-get install chromium; "
                    "scripts/setup.sh does it as root)")
    flags = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--enable-logging=stderr", "--v=0", "--window-size=1200,1400"]
    url = page.resolve().as_uri()
    dom = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True, timeout=120)
    shot = subprocess.run(flags + [f"--screenshot={screenshot}", url], capture_output=True,
                          text=True, timeout=120)
    console = [line for line in (dom.stderr + shot.stderr).splitlines() if ":CONSOLE" in line]
    assert screenshot.is_file() and screenshot.stat().st_size > 1000
    return dom.stdout, console


def test_report_loads_in_a_real_browser_without_console_errors(eval_run, tmp_path):
    out, items = eval_run
    dom, console = chromium(write_report(out), tmp_path / "eval.png")
    assert console == []  # no script error, no image that failed to load
    page = Parsed(dom)
    assert f"ep-{VISTA}_{items[0].task_id}_0" in page.ids
    assert items[0].question[:40] in page.body
    assert re.search(r"id=\"shown\">6<", dom)  # the filter script ran and counted


def test_a_browser_reports_an_image_deleted_after_the_report_was_written(eval_run, tmp_path):
    import shutil

    out, _ = eval_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    page = write_report(copy)
    victim = next((copy / "trajectories" / "images").iterdir())
    victim.unlink()
    _, console = chromium(page, tmp_path / "broken.png")
    assert console and all("image not found" in line for line in console)
    assert any(victim.name in line for line in console)


class XmlCropThenAnswer(CropThenAnswer):
    """CropThenAnswer writing its calls as Qwen3.5 does (`tool_call_format="qwen3_coder"`)."""

    def _turn(self, messages):
        from axpo_env.protocol import convert_tool_calls

        return convert_tool_calls(super()._turn(messages), "qwen3_coder")


def test_a_qwen3_coder_run_shows_its_calls_as_calls(tmp_path):
    out = tmp_path / "xml"
    items = MathVista().items
    cfg = EvalConfig(model="scripted", envs=[VISTA], samples=1, limit=1, max_turns=3,
                     output_dir=str(out), save_trajectories=True, tool_call_format="qwen3_coder")
    run_eval(cfg, XmlCropThenAnswer({it.question: it.answer for it in items}), progress=False)
    [row] = [json.loads(line) for line in (out / "trajectories" / "episodes.jsonl").open()]
    first = row["turns"][0]
    assert "<function=crop>" in first["text"] and first["format_error"] is None
    assert first["call"] == {"name": "crop", "arguments": {"bbox": BOX, "image_index": 0},
                             "error": None}  # typed by the crop's schema
    html = Parsed(write_report(out).read_text())
    assert re.search(r"tool call:\s+crop", html.body) and row["correct"]
    assert len(html.classes["box"]) == 1  # the crop drawn on the task image
