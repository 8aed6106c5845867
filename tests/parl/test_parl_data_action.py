"""The dataset action as a distillation candidate (official PA-RL): it replaces the worst of the k kept starts
before the local steps, on a quadratic critic whose ranking is known: Q(s, a) = −‖a − s‖²."""

from __future__ import annotations

import pytest
import torch

from tests.parl._parl_toys import QuadraticCritic
from vla_parl.errors import ConfigError
from vla_parl.parl import ImprovementConfig, ImprovementOperator, PolicyUpdate
from vla_parl.policy import GaussianPolicy, Observation

B, N, A = 4, 6, 3


def _problem(seed: int = 0) -> tuple[Observation, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    optimum = 0.5 * (2 * torch.rand(B, A, generator=g) - 1)
    candidates = 2 * torch.rand(B, N, A, generator=g) - 1
    return Observation(state=optimum), optimum, candidates


def _q(optimum: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    return -(actions - optimum[:, None]).pow(2).sum(-1)


def _operator(**settings) -> ImprovementOperator:
    return ImprovementOperator(QuadraticCritic(A), config=ImprovementConfig(**settings))


def test_the_data_action_replaces_the_worst_kept_start():
    obs, optimum, candidates = _problem()
    data = optimum + 0.7                                            # worse than some samples, better than others
    out = _operator(top_k=3, num_steps=0).improve(obs, candidates=candidates, data_actions=data)
    q = _q(optimum, candidates)
    order = q.argsort(dim=1, descending=True)
    for b in range(B):
        torch.testing.assert_close(out.candidates[b, :2], candidates[b, order[b, :2]])   # the true top-2 stay
    torch.testing.assert_close(out.candidates[:, 2], data)                               # slot k − 1 = the data
    torch.testing.assert_close(out.candidate_q[:, 2], _q(optimum, data[:, None])[:, 0])
    assert out.stats["q_data_action"] == pytest.approx(float(_q(optimum, data[:, None]).mean()), rel=1e-5)
    # the scored samples are still the policy's own
    torch.testing.assert_close(out.samples, candidates)


def test_the_data_action_can_be_chosen_and_the_local_steps_start_from_it():
    obs, optimum, candidates = _problem()
    best = _operator(top_k=3, num_steps=0).improve(obs, candidates=candidates, data_actions=optimum.clone())
    torch.testing.assert_close(best.actions, optimum)                # Q = 0, the best possible: argmax takes it
    assert (best.index == 2).all() and best.stats["data_action_chosen"] == 1.0
    # k = 1: the worst kept start is the only one, so the data action is the only candidate; T plain gradient
    # steps from it scale its error by (1 − 2η) each (∇Q = −2(a − a*))
    data = optimum + 0.2
    eta, T = 0.05, 4
    out = _operator(top_k=1, num_steps=T, step_size=eta).improve(obs, candidates=candidates, data_actions=data)
    torch.testing.assert_close(out.actions, optimum + (1 - 2 * eta) ** T * (data - optimum))
    assert out.stats["data_action_chosen"] == 1.0


def test_without_data_actions_or_with_the_setting_off_nothing_changes():
    obs, optimum, candidates = _problem()
    settings = {"top_k": 3, "num_steps": 3, "step_size": 0.05}
    plain = _operator(**settings).improve(obs, candidates=candidates)
    off = _operator(**settings, data_action=False).improve(obs, candidates=candidates, data_actions=optimum)
    for out in (plain, off):
        assert "data_action_chosen" not in out.stats and "q_data_action" not in out.stats
    torch.testing.assert_close(off.candidates, plain.candidates)
    torch.testing.assert_close(off.actions, plain.actions)
    # the k-th slot without the data action is the k-th best sample, refined
    on = _operator(**settings).improve(obs, candidates=candidates, data_actions=optimum)
    torch.testing.assert_close(on.candidates[:, :2], plain.candidates[:, :2])
    assert not torch.allclose(on.candidates[:, 2], plain.candidates[:, 2])
    with pytest.raises(ValueError, match=r"data_actions must be \[B, A\] = \[4, 3\]"):
        _operator().improve(obs, candidates=candidates, data_actions=optimum[:, :2])
    with pytest.raises(ConfigError, match="data_action must be true or false, got 'yes'"):
        ImprovementConfig(data_action="yes")


def test_policy_update_passes_the_global_rows_data_actions_and_reports_the_choice():
    torch.manual_seed(0)
    policy = GaussianPolicy.for_state(A, A, hidden_dims=(8,))
    update = PolicyUpdate(policy, torch.optim.Adam(policy.trainable_parameters(), lr=1e-3), QuadraticCritic(A),
                          ImprovementConfig(num_samples=N, top_k=2, num_steps=0),
                          generator=torch.Generator().manual_seed(0))
    obs, optimum, _ = _problem()
    stats = update.step(obs, local_rows=slice(0, 2), data_actions=optimum)   # the data action is optimal
    assert stats["policy/opt/data_action_chosen"] == 1.0
    assert "policy/opt/data_action_chosen" not in update.step(obs)
