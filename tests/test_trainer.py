"""The trainer: AXPO without a trigger is GRPO bit for bit, resume is exact, failures are
skipped, and logs, checkpoints and plots are written."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import pytest
import torch

import axpo_env  # noqa: F401
from agents import tiny
from agents.hf import HFPolicy
from agents.policy import Completion
from algorithms import logprobs
from algorithms.config import AXPOConfig, GRPOConfig
from algorithms.outputs import CheckpointError, latest_checkpoint
from algorithms.preflight import RunError
from algorithms.trainer import Trainer
from tests.wrong_calls import WrongCallsThenRight


class CoinFlipAnswers(HFPolicy):
    """Answers at once, right or wrong by a seeded coin, so groups have reward variance; the
    answer's ids are scored by the model, so the update has real gradients."""

    def sample(self, prompts, n=1, sampling=None):
        gen = torch.Generator().manual_seed(sampling.seed or 0)
        out = []
        for p in prompts:
            right = bool(torch.rand((), generator=gen) < 0.5)
            text = "<answer>43757584</answer>" if right else "<answer>7</answer>"
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            logprobs, entropies = self.score(p.extend(ids), range(len(p), len(p) + len(ids)),
                                             sampling)
            out.append([Completion(text, ids, logprobs, entropies, list(p.ids))] * n)
        return out


def make_policy():
    base = HFPolicy.from_pretrained(tiny.cached("vl"))
    return CoinFlipAnswers(base.model, base.processor)


def config(cls, tmp_path, **kw):
    base = dict(max_steps=2, tasks_per_step=1, num_generations=4, max_completion_length=8,
                max_turns=2, task_ids=["13"], tools=["calculator"], output_dir=str(tmp_path),
                report_to=["jsonl", "csv"], save_steps=100, learning_rate=1e-2, seed=3)
    base.update(kw)
    return cls(**base)


def params(trainer):
    return {k: v.detach().clone() for k, v in trainer.policy.model.state_dict().items()}


def test_axpo_without_a_trigger_updates_exactly_like_grpo(tmp_path):
    same = dict(max_steps=1, epsilon_high=0.4, beta=1e-3)  # AXPO's Eq. 6 defaults, for both
    grpo = Trainer("grpo", config(GRPOConfig, tmp_path / "g", **same), make_policy())
    axpo = Trainer("axpo", config(AXPOConfig, tmp_path / "a", **same), make_policy())
    before = params(grpo)
    hg, ha = grpo.train(), axpo.train()
    assert ha[0]["axpo/triggered_questions"] == 0  # nobody called a tool
    pg, pa = params(grpo), params(axpo)
    assert any(not torch.equal(before[k], pg[k]) for k in pg)  # it did learn something
    assert all(torch.equal(pg[k], pa[k]) for k in pg)  # ... and bit for bit the same
    assert hg[0]["loss"] == ha[0]["loss"]
    # a run shorter than save_steps (100 here) still saves its end
    assert latest_checkpoint(tmp_path / "g").name == "checkpoint-1"


def test_resume_continues_exactly(tmp_path):
    straight = Trainer("grpo", config(GRPOConfig, tmp_path / "s"), make_policy())
    straight.train()

    first = Trainer("grpo", config(GRPOConfig, tmp_path / "r", max_steps=1, save_steps=1),
                    make_policy())
    first.train()
    assert latest_checkpoint(tmp_path / "r").name == "checkpoint-1"
    resumed = Trainer("grpo", config(GRPOConfig, tmp_path / "r", resume=True), make_policy())
    assert resumed.step == 1
    resumed.train()
    a, b = params(straight), params(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight.history[1]["loss"] == resumed.history[1]["loss"]
    # the progress files hold every step, the resumed one's too, as a straight run's do
    for name in ("progress.json", "progress.csv"):
        assert len((tmp_path / "r" / name).read_text().splitlines()) == \
            len((tmp_path / "s" / name).read_text().splitlines())
    rows = [json.loads(line) for line in (tmp_path / "r" / "progress.json").open()]
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["loss"] == straight.history[0]["loss"]


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    out = tmp_path_factory.mktemp("two")
    trainer = Trainer("grpo", config(GRPOConfig, out, save_steps=1), make_policy())
    trainer.train()
    return out, params(trainer)


def _damaged_copy(two_checkpoints, tmp_path, damage):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(two_checkpoints[0], out)
    damage(out / "checkpoint-2")
    (out / ".tmp-killed-save").mkdir()  # a save that was killed mid-write
    return out


def _truncate(folder):
    (weights,) = folder.glob("*.safetensors")
    weights.write_bytes(weights.read_bytes()[:1000])


@pytest.mark.parametrize("damage", [
    lambda f: next(f.glob("*.safetensors")).unlink(),  # used to resume from the base weights
    _truncate,  # used to crash
], ids=["weights missing", "weights truncated"])  # a bad trainer state is refused, never skipped:
# tests/test_resume_safety.py (issue 24: a fallback let a planted pickle pass as damage)
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous(two_checkpoints, tmp_path,
                                                               damage):
    out = _damaged_copy(two_checkpoints, tmp_path, damage)
    with pytest.warns(RuntimeWarning, match="checkpoint-2.*trying the checkpoint before it"):
        resumed = Trainer("grpo", config(GRPOConfig, out, resume=True), make_policy())
    assert resumed.step == 1 and len(resumed.history) == 1
    assert not list(out.glob(".tmp-*"))  # the killed save's folder is gone
    base = params(Trainer("grpo", config(GRPOConfig, tmp_path / "b"), make_policy()))
    loaded = params(resumed)
    assert any(not torch.equal(base[k], loaded[k]) for k in base)  # not the base weights


def test_a_checkpoint_loads_strictly_or_not_at_all(two_checkpoints, tmp_path):
    out = _damaged_copy(two_checkpoints, tmp_path, lambda f: None)
    next((out / "checkpoint-1").glob("*.safetensors")).unlink()
    trainer = Trainer("grpo", config(GRPOConfig, tmp_path / "x"), make_policy())
    before = params(trainer)
    with pytest.raises(CheckpointError, match="no \\*.safetensors"):
        trainer.load_checkpoint(out / "checkpoint-1")
    assert trainer.step == 0 and all(torch.equal(before[k], v) for k, v in params(trainer).items())
    resumed = Trainer("grpo", config(GRPOConfig, out, resume=True), make_policy())
    assert resumed.step == 2  # the intact latest one
    assert all(torch.equal(two_checkpoints[1][k], v) for k, v in params(resumed).items())
    _truncate(out / "checkpoint-2")
    with pytest.warns(RuntimeWarning), pytest.raises(CheckpointError, match="no checkpoint"):
        Trainer("grpo", config(GRPOConfig, out, resume=True), make_policy())


def test_an_env_that_raises_mid_episode_is_recorded_and_skipped(tmp_path):
    class Exploding(gym.Wrapper):
        def step(self, action):
            if self.unwrapped.snapshot().turn == 0 and "7" in action:
                raise RuntimeError("tool backend crashed")
            return self.env.step(action)

    gym.register("AXPOTest-Exploding-v0", entry_point=lambda **kw: Exploding(
        gym.make("AXPO-MathVista-v0", **kw)))
    trainer = Trainer("grpo", config(GRPOConfig, tmp_path, max_steps=1,
                                     env_id="AXPOTest-Exploding-v0"), make_policy())
    (metrics,) = trainer.train()
    assert metrics["rollouts_failed"] > 0
    assert metrics["trained_rollouts"] == 4 - metrics["rollouts_failed"]


def test_logs_checkpoints_and_plot_are_written(tmp_path):
    trainer = Trainer("axpo", config(AXPOConfig, tmp_path, save_steps=2), make_policy())
    trainer.train()
    rows = [json.loads(line) for line in (tmp_path / "progress.json").read_text().splitlines()]
    assert len(rows) == 2 and {"reward", "tool_use_rate", "loss", "grad_norm"} <= set(rows[0])
    assert (tmp_path / "progress.csv").exists() and (tmp_path / "metrics.png").exists()
    checkpoint = latest_checkpoint(tmp_path)
    assert checkpoint.name == "checkpoint-2"
    assert (checkpoint / "config.json").exists() and (checkpoint / "trainer_state.pt").exists()
    assert not list(tmp_path.glob(".tmp-*"))  # the atomic write left nothing behind
    reloaded = HFPolicy.from_pretrained(checkpoint)
    assert all(torch.equal(v, reloaded.model.state_dict()[k])
               for k, v in trainer.policy.model.state_dict().items())


def test_trainable_parameters_trains_the_matched_parameters_alone(tmp_path):
    trainer = Trainer("grpo", config(GRPOConfig, tmp_path, max_steps=1,
                                     trainable_parameters="^lm_head"), make_policy())
    before = params(trainer)
    trainer.train()
    after = params(trainer)
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert changed == {"lm_head.weight"}


def test_trainable_parameters_that_match_nothing_or_do_not_parse_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="matches no parameter.*look like"):
        Trainer("grpo", config(GRPOConfig, tmp_path, trainable_parameters="^decoder"),
                make_policy())
    with pytest.raises(ValueError, match="not a regular expression"):
        config(GRPOConfig, tmp_path, trainable_parameters="lm_head[")


def test_unknown_algorithm_is_a_clear_error():
    with pytest.raises(ValueError, match="'axpo' or 'grpo'"):
        Trainer("ppo")


class WrongCallsThenRecoverable(WrongCallsThenRight):
    """Rollouts call the calculator on the wrong numbers and answer what it said, so the
    tool-using subgroup is all wrong and AXPO triggers; of each block of resamples (continuing
    the kept `<tool_call>`), the first calls it right. Ids are scored by the model."""

    CALL = '{"name": "calculator", "arguments": {"expression": "%s"}}</tool_call>'
    THINK, WRONG, RIGHT = "x", "6*7", "43757584+0"

    def reply_to(self, tool_response):
        return "43757584" if "43757584" in tool_response else "7"


def test_axpo_step_trains_the_resamples_and_the_source_prefix(tmp_path):
    base = HFPolicy.from_pretrained(tiny.cached("vl"))
    policy = WrongCallsThenRecoverable(base.model, base.processor)
    cfg = config(AXPOConfig, tmp_path, max_steps=1, max_turns=3, resample_ratio=1.0,
                 resamples_per_prefix=2)
    trainer = Trainer("axpo", cfg, policy)
    (metrics,) = trainer.train()
    assert metrics["accuracy"] == 0.0 and metrics["tool_use_rate"] == 1.0
    assert metrics["axpo/triggered_questions"] == 1
    assert metrics["axpo/budget_blocks"] == 2 == metrics["axpo/selected_prefixes"]
    assert metrics["axpo/resamples"] == 4 and metrics["axpo/resamples_correct"] == 2
    assert metrics["axpo/recovery_rate"] == 1.0
    assert metrics["trained_rollouts"] == 4 + 4  # the group and the resamples
    assert metrics["grad_norm"] > 0  # the recovered prefixes and resamples carry signal


# --- the update: micro-batches, accumulation and TRL's loss types, against hand-worked numbers ---
# Three text rows whose trained tokens number 1, 3 and 2 (advantages +1, -0.5, +2), in
# micro-batches of 2 rows (rows 0-1, then row 2), 2 accumulation steps: one optimizer update.
# n = 3 rollouts, T = 6 tokens, S = 2 micro-batches, max_completion_length L = 4. At ratio 1 the
# per-token loss is -A * ratio, so the gradient is sum_t w_t * (-A) * grad logp_t with weights:
#   grpo:    each row's token mean over the 3 rows   -> 1/3 | 1/9, 1/9, 1/9 | 1/6, 1/6
#   bnpo:    micro-batch token mean / 2 accumulation -> 1/8 | 1/8, 1/8, 1/8 | 1/4, 1/4
#   dr_grpo: sum / (3 rows * L)                      -> 1/12 on every token
#   dapo:    sum / 6 tokens of the step              -> 1/6 on every token
TRAINED, ADVANTAGES = (1, 3, 2), (1.0, -0.5, 2.0)
WEIGHTS = {
    "grpo": [[1 / 3], [1 / 9] * 3, [1 / 6] * 2],
    "bnpo": [[1 / 8], [1 / 8] * 3, [1 / 4] * 2],
    "dr_grpo": [[1 / 12], [1 / 12] * 3, [1 / 12] * 2],
    "dapo": [[1 / 6], [1 / 6] * 3, [1 / 6] * 2],
}


def hand_batch(policy):
    from agents.hf import TokenPrompt
    from agents.rollout import Trajectory
    from algorithms.grpo import TrainBatch, TrainSample

    gen = torch.Generator().manual_seed(0)
    samples = []
    for n, (trained, advantage) in enumerate(zip(TRAINED, ADVANTAGES)):
        ids = torch.randint(10, 200, (5 + 2 * n,), generator=gen).tolist()  # unequal lengths
        mask = torch.zeros(len(ids) - 1)
        mask[-trained:] = 1
        t = Trajectory("t", n, sequence=TokenPrompt(ids))
        samples.append(TrainSample(t, torch.full_like(mask, advantage), mask))
    return TrainBatch(samples, 3, sum(TRAINED))


def update_gradient(tmp_path, loss_type, batch_size, accumulation, rows=None, **kw):
    """The gradient the trainer's optimizer update sees (clipping off), flattened. `rows`:
    None for `hand_batch` on the tiny VL model, "shared" for `shared_prompt_rows` on the
    text model (the update's shared-prefix path)."""
    policy = make_policy() if rows is None else HFPolicy.from_pretrained(tiny.cached("text"))
    trainer = Trainer("grpo", config(GRPOConfig, tmp_path, loss_type=loss_type,
                                     max_completion_length=4, max_grad_norm=0.0,
                                     per_device_train_batch_size=batch_size,
                                     gradient_accumulation_steps=accumulation, **kw),
                      policy)
    seen = []
    trainer.optimizer.step = lambda *a, **k: seen.append(torch.cat(
        [(torch.zeros_like(p) if p.grad is None else p.grad).flatten().clone()
         for p in trainer.policy.model.parameters()]))
    out = trainer.update(hand_batch(trainer.policy) if rows is None else as_batch(
        shared_prompt_rows(trainer.policy)))
    assert out["optimizer_updates"] == 1 == len(seen)
    return seen[0]


def hand_gradient(loss_type):
    policy = make_policy()
    params = list(policy.model.parameters())
    objective = 0.0
    for s, weights in zip(hand_batch(policy).samples, WEIGHTS[loss_type]):
        logits, ids = policy.forward_logits([s.trajectory.sequence])  # one row, no padding
        logp = logits[0, :-1].float().log_softmax(-1).gather(-1, ids[0, 1:, None]).squeeze(-1)
        trained = logp[s.mask.bool()]
        objective = objective + (torch.tensor(weights) * -s.advantages[0] * trained).sum()
    grads = torch.autograd.grad(objective, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                      for g, p in zip(grads, params)])


def close(got, expected):
    """Equal to float tolerance: padding and batching reorder float sums."""
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())


def test_each_loss_type_updates_by_its_hand_worked_token_weights(tmp_path):
    got = {lt: update_gradient(tmp_path / lt, lt, 2, 2) for lt in WEIGHTS}
    for loss_type, gradient in got.items():
        expected = hand_gradient(loss_type)
        assert expected.abs().max() > 0
        close(gradient, expected)
    types = list(got)
    assert all(not torch.allclose(got[a], got[b], rtol=1e-3)
               for i, a in enumerate(types) for b in types[i + 1:])  # four different updates


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_micro_batches_with_accumulation_equal_one_big_batch(tmp_path, loss_type):
    big = update_gradient(tmp_path / "big", loss_type, 4, 1)
    for size, accumulation in [(2, 2), (1, 4)]:
        split = update_gradient(tmp_path / f"{size}", loss_type, size, accumulation)
        close(split, big)


def test_more_micro_batches_than_accumulation_steps_make_several_updates(tmp_path):
    trainer = Trainer("grpo", config(GRPOConfig, tmp_path, per_device_train_batch_size=1,
                                     gradient_accumulation_steps=2), make_policy())
    out = trainer.update(hand_batch(trainer.policy))
    assert out["optimizer_updates"] == 2  # 3 micro-batches in windows of 2, as TRL steps
    assert out["clipfrac"] >= 0.0 and out["trained_rollouts"] == 3
    by_default = Trainer("grpo", config(GRPOConfig, tmp_path / "d", per_device_train_batch_size=1),
                         make_policy())
    assert by_default.update(hand_batch(by_default.policy))["optimizer_updates"] == 1


def test_multi_turn_rows_with_images_of_different_sizes_share_a_micro_batch(tmp_path):
    from PIL import Image

    from agents.rollout import Trajectory
    from algorithms.grpo import TrainSample

    trainer = Trainer("grpo", config(GRPOConfig, tmp_path), make_policy())
    policy = trainer.policy
    rows = []
    for n, (first, second) in enumerate([((64, 48), (32, 96)), ((96, 96), None)]):
        prompt = policy.prompt([{"role": "user", "content": [
            {"type": "image", "image": Image.new("RGB", first, (200, 30, 30 * n))},
            {"type": "text", "text": "What is shown?"}]}])
        call = policy.tokenizer("<tool_call>{}</tool_call>", add_special_tokens=False)
        reply = [{"role": "tool", "content": [{"type": "text", "text": "crop"}] + (
            [{"type": "image", "image": Image.new("RGB", second, (0, 90, 0))}] if second else [])}]
        prompt, _ = policy.continue_prompt(prompt, Completion("", call["input_ids"]), reply)
        answer = policy.tokenizer("<answer>7</answer>", add_special_tokens=False)["input_ids"]
        prompt = prompt.extend(answer)
        mask = torch.ones(len(prompt) - 1)
        rows.append(TrainSample(Trajectory("t", n, sequence=prompt), mask, mask))
    assert rows[0].trajectory.sequence.image_grid_thw.shape[0] == 2  # two images, two sizes
    together = trainer._logprobs(rows, grad=False)
    for b, row in enumerate(rows):
        alone = trainer._logprobs([row], grad=False)[0]
        torch.testing.assert_close(together[b, -len(alone):], alone, rtol=1e-4, atol=1e-4)


def test_envs_are_built_once_per_trainer_and_reused_across_steps_and_branches(tmp_path):
    built = []

    def counted(**kw):
        built.append(kw)
        return gym.make("AXPO-MathVista-v0", **kw)

    gym.register("AXPOTest-Counted-v0", entry_point=counted)
    base = HFPolicy.from_pretrained(tiny.cached("vl"))
    policy = WrongCallsThenRecoverable(base.model, base.processor)
    cfg = config(AXPOConfig, tmp_path, max_steps=2, max_turns=3, resample_ratio=1.0,
                 resamples_per_prefix=2, env_id="AXPOTest-Counted-v0")
    history = Trainer("axpo", cfg, policy).train()
    assert [h["axpo/resamples"] for h in history] == [4, 4]  # 2 steps, 2 branches each
    assert len(built) == 4  # the group's 4 envs served 8 rollouts and 16 resamples


def test_gradient_checkpointing_gives_the_same_update(tmp_path):
    plain = update_gradient(tmp_path / "plain", "dapo", 2, 2)
    trainer = Trainer("grpo", config(GRPOConfig, tmp_path / "gc", gradient_checkpointing=True),
                      make_policy())
    assert trainer.policy.model.is_activation_checkpointing
    close(update_gradient(tmp_path / "gc2", "dapo", 2, 2, gradient_checkpointing=True), plain)


def shared_prompt_rows(policy):
    """Rows as a step makes them: two groups whose rollouts share their prompt (completions of
    unequal length), a row alone, and two resamples sharing a prefix that ends mid-turn."""
    from agents.hf import TokenPrompt
    from agents.rollout import Trajectory
    from algorithms.grpo import TrainSample

    gen = torch.Generator().manual_seed(1)
    ids = lambda n: torch.randint(10, 200, (n,), generator=gen).tolist()  # noqa: E731
    prompts = [ids(9), ids(6), ids(7), ids(12)]
    rows = []
    for prompt, completions, trained_from in [(prompts[0], (4, 2, 5), 9), (prompts[1], (3, 3), 6),
                                              (prompts[2], (2,), 7), (prompts[3], (5, 3), 10)]:
        for n, length in enumerate(completions):
            full = prompt + ids(length)
            mask = torch.zeros(len(full) - 1)
            mask[trained_from - 1:] = 1
            advantages = torch.full_like(mask, 0.5 - n)
            rows.append(TrainSample(Trajectory("t", n, sequence=TokenPrompt(full)), advantages,
                                    mask))
    return rows


def test_rows_sharing_a_prompt_run_it_once_with_the_same_logprobs_and_gradient(tmp_path):
    trainer = Trainer("grpo", config(GRPOConfig, tmp_path),
                      HFPolicy.from_pretrained(tiny.cached("text")))
    rows = shared_prompt_rows(trainer.policy)
    params = list(trainer.policy.model.parameters())
    prompts = [r.trajectory.sequence for r in rows]
    assert logprobs.shares_prefixes(trainer.policy, prompts,
                                    [int(r.mask.nonzero()[0]) for r in rows])

    def run():
        logp = trainer._logprobs(rows)
        objective = sum((logp[b, -len(r.mask):] * r.mask * r.advantages).sum()
                        for b, r in enumerate(rows))
        return logp, torch.autograd.grad(objective, params)

    shared, shared_grad = run()
    with pytest.MonkeyPatch.context() as patch:  # the one-pass path over whole rows
        patch.setattr(logprobs, "shares_prefixes", lambda *a: False)
        whole, whole_grad = run()
    masks = pad_rows([r.mask for r in rows], shared.shape[1])
    torch.testing.assert_close(shared * masks, whole * masks, rtol=1e-4, atol=1e-5)
    close(torch.cat([g.flatten() for g in shared_grad]),
          torch.cat([g.flatten() for g in whole_grad]))


def as_batch(rows):
    from algorithms.grpo import TrainBatch

    return TrainBatch(rows, len(rows), int(sum(r.mask.sum() for r in rows)))


def pad_rows(rows, width):
    from algorithms.grpo import pad_left

    return pad_left(rows, width)


def test_resume_says_what_it_resumes_and_refuses_another_run(two_checkpoints, tmp_path, capsys):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(two_checkpoints[0], out)
    resumed = Trainer("grpo", config(GRPOConfig, out, max_steps=3, resume=True), make_policy())
    assert resumed.step == 2
    assert f"resuming grpo from {out / 'checkpoint-2'} (step 2 of 3)" in capsys.readouterr().err
    for algo, cls, change, what in [("axpo", AXPOConfig, {}, "is a grpo run"),
                                    ("grpo", GRPOConfig, {"trainable_parameters": "lm_head"},
                                     "trainable_parameters=None"),
                                    ("grpo", GRPOConfig, {"tool_call_format": "qwen3_coder"},
                                     "tool_call_format='hermes'")]:
        with pytest.raises(RunError, match=what):
            # refused before the model loads: no policy is built for it
            Trainer(algo, config(cls, out, resume=True, **change), "no/such/model")


@pytest.mark.parametrize("change, message", [
    ({"env_id": "AXPO-Nope-v0"}, "unknown env 'AXPO-Nope-v0' .*registered: .*AXPO-MathVista-v0"),
    ({"tools": ["calculator", "nope"]}, "no tool named 'nope'"),
    ({"task_ids": ["fx-07"]}, r"task id\(s\) \['fx-07'\] are not in AXPO-MathVista-v0"),
    ({"split": "nope"}, "split='nope': no MathVista split 'nope'"),
    ({"data_dir": "/no/such"}, "data_dir='/no/such': MathVista data not found"),
    ({"task_options": ["bogus=1"]}, "unexpected keyword argument 'bogus' \\(--task-options\\)"),
    ({"task_options": ["scoring=weird"]}, "scoring must be one of"),
])
def test_a_bad_env_tool_or_task_is_refused_before_the_model_loads(tmp_path, change, message):
    with pytest.raises(RunError, match=message):
        Trainer("grpo", config(GRPOConfig, tmp_path, **change), "no/such/model")


def test_the_run_makes_its_envs_with_the_configured_split_data_and_task_options(tmp_path):
    cfg = config(GRPOConfig, tmp_path, split="testmini", task_options=["scoring=official"],
                 data_dir=str(Path(axpo_env.__file__).parent / "tasks/fixtures/mathvista"))
    assert cfg.task_kwargs == {"scoring": "official"}
    task = Trainer("grpo", cfg, make_policy()).envs.take(1)[0].unwrapped.task
    assert (task.split, task.scoring, Path(task.data_dir).name) == (
        "testmini", "official", "mathvista")
    with pytest.raises(ValueError, match=r"KEY=VALUE pairs, got \['scoring'\]"):
        GRPOConfig(task_options=["scoring"])


def test_stdout_shows_one_line_a_step(tmp_path, capsys):
    Trainer("grpo", config(GRPOConfig, tmp_path, report_to=["stdout"]), make_policy()).train()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert [line.split(" | ")[0] for line in lines] == ["step 1", "step 2"]
    assert "reward " in lines[0] and "tool_use " in lines[0] and "loss " in lines[0]


def test_save_total_limit_keeps_the_newest_and_a_named_checkpoint_resumes(two_checkpoints,
                                                                         tmp_path):
    kept = Trainer("grpo", config(GRPOConfig, tmp_path / "k", max_steps=3, save_steps=1,
                                  save_total_limit=2), make_policy())
    kept.train()
    assert sorted(p.name for p in (tmp_path / "k").glob("checkpoint-*")) == [
        "checkpoint-2", "checkpoint-3"]
    # another run's checkpoint-1, into a fresh output_dir
    first = two_checkpoints[0] / "checkpoint-1"
    resumed = Trainer("grpo", config(GRPOConfig, tmp_path / "new", max_steps=2,
                                     resume_from_checkpoint=str(first)), make_policy())
    assert resumed.step == 1
    with pytest.raises(RunError, match="not a checkpoint folder"):
        Trainer("grpo", config(GRPOConfig, tmp_path / "x",
                               resume_from_checkpoint=str(tmp_path)), "no/such/model")
