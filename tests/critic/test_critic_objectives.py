"""CQL, Cal-QL, IQL and the TD target on small hand-computed tensors (arithmetic in the comments), in the
official PA-RL convention: mean over heads and batch of (Q_i − y)² (no ½), + α · the conservative gap
averaged over a random head subset, μ = uniform + policy + the data action with − log|μ|. Larger cases are
checked against `_official_losses`, which loops over heads and states on plain floats."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from tests.critic._official_losses import half_sum_cql, official_cql
from vla_parl.critic import (calql_loss, cql_loss, expectile_loss, iql_loss, min_over_random_subset,
                             td_target)
from vla_parl.critic.objectives import random_head_subset

# One head, two states.  Q(s, a) = [1, 0], y = [0.5, 1].
Q_DATA = torch.tensor([[1.0, 0.0]])
Y = torch.tensor([0.5, 1.0])
Q_RANDOM = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])   # state 0: Q = 0 at both random actions; state 1: 1
Q_POLICY = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])
TD = 0.625                                            # mean((1 − 0.5)², (0 − 1)²) = (0.25 + 1)/2, no ½


def _random_case(E: int, B: int = 3, n_random: int = 2, n_policy: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(E, B, generator=g), torch.randn(B, generator=g), torch.randn(E, B, n_random, generator=g),
            torch.randn(E, B, n_policy, generator=g))


def _lists(*tensors: torch.Tensor) -> list:
    return [t.tolist() for t in tensors]


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


def test_random_head_subset_draws_distinct_heads_and_nothing_when_the_ensemble_is_small():
    q = torch.arange(4.0)[:, None].expand(4, 3)                   # head i holds i everywhere
    g = torch.Generator().manual_seed(3)
    heads = random_head_subset(q, 2, g)[:, 0].tolist()
    assert len(set(heads)) == 2 and set(heads) <= {0, 1, 2, 3}
    assert random_head_subset(q, 2, torch.Generator().manual_seed(3))[:, 0].tolist() == heads   # seeded
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    assert torch.equal(random_head_subset(q[:2], 2, g), q[:2])    # E = 2 ≤ 2: all heads, in order ...
    assert torch.equal(g.get_state(), state)                      # ... and the generator is untouched
    with pytest.raises(ValueError, match="subset_size"):
        random_head_subset(q, 0)


def test_cql_official_by_hand():
    # μ at each state: 2 uniform + 2 policy + the data action (|μ| = 5), log-mean-exp:
    #   state 0: values [0, 0, 0, 0, 1]: log(4 + e) − log 5 = 1.904832 − 1.609438;  minus Q(s, a) = 1 → −0.704605
    #   state 1: values [1, 1, 1, 1, 0]: log(4e + 1) − log 5 = 2.474278 − 1.609438;  minus Q(s, a) = 0 → 0.864840
    # gap = mean(−0.704605, 0.864840) = 0.080117;  L = 0.625 + 0.1 · 0.080117 = 0.633012
    gap = ((math.log(4 + math.e) - math.log(5) - 1) + (math.log(4 * math.e + 1) - math.log(5))) / 2
    out = cql_loss(Q_DATA, Y, Q_RANDOM, Q_POLICY, alpha=0.1)
    torch.testing.assert_close(out.td_loss, torch.tensor(TD))
    torch.testing.assert_close(out.conservative_gap, torch.tensor(gap))
    torch.testing.assert_close(out.loss, torch.tensor(0.633012), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.q_ood_logsumexp, torch.tensor(gap + 0.5))     # gap + mean Q(s, a)
    assert all(isinstance(v, float) for v in out.stats().values())


def test_cql_refined_candidates_set_by_hand():
    # include_data_action=False: μ = 2 uniform + 2 policy, plain log Σ exp, no constant:
    #   state 0: log(4e⁰) − 1 = log 4 − 1;  state 1: log(4e¹) − 0 = 1 + log 4;  gap = log 4 ≈ 1.386294
    # L = 0.625 + 0.1 · log 4 = 0.763629
    out = cql_loss(Q_DATA, Y, Q_RANDOM, Q_POLICY, alpha=0.1, include_data_action=False)
    torch.testing.assert_close(out.conservative_gap, torch.tensor(math.log(4)))
    torch.testing.assert_close(out.loss, torch.tensor(TD + 0.1 * math.log(4)))


def test_cql_conservative_term_averages_a_random_pair_of_heads():
    # E = 4: the TD term is the mean over all 4 heads; the gap is the mean over the 2 heads drawn. Each
    # pair gives a different loss, so the loss names the pair; different seeds draw different pairs.
    q_data, y, q_random, q_policy = _random_case(E=4)
    by_pair = {pair: official_cql(*_lists(q_data, y, q_random, q_policy), 0.7, pair)[0]
               for pair in itertools.combinations(range(4), 2)}
    drawn = set()
    for seed in range(12):
        loss = float(cql_loss(q_data, y, q_random, q_policy, 0.7, generator=torch.Generator().manual_seed(seed)).loss)
        matches = [pair for pair, ref in by_pair.items() if abs(ref - loss) < 1e-5]
        assert len(matches) == 1, (loss, by_pair)
        drawn.add(matches[0])
    assert len(drawn) > 2
    # conservative_heads = 3 of 4, and = E (all heads, no draw)
    g = torch.Generator().manual_seed(0)
    three = float(cql_loss(q_data, y, q_random, q_policy, 0.7, conservative_heads=3, generator=g).loss)
    assert any(abs(official_cql(*_lists(q_data, y, q_random, q_policy), 0.7, h)[0] - three) < 1e-5
               for h in itertools.combinations(range(4), 3))
    every = cql_loss(q_data, y, q_random, q_policy, 0.7, conservative_heads=4)
    ref, td, gap = official_cql(*_lists(q_data, y, q_random, q_policy), 0.7, range(4))
    torch.testing.assert_close(every.loss, torch.tensor(ref))
    torch.testing.assert_close(every.td_loss, torch.tensor(td))
    torch.testing.assert_close(every.conservative_gap, torch.tensor(gap))


def test_cql_two_heads_use_both_and_draw_nothing():
    q_data, y, q_random, q_policy = _random_case(E=2, seed=1)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    out = cql_loss(q_data, y, q_random, q_policy, 0.3, generator=g)
    assert torch.equal(g.get_state(), state)
    torch.testing.assert_close(out.loss, torch.tensor(official_cql(*_lists(q_data, y, q_random, q_policy), 0.3,
                                                                   [0, 1])[0]))


def test_two_head_official_scale_at_double_alpha_equals_the_half_sum_form():
    # mean_i (Q_i − y)² + 2α mean_i gap_i = ½ Σ_i (Q_i − y)² + α Σ_i gap_i  for E = 2 (same μ)
    q_data, y, q_random, q_policy = _random_case(E=2, seed=2)
    new = cql_loss(q_data, y, q_random, q_policy, 2 * 0.4, include_data_action=False)
    torch.testing.assert_close(new.loss, torch.tensor(half_sum_cql(*_lists(q_data, y, q_random, q_policy), 0.4)))


def test_calql_official_by_hand():
    # V^μ = [0.5, 0.5].  State 0: policy Q = [0, 0] < 0.5 → lifted to [0.5, 0.5] (bound active); uniform
    #   [0, 0] and the data value 1 are not bounded:
    #   log(e⁰ + e⁰ + e^0.5 + e^0.5 + e¹) − log 5 − 1 = log 8.015724 − 1.609438 − 1 = −0.528033
    # State 1: policy Q = [1, 1] ≥ 0.5 → unchanged, as in CQL: log(4e + 1) − log 5 − 0 = 0.864840
    # gap = mean(−0.528033, 0.864840) = 0.168403;  L = 0.625 + 0.1 · 0.168403 = 0.641840
    gap = ((math.log(2 + 2 * math.exp(0.5) + math.e) - math.log(5) - 1) + (math.log(4 * math.e + 1) - math.log(5))) / 2
    out = calql_loss(Q_DATA, Y, Q_RANDOM, Q_POLICY, torch.tensor([0.5, 0.5]), alpha=0.1)
    torch.testing.assert_close(out.conservative_gap, torch.tensor(gap))
    torch.testing.assert_close(out.loss, torch.tensor(0.641840), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.bound_rate, torch.tensor(0.5))   # 2 of the 4 policy values lifted


def test_calql_bounds_only_policy_actions_on_a_random_pair_of_heads():
    # V^μ = 0: about half of each head's values lie below it. Bounding the uniform or data values too would
    # change the loss, so matching the loops (which bound q_policy only) pins which entries are lifted.
    q_data, y, q_random, q_policy = _random_case(E=3, seed=4)
    v_mu = torch.zeros(3)
    below = q_policy < 0
    assert below.any() and (~below).any() and (q_random < 0).any() and (q_data < 0).any()
    out = calql_loss(q_data, y, q_random, q_policy, v_mu, 0.5, generator=torch.Generator().manual_seed(0))
    refs = [official_cql(*_lists(q_data, y, q_random, q_policy), 0.5, pair, v_mu=v_mu.tolist())[0]
            for pair in itertools.combinations(range(3), 2)]
    assert sum(abs(ref - float(out.loss)) < 1e-5 for ref in refs) == 1, (float(out.loss), refs)
    torch.testing.assert_close(out.bound_rate, below.float().mean())


def test_calql_bound_is_active_exactly_where_q_is_below_the_mc_return():
    torch.manual_seed(0)
    q_data = torch.randn(3, 8)
    q_random = torch.randn(3, 8, 4)
    q_policy = torch.randn(3, 8, 5, requires_grad=True)
    v_mu = torch.randn(8)
    out = calql_loss(q_data, torch.randn(8), q_random, q_policy, v_mu, alpha=1.0, conservative_heads=3)
    (grad,) = torch.autograd.grad(out.loss, q_policy)
    below = q_policy.detach() < v_mu[None, :, None]
    assert below.any() and (~below).any()
    assert (grad[below] == 0).all(), "a lifted value must not be pushed down"
    assert (grad[~below] > 0).all(), "values above V^μ are pushed down as in CQL"
    torch.testing.assert_close(out.bound_rate, below.float().mean())
    # with V^μ = −∞ Cal-QL is CQL
    plain = cql_loss(q_data, torch.zeros(8), q_random, q_policy, 1.0, conservative_heads=3)
    lifted = calql_loss(q_data, torch.zeros(8), q_random, q_policy, torch.full((8,), -1e9), 1.0, conservative_heads=3)
    torch.testing.assert_close(plain.loss, lifted.loss)


def test_conservative_term_reaches_only_the_drawn_heads():
    q_data, y, q_random, q_policy = _random_case(E=4, seed=5)
    q_random.requires_grad_(True)
    out = cql_loss(q_data, y, q_random, q_policy, 1.0, generator=torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad(out.loss, q_random)
    touched = (grad != 0).flatten(1).any(1)
    assert int(touched.sum()) == 2                      # only Q_i of the 2 drawn heads are pushed down


def test_iql_by_hand():
    # u = Q̄ − V = [1 − 0, 0 − 1] = [1, −1];  L_V = mean(0.9·1², 0.1·1²) = 0.5
    # y = r + γ(1 − d)V(s') = [0 + 0.5·1·2, 1 + 0.5·0·4] = [1, 1];  L_Q = mean(0², 1²) = 0.5 (no ½)
    out = iql_loss(q_data=torch.tensor([[1.0, 2.0]]), q_target=torch.tensor([1.0, 0.0]), v=torch.tensor([0.0, 1.0]),
                   v_next=torch.tensor([2.0, 4.0]), r=torch.tensor([0.0, 1.0]), d=torch.tensor([0.0, 1.0]),
                   gamma=0.5, tau=0.9)
    torch.testing.assert_close(out.value_loss, torch.tensor(0.5))
    torch.testing.assert_close(out.q_loss, torch.tensor(0.5))
    torch.testing.assert_close(out.loss, torch.tensor(1.0))
    torch.testing.assert_close(expectile_loss(torch.tensor([2.0, -2.0]), 0.7), torch.tensor([0.7 * 4, 0.3 * 4]))
    with pytest.raises(ValueError, match="tau"):
        expectile_loss(torch.zeros(1), 1.0)


def test_iql_q_loss_is_the_mean_over_heads_and_batch():
    # 3 heads, y = r + γ(1 − d)V(s') = [1 + 0.5·2, 0 + 0] = [2, 0]; L_Q = 1/(3·2) Σ_i Σ_b (Q_i − y_b)²
    q_data = torch.tensor([[2.0, 1.0], [0.0, 0.0], [3.0, -2.0]])
    y = [2.0, 0.0]
    expected = sum((q_data[i, b].item() - y[b]) ** 2 for i in range(3) for b in range(2)) / 6   # (0+1+4+0+1+4)/6
    out = iql_loss(q_data, torch.zeros(2), torch.zeros(2), torch.tensor([2.0, 5.0]), torch.tensor([1.0, 0.0]),
                   torch.tensor([0.0, 1.0]), gamma=0.5, tau=0.7)
    torch.testing.assert_close(out.q_loss, torch.tensor(expected))
    assert expected == pytest.approx(10 / 6)


def test_shape_and_value_errors_name_the_argument():
    with pytest.raises(ValueError, match="q_policy"):
        cql_loss(Q_DATA, Y, Q_RANDOM, torch.zeros(1, 3, 2), 0.1)
    with pytest.raises(ValueError, match="y must be"):
        cql_loss(Q_DATA, torch.zeros(3), Q_RANDOM, Q_POLICY, 0.1)
    with pytest.raises(ValueError, match="conservative_heads"):
        cql_loss(Q_DATA, Y, Q_RANDOM, Q_POLICY, 0.1, conservative_heads=0)
    with pytest.raises(ValueError, match="alpha"):
        cql_loss(Q_DATA, Y, Q_RANDOM, Q_POLICY, -0.1)
    with pytest.raises(ValueError, match="v_mu"):
        calql_loss(Q_DATA, Y, Q_RANDOM, Q_POLICY, torch.zeros(2, 1), 0.1)
    with pytest.raises(ValueError, match="v_next"):
        iql_loss(Q_DATA, Y, Y, torch.zeros(3), Y, Y, 0.9, 0.7)
