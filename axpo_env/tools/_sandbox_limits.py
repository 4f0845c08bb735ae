"""Limits that hold for a Python sandbox as a whole, not per process: a cgroup per sandbox (memory
without swap, and a process count) and a size-limited tmpfs as its scratch dir (files, including
unlinked ones a process still holds open, count against it).

rlimits bound each process alone: eight forked children, or four paused snapshot forks, each
under the limit, together were not. The kernel enforces these for every process the sandbox has.
Both need root here (cgroup v1 as on this project's machines, or a delegated cgroup v2 subtree;
tmpfs mounts); elsewhere `available()` is False and only the per-process limits hold (the tool
says so). Leftovers of a host killed without cleanup are removed by the next host that starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import re
from functools import lru_cache

_counter = itertools.count()
_NAME = re.compile(r"axpo-(\d+)-\d+")
_MNT_DETACH = 2


class Cgroup:
    """One sandbox's cgroup: a dir per hierarchy (v1: memory and pids; v2: one)."""

    def __init__(self, dirs: list[str]):
        self.dirs = dirs

    def procs_files(self) -> list[str]:
        """Where a process writes its pid to join (its children join with it)."""
        return [os.path.join(d, "cgroup.procs") for d in self.dirs]

    def close(self) -> None:
        """Remove the cgroup (its processes are gone: the caller reaped the sandbox)."""
        for d in self.dirs:
            with contextlib.suppress(OSError):
                os.rmdir(d)


def _mounts() -> dict[str, str]:
    """Mount point of each cgroup hierarchy by its key: a v1 controller name, or "v2"."""
    points: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _, options = (right.split() + ["", "", ""])[:3]
            if fstype == "cgroup2":
                points.setdefault("v2", left.split()[4])
            elif fstype == "cgroup":
                for opt in options.split(","):
                    if opt in ("memory", "pids"):
                        points.setdefault(opt, left.split()[4])
    return points


def _own() -> dict[str, str]:
    """This process's cgroup path per hierarchy key, from /proc/self/cgroup."""
    own: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for c in controllers.split(",") if controllers else ["v2"]:
                own[c] = path
    return own


def _writable(base: str) -> bool:
    probe = os.path.join(base, f"axpo-{os.getpid()}-probe")
    try:
        os.mkdir(probe)
        os.rmdir(probe)
        return True
    except OSError:
        return False


@lru_cache(maxsize=1)
def _bases() -> tuple[str, dict[str, str]] | None:
    """("v1" or "v2", {key: the dir new cgroups go in}), or None where none can be made. Found
    once per process, which then removes the cgroups hosts before it left behind."""
    if os.geteuid() != 0:
        return None
    points, own = _mounts(), _own()
    if "memory" in points and "pids" in points:
        bases = {c: os.path.join(points[c], own.get(c, "/").lstrip("/")) for c in ("memory",
                                                                                   "pids")}
        if all(_writable(b) for b in bases.values()):
            _sweep(bases)
            return "v1", bases
    if "v2" in points:
        base = os.path.join(points["v2"], own.get("v2", "/").lstrip("/"))
        try:
            with open(os.path.join(base, "cgroup.controllers")) as f:
                if not {"memory", "pids"} <= set(f.read().split()):
                    return None
            with open(os.path.join(base, "cgroup.subtree_control"), "w") as f:
                f.write("+memory +pids")
        except OSError:  # not delegated to us, or our cgroup holds processes itself
            return None
        if _writable(base):
            _sweep({"v2": base})
            return "v2", {"v2": base}
    return None


def _sweep(bases: dict[str, str]) -> None:
    """Remove the empty cgroups of hosts that are gone."""
    for base in bases.values():
        with contextlib.suppress(OSError):
            for name in os.listdir(base):
                m = _NAME.fullmatch(name)
                if m and not os.path.exists(f"/proc/{m.group(1)}"):
                    with contextlib.suppress(OSError):
                        os.rmdir(os.path.join(base, name))


def new_cgroup(memory: int, pids: int) -> Cgroup | None:
    """A fresh cgroup holding all its processes to `memory` bytes (no swap) and `pids`
    processes and threads; None where cgroups cannot be made here."""
    found = _bases()
    if found is None:
        return None
    version, bases = found
    name = f"axpo-{os.getpid()}-{next(_counter)}"
    group = Cgroup([os.path.join(b, name) for b in bases.values()])
    try:
        for d in group.dirs:
            os.mkdir(d)
        if version == "v1":
            mem, pid = (os.path.join(bases[c], name) for c in ("memory", "pids"))
            _write(mem, "memory.limit_in_bytes", memory)
            with contextlib.suppress(FileNotFoundError):  # swap accounting may be off
                _write(mem, "memory.memsw.limit_in_bytes", memory)
            _write(pid, "pids.max", pids)
        else:
            _write(group.dirs[0], "memory.max", memory)
            with contextlib.suppress(FileNotFoundError):
                _write(group.dirs[0], "memory.swap.max", 0)
            _write(group.dirs[0], "pids.max", pids)
    except OSError:
        group.close()
        return None
    return group


def _write(folder: str, name: str, value: int) -> None:
    with open(os.path.join(folder, name), "w") as f:
        f.write(str(value))


def available() -> bool:
    """Whether sandboxes here get whole-sandbox limits (cgroups and a tmpfs scratch dir)."""
    return _bases() is not None


def mount_scratch(path: str, size: int) -> bool:
    """Mount a tmpfs of `size` bytes over the (empty) scratch dir `path`; False if we cannot."""
    libc = ctypes.CDLL(None, use_errno=True)
    opts = f"size={max(size, 1 << 20)},mode=0700".encode()
    flags = 2 | 4 | 8  # MS_NOSUID | MS_NODEV | MS_NOEXEC
    return libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", ctypes.c_ulong(flags), opts) == 0


def unmount(path: str) -> None:
    """Detach a scratch tmpfs (a no-op on a plain dir)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.umount2(os.fsencode(path), _MNT_DETACH)
