"""JSON over HTTP for tools that call a service (search, image search), bounded and hostile-safe.

Why one client: every service a tool calls can be down, slow, drip-feed its body, answer with
an error page or gigabytes; each must end as a short `ToolCallError` for the agent, in bounded
time and memory. Connection errors, 429 and 5xx are retried with a short backoff; timeouts are
not, so a call takes at most about `(retries + 1) * timeout_s`.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

from axpo_env.errors import ToolCallError

MAX_RESPONSE_BYTES = 2 << 20


class JSONClient:
    """POSTs (or GETs) JSON to one URL and returns the decoded answer.

    Args:
        url: the endpoint, http:// or https://.
        what: how errors name the service ("the search server").
        headers: sent with every request (e.g. an API key header).
        timeout_s: connect and read timeout, and the bound on reading a body.
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
        import requests

        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def post(self, payload: Any) -> Any:
        return self._call("POST", json=payload)

    def get(self, params: Mapping[str, Any]) -> Any:
        return self._call("GET", params=dict(params))

    def _call(self, method: str, **kwargs: Any) -> Any:
        import requests

        problem = "no answer"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(0.1 * 2 ** (attempt - 1), 1.0))
            start = time.monotonic()
            try:
                with self._session().request(method, self.url, headers=self.headers,
                                             stream=True, timeout=(self.timeout_s,
                                                                   self.timeout_s),
                                             **kwargs) as resp:
                    if resp.status_code >= 500 or resp.status_code == 429:
                        problem = f"{self.what} failed (HTTP {resp.status_code})"
                        continue
                    if resp.status_code in (401, 403):
                        raise ToolCallError(f"{self.what} refused the API key (HTTP "
                                            f"{resp.status_code}); {self.advice}")
                    if resp.status_code >= 400:
                        raise ToolCallError(
                            f"{self.what} rejected the query (HTTP {resp.status_code})")
                    body = self._read(resp, start)
            except requests.Timeout:
                raise self._timeout() from None
            except requests.RequestException:
                problem = f"could not connect to {self.what}"
                continue
            try:
                return json.loads(body)
            except (ValueError, RecursionError):
                raise ToolCallError(f"{self.what} did not answer with JSON; "
                                    f"try again or {self.advice}") from None
        raise ToolCallError(f"{problem} (tried {self.retries + 1} times); "
                            f"try again later or {self.advice}")

    def _read(self, resp: Any, start: float) -> bytes:
        """The body, at most `max_bytes` and about `timeout_s` of reading."""
        import requests

        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise self._too_big()
        chunks, size = [], 0
        try:
            for chunk in resp.iter_content(chunk_size=1 << 16):
                size += len(chunk)
                if size > self.max_bytes:
                    raise self._too_big()
                if time.monotonic() - start > self.timeout_s:
                    raise self._timeout()
                chunks.append(chunk)
        except requests.RequestException:
            if time.monotonic() - start >= self.timeout_s:
                raise self._timeout() from None
            raise ToolCallError(f"{self.what}'s answer broke off; try again") from None
        return b"".join(chunks)

    def _timeout(self) -> ToolCallError:
        return ToolCallError(f"{self.what} did not answer within {self.timeout_s:g} s; "
                             f"try again or {self.advice}")

    def _too_big(self) -> ToolCallError:
        return ToolCallError(f"{self.what}'s answer is over {self.max_bytes >> 20} MB; "
                             "it is not a result")
