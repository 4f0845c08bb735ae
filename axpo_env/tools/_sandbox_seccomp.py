"""A seccomp filter for the Python sandbox's worker (stdlib only, installed before any model code).

The audit hooks are not a wall; this is the kernel's. It refuses what no cell needs and what
widens the kernel surface a sandbox can reach: new user namespaces (from which a process gets
capabilities to mount, make devices, set up networks), joining namespaces, io_uring (whose
operations bypass seccomp), bpf, perf events, userfaultfd, kernel keyrings and ptrace.
clone3 answers ENOSYS, so the C library falls back to clone, whose flags the filter can read
(clone3 keeps them in memory, out of a filter's reach). Syscalls of another ABI (i386 through
int 0x80, x32) are refused whole. Written as raw BPF: the filter is small and `libseccomp`
is not always installed.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

# (audit arch, syscall numbers) per machine
_ARCH = {
    "x86_64": (0xC000003E, {"clone": 56, "unshare": 272, "clone3": 435, "setns": 308,
                            "io_uring_setup": 425, "io_uring_enter": 426,
                            "io_uring_register": 427, "bpf": 321, "perf_event_open": 298,
                            "userfaultfd": 323, "keyctl": 250, "add_key": 248,
                            "request_key": 249, "ptrace": 101}),
    "aarch64": (0xC00000B7, {"clone": 220, "unshare": 97, "clone3": 435, "setns": 268,
                             "io_uring_setup": 425, "io_uring_enter": 426,
                             "io_uring_register": 427, "bpf": 280, "perf_event_open": 241,
                             "userfaultfd": 282, "keyctl": 219, "add_key": 217,
                             "request_key": 218, "ptrace": 117}),
}
_CLONE_NEWUSER = 0x10000000
_X32_BIT = 0x40000000
_LD_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW = 0x7FFF0000


def _errno(code: int) -> int:
    return 0x00050000 | code  # SECCOMP_RET_ERRNO


def program(machine: str) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions, for `machine` (platform.machine())."""
    arch, nr = _ARCH[machine]
    denied = [nr[name] for name in ("setns", "io_uring_setup", "io_uring_enter",
                                    "io_uring_register", "bpf", "perf_event_open",
                                    "userfaultfd", "keyctl", "add_key", "request_key", "ptrace")]
    ins = [(_LD_ABS, 0, 0, 4)]  # seccomp_data.arch
    ins.append((_JEQ, 1, 0, arch))
    ins.append((_RET, 0, 0, _errno(errno.ENOSYS)))  # another ABI: nothing of it
    ins.append((_LD_ABS, 0, 0, 0))  # seccomp_data.nr
    if machine == "x86_64":
        ins += [(_JGE, 0, 1, _X32_BIT), (_RET, 0, 0, _errno(errno.ENOSYS))]
    ins += [(_JEQ, 0, 1, nr["clone3"]), (_RET, 0, 0, _errno(errno.ENOSYS))]
    for n in denied:
        ins += [(_JEQ, 0, 1, n), (_RET, 0, 0, _errno(errno.EPERM))]
    # clone and unshare: refused when their flags (args[0], low word) ask for a user namespace
    ins += [(_JEQ, 1, 0, nr["clone"]), (_JEQ, 0, 3, nr["unshare"]),
            (_LD_ABS, 0, 0, 16), (_JSET, 0, 1, _CLONE_NEWUSER),
            (_RET, 0, 0, _errno(errno.EPERM))]
    ins.append((_RET, 0, 0, _ALLOW))
    return ins


class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install() -> bool:
    """Install the filter on this process (and all it forks); False where it cannot be (another
    machine, or a kernel without seccomp). Needs PR_SET_NO_NEW_PRIVS, set by the caller."""
    machine = platform.machine()
    if machine not in _ARCH:
        return False
    ins = program(machine)
    raw = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *i) for i in ins))
    prog = _Prog(len(ins), ctypes.addressof(raw))
    libc = ctypes.CDLL(None, use_errno=True)
    # PR_SET_SECCOMP = 22, SECCOMP_MODE_FILTER = 2
    return libc.prctl(22, 2, ctypes.byref(prog), 0, 0) == 0
