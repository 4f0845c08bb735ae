"""One prompt from SFT to RL to eval: a checkpoint records how its prompts were rendered (tool
schemas in or out) and every loader uses that by default, so the same observation is the same ids
in `axpo sft`'s data, `axpo train`'s rollouts and `axpo eval`."""

from __future__ import annotations

import gymnasium as gym
import torch

import axpo_env  # noqa: F401
from agents.chat_policy import ChatTokenPolicy
from agents.loading import load_policy
from agents.pretrained import recorded_render_tools
from algorithms.outputs import latest_checkpoint
from algorithms.sft import IGNORE, load_sft_dataset, tokenize_example
from axpo_cli import cli
from axpo_env.tasks.zoom_boxes import write_expert_demos

ENV = "AXPO-ZoomBoxes-v0"


def test_sft_train_and_eval_render_the_same_prompt_ids(tmp_path, monkeypatch):
    demos = write_expert_demos(tmp_path / "demos", count=2, drills=False)
    seen = []  # every policy that rendered a prompt, in order
    real_prompt = ChatTokenPolicy.prompt

    def spy(self, *args, **kwargs):
        seen.append(self)
        return real_prompt(self, *args, **kwargs)

    monkeypatch.setattr(ChatTokenPolicy, "prompt", spy)
    quiet = ["--report-to", "none"]
    assert cli.main(["sft", "--data-path", str(demos), "--model", "tiny", "--max-steps", "1",
                     "--output-dir", str(tmp_path / "sft"), *quiet]) == 0
    sft = latest_checkpoint(tmp_path / "sft")
    assert recorded_render_tools(sft) is False  # the demos carry no tool schemas

    assert cli.main(["train", "--algo", "grpo", "--model", str(sft), "--env-id", ENV,
                     "--max-steps", "1", "--tasks-per-step", "1", "--num-generations", "2",
                     "--max-completion-length", "4", "--max-turns", "1", "--beta", "0",
                     "--output-dir", str(tmp_path / "rl"), *quiet]) == 0
    rl = latest_checkpoint(tmp_path / "rl")
    assert recorded_render_tools(rl) is False
    trainer_policy = seen[-1]

    assert cli.main(["eval", "--model", str(rl), "--envs", ENV, "--limit", "1",
                     "--max-completion-length", "4", "--output-dir",
                     str(tmp_path / "eval")]) == 0
    eval_policy = seen[-1]
    assert eval_policy is not trainer_policy

    # the first demo's observation, as the env gives it, against SFT's ids for that demo
    example = load_sft_dataset(demos)[0]
    tokens = tokenize_example(trainer_policy.processor, example)
    first_label = int(torch.nonzero(tokens["labels"] != IGNORE)[0])
    sft_prompt = tokens["input_ids"][:first_label].tolist()
    env = gym.make(ENV, split="demo")
    obs, _ = env.reset(seed=0, options={"index": 0})
    assert trainer_policy.prompt(obs).ids == sft_prompt
    assert eval_policy.prompt(obs).ids == sft_prompt
    # ... while with the schemas asked for (--render-tools) they differ: the record decided it
    assert cli.parse(["eval", "--model", str(rl), "--render-tools"])[2].render_tools is True
    assert load_policy(str(rl), render_tools=True).prompt(obs).ids != sft_prompt
