"""Files between the host and the Python sandbox: the scratch dir's task images in, the images a
cell wrote out, and copies of the whole dir kept with paused session forks.

Model code may race anything here: every walk and open goes through directory handles without
following a symlink at any depth, and error texts name no host path.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import stat
import tempfile
from typing import Any

from PIL import Image

from axpo_env.tools._sandbox_limits import unmount

_IMAGE_EXT = (".png", ".jpg", ".jpeg")
_MAX_IMAGE_BYTES = 32 << 20
_MAX_SCAN = 20_000


_SCRATCH = re.compile(r"axpo-py-(?:probe-|snap-)?(\d+)-[a-z0-9_]+")
_SWEPT: set[tuple[int, str]] = set()


def _new_scratch(parent: str | None, kind: str = "") -> str:
    """A fresh scratch dir named with our pid. The first one made in a dir per process first
    removes those whose process is gone (killed runs cannot clean up after themselves)."""
    parent = parent or tempfile.gettempdir()
    if (os.getpid(), parent) not in _SWEPT:
        _SWEPT.add((os.getpid(), parent))
        with contextlib.suppress(OSError):
            for entry in os.scandir(parent):
                m = _SCRATCH.fullmatch(entry.name)
                if m and entry.is_dir(follow_symlinks=False) and not _alive(int(m.group(1))):
                    _rmtree(entry.path)
    return os.path.realpath(tempfile.mkdtemp(prefix=f"axpo-py-{kind}{os.getpid()}-",
                                             dir=parent))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _rmtree(path: str) -> None:
    if os.path.ismount(path):  # a scratch tmpfs (`_sandbox_limits`)
        unmount(path)

    def retry(func: Any, p: str, _exc: Any) -> None:
        try:
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=retry)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _TooManyFiles(Exception):
    """The scratch dir holds more entries than the scan looks at: its size is unknown."""


def _scan(root: str) -> tuple[dict[str, tuple[int, int, int]], int]:
    """Image files under `root` with their (mtime, size, inode), and the bytes all files use.

    Walked through directory handles opened without following a symlink at any depth, so a
    cell that swaps a subdir for a link to a host dir while we look only ever shows us its own
    files. More than `_MAX_SCAN` entries raises `_TooManyFiles`: an unseen file could be big.
    """
    images, total, seen = {}, 0, 0
    stack = [("", os.open(root, _DIR_FLAGS))]
    try:
        while stack:
            rel, fd = stack.pop()
            try:
                with os.scandir(fd) as it:
                    for entry in it:
                        seen += 1
                        if seen > _MAX_SCAN:
                            raise _TooManyFiles
                        try:
                            st = entry.stat(follow_symlinks=False)
                            path = os.path.join(rel, entry.name)
                            if stat.S_ISDIR(st.st_mode):
                                stack.append((path, os.open(entry.name, _DIR_FLAGS, dir_fd=fd)))
                            elif stat.S_ISREG(st.st_mode):
                                total += st.st_blocks * 512
                                if entry.name.lower().endswith(_IMAGE_EXT):
                                    images[path] = (st.st_mtime_ns, st.st_size, st.st_ino)
                        except OSError:  # gone, or swapped for a link, meanwhile
                            continue
            except OSError:
                pass
            finally:
                os.close(fd)
    finally:
        for _, fd in stack:
            os.close(fd)
    return images, total


def _open_beneath(root: str, rel: str) -> int:
    """A read fd for `root/rel`, resolving each component through the last one's handle with
    O_NOFOLLOW: no symlink, at any depth, can lead out of `root`."""
    parts = rel.split(os.sep)
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                       dir_fd=fd)
    finally:
        os.close(fd)


def _load_image(root: str, rel: str, max_pixels: int) -> tuple[Image.Image | None, str]:
    """Read an image the sandbox wrote, refusing links, devices and decompression bombs. The
    reasons name no error class: they must not tell a cell what exists on the host."""
    try:
        fd = _open_beneath(root, rel)
    except OSError:
        return None, "not a regular file inside the working directory"
    try:
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_IMAGE_BYTES:
                return None, "not a regular file of at most 32 MB"
            data = f.read(_MAX_IMAGE_BYTES)
        img = Image.open(io.BytesIO(data), formats=("PNG", "JPEG"))
        if img.width * img.height > max_pixels:
            return None, f"{img.width}x{img.height} is more than {max_pixels} pixels"
        img.load()
        if img.mode not in ("RGB", "RGBA", "L"):
            img = img.convert("RGBA" if "transparency" in img.info or "A" in img.mode else "RGB")
        return img, ""
    except Exception:  # any decoder failure is the sandbox's problem, not ours
        return None, "not a readable PNG/JPEG"


def _encode_png(img: Image.Image) -> bytes:
    if img.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
        img = img.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _write_scratch(scratch: str, pngs: list[bytes], uid: int | None) -> None:
    """Empty the scratch dir and write the task images (PNG bytes) into it, owned by the
    worker's uid."""
    for entry in os.scandir(scratch):
        if entry.is_dir(follow_symlinks=False):
            _rmtree(entry.path)
        else:
            os.unlink(entry.path)
    paths = [scratch]
    for i, data in enumerate(pngs):
        paths.append(os.path.join(scratch, f"image_{i}.png"))
        with open(paths[-1], "xb") as f:  # exclusive: never through a link left in its place
            f.write(data)
    if uid is not None:  # the worker runs as this uid: give it its files
        for path in paths:
            os.chown(path, uid, uid, follow_symlinks=False)




def copy_out(root: str, dst: str, max_bytes: int) -> bool:
    """Copy the scratch dir `root` (its dirs, regular files and symlinks, with modes and times)
    to a new dir `dst`, walking it like `_scan`. False, with `dst` removed, when it holds more
    than `max_bytes` or `_MAX_SCAN` entries, or changed under us: a copy too big to keep."""
    os.mkdir(dst, 0o700)
    budget, seen = max_bytes, 0
    stack = [("", os.open(root, _DIR_FLAGS))]
    try:
        while stack:
            rel, fd = stack.pop()
            try:
                for entry in os.scandir(fd):
                    seen += 1
                    st = entry.stat(follow_symlinks=False)
                    path, out = os.path.join(rel, entry.name), os.path.join(dst, rel, entry.name)
                    budget -= st.st_blocks * 512
                    if seen > _MAX_SCAN or budget < 0:
                        raise _TooManyFiles
                    if stat.S_ISDIR(st.st_mode):
                        os.mkdir(out, 0o700)
                        stack.append((path, os.open(entry.name, _DIR_FLAGS, dir_fd=fd)))
                    elif stat.S_ISLNK(st.st_mode):
                        os.symlink(os.readlink(entry.name, dir_fd=fd), out)
                        continue
                    elif stat.S_ISREG(st.st_mode):
                        src = os.open(entry.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                                      | os.O_CLOEXEC, dir_fd=fd)
                        with os.fdopen(src, "rb") as f, open(out, "xb") as g:
                            shutil.copyfileobj(f, g, 1 << 20)
                    else:
                        continue  # fifos, sockets: not kept
                    os.chmod(out, stat.S_IMODE(st.st_mode))
                    os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(fd)
    except (OSError, _TooManyFiles):
        for _, fd in stack:
            os.close(fd)
        _rmtree(dst)
        return False
    return True


def copy_in(src: str, root: str, uid: int | None) -> None:
    """Make the scratch dir `root` what `copy_out` saved in `src` (our own copy: trusted), owned
    by the sandbox's uid. Dir times are set last, after their contents. The caller has ended
    every process of the sandbox that could run; still, nothing here follows a link in `root`:
    files and dirs are made exclusively, owners and modes set on what was made."""
    _write_scratch(root, [], None)
    dirs = []
    for here, subdirs, files in os.walk(src):
        rel = os.path.relpath(here, src)
        out = root if rel == "." else os.path.join(root, rel)
        if rel != ".":
            os.mkdir(out)
            dirs.append((here, out))
        for name in files + [d for d in subdirs if os.path.islink(os.path.join(here, d))]:
            a, b = os.path.join(here, name), os.path.join(out, name)
            if os.path.islink(a):
                os.symlink(os.readlink(a), b)
                if uid is not None:
                    os.chown(b, uid, uid, follow_symlinks=False)
                continue
            st = os.stat(a)
            with open(a, "rb") as f, open(b, "xb") as g:
                shutil.copyfileobj(f, g, 1 << 20)
                _own(g.fileno(), st, uid)
    for here, out in reversed(dirs):
        fd = os.open(out, _DIR_FLAGS)
        try:
            _own(fd, os.stat(here), uid)
        finally:
            os.close(fd)


def _own(fd: int, st: os.stat_result, uid: int | None) -> None:
    """Give what `fd` names the mode and times of `st`, and the sandbox's uid."""
    if uid is not None:
        os.fchown(fd, uid, uid)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
