"""A local OpenAI-compatible server for tests: lists one model and answers ToolArith correctly.

No torch: the torch-free checks run it too. `python -m tests.openai_server` serves until
interrupted and prints its base URL (for trying `axpo eval --model URL` by hand).
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from axpo_env.tasks.tool_arith import ToolArith

MODEL = "served-vl"


def _text(message) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(
        p.get("text", "") for p in content if p.get("type") == "text")


def _server() -> ThreadingHTTPServer:
    items = ToolArith(split="test").items
    answers = {items[i].question: items[i].answer for i in range(4)}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, payload):
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._send({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            question = _text(next(m for m in body["messages"] if m["role"] == "user"))
            answer = next(a for q, a in answers.items() if q in question)
            self._send({"choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": f"<answer>{answer}</answer>"}}],
                "model": body["model"]})

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@contextlib.contextmanager
def running() -> Iterator[str]:
    """The server on a free port, in a thread; yields its base URL (ending in /v1)."""
    httpd = _server()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


if __name__ == "__main__":
    httpd = _server()
    print(f"http://127.0.0.1:{httpd.server_address[1]}/v1", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)
