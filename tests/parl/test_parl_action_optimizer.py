"""The operator's optimization of given candidates (top-k → local ascent → choice) on a hand-built quadratic
critic with a known optimum: Q_i = −Σ_d w_d (a_d − s_d − δ_i)²."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.parl._parl_toys import QuadraticCritic
from vla_parl.critic import critic_state
from vla_parl.errors import ConfigError
from vla_parl.parl import ImprovementConfig, ImprovementOperator
from vla_parl.policy import CandidateActions, Observation


def _optimizer(**settings):
    """`optimize(critic, obs, candidates, **improve_kwargs)` with these operator settings (checked here)."""
    config = ImprovementConfig(**settings)

    def optimize(critic, obs, candidates, **kwargs):
        return ImprovementOperator(critic, config=config).improve(obs, candidates=candidates, **kwargs)

    return optimize


def _problem(B: int = 5, N: int = 12, A: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    optimum = 0.6 * (2 * torch.rand(B, A, generator=g) - 1)             # a*(s) inside the box
    candidates = 2 * torch.rand(B, N, A, generator=g) - 1
    return Observation(state=optimum), optimum, candidates


def test_local_step_is_plain_gradient_ascent_and_strictly_raises_q():
    obs, optimum, candidates = _problem()
    critic = QuadraticCritic(3)
    eta, T = 0.05, 10
    out = _optimizer(top_k=1, num_steps=T, step_size=eta, action_mask="all")(critic, obs, candidates)
    # Q = −‖a − a*‖², ∇Q = −2(a − a*): each step scales the error by (1 − 2η) = 0.9, so after T steps
    # a − a* = 0.9¹⁰ (a₀ − a*) (no clipping: the path stays between a₀ and a*, inside the box)
    q0 = critic.q_values(optimum, candidates)[0]
    start = candidates[torch.arange(5), q0.argmax(1)]
    torch.testing.assert_close(out.actions, optimum + (1 - 2 * eta) ** T * (start - optimum))
    assert (out.q > q0.max(1).values).all()
    assert out.stats["local_gain"] > 0 and critic.encode_calls == 1      # s encoded once


def test_bounds_are_respected_when_the_optimum_lies_outside():
    obs = Observation(state=torch.tensor([[2.0, -3.0, 0.1]]))
    candidates = torch.zeros(1, 4, 3)
    out = _optimizer(num_steps=50, step_size=0.1, action_mask="all", low=-0.5, high=0.5)(
        QuadraticCritic(3), obs, candidates)
    assert out.candidates.min() >= -0.5 and out.candidates.max() <= 0.5
    # (at Q ≈ −8.5, float32 cannot resolve the last tiny gains of the free dim: atol 1e-3)
    torch.testing.assert_close(out.actions, torch.tensor([[0.5, -0.5, 0.1]]), atol=1e-3, rtol=0)


def test_the_default_mask_moves_every_dim_and_except_last_keeps_the_gripper_as_sampled():
    obs, optimum, candidates = _problem(A=4)
    q0 = QuadraticCritic(4).q_values(optimum, candidates)[0]
    top = q0.topk(3, dim=1).indices
    start = candidates.gather(1, top[..., None].expand(5, 3, 4))
    settings = {"top_k": 3, "num_steps": 10, "step_size": 0.05}
    default = _optimizer(**settings)(QuadraticCritic(4), obs, candidates).candidates
    assert ((default - start).abs() > 0).all()                                   # every dim moved (official)
    torch.testing.assert_close(_optimizer(**settings, action_mask="all")(QuadraticCritic(4), obs, candidates)
                               .candidates, default)
    gripper = _optimizer(**settings, action_mask="except_last")(QuadraticCritic(4), obs, candidates).candidates
    torch.testing.assert_close(gripper[..., -1], start[..., -1])                  # the last dim as sampled
    torch.testing.assert_close(gripper[..., :-1], default[..., :-1])              # the rest as with every dim
    masked = _optimizer(**settings, action_mask=[True, False, True, False])
    moved = masked(QuadraticCritic(4), obs, candidates).candidates
    torch.testing.assert_close(moved[..., [1, 3]], start[..., [1, 3]])


@pytest.mark.parametrize("mask", ["gripper", "ALL", 3, [1, 0, 1], ["yes"]])
def test_a_bad_action_mask_is_a_config_error_naming_the_choices(mask):
    with pytest.raises(ConfigError, match="action_mask must be null.*'all', 'except_last'.*list of booleans"):
        ImprovementConfig(action_mask=mask)


def test_global_step_keeps_the_true_top_k_in_order():
    obs, optimum, candidates = _problem(B=4, N=9)
    out = _optimizer(top_k=3, num_steps=0)(QuadraticCritic(3), obs, candidates)
    q = -(candidates - optimum[:, None]).pow(2).sum(-1)                           # brute force, [B, N]
    for b in range(4):
        order = sorted(range(9), key=lambda j: -float(q[b, j]))[:3]
        torch.testing.assert_close(out.candidates[b], candidates[b, order])
        torch.testing.assert_close(out.candidate_q[b], q[b, order])
    torch.testing.assert_close(out.actions, out.candidates[:, 0])                 # argmax = best
    # diagnostics: global gain = best sample vs the mean of samples / vs the first sample
    assert out.stats["global_gain"] == pytest.approx(float((q.max(1).values - q.mean(1)).mean()), rel=1e-5)
    assert out.stats["global_gain_vs_first"] == pytest.approx(float((q.max(1).values - q[:, 0]).mean()), rel=1e-5)
    assert out.stats["local_gain"] == 0.0
    # k larger than N is clamped to N
    assert _optimizer(top_k=50, num_steps=0)(QuadraticCritic(3), obs, candidates).candidates.shape == (4, 9, 3)


def test_the_best_iterate_is_kept_when_steps_overshoot():
    obs, optimum, candidates = _problem()
    # η = 2: each step maps the error e to (1 − 4)e = −3e — Q only gets worse, so the start must be kept
    out = _optimizer(top_k=4, num_steps=5, step_size=2.0, action_mask="all", low=-100, high=100)(
        QuadraticCritic(3), obs, candidates)
    start = _optimizer(top_k=4, num_steps=0)(QuadraticCritic(3), obs, candidates)
    torch.testing.assert_close(out.candidates, start.candidates)
    assert out.stats["local_gain"] == 0.0


def test_ensemble_reduction_and_softmax_choice():
    obs, optimum, candidates = _problem(B=64, N=8)
    critic = QuadraticCritic(3, offsets=[0.0, 0.3])
    q = critic.q_values(optimum, candidates)
    for reduce, expected in (("mean", q.mean(0)), ("min", q.min(0).values)):
        out = _optimizer(top_k=8, num_steps=0, ensemble_reduce=reduce)(critic, obs, candidates)
        torch.testing.assert_close(out.candidate_q, expected.sort(1, descending=True).values)
    sharp = _optimizer(top_k=8, num_steps=0, choice="softmax", temperature=1e-4)
    assert (sharp(critic, obs, candidates, generator=torch.Generator().manual_seed(0)).index == 0).all()
    flat = _optimizer(top_k=8, num_steps=0, choice="softmax", temperature=1e4)
    picks = flat(critic, obs, candidates, generator=torch.Generator().manual_seed(0)).index
    assert len(set(picks.tolist())) > 3                                            # ≈ uniform over the 8


def test_works_inside_no_grad_on_a_real_critic_and_restores_its_mode():
    torch.manual_seed(0)
    critic = critic_state(2, 2, hidden_dims=(16, 16)).train()
    obs = Observation(state=torch.randn(3, 2))
    with torch.no_grad():                                                         # as in a TD-target block
        out = _optimizer(top_k=2, num_steps=5, step_size=0.05, action_mask="all")(
            critic, obs, CandidateActions(actions=torch.rand(3, 6, 2) * 2 - 1))
    assert out.stats["local_gain"] > 0 and critic.training
    assert all(p.grad is None for p in critic.parameters())                       # the critic is only read


def test_bad_inputs_name_the_problem():
    obs, _, candidates = _problem()
    with pytest.raises(ValueError, match=r"\[B, N, A\]"):
        _optimizer()(QuadraticCritic(3), obs, candidates[:, 0])
    with pytest.raises(ConfigError, match="action_mask has 2 entries"):
        _optimizer(action_mask=[True, False])(QuadraticCritic(3), obs, candidates)
    with pytest.raises(ConfigError, match="action_mask='except_last' selects no dims.*use action_mask='all'"):
        _optimizer(action_mask="except_last")(QuadraticCritic(1), Observation(state=torch.zeros(2, 1)),
                                              torch.zeros(2, 3, 1))
    with pytest.raises(ValueError, match="B = 5"):
        _optimizer()(QuadraticCritic(3), obs.index(slice(0, 2)), candidates)
    with pytest.raises(ConfigError, match="top_k"):
        _optimizer(top_k=0)
    with pytest.raises(ConfigError, match="choice"):
        _optimizer(choice="max")


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), step_size=st.floats(1e-3, 3.0), num_steps=st.integers(0, 6),
       top_k=st.integers(1, 8), reduce=st.sampled_from(["mean", "min"]))
def test_never_worse_than_the_best_sample_and_always_in_bounds(seed, step_size, num_steps, top_k, reduce):
    g = torch.Generator().manual_seed(seed)
    critic = QuadraticCritic(3, offsets=(torch.rand(3, generator=g) - 0.5).tolist(),
                             weights=(0.1 + 3 * torch.rand(3, generator=g)).tolist())
    obs = Observation(state=3 * torch.rand(4, 3, generator=g) - 1.5)             # optimum may lie outside
    candidates = 1.6 * torch.rand(4, 6, 3, generator=g) - 0.8
    out = _optimizer(top_k=top_k, num_steps=num_steps, step_size=step_size, ensemble_reduce=reduce,
                          action_mask="all", low=-0.8, high=0.8)(critic, obs, candidates)
    q = critic.q_values(obs.state, candidates)
    q = q.mean(0) if reduce == "mean" else q.min(0).values
    assert (out.q >= q.max(1).values - 1e-6).all()
    assert out.candidates.min() >= -0.8 and out.candidates.max() <= 0.8
