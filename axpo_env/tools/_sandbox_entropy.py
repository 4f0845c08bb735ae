"""Deterministic sources for the Python sandbox (stdlib only, imported by its worker).

A restore without a fork of the session replays its cells into a fresh interpreter, so what a cell
reads from entropy or the wall clock must be a function of (episode seed, cell index).
Covered: os.urandom, random.SystemRandom/secrets, random.Random() and random.seed() without a
seed, uuid.uuid4, numpy's default_rng(), time.time/time_ns and what uses it without an
argument (localtime, gmtime, ctime, asctime, strftime), datetime's now/utcnow/today; the hash
seed is fixed. Not covered: monotonic and perf_counter (durations stay real), object ids.
"""

from __future__ import annotations

import os

_EPOCH_NS = 1_767_225_600 * 10**9  # 2026-01-01 UTC: cell i of an episode starts i minutes later
_TICK_NS = 1_000_000  # each reading of the wall clock advances it by 1 ms
_entropy: list = []  # [random.Random, clock ns], per cell


def _install_deterministic_sources() -> None:
    import datetime
    import random
    import time

    def urandom(size: int) -> bytes:
        if not isinstance(size, int):
            raise TypeError(f"'{type(size).__name__}' object cannot be interpreted as an integer")
        if size < 0:
            raise ValueError("negative argument not allowed")
        return _entropy[0].randbytes(size) if _entropy else b"\0" * size

    def time_ns() -> int:
        _entropy[1] += _TICK_NS
        return _entropy[1]

    def now() -> float:
        return time_ns() / 1e9

    seed = random.Random.seed

    def seeded(self: random.Random, a: object = None, version: int = 2) -> None:
        seed(self, _entropy[0].getrandbits(128) if a is None and _entropy else a, version)

    os.urandom = random._urandom = urandom  # type: ignore[attr-defined]
    random.Random.seed = seeded  # type: ignore[method-assign]
    time.time, time.time_ns = now, time_ns
    for name in ("localtime", "gmtime", "ctime"):
        real = getattr(time, name)
        setattr(time, name, lambda secs=None, real=real: real(now() if secs is None else secs))
    real_asctime, real_strftime = time.asctime, time.strftime
    time.asctime = lambda t=None: real_asctime(time.localtime() if t is None else t)
    time.strftime = lambda fmt, t=None: real_strftime(fmt, time.localtime() if t is None else t)

    class Date(datetime.date):
        @classmethod
        def today(cls) -> Date:
            return cls.fromtimestamp(now())

    class DateTime(datetime.datetime):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> DateTime:
            return cls.fromtimestamp(now(), tz)

        @classmethod
        def utcnow(cls) -> DateTime:
            return cls.fromtimestamp(now(), datetime.timezone.utc).replace(tzinfo=None)

        @classmethod
        def today(cls) -> DateTime:
            return cls.fromtimestamp(now())

    for cls, base in ((Date, datetime.date), (DateTime, datetime.datetime)):
        cls.__name__, cls.__qualname__, cls.__module__ = base.__name__, base.__qualname__, \
            "datetime"
    datetime.date, datetime.datetime = Date, DateTime  # type: ignore[misc]


def _seed_cell(entropy: list | None) -> None:
    """Entropy and wall clock for the cell `entropy = [episode seed, cell index]`."""
    import random

    seed, cell = entropy if isinstance(entropy, list) and len(entropy) == 2 else (0, 0)
    _entropy[:] = [random.Random(f"axpo:{seed}:{cell}"), _EPOCH_NS + int(cell) * 60 * 10**9]
