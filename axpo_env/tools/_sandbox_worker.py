"""The program that runs agent code for `PythonTool`, inside its sandbox subprocess.

Stdlib-only at top level: it starts before anything is known about the environment. It speaks
length-prefixed JSON frames (4-byte big-endian length, then UTF-8 JSON) over private copies of
fds 0/1, so nothing user code prints can corrupt the protocol, and points fds 0/1/2 at /dev/null.
Frames in: the config once, then `{"seq", "code", "name", "silent", "cpu"}` per cell, `seq` a
random number the host picks per request (so model code cannot write a frame for a request
to come). Frames out: `{"ready", "writable"}` once, then `{"seq", "out", "err"}` per cell
(`{"seq", "broken"}` when the cell closed or replaced our pipes: it is then rolled back). A
request with `"fork"` is first answered `{"seq", "forked"}`, before any model code runs.

Order of start-up matters: drop privileges first (prctl flags are cleared by a uid change), then
pre-import numpy/PIL while imports still may do anything, then set rlimits, then the audit hook.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import fcntl
import io
import json
import linecache
import math
import os
import resource
import signal
import struct
import sys
import traceback
import types
from typing import Any

import _sandbox_procs as _procs  # siblings: this script's dir is sys.path[0] until _start
import _sandbox_seccomp as _seccomp
from _sandbox_entropy import _install_deterministic_sources, _seed_cell

_TRUNCATED = "\n...[output truncated]"
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_DENIED = {
    **dict.fromkeys(("os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn",
                     "os.spawn", "subprocess.Popen", "pty.spawn"), "creating processes"),
    **dict.fromkeys(("os.kill", "os.killpg", "signal.pthread_kill"), "sending signals"),
    "resource.prlimit": "changing resource limits",
    "sys.addaudithook": "adding audit hooks",
}
# Events whose first argument is a path that gets modified -> index of their dir_fd argument.
# ("os.rename"/"os.link" modify two paths and are handled apart.)
_PATH_EVENTS = {
    "os.mkdir": 2, "os.rmdir": 1, "os.remove": 1, "os.chmod": 2, "os.chown": 3, "os.utime": 3,
    "shutil.rmtree": 1, "os.truncate": None, "os.chflags": None, "os.setxattr": None,
    "os.removexattr": None,
}
_reserve: bytearray | None = None  # freed on MemoryError so the worker can still answer
_trusted = [False]  # set around the worker's own forks, kills and prctls: the hook lets them be


def _read_exact(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _recv(fd: int) -> dict:
    (n,) = struct.unpack(">I", _read_exact(fd, 4))
    return json.loads(_read_exact(fd, n))


def _send(fd: int, msg: dict) -> None:
    data = json.dumps(msg).encode()
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


class _Capped(io.TextIOBase):
    """A stdout/stderr that keeps the first `limit` characters, so printing 100 MB costs nothing."""

    encoding = "utf-8"

    def __init__(self, limit: int):
        self.limit, self.size, self.cut, self.parts = limit, 0, False, []

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        room = self.limit - self.size
        if room > 0:
            self.parts.append(s[:room])
            self.size += min(room, len(s))
        if len(s) > max(room, 0):
            self.cut = True
        return len(s)

    def text(self) -> str:
        return "".join(self.parts) + (_TRUNCATED if self.cut else "")


def _setlimit(res: int, value: int) -> None:
    """Set soft and hard limit to `value`, never above what we are allowed."""
    _, hard = resource.getrlimit(res)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    try:
        resource.setrlimit(res, (value, value))
    except (ValueError, OSError):
        pass


@contextlib.contextmanager
def _trust() -> Any:
    _trusted[0] = True
    try:
        yield
    finally:
        _trusted[0] = False  # in a woken copy too, which leaves through here


def _fork() -> int:
    """os.fork for the zygote and snapshots, keeping `random`'s state in the child (the module
    reseeds itself after a fork, from the OS: a copy would not be exact). The objects alive now
    are moved out of the collector's reach first (`gc.freeze`, as the gc docs advise before a
    fork): a collection that walks them writes to every page and copies the whole heap, which
    cost ~10 ms per call after a snapshot."""
    import gc
    import random

    state = random.getstate()
    gc.freeze()
    pid = os.fork()
    if pid == 0:
        random.setstate(state)
    return pid


def _install_audit_hook(scratch: str) -> None:
    """Defense in depth under bubblewrap, the main guard without it (not a security boundary)."""
    root = os.path.realpath(scratch)
    prefix = root + os.sep

    def inside(path: object, dir_fd: object = None) -> bool:
        if isinstance(path, int):
            return True
        try:
            path = os.fsdecode(path)  # type: ignore[arg-type]
            if isinstance(dir_fd, int) and dir_fd >= 0 and not os.path.isabs(path):
                path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
            real = os.path.realpath(path)
        except (OSError, TypeError, ValueError):
            return False
        return real == root or real.startswith(prefix) or real == os.devnull

    def hook(event: str, args: tuple) -> None:
        if _trusted[0]:
            return
        what = _DENIED.get(event)
        if what is None and event.startswith(("socket.", "ctypes.")):
            what = "network access" if event[0] == "s" else "ctypes"
        if what is not None:
            raise PermissionError(f"[sandbox] {what} is not allowed ({event})")
        if event == "open":
            bad = args[2] & _WRITE_FLAGS and not inside(args[0])
        elif event in _PATH_EVENTS:
            at = _PATH_EVENTS[event]
            bad = not inside(args[0], None if at is None else args[at])
        elif event in ("os.rename", "os.link"):
            bad = not (inside(args[0], args[2]) and inside(args[1], args[3]))
        elif event == "os.symlink":
            bad = not inside(args[1], args[2])
        elif event == "resource.setrlimit":
            bad = args[0] != resource.RLIMIT_CPU  # the per-cell CPU budget is raised each cell
        else:
            return
        if bad:
            raise PermissionError(
                f"[sandbox] only the working directory is writable ({event} {args[0]!r})"
            )

    sys.addaudithook(hook)


def _start(cfg: dict) -> None:
    """Privileges, imports, seeds, limits, hooks: everything before the first cell."""
    uid = cfg.get("uid")
    if cfg.get("confine"):  # we come back as pid 1 of a pid namespace of our own
        _procs.confine(cfg["confine"], cfg.get("ppid"), cfg["pipes"], cfg.get("lifeline_w"))
    else:  # bubblewrap's outer process holds it (its stderr), not us
        os.close(cfg["lifeline_w"])
    os.chdir(cfg["scratch"])  # before the uid switch: a spare's dir is not its uid's yet
    if uid is not None:  # started as root: become an unprivileged uid of our own
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        if os.getuid() != uid or os.geteuid() != uid:
            os._exit(70)
    try:  # no setuid escalation; die with our parent (cleared by setuid, so set it after)
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    cfg["seccomp"] = _seccomp.install()  # the host warns where it cannot be
    if cfg.get("ppid") and not cfg.get("confine") and os.getppid() != cfg["ppid"]:
        os._exit(0)  # the host died before we could watch it
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != here]
    import random

    _install_deterministic_sources()
    _seed_cell(None)
    random.seed(0)
    try:
        import numpy

        numpy.random.seed(0)
    except Exception:
        pass
    try:
        import PIL.Image  # noqa: F401
    except Exception:
        pass
    try:  # subprocess may be imported (matplotlib does) but never fork through it
        import _posixsubprocess

        def fork_exec(*args: object, **kwargs: object) -> None:
            raise PermissionError("[sandbox] creating processes is not allowed")

        _posixsubprocess.fork_exec = fork_exec
    except Exception:
        pass
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversized writes fail with EFBIG instead
    _setlimit(resource.RLIMIT_CORE, 0)
    _setlimit(resource.RLIMIT_AS, cfg["memory"])
    _setlimit(resource.RLIMIT_FSIZE, cfg["fsize"])
    _setlimit(resource.RLIMIT_NPROC, cfg["nproc"])
    _setlimit(resource.RLIMIT_NOFILE, 256)
    global _reserve
    _reserve = bytearray(8 << 20)
    _install_audit_hook(cfg["scratch"])


def _set_cpu_budget(seconds: int) -> None:
    """RLIMIT_CPU counts the process's whole life: move the soft limit to now + budget."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(usage.ru_utime + usage.ru_stime) + max(1, seconds)
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (soft, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        pass


def _format_exception(exc: BaseException, max_lines: int = 30, max_chars: int = 3000) -> str:
    """The traceback as Python prints it, without this file's frames, trimmed to its tail."""
    te = traceback.TracebackException(type(exc), exc, exc.__traceback__, compact=True)
    te.stack = traceback.StackSummary.from_list(
        [f for f in te.stack if f.filename != __file__]
    )
    lines = "".join(te.format()).splitlines()
    if len(lines) > max_lines:
        lines = [lines[0], f"  ... ({len(lines) - max_lines} lines omitted)"] + lines[-max_lines:]
    text = "\n".join(lines)
    return text if len(text) <= max_chars else "..." + text[-max_chars:]


def _run_cell(ns: dict, req: dict, limit: int) -> dict:
    """Run one cell; the value of a final bare expression is printed, as in a notebook."""
    global _reserve
    out, err = _Capped(0 if req.get("silent") else limit), _Capped(limit)
    name, code = req["name"], req["code"]
    sys.stdout, sys.stderr = out, err
    _seed_cell(req.get("entropy"))
    _set_cpu_budget(req["cpu"])
    try:
        tree = ast.parse(code, name, "exec")
        linecache.cache[name] = (len(code), None, code.splitlines(True), name)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, name, "exec"), ns)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), name, "eval"), ns)
            if value is not None:
                print(repr(value))
    except BaseException as exc:  # user code may raise anything, SystemExit included
        if isinstance(exc, MemoryError):
            _reserve = None
        try:
            err.write(_format_exception(exc))
        except BaseException:
            err.write(f"{type(exc).__name__} (traceback unavailable)")
    finally:
        sys.stdout = sys.stderr = _Capped(0)
    if _reserve is None:
        try:
            _reserve = bytearray(8 << 20)
        except MemoryError:
            pass
    if req.get("silent"):
        return {"seq": req["seq"]}
    return {"seq": req["seq"], "out": out.text(), "err": err.text()}


def main() -> None:
    rfd = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 100)
    wfd = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 100)
    life_w = fcntl.fcntl(2, fcntl.F_DUPFD_CLOEXEC, 100)  # the lifeline's write end (module doc)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    sys.stdin = io.StringIO()
    sys.stdout = sys.stderr = _Capped(0)
    sys.argv = [""]
    try:
        cfg = _recv(rfd)
        cfg["lifeline_w"] = life_w
        for key in ("status", "lifeline"):  # fds the host passed: out of the way
            if isinstance(fd := cfg.get(key), int):
                cfg[key] = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100)
                os.close(fd)
        cfg["pipes"] = tuple(fd for fd in (rfd, wfd, cfg.get("status"), cfg.get("lifeline"))
                             if isinstance(fd, int))
        try:
            _start(cfg)
        except OSError as exc:  # a plan that cannot work here: say why, the host tries another
            _send(wfd, {"ready": False, "error": f"{type(exc).__name__}: {exc}"})
            os._exit(0)
        module = types.ModuleType("__main__")
        module.__builtins__ = builtins  # type: ignore[attr-defined]
        sys.modules["__main__"] = module
        _serve(cfg, module.__dict__, rfd, wfd)
    except (EOFError, OSError):
        pass
    os._exit(0)


def _serve(cfg: dict, ns: dict, rfd: int, wfd: int) -> None:
    """Answer requests until the host goes. As pid 1 of our own pid namespace (`zygote`), first
    fork the session and stay behind, paused: a fresh interpreter to fork again."""
    def send(msg: dict) -> None:
        _send(wfd, msg)

    def report(msg: dict) -> None:
        with contextlib.suppress(OSError):
            _send(cfg["status"], msg)

    ready = {"ready": True, "writable": os.access(cfg["scratch"], os.W_OK),
             "seccomp": cfg["seccomp"]}
    if cfg.get("zygote"):
        mask = _procs.block_signals()
        with _trust():
            first = _fork()
            if first:
                send({**ready, "live": first})
                lifelines = tuple(fd for fd in (rfd, cfg.get("lifeline")) if isinstance(fd, int))
                _procs.pause(send, report, _fork, mask, first, lifelines)  # returns in a new
            else:  # session, once woken
                _procs.unblock_signals(mask)
    else:
        send(ready)
    pipes = [(os.fstat(fd).st_dev, os.fstat(fd).st_ino) for fd in (rfd, wfd)]
    while True:
        req = _recv(rfd)
        keep = list(req.get("keep") or [])
        if req.get("fork"):  # a snapshot: leave a paused copy of this session behind
            with _trust():
                forked = _procs.snapshot_fork(send, report, _fork)
            if forked is None:  # we are that copy, woken as a new session
                continue
            keep += [forked["forked"]] if forked.get("forked") else []
            send({"seq": req.get("seq"), **forked})  # before any model code runs
            if "code" not in req:
                continue
        try:
            resp = _run_cell(ns, req, cfg["max_output"])
        except BaseException as exc:  # our own failure (memory): still answer
            resp = {"seq": req.get("seq"), "out": "", "err": f"[sandbox] {exc!r}"}
        if cfg.get("confined"):  # no process a cell started outlives it
            with _trust():
                _procs.kill_strays(keep)
        try:  # a cell that closed or replaced our pipes must not enter the history
            intact = [(os.fstat(fd).st_dev, os.fstat(fd).st_ino) for fd in (rfd, wfd)] == pipes
        except OSError:
            intact = False
        if not intact:
            with contextlib.suppress(OSError):
                send({"seq": req.get("seq"), "broken": True})
            return
        send(resp)


if __name__ == "__main__":
    main()
