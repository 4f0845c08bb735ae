"""vLLM rollouts (agents.vllm_policy, agents.vllm_engine, agents.vllm_server, use_vllm training).

One engine per test session (the module's `engine`: 15-40 s to start on CPU); tests that need a
pristine model load the tiny weights into it first. Tests below the engine line need vLLM
(`bash scripts/setup.sh --vllm`) and skip without it, unless AXPO_REQUIRE_VLLM=1 (CI) makes a
missing vLLM a failure. The ones above it (wire checks, importance weights, prompt folding) run
everywhere.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

from agents import tiny
from agents.hf import HFPolicy
from agents.policy import Completion, SamplingParams
from agents.rollout import branch, rollout
from agents.tokens import TokenPrompt
from agents.vllm_engine import EngineError, RemoteEngine, _entropy, check_samples
from agents.vllm_policy import VLLMPolicy
from algorithms.config import AXPOConfig, GRPOConfig
from algorithms.loss import policy_loss
from algorithms.rollout_engine import importance_weights

VISTA = "AXPO-MathVista-v0"
HAS_VLLM = importlib.util.find_spec("vllm") is not None
if not HAS_VLLM and os.environ.get("AXPO_REQUIRE_VLLM") == "1":
    raise RuntimeError("AXPO_REQUIRE_VLLM=1 but vLLM is not installed: bash scripts/setup.sh "
                       "--vllm")
needs_vllm = pytest.mark.skipif(not HAS_VLLM, reason="vLLM not installed (bash scripts/setup.sh "
                                "--vllm)")


@pytest.fixture(scope="module")
def hf():
    return HFPolicy.from_pretrained(tiny.cached("vl"))


# ------------------------------------------------------------------------- no engine needed


def test_entropy_from_top_logprobs_spreads_the_rest_evenly():
    # p = .5, .25 known; .25 left over 2 other tokens of a 4-token vocabulary: .125 each
    want = -(0.5 * math.log(0.5) + 0.25 * math.log(0.25) + 2 * 0.125 * math.log(0.125))
    assert _entropy([math.log(0.5), math.log(0.25)], 4) == pytest.approx(want, abs=1e-12)
    assert _entropy([0.0], 100) == pytest.approx(0.0, abs=1e-12)  # all the mass known


def test_truncated_importance_weights_by_hand():
    old = torch.tensor([[-1.0, -2.0, 0.0, -9.0]])
    sampled = torch.tensor([[-1.5, -0.5, -2.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    w, stats = importance_weights(old, sampled, mask, cap=3.0)
    # exp(0.5), exp(-1.5), exp(2) = 7.39 capped at 3; the masked position stays 1
    assert w.tolist()[0] == pytest.approx([math.exp(0.5), math.exp(-1.5), 3.0, 1.0])
    assert stats["vllm_logprob_gap"] == pytest.approx((0.5 + 1.5 + 2.0) / 3)
    assert stats["vllm_logprob_gap_max"] == pytest.approx(2.0)
    assert stats["vllm_is_capped"] == pytest.approx(1 / 3)


def test_importance_weights_scale_each_tokens_loss():
    logp = torch.tensor([[-1.0, -2.0]])
    adv, mask = torch.tensor([1.0]), torch.ones(1, 2)
    # ratio 1 everywhere: per-token loss -adv = -1; weighted by .5 and 2; dapo: sum / 2 tokens
    loss, _ = policy_loss(logp, logp, adv, mask, importance_weights=torch.tensor([[0.5, 2.0]]))
    assert loss.item() == pytest.approx(-(0.5 + 2.0) / 2)
    plain, _ = policy_loss(logp, logp, adv, mask)
    assert plain.item() == pytest.approx(-1.0)


def test_server_mode_needs_a_url():
    with pytest.raises(ValueError, match="vllm_server_base_url"):
        GRPOConfig(use_vllm=True, vllm_mode="server")
    with pytest.raises(ValueError, match="vllm_mode"):
        GRPOConfig(vllm_mode="remote")


class _Canned:
    """An engine that answers with canned samples and records what it was asked."""

    max_model_len = 4096

    def __init__(self, samples=None):
        self.samples, self.asked = samples, []

    def generate(self, requests, sampling):
        self.asked.append((requests, sampling))
        return [[dict(s) for s in self.samples(r)] * (r["n"] // len(self.samples(r)))
                for r in requests]


def _image_prompt(hf, n_images=2):
    from PIL import Image

    images = [Image.new("RGB", (64, 64), (i * 60, 0, 0)) for i in range(n_images)]
    text = "<|im_start|>user\n" + "<|vision_start|><|image_pad|><|vision_end|>" * n_images \
        + "hi<|im_end|>\n<|im_start|>assistant\n"
    ids, vision = hf.encode_text(text, images)
    return TokenPrompt([], image_pad_id=hf.image_pad_id).extend(ids, vision)


def test_each_images_pads_fold_to_one_for_vllm(hf):
    prompt = _image_prompt(hf)
    pad = hf.image_pad_id
    counts = prompt.image_pad_counts(hf.patches_per_token)
    assert counts == [4, 4] and prompt.ids.count(pad) == 8
    policy = VLLMPolicy(_Canned(), hf.processor, hf.model.generation_config)
    request = policy.request(prompt)
    assert request["ids"].count(pad) == 2 and len(request["ids"]) == len(prompt) - 6
    assert request["images"] == list(prompt.images)
    # a prefix cut inside the second image keeps only the first (TokenPrompt.prefix)
    first = prompt.ids.index(pad)
    cut = prompt.prefix(first + 6, hf.patches_per_token)
    assert len(cut.images) == 1


def test_a_prompt_without_its_images_is_an_error_completion(hf):
    prompt = _image_prompt(hf, 1)
    bare = TokenPrompt(prompt.ids, prompt.pixel_values, prompt.image_grid_thw, hf.image_pad_id)
    engine = _Canned(lambda r: [{"token_ids": [5], "logprobs": [-1.0], "entropies": [1.0],
                                 "finish_reason": "length", "prompt_token_ids": []}])
    policy = VLLMPolicy(engine, hf.processor, hf.model.generation_config)
    out = policy.sample([bare, TokenPrompt([1, 2, 3])], n=2)
    assert [c.finish_reason for c in out[0]] == ["error", "error"]
    assert "holds 0" in out[0][0].error
    assert [c.token_ids for c in out[1]] == [[5], [5]]  # the other prompt is served
    assert len(engine.asked[0][0]) == 1 and engine.asked[0][0][0]["n"] == 2


def test_ids_vllm_fed_that_differ_from_ours_are_an_error(hf):
    engine = _Canned(lambda r: [{"token_ids": [5], "logprobs": [-1.0], "entropies": [1.0],
                                 "finish_reason": "length", "prompt_token_ids": [9, 9]}])
    policy = VLLMPolicy(engine, hf.processor, hf.model.generation_config)
    (c,), = policy.sample([TokenPrompt([1, 2, 3])])
    assert c.finish_reason == "error" and "image preprocessing differs" in c.error


def test_a_turn_is_cut_at_its_stop_string_as_with_generate(hf):
    ids = hf.tokenizer("<answer>4</answer> and more", add_special_tokens=False)["input_ids"]
    engine = _Canned(lambda r: [{"token_ids": ids, "logprobs": [-0.5] * len(ids),
                                 "entropies": [0.1] * len(ids), "finish_reason": "stop",
                                 "prompt_token_ids": r["ids"]}])
    policy = VLLMPolicy(engine, hf.processor, hf.model.generation_config)
    (c,), = policy.sample([TokenPrompt([1, 2, 3])])
    assert c.text.endswith("</answer>") and len(c.logprobs) == len(c.token_ids) < len(ids)
    assert engine.asked[0][1]["stop_token_ids"] == hf.eos_ids


GOOD = {"token_ids": [1, 2], "logprobs": [-0.1, -0.2], "entropies": [1.0, 1.0],
        "finish_reason": "stop", "prompt_token_ids": [7]}


@pytest.mark.parametrize("body, why", [
    ({"results": [[GOOD]]}, None),
    ({"results": [[GOOD, GOOD]]}, "expected 1 samples"),
    ({"results": []}, "expected 'results' with 1"),
    ({"results": [[{**GOOD, "logprobs": []}]]}, "logprobs missing"),
    ({"results": [[{k: v for k, v in GOOD.items() if k != "logprobs"}]]}, "logprobs missing"),
    ({"results": [[{**GOOD, "logprobs": [-0.1, float("nan")]}]]}, "logprobs missing"),
    ({"results": [[{**GOOD, "token_ids": ["a", 2]}]]}, "not integers"),
    ([1, 2], "expected 'results'"),
])
def test_a_servers_answer_is_checked_for_shape(body, why):
    if why is None:
        assert check_samples(body, [1], "http://x") == body["results"]
    else:
        with pytest.raises(EngineError, match=why):
            check_samples(body, [1], "http://x")


class _Fake(BaseHTTPRequestHandler):
    """Plays a broken vLLM server: healthy, then slow, garbage or dropped logprobs."""

    mode = "garbage"

    def log_message(self, *args):
        pass

    def _send(self, code, body: bytes):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send(200, json.dumps({"model": "x", "max_model_len": 512,
                                    "is_vision": False}).encode())

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.mode == "slow":
            time.sleep(3)
        if self.mode == "garbage":
            return self._send(200, b"<html>not json</html>")
        if self.mode == "no_logprobs":
            return self._send(200, json.dumps({"results": [[{**GOOD, "logprobs": None}]]}
                                              ).encode())
        return self._send(500, json.dumps({"detail": "CUDA out of memory"}).encode())


@pytest.fixture
def fake_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Fake)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("mode, why", [("garbage", "not JSON"), ("slow", "timeout"),
                                       ("no_logprobs", "logprobs missing"),
                                       ("error", "HTTP 500: CUDA out of memory")])
def test_a_broken_server_is_an_engine_error_naming_the_cause(fake_server, monkeypatch, mode,
                                                             why):
    monkeypatch.setattr(_Fake, "mode", mode)
    engine = RemoteEngine(fake_server, timeout_s=1.0)
    with pytest.raises(EngineError, match=why) as e:
        engine.generate([{"ids": [1], "n": 1}], {"max_new_tokens": 4})
    assert fake_server in str(e.value)


def test_a_server_that_is_down_is_an_engine_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(EngineError, match=f"127.0.0.1:{port}"):
        RemoteEngine(f"http://127.0.0.1:{port}", timeout_s=2)


# ---------------------------------------------------------------------------- with an engine


@pytest.fixture(scope="module")
def engine():
    if not HAS_VLLM:
        pytest.skip("vLLM not installed (bash scripts/setup.sh --vllm)")
    # What a trainer on the search env has loaded before its engine starts: bm25s imports numba,
    # whose llvmlite vLLM's start-up scan of every module used to die on.
    import bm25s  # noqa: F401

    from agents.vllm_engine import EngineSettings, LocalEngine

    e = LocalEngine(tiny.cached("vl"), EngineSettings(max_model_len=4096, max_num_seqs=16))
    yield e
    e.close()


@pytest.fixture
def vllm(engine, hf):
    """A VLLMPolicy holding the tiny model's own weights."""
    policy = VLLMPolicy(engine, hf.processor, hf.model.generation_config)
    policy.update_weights(hf.model)
    return policy


def _scored(hf_policy, trajectory):
    positions = [t for t, m in enumerate(trajectory.mask) if m]
    lp, _ = hf_policy.score(trajectory.sequence, positions, SamplingParams())
    return np.array(lp), np.array(trajectory.logprobs)[positions]


@needs_vllm
def test_a_vllm_rollout_records_what_the_model_was_fed_and_sampled(vllm, hf):
    sampling = SamplingParams(max_new_tokens=40, seed=3)
    trajectories = rollout(VISTA, vllm, ["8", "11"], group_size=2, sampling=sampling, seed=0,
                           progress=False)
    assert len(trajectories) == 4
    for t in trajectories:
        assert t.error is None and t.sequence.images  # MathVista shows an image
        for turn in t.turns:  # each turn was fed exactly the sequence so far
            fed = turn.completion.prompt_token_ids
            assert t.ids[:len(fed)] == fed and turn.completion.finish_reason != "error"
        trainer_lp, engine_lp = _scored(hf, t)
        assert np.abs(trainer_lp - engine_lp).max() < 1e-4  # float32: ~1e-6 measured
    again = rollout(VISTA, vllm, ["8", "11"], group_size=2, sampling=sampling, seed=0,
                    progress=False)
    assert [t.ids for t in again] == [t.ids for t in trajectories]  # same seed, same tokens


@needs_vllm
def test_a_branch_keeps_the_prefix_and_resamples_the_rest(vllm):
    sampling = SamplingParams(max_new_tokens=24, seed=5)
    (source,) = rollout(VISTA, vllm, ["8"], group_size=1, sampling=sampling, seed=0,
                        progress=False)
    kept = source.turns[0].completion.token_ids[:6]
    branches = branch(source, turn=0, keep=6, policy=vllm, n=3, env=VISTA, sampling=sampling)
    assert len(branches) == 3
    for b in branches:
        assert b.error is None and b.turns[0].completion.token_ids[:6] == kept
        assert b.ids[:len(source.turns[0].completion.prompt_token_ids) + 6] == \
            source.ids[:len(source.turns[0].completion.prompt_token_ids) + 6]
    assert len({tuple(b.turns[0].completion.token_ids) for b in branches}) > 1


@needs_vllm
def test_after_a_weight_sync_the_engine_scores_as_the_trainer(vllm, hf):
    trained = copy.deepcopy(hf.model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    trainer = HFPolicy(trained, hf.processor)
    vllm.update_weights(trained)
    (t,) = rollout(VISTA, vllm, ["8"], group_size=1, seed=0, progress=False,
                   sampling=SamplingParams(max_new_tokens=40, seed=1))
    trainer_lp, engine_lp = _scored(trainer, t)
    assert np.abs(trainer_lp - engine_lp).max() < 1e-4
    before_lp, _ = _scored(hf, t)  # the sync mattered: the old weights score differently
    assert np.abs(before_lp - engine_lp).max() > 1e-2


@needs_vllm
def test_sample_shared_gives_n_continuations_of_one_prompt(vllm):
    prompt = TokenPrompt(vllm.tokenizer("<|im_start|>user\nhi<|im_end|>\n<|im_start|>"
                                        "assistant\n")["input_ids"])
    out = vllm.sample_shared(prompt, 4, SamplingParams(max_new_tokens=12, seed=2))
    assert len(out) == 4 and all(c.prompt_token_ids == prompt.ids for c in out)
    assert len({tuple(c.token_ids) for c in out}) > 1
    long = TokenPrompt([1] * 4090)
    (c,) = vllm.sample_shared(long, 1, SamplingParams(max_new_tokens=12))
    assert c.finish_reason == "error" and "context of 4096" in c.error


@needs_vllm
def test_the_engine_leaves_the_trainers_threads_alone(engine):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # vLLM's CPU worker makes this a no-op when it pins threads
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


@needs_vllm
def test_a_failure_inside_vllm_is_an_engine_error_naming_it(engine, monkeypatch):
    def dies(*args, **kwargs):
        raise RuntimeError("EngineCore encountered an issue.\nEngineDeadError: worker died")

    monkeypatch.setattr(engine.llm, "generate", dies)
    with pytest.raises(EngineError, match="failed: RuntimeError: EngineDeadError: worker died"):
        engine.generate([{"ids": [5, 6], "n": 1}], {"max_new_tokens": 2, "temperature": 1.0,
                                                    "top_p": 1.0, "top_k": 0, "stop": []})


@needs_vllm
def test_seeded_requests_longer_than_one_scheduler_step(engine):
    # 6 x 2 prompts of 1500 tokens: more prefill than one step takes (8192), which crashed
    # vLLM's CPU build on seeded requests while it chunked prefills
    requests = [{"ids": [5 + (i * 7 + j) % 200 for j in range(1500)], "n": 2, "seed": 100 + i}
                for i in range(6)]
    sampling = {"max_new_tokens": 6, "temperature": 1.0, "top_p": 1.0, "top_k": 0, "stop": []}
    first = engine.generate(requests, sampling)
    assert [len(r) for r in first] == [2] * 6
    assert all(len(s["token_ids"]) == len(s["logprobs"]) > 0 for r in first for s in r)
    again = engine.generate(requests, sampling)
    assert [[s["token_ids"] for s in r] for r in again] == \
        [[s["token_ids"] for s in r] for r in first]


def _train_config(tmp_path, **kw):
    return AXPOConfig(**{"model": str(tiny.cached("vl")), "use_vllm": True, "max_steps": 1,
                         "tasks_per_step": 1, "num_generations": 2,
                         "max_completion_length": 24, "output_dir": str(tmp_path),
                         "report_to": ["jsonl"], **kw})


@pytest.fixture
def colocated(engine, monkeypatch):
    """Trainers get the session's engine (not closed by them) instead of starting their own."""
    import agents.vllm_engine

    monkeypatch.setattr(agents.vllm_engine, "LocalEngine", lambda path, settings: engine)
    monkeypatch.setattr(engine, "close", lambda: None)
    return engine


@needs_vllm
def test_training_with_colocated_vllm_syncs_every_step(colocated, hf, tmp_path):
    from algorithms.trainer import Trainer

    trainer = Trainer("axpo", _train_config(tmp_path, max_steps=2))
    history = trainer.train()
    assert len(history) == 2
    for h in history:
        assert h["weight_sync_time"] > 0 and h["vllm_logprob_gap_max"] < 1e-4
        assert h["vllm_is_weight_mean"] == pytest.approx(1.0, abs=1e-4)
    # the engine holds the trained weights, which moved away from the start
    (t,) = rollout(VISTA, trainer.rollouts, ["8"], group_size=1, seed=0, progress=False,
                   sampling=SamplingParams(max_new_tokens=30, seed=4))
    trainer_lp, engine_lp = _scored(trainer.policy, t)
    assert np.abs(trainer_lp - engine_lp).max() < 1e-4


@needs_vllm
def test_an_engine_failure_stops_training_and_resume_continues(colocated, tmp_path,
                                                               monkeypatch):
    from algorithms.trainer import Trainer

    cfg = _train_config(tmp_path, max_steps=2, save_steps=1)
    trainer = Trainer("grpo", cfg)
    real = colocated.generate

    def dies_in_step_two(*args, **kwargs):
        if trainer.step == 1:
            raise EngineError("vLLM engine died")
        return real(*args, **kwargs)

    monkeypatch.setattr(colocated, "generate", dies_in_step_two)
    with pytest.raises(EngineError, match="died"):
        trainer.train()
    assert (tmp_path / "checkpoint-1").is_dir() and not (tmp_path / "checkpoint-2").exists()
    monkeypatch.setattr(colocated, "generate", real)
    resumed = Trainer("grpo", AXPOConfig(**{**cfg.to_dict(), "resume": True}))
    assert resumed.step == 1
    assert len(resumed.train()) == 2 and (tmp_path / "checkpoint-2").is_dir()


@pytest.fixture
def server(engine):
    """`agents.vllm_server`'s app on the session's engine, over real HTTP."""
    import uvicorn

    from agents.vllm_server import make_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(make_app(engine), host="127.0.0.1", port=port,
                                        log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@needs_vllm
def test_server_mode_samples_and_takes_weights_over_http(server, hf):
    from agents.loading import load_policy

    policy = load_policy(f"vllm:{server}")
    assert isinstance(policy, VLLMPolicy) and isinstance(policy.engine, RemoteEngine)
    trained = copy.deepcopy(hf.model)
    with torch.no_grad():
        for p in trained.parameters():
            p.mul_(1.1)
    policy.update_weights(trained)
    (t,) = rollout(VISTA, policy, ["11"], group_size=1, seed=0, progress=False,
                   sampling=SamplingParams(max_new_tokens=30, seed=6))
    assert t.error is None and t.sequence.images
    trainer_lp, engine_lp = _scored(HFPolicy(trained, hf.processor), t)
    assert np.abs(trainer_lp - engine_lp).max() < 1e-4


@needs_vllm
def test_the_server_refuses_bad_requests_with_a_clear_error(server):
    engine = RemoteEngine(server, timeout_s=60)
    with pytest.raises(EngineError, match="HTTP 422.*ids"):
        engine.generate([{"ids": [], "n": 1}], {"max_new_tokens": 4})
    import requests

    reply = requests.post(f"{server}/update_weights", data=b"junk", timeout=30)
    assert reply.status_code == 422 and "not a safetensors blob" in reply.text


@needs_vllm
def test_an_engine_failure_on_the_server_reaches_the_trainer_by_name(server, engine,
                                                                     monkeypatch):
    def dies(*args, **kwargs):
        raise RuntimeError("EngineDeadError: worker died")

    monkeypatch.setattr(engine.llm, "generate", dies)
    with pytest.raises(EngineError, match="HTTP 500: vLLM engine .* worker died"):
        RemoteEngine(server, timeout_s=60).generate(
            [{"ids": [5, 6], "n": 1}], {"max_new_tokens": 2, "temperature": 1.0, "top_p": 1.0,
                                        "top_k": 0, "stop": []})


@needs_vllm
def test_axpo_eval_runs_on_vllm(colocated, tmp_path, capsys):
    from axpo_cli.cli import main

    rc = main(["eval", "--model", "vllm:tiny", "--envs", VISTA, "--limit", "2",
               "--max-completion-length", "24", "--output-dir", str(tmp_path)])
    assert rc == 0, capsys.readouterr().err
    rows = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    config = next(r for r in rows if r["type"] == "config")
    episodes = [r for r in rows if r["type"] == "episode"]
    assert config["config"]["model"] == "vllm:tiny"
    assert {e["task_id"] for e in episodes} == {"1", "2"}


def test_a_model_vllm_cannot_load_is_a_clear_error(tmp_path):
    from agents.loading import load_policy
    from axpo_env.errors import ModelLoadError

    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="vLLM|vllm"):
        load_policy(f"vllm:{tmp_path / 'empty'}")


def test_completions_keep_the_policy_contract(hf):
    engine = _Canned(lambda r: [{"token_ids": [4, 5], "logprobs": [-0.5, -0.25],
                                 "entropies": [1.0, 2.0], "finish_reason": "length",
                                 "prompt_token_ids": r["ids"]}] * r["n"])
    policy = VLLMPolicy(engine, hf.processor, hf.model.generation_config)
    out = policy.generate([{"messages": [{"role": "user", "content": "hi"}]}], n=3,
                          sampling=SamplingParams(max_new_tokens=2, seed=1))
    assert len(out[0]) == 3 and all(isinstance(c, Completion) for c in out[0])
    assert out[0][0].logprobs == [-0.5, -0.25] and out[0][0].finish_reason == "length"
    assert engine.asked[0][0][0]["seed"] == 1 * 1_000_003
