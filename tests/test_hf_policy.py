"""HFPolicy on the tiny models: sampling records, seeds, stops, limits and bad input."""

from __future__ import annotations

import pytest
from PIL import Image

from agents import tiny
from agents.hf import HFPolicy, warp
from agents.policy import Completion, Policy, SamplingParams

SAMPLING = SamplingParams(max_new_tokens=12, temperature=1.0, top_p=0.9, top_k=40, seed=0)


@pytest.fixture(scope="module")
def vl():
    return HFPolicy.from_pretrained(tiny.cached("vl"))


@pytest.fixture(scope="module")
def text():
    return HFPolicy.from_pretrained(tiny.cached("text"))


def conversation(question="What is 2 + 2?", image=True):
    content = [{"type": "text", "text": question}]
    if image:
        content.insert(0, {"type": "image", "image": Image.new("RGB", (64, 48), (200, 30, 30))})
    return {"messages": [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                         {"role": "user", "content": content}],
            "tools": [{"type": "function", "function": {
                "name": "calculator", "description": "Evaluate math.",
                "parameters": {"type": "object", "properties": {"expression": {"type": "string"}},
                               "required": ["expression"]}}}]}


def test_hf_policy_is_a_policy(vl):
    assert isinstance(vl, Policy)


def test_generate_returns_n_completions_with_aligned_records(vl):
    out = vl.generate([conversation(), conversation("Name a color.")], n=3, sampling=SAMPLING)
    assert [len(o) for o in out] == [3, 3]
    for c in out[0] + out[1]:
        assert c.finish_reason in ("stop", "length") and c.error is None
        assert len(c.token_ids) == len(c.logprobs) == len(c.entropies) > 0
        assert all(lp <= 0 for lp in c.logprobs) and all(e >= 0 for e in c.entropies)
        assert c.prompt_token_ids and vl.image_pad_id in c.prompt_token_ids


def test_recorded_logprobs_match_a_teacher_forced_forward_pass(vl):
    prompt = vl.prompt(conversation())
    completion = vl.sample([prompt], n=1, sampling=SAMPLING)[0][0]
    full = prompt.extend(completion.token_ids)
    positions = range(len(prompt), len(full))
    logprobs, entropies = vl.score(full, positions, SAMPLING)
    assert logprobs == pytest.approx(completion.logprobs, abs=1e-4)  # stated tolerance: 1e-4
    assert entropies == pytest.approx(completion.entropies, abs=1e-4)


def test_same_seed_same_samples_other_seed_other_samples(text):
    conv = [conversation(image=False)]
    a = text.generate(conv, n=2, sampling=SAMPLING)[0]
    b = text.generate(conv, n=2, sampling=SAMPLING)[0]
    c = text.generate(conv, n=2, sampling=SamplingParams(max_new_tokens=12, seed=1))[0]
    assert [x.token_ids for x in a] == [x.token_ids for x in b]
    assert [x.token_ids for x in a] != [x.token_ids for x in c]


def test_top_k_zero_samples_from_the_whole_recorded_distribution(text):
    """No warper of transformers' own cuts what the recorder recorded: generate fills an unset
    top_k with 50, which once restricted every sample to the 50 likeliest ids unseen."""
    import torch

    sampling = SamplingParams(max_new_tokens=24, temperature=1.0, top_p=1.0, top_k=0, seed=0)
    prompt = text.prompt(conversation(image=False))
    ranks = []
    for c in text.sample([prompt], n=4, sampling=sampling)[0]:
        full = prompt.extend(c.token_ids)
        logits, _ = text.forward_logits([full])
        warped = warp(logits[0, len(prompt) - 1:-1], sampling)
        chosen = warped.gather(-1, torch.tensor(c.token_ids)[:, None])
        ranks += (warped > chosen).sum(-1).tolist()
    assert max(ranks) >= 50  # a near-uniform tiny model over ~1,100 ids: many lie past 50


def test_greedy_has_zero_temperature_and_is_deterministic(text):
    greedy = SamplingParams(max_new_tokens=8, temperature=0.0)
    a, b = (text.generate([conversation(image=False)], sampling=greedy)[0][0] for _ in range(2))
    assert a.token_ids == b.token_ids


def test_generation_without_a_stop_is_bounded_by_max_new_tokens(text):
    long = SamplingParams(max_new_tokens=5, stop=(), seed=0)
    c = text.generate([conversation(image=False)], sampling=long)[0][0]
    assert len(c.token_ids) <= 5 and c.finish_reason in ("length", "stop")


def test_stop_string_cuts_the_completion_right_after_it(text):
    # a stop string made of a frequent character: the cut lands right after the token that
    # completes its first occurrence (a token may carry text past the "e": "Question")
    sampling = SamplingParams(max_new_tokens=40, stop=("e",), seed=0)
    c = text.generate([conversation(image=False)], sampling=sampling)[0][0]
    assert c.finish_reason == "stop" and "e" in c.text
    assert "e" not in text.tokenizer.decode(c.token_ids[:-1], skip_special_tokens=False)
    assert len(c.token_ids) == len(c.logprobs)


def test_warp_keeps_top_k_and_top_p_mass():
    import torch

    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    top2 = warp(logits, SamplingParams(top_k=2))
    assert torch.isinf(top2[0, 2:]).all() and torch.isfinite(top2[0, :2]).all()
    nucleus = warp(logits, SamplingParams(top_p=0.5))  # first token alone has p=0.64 > 0.5
    assert torch.isfinite(nucleus[0, 0]) and torch.isinf(nucleus[0, 1:]).all()


def test_prompt_longer_than_the_context_is_an_error_completion(vl):
    small = HFPolicy(vl.model, vl.processor, max_context=64)
    out = small.generate([conversation(), conversation()], sampling=SAMPLING)
    assert all(c[0].finish_reason == "error" and "exceeds the model's context" in c[0].error
               for c in out)


def test_a_bad_conversation_does_not_lose_the_batch(vl):
    bad = {"messages": [{"role": "user", "content": [{"type": "image", "image": "not an image"}]}]}
    out = vl.generate([bad, conversation()], sampling=SAMPLING)
    assert out[0][0].finish_reason == "error" and out[0][0].error
    assert out[1][0].finish_reason in ("stop", "length")


def test_text_model_turns_images_into_nothing_and_still_answers(text):
    c = text.generate([conversation()], sampling=SAMPLING)[0][0]
    assert isinstance(c, Completion) and c.token_ids


def test_template_without_tool_support_is_a_clear_error(text):
    plain = HFPolicy(text.model, text.tokenizer)
    saved = text.tokenizer.chat_template
    try:
        text.tokenizer.chat_template = (
            "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content if m.content is string"
            " else '' }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n")
        out = plain.generate([conversation(image=False)], sampling=SAMPLING)
    finally:
        text.tokenizer.chat_template = saved
    assert out[0][0].finish_reason == "error" and "tools_in_prompt=True" in out[0][0].error


def test_shared_prefix_sampling_records_the_same_distribution(vl):
    prompt = vl.prompt(conversation())
    completions = vl.sample_shared(prompt, n=3, sampling=SAMPLING)
    assert len(completions) == 3
    for c in completions:
        full = prompt.extend(c.token_ids)
        logprobs, _ = vl.score(full, range(len(prompt), len(full)), SAMPLING)
        assert logprobs == pytest.approx(c.logprobs, abs=1e-4)


def test_a_peft_wrapped_model_samples_as_its_base():
    """A LoRA run's policy is a PeftModel (its forward takes no position ids): the decoding loop
    runs its base model, adapters in place, so a fresh adapter (B = 0) samples exactly what the
    base samples, a repeated prompt (the shared prefill) included. It crashed on the cache."""
    from peft import LoraConfig, get_peft_model

    base = HFPolicy.from_pretrained(tiny.cached("vl"))
    group = [conversation()] * 3
    expected = [[c.token_ids for c in g] for g in base.generate(group, sampling=SAMPLING)]
    lora = HFPolicy.from_pretrained(tiny.cached("vl"))
    lora.model = get_peft_model(lora.model, LoraConfig(r=4, target_modules="all-linear"))
    assert lora.core is not lora.model
    assert [[c.token_ids for c in g] for g in lora.generate(group, sampling=SAMPLING)] == expected
    shared = lora.sample_shared(lora.prompt(conversation()), n=2, sampling=SAMPLING)
    assert [c.token_ids for c in shared] == [
        c.token_ids for c in base.sample_shared(base.prompt(conversation()), n=2,
                                                sampling=SAMPLING)]
