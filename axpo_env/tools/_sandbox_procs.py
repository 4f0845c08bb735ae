"""Processes inside the Python sandbox: the private namespaces of the `namespaces+uid` mode, the
paused zygote and the paused copy-on-write forks that make a session snapshot exact.

Stdlib only; the worker (`_sandbox_worker.py`) imports it before anything else. Where the worker
is pid 1 of a pid namespace of its own (bubblewrap's `--as-pid-1`, or `confine` here), it never
runs a cell: it forks the session process and waits, paused, as a fresh interpreter. A snapshot
is another paused fork, of the session. Woken by SIGUSR1 from outside the namespace, a paused
process forks a new session from its own memory, so restoring costs a fork, not an interpreter
start plus a replay. Only the host's wake counts: a plain signal (SI_USER) whose sender has no
pid in the sandbox (0); model code can send neither (its kill() carries its pid, its queued
signals a negative code). Paused processes block every other signal, so no handler model code
installed runs in them. Paused processes hold the protocol pipe too, so the host sees no EOF when
only a session dies: the parent that reaps a session reports its exit status on a pipe of its
own instead. Pid 1 also watches its lifelines (the host's request pipe, and a pipe only the
sandbox's outer process holds open): when either is gone, the host is, and the sandbox ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
from collections.abc import Callable
from typing import Any

_NEW_NAMESPACES = 0x00020000 | 0x04000000 | 0x08000000 | 0x40000000  # CLONE_NEW{NS,UTS,IPC,NET}
_CLONE_NEWPID = 0x20000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 0x4000, 1 << 18
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE = 1, 4
_WAKE = signal.SIGUSR1
_SIGNALS = {signal.SIGUSR1, signal.SIGCHLD}
_SI_USER = 0
_WATCH_S = 0.5  # how often pid 1 looks at its lifelines

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    _check(_libc.mount(src and os.fsencode(src), os.fsencode(target), fstype and fstype.encode(),
                       ctypes.c_ulong(flags), data and data.encode()), f"mount {target}")


def prctl(option: int, value: int) -> None:
    _libc.prctl(option, value, 0, 0, 0)


def confine(spec: dict, ppid: int | None, pipes: tuple[int, ...], lifeline: int | None) -> None:
    """Without bubblewrap, as root: private mount/network/IPC/UTS/pid namespaces, every mount
    read-only, fresh tmpfs over `spec["hide"]`, `spec["bind"]` dirs bound back. The caller
    returns as pid 1 of the new pid namespace, with a /proc of its own (model code sees and can
    signal no host process); this process stays outside as its parent, holding nothing, and
    exits with it. Then the uid drop leaves model code no capability, no network, and no
    writable place but its scratch dir."""
    _check(_libc.unshare(_NEW_NAMESPACES | _CLONE_NEWPID), "unshare")
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    with open("/proc/self/mountinfo", "rb") as f:
        points = [line.split()[4].decode("unicode_escape") for line in f]
    for point in points:
        if point.split("/")[1] in ("proc", "sys", "dev"):
            continue
        with contextlib.suppress(OSError):
            kept = os.statvfs(point).f_flag & (_MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
            _mount(None, point, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | kept)
    binds = [(path, rw, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path, rw in spec["bind"]]
    _minimal_dev()
    for top in spec["hide"]:
        _mount("tmpfs", top, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=0755")
    for path, rw, fd in binds:
        if not os.path.isdir(path):
            os.makedirs(path, 0o755)
        _mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)
        _mount(None, path, None, _MS_REMOUNT | _MS_BIND | _MS_NOSUID | _MS_NODEV
               | (0 if rw else _MS_RDONLY))
        os.close(fd)
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # this outer process dies with the host...
    if ppid and os.getppid() != ppid:
        os._exit(0)
    child = os.fork()
    if child == 0:  # pid 1 of the new namespace
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # ...and the namespace with it
        _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
        if lifeline is not None:  # held open by this outer process alone
            os.close(lifeline)
        return
    for fd in pipes:  # the host must see EOF when the namespace is gone
        os.close(fd)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except ChildProcessError:
            os._exit(0)
        except InterruptedError:
            continue
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def _minimal_dev() -> None:
    """A /dev of the harmless character devices alone: not the host's /dev/net/tun, /dev/fuse,
    disks or consoles."""
    held = {}
    for name in _DEVICES:
        with contextlib.suppress(OSError):
            held[name] = os.open(f"/dev/{name}", os.O_PATH)
    _mount("tmpfs", "/dev", "tmpfs", _MS_NOSUID | _MS_NOEXEC, "size=64k,mode=0755")
    for name, fd in held.items():
        os.close(os.open(f"/dev/{name}", os.O_CREAT | os.O_WRONLY, 0o666))
        _mount(f"/proc/self/fd/{fd}", f"/dev/{name}", None, _MS_BIND)
        os.close(fd)
    os.mkdir("/dev/shm", 0o755)
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{i}", f"/dev/{name}")
    os.symlink("/proc/self/fd", "/dev/fd")


def block_signals() -> set[signal.Signals]:
    """Block every signal (SIGKILL and SIGSTOP cannot be); the mask before, to give back."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # reaped by hand: exit statuses are reported
    return signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())


def unblock_signals(mask: set[signal.Signals]) -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _gone(fds: tuple[int, ...]) -> bool:
    """Whether a lifeline pipe has lost its writer (the host, or the sandbox's outer process)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL)
               for _, ev in poller.poll(0))


def _reap(sessions: set[int], report: Callable[[dict], None]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in sessions:
            sessions.discard(pid)
            signaled = os.WIFSIGNALED(status)
            report({"exit": pid, "signal": os.WTERMSIG(status) if signaled else 0,
                  "code": 0 if signaled else os.WEXITSTATUS(status)})


def pause(send: Callable[[dict], None], report: Callable[[dict], None], fork: Callable[[], int],
          mask: set[signal.Signals], first: int | None = None,
          lifelines: tuple[int, ...] = ()) -> None:
    """Wait, paused, for the host's SIGUSR1; return in a new session forked from here (which
    announces itself with a `{"live": pid}` frame; `report` tells the host when one of our
    sessions ends). Every signal is blocked by the caller before it forked us; `mask` is the
    session's own, given back to each new session. `first`: a session already forked (the
    zygote's first one). `lifelines` (pid 1 only): pipes whose hang-up means the host is gone."""
    prctl(_PR_SET_DUMPABLE, 0)  # model code (same uid) may not ptrace or read a paused copy
    sessions = set() if first is None else {first}
    while True:
        try:
            if lifelines:
                info = signal.sigtimedwait(_SIGNALS, _WATCH_S)
            else:
                info = signal.sigwaitinfo(_SIGNALS)
        except InterruptedError:
            continue
        if info is None:
            if _gone(lifelines):
                os._exit(0)
            continue
        if info.si_signo == signal.SIGCHLD:
            _reap(sessions, report)
            continue
        if info.si_code != _SI_USER or info.si_pid != 0:  # not the host's: forged, ignored
            continue
        pid = fork()
        if pid == 0:
            prctl(_PR_SET_DUMPABLE, 1)
            unblock_signals(mask)
            send({"live": os.getpid()})
            return
        sessions.add(pid)


def snapshot_fork(send: Callable[[dict], None], report: Callable[[dict], None],
                  fork: Callable[[], int]) -> dict[str, Any] | None:
    """In a session: leave a paused copy of this process behind. What to tell the host
    (`forked`: the copy's pid, or None and `why`), or None in the copy, once woken as a new
    session. A session with threads is not forked (a fork keeps only the calling thread: the
    copy would not be exact)."""
    try:
        threads = len(os.listdir("/proc/self/task"))
    except OSError:
        threads = 0
    if threads != 1:
        return {"forked": None, "why": "the session runs threads"}
    mask = block_signals()
    try:
        pid = fork()
    except OSError as e:
        unblock_signals(mask)
        return {"forked": None, "why": f"fork failed: {e.strerror}"}
    if pid == 0:
        pause(send, report, fork, mask)
        return None
    unblock_signals(mask)
    return {"forked": pid}


def kill_strays(keep: list[int]) -> None:
    """End every process a cell started. With no paused copies to keep, one kill(-1) (it spares
    us and pid 1); else every other process of the namespace but pid 1 and `keep`, until none is
    left (a process being killed cannot fork)."""
    if not keep:
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)
        _reap_dead()
        return
    spare = set(keep) | {1, os.getpid()}
    for _ in range(1000):
        alive = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) in spare:
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    if f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X"):
                        continue
            except (OSError, IndexError):
                continue
            alive.append(int(name))
            with contextlib.suppress(OSError):
                os.kill(int(name), signal.SIGKILL)
        _reap_dead()
        if not alive:
            return


def _reap_dead() -> None:
    """Reap our children that have died (a paused copy the host evicted, killed strays): a
    zombie still counts against the sandbox's process limit."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
