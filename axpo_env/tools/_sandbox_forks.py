"""Paused copy-on-write forks of a Python session, one per snapshot: restoring a snapshot wakes
its fork, which forks a new session from its memory, so a diverged restore costs a fork and a
copy of the scratch dir (a few ms) and is exact for any code; a replay of the cells reproduces
only what they compute deterministically.

Forks need a sandbox that is a pid namespace with its own pid 1 (`_Plan.zygote`: bubblewrap, or
`namespaces+uid`): they live there, paused and reaped by the zygote, and die with the sandbox
(close, garbage collection, a new episode, a crashed call); elsewhere restores replay. At most
`limit` are kept per sandbox, the least recently used evicted first; a snapshot value holds only
the fork's key, so one restored after its fork is gone, or in another process, replays.
Model code runs as the forks' uid and could kill one (that snapshot then replays) or stop one
(the host continues it before waking it) but not read or write its memory (paused copies are not
dumpable), wake one, or run code in one (they block every signal). Before the host touches the
scratch dir or wakes a fork, every other process of the sandbox is killed and gone, and what
they wrote to the pipes is dropped: nothing a diverged branch left running reaches the next.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import signal
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from axpo_env.tools._sandbox import _Died, _new_scratch, _rmtree, _Worker
from axpo_env.tools._sandbox_files import copy_out

_keys = itertools.count()
_SWITCH_TIMEOUT = 5.0


@dataclass(frozen=True)
class SessionState:
    """A Python session as a snapshot holds it: the cells run so far, which replay anywhere,
    and the key of the paused fork this process keeps of it, if any (exact, and fast)."""

    cells: tuple[str, ...]
    fork: str | None = None


def new_key() -> str:
    return f"{os.getpid()}:{next(_keys)}"


@dataclass
class _Fork:
    key: str
    cells: tuple[str, ...]
    ns: int  # its pid in the sandbox
    host: int  # its pid here
    pidfd: int
    files: str  # the copy of the scratch dir it goes with


def _children(pid: int) -> list[int]:
    kids = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError), \
                    open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(k) for k in f.read().split()]
    return kids


def _ns_pid(pid: int) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    return None


def _ended(pidfd: int, timeout: float) -> bool:
    """Whether the process behind `pidfd` has exited (waiting up to `timeout` s)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def _find(root: int, ns: int) -> int | None:
    """The host pid of the process whose pid in the sandbox is `ns`, among `root`'s descendants."""
    return next((pid for pid in _descendants(root) if _ns_pid(pid) == ns), None)


def _descendants(root: int) -> list[int]:
    """`root` and every process below it: a pid namespace's init has them all, orphans too."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += _children(pid)
    return out


def _runs(pid: int) -> bool:
    """Whether `pid` can still run: not exited (a zombie waiting to be reaped runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def _kill_all_but(root: int, keep: set[int], timeout: float) -> None:
    """SIGKILL every process below `root` but those in `keep` (host pids), until none is left,
    and wait until all have exited: then none can write a file or a frame any more."""
    ns = os.readlink(f"/proc/{root}/ns/pid")
    doomed: list[int] = []
    end = time.monotonic() + timeout
    while victims := [p for p in _descendants(root)
                      if p != root and p not in keep and _runs(p)]:
        for pid in victims:
            with contextlib.suppress(OSError):
                fd = os.pidfd_open(pid)
                if os.readlink(f"/proc/{pid}/ns/pid") != ns:  # the pid was reused meanwhile
                    os.close(fd)
                    continue
                signal.pidfd_send_signal(fd, signal.SIGKILL)
                doomed.append(fd)
        try:
            for fd in doomed:
                if not _ended(fd, max(0.0, end - time.monotonic())):
                    raise _Died("the sandbox's processes did not end")
        finally:
            for fd in doomed:
                os.close(fd)
            doomed.clear()
        if time.monotonic() > end:
            raise _Died("the sandbox's processes did not end")


class Forks:
    """The paused forks of one sandbox's session, by key, least recently used first."""

    def __init__(self, worker: _Worker, limit: int, max_bytes: int, scratch_root: str | None):
        self.worker, self.limit, self.max_bytes = worker, limit, max_bytes
        self.forks: OrderedDict[str, _Fork] = OrderedDict()
        self.scratch_root, self.dir, self.count = scratch_root, None, 0
        self.live_parent: str | None = None  # the fork the live session came from: kept
        self._root: int | None = None

    def get(self, key: str | None, cells: tuple[str, ...]) -> _Fork | None:
        fork = self.forks.get(key) if key is not None else None
        return fork if fork is not None and fork.cells == cells else None

    def keep(self) -> list[int]:
        """Pids, in the sandbox, of the processes a session must not kill after a cell."""
        return [f.ns for f in self.forks.values()]

    def root(self) -> int:
        """The host pid of the sandbox's pid 1 (the zygote), the only child of the worker's
        process (the outer bubblewrap, or the process that made the namespaces)."""
        if self._root is None:
            kids = _children(self.worker.proc.pid)
            if len(kids) != 1:
                raise _Died("the sandbox's pid 1 is gone")
            self._root = kids[0]
        return self._root

    def take(self, key: str, cells: tuple[str, ...], scratch: str, timeout: float) -> str | None:
        """Leave a paused fork of the live session (which has run `cells`) as snapshot `key`,
        with a copy of its scratch dir; None, or why not."""
        files = self.copy(scratch)
        if files is None:
            return f"its files take more than {self.max_bytes >> 20} MB"
        try:
            self.worker.request({"fork": True}, timeout)
        except BaseException:
            _rmtree(files)
            raise
        return self.adopt(key, cells, files)

    def copy(self, scratch: str) -> str | None:
        """A copy of the scratch dir for a fork about to be taken; None if too big."""
        if self.dir is None:
            self.dir = _new_scratch(self.scratch_root, "snap-")
        self.count += 1
        files = os.path.join(self.dir, str(self.count))
        return files if copy_out(scratch, files, self.max_bytes) else None

    def adopt(self, key: str, cells: tuple[str, ...], files: str) -> str | None:
        """Keep the fork the session reported before its cell ran (`worker.forked`; `forked`:
        its pid in the sandbox, a child of the session) as snapshot `key`, with `files`; None,
        or why not."""
        said = self.worker.forked
        ns, host, pidfd = said.get("forked"), None, None
        if isinstance(ns, int) and self.worker.live is not None:
            session = _find(self.root(), self.worker.live)
            host = next((p for p in _children(session) if _ns_pid(p) == ns), None) \
                if session is not None else None
        if host is not None:
            with contextlib.suppress(OSError):
                pidfd = os.pidfd_open(host)
        if pidfd is None:
            _rmtree(files)
            return str(said.get("why") or "the fork could not be found")[:200]
        old = [k for k in self.forks if k != self.live_parent]  # least recently used first
        while old and len(self.forks) >= self.limit:  # (the live session's parent reports
            self.evict(old.pop(0))  # its exit: it stays, one over the limit if need be)
        self.forks[key] = _Fork(key, cells, ns, host, pidfd, files)  # type: ignore[arg-type]
        return None

    def evict(self, key: str) -> None:
        fork = self.forks.pop(key)
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(fork.pidfd, signal.SIGKILL)
        os.close(fork.pidfd)
        _rmtree(fork.files)

    def switch(self, fork: _Fork | None, prepare: Callable[[str | None], None]) -> None:
        """End the live session and wake `fork` (None: the zygote, a fresh interpreter) to fork
        a new one. First every process of the sandbox but pid 1 and the paused forks is killed
        and gone, and the pipes drained: after that nothing the old branch ran can write a
        file or a frame. Then the fork is continued (model code may have stopped it) and woken;
        `prepare(files)` rewrites the scratch dir while it forks (no session touches the dir
        before its first request); the new session's pid is taken from its announcement, the
        first frame on the drained pipe, and checked against the process tree."""
        w = self.worker
        if fork is not None and _ended(fork.pidfd, 0):
            raise _Died("the snapshot's fork is gone")  # killed by model code: replay
        root = self.root()
        _kill_all_but(root, {f.host for f in self.forks.values()}, _SWITCH_TIMEOUT)
        w.live, w.exit = None, None
        w.drain()
        if fork is not None:
            signal.pidfd_send_signal(fork.pidfd, signal.SIGCONT)
            signal.pidfd_send_signal(fork.pidfd, signal.SIGUSR1)
        else:
            os.kill(root, signal.SIGUSR1)
        prepare(fork.files if fork is not None else None)
        live = w.announced(_SWITCH_TIMEOUT)
        parent = fork.host if fork is not None else root
        if not any(_ns_pid(p) == live for p in _children(parent)):
            raise _Died("the new session is not the woken process's child")
        w.live = live
        w.history = fork.cells if fork is not None else ()
        self.live_parent = fork.key if fork is not None else None
        if fork is not None:
            self.forks.move_to_end(fork.key)

    def close(self) -> None:
        """Forget the forks (they die with the sandbox) and remove their files."""
        for fork in self.forks.values():
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(fork.pidfd, signal.SIGKILL)
            os.close(fork.pidfd)
        self.forks.clear()
        if self.dir is not None:
            _rmtree(self.dir)
            self.dir = None
