"""OpenAIPolicy against a real local HTTP server that speaks the chat-completions protocol."""

from __future__ import annotations

import base64
import io
import json
import math
import socket
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import gymnasium as gym
import pytest
from PIL import Image

import axpo_env
from agents.openai import OpenAIPolicy
from agents.policy import Policy, SamplingParams

CALL = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "2+3"}}\n'


def _text_of(message):
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [])


def reply(content, n=1, stop_reason=None, finish="stop", logprobs=None, **choice_extra):
    """A chat-completions response body with `n` choices of `content` (suffixed by index)."""
    choices = []
    for i in range(n):
        text = content if n == 1 else f"{content}#{i}"
        c = {"index": i, "message": {"role": "assistant", "content": text},
             "finish_reason": finish, **choice_extra}
        if stop_reason is not ...:
            c["stop_reason"] = stop_reason
        if logprobs is not None:
            c["logprobs"] = {"content": logprobs}
        choices.append(c)
    return {"id": "x", "object": "chat.completion", "model": "m", "choices": choices}


def echo(body):
    """Default script: answer with the last message's text, one choice per requested n."""
    last = _text_of(body["messages"][-1])
    return 200, reply(f"<answer>{last}</answer>", n=body.get("n", 1)), 0.0


class FakeServer:
    """A threaded HTTP server; `script(body) -> (status, payload, delay_s)` decides each reply."""

    def __init__(self):
        self.requests: list[dict] = []
        self.script = echo
        self.stop = threading.Event()
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw)
                with outer._lock:
                    outer.requests.append({"path": self.path, "body": body,
                                           "auth": self.headers.get("Authorization")})
                status, payload, delay = outer.script(body)
                if delay and outer.stop.wait(delay):
                    return
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout test)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.close()


def policy(server, **kw):
    kw.setdefault("backoff_s", 0.01)
    return OpenAIPolicy(server.url, "test-model", **kw)


def conv(text, tools=None):
    return {"messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
            "tools": tools or []}


SCHEMA = {"type": "function", "return": {"type": "string"},
          "function": {"name": "calculator", "description": "Evaluate.",
                       "parameters": {"type": "object", "properties": {
                           "expression": {"type": "string"}}, "required": ["expression"]}}}


def test_is_a_policy_and_request_shape(server):
    image = Image.new("RGB", (20, 10), (255, 0, 0))
    crop = Image.new("L", (4, 4), 7)
    obs = {"tools": [SCHEMA], "messages": [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "image", "image": image},
                                     {"type": "text", "text": "What?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": CALL + "</tool_call>"}]},
        {"role": "tool", "content": [{"type": "image", "image": crop},
                                     {"type": "text", "text": "5"}]},
        {"role": "tool", "content": [{"type": "text", "text": "6"}]},
    ]}
    p = policy(server, api_key="sk-test")
    assert isinstance(p, Policy)
    sampling = SamplingParams(max_new_tokens=77, temperature=0.7, top_p=0.9, top_k=20, seed=3)
    [[a, b]] = p.generate([obs], n=2, sampling=sampling)
    assert (a.finish_reason, b.finish_reason) == ("stop", "stop") and a.text != b.text

    [req] = server.requests
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    body = req["body"]
    assert body["model"] == "test-model" and body["n"] == 2 and body["max_tokens"] == 77
    assert (body["temperature"], body["top_p"], body["top_k"], body["seed"]) == (0.7, 0.9, 20, 3)
    assert body["stop"] == ["</tool_call>", "</answer>"]
    assert body["logprobs"] is True and body["top_logprobs"] == 5
    assert body["tool_choice"] == "none"
    assert body["tools"] == [{"type": "function", "function": SCHEMA["function"]}]
    msgs = body["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[0]["content"] == "Be brief."
    img_part, text_part = msgs[1]["content"]
    assert text_part == {"type": "text", "text": "What?"}
    url = img_part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.size == (20, 10) and decoded.getpixel((0, 0)) == (255, 0, 0)
    assert msgs[2]["content"] == CALL + "</tool_call>"
    # the two tool results: one user turn, each wrapped as Qwen's template renders them
    tool_turn = msgs[3]["content"]
    assert tool_turn[0] == {"type": "text", "text": "<tool_response>\n"}
    assert tool_turn[1]["type"] == "image_url"
    assert tool_turn[2]["text"] == ("5\n</tool_response>\n<tool_response>\n6\n</tool_response>")


def test_defaults_and_options_off(server):
    p = policy(server, logprobs=False, send_tools=False, extra_body={"return_token_ids": True})
    p.generate([conv("hi", tools=[SCHEMA])], sampling=SamplingParams(stop=()))
    body = server.requests[0]["body"]
    for key in ("logprobs", "top_logprobs", "tools", "tool_choice", "top_k", "seed", "stop"):
        assert key not in body
    assert body["return_token_ids"] is True and body["messages"] == [
        {"role": "user", "content": "hi"}]


def test_image_encoded_once_per_call(server, monkeypatch):
    calls = []
    from agents import openai_messages

    real = openai_messages._encode_png
    monkeypatch.setattr(openai_messages, "_encode_png", lambda im: calls.append(1) or real(im))
    image = Image.new("RGB", (8, 8))
    obs = {"messages": [{"role": "user", "content": [{"type": "image", "image": image},
                                                     {"type": "text", "text": "q"}]}]}
    out = policy(server).generate([obs] * 8)
    assert len(out) == 8 and all(c[0].finish_reason == "stop" for c in out)
    assert len(calls) == 1
    urls = {r["body"]["messages"][0]["content"][0]["image_url"]["url"] for r in server.requests}
    assert len(urls) == 1


def test_stop_string_put_back(server):
    scripts = {
        "vllm": reply(CALL, stop_reason="</tool_call>"),                # vLLM says what matched
        "sglang": reply("<answer>4", stop_reason=..., matched_stop="</answer>"),
        "infer": reply("think <answer>4", stop_reason=...),             # no report: infer it
        "infer2": reply("<answer>no</answer> then " + CALL, stop_reason=...),
        "eos": reply("<answer>4", stop_reason=None),                    # EOS: nothing stripped
        "kept": reply(CALL + "</tool_call>", stop_reason="</tool_call>"),  # already there
        "length": reply("<answer>4", finish="length", stop_reason=...),
    }
    server.script = lambda body: (200, scripts[_text_of(body["messages"][-1])], 0.0)
    out = policy(server).generate([conv(k) for k in scripts])
    texts = {k: c[0].text for k, c in zip(scripts, out)}
    assert texts["vllm"] == CALL + "</tool_call>"
    assert texts["sglang"] == "<answer>4</answer>"
    assert texts["infer"] == "think <answer>4</answer>"
    assert texts["infer2"].endswith(CALL + "</tool_call>")
    assert texts["eos"] == "<answer>4"
    assert texts["kept"] == CALL + "</tool_call>"
    assert texts["length"] == "<answer>4" and out[-1][0].finish_reason == "length"
    assert axpo_env.parse_turn(texts["vllm"]).calls[0].arguments == {"expression": "2+3"}


def test_logprobs_token_ids_and_entropy_bound(server):
    top = [math.log(0.5), math.log(0.3), math.log(0.1)]
    content = [
        {"token": "token_id:11", "logprob": top[0],
         "top_logprobs": [{"token": f"token_id:{i}", "logprob": lp} for i, lp in enumerate(top)]},
        {"token": "token_id:12", "logprob": -0.0,
         "top_logprobs": [{"token": "token_id:12", "logprob": 0.0}]},
    ]
    server.script = lambda body: (200, reply("<answer>1</answer>", logprobs=content), 0.0)
    [[c]] = policy(server).generate([conv("x")])
    assert c.token_ids == [11, 12]
    assert c.logprobs == pytest.approx([math.log(0.5), 0.0])
    listed = -sum(math.exp(lp) * lp for lp in top)
    assert c.entropies[0] == pytest.approx(listed - 0.1 * math.log(0.1))  # unlisted mass 0.1
    assert c.entropies[1] == pytest.approx(0.0)
    true_h = listed - 0.1 * math.log(0.1 / 20)  # the rest spread over 20 tokens
    assert c.entropies[0] <= true_h

    # plain token strings: logprobs, no ids; vLLM's return_token_ids wins when present
    plain = [{"token": "a", "logprob": -1.0, "top_logprobs": []}]
    server.script = lambda body: (200, reply("<answer>1</answer>", logprobs=plain), 0.0)
    [[c]] = policy(server).generate([conv("x")])
    assert (c.token_ids, c.logprobs, c.entropies) == ([], [-1.0], [])
    payload = reply("<answer>1</answer>", logprobs=plain, token_ids=[99])
    payload["prompt_token_ids"] = [1, 2, 3]
    server.script = lambda body: (200, payload, 0.0)
    [[c]] = policy(server).generate([conv("x")])
    assert (c.token_ids, c.prompt_token_ids) == ([99], [1, 2, 3])


def test_n_choices_and_fallback_when_server_ignores_n(server):
    [[*cs]] = policy(server).generate([conv("q")], n=3)
    assert [c.text for c in cs] == [f"<answer>q</answer>#{i}" for i in range(3)]
    assert len(server.requests) == 1

    server.requests.clear()
    server.script = lambda body: (200, reply(f"<answer>{body.get('seed')}</answer>"), 0.0)
    [[*cs]] = policy(server).generate([conv("q")], n=3, sampling=SamplingParams(seed=10))
    assert [c.text for c in cs] == ["<answer>10</answer>", "<answer>11</answer>",
                                    "<answer>12</answer>"]
    assert [r["body"]["n"] for r in server.requests] == [3, 1, 1]


def test_input_order_with_concurrency(server):
    def script(body):  # the first conversation is the slowest
        i = int(_text_of(body["messages"][-1]))
        return 200, reply(f"<answer>{i}</answer>"), 0.05 * (6 - i)

    server.script = script
    start = time.monotonic()
    out = policy(server, max_workers=8).generate([conv(str(i)) for i in range(6)])
    elapsed = time.monotonic() - start
    assert [c[0].text for c in out] == [f"<answer>{i}</answer>" for i in range(6)]
    assert elapsed < 0.05 * sum(range(1, 7)) * 0.8  # they overlapped


def test_server_error_then_success_is_retried(server):
    state = {"calls": 0}

    def script(body):
        state["calls"] += 1
        if state["calls"] == 1:
            return 500, {"error": {"message": "engine busy"}}, 0.0
        return echo(body)

    server.script = script
    [[c]] = policy(server, retries=2).generate([conv("ok")])
    assert c.finish_reason == "stop" and c.text == "<answer>ok</answer>"
    assert state["calls"] == 2

    server.script = lambda body: (503, {"message": "overloaded"}, 0.0)
    [[c]] = policy(server, retries=1).generate([conv("ok")])
    assert c.finish_reason == "error" and "503" in c.error and "overloaded" in c.error
    assert "2 attempts" in c.error


def test_bad_request_reports_server_message_without_retry(server):
    msg = "This model's maximum context length is 4096 tokens."
    server.script = lambda body: (400, {"object": "error", "message": msg, "code": 400}, 0.0)
    [[a, b]] = policy(server).generate([conv("long")], n=2)
    for c in (a, b):
        assert c.finish_reason == "error" and c.text == "" and msg in c.error and "400" in c.error
    assert len(server.requests) == 1


def test_timeout_is_an_error_in_bounded_time(server):
    server.script = lambda body: (200, reply("late"), 5.0)
    start = time.monotonic()
    [[c]] = policy(server, timeout_s=0.3, retries=2).generate([conv("slow")])
    assert time.monotonic() - start < 2.0
    assert c.finish_reason == "error" and "timeout_s=0.3" in c.error


def test_malformed_and_incomplete_responses(server):
    scripts = {"junk": b"{not json", "nochoices": {"object": "chat.completion"},
               "nomessage": {"choices": [{"index": 0, "finish_reason": "stop"}]},
               "errorbody": {"error": {"message": "model crashed"}},
               "badlogprobs": reply("<answer>1</answer>", logprobs=[{"nope": 1}])}
    server.script = lambda body: (200, scripts[_text_of(body["messages"][-1])], 0.0)
    out = policy(server).generate([conv(k) for k in scripts])
    junk, nochoices, nomessage, errorbody, badlogprobs = (c[0] for c in out)
    assert junk.finish_reason == "error" and "not valid JSON" in junk.error
    assert nochoices.finish_reason == "error" and "no choices" in nochoices.error
    assert nomessage.finish_reason == "error" and "no message" in nomessage.error
    assert "model crashed" in errorbody.error
    assert badlogprobs.text == "<answer>1</answer>" and badlogprobs.logprobs == []


def test_connection_refused_is_an_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = OpenAIPolicy(f"http://127.0.0.1:{port}/v1", "m", retries=1, backoff_s=0.01)
    [[c]] = p.generate([conv("hi")])
    assert c.finish_reason == "error" and "cannot connect" in c.error


def test_one_bad_conversation_does_not_lose_the_batch(server):
    def script(body):
        if _text_of(body["messages"][-1]) == "reject":
            return 400, {"error": {"message": "bad"}}, 0.0
        return echo(body)

    server.script = script
    bad_image = {"messages": [{"role": "user", "content": [{"type": "image", "image": 42}]}]}
    bad_role = [{"role": "wizard", "content": "x"}]
    out = policy(server).generate(
        [conv("a"), bad_image, conv("reject"), None, bad_role, conv("b")], n=2)
    assert [len(c) for c in out] == [2] * 6
    assert out[0][0].text == "<answer>a</answer>#0" and out[5][1].text == "<answer>b</answer>#1"
    for i, why in [(1, "unsupported image"), (2, "bad"), (3, "cannot convert"),
                   (4, "unknown role")]:
        assert all(c.finish_reason == "error" and why in c.error for c in out[i]), out[i]
    assert len(server.requests) == 3  # bad inputs never reached the server


def test_native_mode_round_trip(server):
    obs = {"tools": [SCHEMA], "messages": [
        {"role": "user", "content": "2+3?"},
        {"role": "assistant", "content": [{"type": "text", "text": "<think>add</think>" + CALL
                                           + "</tool_call>"}]},
        {"role": "tool", "content": [{"type": "text", "text": "5"}]},
    ]}
    call = {"id": "c9", "type": "function",
            "function": {"name": "calculator", "arguments": '{"expression": "5*2"}'}}
    payload = reply(None, finish="tool_calls", stop_reason=None)
    payload["choices"][0]["message"].update(tool_calls=[call], reasoning_content="double it")
    server.script = lambda body: (200, payload, 0.0)
    [[c]] = policy(server, tools_mode="native").generate([obs])

    body = server.requests[0]["body"]
    assert "tool_choice" not in body and body["tools"][0]["function"]["name"] == "calculator"
    user, assistant, tool = body["messages"]
    assert assistant["content"] == "<think>add</think>"
    [sent] = assistant["tool_calls"]
    assert sent["function"]["name"] == "calculator"
    assert json.loads(sent["function"]["arguments"]) == {"expression": "2+3"}
    assert tool == {"role": "tool", "tool_call_id": sent["id"], "content": "5"}

    assert c.finish_reason == "stop" and c.text.startswith("<think>\ndouble it\n</think>")
    turn = axpo_env.parse_turn(c.text)
    assert turn.calls[0].name == "calculator" and turn.calls[0].arguments == {"expression": "5*2"}


def test_native_mode_speaks_the_envs_qwen3_coder_format(server):
    """A qwen3_coder env's XML call goes to the server as typed tool_calls (the crop's bbox a
    list, by the tool's schema) and the server's tool_calls come back as XML the env runs."""
    env = gym.make("AXPO-ZoomBoxes-v0", tool_call_format="qwen3_coder")
    obs, _ = env.reset(seed=0, options={"index": 0})
    first = axpo_env.render_tool_call("crop", {"bbox": [0, 0, 0.5, 0.5]},
                                      tool_call_format="qwen3_coder")
    obs, *_ = env.step("<think>look</think>\n" + first)
    call = {"id": "c1", "type": "function",
            "function": {"name": "crop", "arguments": '{"bbox": [0.5, 0.5, 1, 1]}'}}
    payload = reply(None, finish="tool_calls", stop_reason=None)
    payload["choices"][0]["message"]["tool_calls"] = [call]
    server.script = lambda body: (200, payload, 0.0)
    [[c]] = policy(server, tools_mode="native", tool_call_format="qwen3_coder").generate([obs])

    assistant = next(m for m in server.requests[0]["body"]["messages"]
                     if m["role"] == "assistant")
    assert assistant["content"] == "<think>look</think>"
    [sent] = assistant["tool_calls"]
    assert json.loads(sent["function"]["arguments"]) == {"bbox": [0, 0, 0.5, 0.5]}
    assert "<function=crop>" in c.text and '"name"' not in c.text
    obs, _, _, _, info = env.step(c.text)
    env.close()
    assert info["tool_calls"] == 2 and info["tool_errors"] == 0


def test_a_call_qwen3_coder_cannot_write_comes_back_as_json_the_env_refuses():
    from agents.openai_messages import render_calls

    bad = [{"function": {"name": "crop", "arguments": "not json"}}]
    text = render_calls(bad, "qwen3_coder")
    assert text.startswith('<tool_call>\n{"name": "crop"')
    error = axpo_env.parse_turn(text, "qwen3_coder").calls[0].error
    assert "JSON calls are not read here" in error


def test_end_to_end_mathvista_episode(server):
    def script(body):
        last = _text_of(body["messages"][-1])
        if "<tool_response>" in last:  # second turn: answer, stop string stripped
            return 200, reply("The result is in. <answer>DELTA", stop_reason="</answer>"), 0.0
        return 200, reply("I will compute.\n" + CALL, stop_reason="</tool_call>"), 0.0

    server.script = script
    env = gym.make("AXPO-MathVista-v0", tools=["calculator"])
    p = policy(server)
    obs, info = env.reset(seed=0, options={"task_id": "12"})
    done, steps = False, 0
    while not done:
        [[c]] = p.generate([obs], sampling=SamplingParams(temperature=0.0))
        assert c.finish_reason == "stop", c.error
        obs, reward, terminated, truncated, info = env.step(c.text)
        done, steps = terminated or truncated, steps + 1
    env.close()
    assert steps == 2 and terminated and reward == 1.0 and info["correct"]
    assert info["tool_calls"] == 1 and info["tool_errors"] == 0
    first, second = (r["body"] for r in server.requests)
    assert first["tools"][0]["function"]["name"] == "calculator"
    assert first["messages"][1]["content"][0]["type"] == "image_url"
    tool_turn = _text_of(second["messages"][-1])
    assert tool_turn.startswith("<tool_response>\n") and "5" in tool_turn
    assert second["messages"][-2] == {"role": "assistant",
                                      "content": "I will compute.\n" + CALL + "</tool_call>"}


def test_a_format_error_user_turn_after_thinking_warns_once(server):
    """A server's template drops earlier thinking once a real user turn follows (the env's
    format-error message); HFPolicy does not, so evaluation through a server warns."""
    thinking = {"role": "assistant", "content": [{"type": "text", "text": "Hmm.\n</think>\n\nx"}]}
    error = {"role": "user", "content": [{"type": "text", "text": "No tool call found."}]}
    tool = {"role": "tool", "content": [{"type": "text", "text": "5"}]}
    first = conv("What?")["messages"]
    p = policy(server)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tool replies only: nothing to warn about
        p.generate([{"messages": [*first, thinking, tool]}])
    with pytest.warns(RuntimeWarning, match="without their thinking"):
        p.generate([{"messages": [*first, thinking, error]}])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per policy
        p.generate([{"messages": [*first, thinking, error]}])
