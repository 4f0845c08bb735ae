r"""OpenAIPolicy: sample agent turns from any OpenAI-compatible chat-completions server.

The envs must work with a model served elsewhere (vLLM, SGLang, llama.cpp server), so this needs
only `requests`: no torch, no tokenizer.

Message mapping, ``tools_mode="text"`` (default): the model writes tool calls and reads their
results as text, exactly as the env parses them, so no server-side tool parser is involved.
Text parts -> ``{"type": "text"}``; PIL images -> ``image_url`` parts with PNG data URLs (each
image object encoded once per `generate` call); a single text part is sent as a plain string.
``tool`` messages -> ``user`` messages wrapped in ``<tool_response>\n...\n</tool_response>``,
consecutive ones merged, as Qwen's template renders them (role ``tool`` would need a
``tool_call_id`` on many servers). Tool schemas go in ``tools`` with ``tool_choice: "none"``:
the server's chat template renders them, but no parser rewrites the output.

``tools_mode="native"``: ``tools`` go to the server's tool parser (vLLM:
``--enable-auto-tool-choice --tool-call-parser hermes``, or ``qwen3_coder`` with
``tool_call_format="qwen3_coder"``: the env's format, in which calls are read from the
assistant's text and written back); an assistant's ``<tool_call>`` text
becomes ``tool_calls`` with ids and the next tool messages role ``tool`` with those ids (one
with no call left to answer falls back to the text mapping); returned ``tool_calls`` are
rendered back into ``<tool_call>`` text. Images in tool results stay in the ``tool`` message,
which vLLM accepts; use text mode for a server that does not.

Servers strip the stop string; it is put back (vLLM's ``stop_reason``, SGLang's
``matched_stop``, else inferred from an unclosed tag) so the env sees complete tool calls.

The server is not trusted (``axpo_env.tools._http.fetch``): each attempt ends by ``timeout_s``
of wall-clock time, however the server drip-feeds it; answers over ``max_response_bytes`` are
refused; only redirects to the same origin are followed (at most 3), so neither the prompt nor
the API key goes anywhere else; completion text is made valid UTF-8.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from agents.openai_messages import (
    clean_tool,
    collect_images,
    drops_earlier_thinking,
    render_calls,
    restore_stop,
    safe_encode,
    to_openai,
)
from agents.policy import Completion, Conversation, SamplingParams, split_conversation
from axpo_env.protocol import check_tool_call_format
from axpo_env.text import valid_text
from axpo_env.tools._http import HTTPProblem, fetch, new_session, parse_json

_RETRY_STATUS = {408, 429}  # and every 5xx
#: Room for n completions of long turns with top-5 logprobs (about 400 bytes a token).
MAX_RESPONSE_BYTES = 64 << 20


class _RequestFailed(Exception):
    """A request that failed for good; its message becomes `Completion.error`."""


class OpenAIPolicy:
    """A `Policy` backed by an OpenAI-compatible ``{base_url}/chat/completions`` endpoint.

    ``timeout_s`` bounds each attempt, all of it: connecting, the model's generation and reading
    the answer. ``retries``: extra attempts, with exponential backoff from ``backoff_s``, after
    a 5xx, 408, 429 or a failed connection; not after a timeout (the model was generating and
    would likely time out again) nor other 4xx. ``max_response_bytes``: larger answers are
    refused (an error completion). ``extra_body`` is merged into every request last, for
    server extensions: vLLM's ``{"return_token_ids": True}`` or ``{"return_tokens_as_token_ids":
    True}`` give token ids. ``send_tools=False`` when the env writes the tools into the prompt.
    ``tool_call_format``: the env's (``ToolUseEnv.tool_call_format``); native tool calls are
    converted from and to it.

    Approximations: ``entropies`` are a lower bound on the true entropy from the
    ``top_logprobs`` alternatives (their terms, plus -r log r for the unlisted mass r), empty
    when there are none; ``token_ids`` are empty unless the server returns them. Servers may
    give logprobs of the raw distribution rather than the one after temperature/top-p (vLLM:
    ``--logprobs-mode processed_logprobs``).
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None,
                 timeout_s: float = 60.0, retries: int = 2, max_workers: int = 8,
                 tools_mode: Literal["text", "native"] = "text",
                 extra_body: Mapping[str, Any] | None = None, logprobs: bool = True,
                 top_logprobs: int = 5, send_tools: bool = True, backoff_s: float = 0.5,
                 max_response_bytes: int = MAX_RESPONSE_BYTES, tool_call_format: str = "hermes"):
        if tools_mode not in ("text", "native"):
            raise ValueError(f"tools_mode must be 'text' or 'native', got {tools_mode!r}")
        if max_workers < 1 or retries < 0:
            raise ValueError("max_workers must be >= 1 and retries >= 0")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.retries = retries
        self.max_workers = max_workers
        self.tools_mode = tools_mode
        self.tool_call_format = check_tool_call_format(tool_call_format)
        self.extra_body = dict(extra_body or {})
        self.logprobs = logprobs
        self.top_logprobs = top_logprobs
        self.send_tools = send_tools
        self.backoff_s = backoff_s
        self.max_response_bytes = max_response_bytes
        self._warned_thinking = False  # warned once: see drops_earlier_thinking
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session = new_session(pool_size=max_workers)

    def generate(
        self,
        conversations: Sequence[Conversation],
        n: int = 1,
        sampling: SamplingParams | None = None,
    ) -> list[list[Completion]]:
        """`n` completions per conversation, in input order; failures are error completions."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        sampling = sampling or SamplingParams()
        convs = list(conversations)
        if not convs:
            return []
        self._warn_if_thinking_is_dropped(convs)
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(convs))) as pool:
            images = collect_images(convs)
            urls = dict(zip(images, pool.map(safe_encode, images.values())))
            futures = [pool.submit(self._generate_one, c, n, sampling, urls) for c in convs]
            return [f.result() for f in futures]

    def close(self) -> None:
        self._session.close()

    def _warn_if_thinking_is_dropped(self, convs: list[Conversation]) -> None:
        if self._warned_thinking:
            return
        for conv in convs:
            try:
                dropped = drops_earlier_thinking(split_conversation(conv)[0])
            except Exception:
                continue  # reported when that conversation is converted
            if dropped:
                self._warned_thinking = True
                warnings.warn(
                    "a user turn (the env's format-error message) follows an assistant turn "
                    "with thinking: a server's Qwen3-style chat template re-renders the earlier "
                    "turns without their thinking, so later turns of this episode see another "
                    "context than HFPolicy (which keeps the ids the model saw) trains on. See "
                    "the README, 'Agents'.", RuntimeWarning, stacklevel=3)
                return

    # ----------------------------------------------------------------------------------------

    def _generate_one(
        self, conv: Conversation, n: int, sampling: SamplingParams, urls: dict[int, Any]
    ) -> list[Completion]:
        # Never raises: whatever goes wrong becomes this conversation's error completions.
        try:
            body = self._body(conv, n, sampling, urls)
        except Exception as e:
            return _errors(n, f"cannot convert the conversation: {type(e).__name__}: {e}")
        out: list[Completion] = []
        try:
            out += self._request(body, sampling)
            while len(out) < n:  # the server ignored `n`: ask one by one, varying the seed
                one = {**body, "n": 1}
                if sampling.seed is not None:
                    one["seed"] = sampling.seed + len(out)
                out += self._request(one, sampling)
        except _RequestFailed as e:
            out += _errors(n - len(out), str(e))
        except Exception as e:  # a bug here must not lose the batch
            out += _errors(n - len(out), f"unexpected {type(e).__name__}: {e}")
        return out[:n]

    def _body(
        self, conv: Conversation, n: int, sampling: SamplingParams, urls: dict[int, Any]
    ) -> dict[str, Any]:
        messages, tools = split_conversation(conv)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": to_openai(messages, self.tools_mode, urls, self.tool_call_format, tools),
            "n": n, "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature, "top_p": sampling.top_p,
        }
        optional = {  # top_k is an extension that vLLM, SGLang and llama.cpp accept
            "top_k": sampling.top_k if sampling.top_k > 0 else None,
            "stop": list(sampling.stop) or None, "seed": sampling.seed,
            "logprobs": self.logprobs or None,
            "top_logprobs": self.top_logprobs if self.logprobs and self.top_logprobs else None,
        }
        body.update((k, v) for k, v in optional.items() if v is not None)
        if tools and self.send_tools:
            body["tools"] = [clean_tool(t) for t in tools]
            if self.tools_mode == "text":
                body["tool_choice"] = "none"
        body.update(self.extra_body)
        return body

    def _request(self, body: dict[str, Any], sampling: SamplingParams) -> list[Completion]:
        data = self._post(body)
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            if data.get("error"):
                raise _RequestFailed(f"the server returned an error: {_message_of(data)}")
            raise _RequestFailed(f"the server's response has no choices: {_clip(data)}")
        prompt_ids = _int_list(data.get("prompt_token_ids"))
        choices = sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
        return [self._completion(c, sampling, prompt_ids) for c in choices]

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/chat/completions"
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                r = fetch(self._session, "POST", url, time.monotonic() + self.timeout_s,
                          self.max_response_bytes, headers=self._headers, json=body)
            except HTTPProblem as e:
                if e.kind == "connect":
                    last = f"cannot connect to {url}: {_clip(e)}"
                    continue
                raise _RequestFailed(_problem(e, url, self.timeout_s,
                                              self.max_response_bytes)) from None
            if r.status >= 500 or r.status in _RETRY_STATUS:
                last = f"server error {r.status} from {url}: {_message_of(r.body)}"
                continue
            if r.status >= 400:
                raise _RequestFailed(f"the server rejected the request ({r.status}): "
                                     f"{_message_of(r.body)}")
            try:
                data = parse_json(r.body)
            except ValueError:
                raise _RequestFailed(f"the server's response is not valid JSON: "
                                     f"{_text(r.body)[:200]!r}") from None
            if not isinstance(data, dict):
                raise _RequestFailed(f"the server's response is not a JSON object: {_clip(data)}")
            return data
        raise _RequestFailed(f"{last} (gave up after {self.retries + 1} attempts)")

    def _completion(
        self, choice: Any, sampling: SamplingParams, prompt_ids: list[int] | None
    ) -> Completion:
        if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
            return Completion("", finish_reason="error",
                              error=f"the server's choice has no message: {_clip(choice)}")
        message = choice["message"]
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        text = message.get("content") or ""
        if not isinstance(text, str):
            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        calls = message.get("tool_calls") or []
        if calls:
            rendered = render_calls(calls, self.tool_call_format)
            text = (text + "\n" if text.strip() else "") + rendered
        elif finish == "stop":
            text = restore_stop(text, choice, sampling.stop)
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if isinstance(reasoning, str) and reasoning:  # a server-side reasoning parser split it
            text = f"<think>\n{reasoning}\n</think>\n\n{text}"
        token_ids, logprobs, entropies = _token_stats(choice.get("logprobs"))
        token_ids = _int_list(choice.get("token_ids")) or token_ids
        if logprobs and token_ids and len(logprobs) != len(token_ids):
            token_ids = []  # cannot pair them up: better none than misaligned
        return Completion(valid_text(text), token_ids=token_ids, logprobs=logprobs,
                          entropies=entropies, prompt_token_ids=prompt_ids, finish_reason=finish)


# --------------------------------------------------------------------------------------------
# Requests: env messages -> OpenAI messages


def _token_stats(logprobs: Any) -> tuple[list[int], list[float], list[float]]:
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list):
        return [], [], []
    lps, ids, ents = [], [], []
    try:
        for tok in content:
            lps.append(float(tok["logprob"]))
            token = tok.get("token", "")
            if isinstance(token, str) and token.startswith("token_id:"):
                ids.append(int(token[len("token_id:"):]))
            top = [float(t["logprob"]) for t in tok.get("top_logprobs") or ()]
            if top:
                ents.append(_entropy_lower_bound(top))
    except (KeyError, TypeError, ValueError, AttributeError):
        return [], [], []  # malformed logprobs: the text is still good
    return (ids if len(ids) == len(lps) else [], lps,
            ents if len(ents) == len(lps) else [])


def _entropy_lower_bound(top: list[float]) -> float:
    """-sum p log p over the listed tokens, plus -r log r for the unlisted mass r (each unlisted
    token has p <= r). Valid whichever tokens are listed (vLLM may list the sampled one)."""
    ps = [math.exp(lp) for lp in top]
    h = -sum(p * lp for p, lp in zip(ps, top) if p > 0)
    rest = 1.0 - sum(ps)
    return h - rest * math.log(rest) if rest > 1e-12 else h


# --------------------------------------------------------------------------------------------


def _errors(k: int, why: str) -> list[Completion]:
    return [Completion("", finish_reason="error", error=why) for _ in range(k)]


def _int_list(x: Any) -> list[int] | None:
    return list(x) if isinstance(x, list) and all(isinstance(i, int) for i in x) else None


def _problem(e: HTTPProblem, url: str, timeout_s: float, max_bytes: int) -> str:
    if e.kind == "timeout":
        return (f"no complete response from {url} within timeout_s={timeout_s}s; raise "
                "timeout_s for long turns")
    if e.kind == "too_big":
        return (f"the response from {url} is over {max_bytes / (1 << 20):g} MB; raise "
                "max_response_bytes if the server is trusted")
    if e.kind == "redirect":
        return f"{url} {e}; use the final address as base_url"
    return f"request to {url} failed: {_clip(e)}"


def _text(body: bytes) -> str:
    return body.decode("utf-8", "replace")


def _message_of(r: bytes | dict[str, Any]) -> str:
    """The server's own words: OpenAI's {"error": {"message"}}, vLLM's {"message"}, or text."""
    try:
        data = parse_json(r) if isinstance(r, bytes) else r
    except ValueError:
        return _clip(_text(r)) or "(empty body)"
    if isinstance(data, dict):
        err = data.get("error")
        for v in (err.get("message") if isinstance(err, dict) else err,
                  data.get("message"), data.get("detail")):
            if v:
                return _clip(v)
    return _clip(data)


def _clip(x: Any, limit: int = 300) -> str:
    s = x if isinstance(x, str) else str(x)
    return s if len(s) <= limit else s[:limit] + "..."
