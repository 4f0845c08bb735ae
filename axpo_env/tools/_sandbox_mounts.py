"""How the Python sandbox's filesystem is laid out: what a plan is, bubblewrap's argv, and the
mounts the `namespaces+uid` mode makes itself. As root the sandbox runs as a stranger uid, so a
Python installed under a dir strangers cannot enter (pyenv in /root) is re-exposed through a tmpfs
over that dir, and one under /tmp (a fresh tmpfs inside) is bound back.
"""

from __future__ import annotations

import itertools
import os
import stat
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sandbox_worker.py")
_uid_counter = itertools.count()


@dataclass(frozen=True)
class _Plan:
    """How workers are started. `drop`: started as root, the worker takes a uid of its own;
    `unshare`: without bubblewrap, the worker (still root) first enters private mount, network,
    IPC, UTS and pid namespaces of its own making (`_sandbox_procs.confine`)."""

    bwrap: str | None
    userns: bool = False
    drop: bool = False
    unshare: bool = False

    @property
    def label(self) -> str:
        """What isolates model code, as `info["isolation"]` reports it."""
        if self.bwrap:
            return "bubblewrap"
        if self.unshare:
            return "namespaces+uid"
        return "uid+rlimits" if self.drop else "rlimits+audit"

    @property
    def confined(self) -> bool:
        """Whether every process of the sandbox is the sandbox's own (a pid namespace or a uid
        of its own), so the worker may kill(-1) stray processes after each cell."""
        return bool(self.bwrap or self.drop)

    @property
    def zygote(self) -> bool:
        """Whether the worker is pid 1 of a pid namespace of its own, which lets it keep paused
        forks (the zygote, snapshots) that die with the sandbox, never with a session."""
        return bool(self.bwrap or self.unshare)


# As root, `--unshare-user` maps the sandbox to kernel uid 0, which RLIMIT_NPROC never limits; so
# root runs bwrap without a user namespace and the worker drops to an unused uid (a fork bomb then
# stops at the limit).


def _new_uid() -> int:
    return 1_000_000 + (os.getpid() * 65536 + next(_uid_counter)) % 2_000_000_000


@lru_cache(maxsize=1)
def _python_roots() -> tuple[str, ...]:
    paths = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable)), os.path.dirname(_WORKER)}
    paths |= {p for p in sys.path if os.path.isabs(p) and os.path.exists(p)}
    return tuple(sorted({os.path.realpath(p) for p in paths}))


def _blocked_ancestor(path: str) -> str | None:
    """The highest dir above `path` that a stranger uid may not enter."""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts)):
        anc = "/" + "/".join(parts[:i])
        try:
            if not os.stat(anc).st_mode & stat.S_IXOTH:
                return anc
        except OSError:
            return None
    return None


def _under(path: str, top: str) -> bool:
    return path.startswith(top.rstrip("/") + "/")


def _mkdirs(top: str, path: str, made: set[str]) -> list[str]:
    """bwrap args creating the dirs strictly between `top` and `path` as 0755 (else 0700)."""
    args, rel = [], path[len(top.rstrip("/")) + 1:].split("/")[:-1]
    for i in range(1, len(rel) + 1):
        d = top.rstrip("/") + "/" + "/".join(rel[:i])
        if d not in made:
            made.add(d)
            args += ["--perms", "0755", "--dir", d]
    return args


def _bwrap_argv(plan: _Plan, scratch: str) -> list[str]:
    args = [plan.bwrap or "bwrap", "--unshare-net", "--unshare-pid", "--as-pid-1", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent", "--new-session"]
    if plan.userns:
        args += ["--unshare-user", "--cap-drop", "ALL"]
    args += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
             "--size", str(16 << 20), "--tmpfs", "/tmp"]
    tops, made = ["/tmp"], set()
    roots = _python_roots()
    # Python and this package may live under /tmp (a checkout there): the tmpfs hides them.
    cover = {p: "/tmp" for p in roots if _under(p, "/tmp")}
    if plan.drop:
        cover.update({p: a for p in roots if p not in cover and (a := _blocked_ancestor(p))})
        blocked = {a for a in cover.values() if a != "/tmp"}
        blocked |= {a for a in [_blocked_ancestor(scratch)] if a}
        for top in sorted(a for a in blocked if not any(_under(a, b) for b in blocked)):
            tops.append(top)
            args += ["--tmpfs", top]
    for p in sorted(p for p in cover if not any(_under(p, q) for q in cover)):
        args += _mkdirs(max((t for t in tops if _under(p, t)), key=len), p, made)
        args += ["--ro-bind", p, p]
    top = max((t for t in tops if _under(scratch, t)), key=len, default=None)
    args += _mkdirs(top, scratch, made) if top else []
    return args + ["--bind", scratch, scratch, "--chdir", scratch, "--"]


_HIDDEN_TMP = ("/tmp", "/var/tmp", "/dev/shm")


def _confine_spec(scratch: str) -> dict[str, Any]:
    """The mounts of an `unshare` plan: fresh tmpfs over the shared temp dirs and over dirs a
    stranger uid cannot enter (pyenv in /root), Python bound back read-only, scratch read-write.
    Everything else is remounted read-only."""
    roots = _python_roots()
    hide = {d for d in _HIDDEN_TMP if os.path.isdir(d) and not os.path.islink(d)}
    hide |= {a for p in (*roots, scratch) if (a := _blocked_ancestor(p))}
    hide = {h for h in hide if not any(_under(h, o) for o in hide)}
    ro = [p for p in roots if any(_under(p, h) for h in hide)]
    ro = [p for p in ro if not any(_under(p, q) for q in ro)]
    return {"hide": sorted(hide), "bind": [[p, False] for p in sorted(ro)] + [[scratch, True]]}


