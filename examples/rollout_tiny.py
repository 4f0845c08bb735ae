"""Rollouts of a tiny Qwen3-VL on the MathVista env, with the Thinking-Acting diagnostics.

    python examples/rollout_tiny.py [--model PATH] [--tasks 8,11,13] [--group-size 4]

Without --model it builds a 1.5M-parameter Qwen3-VL from a config (untrained: it writes noise,
so expect format errors and no tool use; the point is the machinery). Point --model at a real
Qwen3-VL-Thinking checkpoint to see real behaviour. Prints every trajectory's turns (what the
env added, what the policy generated), the share of rollouts that call a tool, the share of
groups whose tool-using rollouts are all wrong, and a branch from the first trajectory.
"""

from __future__ import annotations

import argparse

from agents import load_policy
from agents.policy import SamplingParams
from agents.rollout import branch, rollout
from evaluation.metrics import thinking_acting_gap

ENV = "AXPO-MathVista-v0"


def short(text: str, limit: int = 90) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[:limit] + "..."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="checkpoint dir or hub name")
    parser.add_argument("--tasks", default="8,11,13")
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--max-turns", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    policy = load_policy(args.model)
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=1.0,
                              seed=args.seed)
    env_kwargs = {"tools": ["crop", "python", "calculator", "search"],
                  "max_turns": args.max_turns}
    trajectories = rollout(ENV, policy, args.tasks.split(","), group_size=args.group_size,
                           sampling=sampling, seed=args.seed, env_kwargs=env_kwargs)

    for t in trajectories:
        print(f"\n== task {t.task_id} rollout {t.index_in_group}: reward {t.reward} "
              f"tool calls {t.info.get('tool_calls', 0)} ids {len(t.ids)} "
              f"(generated {sum(t.mask)}){'  ERROR ' + t.error if t.error else ''}")
        for i, turn in enumerate(t.turns):
            print(f"  turn {i}: env added {len(turn.env_ids)} ids, policy generated "
                  f"{len(turn.completion.token_ids)} ({turn.completion.finish_reason}, "
                  f"mean entropy {_mean(turn.completion.entropies):.2f})")
            print(f"    policy: {short(turn.completion.text)}")
            if turn.tool_result:
                reply = turn.tool_result[-1]["content"][-1]["text"]
                print(f"    env:    {short(reply)}")

    gap = thinking_acting_gap(trajectories)
    print("\n== Thinking-Acting diagnostics")
    for key, value in gap.items():
        print(f"  {key:32s} {value:.3f}" if isinstance(value, float) else f"  {key:32s} {value}")

    first = trajectories[0]
    keep = len(first.turns[0].completion.token_ids) // 2
    branches = branch(first, turn=0, keep=keep, policy=policy, n=3, env=ENV,
                      sampling=sampling, env_kwargs=env_kwargs)
    print(f"\n== 3 branches of task {first.task_id} rollout 0 after {keep} kept ids of turn 0")
    for b in branches:
        print(f"  reward {b.reward}  turn 0: {short(b.turns[0].completion.text)}")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


if __name__ == "__main__":
    main()
