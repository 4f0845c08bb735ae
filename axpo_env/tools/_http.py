"""HTTP for tools that call a service (search, image search) and for `agents.OpenAIPolicy`:
bounded and hostile-safe.

Why one place: every server the project calls can be down, slow, drip-feed its answer,
redirect, answer with an error page, gigabytes or invalid text; each must end as a short error
in bounded time and memory. `fetch` makes one exchange that:

- ends by a wall-clock deadline, whatever the server does: connect, sending, headers, every
  redirect hop and the body together. A per-read timeout is not enough (a server sending one
  byte a second never trips it), so a watchdog shuts the connection's socket at the deadline;
- reads at most `max_bytes` of body (a larger declared or streamed body is refused);
- follows at most `MAX_REDIRECTS` redirects, and only to the same origin (scheme, host and
  port): a redirect elsewhere is refused, so a body (a query image, a prompt) or an API key
  never goes to a server the user did not name. 307/308 repeat the request; 301/302/303
  become a GET without a body, as browsers do.

`parse_json` makes every string of an answer valid UTF-8 (a lone surrogate such as "\\ud800"
would crash whoever writes the text out later; `axpo_env.text.valid_text`).

`JSONClient` is the tools' client: connection errors, 429 and 5xx are retried with a short
backoff; timeouts are not. Each attempt is bounded by `timeout_s`, so a call takes at most
`(retries + 1) * timeout_s` plus the short pauses between attempts.
"""

from __future__ import annotations

import functools
import json
import re
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from axpo_env.errors import ToolCallError
from axpo_env.text import valid_text

MAX_RESPONSE_BYTES = 2 << 20
MAX_REDIRECTS = 3


class HTTPProblem(Exception):
    """Why `fetch` got no answer. `kind`: "timeout" (the deadline passed), "too_big",
    "connect" (no connection or no response: worth a retry), "broken" (the body broke off) or
    "redirect" (to another origin, or too many); the message says more."""

    def __init__(self, kind: str, message: str = ""):
        super().__init__(message or kind)
        self.kind = kind


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def parse_json(body: bytes) -> Any:
    """A server's JSON with every string (and key) valid UTF-8; ValueError if it is not JSON."""
    text = body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
        return valid_text(data) if _SURROGATE_ESCAPE.search(text) else data
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def new_session(pool_size: int = 10) -> Any:
    """A `requests.Session` whose connections `fetch` can cut off at its deadline."""
    import requests

    session = requests.Session()
    adapter = _adapter_class()(pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def fetch(session: Any, method: str, url: str, deadline: float, max_bytes: int, *,
          headers: Mapping[str, str] | None = None, json: Any = None,
          params: Mapping[str, Any] | None = None) -> Reply:
    """One exchange (with its same-origin redirects) that ends by `deadline`, a
    `time.monotonic()` time; raises `HTTPProblem`. `session` comes from `new_session`."""
    watch = _Watch(deadline)
    _current.watch = watch
    try:
        for _ in range(MAX_REDIRECTS + 1):
            left = deadline - time.monotonic()
            if left <= 0:
                raise HTTPProblem("timeout")
            try:
                resp = session.request(method, url, headers=headers, json=json, params=params,
                                       stream=True, allow_redirects=False, timeout=(left, left))
            except Exception as e:  # connection refused, reset, cut by the watchdog, bad URL
                raise _failed(watch, "connect", e) from None
            with resp:
                if not resp.is_redirect:
                    body = _read(resp, watch, max_bytes)
                    if watch.expired():  # cut short: what was read may look whole, it is not
                        raise HTTPProblem("timeout")
                    return Reply(resp.status_code, body)
                url = _same_origin(url, resp.headers["Location"])
                if resp.status_code in (301, 302, 303):
                    method, json = "GET", None
                params = None  # the Location carries its own query
        raise HTTPProblem("redirect", f"redirected more than {MAX_REDIRECTS} times")
    finally:
        watch.cancel()
        _current.watch = None


def _read(resp: Any, watch: _Watch, max_bytes: int) -> bytes:
    too_big = HTTPProblem("too_big", f"the answer is over {max_bytes / (1 << 20):g} MB")
    declared = resp.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_big
    chunks, size = [], 0
    try:
        for chunk in resp.iter_content(chunk_size=1 << 16):
            size += len(chunk)
            if size > max_bytes:
                raise too_big
            if watch.expired():
                raise HTTPProblem("timeout")
            chunks.append(chunk)
    except HTTPProblem:
        raise
    except Exception as e:  # the body broke off, or the watchdog cut it
        raise _failed(watch, "broken", e) from None
    return b"".join(chunks)


def _failed(watch: _Watch, kind: str, error: Exception) -> HTTPProblem:
    if watch.expired():
        return HTTPProblem("timeout")
    detail = str(error)
    return HTTPProblem(kind, f"{type(error).__name__}: {detail[:200]}" if detail else kind)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    default_port = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), parts.port or default_port


def _same_origin(url: str, location: str) -> str:
    target = urljoin(url, location)
    try:
        same = _origin(target) == _origin(url)
    except ValueError:  # a port that is not a number
        same = False
    if not same:
        scheme, host, port = _origin(url)
        raise HTTPProblem("redirect", f"redirected to another server ({target[:100]!r}), "
                                      f"away from {scheme}://{host}:{port}; not followed")
    return target


# --------------------------------------------------------------------------------------------
# The watchdog: at the deadline it shuts the socket of every connection the request used, which
# wakes a read blocked in any phase (connect and each send are bounded by the time left).

_current = threading.local()  # .watch: the _Watch of the request this thread is making


class _Watch:
    def __init__(self, deadline: float):
        self.deadline = deadline
        self.watched: list[Any] = []  # connections, and the sockets their responses read
        self.fired = False
        self.timer = threading.Timer(max(deadline - time.monotonic(), 0.0), self._cut)
        self.timer.daemon = True
        self.timer.start()

    def _cut(self) -> None:
        self.fired = True
        for x in list(self.watched):
            sock = x if isinstance(x, socket.socket) else getattr(x, "sock", None)
            if isinstance(sock, socket.socket):
                try:  # socket.socket's own shutdown: SSLSocket's would race the reader
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass

    def expired(self) -> bool:
        return self.fired or time.monotonic() >= self.deadline

    def cancel(self) -> None:
        self.timer.cancel()


class _Watched:
    """Mixed into urllib3's connections: each request registers with its thread's watchdog
    the connection (whose socket may not exist yet) and then the socket the response reads (the
    connection lets go of it when the response is to close it)."""

    def request(self, *args: Any, **kwargs: Any) -> Any:
        _register(self)
        return super().request(*args, **kwargs)  # type: ignore[misc]

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _register(self.sock)  # type: ignore[attr-defined]
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


def _register(x: Any) -> None:
    watch = getattr(_current, "watch", None)
    if watch is not None and x is not None:
        watch.watched.append(x)


@functools.cache
def _adapter_class() -> type:
    """A requests HTTPAdapter whose connections are `_Watched` (requests loads lazily: importing
    the envs stays fast)."""
    from requests.adapters import HTTPAdapter
    from urllib3 import ProxyManager
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class Conn(_Watched, HTTPConnection):
        pass

    class SConn(_Watched, HTTPSConnection):
        pass

    class Pool(HTTPConnectionPool):
        ConnectionCls = Conn

    class SPool(HTTPSConnectionPool):
        ConnectionCls = SConn

    pools = {"http": Pool, "https": SPool}

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

        def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
            manager = super().proxy_manager_for(*args, **kwargs)
            if type(manager) is ProxyManager:  # not SOCKS: its pools are its own
                manager.pool_classes_by_scheme = pools
            return manager

    return Adapter


# --------------------------------------------------------------------------------------------


class JSONClient:
    """POSTs (or GETs) JSON to one URL and returns the decoded answer (strings valid UTF-8).

    Args:
        url: the endpoint, http:// or https://.
        what: how errors name the service ("the search server").
        headers: sent with every request (e.g. an API key header).
        timeout_s: wall-clock bound on each attempt, all of it (connect, redirects, body).
        retries: extra attempts after a refused connection, 429 or 5xx.
        max_bytes: larger answers are refused.
        advice: what errors tell the agent to do instead ("answer without search").
    """

    def __init__(self, url: str, what: str = "the search server",
                 headers: Mapping[str, str] | None = None, timeout_s: float = 5.0,
                 retries: int = 2, max_bytes: int = MAX_RESPONSE_BYTES,
                 advice: str = "answer without search"):
        if not isinstance(url, str) or not re.match(r"https?://", url):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")
        self.url, self.what, self.headers = url, what, dict(headers or {})
        self.timeout_s, self.retries, self.max_bytes = timeout_s, retries, max_bytes
        self.advice = advice
        self._local = threading.local()

    def _session(self) -> Any:
        if not hasattr(self._local, "session"):
            self._local.session = new_session()
        return self._local.session

    def post(self, payload: Any) -> Any:
        return self._call("POST", json=payload)

    def get(self, params: Mapping[str, Any]) -> Any:
        return self._call("GET", params=dict(params))

    def _call(self, method: str, **kwargs: Any) -> Any:
        problem = "no answer"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(0.1 * 2 ** (attempt - 1), 1.0))
            try:
                reply = fetch(self._session(), method, self.url,
                              time.monotonic() + self.timeout_s, self.max_bytes,
                              headers=self.headers, **kwargs)
            except HTTPProblem as e:
                if e.kind == "connect":
                    problem = f"could not connect to {self.what}"
                    continue
                raise self._error(e) from None
            if reply.status >= 500 or reply.status == 429:
                problem = f"{self.what} failed (HTTP {reply.status})"
                continue
            if reply.status in (401, 403):
                raise ToolCallError(f"{self.what} refused the API key (HTTP {reply.status}); "
                                    f"{self.advice}")
            if reply.status >= 400:
                raise ToolCallError(f"{self.what} rejected the query (HTTP {reply.status})")
            try:
                return parse_json(reply.body)
            except ValueError:
                raise ToolCallError(f"{self.what} did not answer with JSON; "
                                    f"try again or {self.advice}") from None
        raise ToolCallError(f"{problem} (tried {self.retries + 1} times); "
                            f"try again later or {self.advice}")

    def _error(self, e: HTTPProblem) -> ToolCallError:
        if e.kind == "timeout":
            return ToolCallError(f"{self.what} did not answer within {self.timeout_s:g} s; "
                                 f"try again or {self.advice}")
        if e.kind == "too_big":
            return ToolCallError(f"{self.what}'s answer is over {self.max_bytes >> 20} MB; "
                                 "it is not a result")
        if e.kind == "redirect":
            return ToolCallError(f"{self.what} {e}; set its url to the final address or "
                                 f"{self.advice}")
        return ToolCallError(f"{self.what}'s answer broke off; try again")
