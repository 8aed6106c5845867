"""CQL, Cal-QL, IQL and the TD target on small hand-computed tensors (arithmetic in the comments)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from vla_parl.critic import (calql_loss, cql_loss, expectile_loss, iql_loss, mc_return_to_go,
                             min_over_random_subset, td_target)

# One head, two states.  Q(s, a) = [1, 0], y = [0.5, 1].
Q_DATA = torch.tensor([[1.0, 0.0]])
Y = torch.tensor([0.5, 1.0])
Q_RANDOM = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])   # state 0: Q = 0 at both random actions; state 1: 1
Q_POLICY = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])


def test_td_target_by_hand():
    # y = r + γ(1 − d) Q̄:  [1 + 0.9·1·2, 0 + 0.9·0·3] = [2.8, 0]
    y = td_target(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0]), 0.9)
    torch.testing.assert_close(y, torch.tensor([2.8, 0.0]))
    with pytest.raises(ValueError, match="gamma"):
        td_target(torch.zeros(2), torch.zeros(2), torch.zeros(2), 1.5)


def test_min_over_random_subset_picks_one_random_pair():
    # Column c belongs to pair c: its two heads hold 10, the others 0, so min over a pair p is 10 only in
    # p's own column — the output names the pair that was drawn.
    pairs = list(itertools.combinations(range(4), 2))
    q = torch.zeros(4, len(pairs))
    for c, (i, j) in enumerate(pairs):
        q[i, c] = q[j, c] = 10.0
    drawn = set()
    for seed in range(20):
        out = min_over_random_subset(q, 2, torch.Generator().manual_seed(seed))
        assert (out == 10).sum() == 1
        drawn.add(int((out == 10).nonzero()))
    assert len(drawn) > 2
    torch.testing.assert_close(min_over_random_subset(q[:2], 2), q[:2].min(0).values)  # E ≤ pair: all heads


def test_cql_by_hand():
    # TD: ½·mean((1 − 0.5)², (0 − 1)²) = ½·(0.25 + 1)/2 = 0.3125
    # log Σ exp over μ's 4 actions: state 0: log(4e⁰) = log 4;  state 1: log(4e¹) = 1 + log 4
    # gap = mean(log 4 − 1, 1 + log 4 − 0) = log 4 ≈ 1.386294
    # L = 0.3125 + 0.1 · log 4 = 0.4511294
    out = cql_loss(Q_DATA, Y, Q_RANDOM, Q_POLICY, alpha=0.1)
    torch.testing.assert_close(out.loss, torch.tensor(0.3125 + 0.1 * math.log(4)))
    torch.testing.assert_close(out.td_loss, torch.tensor(0.3125))
    torch.testing.assert_close(out.conservative_gap, torch.tensor(math.log(4)))
    # heads train independently: a second, identical head doubles the summed loss
    two = cql_loss(Q_DATA.repeat(2, 1), Y, Q_RANDOM.repeat(2, 1, 1), Q_POLICY.repeat(2, 1, 1), alpha=0.1)
    torch.testing.assert_close(two.loss, 2 * out.loss)
    assert all(isinstance(v, float) for v in out.stats().values())


def test_calql_by_hand():
    # V^μ = [0.5, 0.5].  State 0: policy Q = [0, 0] < 0.5 → lifted to [0.5, 0.5] (bound active);
    #   log(e⁰ + e⁰ + e^0.5 + e^0.5) = log(2 + 2·1.648721) = log 5.297443 = 1.667236
    # State 1: policy Q = [1, 1] ≥ 0.5 → unchanged: 1 + log 4 = 2.386294
    # gap = mean(1.667236 − 1, 2.386294 − 0) = 1.526765;  L = 0.3125 + 0.1·1.526765 = 0.465177
    out = calql_loss(Q_DATA, Y, Q_RANDOM, Q_POLICY, torch.tensor([0.5, 0.5]), alpha=0.1)
    gap = ((math.log(2 + 2 * math.exp(0.5)) - 1) + (1 + math.log(4))) / 2
    torch.testing.assert_close(out.conservative_gap, torch.tensor(gap))
    torch.testing.assert_close(out.loss, torch.tensor(0.3125 + 0.1 * gap))
    torch.testing.assert_close(out.bound_rate, torch.tensor(0.5))   # 2 of the 4 policy values lifted


def test_calql_bound_is_active_exactly_where_q_is_below_the_mc_return():
    torch.manual_seed(0)
    q_data = torch.randn(3, 8)
    q_random = torch.randn(3, 8, 4)
    q_policy = torch.randn(3, 8, 5, requires_grad=True)
    v_mu = torch.randn(8)
    out = calql_loss(q_data, torch.randn(8), q_random, q_policy, v_mu, alpha=1.0)
    (grad,) = torch.autograd.grad(out.loss, q_policy)
    below = q_policy.detach() < v_mu[None, :, None]
    assert below.any() and (~below).any()
    assert (grad[below] == 0).all(), "a lifted value must not be pushed down"
    assert (grad[~below] > 0).all(), "values above V^μ are pushed down as in CQL"
    torch.testing.assert_close(out.bound_rate, below.float().mean())
    # with V^μ = −∞ Cal-QL is CQL
    plain = cql_loss(q_data, torch.zeros(8), q_random, q_policy, 1.0)
    lifted = calql_loss(q_data, torch.zeros(8), q_random, q_policy, torch.full((8,), -1e9), 1.0)
    torch.testing.assert_close(plain.loss, lifted.loss)


def test_iql_by_hand():
    # u = Q̄ − V = [1 − 0, 0 − 1] = [1, −1];  L_V = mean(0.9·1², 0.1·1²) = 0.5
    # y = r + γ(1 − d)V(s') = [0 + 0.5·1·2, 1 + 0.5·0·4] = [1, 1];  L_Q = ½·mean(0², 1²) = 0.25
    out = iql_loss(q_data=torch.tensor([[1.0, 2.0]]), q_target=torch.tensor([1.0, 0.0]), v=torch.tensor([0.0, 1.0]),
                   v_next=torch.tensor([2.0, 4.0]), r=torch.tensor([0.0, 1.0]), d=torch.tensor([0.0, 1.0]),
                   gamma=0.5, tau=0.9)
    torch.testing.assert_close(out.value_loss, torch.tensor(0.5))
    torch.testing.assert_close(out.q_loss, torch.tensor(0.25))
    torch.testing.assert_close(out.loss, torch.tensor(0.75))
    torch.testing.assert_close(expectile_loss(torch.tensor([2.0, -2.0]), 0.7), torch.tensor([0.7 * 4, 0.3 * 4]))
    with pytest.raises(ValueError, match="tau"):
        expectile_loss(torch.zeros(1), 1.0)


def test_mc_return_to_go_by_hand():
    # γ = 0.5, r = [−1, −1, 0]: G₂ = 0, G₁ = −1 + 0.5·0 = −1, G₀ = −1 + 0.5·(−1) = −1.5
    torch.testing.assert_close(mc_return_to_go(torch.tensor([-1.0, -1.0, 0.0]), 0.5), torch.tensor([-1.5, -1.0, 0.0]))
    # never solved under the −1/0 reward: −1/(1 − 0.9) = −10 everywhere
    failed = mc_return_to_go(torch.full((3,), -1.0), 0.9, failure_reward=-1.0)
    torch.testing.assert_close(failed, torch.full((3,), -10.0))
    # without failure_reward, the plain discounted sum: [−1 − 0.9 − 0.81, −1 − 0.9, −1]
    torch.testing.assert_close(mc_return_to_go(torch.full((3,), -1.0), 0.9), torch.tensor([-2.71, -1.9, -1.0]))


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="q_policy"):
        cql_loss(Q_DATA, Y, Q_RANDOM, torch.zeros(1, 3, 2), 0.1)
    with pytest.raises(ValueError, match="y must be"):
        cql_loss(Q_DATA, torch.zeros(3), Q_RANDOM, Q_POLICY, 0.1)
    with pytest.raises(ValueError, match="v_mu"):
        calql_loss(Q_DATA, Y, Q_RANDOM, Q_POLICY, torch.zeros(2, 1), 0.1)
    with pytest.raises(ValueError, match="v_next"):
        iql_loss(Q_DATA, Y, Y, torch.zeros(3), Y, Y, 0.9, 0.7)
