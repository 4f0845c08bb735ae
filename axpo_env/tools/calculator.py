"""Calculator tool: exact arithmetic and symbolic math with sympy on a whitelisted AST.

The evaluator (`_calc_eval.py`) never `eval`s or `sympify`s text and refuses oversized input up
front. sympy cannot be interrupted inside a thread, so evaluation runs in a small worker
subprocess (memory-capped, SIGALRM soft limit); the caller kills it after `TIME_LIMIT_S` and
starts a fresh one. A worker that fails to start (EAGAIN, dying on the way) makes that call a
tool error and the next call starts another: the time limit always holds. Without POSIX pipes it
runs in-process under the static bounds only.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from axpo_env.errors import ToolCallError
from axpo_env.tools import _calc_eval
from axpo_env.tools._calc_eval import (
    TIME_LIMIT_S,
    _err,
    _evaluate,
    _parse,
    _timeout_error,
    _TimeUp,
)
from axpo_env.tools.base import tool

# ---------------------------------------------------------------------------------------------
# The worker: one subprocess, one JSON line in and one out per expression.

# Stub packages let the worker import this module without `axpo_env/__init__` (gymnasium, tasks):
# it starts in about half a second.
_BOOT = """
import sys, types
for name in ("axpo_env", "axpo_env.tools"):
    mod = types.ModuleType(name)
    mod.__path__ = [sys.argv[1] + "/" + name.replace(".", "/")]
    sys.modules[name] = mod
from axpo_env.tools.calculator import _worker_main
_worker_main()
"""
_STARTUP_TIMEOUT_S = 60.0
_MEMORY_LIMIT = 2 << 30


def _worker_main() -> None:
    """Serve expressions on stdin until it closes; stray prints go to stderr, not the channel."""
    _calc_eval._IN_WORKER = True
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)

    def on_alarm(signum: int, frame: Any) -> None:
        raise _TimeUp()

    signal.signal(signal.SIGALRM, on_alarm)
    try:
        import resource

        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        limit = _MEMORY_LIMIT if hard == resource.RLIM_INFINITY else min(hard, _MEMORY_LIMIT)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):
        pass
    out.write(b'{"ready": true}\n')
    for line in sys.stdin.buffer:
        try:
            req = json.loads(line)
            reply = {"text": _evaluate(req["expr"], req["limit"])}
        except ToolCallError as e:
            reply = {"error": str(e)}
        except (Exception, _TimeUp) as e:
            reply = {"error": f"could not evaluate: {type(e).__name__}"}
        out.write(json.dumps(reply).encode() + b"\n")


class _Worker:
    """Client side of one worker process."""

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[2])
        self.owner = os.getpid()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, root], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, bufsize=0, close_fds=True,
        )
        self.buf = b""
        self.ready = False

    def ask(self, expression: str, limit: float) -> dict[str, Any]:
        if not self.ready:
            self._line(_STARTUP_TIMEOUT_S)
            self.ready = True
        try:
            req = json.dumps({"expr": expression, "limit": limit}).encode() + b"\n"
            self.proc.stdin.write(req)  # type: ignore[union-attr]
        except OSError:
            raise EOFError from None
        return json.loads(self._line(limit + 0.25))

    def _line(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise EOFError
                self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def kill(self) -> None:
        if self.owner == os.getpid() and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.stdout.close()  # type: ignore[union-attr]


_LOCK = threading.Lock()
_WORKER: _Worker | None = None
_NO_WORKER = os.name != "posix"  # select() on pipes needs POSIX


def _shutdown() -> None:
    global _WORKER
    if _WORKER is not None:
        _WORKER.kill()
        _WORKER = None


def _forget_after_fork() -> None:
    """A forked child must not share the parent's pipes or lock."""
    global _WORKER, _LOCK
    _WORKER, _LOCK = None, threading.Lock()


atexit.register(_shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _start() -> _Worker | None:
    """A new worker, or None when the OS refuses a process now (EAGAIN): the next call retries."""
    try:
        return _Worker()
    except OSError:
        return None


def evaluate(expression: str, time_limit_s: float = TIME_LIMIT_S) -> str:
    """The calculator's answer for `expression`, or `ToolCallError` saying what is wrong."""
    global _WORKER
    _parse(expression)  # instant errors for syntax, size and names, without a round trip
    with _LOCK:
        if _NO_WORKER:
            return _evaluate(expression, time_limit_s)
        if _WORKER is not None and _WORKER.proc.poll() is not None:
            _shutdown()  # died between calls (OOM killer, a signal): not this expression's fault
        try:
            _WORKER = _WORKER or _Worker()
            reply = _WORKER.ask(expression, time_limit_s)
        except (TimeoutError, EOFError, OSError, ValueError) as e:
            starting = _WORKER is None or not _WORKER.ready
            _shutdown()
            _WORKER = _start()  # the next one starts now, while the agent reads the error
            if starting and isinstance(e, TimeoutError):  # slow (a busy machine), not broken
                raise _err("the calculator is still starting (the machine is busy); call it "
                           "again") from None
            if starting:  # never evaluate in-process instead: nothing could stop it in time
                warnings.warn(f"calculator worker failed to start ({e!r}); the call fails "
                              "and the next one starts another", RuntimeWarning, stacklevel=2)
                raise _err("the calculator could not start (the machine is busy); call it "
                           "again") from None
            if isinstance(e, TimeoutError):
                raise _timeout_error(time_limit_s) from None
            raise _err("the calculation crashed or ran out of memory and was stopped; "
                       "split it into smaller steps") from None
    if "error" in reply:
        raise ToolCallError(reply["error"])
    return reply["text"]


@tool
def calculator(expression: str) -> str:
    """Evaluate a math expression exactly with sympy: arithmetic, algebra and calculus.

    Python syntax: 2**10, sqrt(8), sin(pi/6), log(8, 2), factorial(10), factor(x**2 - 1),
    solve(x**2 - 4, x), diff(sin(x), x), integrate(x**2, (x, 0, 1)), N(pi, 30).
    Decimals are exact (0.1 is 1/10); answers also show a decimal approximation.
    Variables: x, y, z, t, n, k, a, b, c. Constants: pi, E, I (imaginary unit), oo.

    Args:
        expression: One expression, e.g. "sqrt(2) * 3 / 4" or "solve(x**2 - 2, x)".
    """
    return evaluate(expression)
