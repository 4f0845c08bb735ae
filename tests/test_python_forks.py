"""Python tool snapshots as paused forks: exact restores, bounded, cleaned up, replay elsewhere;
and the pid namespace of the namespaces+uid mode."""

from __future__ import annotations

import gc
import os
import pickle
import shutil
import subprocess
import sys
import time

import pytest
from PIL import Image

from axpo_env.tools.base import ToolContext
from axpo_env.tools.python import PythonTool
from tests.test_python_tool import DAEMON

MODES = [
    "rlimits",
    pytest.param("bwrap", marks=pytest.mark.skipif(not shutil.which("bwrap"),
                                                   reason="bubblewrap not installed")),
]
CTX = ToolContext(images=(Image.new("RGB", (32, 24), "red"),), seed=4)
# What replaying cannot reproduce: a monotonic clock, object ids, a file holding them.
UNREPLAYABLE = ("import time\nt = time.perf_counter_ns()\no = id(object())\n"
                "open('t.txt', 'w').write(str(t))")
SHOW = "print(t, o, open('t.txt').read() == str(t))"


def run(t: PythonTool, code: str) -> str:
    return t({"code": code}, CTX).text


def forking(mode: str, **kw) -> PythonTool:
    t = PythonTool(timeout=5, isolation=mode, **kw)
    if t.restore_mode != "fork":
        t.close()
        pytest.skip(f"no forks here: {t.restore_mode}")
    return t


def _tree(pid: int) -> set[int]:
    """`pid` and its live descendants (zombies are not running anything)."""
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            out.add(p)
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo += [int(k) for k in f.read().split()]
        except (OSError, IndexError):
            continue
    return out


@pytest.mark.parametrize("mode", MODES)
def test_a_diverged_restore_resumes_the_snapshots_fork_exactly(mode):
    """Values no replay can give back (a monotonic clock, object ids, a file holding one) come
    back after a diverged restore, every time the snapshot is restored (AXPO's K branches), and
    the snapshot's files come back with them."""
    t = forking(mode)
    try:
        t.reset(CTX)
        run(t, UNREPLAYABLE)
        snap = t.snapshot()
        assert snap.fork is not None and pickle.loads(pickle.dumps(snap)) == snap
        first = run(t, SHOW)
        assert first.endswith("True")
        for _ in range(3):
            run(t, "t = o = None\nopen('t.txt', 'w').write('diverged')\nopen('new.txt', 'w')")
            t.restore(snap)
            assert run(t, SHOW) == first
            assert run(t, "import os\nprint(os.path.exists('new.txt'))") == "False"
        t.restore(())  # the empty session: a fresh fork of the zygote
        assert run(t, "print('t' in globals())") == "False"
        t.restore(snap)
        assert run(t, SHOW) == first
    finally:
        t.close()


@pytest.mark.parametrize("mode", MODES)
def test_forks_are_bounded_and_an_evicted_snapshot_replays(mode):
    t = forking(mode, snapshot_forks=2)
    try:
        t.reset(CTX)
        snaps = []
        for i in range(4):
            run(t, f"v = {i}\n" + UNREPLAYABLE)
            snaps.append(t.snapshot())
            assert len(t._box.worker.forks.forks) <= 2
        run(t, "v = -1")  # leaving the last state takes its fork
        forks = t._box.worker.forks
        assert len(forks.forks) == 2 and forks.get(snaps[0].fork, snaps[0].cells) is None
        t.restore(snaps[0])  # evicted: replayed, right in what the cells compute
        assert run(t, "print(v, open('t.txt').read() == str(t))") == "0 True"
        t.restore(snaps[3])
        assert forks.get(snaps[3].fork, snaps[3].cells) is not None
        assert run(t, "print(v)") == "3"
    finally:
        t.close()


WAKE_ALL = """import signal
for p in os.listdir("/proc"):
    if p.isdigit() and int(p) != os.getpid():
        try:
            os.kill(int(p), signal.SIGUSR1)
        except OSError:
            pass
"""


def _gone(pids: set[int], wait: float = 10.0) -> bool:
    """Whether none of `pids` runs any more (zombies do not), waiting up to `wait` s."""
    end = time.monotonic() + wait
    while any(_tree(p) for p in pids):
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def _fork_pids(t: PythonTool) -> set[int]:
    """Host pids of the tool's paused forks, from their pidfds."""
    pids = set()
    for fork in t._box.worker.forks.forks.values():
        with open(f"/proc/self/fdinfo/{fork.pidfd}") as f:
            pids |= {int(line.split()[1]) for line in f if line.startswith("Pid:")}
    return pids


@pytest.mark.parametrize("mode", MODES)
def test_forks_leave_no_processes_on_eviction_close_and_gc(mode):
    """Counted on the host: the sandbox's processes are its pid 1, the session and at most
    `snapshot_forks` paused forks; eviction ends a fork, close() and garbage collection all,
    with the copies of the scratch dir."""
    for ending in ("close", "gc"):
        t = forking(mode, snapshot_forks=2)
        t.reset(CTX)
        seen: set[int] = set()
        for i in range(5):
            run(t, f"v = {i}")
            t.snapshot()
            seen |= _fork_pids(t)
        run(t, "v = 5")
        seen |= _fork_pids(t)
        kept = _fork_pids(t)
        assert len(seen) == 5 and len(kept) == 2
        assert _gone(seen - kept)  # evicted: SIGKILLed (asynchronously)
        w = t._box.worker
        procs = _tree(w.proc.pid)
        # the outer bwrap (or the process that made the namespaces), pid 1, the session, forks
        assert len(procs) == 3 + 2 and kept <= procs, procs
        snap_dir = w.forks.dir
        assert len(os.listdir(snap_dir)) == 2
        if ending == "close":
            t.close()
        else:
            del t, w
            gc.collect()
        assert _gone(procs)
        assert not os.path.exists(snap_dir)


def test_a_snapshot_restored_in_another_process_replays(tmp_path):
    """The snapshot value pickles; its fork key means nothing in another process, which
    replays the cells into its own sandbox (right for what the cells compute)."""
    t = PythonTool(timeout=5, isolation="rlimits")
    try:
        t.reset(CTX)
        run(t, "x = 41\nopen('f.txt', 'w').write('a')")
        snap = t.snapshot()
        run(t, "x = 0")
        (tmp_path / "snap.pkl").write_bytes(pickle.dumps(snap))
        code = (
            "import pickle, sys\nfrom PIL import Image\n"
            "from axpo_env.tools.base import ToolContext\nfrom axpo_env.tools.python import "
            "PythonTool\nctx = ToolContext(images=(Image.new('RGB', (32, 24), 'red'),), seed=4)\n"
            "snap = pickle.load(open(sys.argv[1], 'rb'))\n"
            "t = PythonTool(timeout=5, isolation='rlimits')\nt.reset(ctx)\nt.restore(snap)\n"
            "print(t({'code': 'print(x + 1, open(\"f.txt\").read())'}, ctx).text)\n"
            "w = t._box.worker\nprint(w.forks is None or w.forks.get(snap.fork, snap.cells) "
            "is None)\nt.close()\n")
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "snap.pkl")], env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.stdout.split("\n")[:2] == ["42 a", "True"], out.stderr[-2000:]
        t.restore(snap)  # here, the fork
        assert run(t, "print(x + 1)") == "42"
    finally:
        t.close()


@pytest.mark.parametrize("mode", MODES)
def test_strays_die_after_a_call_while_forks_are_kept(mode):
    """With paused forks in the sandbox, strays are killed one by one (not kill(-1), which
    would end the forks too); and model code cannot wake a fork: its signals are ignored."""
    t = forking(mode)
    try:
        t.reset(CTX)
        run(t, "v = 1")
        snap = t.snapshot()
        run(t, "v = 2")  # takes the fork
        fork = "if os.fork() == 0:\n    os.setsid()"
        daemon = DAEMON.replace(fork, WAKE_ALL + fork, 1)
        procs = _tree(t._box.worker.proc.pid)
        assert run(t, daemon) == "True"
        code = ("import time\nn = len(open('beat').read())\ntime.sleep(0.3)\n"
                "print(len(open('beat').read()) - n)")
        assert run(t, code) == "0"
        assert _tree(t._box.worker.proc.pid) == procs  # no stray left, no session added
        t.restore(snap)
        assert run(t, "print(v)") == "1"
    finally:
        t.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="the namespaces+uid mode is for root")
def test_namespaces_mode_has_a_pid_namespace_of_its_own():
    """Model code in the namespaces+uid mode sees only the sandbox's processes and cannot
    signal the host's, even past the audit hooks (a sub-interpreter has none)."""
    t = PythonTool(timeout=5, isolation="rlimits")
    try:
        if t.isolation_active != "namespaces+uid":
            pytest.skip(f"isolation is {t.isolation_active}")
        probe = ("import os\npids = [int(p) for p in os.listdir('/proc') if p.isdigit()]\n"
                 f"try:\n    os.kill({os.getpid()}, 0)\n    r = 'reached'\n"
                 "except OSError as e:\n    r = e.errno\n"
                 "open('r.txt', 'w').write(f'{len(pids)} {max(pids)} {r}')\n")
        code = (f"import _xxsubinterpreters as s\ni = s.create()\ns.run_string(i, {probe!r})\n"
                "print(open('r.txt').read())")
        n, top, err = run(t, code).split()
        assert int(n) <= 4 and int(top) < 100 and err == "3"  # ESRCH: no such process here
    finally:
        t.close()


def test_without_a_zygote_a_diverged_restore_replays_into_a_spare(monkeypatch):
    """Isolation modes with no pid namespace of their own keep no forks (a paused fork could
    outlive the host there): a diverged restore starts a spare interpreter in the background
    and the next call replays into it."""
    from axpo_env.tools import _sandbox

    monkeypatch.setitem(_sandbox._PLANS, "rlimits", _sandbox._Plan(None))  # rlimits+audit
    t = PythonTool(timeout=5, isolation="rlimits")
    try:
        assert t.restore_mode.startswith("replay (isolation 'rlimits+audit' has no pid")
        t.reset(CTX)
        run(t, "x = 1\nopen('f.txt', 'w').write('a')")
        snap = t.snapshot()
        assert snap.fork is None
        run(t, "x = 2\nopen('f.txt', 'w').write('b')")
        t.restore(snap)
        spare = t._box.pending.result(timeout=30)[0]
        assert run(t, "print(x, open('f.txt').read())") == "1 a"
        assert t._box.worker is spare and spare.alive()
    finally:
        t.close()


def test_a_session_running_threads_is_not_forked_and_replays(caplog):
    """A fork keeps only the forking thread, so a session with threads running is not forked:
    its snapshot replays, and the log says why."""
    t = forking("rlimits")
    try:
        t.reset(CTX)
        run(t, "import threading, time\nthreading.Thread(target=time.sleep, args=(30,), "
               "daemon=True).start()\nv = 1")
        snap = t.snapshot()
        with caplog.at_level("INFO", logger="axpo_env.tools.python"):
            run(t, "v = 2")
        assert "runs threads" in caplog.text and not t._box.worker.forks.forks
        t.restore(snap)
        assert run(t, "print(v)") == "1"
    finally:
        t.close()


def test_the_fork_the_live_session_came_from_is_never_evicted():
    """It reports the live session's exit: with snapshot_forks=1 it stays, one over the bound,
    and both snapshots still restore from their forks."""
    t = forking("rlimits", snapshot_forks=1)
    try:
        t.reset(CTX)
        run(t, "v = 1\n" + UNREPLAYABLE)
        a = t.snapshot()
        first = run(t, SHOW)
        t.restore(a)  # the live session is now a child of a's fork
        run(t, "v = 3")
        b = t.snapshot()
        run(t, "v = 4")
        forks = t._box.worker.forks
        assert forks.get(a.fork, a.cells) and forks.get(b.fork, b.cells)
        t.restore(b)
        assert run(t, "print(v)") == "3"
        t.restore(a)
        assert run(t, SHOW) == first
        assert len(forks.forks) <= 2
    finally:
        t.close()
