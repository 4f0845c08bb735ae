"""Group advantages and the clipped policy loss, checked against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from algorithms.loss import Normalizers, group_advantages, masked_mean, policy_loss, update_loss

EPS = 1e-4  # TRL's std epsilon

# --- group advantages -------------------------------------------------------------------------
# Group "a" = [1, 0, 0]: mean 1/3, deviations (2/3, -1/3, -1/3),
#   unbiased var = (4/9 + 1/9 + 1/9) / 2 = 1/3, std = 1/sqrt(3) ~ 0.57735.
# Group "b" = [2, 4]: mean 3, deviations (-1, 1), unbiased var = 2 / 1, std = sqrt(2).
# Batch [1, 0, 0, 2, 4]: mean 1.4, squared deviations .16 + 1.96 + 1.96 + .36 + 6.76 = 11.2,
#   unbiased var = 11.2 / 4 = 2.8, std = sqrt(2.8) ~ 1.67332.
REWARDS = torch.tensor([1.0, 0.0, 0.0, 2.0, 4.0], dtype=torch.float64)
IDS = ["a", "a", "a", "b", "b"]
DEVIATIONS = [2 / 3, -1 / 3, -1 / 3, -1.0, 1.0]


def test_group_scaling_divides_by_unbiased_group_std_plus_eps():
    sa, sb = 1 / math.sqrt(3) + EPS, math.sqrt(2) + EPS
    expected = [2 / 3 / sa, -1 / 3 / sa, -1 / 3 / sa, -1 / sb, 1 / sb]
    got = group_advantages(REWARDS, IDS, "group")
    assert got.tolist() == pytest.approx(expected, rel=1e-12)


def test_batch_scaling_divides_group_deviation_by_batch_std():
    s = math.sqrt(2.8) + EPS
    got = group_advantages(REWARDS, IDS, "batch")
    assert got.tolist() == pytest.approx([d / s for d in DEVIATIONS], rel=1e-12)


def test_no_scaling_keeps_raw_deviation_dr_grpo():
    got = group_advantages(REWARDS, IDS, "none")
    assert got.tolist() == pytest.approx(DEVIATIONS, rel=1e-12)


def test_groups_need_not_be_contiguous_and_tensor_ids_work():
    order = [3, 0, 4, 1, 2]  # interleave "b" and "a"
    ids = torch.tensor([1, 0, 1, 0, 0])  # 0 = "a", 1 = "b"
    got = group_advantages(REWARDS[order], ids, "none")
    assert got.tolist() == pytest.approx([DEVIATIONS[i] for i in order], rel=1e-12)


@pytest.mark.parametrize("mode", ["group", "batch", "none"])
def test_group_of_one_and_all_equal_group_get_zero_advantage(mode):
    got = group_advantages(torch.tensor([5.0, 1.0, 1.0]), ["solo", "x", "x"], mode)
    assert got.tolist() == [0.0, 0.0, 0.0]
    assert torch.isfinite(got).all()


def test_group_advantages_rejects_bad_input():
    with pytest.raises(ValueError, match="scale_rewards"):
        group_advantages(REWARDS, IDS, "std")
    with pytest.raises(ValueError, match="group ids"):
        group_advantages(REWARDS, IDS[:-1])


# --- policy loss on a 2x3 case ----------------------------------------------------------------
# Row 0: advantage +1, ratios (1.0, 1.5, 0.5), all tokens trained on.
# Row 1: advantage -2, ratios (1.1, 0.5, 2.0), last token is padding (mask 0).
# Clip range with epsilon 0.2: [0.8, 1.2]. Per token max(-A r, -A clip(r)):
#   row 0: r=1.0 -> -1.0; r=1.5 -> -1.2 (clipped high); r=0.5 -> -0.5 (not clipped: A > 0)
#   row 1: r=1.1 -> 2.2;  r=0.5 -> max(1.0, 1.6) = 1.6 (clipped low); r=2.0 -> masked
# Sum over the 5 trained tokens: -1.0 - 1.2 - 0.5 + 2.2 + 1.6 = 1.1.
RATIOS = [[1.0, 1.5, 0.5], [1.1, 0.5, 2.0]]
OLD = torch.full((2, 3), -1.5, dtype=torch.float64)
NEW = OLD + torch.tensor(RATIOS, dtype=torch.float64).log()
ADV = torch.tensor([1.0, -2.0], dtype=torch.float64)
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])


def _loss(**kw):
    return policy_loss(NEW, OLD, ADV, MASK, **kw)


@pytest.mark.parametrize("loss_type,kw,expected", [
    ("grpo", {}, 0.5),  # row means -2.7/3 = -0.9 and 3.8/2 = 1.9; their mean 0.5
    ("bnpo", {}, 0.22),  # 1.1 / 5 tokens
    ("dapo", {}, 0.22),  # no global count given: this batch's 5 tokens
    ("dapo", {"num_items_in_batch": 11}, 0.1),  # 1.1 / 11 tokens in the generation batch
    ("dapo", {"num_items_in_batch": 11, "num_processes": 2}, 0.2),  # 1.1 / (11 / 2)
    ("dr_grpo", {"max_completion_length": 4}, 0.1375),  # 1.1 / (2 * 4)
])
def test_loss_types_aggregate_tokens_like_trl(loss_type, kw, expected):
    loss, _ = _loss(loss_type=loss_type, **kw)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_stats_count_clipped_tokens_and_ratio():
    _, stats = _loss()
    # one high clip (row 0, r=1.5, A>0) and one low clip (row 1, r=0.5, A<0) of 5 tokens;
    # row 0's r=0.5 with A>0 is outside the range but not clipped (the min keeps r * A).
    assert stats["clipfrac_high"] == pytest.approx(0.2)
    assert stats["clipfrac_low"] == pytest.approx(0.2)
    assert stats["clipfrac"] == pytest.approx(0.4)
    assert stats["ratio_mean"] == pytest.approx((1.0 + 1.5 + 0.5 + 1.1 + 0.5) / 5)
    # approx_kl is CleanRL's k3 form: mean of (r - 1) - log r over trained tokens
    k3 = [0.0, 0.5 - math.log(1.5), -0.5 - math.log(0.5), 0.1 - math.log(1.1), -0.5 - math.log(0.5)]
    assert stats["approx_kl"] == pytest.approx(sum(k3) / 5, rel=1e-12)
    assert stats["pg_loss"] == pytest.approx(0.22, rel=1e-12)
    assert "kl" not in stats
    assert all(isinstance(v, float) for v in stats.values())


def test_epsilon_high_widens_only_the_upper_clip():
    # clip range [0.8, 1.6]: row 0's r=1.5 is now inside (-1.5 instead of -1.2), the low clip
    # at 0.8 still binds on row 1. Sum = 1.1 - 0.3 = 0.8 over 5 tokens.
    loss, stats = _loss(epsilon_high=0.6)
    assert loss.item() == pytest.approx(0.16, rel=1e-12)
    assert stats["clipfrac_high"] == 0.0
    assert stats["clipfrac_low"] == pytest.approx(0.2)


def test_equal_old_and_new_give_ratio_one_and_minus_mean_advantage():
    adv = torch.tensor([0.7, -0.1, 1.5])
    logp = torch.tensor([[-1.0, -2.0], [-0.3, -0.4], [-5.0, -0.1]])
    loss, stats = policy_loss(logp, logp, adv, torch.ones(3, 2), loss_type="grpo")
    assert loss.item() == pytest.approx(-adv.mean().item())
    assert stats["ratio_mean"] == 1.0
    assert stats["clipfrac"] == 0.0
    assert stats["approx_kl"] == 0.0


def test_kl_term_is_trl_k3_times_beta():
    # ratio 1 and advantage 0: the loss is only beta * k3 with d = ref - logp:
    #   d = ln 2  -> 2 - ln 2 - 1 = 0.306853;  d = -ln 2 -> 1/2 + ln 2 - 1 = 0.193147;  d = 0 -> 0
    # d = [[ln2, -ln2, 0], [0, ln2, 99 (padding, must be ignored even though exp(99) overflows)]]
    ln2 = math.log(2)
    d = torch.tensor([[ln2, -ln2, 0.0], [0.0, ln2, 99.0]])
    logp = torch.full((2, 3), -2.0)
    k3_up, k3_down = 1 - ln2, ln2 - 0.5
    mean_kl = (2 * k3_up + k3_down) / 5
    loss, stats = policy_loss(logp, logp, torch.zeros(2), MASK, ref_logprobs=logp + d, beta=0.1)
    assert stats["kl"] == pytest.approx(mean_kl, rel=1e-6)
    assert loss.item() == pytest.approx(0.1 * mean_kl, rel=1e-6)
    # reference given but beta 0: logged, not trained on
    loss0, stats0 = policy_loss(logp, logp, torch.zeros(2), MASK, ref_logprobs=logp + d)
    assert loss0.item() == 0.0 and stats0["kl"] == pytest.approx(mean_kl, rel=1e-6)


def test_gradient_flows_only_through_trained_unclipped_tokens():
    new = NEW.clone()
    new[1, 2] = -math.inf  # garbage in padding must not poison the gradient
    new.requires_grad_(True)
    loss, _ = policy_loss(new, OLD, ADV, MASK, loss_type="dapo")
    loss.backward()
    # d loss / d logp = -A * r / 5 on unclipped tokens, 0 on clipped ones and on padding
    expected = [[-1.0 / 5, 0.0, -0.5 / 5], [2.0 * 1.1 / 5, 0.0, 0.0]]
    assert new.grad.tolist() == [pytest.approx(row, rel=1e-12) for row in expected]
    assert new.grad[1, 2].item() == 0.0


def test_loss_is_deterministic():
    g = torch.Generator().manual_seed(0)
    new, old = -torch.rand(4, 6, generator=g), -torch.rand(4, 6, generator=g)
    adv, ref = torch.randn(4, generator=g), -torch.rand(4, 6, generator=g)
    mask = torch.rand(4, 6, generator=g) > 0.3
    kw = {"ref_logprobs": ref, "beta": 0.04, "epsilon_high": 0.28}
    first, second = policy_loss(new, old, adv, mask, **kw), policy_loss(new, old, adv, mask, **kw)
    assert torch.equal(first[0], second[0])
    assert first[1] == second[1]


def test_policy_loss_rejects_incomplete_settings():
    with pytest.raises(ValueError, match="max_completion_length"):
        _loss(loss_type="dr_grpo")
    with pytest.raises(ValueError, match="ref_logprobs"):
        _loss(beta=0.1)
    with pytest.raises(ValueError, match="loss_type"):
        _loss(loss_type="ppo")


def test_masked_mean_ignores_masked_values_and_empty_rows():
    x = torch.tensor([[1.0, 2.0, 100.0], [5.0, 7.0, 9.0]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    assert masked_mean(x, mask).item() == 1.5
    assert masked_mean(x, mask, dim=-1).tolist() == [1.5, 0.0]


# --- scaling a micro-batch's loss to its share of an optimizer update (TRL's accumulation) -----
# 12 rollouts, 30 tokens, 6 micro-batches in updates of 3 (2 updates), 2 processes: one update
# holds 12 / 2 updates / 2 processes = 3 rollouts of a process, in 3 micro-batches. A micro-batch
# of 2 rows with loss 0.6 (grpo: the mean of its 2 rows) counts 0.6 * 2 / 3 = 0.4 for grpo and
# dr_grpo, 0.6 / 3 accumulation steps = 0.2 for bnpo; dapo's loss is already divided by the
# update's tokens over the processes (policy_loss), so it is kept.
def test_update_loss_scales_like_trl_accumulation():
    norm = Normalizers.of(12, 30, micro_batches=6, gradient_accumulation_steps=3,
                          num_processes=2)
    assert (norm.windows, norm.micro_batches) == (2, 6)
    loss = torch.tensor(0.6, dtype=torch.float64)
    assert update_loss(loss, "grpo", 2, norm).item() == pytest.approx(0.4, rel=1e-12)
    assert update_loss(loss, "dr_grpo", 2, norm).item() == pytest.approx(0.4, rel=1e-12)
    assert update_loss(loss, "bnpo", 2, norm).item() == pytest.approx(0.2, rel=1e-12)
    assert update_loss(loss, "dapo", 2, norm).item() == pytest.approx(0.6, rel=1e-12)


def test_fewer_micro_batches_than_accumulation_steps_make_one_full_update():
    norm = Normalizers.of(4, 10, micro_batches=1, gradient_accumulation_steps=8)
    assert norm.windows == 1  # not a 1/8 update: the window is what the step has
    assert update_loss(torch.tensor(1.0), "grpo", 4, norm).item() == 1.0
