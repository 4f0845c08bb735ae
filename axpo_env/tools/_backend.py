"""How a retrieval tool (search, image_search) reads its constructor: which backend, how many hits.

Both tools take a backend name or object, a `url=` for the HTTP backend and a `top_k`; the
checks and their messages live here once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

B = TypeVar("B")


def choose_backend(backend: str | B, base: type[B], makers: Mapping[str, Callable[[], B]],
                   what: str) -> B:
    """`backend` itself when it is a `base`, else what `makers[backend]()` builds; an unknown
    name is a ValueError listing the known ones."""
    if isinstance(backend, base):
        return backend
    if isinstance(backend, str) and backend in makers:
        return makers[backend]()
    names = ", ".join(repr(n) for n in makers)
    article = "an" if base.__name__[0] in "AEIOU" else "a"
    raise ValueError(f"unknown {what} backend {backend!r}; use {names} or {article} "
                     f"{base.__name__}")


def set_backend(tool: Any, backend: str | B, base: type[B],
                makers: Mapping[str, Callable[[], B]], what: str, top_k: int, most: int) -> None:
    """Give a retrieval tool its `backend` (`choose_backend`), its checked default `top_k`, and
    the backend's `nondeterministic` flag (a live service answers differently over time)."""
    tool.backend = choose_backend(backend, base, makers, what)
    tool.top_k = check_top_k(top_k, most)
    tool.nondeterministic = tool.backend.nondeterministic


def need_url(url: str | None, example: str) -> str:
    """The `url=` the http backend needs."""
    if url is None:
        raise ValueError(f"backend='http' needs url=, e.g. '{example}'")
    return url


def check_top_k(top_k: Any, most: int) -> int:
    if not 1 <= top_k <= most:
        raise ValueError(f"top_k must be from 1 to {most}, got {top_k}")
    return top_k
