"""The AXPO paper authors' tool set (`tools=["authors"]`): `image_zoom_in` (0-1000 bbox_2d,
label, img_idx), `python` and `tavily-search` (Tavily's API, or the local corpus offline).

Coordinates worked by hand, an earlier crop chosen by img_idx, bad calls as error text,
snapshot/restore with crops, the offline and the hosted search backend (a local fake Tavily
server), envs, check_env, the rollout path, the viewer and expert demos with the preset."""

from __future__ import annotations

import json
import pickle
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import axpo_env  # noqa: F401
from axpo_env import ToolNotFoundError, render_answer, render_tool_call
from axpo_env.errors import ToolCallError
from axpo_env.tools.base import ToolContext, get_tool, resolve_tools
from axpo_env.tools.search import BM25Backend
from axpo_env.tools.tavily import MAX_RESULTS, TavilyBackend, TavilySearchTool
from axpo_env.tools.zoom_in import AxpoZoom, to_bbox_2d


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key, no proxy: every test here is offline unless it serves its own Tavily."""
    monkeypatch.delenv("TAVILY_API_KEY", raising=False)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def zoom(**arguments: Any) -> str:
    return render_tool_call("image_zoom_in", arguments)


def last(obs: dict) -> dict:
    return obs["messages"][-1]


def text_of(message: dict) -> str:
    return "".join(p["text"] for p in message["content"] if p["type"] == "text")


def images_of(message: dict) -> list[Image.Image]:
    return [p["image"] for p in message["content"] if p["type"] == "image"]


def gradient(width: int, height: int) -> Image.Image:
    y, x = np.mgrid[:height, :width]
    return Image.fromarray(np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8))


# ---------------------------------------------------------------------------------------------
# Names, the preset and the coordinate convention


def test_the_preset_gives_the_three_tools_under_the_names_the_models_call():
    tools = resolve_tools(["authors"])
    assert [t.name for t in tools] == ["image_zoom_in", "python", "tavily-search"]
    assert get_tool("crop:axpo").name == "image_zoom_in"
    assert get_tool("search:tavily").name == "tavily-search"
    # the existing names are unchanged
    assert [get_tool(n).name for n in ("crop", "crop:qwen3vl", "search")] == [
        "crop", "image_zoom_in_tool", "search"]
    with pytest.raises(ToolNotFoundError, match="'authors' is a set of tools"):
        get_tool("authors")
    with pytest.raises(ValueError, match="share the name.*python"):
        resolve_tools(["authors", "python"])
    with pytest.raises(ToolNotFoundError, match="tool sets: authors"):
        get_tool("laser")
    schema = tools[0].schema["function"]
    assert schema["parameters"]["required"] == ["bbox_2d"]
    assert set(schema["parameters"]["properties"]) == {"bbox_2d", "label", "img_idx"}
    assert "0-1000" in schema["description"]
    for t in tools:
        t.close()


def test_bbox_2d_is_0_to_1000_of_the_image_worked_by_hand():
    # 640x480: x * 640/1000, y * 480/1000 -> [160, 240, 480, 480], a 320x240 crop. smart_resize
    # (factor 32, min 256*32*32 = 262144 pixels): 256x320 = 81920 is too few, so scale by
    # sqrt(262144 / (240*320)) = 1.8475 and round up to 32s: 240 -> 443.4 -> 448,
    # 320 -> 591.2 -> 608.
    image = gradient(640, 480)
    out = AxpoZoom()({"bbox_2d": [250, 500, 750, 1000]}, ToolContext(images=(image,)))
    assert out.text.startswith("Cropped [160, 240, 480, 480] (pixels) of image 0 (640×480) "
                               "from bbox_2d [250, 500, 750, 1000] (0-1000 relative)")
    assert out.text.endswith("shown at 608×448.") and out.note_image_index
    expected = image.crop((160, 240, 480, 480)).resize((608, 448), Image.BICUBIC)
    assert out.images[0].tobytes() == expected.tobytes()


def test_the_authors_page_example_gives_the_page_zoom():
    # ByungKwanLee/AXPO-page: bbox_2d [870, 450, 945, 517] on the 1200x801 question image. As
    # 0-1000: x 1044..1134, y 360.45..414.12 (PIL rounds to 360, 414), a 90 x 53.67 region;
    # smart_resize: 64x96 < 262144, scale sqrt(262144 / (90 * 53.67)) = 7.367: 53.67 -> 395.4
    # -> 416, 90 -> 663.0 -> 672. The page's zoom is 800x495: the same 1.615 aspect.
    out = AxpoZoom()({"bbox_2d": [870, 450, 945, 517], "label": "Telephone number sign",
                      "img_idx": 0}, ToolContext(images=(gradient(1200, 801),)))
    assert "Cropped [1044, 360, 1134, 414] (pixels) of image 0 (1200×801)" in out.text
    assert "label 'Telephone number sign'" in out.text
    assert out.images[0].size == (672, 416)


def test_to_bbox_2d_inverts_the_conversion_outwards():
    assert to_bbox_2d([160, 240, 480, 480], (640, 480)) == [250, 500, 750, 1000]
    assert to_bbox_2d([1, 1, 2, 2], (3, 3)) == [333, 333, 667, 667]


# ---------------------------------------------------------------------------------------------
# In an env: img_idx over the episode's images, bad calls, snapshot/restore


@pytest.fixture(scope="module")
def vstar() -> Iterator[Any]:
    env = gym.make("AXPO-VStar-v0", tools=["authors"], max_turns=12).unwrapped
    yield env
    env.close()


def test_img_idx_picks_an_earlier_crop(vstar):
    obs, _ = vstar.reset(seed=0, options={"index": 0})
    task_image = images_of(obs["messages"][1])[0]
    w, h = task_image.size
    obs, *_ = vstar.step(zoom(bbox_2d=[0, 0, 500, 500], label="top left", img_idx=0))
    first = images_of(last(obs))[0]
    assert text_of(last(obs)).endswith("(image index 1)")
    assert f"Cropped [0, 0, {round(w / 2)}, {round(h / 2)}] (pixels) of image 0" in text_of(
        last(obs))
    obs, _, _, _, info = vstar.step(zoom(bbox_2d=[500, 500, 1000, 1000], img_idx=1))
    fw, fh = first.size
    assert f"of image 1 ({fw}×{fh})" in text_of(last(obs))
    assert text_of(last(obs)).endswith("(image index 2)")
    second = images_of(last(obs))[0]
    region = first.crop((fw // 2, fh // 2, fw, fh))
    new_w, new_h = second.size
    assert second.tobytes() == region.resize((new_w, new_h), Image.BICUBIC).tobytes()
    assert info["tool_calls"] == 2 and info["tool_errors"] == 0


@pytest.mark.parametrize(("arguments", "fragment"), [
    ({"bbox_2d": [0, 0, 500, 500], "img_idx": 3}, "img_idx=3 does not exist: the episode has 1 "
                                                   "image, so use 0"),
    ({"bbox_2d": [0, 0, 500, 500], "img_idx": -1}, "img_idx=-1 does not exist"),
    ({"bbox_2d": [0, 0, 500, 500], "img_idx": 0.5}, "bad arguments at img_idx"),
    ({"bbox_2d": [0, 0, 500, 500], "img_idx": "0"}, "bad arguments at img_idx"),
    ({"bbox_2d": [0.1, 0.2, 0.5, 0.6]}, "looks like fractions"),
    ({"bbox_2d": [1200, 0, 1500, 300]}, "lies outside image 0; coordinates are relative, 0-1000"),
    ({"bbox_2d": [500, 500, 100, 100]}, "is inverted"),
    ({"bbox_2d": [5, 5, 5, 9]}, "has zero area"),
    ({"bbox_2d": [1, 2, 3]}, "bad arguments at bbox_2d"),
    ({"bbox_2d": "all of it"}, "bad arguments at bbox_2d"),
    ({"bbox_2d": [0, 0, 1000, 1]}, "more elongated than 200:1"),
    ({"bbox_2d": [0, 0, 500, 500], "label": 7}, "bad arguments at label"),
    ({"bbox_2d": [0, 0, 500, 500], "zoom": 2}, "bad arguments"),
    ({}, "bad arguments"),
])
def test_bad_calls_are_error_text_not_exceptions(vstar, arguments, fragment):
    vstar.reset(seed=0, options={"index": 0})
    obs, reward, terminated, truncated, info = vstar.step(zoom(**arguments))
    text = text_of(last(obs))
    assert text.startswith("Error: ") and fragment in text, text
    assert not images_of(last(obs)) and info["tool_errors"] == 1
    assert (reward, terminated, truncated) == (0.0, False, False)


def test_a_clipped_box_and_a_hostile_label_are_reported_safely():
    image = gradient(100, 100)
    label = "sign\n\x00" + "x" * 5000 + "\ud800"
    out = AxpoZoom()({"bbox_2d": [-50, 900, 500, 1400], "label": label},
                     ToolContext(images=(image,)))
    assert "Cropped [0, 90, 50, 100] (pixels)" in out.text and "was clipped" in out.text
    assert len(out.text) < 400 and "\n" not in out.text and "\ud800" not in out.text


def same(a: list, b: list) -> bool:
    """Observations equal, images by pixels."""
    def flat(steps):
        for messages, *rest in steps:
            yield [(m["role"], [p["text"] if p["type"] == "text" else p["image"].tobytes()
                                for p in m["content"]]) for m in messages], rest
    return list(flat(a)) == list(flat(b))


def play(env, actions):
    out = []
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        out.append((obs["messages"], reward, terminated, truncated, info))
        if terminated or truncated:
            break
    return out


def test_snapshot_restore_mid_episode_with_crops_and_python(vstar):
    vstar.reset(seed=0, options={"index": 0})
    play(vstar, [zoom(bbox_2d=[100, 100, 600, 700], img_idx=0),
                 render_tool_call("python", {"code": "n = 41"})])
    snap = pickle.loads(pickle.dumps(vstar.snapshot()))
    assert len(snap.images) == 2
    after = [zoom(bbox_2d=[0, 0, 400, 400], img_idx=1),
             zoom(bbox_2d=[200, 200, 900, 900], img_idx=2, label="again"),
             render_tool_call("python", {"code": "print(n + 1)"}),
             render_tool_call("tavily-search", {"query": "eiffel tower height", "max_results": 2}),
             render_answer("A")]
    first = play(vstar, after)
    assert "42" in text_of(first[2][0][-1]) and "[1] Eiffel Tower" in text_of(first[3][0][-1])
    # drive it elsewhere: other crops, another item, a changed python session
    vstar.reset(seed=3, options={"index": 1})
    play(vstar, [zoom(bbox_2d=[0, 0, 999, 999]), render_tool_call("python", {"code": "n = 0"})])
    vstar.restore(snap)
    assert same(play(vstar, after), first)


crop_call = st.builds(
    lambda box, idx: zoom(bbox_2d=box, img_idx=idx),
    st.lists(st.one_of(st.integers(-100, 1200), st.floats(0, 1)), min_size=3, max_size=5),
    st.integers(-1, 4),
)
search_call = st.sampled_from(["eiffel tower height", "", "x" * 500]).map(
    lambda q: render_tool_call("tavily-search", {"query": q, "max_results": 3}))
action = st.one_of(crop_call, search_call, st.sampled_from(["junk", render_answer("A")]))


@pytest.fixture(scope="module")
def light() -> Iterator[Any]:
    env = gym.make("AXPO-VStar-v0", tools=["crop:axpo", "search:tavily"], max_turns=10).unwrapped
    yield env
    env.close()


@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(prefix=st.lists(action, max_size=3), suffix=st.lists(action, min_size=1, max_size=4),
       detour=st.lists(action, max_size=3))
def test_restore_replays_any_zoom_sequence_exactly(light, prefix, suffix, detour):
    light.reset(seed=0, options={"index": 0})
    play(light, prefix)
    snap = light.snapshot()
    if snap.done:
        return
    first = play(light, suffix)
    light.restore(snap)
    play(light, detour)
    light.restore(snap)
    assert same(play(light, suffix), first)


@pytest.mark.parametrize("env_id", ["AXPO-VStar-v0", "AXPO-MathVista-v0"])
def test_check_env_passes_with_the_preset(env_id):
    env = gym.make(env_id, tools=["authors"])
    check_env(env.unwrapped, skip_render_check=True)
    assert env.unwrapped.tool_names == ("image_zoom_in", "python", "tavily-search")
    env.close()


# ---------------------------------------------------------------------------------------------
# Rollouts, the viewer and expert demos


class ZoomTwiceThenAnswer:
    """Conversation-level policy: zooms into image 0, then into that crop (img_idx=1), then
    answers."""

    def generate(self, conversations, n=1, sampling=None):
        from agents.policy import Completion

        turns = [zoom(bbox_2d=[100, 200, 600, 700], label="region", img_idx=0),
                 zoom(bbox_2d=[250, 250, 750, 750], img_idx=1), render_answer("A")]
        return [[Completion(turns[sum(m["role"] == "assistant" for m in c["messages"])])] * n
                for c in conversations]


def test_rollout_and_viewer_show_a_crop_of_an_earlier_crop(tmp_path):
    from axpo_view import write_report
    from evaluation.evaluate import EvalConfig, run_eval

    out = tmp_path / "eval"
    cfg = EvalConfig(model="scripted", envs=["AXPO-VStar-v0"], samples=1, limit=1, max_turns=4,
                     output_dir=str(out), save_trajectories=True, tools=["authors"])
    run_eval(cfg, ZoomTwiceThenAnswer(), progress=False)
    records = [json.loads(line) for line in
               (out / "trajectories" / "episodes.jsonl").read_text().splitlines()]
    (episode,) = records
    first, second, _ = episode["turns"]
    assert episode["tool_calls"] == 2 and episode["tool_errors"] == 0
    assert first["crop"]["source"] == episode["images"][0]
    assert first["crop"]["box"] == pytest.approx([0.1, 0.2, 0.6, 0.7], abs=1e-3)
    # the second zoom's source is the first zoom's result, boxed at its middle half
    assert second["crop"]["source"] == first["reply"]["images"][0]
    assert second["crop"]["box"] == pytest.approx([0.25, 0.25, 0.75, 0.75], abs=2e-3)
    html = write_report(out).read_text()
    assert html.count("class='box'") == 2 and html.count("zoomed result") == 2
    assert second["reply"]["images"][0] in html


def test_expert_demos_can_call_image_zoom_in(tmp_path):
    from algorithms.sft import load_sft_dataset
    from axpo_env.tasks.demos import write_expert_demos
    from axpo_env.tasks.zoom_boxes import ZoomBoxes

    def turns(item):
        box = to_bbox_2d(item.metadata["box"], item.images[0].size)
        return [zoom(bbox_2d=box, label=f"{item.metadata['colour']} box", img_idx=0),
                render_answer(item.answer)]

    prompt = ("Each coloured box holds a pattern too fine to see. image_zoom_in(bbox_2d) zooms "
              "in; bbox_2d is [x1, y1, x2, y2], 0-1000 of the image's width and height.")
    path = write_expert_demos(ZoomBoxes.env_id, turns, tmp_path, 2, "demo",
                              tools=["crop:axpo"], system_prompt=prompt)
    examples = load_sft_dataset(path)
    assert len(examples) == 2
    assert examples[0]["messages"][0]["content"][0]["text"] == prompt
    tool = examples[0]["messages"][3]
    assert tool["role"] == "tool" and tool["content"][0]["type"] == "image"
    assert tool["content"][-1]["text"].startswith("Cropped [")


# ---------------------------------------------------------------------------------------------
# tavily-search: the offline backend


def titles(text: str) -> list[str]:
    return [line.split("] ", 1)[1] for line in text.splitlines() if line.startswith("[")]


def test_without_a_key_tavily_search_uses_the_local_corpus():
    tool = TavilySearchTool()
    assert isinstance(tool.backend, BM25Backend) and not tool.nondeterministic
    assert not tool.online and "offline" in tool.schema["function"]["description"]
    text = tool({"query": "Eiffel Tower height", "max_results": 2}).text
    assert titles(text)[0] == "Eiffel Tower" and len(titles(text)) == 2
    assert "330 m" in text and "https://en.wikipedia.org/wiki/Eiffel_Tower" in text
    assert len(titles(tool({"query": "tower"}).text)) == 5  # the default, as the authors call it
    assert len(titles(tool({"query": "tower", "max_results": 10 ** 9}).text)) == MAX_RESULTS
    assert len(titles(tool({"query": "tower", "max_results": -3}).text)) == 1
    assert tool({"query": "zzqx qqzx"}).text.startswith('No results for "zzqx qqzx"')
    own = TavilySearchTool("bm25", corpus=[{"title": "Costelloe", "text": "Born in Dublin."}])
    assert titles(own({"query": "Paul Costelloe birthplace"}).text) == ["Costelloe"]


@pytest.mark.parametrize(("arguments", "fragment"), [
    ({"query": "   "}, "empty query"),
    ({"query": "x " * 300}, "query too long (599 characters, limit 400)"),
    ({"query": 5}, "bad arguments at query"),
    ({"query": "x", "max_results": "5"}, "bad arguments at max_results"),
    ({"query": "x", "max_results": True}, "bad arguments at max_results"),
    ({"query": "x", "search_depth": "advanced"}, "bad arguments"),
])
def test_hostile_search_calls_are_tool_errors(arguments, fragment):
    with pytest.raises(ToolCallError) as e:
        TavilySearchTool()(arguments)
    assert fragment in str(e.value)


# ---------------------------------------------------------------------------------------------
# tavily-search: the hosted API, against a local fake Tavily

RESULTS = [
    {"title": "Paul Costelloe - Wikipedia", "url": "https://en.wikipedia.org/wiki/Paul_Costelloe",
     "content": "Paul Costelloe (born 1945) was an Irish fashion designer, born in Dublin.",
     "score": 0.91, "raw_content": None},
    {"title": "Lord Mayor of Dublin", "url": "https://example.org/mayor",
     "content": "Ray McAdam (born 1984) has served as Lord Mayor of Dublin since June 2025.",
     "score": 0.5},
    "not a result", {"score": 0.1},
]


class _Tavily(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TavilyHandler)
        self.requests: list[dict[str, Any]] = []
        self.script: list[str] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/search"


class _TavilyHandler(BaseHTTPRequestHandler):
    server: _Tavily

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"body": body, "auth": self.headers.get("Authorization"),
                                     "path": self.path})
        action = self.server.script.pop(0) if self.server.script else "ok"
        if self.headers.get("Authorization") != "Bearer tvly-test":
            return self._send(401, {"detail": {"error": "Unauthorized: missing or invalid key"}})
        if action == "shape":
            return self._send(200, {"results": "nope"})
        if action == "garbage":
            return self._send(200, b"\x00\xff not json")
        if action.startswith("redirect "):
            self.send_response(307)
            self.send_header("Location", action.split(" ", 1)[1])
            self.send_header("Content-Length", "0")
            return self.end_headers()
        answer = {"query": body["query"], "answer": None, "images": [],
                  "results": RESULTS[:body["max_results"] + 2], "response_time": 0.1}
        return self._send(200, answer)

    def _send(self, status: int, data: Any) -> None:
        raw = data if isinstance(data, bytes) else json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


def _serve() -> _Tavily:
    srv = _Tavily()
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    return srv


@pytest.fixture
def tavily(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Tavily]:
    monkeypatch.setenv("TAVILY_API_KEY", "tvly-test")
    srv = _serve()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_with_a_key_the_hosted_api_is_called_as_tavily_documents_it(tavily):
    tool = TavilySearchTool(url=tavily.url, timeout_s=2.0)
    assert isinstance(tool.backend, TavilyBackend) and tool.nondeterministic and tool.online
    text = tool({"query": "Paul  Costelloe\nbirthplace", "max_results": 2}).text
    assert titles(text) == ["Paul Costelloe - Wikipedia", "Lord Mayor of Dublin"]
    assert "born in Dublin" in text and "https://en.wikipedia.org/wiki/Paul_Costelloe" in text
    (request,) = tavily.requests
    assert request["auth"] == "Bearer tvly-test" and request["path"] == "/search"
    assert request["body"]["query"] == "Paul Costelloe birthplace"
    assert request["body"]["max_results"] == 2 and "api_key" not in request["body"]
    tool({"query": "x", "max_results": 99})
    assert tavily.requests[-1]["body"]["max_results"] == MAX_RESULTS


def test_a_missing_or_refused_key_is_a_clear_message(tavily, monkeypatch):
    monkeypatch.delenv("TAVILY_API_KEY")
    with pytest.raises(ValueError, match="Tavily API key is not set: export TAVILY_API_KEY="):
        TavilySearchTool("tavily", url=tavily.url)
    monkeypatch.setenv("MY_TAVILY", "tvly-wrong")
    tool = TavilySearchTool(url=tavily.url, api_key_env="MY_TAVILY", timeout_s=2.0)
    with pytest.raises(ToolCallError, match="refused the API key \\(HTTP 401\\)"):
        tool({"query": "x"})
    assert len(tavily.requests) == 1  # a refused key is not retried


@pytest.mark.parametrize(("action", "fragment"), [
    ("shape", "unexpected shape"), ("garbage", "did not answer with JSON"),
])
def test_bad_answers_are_tool_errors(tavily, action, fragment):
    tavily.script = [action]
    with pytest.raises(ToolCallError, match=fragment):
        TavilySearchTool(url=tavily.url, timeout_s=2.0, retries=0)({"query": "x"})


def test_the_key_never_follows_a_redirect_to_another_server(tavily):
    other = _serve()
    try:
        tavily.script = [f"redirect {other.url}"]
        tool = TavilySearchTool(url=tavily.url, timeout_s=2.0, retries=0)
        with pytest.raises(ToolCallError, match="redirected to another server"):
            tool({"query": "x"})
        assert other.requests == []
    finally:
        other.shutdown()
        other.server_close()


def test_in_an_env_a_server_error_is_the_agents_error_message(tavily):
    env = gym.make("AXPO-MathVista-v0", tools=[
        "crop:axpo", TavilySearchTool(url=tavily.url, timeout_s=2.0, retries=0)]).unwrapped
    env.reset(seed=0, options={"index": 0})
    tavily.script = ["garbage"]
    obs, _, _, _, info = env.step(render_tool_call("tavily-search", {"query": "x"}))
    assert text_of(last(obs)).startswith("Error: the Tavily search API did not answer with JSON")
    assert info["tool_errors"] == 1
    obs, *_ = env.step(render_tool_call("tavily-search", {"query": "dublin mayor"}))
    assert "[1] Paul Costelloe - Wikipedia" in text_of(last(obs))
    env.close()
