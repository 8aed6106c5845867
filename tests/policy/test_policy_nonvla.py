"""DiffusionPolicy and GaussianPolicy: the Policy protocol, learning a toy target, checkpoints, errors."""

from __future__ import annotations

import pytest
import torch

from vla_parl.critic import ObservationEncoder
from vla_parl.errors import CheckpointError, ConfigError
from vla_parl.policy import (CandidateActions, DiffusionPolicy, DiffusionPolicyConfig, GaussianPolicy, Observation,
                             Policy, PolicyLoss)
from vla_parl.policy.diffusion import make_beta_schedule


def _toy_batch(batch_size: int, generator: torch.Generator) -> tuple[Observation, torch.Tensor]:
    """States s ∈ [−1, 1]², target action a*(s) = (0.5 s₀, −0.3)."""
    s = 2 * torch.rand(batch_size, 2, generator=generator) - 1
    return Observation(state=s), torch.stack([0.5 * s[:, 0], torch.full((batch_size,), -0.3)], -1)


def _diffusion(**kw) -> DiffusionPolicy:
    return DiffusionPolicy.for_state(2, 2, hidden_dim=64, num_blocks=2, dropout=0.0, num_diffusion_steps=10, **kw)


def _gaussian() -> GaussianPolicy:
    return GaussianPolicy.for_state(2, 2, hidden_dims=(32, 32))


@pytest.mark.parametrize("make", [_diffusion, _gaussian])
def test_implements_protocol_and_shapes(make):
    torch.manual_seed(0)
    policy = make()
    assert isinstance(policy, Policy)
    obs = Observation(state=torch.randn(3, 2))
    out = policy.sample_actions(obs, 5, generator=torch.Generator().manual_seed(1))
    assert isinstance(out, CandidateActions)
    assert out.actions.shape == (3, 5, 2) and out.actions.abs().max() <= 1.0
    loss = policy.supervised_loss(obs, torch.zeros(3, 2))
    assert isinstance(loss, PolicyLoss) and loss.loss.ndim == 0 and loss.loss.requires_grad
    assert all(isinstance(v, float) for v in loss.stats.values())
    assert {id(p) for p in policy.trainable_parameters()} == {id(p) for p in policy.parameters()}


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_beta_schedules_destroy_the_signal(kind):
    for steps in (5, 20, 100):
        betas = make_beta_schedule(kind, steps)
        alpha_bar = torch.cumprod(1 - betas, 0)
        assert betas.shape == (steps,) and (betas > 0).all() and (betas < 1).all()
        assert (alpha_bar[1:] < alpha_bar[:-1]).all() and alpha_bar[-1] < 0.02


def test_diffusion_learns_a_toy_target():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    policy = _diffusion()
    opt = torch.optim.Adam(policy.trainable_parameters(), lr=2e-3)
    eval_obs, eval_target = _toy_batch(256, torch.Generator().manual_seed(123))

    def eval_loss() -> float:
        torch.manual_seed(7)  # the same (k, ε) draws before and after training
        with torch.no_grad():
            return policy.supervised_loss(eval_obs, eval_target).loss.item()

    before = eval_loss()
    for _ in range(400):
        obs, target = _toy_batch(128, g)
        loss = policy.supervised_loss(obs, target).loss
        opt.zero_grad(); loss.backward(); opt.step()
    after = eval_loss()
    assert after < 0.5 * before, (before, after)
    samples = policy.sample_actions(eval_obs, 16, generator=torch.Generator().manual_seed(3)).actions
    err = (samples.mean(1) - eval_target).abs().mean().item()
    assert err < 0.1, err     # the untrained policy's mean sample is ~0.57 away


def test_gaussian_learns_a_toy_target():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    policy = _gaussian()
    opt = torch.optim.Adam(policy.trainable_parameters(), lr=3e-3)
    eval_obs, eval_target = _toy_batch(256, torch.Generator().manual_seed(123))
    before = policy.supervised_loss(eval_obs, eval_target).loss.item()
    for _ in range(300):
        obs, target = _toy_batch(128, g)
        loss = policy.supervised_loss(obs, target).loss
        opt.zero_grad(); loss.backward(); opt.step()
    assert policy.supervised_loss(eval_obs, eval_target).loss.item() < before - 3.0
    assert (policy.mean_action(eval_obs) - eval_target).abs().max() < 0.1


def test_gaussian_nll_matches_the_formula():
    policy = _gaussian()
    obs = Observation(state=torch.randn(4, 2))
    a = torch.rand(4, 2) * 2 - 1
    mean, log_std = policy.distribution_params(obs)
    expected = -torch.distributions.Normal(mean, log_std.exp()).log_prob(a).sum(-1).mean()
    torch.testing.assert_close(policy.supervised_loss(obs, a).loss, expected)


@pytest.mark.parametrize("make", [_diffusion, _gaussian])
def test_save_load_roundtrip(make, tmp_path):
    torch.manual_seed(0)
    policy = make()
    policy.save(tmp_path / "ckpt")
    restored = type(policy).load(tmp_path / "ckpt")
    obs = Observation(state=torch.randn(3, 2))
    a = policy.sample_actions(obs, 4, generator=torch.Generator().manual_seed(5)).actions
    b = restored.sample_actions(obs, 4, generator=torch.Generator().manual_seed(5)).actions
    torch.testing.assert_close(a, b)
    with pytest.raises(CheckpointError, match="DiffusionPolicy|GaussianPolicy"):
        (GaussianPolicy if isinstance(policy, DiffusionPolicy) else DiffusionPolicy).load(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="missing"):
        type(policy).load(tmp_path / "nothing")


def test_obs_encoder_hook_conditions_on_language(tmp_path):
    """A policy on the critic's ObservationEncoder (instruction + state) reacts to the instruction."""
    torch.manual_seed(0)
    encoder = ObservationEncoder(vocab_size=64, instruction_dim=8, state_dim=2)
    policy = DiffusionPolicy(DiffusionPolicyConfig(action_dim=2, hidden_dim=32, num_blocks=1, num_diffusion_steps=5), encoder)
    state = torch.zeros(2, 2)
    obs = Observation(state=state, instructions=["open the drawer", "push the red block"])
    a = policy.sample_actions(obs, 3, generator=torch.Generator().manual_seed(0)).actions
    same = Observation(state=state, instructions=["open the drawer", "open the drawer"])
    b = policy.sample_actions(same, 3, generator=torch.Generator().manual_seed(0)).actions
    torch.testing.assert_close(a[0], b[0])
    assert not torch.allclose(a[1], b[1])
    policy.save(tmp_path / "p")
    restored = DiffusionPolicy.load(tmp_path / "p")
    torch.testing.assert_close(restored.sample_actions(obs, 3, generator=torch.Generator().manual_seed(0)).actions, a)


def test_bad_inputs_name_the_problem():
    policy = _gaussian()
    with pytest.raises(ValueError, match="obs.state is None"):
        policy.sample_actions(Observation(instructions=["x"]), 2)
    with pytest.raises(ValueError, match=r"\[B, 2\]"):
        policy.sample_actions(Observation(state=torch.zeros(2, 3)), 2)
    with pytest.raises(ValueError, match="target_actions"):
        policy.supervised_loss(Observation(state=torch.zeros(2, 2)), torch.zeros(2, 2, 1))
    with pytest.raises(ValueError, match="num_samples"):
        policy.sample_actions(Observation(state=torch.zeros(2, 2)), 0)
    with pytest.raises(ConfigError, match="beta_schedule"):
        DiffusionPolicyConfig(action_dim=2, beta_schedule="sigmoid")
    with pytest.raises(ConfigError, match="num_diffusion_steps"):
        DiffusionPolicyConfig(action_dim=2, num_diffusion_steps=0)
