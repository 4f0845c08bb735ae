"""The search tool: BM25 over the bundled corpus; an HTTP backend against a real local server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from axpo_env.errors import DatasetError, ToolCallError
from axpo_env.tools.base import get_tool
from axpo_env.tools.search import BM25Backend, HTTPBackend, SearchTool, SerperBackend


def titles(text: str) -> list[str]:
    return [line.split("] ", 1)[1] for line in text.splitlines() if line.startswith("[")]


# ---------------------------------------------------------------------------------------------
# BM25 over the bundled corpus


@pytest.fixture(scope="module")
def tool() -> SearchTool:
    return SearchTool()


@pytest.mark.parametrize(
    ("query", "title"),
    [
        ("How tall is the Eiffel Tower?", "Eiffel Tower"),
        ("Statue of Liberty height with pedestal", "Statue of Liberty"),
        ("area of a circle radius", "Circle"),
        ("pie chart sector angle", "Pie chart"),
        ("convert celsius to fahrenheit", "Temperature conversion"),
        ("volume of a sphere", "Sphere"),
        ("sum of interior angles of a polygon", "Polygon"),
        ("box plot outliers interquartile range", "Box plot"),
        ("Mount Everest elevation", "Mount Everest"),
        ("inches to centimeters", "Imperial and US customary length units"),
    ],
)
def test_bm25_puts_the_relevant_document_first(tool: SearchTool, query: str, title: str) -> None:
    assert titles(tool({"query": query}).text)[0] == title


def test_result_lists_numbered_hits_with_title_snippet_and_url(tool: SearchTool) -> None:
    text = tool({"query": "Eiffel Tower"}).text
    lines = text.splitlines()
    assert lines[0] == "[1] Eiffel Tower"
    assert lines[1].strip().startswith("The Eiffel Tower is a wrought-iron lattice tower")
    assert lines[2].strip() == "https://en.wikipedia.org/wiki/Eiffel_Tower"
    assert len(titles(text)) == 3  # the default top_k
    assert all(len(line) <= 4 + 400 + 4 for line in lines)


def test_top_k_is_respected_and_checked(tool: SearchTool) -> None:
    assert len(titles(tool({"query": "tower", "top_k": 1}).text)) == 1
    assert len(titles(tool({"query": "tower", "top_k": 7}).text)) == 7
    assert len(titles(SearchTool(top_k=5)({"query": "tower"}).text)) == 5
    for bad in (0, 11, "3"):
        with pytest.raises(ToolCallError, match="bad arguments at top_k"):
            tool({"query": "tower", "top_k": bad})


def test_empty_and_oversized_queries_are_tool_errors(tool: SearchTool) -> None:
    for query in ("", "   \n "):
        with pytest.raises(ToolCallError, match="empty query"):
            tool({"query": query})
    with pytest.raises(ToolCallError, match="query too long"):
        tool({"query": "tower " * 200})
    with pytest.raises(ToolCallError, match="bad arguments"):
        tool({"q": "tower"})


def test_queries_without_known_words_find_nothing(tool: SearchTool) -> None:
    assert tool({"query": "zzzqqq xxyyzz"}).text.startswith('No results for "zzzqqq xxyyzz"')
    assert tool({"query": "the of and"}).text.startswith("No results")


def test_index_is_shared_between_instances_and_registry_builds_the_default() -> None:
    made = get_tool("search")
    assert isinstance(made, SearchTool) and made.name == "search"
    assert made.backend is SearchTool().backend
    assert made.nondeterministic is False
    fn = made.schema["function"]
    assert fn["name"] == "search" and fn["parameters"]["required"] == ["query"]


def test_custom_corpus_as_list_and_jsonl(tmp_path: Any) -> None:
    docs = [
        {"title": "Zebra crossing", "text": "A zebra crossing has white stripes.", "url": "u1"},
        {"title": "Giraffe", "text": "The giraffe is the tallest living animal."},
        # Search-R1's corpus format: "contents" is the quoted title, a newline, then the text.
        {"id": "7", "contents": '"Okapi"\nThe okapi is a relative of the giraffe.'},
    ]
    listed = SearchTool(corpus=docs)
    assert titles(listed({"query": "tallest animal"}).text)[0] == "Giraffe"
    assert titles(listed({"query": "okapi"}).text) == ["Okapi"]
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in docs) + "\n", encoding="utf-8")
    from_file = SearchTool(corpus=path)
    assert titles(from_file({"query": "zebra stripes"}).text)[0] == "Zebra crossing"
    assert "u1" in from_file({"query": "zebra stripes"}).text
    assert SearchTool(corpus=str(path)).backend is from_file.backend


def test_bad_corpora_are_clear_errors(tmp_path: Any) -> None:
    with pytest.raises(DatasetError, match="not found"):
        SearchTool(corpus=tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "a", "text": "b"}\nnot json\n', encoding="utf-8")
    with pytest.raises(DatasetError, match="line 2"):
        BM25Backend.from_path(bad)
    with pytest.raises(DatasetError, match="needs 'text'"):
        SearchTool(corpus=[{"title": "no text"}])
    with pytest.raises(ValueError, match="url"):
        SearchTool("http")
    with pytest.raises(ValueError, match="unknown search backend"):
        SearchTool("google")


# ---------------------------------------------------------------------------------------------
# HTTP backend against a real local server speaking the Search-R1 retriever protocol

DOCS = [
    {"id": "1", "contents": '"Eiffel Tower"\nThe Eiffel Tower is 330 m tall.'},
    {"id": "2", "contents": '"Tokyo Tower"\nTokyo Tower is 332.9 m tall.'},
    {"id": "3", "contents": '"CN Tower"\nThe CN Tower is 553.3 m tall.'},
    {"id": "4", "contents": '"Space Needle"\nThe Space Needle is 184 m tall.'},
]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        action = self.server.script.pop(0) if self.server.script else "ok"
        if action == "500":
            return self._send(500, b"oops")
        if action == "slow":
            time.sleep(1.0)
        if action == "garbage":
            return self._send(200, b"<html>definitely not json</html>")
        if action == "shape":
            return self._send(200, json.dumps({"answer": 42}).encode())
        if action == "huge":
            return self._send(200, b"[" * (3 << 20))
        if action == "huge-undeclared":
            self.send_response(200)
            self.end_headers()
            for _ in range(48):
                self.wfile.write(b" " * 65536)
            return None
        if action == "drip":  # headers at once, then the body stalls
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b'{"result": ')
            self.wfile.flush()
            time.sleep(1.0)
            return None
        if action == "simple":
            docs = [{"title": "Big Ben", "text": "The tower is 96 m tall.", "url": "https://x"}]
            return self._send(200, json.dumps({"results": docs}).encode())
        k = body["topk"]
        result = [[{"document": d, "score": 10.0 - i} for i, d in enumerate(DOCS[:k])]]
        return self._send(200, json.dumps({"result": result}).encode())

    def _send(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        try:
            self.wfile.write(payload)
        except OSError:
            pass  # the client gave up on us: that is the point of some tests

    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.script: list[str] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/retrieve"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def http_tool(url: str) -> SearchTool:
    return SearchTool("http", url=url, timeout_s=0.3, retries=2)


def test_http_happy_path_speaks_search_r1(server: _Server) -> None:
    tool = http_tool(server.url)
    assert tool.nondeterministic is True
    text = tool({"query": "tall towers", "top_k": 2}).text
    assert titles(text) == ["Eiffel Tower", "Tokyo Tower"]
    assert "The Eiffel Tower is 330 m tall." in text
    assert server.requests == [{"queries": ["tall towers"], "topk": 2, "return_scores": True}]
    assert titles(tool({"query": "towers"}).text) == ["Eiffel Tower", "Tokyo Tower", "CN Tower"]


def test_http_accepts_the_simple_results_shape(server: _Server) -> None:
    server.script = ["simple"]
    text = http_tool(server.url)({"query": "big ben"}).text
    assert titles(text) == ["Big Ben"] and "https://x" in text


def test_http_retries_a_server_error(server: _Server) -> None:
    server.script = ["500"]
    assert titles(http_tool(server.url)({"query": "towers", "top_k": 1}).text) == ["Eiffel Tower"]
    assert len(server.requests) == 2


def test_http_gives_up_after_the_retries(server: _Server) -> None:
    server.script = ["500", "500", "500"]
    tool = http_tool(server.url)
    with pytest.raises(ToolCallError, match=r"HTTP 500\) \(tried 3 times\)"):
        tool({"query": "towers"})
    assert titles(tool({"query": "towers", "top_k": 1}).text) == ["Eiffel Tower"]


@pytest.mark.parametrize(
    ("action", "fragment"),
    [
        ("slow", "did not answer within 0.3 s; try again or answer without search"),
        ("drip", "did not answer within 0.3 s"),
        ("garbage", "did not answer with JSON"),
        ("shape", "unexpected shape"),
        ("huge", "over 2 MB"),
        ("huge-undeclared", "over 2 MB"),
    ],
)
def test_http_failures_are_clear_tool_errors(server: _Server, action: str, fragment: str) -> None:
    server.script = [action]
    tool = http_tool(server.url)
    start = time.monotonic()
    with pytest.raises(ToolCallError, match=fragment):
        tool({"query": "towers"})
    assert time.monotonic() - start < 1.5
    assert titles(tool({"query": "towers", "top_k": 1}).text) == ["Eiffel Tower"]  # works again


def test_http_connection_refused_is_retried_then_a_clear_error() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tool = http_tool(f"http://127.0.0.1:{port}/retrieve")
    start = time.monotonic()
    with pytest.raises(ToolCallError, match="could not connect to the search server"):
        tool({"query": "towers"})
    assert time.monotonic() - start < 2.0


def test_http_backend_checks_its_url() -> None:
    with pytest.raises(ValueError, match="http"):
        HTTPBackend("localhost:8000/retrieve")


# ---------------------------------------------------------------------------------------------
# The hosted web-search API format (Serper's): a real local server that checks key and body.

ORGANIC = [{"title": "Eiffel Tower - Wikipedia", "link": "https://en.wikipedia.org/wiki/Eiffel",
            "snippet": "The tower is 330 metres tall.", "position": 1},
           {"title": "Tokyo Tower", "link": "https://example.org/tokyo",
            "snippet": "Tokyo Tower is 332.9 m tall.", "position": 2},
           "not a result", {"position": 3}]


class _SerperHandler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"body": body, "key": self.headers.get("X-API-KEY")})
        action = self.server.script.pop(0) if self.server.script else "ok"
        if self.headers.get("X-API-KEY") != "sk-test":
            return _Handler._send(self, 403, b'{"message": "Unauthorized."}')
        if action == "slow":
            time.sleep(1.0)
        if action == "garbage":
            return _Handler._send(self, 200, b"\x00\xff not json")
        if action == "shape":
            return _Handler._send(self, 200, b'{"organic": "nope"}')
        if action == "503":
            return _Handler._send(self, 503, b"busy")
        return _Handler._send(self, 200, json.dumps({
            "searchParameters": {"q": body["q"]}, "organic": ORGANIC[:body["num"] + 2]}).encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def serper(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SERPER_API_KEY", "sk-test")
    srv = _Server()
    srv.RequestHandlerClass = _SerperHandler
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def serper_tool(server: _Server) -> SearchTool:
    return SearchTool("serper", url=server.url, timeout_s=0.3, retries=1)


def test_serper_format_sends_key_and_query_and_reads_organic_results(serper: _Server) -> None:
    tool = serper_tool(serper)
    assert tool.nondeterministic is True
    text = tool({"query": "eiffel tower height", "top_k": 2}).text
    assert titles(text) == ["Eiffel Tower - Wikipedia", "Tokyo Tower"]
    assert "330 metres" in text and "https://en.wikipedia.org/wiki/Eiffel" in text
    assert serper.requests == [{"body": {"q": "eiffel tower height", "num": 2}, "key": "sk-test"}]


def test_serper_key_comes_from_the_environment(serper: _Server, monkeypatch) -> None:
    monkeypatch.delenv("SERPER_API_KEY")
    with pytest.raises(ValueError, match="export SERPER_API_KEY"):
        serper_tool(serper)
    monkeypatch.setenv("MY_KEY", "wrong")
    tool = SearchTool("serper", url=serper.url, api_key_env="MY_KEY", timeout_s=0.3)
    with pytest.raises(ToolCallError, match="refused the API key \\(HTTP 403\\)"):
        tool({"query": "x"})
    assert len(serper.requests) == 1  # a refused key is not retried


@pytest.mark.parametrize(("action", "fragment"), [
    ("slow", "did not answer within 0.3 s"), ("garbage", "did not answer with JSON"),
    ("shape", "unexpected shape"), ("503", "HTTP 503\\) \\(tried 2 times\\)"),
])
def test_serper_failures_are_clear_tool_errors(serper: _Server, action: str,
                                               fragment: str) -> None:
    serper.script = [action, action]
    start = time.monotonic()
    with pytest.raises(ToolCallError, match=fragment):
        serper_tool(serper)({"query": "x"})
    assert time.monotonic() - start < 1.5


def test_serper_server_down_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("SERPER_API_KEY", "sk-test")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tool = SearchTool("serper", url=f"http://127.0.0.1:{port}/search", timeout_s=0.3)
    with pytest.raises(ToolCallError, match="could not connect to the web-search API"):
        tool({"query": "x"})


def test_serper_is_registered(monkeypatch) -> None:
    monkeypatch.setenv("SERPER_API_KEY", "sk-test")
    tool = get_tool("search:serper")
    assert tool.name == "search" and isinstance(tool.backend, SerperBackend)
