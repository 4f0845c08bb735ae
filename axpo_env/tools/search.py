"""Search tool: numbered hits (title, snippet, url) from a local BM25 index or a retrieval server.

Why two backends: the embedded BM25 index over a small bundled corpus needs no network, so envs,
tests and offline RL run anywhere; the HTTP backend speaks the Search-R1 retriever protocol that
agentic-RL setups already serve (`POST {url}` with `{"queries": [q], "topk": k,
"return_scores": true}` -> `{"result": [[{"document": {"contents": '"Title"\\ntext'},
"score": s}]]}`), so an existing wiki-18 server plugs in as it is. A plain
`{"results": [{"title", "text", "url"}]}` answer is accepted too. The "serper" backend speaks a
hosted web-search API's format (Serper's, as Qwen-Agent's `web_search` calls it) for live web
search.

Server trouble (timeouts, drip-fed or oversized bodies, redirects elsewhere, refused
connections, 5xx, garbage) becomes a short `ToolCallError` for the agent (see `_http`); each
attempt is bounded by `timeout_s` of wall-clock time, a call by about `(retries + 1) *
timeout_s`. Hits are cut at entry (`MAX_TITLE_CHARS`, `MAX_URL_CHARS`, and a server's texts at
`MAX_TEXT_CHARS`) and their text made valid UTF-8, whatever a server or a corpus file holds.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from axpo_env.errors import DatasetError, ToolCallError
from axpo_env.text import valid_text
from axpo_env.tools._backend import need_url, set_backend
from axpo_env.tools._http import MAX_RESPONSE_BYTES, JSONClient
from axpo_env.tools.base import Tool, ToolContext, ToolResult

DEFAULT_CORPUS = Path(__file__).parent / "data" / "search_corpus.jsonl"
SNIPPET_CHARS = 400
MAX_QUERY_CHARS = 500
MAX_TOP_K = 10
MAX_TITLE_CHARS = 300
MAX_URL_CHARS = 500
MAX_TEXT_CHARS = 4000  # a server's document text; the agent reads SNIPPET_CHARS of it
SERPER_URL = "https://google.serper.dev/search"


@dataclass(frozen=True)
class SearchHit:
    """One retrieved document."""

    title: str
    text: str
    url: str = ""
    score: float | None = None


class SearchBackend:
    """Where hits come from. `search` raises `ToolCallError` for problems the agent should see."""

    #: True when the same query may give different hits (a live server).
    nondeterministic: bool = False

    def search(self, query: str, top_k: int) -> list[SearchHit]:
        raise NotImplementedError


def as_hit(doc: Any, score: Any = None, max_text: int | None = None) -> SearchHit:
    """A hit from `{"title", "text", "url"}` or Search-R1's `{"contents": '"Title"\\ntext'}`;
    title and url cut to `MAX_TITLE_CHARS`/`MAX_URL_CHARS`, text to `max_text`, all valid
    UTF-8."""
    if not isinstance(doc, Mapping):
        raise ValueError(f"a document must be an object, got {type(doc).__name__}")
    if "text" in doc:
        title, text = doc.get("title", ""), doc["text"]
    elif isinstance(doc.get("contents"), str):
        title, _, text = doc["contents"].partition("\n")
        title = title.strip().strip('"')
    else:
        raise ValueError("a document needs 'text' (or Search-R1 'contents')")
    if not isinstance(text, str) or not isinstance(title, str):
        raise ValueError("a document's 'title' and 'text' must be strings")
    score = float(score) if isinstance(score, (int, float)) else None
    return SearchHit(title=_line(title, MAX_TITLE_CHARS), text=valid_text(text[:max_text].strip()),
                     url=_line(str(doc.get("url") or ""), MAX_URL_CHARS), score=score)


def _line(text: str, limit: int) -> str:
    """`text` on one line, at most `limit` characters, valid UTF-8."""
    return valid_text(" ".join(text[:2 * limit].split())[:limit])


def load_corpus(corpus: str | Path | Sequence[Mapping[str, Any]]) -> list[SearchHit]:
    """Documents from a jsonl file (one JSON object a line) or a list of dicts."""
    if isinstance(corpus, (str, Path)):
        path = Path(corpus)
        if not path.is_file():
            raise DatasetError(f"search corpus {path} not found; pass a jsonl of "
                               '{"title", "text", "url"} objects')
        pairs = []
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    pairs.append((f"{path} line {i}", json.loads(line)))
                except json.JSONDecodeError:
                    raise DatasetError(f"search corpus {path}: line {i} is not JSON") from None
    else:
        pairs = [(f"corpus[{i}]", d) for i, d in enumerate(corpus)]
    docs = []
    for where_, doc in pairs:
        try:
            docs.append(as_hit(doc))
        except ValueError as e:
            raise DatasetError(f"search corpus {where_}: {e}") from None
    if not docs:
        raise DatasetError("the search corpus is empty")
    return docs


def _stem(words: list[str]) -> list[str]:
    """A light plural stemmer, so "triangles" finds "triangle" (PyStemmer is not a dependency)."""
    out = []
    for w in words:
        if len(w) > 4 and w.endswith("ies"):
            w = w[:-3] + "y"
        elif len(w) > 4 and w.endswith(("ches", "shes", "xes", "sses")):
            w = w[:-2]
        elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
            w = w[:-1]
        out.append(w)
    return out


class BM25Backend(SearchBackend):
    """Okapi BM25 over a list of documents with `bm25s`; the index is built on the first search."""

    _shared: dict[tuple[str, int, int], BM25Backend] = {}
    _shared_lock = threading.Lock()

    def __init__(self, docs: Sequence[SearchHit | Mapping[str, Any]]):
        self.docs = [d if isinstance(d, SearchHit) else as_hit(d) for d in docs]
        self._index: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_path(cls, path: str | Path = DEFAULT_CORPUS) -> BM25Backend:
        """One backend (and index) per corpus file, shared by every SearchTool that uses it."""
        path = Path(path).resolve()
        stat = path.stat() if path.is_file() else None
        key = (str(path), stat.st_mtime_ns if stat else 0, stat.st_size if stat else 0)
        with cls._shared_lock:
            if key not in cls._shared:
                cls._shared[key] = cls(load_corpus(path))
            return cls._shared[key]

    def _tokenize(self, texts: list[str], ids: bool) -> Any:
        import bm25s

        return bm25s.tokenize(texts, stopwords="en", stemmer=_stem, return_ids=ids,
                              show_progress=False)

    def _retriever(self) -> Any:
        with self._lock:
            if self._index is None:
                import bm25s

                # The title counts twice: it names what the document is about.
                texts = [f"{d.title} {d.title} {d.text}" for d in self.docs]
                index = bm25s.BM25()
                index.index(self._tokenize(texts, ids=True), show_progress=False)
                self._index = index
            return self._index

    def search(self, query: str, top_k: int) -> list[SearchHit]:
        import numpy as np

        tokens = self._tokenize([query], ids=False)[0]
        if not tokens:
            return []
        scores = self._retriever().get_scores(tokens)
        order = np.argsort(-scores, kind="stable")[:top_k]
        return [replace(self.docs[i], score=float(scores[i])) for i in order if scores[i] > 0]


class HTTPBackend(SearchBackend):
    """A retrieval server over HTTP (Search-R1 protocol), through `requests`."""

    nondeterministic = True

    def __init__(self, url: str, timeout_s: float = 5.0, retries: int = 2,
                 max_bytes: int = MAX_RESPONSE_BYTES):
        try:
            self.client = JSONClient(url, "the search server", timeout_s=timeout_s,
                                     retries=retries, max_bytes=max_bytes)
        except ValueError:
            raise ValueError(f"search url must start with http:// or https://, got {url!r}"
                             ) from None
        self.url = url

    def search(self, query: str, top_k: int) -> list[SearchHit]:
        data = self.client.post({"queries": [query], "topk": top_k, "return_scores": True})
        return self._parse(data)[:top_k]

    @staticmethod
    def _parse(data: Any) -> list[SearchHit]:
        try:
            if isinstance(data, dict) and isinstance(data.get("result"), list):
                batch = data["result"][0] if data["result"] else []
                if not isinstance(batch, list):
                    raise ValueError("result[0] must be a list")
                return [as_hit(item["document"], item.get("score"), MAX_TEXT_CHARS)
                        if isinstance(item, dict) and "document" in item
                        else as_hit(item, max_text=MAX_TEXT_CHARS) for item in batch]
            if isinstance(data, dict) and isinstance(data.get("results"), list):
                return [as_hit(doc, doc.get("score") if isinstance(doc, dict) else None,
                               MAX_TEXT_CHARS) for doc in data["results"]]
            raise ValueError("expected {'result': [[...]]} or {'results': [...]}")
        except ValueError as e:
            raise ToolCallError(f"the search server's answer has an unexpected shape ({e}); "
                                "answer without search") from None


class SerperBackend(SearchBackend):
    """A hosted web-search API in Serper's format (google.serper.dev, the API Qwen-Agent's
    `web_search` uses): `POST {url}` with `{"q": query, "num": k}` and the key in an
    `X-API-KEY` header -> `{"organic": [{"title", "link", "snippet", "position"}, ...]}`. The
    URL is configurable (a proxy, a self-hosted gateway, a test server); the key is read from
    the environment variable `api_key_env` when the backend is made, never from code."""

    nondeterministic = True

    def __init__(self, url: str = SERPER_URL, api_key_env: str = "SERPER_API_KEY",
                 timeout_s: float = 5.0, retries: int = 2):
        key = os.environ.get(api_key_env, "")
        if not key:
            raise ValueError(f"the web-search API key is not set: export {api_key_env}=... "
                             "(or pass api_key_env= naming the variable that holds it)")
        self.url = url
        self.client = JSONClient(url, "the web-search API", headers={"X-API-KEY": key},
                                 timeout_s=timeout_s, retries=retries)

    def search(self, query: str, top_k: int) -> list[SearchHit]:
        data = self.client.post({"q": query, "num": top_k})
        organic = data.get("organic") if isinstance(data, dict) else None
        if not isinstance(organic, list):
            raise ToolCallError("the web-search API's answer has an unexpected shape (no "
                                "'organic' list); answer without search")
        hits = []
        for item in organic:
            if not isinstance(item, dict):
                continue
            title, snippet, link = (item.get(k) for k in ("title", "snippet", "link"))
            if isinstance(title, str) or isinstance(snippet, str):
                hits.append(as_hit({"title": str(title or ""), "text": str(snippet or ""),
                                    "url": link if isinstance(link, str) else ""},
                                   max_text=MAX_TEXT_CHARS))
        return hits[:top_k]


def _snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] or text[:limit]
    return cut.rstrip(",;:") + " ..."


def format_hits(query: str, hits: Sequence[SearchHit]) -> str:
    """The text the agent reads: numbered hits with title, snippet and url."""
    if not hits:
        return f'No results for "{query}". Try other keywords.'
    blocks = []
    for i, hit in enumerate(hits, 1):
        lines = [f"[{i}] {hit.title or '(untitled)'}", f"    {_snippet(hit.text)}"]
        if hit.url:
            lines.append(f"    {hit.url}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


class SearchTool(Tool):
    """The `search` tool; `SearchTool()` searches the bundled encyclopedic corpus with BM25.

    `backend` is "bm25" (optionally with `corpus=`, a jsonl path or a list of dicts), "http" (with
    `url=`, the retriever's endpoint, e.g. "http://127.0.0.1:8000/retrieve"), "serper" (a hosted
    web-search API in Serper's format; `url=` overrides its endpoint, the key is read from
    `$SERPER_API_KEY`, or from the variable `api_key_env=` names) or any `SearchBackend`.
    """

    name = "search"

    def __init__(self, backend: str | SearchBackend = "bm25", *, url: str | None = None,
                 corpus: str | Path | Sequence[Mapping[str, Any]] | None = None, top_k: int = 3,
                 timeout_s: float = 5.0, retries: int = 2,
                 api_key_env: str = "SERPER_API_KEY"):
        def bm25() -> SearchBackend:
            if url is not None:
                raise ValueError("url= is for backend='http'; the bm25 backend reads corpus=")
            if corpus is None or isinstance(corpus, (str, Path)):
                return BM25Backend.from_path(corpus or DEFAULT_CORPUS)
            return BM25Backend(load_corpus(corpus))

        set_backend(self, backend, SearchBackend, {
            "bm25": bm25,
            "http": lambda: HTTPBackend(need_url(url, "http://127.0.0.1:8000/retrieve"),
                                        timeout_s=timeout_s, retries=retries),
            "serper": lambda: SerperBackend(url or SERPER_URL, api_key_env=api_key_env,
                                            timeout_s=timeout_s, retries=retries),
        }, "search", top_k, MAX_TOP_K)

    @property
    def schema(self) -> dict[str, Any]:
        return {"type": "function", "function": {
            "name": self.name,
            "description": (
                "Search the web for facts. " if isinstance(self.backend, SerperBackend) else
                "Search an encyclopedia for facts: landmarks, famous objects, units, science, "
                "math and chart terms. ") + "Returns numbered hits with title, snippet and url.",
            "parameters": {"type": "object", "properties": {
                "query": {"type": "string",
                          "description": "A few keywords, e.g. 'Eiffel Tower height'."},
                "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K,
                          "description": f"How many hits to return (default {self.top_k})."},
            }, "required": ["query"]},
        }}

    def run(self, arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
        query = " ".join(str(arguments.get("query", "")).split())
        if not query:
            raise ToolCallError("empty query; give a few keywords, e.g. 'Eiffel Tower height'")
        if len(query) > MAX_QUERY_CHARS:
            raise ToolCallError(f"query too long ({len(query)} characters, limit "
                                f"{MAX_QUERY_CHARS}); use a few keywords")
        top_k = min(max(int(arguments.get("top_k") or self.top_k), 1), MAX_TOP_K)
        try:
            hits = self.backend.search(query, top_k)
        except ToolCallError:
            raise
        except Exception as e:  # a custom backend's bug must not end the training run
            raise ToolCallError(f"search failed ({type(e).__name__}); answer without search") from e
        return ToolResult(text=format_hits(query, hits[:top_k]))

    def __repr__(self) -> str:
        return f"SearchTool(backend={type(self.backend).__name__}, top_k={self.top_k})"


def web_search() -> SearchTool:
    """`search` over the hosted web-search API (Serper's format; key from $SERPER_API_KEY)."""
    return SearchTool("serper")
