"""Every code block of the README (and of docs/tasks.md) runs as written, so a snippet cannot
drift from the code.

Blocks tagged `python`/`py` run as a script of the venv's Python, `bash`/`sh`/`shell` with
`bash -euo pipefail`, `console` its `$ ` lines; untagged blocks and other languages (text, yaml,
json) are not run. Each block runs in a fresh temporary directory that links the repository's
`examples/`, `scripts/`, `benchmarks/`, `docs/`, `tests/` and `.venv`, with the venv's `bin/`
first on PATH (so `axpo` and `python` are the venv's) and the Hugging Face hub offline.

An HTML comment right before a block's opening fence (blank lines between are fine) changes that:

    <!-- readme-test: skip (why it cannot run in CI) -->  not run; the reason is required and
                                                          pytest -rs lists it
    <!-- readme-test: continue -->                        runs in the directory of the block
                                                          before it, so it sees that block's files
    <!-- readme-test: file my_task.py -->                 the block is that file, written into the
                                                          directory (and run, if it is Python)

A skip is the exception (set-up that installs packages, a real checkpoint, a GPU, a server):
`MAX_SKIPPED` caps them, so adding one is a decision the diff shows. A failure names the file
and line of the block's opening fence.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "docs/tasks.md")
LINKED = ("examples", "scripts", "benchmarks", "docs", "tests", ".venv")
MAX_SKIPPED = 6
BLOCK_TIMEOUT_S = 420

LANGUAGES = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "shell": "bash",
             "console": "console"}
_FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")
_MARKER = re.compile(r"<!--\s*readme-test:\s*(.*?)\s*-->")
_COMMAND_LIKE = re.compile(r"^\$?\s*(axpo|python|pip|bash|\.venv/bin/)\b")


@dataclass
class Block:
    document: str
    line: int  # of the opening fence, 1-based
    language: str  # as tagged
    code: str
    skip: str | None = None  # the reason
    cont: bool = False
    file: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.document}:{self.line}"

    @property
    def kind(self) -> str | None:
        return LANGUAGES.get(self.language)


def parse(document: str) -> list[Block]:
    """Every fenced block of `document` with the markers before it."""
    lines = (ROOT / document).read_text(encoding="utf-8").splitlines()
    blocks, markers, i = [], [], 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            text = lines[i]
            while "readme-test:" in text and "-->" not in text and i + 1 < len(lines):
                i += 1  # a marker may span lines
                text += " " + lines[i].strip()
            found = _MARKER.search(text)
            if found:
                markers.append(found.group(1))
            elif text.strip():
                markers = []  # a marker belongs to the block right after it
            i += 1
            continue
        indent, start = fence.group(1), i
        body, i = [], i + 1
        while i < len(lines) and lines[i].strip() != "```":
            line = lines[i]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            i += 1
        block = Block(document, start + 1, fence.group(2).lower(), "\n".join(body) + "\n")
        for marker in markers:
            skip = re.fullmatch(r"skip\s*(?:\((.*)\))?", marker, re.S)
            named = re.fullmatch(r"file\s+(\S+)", marker)
            if skip:
                block.skip = (skip.group(1) or "").strip()
                if not block.skip:
                    block.problems.append("a skip marker without a reason: skip (why)")
            elif marker == "continue":
                block.cont = True
            elif named:
                block.file = named.group(1)
            else:
                block.problems.append(f"unknown marker {marker!r} (skip (why), continue, "
                                      "file NAME)")
        blocks.append(block)
        markers, i = [], i + 1
    return blocks


def sessions(blocks: list[Block]) -> list[list[Block]]:
    """Runnable blocks grouped: a block and the `continue` blocks after it."""
    out: list[list[Block]] = []
    for b in blocks:
        if b.skip is not None or (b.kind is None and b.file is None):
            continue
        if b.cont and out and out[-1][-1] is _previous_code(blocks, b):
            out[-1].append(b)
        else:
            out.append([b])
    return out


def _previous_code(blocks: list[Block], block: Block) -> Block | None:
    """The block before `block` in its document that runs or is skipped (not a diagram)."""
    before = [b for b in blocks[:blocks.index(block)] if b.document == block.document
              and (b.kind or b.file or b.skip is not None)]
    return before[-1] if before else None


ALL = [b for doc in DOCUMENTS for b in parse(doc)]
SESSIONS = [s for doc in DOCUMENTS for s in sessions([b for b in ALL if b.document == doc])]
SKIPPED = [b for b in ALL if b.skip is not None]


def test_markers_are_well_formed_and_skips_are_few():
    problems = [f"{b.where}: {p}" for b in ALL for p in b.problems]
    for b in ALL:
        if b.cont and (b.skip is not None or _previous_code(ALL, b) is None
                       or _previous_code(ALL, b).skip is not None):
            problems.append(f"{b.where}: 'continue' needs a block that runs right before it")
        if b.kind is None and b.file is None and b.skip is None and b.code.strip():
            first = b.code.strip().splitlines()[0]
            if _COMMAND_LIKE.match(first):
                problems.append(f"{b.where}: an untagged block that looks like a command "
                                f"({first[:40]!r}): tag it ```bash or ```python so it runs")
    assert not problems, "\n".join(problems)
    listed = "\n".join(f"  {b.where}: {b.skip}" for b in SKIPPED)
    assert len(SKIPPED) <= MAX_SKIPPED, (
        f"{len(SKIPPED)} blocks are skipped, more than MAX_SKIPPED={MAX_SKIPPED}; make the new "
        f"ones run (tiny sizes), or raise the cap knowingly:\n{listed}")


def test_no_block_of_the_your_own_task_walkthrough_is_skipped():
    """The walkthrough promises commands that run as written: all of them run here."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("## Your own task") + 1
    end = next((i + 1 for i in range(start, len(lines)) if lines[i].startswith("## ")),
               len(lines))
    inside = [b for b in ALL if b.document == "README.md" and start < b.line < end]
    assert len([b for b in inside if b.kind]) >= 4
    assert not [b.where for b in inside if b.skip is not None]


def _workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    for name in LINKED:
        if (ROOT / name).exists():
            (work / name).symlink_to(ROOT / name)
    return work


def _env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def _console(code: str) -> str:
    """The commands of a console block: its `$ ` lines and their continuation lines."""
    out, going_on = [], False
    for line in code.splitlines():
        if line.startswith("$ "):
            out.append(line[2:])
        elif going_on:
            out.append(line)
        else:
            continue
        going_on = line.rstrip().endswith("\\")
    return "\n".join(out) + "\n"


def _command(block: Block, work: Path) -> list[str] | None:
    if block.file:
        target = work / block.file
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.code, encoding="utf-8")
        if block.kind != "python":
            return None
        return [sys.executable, block.file]
    if block.kind == "python":
        script = work / f"_readme_block_{block.line}.py"
        script.write_text(block.code, encoding="utf-8")
        return [sys.executable, script.name]
    code = _console(block.code) if block.kind == "console" else block.code
    script = work / f"_readme_block_{block.line}.sh"
    script.write_text(code, encoding="utf-8")
    return ["bash", "-euo", "pipefail", script.name]


def _params():
    runs = [pytest.param(s, id=s[0].where) for s in SESSIONS]
    skips = [pytest.param([b], id=b.where, marks=pytest.mark.skip(reason=f"{b.where}: {b.skip}"))
             for b in SKIPPED]
    return sorted(runs + skips, key=lambda p: (DOCUMENTS.index(p.values[0][0].document),
                                               p.values[0][0].line))


@pytest.mark.parametrize("session", _params())
def test_block_runs(session: list[Block], tmp_path):
    work, env = _workdir(tmp_path), _env()
    for block in session:
        command = _command(block, work)
        if command is None:
            continue
        started = time.monotonic()
        try:
            out = subprocess.run(command, cwd=work, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired as e:
            tail = e.stdout[-3000:] if isinstance(e.stdout, str) else ""
            pytest.fail(f"{block.where}: the ```{block.language} block ran past "
                        f"{BLOCK_TIMEOUT_S} s; output's end:\n{tail}", pytrace=False)
        seconds = time.monotonic() - started
        print(f"{block.where}: {seconds:.1f} s")
        if out.returncode != 0:
            tail = out.stdout[-4000:]
            pytest.fail(f"{block.where}: the ```{block.language} block failed (exit "
                        f"{out.returncode}, {seconds:.0f} s); output's end:\n{tail}",
                        pytrace=False)
