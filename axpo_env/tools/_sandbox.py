"""The process sandbox behind the `python` tool: how workers start, and their frame protocol.

Bubblewrap where it works (new network/pid/IPC namespaces, read-only root, only the scratch dir
writable); as root without it, the worker makes private namespaces itself, pid included, and
drops to a uid of its own (model code never runs as root); else resource limits. With a pid
namespace the worker is its pid 1, a zygote that forks the session (`_sandbox_procs`). The worker
(`_sandbox_worker.py`) adds Python audit hooks in all, which are not a wall. Every wait on a
worker has a deadline and every frame it sends is bounded, so nothing it does can hang the host
or fill its memory.
"""
from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import select
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import Future
from typing import Any

from axpo_env.errors import AxpoError
from axpo_env.tools._sandbox_files import _new_scratch, _rmtree  # noqa: F401  (re-exported)
from axpo_env.tools._sandbox_limits import new_cgroup
from axpo_env.tools._sandbox_mounts import (  # noqa: F401  (re-exported for the tools and tests)
    _WORKER,
    _blocked_ancestor,
    _bwrap_argv,
    _confine_spec,
    _new_uid,
    _Plan,
    _python_roots,
)

_FRAME_SLACK = 64 << 10  # a reply's bytes beyond its two capped texts (JSON keys, escapes)
_STARTUP_TIMEOUT = 30.0


class _Died(Exception):
    """The worker exited, or broke the protocol, during a request."""


class _Timeout(Exception):
    """The host-side deadline passed."""


def _candidates(isolation: str) -> list[_Plan]:
    """Plans to try, best first. As root, never one that leaves model code running as root."""
    bwrap = shutil.which("bwrap") if isolation != "rlimits" else None
    root = os.geteuid() == 0
    plans = [_Plan(bwrap, drop=True)] if bwrap and root else []
    plans += [_Plan(bwrap, userns=True)] if bwrap else []
    if isolation != "bwrap":
        if root:
            plans.append(_Plan(None, drop=True, unshare=True))
            if not any(_blocked_ancestor(p) for p in _python_roots()):
                plans.append(_Plan(None, drop=True))
        else:
            plans.append(_Plan(None))
    return plans


_PLANS: dict[str, _Plan] = {}
_PLAN_LOCK = threading.Lock()
_PROBE_LIMITS = {"memory": 1 << 30, "fsize": 1 << 20, "nproc": 64, "max_output": 100}


def _probe(plan: _Plan) -> str | None:
    """Start a worker with `plan` and run one cell; the error, or None when it works."""
    scratch = _new_scratch(None, "probe-")
    uid = _new_uid() if plan.drop else None
    try:
        if uid is not None:
            os.chown(scratch, uid, uid)
        worker = _Worker(plan, scratch, uid, _PROBE_LIMITS)
        try:
            resp = worker.request({"code": "1 + 1", "name": "<probe>", "cpu": 5}, 20.0)
        finally:
            worker.kill()
        return None if resp.get("out") == "2\n" else f"unexpected answer {resp!r}"
    except (_Died, _Timeout, OSError) as e:
        return str(e) or type(e).__name__
    finally:
        _rmtree(scratch)


_PROTECTS = {
    "namespaces+uid": "model code runs as an unprivileged uid of its own in private mount, "
                      "network, IPC and pid namespaces, with a read-only filesystem but its "
                      "scratch dir",
    "uid+rlimits": "model code runs as an unprivileged uid of its own with resource limits; it "
                   "can still read world-readable files and reach the network",
    "rlimits+audit": "model code runs as your own user with resource limits and Python audit "
                     "hooks only, which are not a security boundary: it can read and write what "
                     "you can",
}


def _resolve_plan(isolation: str) -> _Plan:
    """The first plan that works here (probed once per process), with a warning that says what
    protects model code whenever it is less than bubblewrap."""
    with _PLAN_LOCK:
        if isolation not in _PLANS:
            errors = []
            for plan in _candidates(isolation):
                err = None if plan == _Plan(None) else _probe(plan)
                if err is None:
                    break
                errors.append(f"{plan.label}: {err}")
            else:
                if isolation == "bwrap":
                    raise AxpoError(
                        "isolation='bwrap' was asked for, but bubblewrap cannot start a sandbox "
                        f"here ({'; '.join(errors)}). Use isolation='auto' or 'rlimits'.")
                raise AxpoError(
                    "the python tool refuses to run model code as root, and no way to drop root "
                    f"works here ({'; '.join(errors) or 'bubblewrap is not installed'}). Install "
                    "bubblewrap (apt install bubblewrap), run as a non-root user, or give the "
                    "process CAP_SYS_ADMIN so it can make private namespaces.")
            if plan.bwrap is None and (isolation == "auto" or plan.label == "rlimits+audit"):
                why = "not installed" if not shutil.which("bwrap") else (
                    "unusable" if isolation == "auto" else "not asked for")
                detail = f" ({errors[0]})" if errors and why == "unusable" else ""
                warnings.warn(f"python tool: bubblewrap {why}{detail}; isolation is "
                              f"{plan.label!r}: {_PROTECTS[plan.label]}.", RuntimeWarning,
                              stacklevel=3)
            _PLANS[isolation] = plan
        return _PLANS[isolation]


# ---------------------------------------------------------------------------------------------
# One worker process and its frame protocol; every wait has a deadline.


def _kill_uid(uid: int) -> None:
    """SIGKILL every process whose real uid is `uid` (the sandbox's own), until none is left."""
    for _ in range(100):
        found = False
        for name in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{name}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if ":" in line)
                if int(fields["Uid"].split()[0]) == uid and fields["State"].split()[0] != "Z":
                    found = True
                    os.kill(int(name), signal.SIGKILL)
            except (OSError, KeyError, ValueError, IndexError):
                continue
        if not found:
            return
        time.sleep(0.01)


_UNFILTERED: list[bool] = []  # warned once: no seccomp filter here
_SPAWNER: dict[int, queue.SimpleQueue] = {}  # by pid: a forked child needs its own thread
_SPAWN_LOCK = threading.Lock()


def _spawner(jobs: queue.SimpleQueue) -> None:
    while True:
        start, future = jobs.get()
        try:
            future.set_result(start())
        except BaseException as e:  # handed to the caller
            future.set_exception(e)


def _spawn(start: Any) -> subprocess.Popen:
    """Start processes from one daemon thread that lives as long as the process: the sandbox
    dies with the *thread* that forked it (PR_SET_PDEATHSIG, --die-with-parent), and trainers'
    pool threads come and go; a daemon thread also outlives the atexit cleanup."""
    with _SPAWN_LOCK:
        if os.getpid() not in _SPAWNER:
            _SPAWNER.clear()
            _SPAWNER[os.getpid()] = jobs = queue.SimpleQueue()
            threading.Thread(target=_spawner, args=(jobs,), name="axpo-py-spawner",
                             daemon=True).start()
        jobs = _SPAWNER[os.getpid()]
    future: Future = Future()
    jobs.put((start, future))
    return future.result()


class _Worker:
    """A running sandbox. `history`: the cells its session has run; `used`: ran anything. With a
    zygote (`plan.zygote`), the session is a child of the sandbox's pid 1: `live` is its pid
    there, `exit` its exit status once its parent reported it; `forks` holds the sandbox's
    paused copies (`_sandbox_forks.Forks`, set by the tool)."""

    def __init__(self, plan: _Plan, scratch: str, uid: int | None, limits: dict[str, int],
                 check_writable: bool = True):
        self.plan, self.history, self.used, self.seq, self.buf = plan, (), False, 0, bytearray()
        self.uid = uid
        self.live: int | None = None
        self.exit: dict[str, Any] | None = None
        self.forks: Any = None
        self.forked: dict[str, Any] = {}  # what the session said of the fork a request asked for
        # The frame pipe is the worker's, so a cell can write frames of its own: bound what the
        # host reads per call (a char JSON-escapes to at most 12 bytes), trust nothing in it.
        self.max_frame = 2 * 12 * limits["max_output"] + _FRAME_SLACK
        self.budget = 4 * self.max_frame
        argv = (_bwrap_argv(plan, scratch) if plan.bwrap else []) + [sys.executable, "-s", "-B",
                                                                      _WORKER]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch,
               "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONNOUSERSITE": "1", "MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1",
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}
        if "LD_LIBRARY_PATH" in os.environ:
            env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
        # Exit reports of sessions come apart from the session's frames: they may not interleave
        self.sfd, status = os.pipe()
        self.sbuf: bytearray | None = bytearray()
        # The lifeline: stderr of the sandbox's outer process (bubblewrap keeps only fds 0-2 open,
        # and the worker lets go of its copy), so pid 1 sees it hang up when that process dies,
        # whose death signal may not reach a stranger uid. Its bytes are start-up errors.
        self.errfd, life_w = os.pipe()
        os.set_blocking(self.errfd, False)
        # One cgroup for the whole sandbox where it can be made (`_sandbox_limits`)
        self.cgroup = cgroup = new_cgroup(limits["sandbox_memory"], limits["nproc"] + 4) \
            if limits.get("sandbox_memory") else None
        if cgroup is not None:  # joined before anything of the sandbox runs, by a shell's exec
            files = cgroup.procs_files()
            argv = ["/bin/sh", "-c", 'n=$1; shift; while [ "$n" -gt 0 ]; do '
                    'echo $$ > "$1" || exit 71; shift; n=$((n - 1)); done; exec "$@"', "sh",
                    str(len(files)), *files, *argv]
        try:
            self.proc = _spawn(lambda: subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=life_w,
                cwd=scratch, env=env, start_new_session=True, pass_fds=(status, self.errfd)))
        finally:
            for fd in (status, life_w):
                os.close(fd)
        os.set_blocking(self.sfd, False)
        self.rfd, self.wfd = self.proc.stdout.fileno(), self.proc.stdin.fileno()  # type: ignore
        os.set_blocking(self.rfd, False)
        os.set_blocking(self.wfd, False)
        cfg = {"scratch": scratch, "uid": uid if plan.drop else None,
               "ppid": None if plan.bwrap else os.getpid(), "confined": plan.confined,
               "zygote": plan.zygote, "status": status, "lifeline": self.errfd,
               "confine": _confine_spec(scratch) if plan.unshare else None, **limits}
        try:
            deadline = time.monotonic() + _STARTUP_TIMEOUT
            self._send(cfg, deadline)
            ready = self._frame(deadline)
            if ready.get("error"):
                raise _Died(str(ready["error"])[:300])
            if check_writable and not ready.get("writable"):
                raise _Died("the sandbox cannot write its working directory")
            if plan.zygote and not isinstance(ready.get("live"), int):
                raise _Died("the sandbox did not start its session")
            self.live = ready.get("live")
            if not ready.get("seccomp") and not _UNFILTERED:
                _UNFILTERED.append(True)
                warnings.warn("python tool: the seccomp filter could not be installed here (not "
                              "Linux on x86_64/aarch64?): model code may create user namespaces",
                              RuntimeWarning, stacklevel=2)
        except (_Died, _Timeout) as e:
            tail = ""
            with contextlib.suppress(OSError):
                tail = os.read(self.errfd, 1 << 16)[-500:].decode(errors="replace").strip()
            self.kill()
            raise _Died(f"worker did not start: {e or type(e).__name__} {tail}".strip()) from None

    def request(self, msg: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one cell and wait, until `timeout` s, for the answer to it. A request with
        `"fork"` first gets the session's word on the fork, kept in `self.forked`: it comes
        before any model code runs, and `seq` is a number no cell could have guessed, so no
        frame a cell wrote can stand in for it."""
        self.seq, self.used, self.budget = secrets.randbits(62), True, 4 * self.max_frame
        deadline = time.monotonic() + timeout
        self._send({**msg, "seq": self.seq}, deadline)
        if msg.get("fork"):
            self.forked = self._reply(deadline)
            if "code" not in msg:
                return self.forked
        resp = self._reply(deadline)
        if resp.get("broken"):
            raise _Died("the code closed or replaced the sandbox's pipes")
        return resp

    def _reply(self, deadline: float) -> dict[str, Any]:
        while (resp := self._frame(deadline)).get("seq") != self.seq:
            pass  # frames a cell forged for requests that are over
        return resp

    def announced(self, timeout: float) -> int:
        """The pid a new session announces in its first frame (`{"live": pid}`); read right
        after a switch, when nothing but that session can have written to the pipe."""
        msg = self._frame(time.monotonic() + timeout)
        if not isinstance(msg.get("live"), int):
            raise _Died("it broke the protocol")
        return msg["live"]

    def drain(self) -> None:
        """Drop every byte waiting on the pipes: what the processes just killed wrote."""
        self.buf = bytearray()
        for fd in (self.rfd, self.sfd):
            with contextlib.suppress(BlockingIOError, OSError):
                while os.read(fd, 1 << 16):
                    pass
        if self.sbuf is not None:
            self.sbuf = bytearray()

    def _wait(self, fd: int, events: int, deadline: float) -> None:
        """Until `fd` is ready; exit reports that come meanwhile are read (`_reports`)."""
        while True:
            poller = select.poll()
            poller.register(fd, events)
            if self.sbuf is not None:
                poller.register(self.sfd, select.POLLIN)
            left = deadline - time.monotonic()
            ready = dict(poller.poll(left * 1000)) if left > 0 else {}
            if not ready:
                raise _Timeout
            if self.sfd in ready:
                self._reports()
            if fd in ready:
                return

    def _reports(self) -> None:
        """Read the exit reports the sandbox's paused processes wrote; the live session's is
        `_Died` (model code can write there too: at worst it ends its own session)."""
        assert self.sbuf is not None
        try:
            while chunk := os.read(self.sfd, 1 << 12):
                self.sbuf += chunk
                if len(self.sbuf) > 1 << 16:
                    raise _Died("it broke the protocol")
            self.sbuf = None  # every writer is gone: stop listening
            return
        except BlockingIOError:
            pass
        while len(self.sbuf) >= 4 and len(self.sbuf) >= 4 + (
                n := struct.unpack(">I", self.sbuf[:4])[0]):
            data = bytes(self.sbuf[4:4 + n])
            del self.sbuf[:4 + n]
            try:
                msg = json.loads(data)
            except ValueError:
                raise _Died("it broke the protocol") from None
            if isinstance(msg, dict) and msg.get("exit") == self.live is not None:
                self.exit = msg
                raise _Died("it exited")

    def _send(self, msg: dict[str, Any], deadline: float) -> None:
        data = json.dumps(msg).encode()
        view = memoryview(struct.pack(">I", len(data)) + data)
        while view:
            self._wait(self.wfd, select.POLLOUT, deadline)
            try:
                view = view[os.write(self.wfd, view):]
            except BlockingIOError:
                continue
            except OSError as e:
                raise _Died("it exited") from e

    def _frame(self, deadline: float) -> dict[str, Any]:
        while len(self.buf) < 4 or len(self.buf) < 4 + struct.unpack(">I", self.buf[:4])[0]:
            if len(self.buf) >= 4 and struct.unpack(">I", self.buf[:4])[0] > self.max_frame:
                raise _Died("it broke the protocol")
            self._wait(self.rfd, select.POLLIN, deadline)
            try:
                chunk = os.read(self.rfd, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                raise _Died("it exited")
            self.budget -= len(chunk)
            if self.budget < 0:  # forged frames, one after another
                raise _Died("it broke the protocol")
            self.buf += chunk
        (n,) = struct.unpack(">I", self.buf[:4])
        data = bytes(self.buf[4:4 + n])
        del self.buf[:4 + n]
        try:
            msg = json.loads(data)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            raise _Died("it broke the protocol")
        return msg

    def alive(self) -> bool:
        return self.proc.returncode is None and not self._exited(0)

    def _exited(self, wait: float) -> bool:
        """Whether the process has ended (within `wait` s), without reaping it."""
        end = time.monotonic() + wait
        while True:
            try:
                if os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                    return True
            except ChildProcessError:
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(0.005)

    def crash_reason(self, died: _Died) -> str:
        """Why the worker died in a call ("cpu" for RLIMIT_CPU), after letting it finish dying."""
        exited = str(died) == "it exited" and (self.exit is not None or self._exited(1.0))
        self.kill()
        if not exited:
            return "it stopped answering" if str(died) == "it exited" else str(died)
        rc = self.proc.returncode or 0
        sig = -rc if rc < 0 else (rc - 128 if self.plan.bwrap and rc > 128 else 0)
        if self.exit is not None:  # the session died, reported by its parent
            sig, rc = int(self.exit.get("signal") or 0), int(self.exit.get("code") or 0)
        if sig == signal.SIGXCPU:
            return "cpu"
        if sig:
            with contextlib.suppress(ValueError):
                return f"killed by {signal.Signals(sig).name}"
            return f"killed by signal {sig}"
        return f"exit code {rc}"

    def kill(self) -> None:
        """Kill the sandbox: the pid namespace's init first (the outer bwrap then reaps it),
        then the process group, whose id is still ours as long as we have not reaped it."""
        pid = self.proc.pid
        if self.proc.returncode is None:
            try:
                with open(f"/proc/{pid}/task/{pid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except (OSError, ValueError):
                kids = []
            for kid in kids:
                with contextlib.suppress(OSError):
                    os.kill(kid, signal.SIGKILL)
            if kids:
                self._exited(1.0)
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            if self.plan.drop and not self.plan.zygote and self.uid is not None:
                _kill_uid(self.uid)  # no pid namespace: strays that left the group live on
        for f in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                f.close()  # type: ignore[union-attr]
        if self.errfd >= 0:
            os.close(self.errfd)
            self.errfd = -1
        if self.sfd >= 0:
            os.close(self.sfd)
            self.sfd, self.sbuf = -1, None
        if self.forks is not None:
            self.forks.close()  # they died with the sandbox; their files go too
        if self.cgroup is not None and self.proc.returncode is not None:
            self.cgroup.close()
