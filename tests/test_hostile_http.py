"""Hostile HTTP servers against every HTTP client of the project: search, image search and
OpenAIPolicy (red-team issue 24, findings 7 and 8).

Each server listens on 127.0.0.1 only, in daemon threads, and stops itself: its slow loops are
bounded and end as soon as the test is over or the client hangs up. Deadlines are checked with a
2x slack: the machine running the tests may be loaded.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image

from agents.openai import OpenAIPolicy
from axpo_env.errors import ToolCallError
from axpo_env.tools.base import ToolContext
from axpo_env.tools.image_search import ImageSearchTool
from axpo_env.tools.search import SearchTool

DEADLINE = 1.5  # timeout_s of every client below; a call must end within 2 * DEADLINE
LONG = 10.0  # how long the slow servers would go on if nobody cut them off


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, script: Callable[[BaseHTTPRequestHandler], None]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = script
        self.hits: list[tuple[str, str, bytes]] = []  # (method, path, body) of every request
        self.stop = threading.Event()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up on us: the point of most tests here

    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.hits.append((self.command, self.path, body))
        try:
            self.server.script(self)
        except OSError:
            pass  # the client gave up

    do_GET = do_POST = _handle

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serving(script: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[_Server]:
    srv = _Server(script)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.stop.set()
        srv.shutdown()
        srv.server_close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def send_json(h: BaseHTTPRequestHandler, raw: str | bytes, status: int = 200) -> None:
    data = raw.encode() if isinstance(raw, str) else raw
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)


def drip_body(h: BaseHTTPRequestHandler) -> None:
    """Headers at once, then one byte of the body every 0.1 s: no single read ever times out."""
    n = int(LONG / 0.1)
    h.send_response(200)
    h.send_header("Content-Length", str(n))
    h.end_headers()
    for _ in range(n):
        if h.server.stop.wait(0.1):
            return
        h.wfile.write(b" ")


def drip_headers(h: BaseHTTPRequestHandler) -> None:
    """A status line, then a header line that never ends, one byte every 0.1 s."""
    h.wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
    for _ in range(int(LONG / 0.1)):
        if h.server.stop.wait(0.1):
            return
        h.wfile.write(b"a")


def redirect_to_self(h: BaseHTTPRequestHandler) -> None:
    h.send_response(307)
    h.send_header("Location", f"{h.server.origin()}/hop{len(h.server.hits)}")
    h.send_header("Content-Length", "0")
    h.end_headers()


def huge_stream(h: BaseHTTPRequestHandler, declared: bool) -> None:
    """150 MB of spaces, streamed a MB at a time (never held in memory)."""
    h.send_response(200)
    if declared:
        h.send_header("Content-Length", str(150 << 20))
    h.end_headers()
    block = b" " * (1 << 20)
    for _ in range(150):
        if h.server.stop.is_set():
            return
        h.wfile.write(block)


def search(url: str, **kw: Any) -> str:
    return SearchTool("http", url=url, timeout_s=DEADLINE, retries=2, **kw)({"query": "x"}).text


def image_search(url: str) -> str:
    tool = ImageSearchTool("http", url=url, timeout_s=DEADLINE, retries=1)
    return tool({}, ToolContext(images=(Image.new("RGB", (8, 8), "red"),))).text


def policy(url: str, **kw: Any) -> OpenAIPolicy:
    return OpenAIPolicy(f"{url}/v1", "m", timeout_s=DEADLINE, backoff_s=0.01, **kw)


def ask(p: OpenAIPolicy) -> Any:
    [[completion]] = p.generate([[{"role": "user", "content": "hi"}]])
    return completion


def assert_valid_utf8(text: str) -> None:
    text.encode("utf-8")  # raises UnicodeEncodeError on a lone surrogate


# ---------------------------------------------------------------------------------------------
# Finding 7: a whole-call deadline, not a per-read timeout.


@pytest.mark.parametrize("drip", [drip_body, drip_headers], ids=["body", "headers"])
def test_a_dripping_search_server_is_cut_off_at_the_deadline(drip: Callable) -> None:
    with serving(drip) as srv:
        start = time.monotonic()
        with pytest.raises(ToolCallError, match=f"did not answer within {DEADLINE:g} s"):
            search(f"{srv.origin()}/retrieve")
        assert time.monotonic() - start < 2 * DEADLINE
        assert len(srv.hits) == 1  # a timeout is not retried


@pytest.mark.parametrize("drip", [drip_body, drip_headers], ids=["body", "headers"])
def test_a_dripping_model_server_is_cut_off_at_the_deadline(drip: Callable) -> None:
    with serving(drip) as srv:
        start = time.monotonic()
        c = ask(policy(srv.origin(), retries=2))
        assert time.monotonic() - start < 2 * DEADLINE
        assert c.finish_reason == "error" and f"timeout_s={DEADLINE}" in c.error


def test_thirty_redirects_are_refused_after_three() -> None:
    with serving(redirect_to_self) as srv:
        start = time.monotonic()
        with pytest.raises(ToolCallError, match="redirected more than 3 times"):
            search(f"{srv.origin()}/retrieve")
        assert time.monotonic() - start < 2 * DEADLINE
        assert len(srv.hits) == 4  # the first request and three same-origin hops, no retries
        c = ask(policy(srv.origin()))
        assert c.finish_reason == "error" and "redirected more than 3 times" in c.error


def test_a_redirect_to_another_port_never_reposts_the_query_image() -> None:
    with serving(lambda h: send_json(h, '{"results": []}')) as other:
        def elsewhere(h: BaseHTTPRequestHandler) -> None:
            h.send_response(307)
            h.send_header("Location", f"{other.origin()}/steal")
            h.send_header("Content-Length", "0")
            h.end_headers()

        with serving(elsewhere) as srv:
            with pytest.raises(ToolCallError, match="redirected to another server"):
                image_search(f"{srv.origin()}/search")
            c = ask(policy(srv.origin(), api_key="secret"))
            assert c.finish_reason == "error" and "redirected to another server" in c.error
    assert other.hits == []  # neither the image nor the API key went there


def test_a_same_origin_redirect_is_followed() -> None:
    def moved(h: BaseHTTPRequestHandler) -> None:
        if h.path == "/retrieve/":
            h.send_response(307)
            h.send_header("Location", "/retrieve")
            h.send_header("Content-Length", "0")
            h.end_headers()
        else:
            send_json(h, json.dumps({"results": [{"title": "Big Ben", "text": "96 m"}]}))

    with serving(moved) as srv:
        assert "Big Ben" in search(f"{srv.origin()}/retrieve/")
        assert [(m, p) for m, p, _ in srv.hits] == [("POST", "/retrieve/"), ("POST", "/retrieve")]
        assert srv.hits[0][2] == srv.hits[1][2]  # the same query, to the same server


# ---------------------------------------------------------------------------------------------
# Finding 7: size caps.


def test_a_huge_search_title_and_url_are_cut_at_entry() -> None:
    doc = {"title": "T" * 1_900_000, "text": "a text", "url": "http://x/" + "u" * 100_000}
    with serving(lambda h: send_json(h, json.dumps({"results": [doc]}))) as srv:
        text = search(f"{srv.origin()}/retrieve")
    assert "TTT" in text and "uuu" in text and len(text) < 2_000


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "streamed"])
def test_a_150_mb_model_answer_is_refused(declared: bool) -> None:
    with serving(lambda h: huge_stream(h, declared)) as srv:
        start = time.monotonic()
        c = ask(policy(srv.origin()))
        assert time.monotonic() - start < 2 * DEADLINE
    assert c.finish_reason == "error"
    assert "over 64 MB" in c.error and "max_response_bytes" in c.error


# ---------------------------------------------------------------------------------------------
# Finding 8: lone surrogates become valid UTF-8 where they enter.

LONE = r"\ud800"  # a JSON escape of a lone surrogate: json.loads turns it into an invalid str


def test_lone_surrogates_in_search_results_are_repaired() -> None:
    raw = ('{"results": [{"title": "A' + LONE + '", "text": "b' + LONE + 'c", '
           '"url": "http://x/' + LONE + '"}]}')
    with serving(lambda h: send_json(h, raw)) as srv:
        text = search(f"{srv.origin()}/retrieve")
    assert_valid_utf8(text)
    assert "A" in text and "http://x/" in text


def test_lone_surrogates_in_image_search_captions_are_repaired() -> None:
    raw = '{"results": [{"caption": "Flag ' + LONE + '", "url": "http://x/' + LONE + '"}]}'
    with serving(lambda h: send_json(h, raw)) as srv:
        text = image_search(f"{srv.origin()}/search")
    assert_valid_utf8(text)
    assert "Flag" in text


def test_lone_surrogates_in_a_model_answer_are_repaired() -> None:
    arguments = json.dumps({"expression": "1" + LONE})  # escaped twice: inside a JSON string
    message = ('{"role": "assistant", "content": "<think>' + LONE + '</think> x' + LONE + '", '
               '"reasoning_content": "r' + LONE + '", "tool_calls": [{"id": "c", "type": '
               '"function", "function": {"name": "calc' + LONE + '", "arguments": '
               + json.dumps(arguments) + '}}]}')
    raw = '{"choices": [{"index": 0, "finish_reason": "stop", "message": ' + message + '}]}'
    with serving(lambda h: send_json(h, raw)) as srv:
        c = ask(policy(srv.origin()))
    assert c.error is None
    assert_valid_utf8(c.text)
    assert "calc" in c.text and "<tool_call>" in c.text


def test_lone_surrogates_in_a_model_error_are_repaired() -> None:
    raw = '{"error": {"message": "bad ' + LONE + '"}}'
    with serving(lambda h: send_json(h, raw, status=400)) as srv:
        c = ask(policy(srv.origin()))
    assert c.finish_reason == "error" and "bad" in c.error
    assert_valid_utf8(c.error)


@pytest.mark.parametrize("drip", [drip_body, drip_headers], ids=["body", "headers"])
def test_listing_a_servers_models_is_cut_off_at_the_deadline(drip: Callable) -> None:
    """`load_policy("http://...")` asks GET /models for the model's name: bounded the same way."""
    from agents.loading import served_model
    from axpo_env.errors import ModelLoadError

    with serving(drip) as srv:
        start = time.monotonic()
        with pytest.raises(ModelLoadError, match="cannot list the models served"):
            served_model(srv.origin(), None, DEADLINE)
        assert time.monotonic() - start < 2 * DEADLINE
