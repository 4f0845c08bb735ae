"""agents.decode: the sampling loop gives the ids transformers' generate gives for a seed, and
records what the model computed for them."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from agents import tiny
from agents.decode import multinomial_rows
from agents.hf import HFPolicy
from agents.policy import SamplingParams


@pytest.fixture(scope="module")
def vl():
    return HFPolicy.from_pretrained(tiny.cached("vl"))


@pytest.fixture(scope="module")
def text():
    return HFPolicy.from_pretrained(tiny.cached("text"))


def conversation(question: str, image: bool = True) -> dict:
    content = [{"type": "text", "text": question}]
    if image:
        content.insert(0, {"type": "image", "image": Image.new("RGB", (64, 48), (30, 90, 200))})
    return {"messages": [{"role": "user", "content": content}], "tools": []}


def both(policy: HFPolicy, fn):
    """fn() under generate (the reference), then under the loop."""
    try:
        policy.decoding = "generate"
        before = fn()
    finally:
        policy.decoding = "loop"
    return before, fn()


def assert_same(before, after) -> None:
    flat = [(b, a) for bs, as_ in zip(before, after)
            for b, a in zip(bs if isinstance(bs, list) else [bs], as_ if isinstance(as_, list)
                            else [as_])]
    assert flat
    for b, a in flat:
        assert a.token_ids == b.token_ids
        assert a.finish_reason == b.finish_reason
        assert a.text == b.text
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)
        assert a.entropies == pytest.approx(b.entropies, abs=1e-5)


def test_multinomial_rows_draws_what_multinomial_draws_for_those_rows():
    probs = torch.rand(6, 50).softmax(-1)
    torch.manual_seed(3)
    full = torch.multinomial(probs, 1).squeeze(1)
    rows = torch.tensor([0, 2, 5])
    torch.manual_seed(3)
    assert multinomial_rows(probs[rows], rows, 6).tolist() == full[rows].tolist()


@pytest.mark.parametrize("sampling", [
    SamplingParams(max_new_tokens=24, seed=0),
    SamplingParams(max_new_tokens=24, temperature=0.7, top_k=40, top_p=0.9, seed=1),
    SamplingParams(max_new_tokens=24, temperature=0.0),
    SamplingParams(max_new_tokens=24, seed=2, stop=("a", "e")),  # stop strings end rows early
])
def test_loop_samples_what_generate_samples_on_a_padded_image_batch(vl, sampling):
    prompts = [vl.prompt(conversation(q)) for q in ("What is 2 + 2?", "Name a colour, please.")]
    assert len(prompts[0]) != len(prompts[1])  # left padding and a mask
    assert_same(*both(vl, lambda: vl.sample(prompts, n=3, sampling=sampling)))


def test_loop_samples_what_generate_samples_from_a_shared_prefill(vl):
    prompt = vl.prompt(conversation("What is 2 + 2?")).extend([5, 6, 7])
    sampling = SamplingParams(max_new_tokens=20, seed=4)
    assert_same(*both(vl, lambda: vl.sample_shared(prompt, 4, sampling)))


def test_loop_samples_what_generate_samples_on_a_text_model(text):
    prompts = [text.prompt(conversation(q, image=False)) for q in ("Hi.", "Count to five.")]
    sampling = SamplingParams(max_new_tokens=24, seed=5, stop=("o",))
    assert_same(*both(text, lambda: text.sample(prompts, n=2, sampling=sampling)))


def test_rows_that_finish_early_keep_their_ids_and_the_others_go_on(text):
    prompts = [text.prompt(conversation("Count to five.", image=False))]
    sampling = SamplingParams(max_new_tokens=30, seed=6, stop=("e",))
    out = text.sample(prompts, n=8, sampling=sampling)[0]
    lengths = {len(c.token_ids) for c in out}
    assert len(lengths) > 1  # some rows ended before others: the batch shrank and went on
    for c in out:
        full = prompts[0].extend(c.token_ids)
        logprobs, _ = text.score(full, range(len(prompts[0]), len(full)), sampling)
        assert logprobs == pytest.approx(c.logprobs, abs=1e-4)


def test_a_batch_of_repeated_prompts_prefills_each_prompt_once(vl):
    """A group's first turn (one prompt and image, n rows) runs the prompt once, then indexes
    its key/value states out to the rows: the same ids as generate's full-batch prefill."""
    prompts = [vl.prompt(conversation(q)) for q in ("What is 2 + 2?", "Name a colour, please.")]
    widths = []
    hook = vl.model.register_forward_pre_hook(
        lambda _, args, kwargs: widths.append(tuple(kwargs["input_ids"].shape)),
        with_kwargs=True)
    try:
        vl.sample(prompts, n=4, sampling=SamplingParams(max_new_tokens=3, seed=0))
    finally:
        hook.remove()
    width = max(len(p) for p in prompts)
    assert widths[0] == (2, width - 1)  # the two prompts, all but their last id
    assert widths[1] == (8, 1)  # then every row's last id, and decoding goes on


def test_a_cache_that_cannot_drop_rows_runs_them_on_with_the_same_ids(text, monkeypatch):
    """Linear-attention caches cannot keep a subset of rows: finished rows then stay in the
    batch (as in generate) and the live rows sample what they sample otherwise."""
    prompts = [text.prompt(conversation(q, image=False)) for q in ("Hi.", "Count to five.")]
    sampling = SamplingParams(max_new_tokens=24, seed=7, stop=("e",))
    before, after = both(text, lambda: text.sample(prompts, n=3, sampling=sampling))
    monkeypatch.setattr("agents.decode.can_select_rows", lambda cache: False)
    monkeypatch.setattr("agents.hf.can_select_rows", lambda cache: False)
    assert_same(before, text.sample(prompts, n=3, sampling=sampling))
    assert_same(before, after)
