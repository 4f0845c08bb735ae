"""The `python` tool: agent code in a sandboxed Python session that persists through an episode.

One warm worker process per episode runs every cell, so a call costs a pipe round trip, not an
interpreter start. The session's state is the tuple of cells run so far: `snapshot()` is that
tuple, and `restore()` rebuilds a session by replaying it into a fresh worker over a freshly
written scratch dir, which is what lets AXPO branch from any earlier turn. A cell that hangs or
kills its worker is rolled back the same way. Isolation: bubblewrap where it works (no network, a
read-only root, only the scratch dir writable), else resource limits; Python audit hooks in both.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import shutil
import stat
import threading
import weakref
from concurrent.futures import Future
from typing import Any

from PIL import Image

from axpo_env.errors import AxpoError, SnapshotError, ToolCallError
from axpo_env.tools._sandbox import (
    _Died,
    _new_scratch,
    _new_uid,
    _resolve_plan,
    _rmtree,
    _Timeout,
    _Worker,
)
from axpo_env.tools.base import Tool, ToolContext, ToolResult

logger = logging.getLogger(__name__)
_IMAGE_EXT = (".png", ".jpg", ".jpeg")
_MAX_CODE = 1_000_000
_MAX_IMAGE_BYTES = 32 << 20
_MAX_SCAN = 20_000
_TRUNCATED = "\n...[output truncated]"
_RESTORED = "the session was restored to its state before this call."

# ---------------------------------------------------------------------------------------------
# Files: the scratch dir, task images in, new images out.




def _capped(text: Any, limit: int) -> str:
    """A reply's text as the worker should have sent it: a str of at most `limit` chars."""
    if not isinstance(text, str):
        return ""
    return text if len(text) <= limit else text[:limit] + _TRUNCATED


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _TooManyFiles(Exception):
    """The scratch dir holds more entries than the scan looks at: its size is unknown."""


def _scan(root: str) -> tuple[dict[str, tuple[int, int, int]], int]:
    """Image files under `root` with their (mtime, size, inode), and the bytes all files use.

    Walked through directory handles opened without following a symlink at any depth, so a
    cell that swaps a subdir for a link to a host dir while we look only ever shows us its own
    files. More than `_MAX_SCAN` entries raises `_TooManyFiles`: an unseen file could be big.
    """
    images, total, seen = {}, 0, 0
    stack = [("", os.open(root, _DIR_FLAGS))]
    try:
        while stack:
            rel, fd = stack.pop()
            try:
                with os.scandir(fd) as it:
                    for entry in it:
                        seen += 1
                        if seen > _MAX_SCAN:
                            raise _TooManyFiles
                        try:
                            st = entry.stat(follow_symlinks=False)
                            path = os.path.join(rel, entry.name)
                            if stat.S_ISDIR(st.st_mode):
                                stack.append((path, os.open(entry.name, _DIR_FLAGS, dir_fd=fd)))
                            elif stat.S_ISREG(st.st_mode):
                                total += st.st_blocks * 512
                                if entry.name.lower().endswith(_IMAGE_EXT):
                                    images[path] = (st.st_mtime_ns, st.st_size, st.st_ino)
                        except OSError:  # gone, or swapped for a link, meanwhile
                            continue
            except OSError:
                pass
            finally:
                os.close(fd)
    finally:
        for _, fd in stack:
            os.close(fd)
    return images, total


def _open_beneath(root: str, rel: str) -> int:
    """A read fd for `root/rel`, resolving each component through the last one's handle with
    O_NOFOLLOW: no symlink, at any depth, can lead out of `root`."""
    parts = rel.split(os.sep)
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                       dir_fd=fd)
    finally:
        os.close(fd)


def _load_image(root: str, rel: str, max_pixels: int) -> tuple[Image.Image | None, str]:
    """Read an image the sandbox wrote, refusing links, devices and decompression bombs. The
    reasons name no error class: they must not tell a cell what exists on the host."""
    try:
        fd = _open_beneath(root, rel)
    except OSError:
        return None, "not a regular file inside the working directory"
    try:
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_IMAGE_BYTES:
                return None, "not a regular file of at most 32 MB"
            data = f.read(_MAX_IMAGE_BYTES)
        img = Image.open(io.BytesIO(data), formats=("PNG", "JPEG"))
        if img.width * img.height > max_pixels:
            return None, f"{img.width}x{img.height} is more than {max_pixels} pixels"
        img.load()
        if img.mode not in ("RGB", "RGBA", "L"):
            img = img.convert("RGBA" if "transparency" in img.info or "A" in img.mode else "RGB")
        return img, ""
    except Exception:  # any decoder failure is the sandbox's problem, not ours
        return None, "not a readable PNG/JPEG"


def _encode_png(img: Image.Image) -> bytes:
    if img.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
        img = img.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _write_scratch(scratch: str, pngs: list[bytes], uid: int | None) -> None:
    """Empty the scratch dir and write the task images (PNG bytes) into it, owned by the
    worker's uid."""
    for entry in os.scandir(scratch):
        if entry.is_dir(follow_symlinks=False):
            _rmtree(entry.path)
        else:
            os.unlink(entry.path)
    paths = [scratch]
    for i, data in enumerate(pngs):
        paths.append(os.path.join(scratch, f"image_{i}.png"))
        with open(paths[-1], "wb") as f:
            f.write(data)
    if uid is not None:  # the worker runs as this uid: give it its files
        for path in paths:
            os.chown(path, uid, uid)


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
        memory_limit: bytes of address space (RLIMIT_AS); more raises MemoryError in the cell.
        cpu_limit: CPU seconds per call (RLIMIT_CPU); default `timeout` + 1, a backstop.
        max_processes: RLIMIT_NPROC (threads count too).
        max_file_size: bytes per written file (RLIMIT_FSIZE); bigger writes fail with EFBIG.
        disk_limit: bytes all files in the scratch dir may use; more rolls the call back.
        max_output_chars: characters of stdout (and, apart, of stderr) returned per call.
        max_images: images returned per call; max_image_pixels: larger ones are refused.
        isolation: "auto" (bubblewrap when it works, else rlimits), "bwrap" or "rlimits".
        fresh_worker_per_call: start a new interpreter for each call and replay the session
            (slow; for benchmarks against the warm worker).
        scratch_root: where per-episode scratch dirs are made (default: the temp dir).
    """

    name = "python"

    def __init__(self, timeout: float = 10.0, memory_limit: int = 1 << 30,
                 cpu_limit: float | None = None, max_processes: int = 32,
                 max_file_size: int = 64 << 20, disk_limit: int = 256 << 20,
                 max_output_chars: int = 8000, max_images: int = 4,
                 max_image_pixels: int = 4096 * 4096, isolation: str = "auto",
                 fresh_worker_per_call: bool = False, scratch_root: str | None = None):
        if isolation not in ("auto", "bwrap", "rlimits"):
            raise ValueError(f"isolation must be 'auto', 'bwrap' or 'rlimits', not {isolation!r}")
        if isolation == "bwrap" and not shutil.which("bwrap"):
            raise AxpoError("isolation='bwrap' needs bubblewrap on PATH (apt install bubblewrap)")
        self._settings = dict(
            timeout=timeout, memory_limit=memory_limit, cpu_limit=cpu_limit,
            max_processes=max_processes, max_file_size=max_file_size, disk_limit=disk_limit,
            max_output_chars=max_output_chars, max_images=max_images,
            max_image_pixels=max_image_pixels, isolation=isolation,
            fresh_worker_per_call=fresh_worker_per_call, scratch_root=scratch_root)
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

    def spawn(self) -> PythonTool:
        return PythonTool(**self._settings)

    def reset(self, ctx: ToolContext) -> None:
        """New episode: forget the session and (lazily) rewrite the scratch dir."""
        with self._lock:
            self._images, self._history = tuple(ctx.images), ()
            self._stale = self._was_reset = True
            if self._box.worker is not None and self._box.worker.used:
                self._box.kill()
                self._prestart()

    def snapshot(self) -> tuple[str, ...]:
        return self._history

    def restore(self, state: Any) -> None:
        """Go back to a snapshot; the session is rebuilt (replayed) lazily at the next call."""
        state = () if state is None else state
        if not isinstance(state, (tuple, list)) or not all(isinstance(c, str) for c in state):
            raise SnapshotError("a PythonTool state is a tuple of code strings (from snapshot())")
        with self._lock:
            self._history = tuple(state)
            w = self._box.worker
            if w is not None and w.used and w.history != self._history[: len(w.history)]:
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
                before, _ = _scan(scratch)
                resp = worker.request(request, self.timeout)
                after, used = _scan(scratch)
                if used > self._settings["disk_limit"]:
                    raise _Died("disk")
            except (_Timeout, _Died, _TooManyFiles) as e:
                why = {_Timeout: "time", _TooManyFiles: "files"}.get(type(e), str(e))
                why = why if why in ("time", "disk", "files") else worker.crash_reason(e)
                self._box.kill()
                return ToolResult(note + self._failure(why))
            worker.history += (code,)
            self._history = worker.history
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
        return ToolResult(text.encode("utf-8", "replace").decode("utf-8"), tuple(images))

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
                w = box.worker = _Worker(plan, box.scratch, self._uid, self._limits)  # type: ignore
            except (_Died, OSError):  # the details may name host paths: the log gets them
                logger.warning("python tool: the sandbox could not start", exc_info=True)
                raise ToolCallError("the Python sandbox could not start; try again") from None
        for cell in self._history[len(w.history):]:
            request = {"code": cell, "name": f"<cell {len(w.history)}>", "silent": True,
                       "cpu": 2 * self._cpu + 1, "entropy": [self._seed, len(w.history)]}
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
            return _Worker(_resolve_plan(self.isolation), box.scratch, uid, self._limits)  # type: ignore

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
            return _Worker(plan, box.scratch, uid, self._limits, check_writable=False)  # type: ignore

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
