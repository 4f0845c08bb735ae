"""One static HTML page for a `Run`: summary and charts, filters, every episode, AXPO trees.

The page is a single file with its CSS and script inline; images stay files (the recorded
`images/` folder, eval charts) referenced by relative path, so the page opens from disk without
a server and does not copy each image into itself. Every value from a record is escaped
(`_e`), numbers included, and the page is made valid text (`load.clean_text`); rendering is
linear in the number of records (the AXPO trees index them once).
"""

from __future__ import annotations

import json
import os
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from axpo_view.assets import CSS, JS
from axpo_view.load import Run, clean_text

_SUMMARY_KEYS = ("tasks", "episodes", "pass@1", "tool_use_rate", "tool_error_rate",
                 "all_wrong_tool_share", "mean_turns", "truncated", "errors")


def render(run: Run, out: Path) -> str:
    """The report page for `run`, with image links relative to `out`'s folder."""
    page = _Page(run, out.parent)
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>axpo view: {escape(run.path.name)}</title><style>{CSS}</style></head>"
             f"<body><header><h1>axpo view: {escape(str(run.path))}</h1>"
             f"{len(run.episodes)} episodes, {len(run.branches)} AXPO branches</header><main>"]
    parts += [f"<p class='badge warn'>{escape(w)}</p>" for w in run.warnings]
    parts.append(page.summary())
    parts.append(page.training())
    parts.append(page.filters())
    parts.append("<section id='episodes'><h2>Episodes (<span id='shown'>"
                 f"{len(run.episodes)}</span> shown)</h2>")
    parts += [page.episode(e) for e in run.episodes]
    parts.append(f"</section></main><script>{JS}</script></body></html>")
    return clean_text("".join(parts))


class _Page:
    def __init__(self, run: Run, here: Path):
        self.run, self.here = run, here
        self.by_id = {e["id"]: e for e in run.episodes}

    # ------------------------------------------------------------------------- top of page

    def summary(self) -> str:
        s = self.run.summary
        if not s and not self.run.charts:
            return ""
        title = "Eval summary" if s else "Training metrics"
        out = [f"<section id='summary'><h2>{title}</h2>"]
        if s:
            k = s.get("k") or 1
            keys = [key for key in _SUMMARY_KEYS if key != "pass@1"]
            keys[1:1] = ["pass@1"] + ([f"pass@{k}"] if k and k > 1 else [])
            rows = list((s.get("benchmarks") or {}).items())
            rows.append(("average", s.get("average") or {}))
            out.append("<table><tr><th>benchmark</th>" + "".join(
                f"<th>{escape(key)}</th>" for key in keys) + "</tr>")
            for name, m in rows:
                out.append(f"<tr><td>{escape(str(name))}</td>" + "".join(
                    f"<td>{_num(m.get(key))}</td>" for key in keys) + "</tr>")
            out.append("</table>")
        if self.run.charts:
            out.append("<div class='charts'>" + "".join(
                f"<img src='{self._src(c)}' alt='{escape(c.stem)}'>" for c in self.run.charts)
                + "</div>")
        return "".join(out) + "</section>"

    def training(self) -> str:
        """Per step: the AXPO branches as trees (source group, cut prefix, resamples). The
        records are indexed once by step and group, so this is linear in their number."""
        branches: dict[int, dict[int, list[dict[str, Any]]]] = {}
        for b in self.run.branches:
            branches.setdefault(b["step"], {}).setdefault(b["group"], []).append(b)
        rollouts: dict[int, list[dict[str, Any]]] = {}
        groups: dict[tuple[int, str], list[dict[str, Any]]] = {}  # (step, "step1/g0/") ->
        steps = set(branches)
        for e in self.run.episodes:
            if e.get("step") is None:
                continue
            steps.add(e["step"])
            if e.get("role") == "rollout":
                rollouts.setdefault(e["step"], []).append(e)
                head = e["id"].split("/", 2)
                if len(head) == 3:
                    groups.setdefault((e["step"], f"{head[0]}/{head[1]}/"), []).append(e)
        if not steps:
            return ""
        out = ["<section id='axpo'><h2>Training steps and AXPO branches</h2>"]
        for step in sorted(steps):
            mine = branches.get(step, {})
            done = rollouts.get(step, [])
            acc = sum(bool(e.get("correct")) for e in done) / max(1, len(done))
            chosen = [b for group in mine.values() for b in group]
            out.append(f"<details class='step' open><summary><b>step {_e(step)}</b>: "
                       f"{len(done)} rollouts, accuracy {acc:.2f}, {len(chosen)} selected "
                       f"prefix(es), {sum(b['recovered'] for b in chosen)} recovered</summary>")
            for g in sorted(mine):
                out.append(self._tree(step, g, mine[g], groups.get((step, f"step{step}/g{g}/"),
                                                                    [])))
            if not mine:
                out.append("<p>No group triggered AXPO at this step (no all-wrong tool-using "
                           "subgroup, or no budget).</p>")
            out.append("</details>")
        return "".join(out) + "</section>"

    def _tree(self, step: int, g: int, branches: list[dict[str, Any]],
              group: list[dict[str, Any]]) -> str:
        task = group[0].get("task_id") if group else "?"
        sources = {b["source"] for b in branches}
        out = [f"<div class='tree' data-step='{_e(step)}' data-group='{_e(g)}'><b>group "
               f"{_e(g)}</b>, task {_e(task)}: triggered (tool-using subgroup all wrong)<ul>"]
        for e in group:
            mark = " src" if e["id"] in sources else ""
            out.append(f"<li class='rollout{mark}'>{self._link(e['id'])} reward "
                       f"{_num(e.get('reward'))}{_badges(e)}"
                       f"{' &larr; source' if mark else ''}</li>")
        out.append("</ul>")
        for b in branches:
            out.append(
                f"<div class='branch' data-source='{_e(b['source'])}'>"
                f"<b>branch {_e(b['index'])}</b> from {self._link(b['source'])}, turn "
                f"{_e(b['turn'])}, cut after {_e(b['keep'])} generated ids; tool-call confidence "
                f"<b class='confidence'>{_num(b['score'], 3)}</b>"
                f"<pre>{_e(b.get('prefix'))}<span class='cut'>&#9986; cut</span></pre><ul>")
            for rid, reward in zip(b["resamples"], b["rewards"]):
                e = self.by_id.get(rid, {})
                out.append(f"<li class='resample'>{self._link(rid)} reward {_num(reward)}"
                           f"{_badges(e) if e else ''}</li>")
            flag = ("<span class='badge ok recovered'>recovered: a resample is right, the "
                    "prefix is credited</span>" if b["recovered"] else
                    "<span class='badge bad recovered'>not recovered</span>")
            out.append(f"</ul>{flag}</div>")
        return "".join(out) + "</div>"

    def filters(self) -> str:
        envs = sorted({str(e.get("env")) for e in self.run.episodes if e.get("env")})
        opts = "".join(f"<option value='{escape(v)}'>{escape(v)}</option>" for v in envs)
        roles = {e.get("role") for e in self.run.episodes} - {None}
        role = ("<label>kind<select name='role'><option value=''>all</option>"
                "<option value='rollout'>rollouts</option><option value='resample'>AXPO "
                "resamples</option></select></label>") if roles else ""
        return ("<section class='filters'><h2>Filters</h2>"
                f"<label>benchmark<select name='env'><option value=''>all</option>{opts}"
                "</select></label><label>outcome<select name='outcome'><option value=''>all"
                "</option><option value='correct'>correct</option><option value='wrong'>wrong"
                "</option></select></label><label>tool<select name='tool'><option value=''>any"
                "</option><option value='used'>used a tool</option><option value='none'>no tool"
                "</option></select></label><label><input type='checkbox' name='errors'> tool "
                "errors</label><label><input type='checkbox' name='truncated'> truncated"
                f"</label>{role}</section>")

    # ---------------------------------------------------------------------------- episodes

    def episode(self, e: dict[str, Any]) -> str:
        data = {"env": e.get("env") or "", "correct": int(bool(e.get("correct"))),
                "tool": int((e.get("tool_calls") or 0) > 0),
                "errors": int((e.get("tool_errors") or 0) > 0),
                "truncated": int(bool(e.get("truncated"))), "role": e.get("role") or ""}
        attrs = "".join(f" data-{k}='{_e(v)}'" for k, v in data.items())
        out = [f"<details class='episode' id='{_anchor(e['id'])}'{attrs}><summary>"
               f"<b>{_e(e['id'])}</b> {_e(e.get('env'))}"
               f"{_badges(e)}</summary><div class='body'>"]
        if e.get("source"):
            out.append(f"<p>AXPO resample of {self._link(e['source'])}, branched at turn "
                       f"{_e((e.get('parent') or ['?'])[0])}</p>")
        if e.get("question"):
            out.append(f"<h3>Task</h3><pre class='question'>{_e(e['question'])}</pre>")
        out += [self._figure(im, "task image") for im in e.get("images") or []]
        for n, turn in enumerate(e.get("turns") or []):
            out.append(self._turn(n, turn))
        if e.get("error"):
            out.append(f"<p class='badge bad'>error: {_e(e['error'])}</p>")
        out.append(f"<p class='final'>final answer: <b>{escape(_show(e.get('answer')))}</b>; "
                   f"reference: <b>{escape(_show(e.get('reference')))}</b>; score "
                   f"<b>{_num(e.get('reward'))}</b></p>")
        if e.get("from_results"):
            out.append("<p class='badge info'>from results.jsonl: last turn only; run with "
                       "--save-trajectories to see every turn and image</p>")
        return "".join(out) + "</div></details>"

    def _turn(self, n: int, t: dict[str, Any]) -> str:
        out = [f"<div class='turn'><b>turn {n + 1}</b>"]
        if t.get("confidence") is not None:
            out.append(f" <span class='badge info'>action confidence "
                       f"{_num(t['confidence'], 3)}</span>")
        if t.get("thinking"):
            out.append(f"<details class='thinking'><summary>thinking ({len(t['thinking'])} "
                       f"chars)</summary><pre>{_e(t['thinking'])}</pre></details>")
        call = t.get("call")
        if call:
            if call.get("error"):  # an unreadable call: the text the model wrote
                out.append(f"<pre>{_e(t.get('text'))}</pre>")
            args = json.dumps(call.get("arguments"), ensure_ascii=False)
            error = (f" <span class='badge warn'>{_e(call['error'])}</span>"
                     if call.get("error") else "")
            out.append(f"<div class='call'>tool call: <b>{_e(call.get('name'))}</b>"
                       f"({_e(args)}){error}</div>")
        elif t.get("answer") is not None:
            out.append(f"<div class='call'>answer: <b>{_e(t['answer'])}</b></div>")
        elif t.get("last_only") or t.get("format_error"):
            out.append(f"<pre>{_e(t.get('text'))}</pre>")
            if t.get("format_error"):
                out.append(f"<span class='badge warn'>{_e(t['format_error'])}</span>")
        reply = t.get("reply") or {}
        text = reply.get("text")
        if text and text.strip() in _told(t):
            text = None  # the env's message of an error shown above, not a tool's reply
        if text or reply.get("images"):
            out.append(f"<div class='reply'>tool reply:<pre>{_e(text)}</pre>")
            crop = t.get("crop")
            if crop:
                out.append(self._figure(crop["source"], "source, crop box", crop["box"]))
            out += [self._figure(im, "zoomed result" if crop else "tool image")
                    for im in reply.get("images") or []]
            out.append("</div>")
        return "".join(out) + "</div>"

    def _figure(self, rel: str, caption: str, box: list[float] | None = None) -> str:
        path = self.run.root / rel
        try:
            found = path.is_file()
        except (OSError, ValueError):  # a name too long for the file system, say
            found = False
        if not found:
            return (f"<figure><div class='missing'>image missing: {_e(rel)}</div>"
                    f"<figcaption>{_e(caption)}</figcaption></figure>")
        overlay = ""
        if box:
            x1, y1, x2, y2 = (max(0.0, min(1.0, float(v))) * 100 for v in box)
            overlay = (f"<div class='box' style='left:{x1:.2f}%;top:{y1:.2f}%;"
                       f"width:{x2 - x1:.2f}%;height:{y2 - y1:.2f}%'></div>")
        return (f"<figure><div class='frame'><img src='{self._src(path)}' alt='{_e(rel)}'>"
                f"{overlay}</div><figcaption>{_e(caption)}</figcaption></figure>")

    def _src(self, path: Path) -> str:
        return quote(Path(os.path.relpath(path.resolve(), self.here.resolve())).as_posix())

    def _link(self, episode_id: str) -> str:
        return f"<a href='#{_anchor(episode_id)}'>{_e(episode_id)}</a>"


def _told(t: dict[str, Any]) -> set[str]:
    """The messages the env sends back for the turn's format or call error (`ToolUseEnv`:
    the error itself, or "Error: " and the call's error): shown once, as the error."""
    call_error = (t.get("call") or {}).get("error")
    told = {t.get("format_error"), call_error, call_error and f"Error: {call_error}"}
    return {m.strip() for m in told if m}


def _badges(e: dict[str, Any]) -> str:
    out = ["<span class='badge ok'>correct</span>" if e.get("correct")
           else "<span class='badge bad'>wrong</span>"]
    if e.get("tool_calls"):
        out.append(f"<span class='badge info'>{_e(e['tool_calls'])} tool call(s)</span>")
    if e.get("tool_errors"):
        out.append(f"<span class='badge warn'>{_e(e['tool_errors'])} tool error(s)</span>")
    if e.get("truncated"):
        out.append("<span class='badge warn'>truncated</span>")
    if e.get("error"):
        out.append("<span class='badge bad'>failed</span>")
    before = e.get("rescored")  # `axpo eval --rescore`: the verdict the run gave
    if before and bool(before.get("correct")) != bool(e.get("correct")):
        was = "right" if before.get("correct") else "wrong"
        out.append(f"<span class='badge info'>rescored: was {was} in "
                   f"{_e(before.get('scoring'))} mode</span>")
    return "".join(out)


def _e(value: Any) -> str:
    """Any value as HTML text, escaped; None as nothing."""
    return "" if value is None else escape(str(value))


def _anchor(episode_id: str) -> str:
    return "ep-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in episode_id)


def _show(value: Any) -> str:
    return "—" if value is None else str(value)


def _num(value: Any, digits: int = 2) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "—" if value is None else _e(value)
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"

