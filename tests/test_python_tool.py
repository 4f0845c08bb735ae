"""The sandboxed Python tool: a persistent session, hostile code contained, snapshot/restore."""

from __future__ import annotations

import gc
import os
import pickle
import random
import shutil

import pytest
from PIL import Image

from axpo_env.tools.base import ToolContext
from axpo_env.tools.python import PythonTool

MODES = [
    "rlimits",
    pytest.param("bwrap", marks=pytest.mark.skipif(not shutil.which("bwrap"),
                                                   reason="bubblewrap not installed")),
]
CTX = ToolContext(images=(Image.new("RGB", (32, 24), "red"),))


@pytest.fixture(scope="module", params=MODES)
def tool(request):
    # 384 MiB: a memory hog hits the limit in ~0.2 s, far from the 2 s time limit even under load
    t = PythonTool(timeout=2, isolation=request.param, memory_limit=384 << 20)
    yield t
    t.close()


def run(t: PythonTool, code: str):
    return t({"code": code}, CTX)


def _children() -> list[int]:
    """Pids of sandboxes (bwrap or a sandbox worker) whose parent is this test process; other
    children, such as the calculator's worker, are not the python tool's to clean up."""
    kids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) != os.getpid():
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            if b"bwrap" in cmdline or b"_sandbox_worker" in cmdline:
                kids.append(int(pid))
        except (OSError, ValueError, IndexError):
            pass
    return kids


def test_schema_and_isolation(tool):
    fn = tool.schema["function"]
    assert fn["name"] == "python" and fn["parameters"]["required"] == ["code"]
    assert "image_0.png" in fn["description"]
    root = os.geteuid() == 0
    expected = ("bubblewrap" if tool.isolation == "bwrap"
                else "namespaces+uid" if root else "rlimits+audit")
    assert tool.isolation_active == expected


ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="the uid switch is for root")
WHO = ("import os\nst = open('/proc/self/status').read()\n"
       "print(os.getuid(), os.geteuid(), st.split('CapEff:')[1].split()[0])")


@ROOT_ONLY
@pytest.mark.parametrize("isolation", ["auto", "rlimits"])
def test_root_never_runs_model_code_as_root(isolation):
    """Python under /root (0700) made the uid switch skip; now every mode drops uid 0 and all
    capabilities, and the interpreter still imports (pyenv is bound back in)."""
    t = PythonTool(timeout=5, isolation=isolation)
    try:
        uid, euid, caps = run(t, WHO).text.split()
        assert int(uid) != 0 and int(euid) != 0 and int(caps, 16) == 0
        assert run(t, "import numpy, PIL.Image\nprint('ok')").text == "ok"
    finally:
        t.close()


# Runs in a sub-interpreter, which has none of the worker's audit hooks: what the kernel allows.
BYPASS = """
import os, socket
out = []
for name, act in [
    ("write", lambda: os.open({target!r}, os.O_WRONLY | os.O_CREAT, dir_fd=os.open("/", 0))),
    ("fifo", lambda: os.mkfifo("/var/tmp/axpo-fifo")),
    ("net", lambda: socket.create_connection(("127.0.0.1", 9), timeout=1)),
    ("root", lambda: os.listdir("/root/.ssh")),
]:
    try:
        act()
        out.append(name + " ok")
    except OSError as e:
        out.append(name + " " + str(e.errno))
open("res.txt", "w").write(" ".join(out))
"""


@ROOT_ONLY
@pytest.mark.parametrize("isolation", MODES)
def test_kernel_contains_code_that_skips_the_audit_hooks(isolation):
    """The audit hooks are not the wall: code without them still cannot write the host, make a
    fifo outside scratch, reach 127.0.0.1 or read root's files, in either mode."""
    t = PythonTool(timeout=5, isolation=isolation)
    target = f"axpo-planted-{os.getpid()}"  # in /, which root may write
    try:
        code = ("import _xxsubinterpreters as s\ni = s.create()\n"
                f"s.run_string(i, {BYPASS.format(target=target)!r})\nprint(open('res.txt').read())")
        text = run(t, code).text
        assert "ok" not in text and text.count(" ") == 7, text
        assert not os.path.exists("/" + target) and not os.path.exists("/var/tmp/axpo-fifo")
    finally:
        t.close()


def test_fallback_without_bubblewrap_warns_what_protects(monkeypatch):
    from axpo_env.tools import _sandbox

    monkeypatch.setattr(_sandbox, "_PLANS", {})
    monkeypatch.setattr(_sandbox.shutil, "which", lambda name: None)
    with pytest.warns(RuntimeWarning, match="bubblewrap not installed; isolation is"):
        plan = _sandbox._resolve_plan("auto")
    assert plan.bwrap is None and (plan.drop if os.geteuid() == 0 else True)


@ROOT_ONLY
def test_root_without_a_way_to_drop_privileges_is_refused(monkeypatch):
    from axpo_env.errors import AxpoError
    from axpo_env.tools import _sandbox

    monkeypatch.setattr(_sandbox, "_PLANS", {})
    monkeypatch.setattr(_sandbox.shutil, "which", lambda name: None)
    monkeypatch.setattr(_sandbox, "_probe", lambda plan: "unshare: Operation not permitted")
    with pytest.raises(AxpoError, match="refuses to run model code as root.*apt install"):
        _sandbox._resolve_plan("auto")


def test_session_persists_and_sees_the_task_image(tool):
    tool.reset(CTX)
    assert run(tool, "x = 41").text.startswith("(no output")
    assert run(tool, "print(x + 1)").text == "42"
    assert run(tool, "x + 2").text == "43"  # a final bare expression is shown
    assert run(tool, "from PIL import Image\nImage.open('image_0.png').size").text == "(32, 24)"
    tool.reset(CTX)
    assert "NameError" in run(tool, "x").text  # a new episode forgets the session


def test_saved_images_come_back(tool):
    tool.reset(CTX)
    res = run(tool, "from PIL import Image\nImage.new('RGB', (10, 8), 'blue').save('out.png')")
    assert [im.size for im in res.images] == [(10, 8)] and "out.png" in res.text
    assert run(tool, "print('again')").images == ()  # unchanged files are not sent twice
    res = run(tool, "Image.new('RGB', (5, 5)).save('image_0.png')")  # a task image, modified
    assert [im.size for im in res.images] == [(5, 5)]
    res = run(tool, "for i in range(6):\n    Image.new('L', (4, 4)).save(f'p{i}.jpg')")
    assert len(res.images) == 4 and "2 more new images not returned" in res.text


def test_images_refused_safely():
    t = PythonTool(timeout=5, isolation="rlimits", max_image_pixels=100 * 100)
    try:
        t.reset(CTX)
        res = run(t, "from PIL import Image\nImage.new('RGB', (200, 200)).save('big.png')\n"
                     "open('fake.png', 'w').write('not a png')\n"
                     "import os\nos.symlink('/etc/passwd', 'link.png')")
        assert res.images == ()
        assert "big.png not returned" in res.text and "fake.png not returned" in res.text
    finally:
        t.close()


def test_symlink_race_never_reads_a_host_image(tmp_path):
    """While a thread flips a scratch subdir between a real dir and a link to a root-only host
    dir, the host's scan and image reads (each in a bounded loop) never leave the scratch dir:
    every path component is opened through a handle, without following links."""
    import threading

    from axpo_env.tools.python import _load_image, _scan

    scratch, secret = tmp_path / "scratch", tmp_path / "secret"
    (scratch / "real").mkdir(parents=True)
    secret.mkdir(mode=0o700)
    for i in range(50):  # a wide window between the scan's lstat of 'sub' and its listing
        (scratch / f"f{i}").touch()
    Image.new("RGB", (5, 5), "blue").save(scratch / "real" / "a.png")
    Image.new("RGB", (7, 7), "green").save(secret / "a.png")
    Image.new("RGB", (7, 7), "green").save(secret / "hostonly.png")
    stop = threading.Event()

    def flip():
        while not stop.is_set():
            os.rename(scratch / "real", scratch / "sub")
            os.rename(scratch / "sub", scratch / "real")
            os.symlink(secret, scratch / "sub")
            os.unlink(scratch / "sub")

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        names, sizes = set(), set()
        for _ in range(300):
            images, _ = _scan(str(scratch))
            names |= set(images)
            for rel in ("sub/a.png", "sub/hostonly.png"):
                img, why = _load_image(str(scratch), rel, 100 * 100)
                sizes.add(img.size if img else why)
    finally:
        stop.set()
        flipper.join()
    assert not any("hostonly" in n for n in names)
    assert (7, 7) not in sizes and sizes <= {(5, 5), "not a regular file inside the working "
                                             "directory"}


HOSTILE = [
    ("while True: pass", "2 s time limit"),
    ("hog = []\nwhile True: hog.append(' ' * 10**7)", "MemoryError"),
    ("bytearray(10**10)", "MemoryError"),
    ("import os\nwhile True: os.fork()", "creating processes is not allowed"),
    ("import subprocess\nsubprocess.run(['true'])", "creating processes is not allowed"),
    ("import os\nos.system('true')", "creating processes is not allowed"),
    ("import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)", "not allowed"),
    ("open('/etc/x', 'w')", "only the working directory is writable"),
    ("open('../x', 'w')", "only the working directory is writable"),
    ("open('/work/x', 'w')", "only the working directory is writable"),
    ("import os\nos.kill(os.getppid(), 9)", "sending signals is not allowed"),
    ("import os\nos._exit(3)", "crashed (exit code 3)"),
    ("import ctypes\nctypes.string_at(0)", "ctypes is not allowed"),
    ("import faulthandler\nfaulthandler._sigsegv()", "crashed (killed by SIGSEGV)"),
    ("import signal\nsignal.raise_signal(signal.SIGKILL)", "crashed (killed by SIGKILL)"),
    ("import os\nos.close(100)", "closed or replaced the sandbox's pipes"),
    ("raise SystemExit(3)", "SystemExit: 3"),
    ("raise KeyboardInterrupt", "KeyboardInterrupt"),
    ("f = open('big.bin', 'wb')\nf.write(b'x' * (65 << 20))", "File too large"),
]


@pytest.mark.parametrize("code,message", HOSTILE, ids=[c.split("\n")[-1][:30] for c, _ in HOSTILE])
def test_hostile_code_is_contained(tool, code, message):
    tool.reset(CTX)
    run(tool, "x = 7")
    paths = ("/etc/x", "/work/x", os.path.join(os.path.dirname(tool._box.scratch), "x"))
    there = [os.path.exists(p) for p in paths]  # /tmp is shared: another job may have an x
    res = run(tool, code)
    assert message in res.text, res.text
    assert len(res.text) < 5000 and "_sandbox_worker" not in res.text
    if "crashed" in message or "time limit" in message:
        assert "restored to its state before this call" in res.text
        assert tool.snapshot().cells == ("x = 7",)
    assert [os.path.exists(p) for p in paths] == there
    assert run(tool, "print(x)").text == "7"  # and the session goes on


FORGE = """
import json, os, struct, sys
f = sys._getframe()
while "req" not in f.f_locals:
    f = f.f_back
def frame(msg):
    data = json.dumps(msg).encode()
    return struct.pack(">I", len(data)) + data
"""


def test_forged_reply_frames_cannot_pass_the_output_limit(tool):
    """The frame pipe is reachable from a cell: a forged reply is cut to the limit on the host,
    and an oversized or endless stream of frames fails the call instead of filling memory."""
    tool.reset(CTX)
    run(tool, "x = 7")
    res = run(tool, FORGE + "os.write(101, frame({'seq': f.f_locals['req']['seq'], "
                            "'out': 'y' * 100_000, 'err': 5}))")
    assert res.text.startswith("y" * 8000 + "\n...[output truncated]") and len(res.text) < 8100
    tool.timeout = 20.0  # building 15 MB in the sandbox can take over 2 s on a loaded machine
    try:
        res = run(tool, FORGE + "os.write(101, frame({'seq': -1, 'out': 'z' * 15_000_000}))")
    finally:
        tool.timeout = 2.0
    assert "broke the protocol" in res.text and "restored" in res.text and len(res.text) < 500
    res = run(tool, FORGE + "for i in range(100):\n"
                            "    os.write(101, frame({'seq': -1, 'out': 'z' * 100_000}))")
    assert "broke the protocol" in res.text
    assert run(tool, "print(x)").text == "7"


def test_huge_output_is_truncated(tool):
    tool.reset(CTX)
    res = run(tool, "print('x' * 10**8)\nimport sys\nprint('e' * 10**6, file=sys.stderr)")
    assert res.text.count("...[output truncated]") == 2 and len(res.text) < 20_000


@pytest.mark.parametrize("isolation", MODES)
def test_process_limit_is_enforced_by_the_kernel(isolation):
    """RLIMIT_NPROC holds in both modes (the sandbox's uid is its own, never root's), with
    room for the zygote and the paused forks on top of `max_processes`."""
    t = PythonTool(timeout=5, isolation=isolation, max_processes=8)
    try:
        t.reset(CTX)
        code = ("import threading, time\nthreading.stack_size(1 << 16)\n"
                "for _ in range(20):\n    threading.Thread(target=time.sleep, args=(1,)).start()")
        assert "can't start new thread" in run(t, code).text
    finally:
        t.close()


def test_cpu_and_disk_limits_roll_back():
    t = PythonTool(timeout=10, cpu_limit=1, disk_limit=1 << 20, isolation="rlimits")
    try:
        t.reset(CTX)
        run(t, "x = 1")
        assert "1 s CPU time limit" in run(t, "while True: pass").text
        res = run(t, "open('big.bin', 'wb').write(b'x' * (2 << 20))")
        if t.limits_whole_sandbox:  # the scratch dir is a tmpfs of that size: the write fails
            assert "No space left on device" in res.text
            assert run(t, "import os\nos.remove('big.bin')\nprint(x)").text == "1"
        else:  # the host's scan after the call finds the bytes and rolls it back
            assert "exceeded the 1 MB limit" in res.text and "restored" in res.text
            assert run(t, "import os\nprint(x, os.path.exists('big.bin'))").text == "1 False"
    finally:
        t.close()


DAEMON = """
import os, sys, time
f = sys._getframe()
while "_DENIED" not in f.f_globals:
    f = f.f_back
f.f_globals["_DENIED"].clear()  # one of the audit hooks' bypasses: they are not the wall
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        while True:
            with open("beat", "a") as out:
                out.write("x")
            time.sleep(0.01)
    os._exit(0)
time.sleep(0.2)
print(len(open("beat").read()) > 0)
"""


def test_processes_a_cell_starts_do_not_outlive_the_call(tool):
    """A double-forked daemon (after bypassing the hooks) is killed when its call ends, so it
    cannot burn CPU or write into later calls or episodes."""
    tool.reset(CTX)
    assert run(tool, DAEMON).text == "True"
    code = ("import time\nn = len(open('beat').read())\ntime.sleep(0.3)\n"
            "print(len(open('beat').read()) - n)")
    assert run(tool, code).text == "0"


def test_too_many_files_cannot_hide_bytes_from_the_disk_limit(monkeypatch):
    """The scan used to stop after 5,000 entries: files past them were not counted. Now more
    entries than the scan reads is itself a failure, rolled back."""
    from axpo_env.tools import _sandbox_files, python

    monkeypatch.setattr(_sandbox_files, "_MAX_SCAN", 100)
    monkeypatch.setattr(python, "_MAX_SCAN", 100)
    t = PythonTool(timeout=10, disk_limit=1 << 20, isolation="rlimits")
    try:
        t.reset(CTX)
        run(t, "x = 1")
        code = ("for i in range(150):\n    open(f'e{i}', 'w').close()\n"
                "open('zz.bin', 'wb').write(b'x' * (2 << 20))")
        res = run(t, code)
        assert "more than 100 files" in res.text and "restored" in res.text
        assert run(t, "import os\nprint(x, len(os.listdir('.')))").text == "1 1"
    finally:
        t.close()


def test_tracebacks_and_syntax_errors(tool):
    tool.reset(CTX)
    res = run(tool, "def f():\n    return 1 / 0\nf()")
    assert 'File "<cell 0>", line 2, in f' in res.text and "ZeroDivisionError" in res.text
    assert "SyntaxError" in run(tool, "def (:").text
    assert "EOFError" in run(tool, "input()").text


def test_clean_environment(tool, monkeypatch):
    monkeypatch.setenv("AXPO_TEST_SECRET", "s3cret")
    tool.close()  # the next call starts a worker that could see the variable
    tool.reset(CTX)
    assert run(tool, "import os\nprint(os.environ.get('AXPO_TEST_SECRET'))").text == "None"


def test_snapshot_restore_replays_variables_and_files(tool):
    tool.reset(CTX)
    run(tool, "import random\nx = 1\nopen('f.txt', 'w').write('a')")
    snap = tool.snapshot()
    assert pickle.loads(pickle.dumps(snap)) == snap
    later = ["x = 2\nopen('f.txt', 'w').write('b')",
             "print(x, open('f.txt').read(), random.random())",
             "from PIL import Image\nImage.new('RGB', (3, 3)).save('g.png')"]
    first = [run(tool, c) for c in later]
    tool.restore(snap)
    assert run(tool, "print(x, open('f.txt').read())").text == "1 a"
    tool.restore(snap)
    again = [run(tool, c) for c in later]
    assert [r.text for r in again] == [r.text for r in first]
    assert [len(r.images) for r in again] == [len(r.images) for r in first] == [0, 0, 1]
    tool.restore(tool.snapshot())  # restoring the current state costs nothing
    assert run(tool, "print(x)").text == "2"


POOL = [
    "n = globals().get('n', 0) + 1\nprint(n)",
    "import random\nprint(random.randint(0, 10**6))",
    "open('log.txt', 'a').write('x')\nprint(len(open('log.txt').read()))",
    "import numpy as np\nprint(np.random.rand())",
    "import os\nos._exit(1)",
    "1 / 0",
    "from PIL import Image\nImage.new('L', (globals().get('n', 0) % 5 + 1, 2)).save('i.png')",
]


@pytest.mark.parametrize("seed", [0, 1])
def test_restore_property_random_sequences(tool, seed):
    """After restore(s), the same calls give exactly what they gave after s was taken."""
    rng = random.Random(seed)
    cells = [rng.choice(POOL) for _ in range(8)]
    cut = rng.randrange(len(cells))
    tool.reset(CTX)
    for c in cells[:cut]:
        run(tool, c)
    snap = tool.snapshot()
    seen = [(r.text, [im.size for im in r.images]) for r in (run(tool, c) for c in cells[cut:])]
    tool.restore(snap)
    again = [(r.text, [im.size for im in r.images]) for r in (run(tool, c) for c in cells[cut:])]
    assert again == seen


def test_restore_after_a_crash_and_into_another_tool(tool):
    tool.reset(CTX)
    run(tool, "x = 5")
    snap = tool.snapshot()
    assert "crashed" in run(tool, "import os\nos._exit(1)").text
    assert tool.snapshot() == snap
    run(tool, "x = 6")
    tool.restore(snap)
    assert run(tool, "print(x)").text == "5"
    other = tool.spawn()
    try:
        other.reset(CTX)
        other.restore(snap)
        assert run(other, "print(x)").text == "5"
        code = "from PIL import Image\nImage.open('image_0.png').size"
        assert run(other, code).text == "(32, 24)"
    finally:
        other.close()


def test_fresh_worker_per_call_gives_the_same_outputs():
    cells = ["import random\nimport numpy as np\nx = [random.random(), float(np.random.rand())]",
             "print(x)\nprint({'b', 'a', 'c', 'dd', 'eee'}, hash('a'))",
             "from PIL import Image\nImage.new('RGB', (4, 4)).save('a.png')",
             "open('log.txt', 'a').write('1')\nprint(open('log.txt').read())",
             "1 / 0"]
    outputs = []
    for fresh in (False, True):
        t = PythonTool(timeout=5, isolation="rlimits", fresh_worker_per_call=fresh)
        try:
            t.reset(CTX)
            outputs.append([(r.text, len(r.images)) for r in (run(t, c) for c in cells)])
        finally:
            t.close()
    assert outputs[0] == outputs[1]


def test_close_and_garbage_collection_leave_no_processes(tool):
    mode = tool.isolation
    t = PythonTool(timeout=5, isolation=mode)
    run(t, "print(1)")
    pid, scratch = t._box.worker.proc.pid, t._box.scratch
    assert pid in _children()
    t.close()
    assert pid not in _children() and not os.path.exists(f"/proc/{pid}")
    assert not os.path.exists(scratch)
    t = PythonTool(timeout=5, isolation=mode)
    run(t, "print(1)")
    pid = t._box.worker.proc.pid
    del t
    gc.collect()
    assert not os.path.exists(f"/proc/{pid}")
    alive = {tool._box.worker.proc.pid} if tool._box.worker else set()
    if tool._box.pending is not None:  # its spare, kept since an earlier test restored
        alive.add(tool._box.pending.result(timeout=30)[0].proc.pid)
    assert set(_children()) <= alive  # only the module fixture's workers are left


def test_next_episode_worker_starts_in_the_background(tool):
    tool.reset(CTX)
    run(tool, "x = 1")
    used = tool._box.worker.proc.pid
    tool.reset(CTX)  # the used worker is replaced by one started in the background
    pending = tool._box.pending
    assert pending is not None and tool._box.worker is None
    prestarted = pending.result(timeout=30)[0].proc.pid
    assert prestarted != used
    assert "NameError" in run(tool, "print(x)").text  # a fresh session...
    assert tool._box.worker.proc.pid == prestarted  # ...on the prestarted worker


def test_python_installed_under_tmp_stays_visible_in_the_sandbox(monkeypatch):
    """/tmp is a fresh tmpfs in the sandbox; a venv or checkout there must be bound back in."""
    from axpo_env.tools import _sandbox, _sandbox_mounts

    monkeypatch.setattr(_sandbox_mounts, "_python_roots",
                        lambda: ("/tmp/ci/checkout/.venv", "/usr"))
    for plan in (_sandbox._Plan("bwrap"), _sandbox._Plan("bwrap", drop=True)):
        argv = _sandbox._bwrap_argv(plan, "/tmp/axpo-py-x")
        tmpfs = argv.index("/tmp", argv.index("--tmpfs"))
        bind = argv.index("/tmp/ci/checkout/.venv")
        assert argv[bind - 1] == "--ro-bind" and bind > tmpfs
        assert "/usr" not in argv[tmpfs:]  # only what the tmpfs hides is bound again


def test_scratch_dirs_of_killed_processes_are_removed_at_the_next_start(tmp_path):
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    dead = tmp_path / f"axpo-py-{gone.pid}-x1y2z3"
    live = tmp_path / f"axpo-py-{os.getppid()}-abc"
    other = tmp_path / "axpo-py-notours"
    for d in (dead, live, other):
        (d / "sub").mkdir(parents=True)
    t = PythonTool(timeout=5, isolation="rlimits", scratch_root=str(tmp_path))
    try:
        assert run(t, "print(1)").text == "1"
        assert not dead.exists() and live.exists() and other.exists()
        assert os.path.basename(t._box.scratch).startswith(f"axpo-py-{os.getpid()}-")
    finally:
        t.close()


NONDETERMINISTIC = ("import time, os, uuid, random, secrets, datetime\nimport numpy as np\n"
                    "t = time.time(); u = os.urandom(8).hex(); g = str(uuid.uuid4())\n"
                    "r = random.Random().random(); s = secrets.token_hex(4)\n"
                    "d = datetime.datetime.now().isoformat(); n = np.random.default_rng().random()")


def test_restore_of_a_diverged_session_is_exact_for_entropy_and_clocks(tool):
    """Clock, entropy and uuid values a cell read come back the same after a diverged restore,
    because they are functions of the episode seed and the cell; another seed differs."""
    ctx = ToolContext(images=CTX.images, seed=5)
    show = "print(t, u, g, r, s, d, n)"
    tool.reset(ctx)
    tool({"code": NONDETERMINISTIC}, ctx)
    snap = tool.snapshot()
    first = tool({"code": show}, ctx).text
    tool({"code": "t = u = g = r = s = d = n = None\nimport time\nprint(time.time())"}, ctx)
    tool.restore(snap)
    assert tool({"code": show}, ctx).text == first
    other = ToolContext(images=CTX.images, seed=6)
    tool.reset(other)
    tool({"code": NONDETERMINISTIC}, other)
    assert tool({"code": show}, other).text != first
    tool.reset(ctx)
    later = run(tool, "import time\nt0 = time.time()\nprint(time.time() > t0 > 1.7e9)")
    assert later.text == "True"
