"""Multi-turn rollouts and branching: exact token records, tool images, failures isolated."""

from __future__ import annotations

import gymnasium as gym
import pytest

import axpo_env  # noqa: F401
from agents import tiny
from agents.hf import HFPolicy
from agents.policy import Completion, SamplingParams
from agents.rollout import BranchPoint, EnvPool, branch, branch_many, rollout
from axpo_env import render_tool_call

SAMPLING = SamplingParams(max_new_tokens=10, temperature=1.0, seed=0)
ENV = "AXPO-MathVista-v0"
ENV_KWARGS = {"tools": ["crop", "calculator"], "max_turns": 3}


class ScriptedFirstTurns(HFPolicy):
    """The tiny model, except that its first turns are scripted tool calls (tokenized as the
    model would emit them), so episodes really go through tools and tool images."""

    def __init__(self, base: HFPolicy, script: list[str]):
        super().__init__(base.model, base.processor)
        self.script = script
        self.calls = 0

    def sample(self, prompts, n=1, sampling=None):
        if self.calls >= len(self.script):
            return super().sample(prompts, n=n, sampling=sampling)
        text = self.script[self.calls]
        self.calls += 1
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        out = []
        for p in prompts:
            logprobs, entropies = self.score(p.extend(ids), range(len(p), len(p) + len(ids)),
                                             sampling)
            out.append([Completion(text, list(ids), logprobs, entropies, list(p.ids))] * n)
        return out


@pytest.fixture(scope="module")
def policy():
    return HFPolicy.from_pretrained(tiny.cached("vl"))


def rescored(policy, trajectory):
    positions = [i for i, m in enumerate(trajectory.mask) if m]
    logprobs, _ = policy.score(trajectory.sequence, positions, SAMPLING)
    return logprobs, [trajectory.logprobs[i] for i in positions]


def test_rollout_groups_and_records_every_turn(policy):
    trajs = rollout(ENV, policy, ["8", "11"], group_size=2, sampling=SAMPLING,
                    env_kwargs=ENV_KWARGS, progress=False)
    assert [(t.task_id, t.index_in_group) for t in trajs] == [("8", 0), ("8", 1), ("11", 0),
                                                               ("11", 1)]
    for t in trajs:
        assert t.error is None and t.done and 1 <= len(t.turns) <= 3
        assert t.turns[0].start == 0 and t.turns[0].snapshot.turn == 0
        assert [turn.snapshot.turn for turn in t.turns] == list(range(len(t.turns)))
        assert sum(t.mask) == sum(len(turn.completion.token_ids) for turn in t.turns)
        assert len(t.ids) == len(t.mask) == len(t.logprobs) == len(t.entropies)


def test_trajectory_ids_reproduce_recorded_logprobs_through_tool_images(policy):
    crop = render_tool_call("crop", {"bbox": [0, 0, 0.5, 0.5]})
    calc = render_tool_call("calculator", {"expression": "6*7"})
    scripted = ScriptedFirstTurns(policy, ["<think>zoom</think>\n" + crop, calc])
    (t,) = rollout(ENV, scripted, ["8"], sampling=SAMPLING, env_kwargs=ENV_KWARGS,
                   progress=False)
    assert t.error is None and len(t.turns) == 3
    assert t.turns[0].info["tool_calls"] == 1 and t.turns[1].info["tool_calls"] == 2
    assert t.sequence.image_grid_thw.shape[0] == 2  # the task image and the crop
    pads = sum(1 for i in t.ids if i == policy.image_pad_id)
    assert pads == int(t.sequence.image_grid_thw.prod(-1).sum()) // policy.patches_per_token
    new, recorded = rescored(policy, t)
    assert new == pytest.approx(recorded, abs=1e-4)


def test_tool_reply_tokens_are_masked_and_generated_tokens_are_not(policy):
    scripted = ScriptedFirstTurns(policy, [render_tool_call("calculator", {"expression": "1+1"})])
    (t,) = rollout(ENV, scripted, ["8"], sampling=SAMPLING, env_kwargs=ENV_KWARGS,
                   progress=False)
    second = t.turns[1]
    env_span = t.mask[second.start:second.generated_start]
    assert env_span and not any(env_span)
    reply = policy.tokenizer.decode(second.env_ids)
    assert "<tool_response>" in reply and "2" in reply and reply.endswith("<think>\n")


def test_branch_keeps_the_prefix_and_resamples_the_rest(policy):
    calc = render_tool_call("calculator", {"expression": "6*7"})
    scripted = ScriptedFirstTurns(policy, ["<think>I will compute.</think>\n" + calc])
    (t,) = rollout(ENV, scripted, ["8"], sampling=SAMPLING, env_kwargs=ENV_KWARGS,
                   progress=False)
    keep = len(policy.tokenizer("<think>I will compute.</think>\n")["input_ids"])
    branches = branch(t, 0, keep, policy, n=3, env=ENV, sampling=SAMPLING,
                      env_kwargs=ENV_KWARGS)
    assert len(branches) == 3
    shared = t.turns[0].generated_start + keep
    for b in branches:
        assert b.parent == (0, keep) and b.error is None
        assert b.ids[:shared] == t.ids[:shared]
        assert b.turns[0].snapshot == t.turns[0].snapshot
        assert b.turns[0].completion.logprobs[:keep] == t.turns[0].completion.logprobs[:keep]
        new, recorded = rescored(policy, b)
        assert new == pytest.approx(recorded, abs=1e-4)
    assert len({tuple(b.ids[shared:]) for b in branches}) > 1


def test_branch_samples_as_the_rollout_did_unless_told_otherwise(policy):
    calc = render_tool_call("calculator", {"expression": "6*7"})
    scripted = ScriptedFirstTurns(policy, ["<think>I will compute.</think>\n" + calc])
    (t,) = rollout(ENV, scripted, ["8"], sampling=SAMPLING, env_kwargs=ENV_KWARGS,
                   progress=False)
    assert t.sampling == SAMPLING
    branches = branch(t, 0, 3, policy, n=2, env=ENV, env_kwargs=ENV_KWARGS)  # no sampling
    for b in branches:
        assert b.sampling == SAMPLING
        assert len(b.turns[0].completion.token_ids) <= 3 + SAMPLING.max_new_tokens
        assert all(len(turn.completion.token_ids) <= SAMPLING.max_new_tokens
                   for turn in b.turns[1:])


def test_branch_many_plays_every_points_resamples_in_one_batch_in_order(policy):
    calc = render_tool_call("calculator", {"expression": "6*7"})
    scripted = ScriptedFirstTurns(policy, ["<think>I will compute.</think>\n" + calc])
    sources = rollout(ENV, scripted, ["8", "11"], sampling=SAMPLING, env_kwargs=ENV_KWARGS,
                      progress=False)
    assert sources[0].ids != sources[1].ids  # two different questions
    keeps = (3, 5)
    batches = []
    original = policy.sample

    def counting(prompts, n=1, sampling=None):
        batches.append(len(prompts))
        return original(prompts, n=n, sampling=sampling)

    policy.sample = counting
    try:
        out = branch_many([BranchPoint(s, 0, k, 2) for s, k in zip(sources, keeps)], policy,
                          ENV, SAMPLING, env_kwargs=ENV_KWARGS)
    finally:
        del policy.sample
    assert [len(r) for r in out] == [2, 2]
    for source, keep, resamples in zip(sources, keeps, out):
        shared = source.turns[0].generated_start + keep
        assert all(r.ids[:shared] == source.ids[:shared] and r.train_from == shared
                   for r in resamples)
    assert batches and batches[0] == 4  # the second turns of all four played together


def test_a_failing_episode_is_recorded_and_the_batch_goes_on(policy):
    class Flaky(gym.Wrapper):
        def step(self, action):
            if self.unwrapped.snapshot().task_id == "11":
                raise RuntimeError("tool server exploded")
            return self.env.step(action)

    made = iter(range(100))

    def factory():
        next(made)
        return Flaky(gym.make(ENV, **ENV_KWARGS))

    trajs = rollout(factory, policy, ["8", "11", "nope"], sampling=SAMPLING, progress=False)
    ok, broken, missing = trajs
    assert ok.error is None and ok.done
    assert broken.error and "exploded" in broken.error
    assert missing.error and "reset failed" in missing.error


def test_any_policy_rolls_out_at_the_conversation_level():
    """A policy without token access (an HTTP server) still gets multi-turn episodes."""

    class Scripted:
        def __init__(self):
            self.seen = []

        def generate(self, conversations, n=1, sampling=None):
            out = []
            for conv in conversations:
                self.seen.append(len(conv["messages"]))
                text = (render_tool_call("calculator", {"expression": "7384 * 5926"})
                        if len(conv["messages"]) == 2 else "<answer>43757584</answer>")
                out.append([Completion(text)] * n)
            return out

    policy = Scripted()
    trajs = rollout(ENV, policy, ["13"], group_size=2, env_kwargs=ENV_KWARGS, progress=False)
    assert [t.reward for t in trajs] == [1.0, 1.0]
    assert all(t.info["tool_calls"] == 1 and len(t.turns) == 2 for t in trajs)
    assert "43757584" in trajs[0].turns[0].tool_result[-1]["content"][-1]["text"]
    assert policy.seen == [2, 2, 4, 4] and trajs[0].ids == []


def test_a_pool_the_caller_owns_is_reused_by_rollouts_and_branches_and_left_open(policy):
    closed = []

    class Counted(gym.Wrapper):  # a wrapper: restoring must go through it, not .unwrapped
        def close(self):
            closed.append(self)
            super().close()

    pool = EnvPool(lambda: Counted(gym.make(ENV, **ENV_KWARGS)))
    calc = render_tool_call("calculator", {"expression": "6*7"})
    scripted = ScriptedFirstTurns(policy, ["<think>x</think>\n" + calc])
    first = rollout(pool, scripted, ["8"], group_size=2, sampling=SAMPLING, progress=False)
    again = rollout(pool, policy, ["11"], group_size=2, sampling=SAMPLING, progress=False)
    branches = branch(first[0], 0, 3, policy, n=2, env=pool, sampling=SAMPLING)
    assert pool.made == 2 and not closed  # two envs served three calls, and stay open
    assert all(t.error is None for t in first + again + branches)
    assert all(b.ids[:first[0].turns[0].generated_start + 3]
               == first[0].ids[:first[0].turns[0].generated_start + 3] for b in branches)
    pool.close()
    assert len(closed) == 2


def test_reset_with_a_snapshot_restores_through_wrappers():
    env = gym.make(ENV, **ENV_KWARGS)  # OrderEnforcing, PassiveEnvChecker around the env
    env.reset(seed=1, options={"task_id": "8"})
    before = env.unwrapped.snapshot()
    env.step(render_tool_call("calculator", {"expression": "1+1"}))
    other = gym.make(ENV, **ENV_KWARGS)
    obs, info = other.reset(options={"snapshot": before})
    assert other.unwrapped.snapshot() == before and obs["messages"] == list(before.messages)
    assert info["turn"] == 0
