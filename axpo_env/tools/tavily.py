"""`tavily-search`: the web search the AXPO paper authors' models call (the `search:tavily`
preset), as ``tavily-search({"query": "...", "max_results": 5})`` (the trajectories on the
authors' project page, GitHub `ByungKwanLee/AXPO-page`). The hyphenated name is what the model
writes, so it is the tool's name.

Two backends. "tavily" is Tavily's hosted REST API: ``POST https://api.tavily.com/search`` with
``{"query", "max_results", "search_depth": "basic", ...}`` and the key as ``Authorization:
Bearer <key>`` (read from ``$TAVILY_API_KEY`` when the tool is made, never from code), answered
by ``{"query", "results": [{"title", "url", "content", "score", ...}], ...}``. It goes through
`_http.JSONClient` (the bounded `fetch`): each attempt ends within `timeout_s`, answers over
2 MB, redirects to another server (which would carry the key there), refused keys, 5xx and
garbage all become a short error for the agent. "bm25" searches the local corpus of the
`search` tool (`search.DEFAULT_CORPUS`, or `corpus=`) offline and deterministically. The default,
"auto", is "tavily" when the key is set and "bm25" otherwise, so envs and tests run anywhere.

Hostile input: the query is cut to one line and refused over `MAX_QUERY_CHARS`; `max_results`
is clamped to 1..`MAX_RESULTS`; result texts are cut at entry and made valid UTF-8
(`search.as_hit`); the reply is numbered hits with title, snippet and url (`search.format_hits`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from axpo_env.errors import ToolCallError
from axpo_env.tools._backend import set_backend
from axpo_env.tools._http import JSONClient
from axpo_env.tools.base import Tool, ToolContext, ToolResult
from axpo_env.tools.search import (
    DEFAULT_CORPUS,
    MAX_TEXT_CHARS,
    BM25Backend,
    SearchBackend,
    SearchHit,
    as_hit,
    format_hits,
    load_corpus,
)

logger = logging.getLogger(__name__)

TAVILY_URL = "https://api.tavily.com/search"
API_KEY_ENV = "TAVILY_API_KEY"
MAX_RESULTS = 10
DEFAULT_MAX_RESULTS = 5
MAX_QUERY_CHARS = 400


class TavilyBackend(SearchBackend):
    """Tavily's search API (see the module docstring). `url` may point at a proxy, a gateway or
    a test server; the key is read from the environment variable `api_key_env` when the backend
    is made."""

    nondeterministic = True

    def __init__(self, url: str = TAVILY_URL, api_key_env: str = API_KEY_ENV,
                 timeout_s: float = 10.0, retries: int = 2, search_depth: str = "basic"):
        key = os.environ.get(api_key_env, "").strip()
        if not key:
            raise ValueError(f"the Tavily API key is not set: export {api_key_env}=tvly-... "
                             "(or pass api_key_env= naming the variable that holds it, or "
                             "backend='bm25' to search the local corpus offline)")
        try:
            self.client = JSONClient(url, "the Tavily search API",
                                     headers={"Authorization": f"Bearer {key}"},
                                     timeout_s=timeout_s, retries=retries)
        except ValueError:
            raise ValueError(f"Tavily url must start with http:// or https://, got {url!r}"
                             ) from None
        self.url, self.search_depth = url, search_depth

    def search(self, query: str, top_k: int) -> list[SearchHit]:
        data = self.client.post({
            "query": query, "max_results": top_k, "search_depth": self.search_depth,
            "include_answer": False, "include_raw_content": False, "include_images": False,
        })
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            raise ToolCallError("the Tavily search API's answer has an unexpected shape (no "
                                "'results' list); answer without search")
        hits = []
        for item in results:
            if not isinstance(item, dict):
                continue
            title, content, url = (item.get(k) for k in ("title", "content", "url"))
            if isinstance(title, str) or isinstance(content, str):
                hits.append(as_hit({"title": title if isinstance(title, str) else "",
                                    "text": content if isinstance(content, str) else "",
                                    "url": url if isinstance(url, str) else ""},
                                   item.get("score"), MAX_TEXT_CHARS))
        return hits[:top_k]


class TavilySearchTool(Tool):
    """`tavily-search`: web search as the authors' models call it.

    Args:
        backend: "auto" ("tavily" when `$TAVILY_API_KEY`, or the variable `api_key_env` names,
            is set, else "bm25"), "tavily" (the hosted API; the key must be set), "bm25" (the
            local corpus, offline) or any `SearchBackend`.
        url: the Tavily endpoint (default `TAVILY_URL`).
        corpus: the bm25 backend's documents (a jsonl path or a list of dicts); default the
            `search` tool's bundled corpus.
        max_results: results when the call does not say (clamped to 1..`MAX_RESULTS`).
        timeout_s, retries: per attempt wall-clock bound, extra attempts (hosted API).
        api_key_env: the environment variable that holds the key.
    """

    name = "tavily-search"

    def __init__(self, backend: str | SearchBackend = "auto", *, url: str | None = None,
                 corpus: str | Path | Sequence[Mapping[str, Any]] | None = None,
                 max_results: int = DEFAULT_MAX_RESULTS, timeout_s: float = 10.0,
                 retries: int = 2, api_key_env: str = API_KEY_ENV):
        if backend == "auto":
            backend = "tavily" if os.environ.get(api_key_env, "").strip() else "bm25"
            logger.info("tavily-search: %s ($%s is %s)", "the Tavily API" if backend ==
                        "tavily" else "the local corpus, offline", api_key_env,
                        "set" if backend == "tavily" else "not set")

        def bm25() -> SearchBackend:
            if corpus is None or isinstance(corpus, (str, Path)):
                return BM25Backend.from_path(corpus or DEFAULT_CORPUS)
            return BM25Backend(load_corpus(corpus))

        set_backend(self, backend, SearchBackend, {
            "tavily": lambda: TavilyBackend(url or TAVILY_URL, api_key_env=api_key_env,
                                            timeout_s=timeout_s, retries=retries),
            "bm25": bm25,
        }, "tavily-search", max_results, MAX_RESULTS)

    @property
    def online(self) -> bool:
        """True when queries go to the hosted API."""
        return isinstance(self.backend, TavilyBackend)

    @property
    def schema(self) -> dict[str, Any]:
        where = ("Search the web with Tavily" if self.online else
                 "Search the web (here: an offline encyclopedia of landmarks, famous objects, "
                 "units, science, math and chart terms)")
        return {"type": "function", "function": {
            "name": self.name,
            "description": f"{where} for facts. Returns numbered results with title, content "
                           "snippet and url.",
            "parameters": {"type": "object", "properties": {
                "query": {"type": "string", "description": "The search query, e.g. "
                          "'Paul Costelloe birthplace'."},
                "max_results": {"type": "integer", "description": "How many results to "
                                f"return, 1 to {MAX_RESULTS} (default {self.top_k})."},
            }, "required": ["query"]},
        }}

    def run(self, arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
        query = " ".join(str(arguments.get("query", "")).split())
        if not query:
            raise ToolCallError("empty query; give a few keywords, e.g. 'Eiffel Tower height'")
        if len(query) > MAX_QUERY_CHARS:
            raise ToolCallError(f"query too long ({len(query)} characters, limit "
                                f"{MAX_QUERY_CHARS}); use a few keywords")
        asked = arguments.get("max_results")
        k = self.top_k if asked is None else min(max(int(asked), 1), MAX_RESULTS)
        try:
            hits = self.backend.search(query, k)
        except ToolCallError:
            raise
        except Exception as e:  # a custom backend's bug must not end the training run
            raise ToolCallError(f"search failed ({type(e).__name__}); answer without search"
                                ) from e
        return ToolResult(text=format_hits(query, hits[:k]))

    def __repr__(self) -> str:
        return f"TavilySearchTool(backend={type(self.backend).__name__}, top_k={self.top_k})"
