"""The red team's second round against the Python sandbox (issue 24), as probes: model code that
has switched the audit hooks off (they are not the wall) attacks the host's restore, the frame
protocol, the paused forks, and the limits, in both isolation modes. Every probe here escaped or
broke the exact-restore promise before the fix."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from axpo_env.tools.python import PythonTool
from tests.test_python_forks import CTX, MODES, SHOW, UNREPLAYABLE, _gone, _tree, forking, run

ROOT = os.geteuid() == 0

# Model code past the audit hooks: the worker's own "trusted" flag, found through the frames.
UNHOOK = """
import os, sys, struct, signal, threading, time, json
_f = sys._getframe()
while "_trusted" not in _f.f_globals:
    _f = _f.f_back
_f.f_globals["_trusted"][0] = True
def paused():
    \"\"\"Pids of the other processes here but pid 1: the paused forks (and strays).\"\"\"
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, os.getpid())]
"""

# A thread that outlives its cell and swaps the session's file names for links to a host file.
SWAP = UNHOOK + """
def swap():
    while True:
        for name in NAMES:
            try:
                os.unlink(name)
            except OSError:
                pass
            try:
                os.symlink(TARGET, name)
            except OSError:
                pass
threading.Thread(target=swap, daemon=True).start()
time.sleep(0.05)
"""

# A frame forged onto the protocol pipe: "the live session is now <the snapshot's fork>".
FORGE_LIVE = """
_g = sys._getframe()
while "wfd" not in _g.f_locals:
    _g = _g.f_back
for _pid in paused():
    _d = json.dumps({"live": _pid}).encode()
    os.write(_g.f_locals["wfd"], struct.pack(">I", len(_d)) + _d)
"""


def _victim(tmp_path) -> tuple[str, tuple]:
    path = tmp_path / "victim.txt"
    path.write_text("host")
    os.chmod(tmp_path, 0o755)
    st = os.stat(path)
    return str(path), (st.st_uid, st.st_gid, st.st_mode)


def _untouched(path: str, meta: tuple) -> bool:
    st = os.stat(path)
    return open(path).read() == "host" and (st.st_uid, st.st_gid, st.st_mode) == meta


@pytest.mark.parametrize("forge", [False, True], ids=["thread", "thread+forged-live"])
@pytest.mark.parametrize("mode", MODES)
def test_restore_never_writes_through_links_the_sandbox_planted(mode, forge, tmp_path):
    """A thread the cell leaves running swaps the snapshot's file names (and the task image)
    for links to a host file while the host restores: the host must write nothing through
    them, and the restored branch has the snapshot's files."""
    target, meta = _victim(tmp_path)
    t = forking(mode)
    try:
        for _ in range(4):
            t.reset(CTX)
            first = t.snapshot()  # the episode's first state: the task image alone
            run(t, "open('a.txt', 'w').write('snap')\nos_ok = 1")
            snap = t.snapshot()
            code = (f"NAMES = ['a.txt', 'image_0.png', 'b.txt']\nTARGET = {target!r}\n" + SWAP
                    + (FORGE_LIVE if forge else ""))
            run(t, code)
            t.restore(snap)
            assert run(t, "print(open('a.txt').read())") == "snap"
            assert _untouched(target, meta)
            run(t, code)
            t.restore(first)
            assert run(t, "import os\nprint(sorted(os.listdir('.')))") == "['image_0.png']"
            assert _untouched(target, meta)
    finally:
        t.close()


@pytest.mark.parametrize("mode", MODES)
def test_a_forged_live_frame_cannot_keep_the_diverged_session(mode):
    """The host learns which process is the session from the sandbox's process tree, not from
    a frame model code can write: a restore still ends the diverged session and resumes the
    snapshot exactly."""
    t = forking(mode)
    try:
        t.reset(CTX)
        run(t, "v = 1\n" + UNREPLAYABLE)
        snap = t.snapshot()
        first = run(t, SHOW)
        run(t, "v = 2\n" + UNHOOK + FORGE_LIVE)
        assert run(t, "print(v)") == "2"
        for _ in range(2):
            t.restore(snap)
            assert run(t, SHOW) == first
            assert run(t, "print(v)") == "1"
    finally:
        t.close()


def _sigqueue_wake() -> str:
    """rt_sigqueueinfo(pid, SIGUSR1) with si_pid forged to 0, the host's mark, to every paused
    fork (x86_64 / aarch64 syscall numbers)."""
    return UNHOOK + textwrap.dedent("""
        import ctypes, platform
        nr = {"x86_64": 129, "aarch64": 138}[platform.machine()]
        libc = ctypes.CDLL(None, use_errno=True)
        info = (ctypes.c_int * 32)()
        info[0], info[2], info[4] = signal.SIGUSR1, -1, 0  # signo, SI_QUEUE, si_pid
        sent = 0
        for pid in paused():
            sent += libc.syscall(nr, pid, signal.SIGUSR1, ctypes.byref(info)) == 0
        time.sleep(0.3)
        print(sent > 0)
    """)


@pytest.mark.parametrize("mode", MODES)
def test_a_forged_wake_does_not_start_a_second_session(mode):
    """A queued signal carrying the host's sender pid (0) does not wake a paused fork: the
    live session keeps answering, and the snapshot still restores."""
    t = forking(mode)
    try:
        t.reset(CTX)
        run(t, "v = 1")
        snap = t.snapshot()
        run(t, "v = 2")  # takes the fork
        assert run(t, _sigqueue_wake()) == "True"
        for _ in range(6):
            assert run(t, "print(v)") == "2"
        t.restore(snap)
        assert run(t, "print(v)") == "1"
    finally:
        t.close()


@pytest.mark.parametrize("mode", MODES)
def test_a_stopped_fork_still_restores_and_a_thread_writes_nothing_after(mode):
    """SIGSTOP on the paused forks does not make the restored branch's first call time out;
    a thread the diverged session left writing files is gone before the files come back."""
    t = forking(mode)
    try:
        t.reset(CTX)
        run(t, "v = 1")
        snap = t.snapshot()
        run(t, "v = 2")
        beat = ("def beat():\n    while True:\n        open('beat', 'a').write('x')\n"
                "        time.sleep(0.005)\nthreading.Thread(target=beat, daemon=True).start()\n"
                "for p in paused():\n    os.kill(p, signal.SIGSTOP)\ntime.sleep(0.05)\n")
        run(t, UNHOOK + beat)
        t.restore(snap)
        assert run(t, "print(v)") == "1"
        code = "import os, time\ntime.sleep(0.3)\nprint(os.path.exists('beat'))"
        assert run(t, code) == "False"
    finally:
        t.close()


HOST = """
import sys, time
from PIL import Image
from axpo_env.tools.base import ToolContext
from axpo_env.tools.python import PythonTool
t = PythonTool(timeout=5, isolation=sys.argv[1])
ctx = ToolContext(images=(Image.new("RGB", (8, 8)),), seed=0)
t.reset(ctx)
t({"code": "v = 1"}, ctx)
t.snapshot()
t({"code": "v = 2"}, ctx)
print(t._box.worker.proc.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("victim", ["host", "outer"])
@pytest.mark.parametrize("mode", MODES)
def test_the_sandbox_dies_with_its_host(mode, victim):
    """SIGKILL of the host process (no cleanup runs), or of the sandbox's outer process: the
    sandbox's pid 1, its session and its paused forks all end."""
    proc = subprocess.Popen([sys.executable, "-c", HOST, mode], stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        outer = int(proc.stdout.readline())
        procs = _tree(outer)
        assert len(procs) >= 3, procs  # outer, pid 1 and the session at least
        os.kill(proc.pid if victim == "host" else outer, signal.SIGKILL)
        assert _gone(procs, wait=15), [open(f"/proc/{p}/cmdline").read() for p in _tree(outer)]
    finally:
        proc.kill()
        proc.wait()


# -- limits that hold for the whole sandbox ---------------------------------------------------

MB = 1 << 20


def limited(mode: str, **kw) -> PythonTool:
    t = PythonTool(timeout=8, isolation=mode, **kw)
    if not t.limits_whole_sandbox:
        t.close()
        pytest.skip("per-sandbox limits need cgroups and tmpfs (root)")
    return t


@pytest.mark.skipif(not ROOT, reason="per-sandbox limits need root here")
@pytest.mark.parametrize("mode", MODES)
def test_memory_limit_holds_for_the_whole_sandbox(mode):
    """Forked children each under the per-process limit cannot together pass the sandbox's."""
    t = limited(mode, memory_limit=384 * MB, disk_limit=64 * MB)
    try:
        t.reset(CTX)
        code = UNHOOK + textwrap.dedent("""
            kids = {}
            for i in range(6):
                if (pid := os.fork()) == 0:
                    b = bytearray(120 << 20)
                    for j in range(0, len(b), 4096):
                        b[j] = 1
                    open(f"ok{i}", "w").close()
                    time.sleep(4)
                    os._exit(0)
                kids[i] = pid
            time.sleep(2.5)  # who holds its 120 MB now, all together
            print(sum(os.path.exists(f"ok{i}") and os.waitpid(pid, os.WNOHANG) == (0, 0)
                      for i, pid in kids.items()))
        """)
        out = run(t, code)
        held = int(out) if out.isdigit() else 0  # or the session itself was killed: contained
        assert held * 120 <= 384 + 64, out
    finally:
        t.close()


@pytest.mark.skipif(not ROOT, reason="per-sandbox limits need root here")
@pytest.mark.parametrize("mode", MODES)
def test_disk_limit_counts_unlinked_open_files(mode):
    """Files unlinked while still open use disk the scan cannot see; the kernel counts them."""
    t = limited(mode, disk_limit=64 * MB)
    try:
        t.reset(CTX)
        code = textwrap.dedent("""
            import os
            held, total = [], 0
            try:
                for i in range(5):
                    f = open(f"b{i}", "wb")
                    held.append(f)
                    for _ in range(30):
                        f.write(b"x" * (1 << 20))
                        f.flush()
                        total += 1
                    os.unlink(f"b{i}")
            except OSError as e:
                pass
            print(total)
        """)
        assert int(run(t, code)) <= 64
    finally:
        t.close()


@pytest.mark.parametrize("mode", MODES)
def test_model_code_cannot_make_user_namespaces_or_reach_host_devices(mode):
    t = forking(mode)
    try:
        t.reset(CTX)
        code = UNHOOK + textwrap.dedent("""
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            rc = libc.unshare(0x10000000)  # CLONE_NEWUSER
            print(rc, ctypes.get_errno() != 0, os.path.exists("/dev/net/tun"),
                  os.path.exists("/dev/fuse"))
        """)
        assert run(t, code) == "-1 True False False"
    finally:
        t.close()
