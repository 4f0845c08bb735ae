"""Multi-turn rollouts: drive envs and a policy over batches of episodes; branch from any turn.

A `Trajectory` is exact enough to train on and to branch from: per turn the env snapshot before
it, the ids the env added (loss mask 0) and the ids the policy generated (mask 1, with logprobs
and entropies). Its token sequence is exactly what the model was fed and produced, so one
teacher-forced forward pass re-scores it (`HFPolicy.score`).

The loop takes either contract of `agents.policy`: a `TokenPolicy` (`HFPolicy`) is fed token
prompts it extends turn by turn, and only it can be branched; any other `Policy` (`OpenAIPolicy`)
is fed the env's observations and its trajectories hold the turns as the backend returned them.
Nothing here imports torch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import gymnasium as gym
from tqdm.auto import tqdm

from agents.actions import ActionSpan, find_action
from agents.image_slots import policy_slot_error
from agents.policy import Completion, Policy, SamplingParams, TokenPolicy
from agents.tokens import TokenPrompt
from axpo_env import EnvSnapshot

logger = logging.getLogger(__name__)


@dataclass
class Turn:
    """One agent turn: the env before it, what the env added, what the policy generated."""

    snapshot: EnvSnapshot
    start: int  # index in the trajectory's ids where this turn's env-added ids begin
    env_ids: list[int]  # mask 0: the prompt (first turn) or the env's reply to the last turn
    completion: Completion  # mask 1: the generated ids with logprobs and entropies
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    tool_result: list[dict[str, Any]] = field(default_factory=list)  # messages the env replied
    action: ActionSpan | None = None  # where the turn's tool call / answer sits in its ids

    @property
    def generated_start(self) -> int:
        return self.start + len(self.env_ids)


@dataclass
class Trajectory:
    """One episode: rollout number `index_in_group` of its task's group. `sequence` holds the
    whole token sequence, every id (prompt, env replies, completions) and image in order (None
    for a policy without token access); `mask[t]` is 1 on ids the policy generated. `error` is
    set when the episode was cut short by a failure."""

    task_id: str
    index_in_group: int
    turns: list[Turn] = field(default_factory=list)
    sequence: TokenPrompt | None = None
    reward: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    parent: tuple[int, int] | None = None  # (turn, kept generated ids) if this is a branch
    train_from: int = 0  # ids before this were trained in the source trajectory (branches)
    sampling: SamplingParams | None = None  # what sampled it; `branch` samples alike by default
    # A trainer's reward functions (`algorithms.rewards`): each one's value, and their weighted
    # sum, the reward the update trains on. Empty / None until a trainer scores the rollout.
    reward_terms: dict[str, float] = field(default_factory=dict)
    training_reward: float | None = None

    @property
    def ids(self) -> list[int]:
        return self.sequence.ids if self.sequence else []

    @property
    def mask(self) -> list[int]:
        mask = [0] * len(self.ids)
        for turn in self.turns:
            g = turn.generated_start
            mask[g:g + len(turn.completion.token_ids)] = [1] * len(turn.completion.token_ids)
        return mask

    @property
    def train_mask(self) -> list[int]:
        """`mask` without the ids a branch shares with its source: those are trained once."""
        mask = self.mask
        mask[:self.train_from] = [0] * min(self.train_from, len(mask))
        return mask

    @property
    def logprobs(self) -> list[float]:
        return self._per_token("logprobs")

    @property
    def entropies(self) -> list[float]:
        return self._per_token("entropies")

    def _per_token(self, name: str) -> list[float]:
        values = [0.0] * len(self.ids)
        for turn in self.turns:
            g = turn.generated_start
            got = getattr(turn.completion, name)
            values[g:g + len(got)] = got
        return values

    @property
    def correct(self) -> bool:
        return bool(self.info.get("correct", False))

    @property
    def used_tool(self) -> bool:
        return self.info.get("tool_calls", 0) > 0

    @property
    def done(self) -> bool:
        return bool(self.turns) and (self.turns[-1].terminated or self.turns[-1].truncated)


EnvFactory = Callable[[], gym.Env]


class EnvPool:
    """Envs of one id, made on first need and reused by every `rollout` and `branch` that is
    given the pool, so a task (for a real benchmark: its dataset) loads once per env, not once
    per episode. Episodes reset them (a branch: `reset(options={"snapshot": s})`). The caller
    owns the pool and closes it; `made` counts the envs ever built."""

    def __init__(self, env: str | EnvFactory | None = None,
                 env_kwargs: dict[str, Any] | None = None, envs: Sequence[gym.Env] = ()):
        self._make = _factory(env, env_kwargs) if env is not None else None
        self.envs = list(envs)
        self.made = 0

    def take(self, n: int) -> list[gym.Env]:
        """`n` envs, building the missing ones."""
        while len(self.envs) < n:
            if self._make is None:
                raise ValueError(f"{n} envs needed, {len(self.envs)} given")
            self.envs.append(self._make())
            self.made += 1
        return self.envs[:n]

    def close(self) -> None:
        for e in self.envs:
            e.close()
        self.envs.clear()


Envs = str | EnvFactory | EnvPool | Sequence[gym.Env]


def _pool(env: Envs, env_kwargs: dict[str, Any] | None) -> tuple[EnvPool, bool]:
    """The pool to draw envs from, and whether this call made it (and so must close it)."""
    if isinstance(env, EnvPool):
        return env, False
    if isinstance(env, Sequence) and not isinstance(env, str):
        return EnvPool(envs=env), False
    return EnvPool(env, env_kwargs), True


@dataclass
class _Episode:
    """An episode in flight: its env, its trajectory and what the next turn is sampled from:
    the token prompt (a `TokenPolicy`), else the env's last observation."""

    env: gym.Env  # possibly wrapped; snapshot/restore go through .unwrapped
    trajectory: Trajectory
    observation: dict[str, Any]
    prompt: TokenPrompt | None
    pending_env_ids: list[int]
    keep: Completion | None = None  # the kept start of the next turn (branching)


def rollout(env: Envs, policy: TokenPolicy | Policy, tasks: Sequence[str | int],
            group_size: int = 1, sampling: SamplingParams | None = None, seed: int = 0,
            batch_size: int = 16, env_kwargs: dict[str, Any] | None = None,
            progress: bool = True) -> list[Trajectory]:
    """Run `group_size` episodes per task (task ids, or indices into the env's items) and
    return their trajectories, grouped by task in order. Episodes advance turn by turn in
    batches of `batch_size`; one that fails is recorded (`error`) and the others go on.
    `env`: an env id or factory (envs are made and closed here), or an `EnvPool` or envs the
    caller owns, reused and left open.

    With a `TokenPolicy` (`HFPolicy`) the trajectories hold exact token records; any other
    `Policy` (e.g. `OpenAIPolicy` for evaluation on a server) is fed the env's observations, and
    its trajectories hold the turns' completions as the server returned them."""
    sampling = sampling or SamplingParams()
    tokens = isinstance(policy, TokenPolicy)
    pool, owned = _pool(env, env_kwargs)
    jobs = [(task, g) for task in tasks for g in range(group_size)]
    out: list[Trajectory] = []
    bar = tqdm(total=len(jobs), desc="rollout", unit="ep", disable=not progress)
    try:
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start:start + batch_size]
            envs = pool.take(len(chunk))
            episodes = []
            last: tuple[Any, Any] = (None, None)  # (observation, its prompt): a group's
            for (task, g), e in zip(chunk, envs):  # episodes mostly start alike: render once
                options = {"task_id": task} if isinstance(task, str) else {"index": int(task)}
                traj = Trajectory(task_id=str(task), index_in_group=g, sampling=sampling)
                try:
                    obs, _ = e.reset(seed=seed + start + len(episodes), options=options)
                    traj.task_id = e.unwrapped.snapshot().task_id
                    prompt = None
                    if tokens:
                        same = last[0] is not None and _equal(obs, last[0])
                        prompt = last[1] if same else policy.prompt(obs)
                        last = (obs, prompt)
                    if (bad := policy_slot_error(prompt, policy)) is not None:
                        traj.error = f"prompt: {bad}"  # never sampled: the batch goes on
                    else:
                        episodes.append(_Episode(e, traj, obs, prompt,
                                                 list(prompt.ids) if prompt else []))
                except Exception as exc:  # a bad task or image: record it, go on
                    traj.error = f"reset failed: {type(exc).__name__}: {exc}"
                out.append(traj)
            chunk_sampling = sampling if sampling.seed is None else replace(
                sampling, seed=sampling.seed + start)
            _play(episodes, policy, chunk_sampling)
            bar.update(len(chunk))
    finally:
        bar.close()
        if owned:
            pool.close()
    return out


@dataclass(frozen=True)
class BranchPoint:
    """Where to resample: turn `turn` of `trajectory`, keeping its first `keep` generated ids,
    `n` times."""

    trajectory: Trajectory
    turn: int
    keep: int
    n: int


def branch(trajectory: Trajectory, turn: int, keep: int, policy: TokenPolicy, n: int,
           env: Envs, sampling: SamplingParams | None = None,
           env_kwargs: dict[str, Any] | None = None) -> list[Trajectory]:
    """Resample from inside turn `turn` of `trajectory`: restore the env to its snapshot before
    that turn, keep the first `keep` generated ids of the turn (e.g. its thinking up to the tool
    call), and sample `n` continuations to the end of the episode, in one batch.

    The kept ids are shared, not regenerated: each branch's turn starts with them (with their
    recorded logprobs) and only what follows is sampled. `env` is an env id or factory (n envs
    are made and closed here), or an `EnvPool` or n envs of the same id to reuse; each is
    restored through its wrappers with `reset(options={"snapshot": ...})`. `sampling` None:
    the trajectory's own (what `rollout` sampled it with)."""
    return branch_many([BranchPoint(trajectory, turn, keep, n)], policy, env, sampling,
                       env_kwargs)[0]


def branch_many(points: Sequence[BranchPoint], policy: TokenPolicy, env: Envs,
                sampling: SamplingParams | None = None,
                env_kwargs: dict[str, Any] | None = None) -> list[list[Trajectory]]:
    """`branch` at several points at once: each point's first turn is sampled from one shared
    prefill of its prefix (point i with seed `sampling.seed + 104729 * i`), then all the
    episodes play on together in one batch. Returns the resamples per point, in order.
    `sampling` None: the first point's trajectory's."""
    sampling = sampling or (points[0].trajectory.sampling if points else None) or SamplingParams()
    pool, owned = _pool(env, env_kwargs)
    try:
        envs = iter(pool.take(sum(p.n for p in points)))
        per_point, episodes, firsts = [], [], []
        for i, point in enumerate(points):
            whole = point.trajectory
            source = whole.turns[point.turn]
            kept = Completion(text="", token_ids=source.completion.token_ids[:point.keep],
                              logprobs=source.completion.logprobs[:point.keep],
                              entropies=source.completion.entropies[:point.keep])
            prefix = whole.sequence.prefix(source.generated_start, policy.patches_per_token)
            mine = []
            for _ in range(point.n):
                e = next(envs)
                obs, _ = e.reset(seed=source.snapshot.seed,
                                 options={"snapshot": source.snapshot})
                traj = Trajectory(task_id=whole.task_id, index_in_group=whole.index_in_group,
                                  turns=[_copy_turn(t) for t in whole.turns[:point.turn]],
                                  parent=(point.turn, point.keep),
                                  train_from=source.generated_start + point.keep,
                                  sampling=sampling)
                mine.append(_Episode(e, traj, obs, prefix, list(source.env_ids), keep=kept))
            seeded = sampling if sampling.seed is None else replace(
                sampling, seed=sampling.seed + 104_729 * i)
            # the n first turns share prefix + kept ids: one prefill, n samples
            firsts += policy.sample_shared(prefix.extend(kept.token_ids), point.n, seeded)
            per_point.append(mine)
            episodes += mine
        _play(episodes, policy, sampling, first=firsts)
    finally:
        if owned:
            pool.close()
    return [[ep.trajectory for ep in mine] for mine in per_point]


def _play(episodes: list[_Episode], policy: TokenPolicy | Policy, sampling: SamplingParams,
          first: list[Completion] | None = None) -> None:
    """Advance every episode turn by turn until all are done, batching the policy calls.
    `first`: completions already sampled for the episodes' next turn."""
    active = [ep for ep in episodes if ep.trajectory.error is None]
    step = 0
    while active:
        turn_sampling = _turn_seed(sampling, step)
        if first is not None:
            completions, first = first, None
        elif isinstance(policy, TokenPolicy):
            prompts = [ep.prompt.extend(ep.keep.token_ids) if ep.keep else ep.prompt
                       for ep in active]
            completions = [c[0] for c in policy.sample(prompts, n=1, sampling=turn_sampling)]
        else:
            completions = [c[0] for c in policy.generate([ep.observation for ep in active], n=1,
                                                         sampling=turn_sampling)]
        step += 1
        still = []
        for ep, completion in zip(active, completions):
            if ep.keep is not None:
                completion = _join(ep.keep, completion, policy)
                ep.keep = None
            if _advance(ep, completion, policy):
                still.append(ep)
        active = still


def _advance(ep: _Episode, completion: Completion, policy: TokenPolicy | Policy) -> bool:
    """Step one episode with one completion; True if it goes on."""
    traj = ep.trajectory
    if completion.finish_reason == "error":
        traj.error = completion.error
        _finish(ep, policy=policy)
        return False
    snapshot = ep.env.unwrapped.snapshot()
    n_messages = len(snapshot.messages)
    start = (len(ep.prompt) if ep.prompt is not None else 0) - len(ep.pending_env_ids)
    try:
        obs, reward, terminated, truncated, info = ep.env.step(completion.text)
    except Exception as exc:  # an env bug: record it; the batch goes on
        logger.warning("env step failed", exc_info=True)
        traj.error = f"env step failed: {type(exc).__name__}: {exc}"
        traj.turns.append(Turn(snapshot, start, ep.pending_env_ids, completion))
        _finish(ep, completion, policy)
        return False
    reply = obs["messages"][n_messages + 1:]
    tokens = isinstance(policy, TokenPolicy)
    action = find_action(completion.text, completion.token_ids, policy.tokenizer) \
        if tokens else None
    traj.turns.append(Turn(snapshot, start, ep.pending_env_ids, completion, float(reward),
                           terminated, truncated, info, reply, action))
    traj.reward, traj.info = float(reward), info
    if terminated or truncated:
        _finish(ep, completion, policy)
        return False
    tools, ep.observation = ep.observation["tools"], obs
    if not tokens:
        return True
    try:
        prompt, env_ids = policy.continue_prompt(ep.prompt, completion, reply, tools)
    except Exception as exc:
        traj.error = f"could not encode the env's reply: {type(exc).__name__}: {exc}"
    else:  # checked before the batch samples from it
        if (bad := policy_slot_error(prompt, policy)) is None:
            ep.prompt, ep.pending_env_ids = prompt, env_ids
            return True
        traj.error = f"after turn {len(traj.turns) - 1}: {bad}"
    _finish(ep, completion, policy)
    return False


def _finish(ep: _Episode, last: Completion | None = None, policy: Any = None) -> None:
    """Record the episode's whole token sequence, through `last`'s ids (token policies only);
    a sequence whose image slots do not match its images is the episode's error."""
    if ep.prompt is not None:
        ep.trajectory.sequence = ep.prompt.extend(last.token_ids) if last else ep.prompt
        bad = policy_slot_error(ep.trajectory.sequence, policy)
        if bad is not None and ep.trajectory.error is None:
            ep.trajectory.error = f"after turn {len(ep.trajectory.turns) - 1}: {bad}"


def _join(kept: Completion, rest: Completion, policy: TokenPolicy) -> Completion:
    """A branched turn: the kept ids followed by the newly sampled ones."""
    ids = kept.token_ids + rest.token_ids
    return Completion(text=policy.tokenizer.decode(ids, skip_special_tokens=False),
                      token_ids=ids, logprobs=kept.logprobs + rest.logprobs,
                      entropies=kept.entropies + rest.entropies,
                      prompt_token_ids=rest.prompt_token_ids,
                      finish_reason=rest.finish_reason, error=rest.error)


def _copy_turn(turn: Turn) -> Turn:
    return Turn(turn.snapshot, turn.start, list(turn.env_ids), turn.completion, turn.reward,
                turn.terminated, turn.truncated, dict(turn.info), list(turn.tool_result),
                turn.action)


def _equal(a: Any, b: Any) -> bool:
    """`a == b`, False where the comparison itself fails (e.g. arrays in an observation)."""
    try:
        return bool(a == b)
    except Exception:
        return False


def _turn_seed(sampling: SamplingParams, step: int) -> SamplingParams:
    """A seed per turn: reusing one seed would replay the same random stream every turn."""
    if sampling.seed is None:
        return sampling
    return replace(sampling, seed=sampling.seed + 7919 * step)


def _factory(env: str | EnvFactory, kwargs: dict[str, Any] | None) -> EnvFactory:
    if isinstance(env, str):
        return lambda: gym.make(env, **(kwargs or {}))
    return env
