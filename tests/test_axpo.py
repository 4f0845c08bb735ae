"""AXPO as the paper defines it (shared AXPO-PAPER.md): when it triggers, which prefixes it keeps
and ranks, how the budget is spent, and every token's advantage, worked by hand from Eq. 2-5."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents import tiny
from agents.actions import find_action
from agents.hf import HFPolicy, TokenPrompt
from agents.policy import Completion, SamplingParams
from agents.pretrained import load_processor
from agents.rollout import Trajectory, Turn, rollout
from algorithms import axpo
from algorithms.config import AXPOConfig
from algorithms.grpo import grpo_batch
from axpo_env import render_tool_call

CALL = render_tool_call("calculator", {"expression": "6*7"})
EPS = 1e-4  # TRL's std epsilon, used by every normalization below


@pytest.fixture(scope="module")
def tokenizer():
    return load_processor(tiny.cached("text"))


def make_turn(tokenizer, thinking: str, action: str, logprob: float, start: int = 0,
              thinking_logprob: float = -0.1) -> Turn:
    """A turn whose action tokens have `logprob` each and thinking tokens `thinking_logprob`."""
    text = f"<think>{thinking}</think>\n{action}"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    span = find_action(text, ids, tokenizer)
    logprobs = [thinking_logprob] * len(ids)
    if span is not None:
        logprobs[span.start:span.end] = [logprob] * (span.end - span.start)
    completion = Completion(text, ids, logprobs, [1.0] * len(ids))
    return Turn(snapshot=None, start=start, env_ids=[7, 7], completion=completion, action=span)


def make_traj(tokenizer, correct: bool, tool: bool, confidence: float = 0.5,
              train_from: int = 0, thinking_logprob: float = -0.1) -> Trajectory:
    action = CALL if tool else "<answer>1</answer>"
    t = make_turn(tokenizer, "think", action, float(np.log(confidence)),
                  thinking_logprob=thinking_logprob)
    ids = [7, 7] + t.completion.token_ids
    return Trajectory("q", 0, turns=[t], sequence=TokenPrompt(ids), reward=float(correct),
                      info={"correct": correct, "tool_calls": int(tool)}, train_from=train_from)


def test_action_span_is_the_serialized_call_and_the_prefix_ends_after_its_opening_tag(
        tokenizer):
    t = make_turn(tokenizer, "let me compute", CALL, -1.0)
    ids, span = t.completion.token_ids, t.action
    assert span.kind == "call"
    assert tokenizer.decode(ids[span.start:span.end]) == CALL  # tags in, thinking out
    assert tokenizer.decode(ids[:span.start + 1]) == "<think>let me compute</think>\n<tool_call>"
    assert make_turn(tokenizer, "done", "<answer>3</answer>", -1.0).action.kind == "answer"
    planned = f"<think>maybe {CALL}</think>\n<answer>2</answer>"  # a call in the thinking
    planned_ids = tokenizer(planned, add_special_tokens=False)["input_ids"]
    assert find_action(planned, planned_ids, tokenizer).kind == "answer"
    assert find_action("no action", [1, 2], tokenizer) is None


def test_the_no_tool_ablation_keeps_the_whole_opening_answer_tag(tokenizer):
    """`<answer>` is two tokens of the tiny tokenizer ('<answer', '>'): the kept prefix must end
    after both (it used to end at '...<answer'), as `<tool_call>`'s ends after its one."""
    assert len(tokenizer("<answer>", add_special_tokens=False)["input_ids"]) == 2
    group = [make_traj(tokenizer, False, False, confidence=c) for c in (0.2, 0.4)]
    (best, _) = axpo.candidates(group, 0, AXPOConfig(resample_subgroup="no_tool"))
    ids = group[best.source].turns[0].completion.token_ids
    assert tokenizer.decode(ids[:best.keep]) == "<think>think</think>\n<answer>"
    (call,) = axpo.candidates([make_traj(tokenizer, False, True)], 0, AXPOConfig())
    ids = make_traj(tokenizer, False, True).turns[0].completion.token_ids
    assert tokenizer.decode(ids[:call.keep]) == "<think>think</think>\n<tool_call>"


def test_triggers_exactly_on_all_wrong_tool_using_subgroups(tokenizer):
    def group(*rollouts):
        return [make_traj(tokenizer, c, u) for c, u in rollouts]

    cfg = AXPOConfig()
    cases = {
        "tool users all wrong, a no-tool rollout right": (
            group((False, True), (False, True), (True, False)), True),
        "a tool user right": (group((False, True), (True, True), (False, False)), False),
        "nobody used a tool": (group((False, False), (False, False)), False),
        "all right": (group((True, True), (True, False)), False),
        "all wrong, tools too": (group((False, True), (False, False)), True),
    }
    for name, (g, expected) in cases.items():
        assert bool(axpo.candidates(g, 0, cfg)) == expected, name
    no_tool = AXPOConfig(resample_subgroup="no_tool")  # the ablation triggers on the other side
    assert axpo.candidates(group((True, True), (False, False)), 0, no_tool)
    assert not axpo.candidates(group((False, True), (True, False)), 0, no_tool)


def test_ranking_is_by_the_call_span_confidence_not_the_thinking(tokenizer):
    # Source 0 is unsure of its call but sure of its thinking; source 1 the opposite.
    g = [make_traj(tokenizer, False, True, confidence=0.2, thinking_logprob=-0.01),
         make_traj(tokenizer, False, True, confidence=0.9, thinking_logprob=-3.0)]
    ranked = axpo.candidates(g, 0, AXPOConfig())
    assert [b.source for b in ranked] == [0, 1]
    assert ranked[0].score == pytest.approx(0.2) and ranked[1].score == pytest.approx(0.9)
    call_start = g[0].turns[0].action.start
    assert ranked[0].keep == call_start + 1 and ranked[0].turn == 0


def test_budget_is_breadth_first_in_whole_blocks(tokenizer):
    def question(*confidences):
        return [make_traj(tokenizer, False, True, c) for c in confidences]

    groups = [question(0.5, 0.1, 0.3), question(0.4, 0.6), question(0.05)]
    cfg = AXPOConfig(resamples_per_prefix=2)
    per_group = [axpo.candidates(g, i, cfg) for i, g in enumerate(groups)]
    rng = np.random.default_rng(0)
    picks = axpo.allocate(per_group, 4, cfg, rng)
    # round 1: every question's least confident source (0.05, 0.1, 0.4), then round 2 (0.3)
    assert [(b.group, b.source) for b in picks] == [(2, 0), (0, 1), (1, 0), (0, 2)]
    assert len(axpo.allocate(per_group, 2, cfg, rng)) == 2
    # r = 0.25 of the step's 6 rollouts = 1.5 resamples: not one whole block of K = 2
    assert int(cfg.resample_ratio * 6 // cfg.resamples_per_prefix) == 0


def hand_built_step(tokenizer):
    """Three questions of four rollouts: A's tool users are all wrong (a no-tool rollout is
    right), B has a right tool user, C uses no tool. A's source 0 is the least confident."""
    a = [make_traj(tokenizer, False, True, 0.2), make_traj(tokenizer, False, True, 0.7),
         make_traj(tokenizer, True, False), make_traj(tokenizer, False, False)]
    b = [make_traj(tokenizer, True, True), make_traj(tokenizer, False, True),
         make_traj(tokenizer, False, False), make_traj(tokenizer, False, False)]
    c = [make_traj(tokenizer, True, False)] + [make_traj(tokenizer, False, False)
                                               for _ in range(3)]
    return [a, b, c]


def resamples_of(tokenizer, source: Trajectory, keep: int, rewards: list[float]):
    cut = source.turns[0].generated_start + keep
    return [make_traj(tokenizer, bool(r), True, train_from=cut) for r in rewards]


def test_every_tokens_advantage_matches_eq_2_to_5(tokenizer):
    groups = hand_built_step(tokenizer)
    cfg = AXPOConfig(resamples_per_prefix=2)
    per_group = [axpo.candidates(g, i, cfg) for i, g in enumerate(groups)]
    assert [bool(c) for c in per_group] == [True, False, False]  # only A triggers
    blocks = int(cfg.resample_ratio * 12 // cfg.resamples_per_prefix)  # 0.25 * 12 / 2 = 1
    (chosen,) = axpo.allocate([c for c in per_group if c], blocks, cfg, None)
    assert (chosen.group, chosen.source) == (0, 0)
    chosen.resamples = resamples_of(tokenizer, groups[0][0], chosen.keep, [1.0, 0.0])
    batch = axpo.axpo_batch(groups, [chosen], cfg)
    rows = {id(s.trajectory): s for s in batch.samples}

    # By hand. A group of rewards [0,0,1,0] (or [1,0,0,0]): mean 0.25, unbiased std 0.5.
    wrong, right = -0.25 / (0.5 + EPS), 0.75 / (0.5 + EPS)
    # Eq. 2, the resamples [1, 0]: mean 0.5, std sqrt(0.5) = 0.70710678.
    resample_adv = 0.5 / (0.70710678 + EPS)
    # Eq. 3-4: recovery reward 1 replaces the source's 0 in A: [1,0,1,0], std sqrt(1/3).
    prefix_adv = 0.5 / (0.57735027 + EPS)

    src = groups[0][0]
    cut = src.turns[0].generated_start + chosen.keep  # ids [0, cut) are t1_src
    s = rows[id(src)]
    assert s.mask[:cut - 1].sum() == cut - 1 - 2 + 1  # every generated prefix id, env ids not
    assert not s.mask[cut - 1:].any()  # the failed continuation is masked
    assert torch.allclose(s.advantages[s.mask.bool()], torch.tensor(prefix_adv), atol=1e-5)
    for r, expected in zip(chosen.resamples, (resample_adv, -resample_adv)):
        row = rows[id(r)]
        assert not row.mask[:cut - 1].any() and row.mask[cut - 1:].any()  # continuation only
        assert torch.allclose(row.advantages[row.mask.bool()], torch.tensor(expected), atol=1e-5)
    expected_plain = {id(groups[0][1]): wrong, id(groups[0][2]): right, id(groups[0][3]): wrong,
                      id(groups[1][0]): right, id(groups[2][0]): right}
    for g in (groups[1][1:], groups[2][1:]):
        expected_plain.update({id(t): wrong for t in g})
    for key, expected in expected_plain.items():  # untouched rollouts: plain GRPO
        assert torch.allclose(rows[key].advantages, torch.tensor(expected), atol=1e-5)
        assert torch.equal(rows[key].mask, torch.tensor(
            [0.0] + [1.0] * (len(rows[key].trajectory.ids) - 2)))
    # The resamples do not dilute the step's 12 rollouts: normalizers are GRPO's.
    plain = grpo_batch(groups, cfg)
    assert (batch.num_sequences, batch.num_tokens) == (plain.num_sequences, plain.num_tokens) \
        == (12, sum(len(t.ids) - 2 for g in groups for t in g))
    assert len(batch.samples) == 14


def test_each_ablation_changes_exactly_what_it_names(tokenizer):
    def run(**switches):
        groups = hand_built_step(tokenizer)
        cfg = AXPOConfig(resamples_per_prefix=2, **switches)
        (chosen,) = axpo.allocate([axpo.candidates(groups[0], 0, cfg)], 1, cfg,
                                  np.random.default_rng(0))
        chosen.resamples = resamples_of(tokenizer, groups[0][chosen.source], chosen.keep,
                                        [1.0, 0.0])
        batch = axpo.axpo_batch(groups, [chosen], cfg)
        return groups, chosen, {id(s.trajectory): s for s in batch.samples}

    wrong = -0.25 / (0.5 + EPS)
    resample_adv = 0.5 / (0.70710678 + EPS)
    groups, chosen, rows = run(prefix_credit=False)
    src = rows[id(groups[0][0])]  # trained as an ordinary failed rollout, all of it
    assert src.mask.sum() == len(src.trajectory.ids) - 2
    assert torch.allclose(src.advantages, torch.tensor(wrong), atol=1e-5)
    assert torch.allclose(rows[id(chosen.resamples[0])].advantages, torch.tensor(resample_adv),
                          atol=1e-5)

    groups, chosen, rows = run(separate_advantage_group=False)
    # A's 4 rollouts and the 2 resamples in one group: rewards [0,0,1,0,1,0], mean 1/3,
    # std sqrt(((1/3)^2 * 4 + (2/3)^2 * 2) / 5) = sqrt(4/15)
    std = (4 / 15) ** 0.5
    assert torch.allclose(rows[id(chosen.resamples[0])].advantages,
                          torch.tensor((2 / 3) / (std + EPS)), atol=1e-5)
    assert torch.allclose(rows[id(groups[0][1])].advantages,
                          torch.tensor((-1 / 3) / (std + EPS)), atol=1e-5)
    # prefix credit stays: [1,0,1,0,1,0] gives the source 0.5 / sqrt(0.3)
    assert torch.allclose(rows[id(groups[0][0])].advantages,
                          torch.tensor(0.5 / (0.3 ** 0.5 + EPS)), atol=1e-5)
    assert torch.allclose(rows[id(groups[1][0])].advantages, torch.tensor(0.75 / (0.5 + EPS)),
                          atol=1e-5)  # other groups untouched

    groups, chosen, rows = run(prefix_fix=False)
    assert (chosen.turn, chosen.keep) == (0, 0)  # resampled from the question
    src = rows[id(groups[0][0])]
    assert src.mask.sum() == len(src.trajectory.ids) - 2  # no prefix credit without a prefix

    groups, chosen, rows = run(ranking="random")
    assert chosen.source in (0, 1)
    picks = {axpo.allocate([axpo.candidates(groups[0], 0, AXPOConfig(ranking="random"))], 1,
                           AXPOConfig(ranking="random"), np.random.default_rng(s))[0].source
             for s in range(12)}
    assert picks == {0, 1}  # uncertainty ranking always picks 0; random picks both


def test_arpo_branches_after_a_tool_result_where_entropy_rises(tokenizer):
    def two_turns(rise: float):
        first = make_turn(tokenizer, "a", CALL, -0.5)
        second = make_turn(tokenizer, "b", "<answer>1</answer>", -0.5, start=30)
        second.completion.entropies = [1.0 + rise] * len(second.completion.entropies)
        ids = list(range(30)) + [7] * 40
        return Trajectory("q", 0, turns=[first, second], sequence=TokenPrompt(ids),
                          info={"correct": True, "tool_calls": 1}, reward=1.0)

    group = [two_turns(0.5), two_turns(2.0), two_turns(-0.3)]
    found = axpo.arpo_candidates(group, 0, AXPOConfig(exploration="arpo"))
    assert [(b.source, b.turn, b.keep) for b in found] == [(1, 1, 0), (0, 1, 0)]


def test_explore_resamples_continue_the_call_from_the_source_prefix():
    policy = HFPolicy.from_pretrained(tiny.cached("vl"))
    sampling = SamplingParams(max_new_tokens=8, seed=0)
    env_kwargs = {"tools": ["calculator"], "max_turns": 2}
    wrong_call = "<think>go</think>\n" + CALL

    class Scripted(HFPolicy):
        def sample(self, prompts, n=1, sampling=None):  # every first turn: a wrong tool call
            ids = self.tokenizer(wrong_call, add_special_tokens=False)["input_ids"]
            if all(len(p) == len(prompts[0]) for p in prompts) and not hasattr(self, "done"):
                self.done = True
                return [[Completion(wrong_call, ids, [-1.0] * len(ids), [1.0] * len(ids),
                                    list(p.ids))] * n for p in prompts]
            return super().sample(prompts, n=n, sampling=sampling)

    scripted = Scripted(policy.model, policy.processor)
    trajs = rollout("AXPO-MathVista-v0", scripted, ["13"], group_size=4, sampling=sampling,
                    env_kwargs=env_kwargs, progress=False)
    assert all(t.used_tool and not t.correct for t in trajs)
    cfg = AXPOConfig(resamples_per_prefix=2, resample_ratio=1.0)
    branches, stats = axpo.explore([trajs], policy, "AXPO-MathVista-v0", cfg, sampling,
                                   np.random.default_rng(0), env_kwargs=env_kwargs)
    assert stats["axpo/budget_blocks"] == 2 and stats["axpo/selected_prefixes"] == 2
    assert stats["axpo/resamples"] == 4 and stats["axpo/triggered_questions"] == 1
    tool_call = policy.tokenizer.convert_tokens_to_ids("<tool_call>")
    for b in branches:
        source = trajs[b.source]
        shared = source.turns[0].generated_start + b.keep
        assert source.ids[shared - 1] == tool_call  # the prefix ends with the opening tag
        for r in b.resamples:
            assert r.ids[:shared] == source.ids[:shared]
            assert r.turns[0].snapshot == source.turns[0].snapshot
            assert r.train_from == shared and not any(r.train_mask[:shared])
            assert any(r.train_mask[shared:])
            # the resampled turn continues the call: its text begins inside <tool_call>
            assert r.turns[0].completion.text.startswith(wrong_call[:wrong_call.index(
                "<tool_call>") + len("<tool_call>")])
            assert r.turns[0].action is None or r.turns[0].action.kind == "call"
