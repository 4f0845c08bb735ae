"""image_search: the embedded corpus identifies flags offline; the HTTP backend against real
local servers, including down, slow, garbage and oversized answers."""

from __future__ import annotations

import base64
import functools
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from PIL import Image

from axpo_env import ToolUseEnv
from axpo_env.errors import ToolCallError
from axpo_env.tools import _image_corpus
from axpo_env.tools.base import ToolContext, get_tool
from axpo_env.tools.image_search import ImageSearchTool, decode_image
from tests.conftest import ToyTask


def scene(flag: str, seed: int = 0) -> tuple[Image.Image, list[int]]:
    """A noisy 800x600 scene with the flag, enlarged to 360x240, somewhere in it; and a box
    around the flag with a 20-pixel margin of scene."""
    rng = np.random.default_rng(seed)
    background = rng.integers(60, 140, (600, 800, 3), dtype=np.uint8)
    image = Image.fromarray(background)
    x, y = int(rng.integers(20, 420)), int(rng.integers(20, 340))
    image.paste(_image_corpus.draw(_image_corpus.FLAGS[flag][1]).resize((360, 240)), (x, y))
    return image, [x - 20, y - 20, x + 380, y + 260]


def first_caption(text: str) -> str:
    return text.splitlines()[0]


def png64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize("flag", sorted(_image_corpus.FLAGS))
def test_embedded_search_identifies_every_flag_from_a_crop(flag):
    image, box = scene(flag, seed=len(flag))
    crop = get_tool("crop")({"bbox": box}, ToolContext(images=(image,)))
    out = ImageSearchTool()({"image_index": 1}, ToolContext(images=(image, crop.images[0])))
    caption = _image_corpus.FLAGS[flag][0]
    assert first_caption(out.text).startswith("[1] " + caption)
    assert len(out.images) == 3 and max(out.images[0].size) <= 256


def test_words_of_the_query_lift_matching_captions():
    image = Image.new("RGB", (90, 60), (128, 128, 128))
    plain = ImageSearchTool()({}, ToolContext(images=(image,)))
    asked = ImageSearchTool()({"query": "Japan hinomaru"}, ToolContext(images=(image,)))
    assert "Japan" in first_caption(asked.text) and plain.text != asked.text


def test_bundled_corpus_is_what_the_script_draws():
    bundled = [json.loads(line) for line in
               _image_corpus.CORPUS_PATH.read_text().splitlines()]
    fresh = _image_corpus.records()
    assert [(r["id"], r["caption"], r["url"]) for r in bundled] == \
        [(r["id"], r["caption"], r["url"]) for r in fresh]
    for a, b in zip(bundled, fresh):
        assert np.array_equal(np.asarray(decode_image(a["image"])),
                              np.asarray(decode_image(b["image"])))


def test_bad_calls_are_clear_errors():
    tool = ImageSearchTool()
    ctx = ToolContext(images=(scene("japan")[0],))
    with pytest.raises(ToolCallError, match="image_index=3 does not exist: use 0 to 0"):
        tool({"image_index": 3}, ctx)
    with pytest.raises(ToolCallError, match="no image"):
        tool({}, ToolContext())
    with pytest.raises(ToolCallError, match="bad arguments"):
        tool({"top_k": 50}, ctx)
    with pytest.raises(ValueError, match="top_k"):
        ImageSearchTool(top_k=9)


def test_in_an_env_the_matches_come_back_as_images_the_agent_can_use():
    env = ToolUseEnv(ToyTask(), tools=["image_search", "crop"], max_turns=3)
    env.reset(seed=0, options={"index": 0})
    obs, _, _, _, info = env.step('<tool_call>{"name": "image_search", "arguments": '
                                  '{"image_index": 0, "top_k": 2}}</tool_call>')
    reply = obs["messages"][-1]
    assert info["tool_errors"] == 0 and reply["role"] == "tool"
    assert [p["type"] for p in reply["content"]] == ["image", "image", "text"]
    assert "(image index 1, 2)" in reply["content"][-1]["text"]
    env.close()


# ---------------------------------------------------------------------------------------------
# HTTP backend against a real local server


@functools.cache
def ok_answer() -> bytes:
    """The service's answer: a good result, a broken image, junk items and a decompression
    bomb (made once: encoding it takes a while)."""
    red = png64(Image.new("RGB", (400, 300), (255, 0, 0)))
    bomb = Image.new("1", (5000, 5000))  # 25 Mpx, a few KB as PNG
    results = [
        {"caption": "A red square", "image": "data:image/png;base64," + red,
         "url": "https://example.org/red", "score": 0.9},
        {"title": "Broken picture", "image": "!!!not base64!!!"},
        "not a result",
        {"caption": "Too large to decode", "image": png64(bomb)},
        {"no_caption": True},
    ]
    return json.dumps({"results": results}).encode()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        action = self.server.script.pop(0) if self.server.script else "ok"
        if action == "slow":
            time.sleep(1.0)
        if action == "500":
            return self._send(500, b"oops")
        if action == "garbage":
            return self._send(200, b"<html>not json</html>")
        if action == "shape":
            return self._send(200, b'{"matches": []}')
        if action == "huge":
            return self._send(200, b'{"results": "' + b"A" * (3 << 20) + b'"}')
        return self._send(200, ok_answer())

    def _send(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        try:
            self.wfile.write(payload)
        except OSError:
            pass

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
        return f"http://127.0.0.1:{self.server_address[1]}/search"


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


def http_tool(url: str, timeout_s: float = 0.5) -> ImageSearchTool:
    return ImageSearchTool("http", url=url, timeout_s=timeout_s, retries=1, top_k=5)


def test_http_sends_the_image_and_words_and_reads_captions_and_images(server):
    ok_answer()
    tool = http_tool(server.url, timeout_s=5.0)
    assert tool.nondeterministic
    query = scene("france")[0]
    out = tool({"image_index": 0, "query": "  which   flag "}, ToolContext(images=(query,)))
    [request] = server.requests
    assert request["text"] == "which flag" and request["top_k"] == 5
    sent = decode_image(request["image"])
    assert sent.size == query.size and np.array_equal(np.asarray(sent), np.asarray(query))
    lines = out.text.splitlines()
    assert lines[0] == "[1] A red square (similarity 0.90)" and lines[1].endswith("/red")
    assert "[2] Broken picture" in out.text and "[3] Too large to decode" in out.text
    assert len(out.images) == 1 and out.images[0].size == (256, 192)  # thumbnails only


@pytest.mark.parametrize(("action", "fragment"), [
    ("slow", "did not answer within 0.5 s"), ("garbage", "did not answer with JSON"),
    ("shape", "unexpected shape"), ("huge", "over 2 MB"),
    ("500", r"HTTP 500\) \(tried 2 times\); try again later or answer without image search"),
])
def test_http_failures_are_clear_tool_errors(server, action, fragment):
    ok_answer()
    server.script = [action, action]
    tool = http_tool(server.url)
    start = time.monotonic()
    with pytest.raises(ToolCallError, match=fragment):
        tool({}, ToolContext(images=(scene("italy")[0],)))
    assert time.monotonic() - start < 2.0
    server.script = []
    assert "A red square" in tool({}, ToolContext(images=(scene("italy")[0],))).text


def test_http_server_down_is_a_clear_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ToolCallError, match="could not connect to the image search server"):
        http_tool(f"http://127.0.0.1:{port}/search")({}, ToolContext(images=(scene("italy")[0],)))
    with pytest.raises(ValueError, match="http"):
        ImageSearchTool("http", url="localhost:1/search")
