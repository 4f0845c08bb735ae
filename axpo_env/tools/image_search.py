"""image_search: find images like one of the episode's (the task image or a crop of it) and read
their captions, to identify what it shows.

Why: the AXPO paper evaluates generalization with an image-search tool the model never saw in
training. Two backends. "embedded" searches a small bundled corpus (national flags,
`_image_corpus.py`) by colour layout, offline and deterministic, so envs and tests run anywhere.
"http" calls a retrieval service:

    POST {url}  {"image": "<base64 PNG>", "text": "<words or null>", "top_k": k}
    ->          {"results": [{"caption": "...", "image": "<base64 or data URL>", "url": "...",
                              "score": 0.9}, ...]}

`caption` (or `title`) is required per result; `image`, `url` and `score` are optional. Result
images are decoded with a pixel bound and shrunk to thumbnails; one that does not decode is
dropped with its caption kept; captions and urls are cut at entry and made valid UTF-8. Server
trouble (a slow or huge answer, a redirect to another server, which would re-send the query
image there) becomes a short error for the agent (`_http`).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from axpo_env.errors import DatasetError, ToolCallError
from axpo_env.text import valid_text
from axpo_env.tools._backend import need_url, set_backend
from axpo_env.tools._http import JSONClient
from axpo_env.tools.base import Tool, ToolContext, ToolResult

MAX_TOP_K = 5
THUMBNAIL = 256  # result images are shown at most this many pixels a side
QUERY_SIDE = 1024  # the query image is sent at most this many pixels a side
MAX_RESULT_PIXELS = 4096 * 4096
MAX_CAPTION_CHARS = 1000
MAX_URL_CHARS = 500


@dataclass(frozen=True)
class ImageHit:
    """One match: what it is (caption), where it is from, and its image when there is one."""

    caption: str
    image: Image.Image | None = None
    url: str = ""
    score: float | None = None


class ImageSearchBackend:
    """Where matches come from. `search` raises `ToolCallError` for problems the agent sees."""

    nondeterministic: bool = False

    def search(self, image: Image.Image, text: str | None, top_k: int) -> list[ImageHit]:
        raise NotImplementedError


def decode_image(data: str) -> Image.Image:
    """A base64 (or data URL) image as RGB, refusing huge or broken ones with ValueError."""
    raw = data.split(",", 1)[1] if data.startswith("data:") else data
    try:
        image = Image.open(io.BytesIO(base64.b64decode(raw, validate=True)))
        if image.width * image.height > MAX_RESULT_PIXELS:
            raise ValueError(f"image of {image.width}x{image.height} pixels is too large")
        image.load()
        return image.convert("RGB")
    except ValueError as e:
        if isinstance(e, binascii.Error):
            raise ValueError("not valid base64") from None
        raise
    except Exception as e:  # hostile bytes: PIL raises many kinds (OSError, SyntaxError, ...)
        raise ValueError(f"not a readable image ({type(e).__name__})") from None


def _features(image: Image.Image) -> np.ndarray:
    """Colour layout (an 8x8 thumbnail) and colour distribution (a 4x4x4 histogram), each
    unit-length: similar flags, photos of them and crops of them score high together."""
    rgb = image.convert("RGB")
    thumb = np.asarray(rgb.resize((8, 8), Image.BOX), dtype=np.float64).ravel() / 255.0
    thumb -= thumb.mean()
    small = np.asarray(rgb.resize((32, 32), Image.BOX)).reshape(-1, 3) // 64
    hist = np.bincount(small[:, 0] * 16 + small[:, 1] * 4 + small[:, 2], minlength=64)
    hist = np.sqrt(hist / hist.sum())
    parts = [v / (np.linalg.norm(v) or 1.0) for v in (thumb, hist)]
    return np.concatenate(parts) / np.sqrt(2)


class EmbeddedBackend(ImageSearchBackend):
    """Nearest images of a bundled corpus by `_features`; words of `text` found in a caption
    add to its score. The corpus loads on first use and is shared per file."""

    _shared: dict[str, EmbeddedBackend] = {}
    _lock = threading.Lock()

    def __init__(self, records: Sequence[dict[str, Any]]):
        self.hits, feats = [], []
        for i, r in enumerate(records):
            if not isinstance(r, dict) or not isinstance(r.get("caption"), str):
                raise DatasetError(f"image corpus record {i}: needs a 'caption' string")
            try:
                image = decode_image(r.get("image") or "")
            except ValueError as e:
                raise DatasetError(f"image corpus record {i}: {e}") from None
            self.hits.append(ImageHit(valid_text(r["caption"]), image,
                                      valid_text(str(r.get("url") or ""))))
            feats.append(_features(image))
        if not self.hits:
            raise DatasetError("the image corpus is empty")
        self.features = np.stack(feats)

    @classmethod
    def from_path(cls, path: str | Path | None = None) -> EmbeddedBackend:
        from axpo_env.tools._image_corpus import CORPUS_PATH

        path = Path(path or CORPUS_PATH)
        with cls._lock:
            if str(path) not in cls._shared:
                if not path.is_file():
                    raise DatasetError(f"image corpus {path} not found; pass a jsonl of "
                                       '{"caption", "image": base64, "url"} objects')
                lines = path.read_text(encoding="utf-8").splitlines()
                try:
                    records = [json.loads(line) for line in lines if line.strip()]
                except json.JSONDecodeError as e:
                    raise DatasetError(f"image corpus {path}: not JSON lines ({e.msg})") from None
                cls._shared[str(path)] = cls(records)
            return cls._shared[str(path)]

    def search(self, image: Image.Image, text: str | None, top_k: int) -> list[ImageHit]:
        scores = self.features @ _features(image)
        words = {w for w in (text or "").lower().split() if len(w) > 2}
        if words:
            scores = scores + 0.2 * np.array([
                len(words & set(h.caption.lower().replace(":", " ").split())) / len(words)
                for h in self.hits])
        order = np.argsort(-scores, kind="stable")[:top_k]
        return [ImageHit(self.hits[i].caption, self.hits[i].image, self.hits[i].url,
                         round(float(scores[i]), 3)) for i in order]


class HTTPImageBackend(ImageSearchBackend):
    """A retrieval service over HTTP (the protocol in the module docstring)."""

    nondeterministic = True

    def __init__(self, url: str, timeout_s: float = 10.0, retries: int = 2):
        self.client = JSONClient(url, "the image search server", timeout_s=timeout_s,
                                 retries=retries, advice="answer without image search")

    def search(self, image: Image.Image, text: str | None, top_k: int) -> list[ImageHit]:
        query = image.convert("RGB")
        query.thumbnail((QUERY_SIDE, QUERY_SIDE))
        buf = io.BytesIO()
        query.save(buf, format="PNG")
        data = self.client.post({"image": base64.b64encode(buf.getvalue()).decode("ascii"),
                                 "text": text, "top_k": top_k})
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            raise ToolCallError("the image search server's answer has an unexpected shape (no "
                                "'results' list); answer without image search")
        hits = []
        for r in results[:top_k]:
            caption = r.get("caption", r.get("title")) if isinstance(r, dict) else None
            if not isinstance(caption, str):
                continue
            picture = None
            if isinstance(r.get("image"), str):
                try:
                    picture = decode_image(r["image"])
                except ValueError:
                    picture = None  # the caption still helps
            score = r.get("score")
            hits.append(ImageHit(valid_text(caption[:MAX_CAPTION_CHARS].strip()), picture,
                                 valid_text(str(r.get("url") or "")[:MAX_URL_CHARS]),
                                 float(score) if isinstance(score, (int, float)) else None))
        return hits


class ImageSearchTool(Tool):
    """The `image_search` tool. `ImageSearchTool()` searches the bundled corpus offline;
    `ImageSearchTool("http", url=...)` a retrieval service; or pass any `ImageSearchBackend`."""

    name = "image_search"

    def __init__(self, backend: str | ImageSearchBackend = "embedded", *,
                 url: str | None = None, corpus: str | Path | None = None, top_k: int = 3,
                 timeout_s: float = 10.0, retries: int = 2):
        set_backend(self, backend, ImageSearchBackend, {
            "embedded": lambda: EmbeddedBackend.from_path(corpus),
            "http": lambda: HTTPImageBackend(need_url(url, "http://127.0.0.1:8001/search"),
                                             timeout_s=timeout_s, retries=retries),
        }, "image search", top_k, MAX_TOP_K)

    @property
    def schema(self) -> dict[str, Any]:
        return {"type": "function", "function": {
            "name": self.name,
            "description": "Search for images similar to one of this episode's images and read "
                           "their captions, to identify what it shows (a flag, a landmark, a "
                           "logo, a product). Returns numbered matches with caption and source, "
                           "and their images.",
            "parameters": {"type": "object", "properties": {
                "image_index": {"type": "integer", "description":
                                "Which image to search with: 0 is the task image; 1, 2, ... are "
                                "images returned by earlier tool calls (e.g. a crop of the "
                                "object)."},
                "query": {"type": "string", "description":
                          "Optional words describing what you look for, e.g. 'flag'."},
                "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K,
                          "description": f"How many matches to return (default {self.top_k})."},
            }, "required": []},
        }}

    def run(self, arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
        index = arguments.get("image_index", 0)
        n = len(ctx.images)
        if n == 0:
            raise ToolCallError("There is no image to search with in this episode.")
        if isinstance(index, float) and index.is_integer():
            index = int(index)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
            raise ToolCallError(f"image_index={index!r} does not exist: use 0 to {n - 1} "
                                "(0 is the task image).")
        query = " ".join(str(arguments.get("query") or "").split())[:200] or None
        top_k = min(max(int(arguments.get("top_k") or self.top_k), 1), MAX_TOP_K)
        try:
            hits = self.backend.search(ctx.images[index], query, top_k)[:top_k]
        except ToolCallError:
            raise
        except Exception as e:  # a custom backend's bug must not end the training run
            raise ToolCallError(f"image search failed ({type(e).__name__}); answer without "
                                "image search") from e
        if not hits:
            return ToolResult(text="No similar images found.")
        lines, images = [], []
        for i, hit in enumerate(hits, 1):
            score = f" (similarity {hit.score:.2f})" if hit.score is not None else ""
            lines.append(f"[{i}] {' '.join(hit.caption.split())[:300]}{score}")
            if hit.url:
                lines.append(f"    {hit.url}")
            if hit.image is not None:
                thumb = hit.image.copy()
                thumb.thumbnail((THUMBNAIL, THUMBNAIL))
                images.append(thumb)
        return ToolResult(text="\n".join(lines), images=tuple(images))

    def __repr__(self) -> str:
        return f"ImageSearchTool(backend={type(self.backend).__name__}, top_k={self.top_k})"
