"""The `python` tool: agent code in a sandboxed Python session that persists through an episode.

One warm worker process per episode runs every cell, so a call costs a pipe round trip, not an
interpreter start. The session's state is the cells run so far plus, where the sandbox has a pid
namespace of its own, a paused copy-on-write fork of the session kept per snapshot
(`_sandbox_forks`): restoring a diverged session wakes that fork, exact for any code, in a few
ms. Without a fork (evicted, another process, no pid namespace) `restore()` replays the cells
into a fresh interpreter over a freshly written scratch dir; entropy and clocks in the sandbox
follow the episode seed, so the replay is exact for what the cells compute from those. A cell
that hangs or kills its worker is rolled back the same way. Isolation: bubblewrap where it works
(no network, a read-only root, only the scratch dir writable, a pid namespace); as root without
it, private namespaces the worker makes itself (pid included) and a uid of its own; else
resource limits. Python audit hooks in all, as a second line only. What comes back is checked on
the host: output cut to its limit, images read through directory handles, disk use counted whole.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import threading
import weakref
from concurrent.futures import Future
from typing import Any

from PIL import Image

from axpo_env.errors import AxpoError, SnapshotError, ToolCallError
from axpo_env.text import valid_text
from axpo_env.tools import _sandbox_limits
from axpo_env.tools._sandbox import (
    _Died,
    _new_scratch,
    _new_uid,
    _Plan,
    _resolve_plan,
    _rmtree,
    _Timeout,
    _Worker,
)
from axpo_env.tools._sandbox_files import (
    _MAX_SCAN,
    _encode_png,
    _load_image,
    _scan,
    _TooManyFiles,
    _write_scratch,
    copy_in,
)
from axpo_env.tools._sandbox_forks import Forks, SessionState, new_key
from axpo_env.tools.base import Tool, ToolContext, ToolResult

logger = logging.getLogger(__name__)
_MAX_CODE = 1_000_000
_MAX_FORK_FILES = 64 << 20  # a snapshot whose scratch dir is bigger replays instead
_TRUNCATED = "\n...[output truncated]"
_RESTORED = "the session was restored to its state before this call."


def _capped(text: Any, limit: int) -> str:
    """A reply's text as the worker should have sent it: a str of at most `limit` chars."""
    if not isinstance(text, str):
        return ""
    return text if len(text) <= limit else text[:limit] + _TRUNCATED


class _Box:
    """What the finalizer must clean up; holds no reference to the tool."""

    def __init__(self) -> None:
        self.worker: _Worker | None = None
        self.pending: Future | None = None  # a worker starting in the background
        self.scratch: str | None = None
        self.pid = os.getpid()  # a forked copy of the tool must not clean up the original's

    def kill(self) -> None:
        if self.worker is not None and os.getpid() == self.pid:
            self.worker.kill()
        self.worker = None

    def close(self) -> None:
        self.kill()
        if self.pending is not None and os.getpid() == self.pid:
            with contextlib.suppress(Exception):
                self.pending.result(timeout=60)[0].kill()
        self.pending = None
        if self.scratch is not None and os.getpid() == self.pid:
            _rmtree(self.scratch)
        self.scratch = None


# ---------------------------------------------------------------------------------------------


class PythonTool(Tool):
    """A sandboxed, persistent Python session per episode (see the module docstring).

    Args:
        timeout: wall-clock seconds per call; the host kills the sandbox when they run out.
        memory_limit: bytes of address space per process (RLIMIT_AS); more raises MemoryError
            in the cell. With whole-sandbox limits, all the sandbox's processes together (paused
            forks, children) and its tmpfs files hold at most memory_limit + disk_limit (a
            cgroup, no swap); past that the kernel kills one of them.
        cpu_limit: CPU seconds per call (RLIMIT_CPU); default `timeout` + 1, a backstop.
        max_processes: RLIMIT_NPROC (threads count too); with whole-sandbox limits, a cgroup's
            pids.max holds the sandbox's processes and threads together too.
        max_file_size: bytes per written file (RLIMIT_FSIZE); bigger writes fail with EFBIG.
        disk_limit: bytes all files in the scratch dir may use. Where the sandbox gets
            whole-sandbox limits (`limits_whole_sandbox`), the dir is a tmpfs of that size and a
            write past it fails in the cell (ENOSPC), counting files unlinked but still open;
            elsewhere the host's scan after each call finds the excess and rolls the call back.
        max_output_chars: characters of stdout (and, apart, of stderr) returned per call.
        max_images: images returned per call; max_image_pixels: larger ones are refused.
        isolation: "auto" (bubblewrap when it works, else rlimits), "bwrap" or "rlimits".
        fresh_worker_per_call: start a new interpreter for each call and replay the session
            (slow; for benchmarks against the warm worker).
        scratch_root: where per-episode scratch dirs are made (default: the temp dir).
        snapshot_forks: paused forks of the session kept for snapshots (see `restore_mode`),
            least recently used evicted; 0 replays every diverged restore.
    """

    name = "python"

    def __init__(self, timeout: float = 10.0, memory_limit: int = 1 << 30,
                 cpu_limit: float | None = None, max_processes: int = 32,
                 max_file_size: int = 64 << 20, disk_limit: int = 256 << 20,
                 max_output_chars: int = 8000, max_images: int = 4,
                 max_image_pixels: int = 4096 * 4096, isolation: str = "auto",
                 fresh_worker_per_call: bool = False, scratch_root: str | None = None,
                 snapshot_forks: int = 4):
        if isolation not in ("auto", "bwrap", "rlimits"):
            raise ValueError(f"isolation must be 'auto', 'bwrap' or 'rlimits', not {isolation!r}")
        if isolation == "bwrap" and not shutil.which("bwrap"):
            raise AxpoError("isolation='bwrap' needs bubblewrap on PATH (apt install bubblewrap)")
        self._settings = dict(
            timeout=timeout, memory_limit=memory_limit, cpu_limit=cpu_limit,
            max_processes=max_processes, max_file_size=max_file_size, disk_limit=disk_limit,
            max_output_chars=max_output_chars, max_images=max_images,
            max_image_pixels=max_image_pixels, isolation=isolation,
            fresh_worker_per_call=fresh_worker_per_call, scratch_root=scratch_root,
            snapshot_forks=snapshot_forks)
        self.timeout, self.isolation = float(timeout), isolation
        self.fresh_worker_per_call = fresh_worker_per_call
        self._cpu = math.ceil(cpu_limit if cpu_limit is not None else timeout + 1)
        self._limits = {"memory": int(memory_limit), "fsize": int(max_file_size),
                        "nproc": int(max_processes), "max_output": int(max_output_chars)}
        self._lock = threading.RLock()
        self._box = _Box()
        self._finalizer = weakref.finalize(self, self._box.close)  # also runs at exit
        self._history: tuple[str, ...] = ()
        self._images: tuple[Image.Image, ...] = ()
        self._stale, self._was_reset, self._uid, self._seed = True, False, None, 0
        self._pngs: tuple[tuple, list[bytes]] = ((), [])  # the task images, encoded once
        self._keep_spare = False
        self._forks = 0 if fresh_worker_per_call else max(0, int(snapshot_forks))
        self._token: str | None = None  # the fork key of the state self._history names
        self._pending: tuple[str, tuple[str, ...]] | None = None  # a fork promised, not taken

    @property
    def schema(self) -> dict[str, Any]:
        return {"type": "function", "function": {
            "name": self.name,
            "description": (
                "Run Python code in a persistent session: variables, imports and files stay "
                "across calls in this episode. The task image is the file image_0.png in the "
                "working directory (further task images: image_1.png, ...). Use print() to see "
                "output (a final bare expression is shown too). Image files (.png/.jpg) you save "
                "are returned to you as images. numpy and PIL are available; no network; each "
                f"call has a {self.timeout:g} s time limit."),
            "parameters": {"type": "object", "properties": {"code": {
                "type": "string", "description": "The Python code to run."}},
                "required": ["code"]},
        }}

    @property
    def isolation_active(self) -> str:
        """What really isolates this tool's workers: "bubblewrap"; as root without it
        "namespaces+uid" (or "uid+rlimits" where namespaces cannot be made); as another user
        without it "rlimits+audit", which is no security boundary (a warning says so)."""
        return _resolve_plan(self.isolation).label

    @property
    def limits_whole_sandbox(self) -> bool:
        """Whether memory, processes and disk are limited for the sandbox as a whole (a cgroup
        and a tmpfs scratch dir: root on Linux), not only per process (rlimits): see
        `axpo_env.tools._sandbox_limits`."""
        return _sandbox_limits.available()

    @property
    def restore_mode(self) -> str:
        """How a diverged restore rebuilds the session: "fork" (a paused copy-on-write fork kept
        per snapshot: exact for any code, a few ms; a snapshot whose fork was evicted, or that
        came from another process, replays), else "replay (why)": the cells run again into a
        fresh interpreter, exact where they are deterministic (entropy and clocks follow the
        episode seed and the cell)."""
        plan = _resolve_plan(self.isolation)
        if not plan.zygote:
            return (f"replay (isolation {plan.label!r} has no pid namespace of its own, so a "
                    "paused fork could outlive this process)")
        return "fork" if self._forks else "replay (snapshot_forks=0)"

    def spawn(self) -> PythonTool:
        return PythonTool(**self._settings)

    def reset(self, ctx: ToolContext) -> None:
        """New episode: forget the session and (lazily) rewrite the scratch dir."""
        with self._lock:
            self._images, self._history = tuple(ctx.images), ()
            self._stale = self._was_reset = True
            self._token = self._pending = None
            if self._box.worker is not None and self._box.worker.used:
                self._box.kill()
                self._prestart()

    def snapshot(self) -> SessionState:
        """The session's cells and, where a fork can be kept, its key: the fork itself is taken
        only before the live session leaves this state (its next call or restore)."""
        with self._lock:
            w = self._box.worker
            if (self._token is None and self._forks and self._history and not self._stale
                    and w is not None and w.forks is not None and w.history == self._history
                    and os.getpid() == self._box.pid and w.alive()):
                self._token = new_key()
                self._pending = (self._token, self._history)
            return SessionState(self._history, self._token)

    def restore(self, state: Any) -> None:
        """Go back to a snapshot; the session is rebuilt lazily at the next call, from its fork
        when this tool keeps one, else by a replay (see `restore_mode`)."""
        cells, key = (state.cells, state.fork) if isinstance(state, SessionState) else (
            () if state is None else state, None)
        if not isinstance(cells, (tuple, list)) or not all(isinstance(c, str) for c in cells):
            raise SnapshotError("a PythonTool state is a tuple of code strings (from snapshot())")
        with self._lock:
            self._history, self._token = tuple(cells), key if isinstance(key, str) else None
            w = self._box.worker
            if (w is not None and w.used and w.forks is None
                    and w.history != self._history[: len(w.history)]):
                self._keep_spare = True  # branching: from now on keep one spare ready
                self._start_spare()  # while the policy generates, not at the next call

    def close(self) -> None:
        with self._lock:
            self._box.close()
            self._was_reset = False

    def run(self, arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
        code = arguments.get("code")
        if not isinstance(code, str):
            raise ToolCallError('the python tool needs "code": a string of Python source')
        if len(code) > _MAX_CODE:
            raise ToolCallError(f"code is {len(code)} characters long; the limit is {_MAX_CODE}")
        with self._lock:
            if not self._was_reset:
                self.reset(ctx)
            self._seed = int(ctx.seed or 0)  # the episode's: entropy and clocks derive from it
            note = self._ensure_worker()
            worker, scratch = self._box.worker, self._box.scratch
            assert worker is not None and scratch is not None
            request = {"code": code, "name": f"<cell {len(self._history)}>", "cpu": self._cpu,
                       "entropy": [self._seed, len(self._history)]}
            try:
                take = self._promised(worker, scratch)  # forked before the cell, in one trip
                if take is not None:
                    request["fork"] = True
                if worker.forks is not None and worker.forks.forks:
                    request["keep"] = worker.forks.keep()
                before, _ = _scan(scratch)
                resp = worker.request(request, self.timeout)
                if take is not None and (why := worker.forks.adopt(*take)):
                    logger.info("python tool: a snapshot will replay (no fork: %s)", why)
                after, used = _scan(scratch)
                if used > self._settings["disk_limit"]:
                    raise _Died("disk")
            except (_Timeout, _Died, _TooManyFiles) as e:
                why = {_Timeout: "time", _TooManyFiles: "files"}.get(type(e), str(e))
                why = why if why in ("time", "disk", "files") else worker.crash_reason(e)
                self._box.kill()
                return ToolResult(note + self._failure(why))
            worker.history += (code,)
            self._history, self._token = worker.history, None
            images, lines = self._collect(scratch, before, after)
            if self.fresh_worker_per_call:
                self._box.kill()
            elif self._keep_spare:
                self._start_spare()  # for the next branch, while this one goes on
        limit = self._limits["max_output"]  # again here: a cell can forge its own reply frame
        out, err = _capped(resp.get("out"), limit), _capped(resp.get("err"), limit)
        parts = [p for p in (note.strip(), out.rstrip("\n"), err.rstrip("\n")) if p]
        if not out and not err:
            parts.append("(no output; use print() to see values)")
        text = "\n".join(parts + lines)
        return ToolResult(valid_text(text), tuple(images))

    # -- internals ------------------------------------------------------------------------------

    def _failure(self, why: str) -> str:
        if why == "time":
            what = f"execution exceeded the {self.timeout:g} s time limit"
        elif why == "cpu":
            what = f"execution exceeded the {self._cpu} s CPU time limit"
        elif why == "disk":
            mb = self._settings["disk_limit"] / (1 << 20)
            what = f"files in the working directory exceeded the {mb:g} MB limit"
        elif why == "files":
            what = f"the working directory holds more than {_MAX_SCAN} files and folders"
        else:
            what = f"the Python process crashed ({why})"
        return f"Error: {what}; {_RESTORED}"

    def _ensure_worker(self) -> str:
        """Bring a worker to `self._history` (rebuild + replay if needed); a note if that failed."""
        box, w = self._box, self._box.worker
        if (w is not None and w.forks is not None and w.history != self._history
                and not self._stale and os.getpid() == box.pid and w.alive()):
            fork = w.forks.get(self._token, self._history)
            if fork is not None or w.history != self._history[: len(w.history)]:
                self._switch(w, fork)
            w = box.worker
        if w is not None and (self.fresh_worker_per_call or not w.alive()
                              or (self._stale and w.used)
                              or w.history != self._history[: len(w.history)]):
            box.kill()
            w = None
        # adopt a prestarted worker first: it may still be writing the scratch dir
        if w is None and box.pending is not None:
            pending, box.pending = box.pending, None
            with contextlib.suppress(_Died, OSError):
                w, prepared_for, self._uid = pending.result()
                box.worker = w
                self._stale = prepared_for is not self._images
        plan = _resolve_plan(self.isolation)
        if plan.drop and self._uid is None:
            self._uid = _new_uid()
        if self._stale or w is None:
            self._prepare_scratch()
        if w is None:
            try:
                w = box.worker = _Worker(plan, box.scratch, self._uid,  # type: ignore[arg-type]
                                         self._worker_limits(plan))
            except (_Died, OSError):  # the details may name host paths: the log gets them
                logger.warning("python tool: the sandbox could not start", exc_info=True)
                raise ToolCallError("the Python sandbox could not start; try again") from None
        if w.plan.zygote and w.forks is None:
            w.forks = Forks(w, self._forks, min(_MAX_FORK_FILES, self._settings["disk_limit"]),
                            self._settings["scratch_root"])
        for cell in self._history[len(w.history):]:
            request = {"code": cell, "name": f"<cell {len(w.history)}>", "silent": True,
                       "cpu": 2 * self._cpu + 1, "entropy": [self._seed, len(w.history)]}
            if w.forks is not None and w.forks.forks:
                request["keep"] = w.forks.keep()
            try:
                w.request(request, 2 * self.timeout + 1)
            except (_Died, _Timeout):
                self._history = w.history
                box.kill()
                self._ensure_worker()
                return (f"Note: replaying the session failed; only its first {len(w.history)} "
                        "calls were restored.\n")
            w.history += (cell,)
        return ""

    def _worker_limits(self, plan: _Plan) -> dict[str, int]:
        """With a zygote, its pid 1 and the paused forks count against the process limit too.
        Where the sandbox gets a cgroup, its memory holds the processes and the scratch tmpfs."""
        extra = self._forks + 2 if plan.zygote else 0
        whole = self._limits["memory"] + self._settings["disk_limit"] \
            if _sandbox_limits.available() else 0
        return {**self._limits, "nproc": self._limits["nproc"] + extra, "sandbox_memory": whole}

    def _switch(self, w: _Worker, fork: Any) -> None:
        """Leave the live session for `fork`'s copy (None: a fresh one from the zygote, which
        the caller then replays into); if that fails, end the sandbox (the caller replays)."""
        try:
            self._materialize()  # the state being left may be a snapshot's

            def refill(files: str | None) -> None:
                if files is None:
                    self._prepare_scratch()
                else:
                    copy_in(files, self._box.scratch, self._uid)  # type: ignore[arg-type]

            w.forks.switch(fork, refill)
        except (_Died, _Timeout, OSError):
            logger.info("python tool: switching the session failed; replaying", exc_info=True)
            self._box.kill()

    def _promised(self, w: _Worker, scratch: str) -> tuple | None:
        """(key, cells, files) of the fork a snapshot promised of the live state, with its copy
        of the scratch dir taken; the call about to change that state forks first."""
        pending, self._pending = self._pending, None
        if pending is None or w.forks is None or w.history != pending[1]:
            return None
        files = w.forks.copy(scratch)
        return None if files is None else (*pending, files)

    def _materialize(self) -> None:
        """Take the fork a snapshot promised, before the live session leaves that state."""
        pending, self._pending = self._pending, None
        w = self._box.worker
        if pending is None or w is None or w.forks is None or w.history != pending[1]:
            return
        why = w.forks.take(pending[0], pending[1], self._box.scratch, self.timeout)  # type: ignore
        if why:
            logger.info("python tool: a snapshot will replay (no fork: %s)", why)

    def _prestart(self) -> None:
        """Write the new episode's scratch dir and start its worker in the background: by the
        time the agent's first call arrives (after the policy has generated), both are ready.
        The future gives (worker, the images it prepared the scratch dir for, its uid)."""
        box = self._box
        if self.fresh_worker_per_call or box.scratch is None or box.pending is not None:
            return
        images, uid = self._images, self._uid

        def start() -> _Worker:
            _write_scratch(box.scratch, [_encode_png(im) for im in images], uid)  # type: ignore
            plan = _resolve_plan(self.isolation)
            return _Worker(plan, box.scratch, uid, self._worker_limits(plan))  # type: ignore

        self._start_in_background(start, images, uid)

    def _start_spare(self) -> None:
        """Start a worker in the background for a diverged restore, so rebuilding the session
        costs a replay, not an interpreter start. It leaves the scratch dir to the live worker
        (adopting it rewrites the dir) and has a uid of its own: the live worker's kill(-1)
        after each cell must not reach it. At most one waits per tool, and only in tools
        that have restored a diverged session (AXPO's branching)."""
        box = self._box
        if self.fresh_worker_per_call or box.scratch is None or box.pending is not None:
            return
        plan = _resolve_plan(self.isolation)
        uid = _new_uid() if plan.drop else None

        def start() -> _Worker:  # the dir is not its uid's yet: adoption chowns it
            return _Worker(plan, box.scratch, uid, self._worker_limits(plan),  # type: ignore
                           check_writable=False)

        self._start_in_background(start, None, uid)

    def _start_in_background(self, start: Any, images: tuple | None, uid: int | None) -> None:
        future: Future = Future()

        def run() -> None:
            try:
                future.set_result((start(), images, uid))
            except BaseException as e:  # handed to whoever adopts the worker
                future.set_exception(e)

        threading.Thread(target=run, name="axpo-py-prestart", daemon=True).start()
        self._box.pending = future

    def _prepare_scratch(self) -> None:
        """Empty the scratch dir (making it on first use) and write the task images into it."""
        box = self._box
        if box.scratch is None:
            box.scratch = _new_scratch(self._settings["scratch_root"])
            if _sandbox_limits.available():  # files count whole, unlinked-but-open ones too
                _sandbox_limits.mount_scratch(box.scratch, self._settings["disk_limit"])
        if self._pngs[0] is not self._images:
            self._pngs = (self._images, [_encode_png(im) for im in self._images])
        _write_scratch(box.scratch, self._pngs[1], self._uid)
        self._stale = False

    def _collect(self, scratch: str, before: dict, after: dict) -> tuple[list, list[str]]:
        """New or modified images (sorted by path), at most `max_images`, with a line each."""
        changed = sorted(p for p, sig in after.items() if before.get(p) != sig)
        limit = self._settings["max_images"]
        images, lines = [], []
        for rel in changed[:limit]:
            img, why = _load_image(scratch, rel, self._settings["max_image_pixels"])
            if img is None:
                lines.append(f"[image {rel} not returned: {why}]")
            else:
                images.append(img)
                lines.append(f"[image returned: {rel} ({img.width}x{img.height})]")
        if len(changed) > limit:
            lines.append(f"[{len(changed) - limit} more new images not returned; at most "
                         f"{limit} per call]")
        return images, lines
