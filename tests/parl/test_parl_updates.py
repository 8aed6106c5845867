"""PolicyUpdate / CriticUpdate: policy improvement toward a known optimum, Accelerate wiring, errors."""

from __future__ import annotations

import pytest
import torch

from tests.parl._parl_toys import QuadraticCritic, TwoStepChain
from vla_parl.critic import critic_state
from vla_parl.errors import ConfigError
from vla_parl.parl import (CriticUpdate, CriticUpdateConfig, ImprovementConfig, PolicyUpdate,
                           TransitionBatch)
from vla_parl.policy import DiffusionPolicy, GaussianPolicy, Observation

OPTIMUM = torch.tensor([0.6, -0.4])


class _ConstantOptimumCritic(QuadraticCritic):
    """Q(s, a) = −‖a − (0.6, −0.4)‖² for every state."""

    def encode(self, obs: Observation) -> torch.Tensor:
        return OPTIMUM.expand(len(obs), 2)


def _states(g: torch.Generator, B: int = 64) -> Observation:
    return Observation(state=2 * torch.rand(B, 2, generator=g) - 1)


def _improve(policy, steps: int, lr: float) -> tuple[float, float]:
    g = torch.Generator().manual_seed(0)
    eval_obs = _states(torch.Generator().manual_seed(1), 128)
    opt = torch.optim.Adam(policy.trainable_parameters(), lr=lr)
    update = PolicyUpdate(policy, opt, _ConstantOptimumCritic(2),
                          ImprovementConfig(num_samples=16, top_k=4, num_steps=5, step_size=0.05, action_mask="all"),
                          generator=g)

    def distance() -> float:
        actions = policy.sample_actions(eval_obs, 16, generator=torch.Generator().manual_seed(2)).actions
        return float((actions.mean(1) - OPTIMUM).norm(dim=-1).mean())

    before = distance()
    for _ in range(steps):
        stats = update.step(_states(g))
    assert all(isinstance(v, float) for v in stats.values())
    assert stats["policy/opt/local_gain"] >= 0 and stats["policy/opt/global_gain"] >= 0
    return before, distance()


def test_parl_step_moves_a_gaussian_policy_to_the_optimum():
    torch.manual_seed(0)
    before, after = _improve(GaussianPolicy.for_state(2, 2, hidden_dims=(32, 32)), steps=150, lr=3e-3)
    assert before > 0.5 and after < 0.1, (before, after)


def test_parl_step_moves_a_diffusion_policy_to_the_optimum():
    torch.manual_seed(0)
    policy = DiffusionPolicy.for_state(2, 2, hidden_dim=64, num_blocks=1, dropout=0.0, num_diffusion_steps=8)
    before, after = _improve(policy, steps=150, lr=3e-3)
    assert before > 0.5 and after < 0.2, (before, after)


def _chain_update(objective: str, accelerator=None, **config):
    torch.manual_seed(0)
    critic = critic_state(2, 1, hidden_dims=(16, 16), value_head=objective == "iql")
    policy = GaussianPolicy.for_state(2, 1, hidden_dims=(8,))
    opt = torch.optim.Adam(critic.trainable_parameters(), lr=1e-3)
    if accelerator is not None:
        critic, opt = accelerator.prepare(critic, opt)
    update = CriticUpdate(critic, opt, None if objective == "iql" else policy,
                          ImprovementConfig(top_k=2, num_steps=2, step_size=0.1, action_mask="all"),
                          CriticUpdateConfig(objective=objective, num_samples=4, cql_n_actions=3, **config),
                          accelerator=accelerator, generator=torch.Generator().manual_seed(0))
    return critic, update


@pytest.mark.parametrize("objective", ["cql", "calql", "iql"])
def test_critic_step_updates_online_and_target_and_reports_floats(objective):
    critic, update = _chain_update(objective, polyak_tau=0.5, max_grad_norm=1.0)
    online = [p.clone() for p in critic.trainable_parameters()]
    target = [p.clone() for p in critic.target.parameters()]
    stats = update.step(TwoStepChain().sample(16, torch.Generator().manual_seed(0)))
    assert all(isinstance(v, float) for v in stats.values()) and "critic/grad_norm" in stats
    assert any(not torch.equal(a, b) for a, b in zip(online, critic.trainable_parameters()))
    for old_t, old_o, new_t in zip(target, online, critic.target.parameters()):
        # θ̄ ← τθ + (1 − τ)θ̄ with the *updated* θ: differs from the old target wherever θ moved
        assert new_t.shape == old_t.shape
    assert any(not torch.equal(a, b) for a, b in zip(target, critic.target.parameters()))
    if objective != "iql":
        assert "critic/next_opt/local_gain" in stats and "critic/policy_opt/q_chosen" in stats


def test_gradient_accumulation_under_accelerate_steps_every_second_call():
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
    critic, update = _chain_update("cql", accelerator=accelerator)
    core = accelerator.unwrap_model(critic)
    batch = TwoStepChain().sample(16, torch.Generator().manual_seed(0))
    snapshot = lambda module: [p.clone() for p in module.parameters()]  # noqa: E731
    online, target = snapshot(core.q_heads), snapshot(core.target)
    update.step(batch)                                                  # accumulating: no step, no Polyak
    assert all(torch.equal(a, b) for a, b in zip(online, core.q_heads.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(target, core.target.parameters()))
    update.step(batch)                                                  # sync: step + Polyak
    assert any(not torch.equal(a, b) for a, b in zip(online, core.q_heads.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(target, core.target.parameters()))


def test_misconfigurations_are_named():
    critic = critic_state(2, 1, hidden_dims=(8,))
    opt = torch.optim.Adam(critic.trainable_parameters())
    with pytest.raises(ConfigError, match="pass a policy"):
        CriticUpdate(critic, opt, None, config=CriticUpdateConfig(objective="cql"))
    with pytest.raises(ConfigError, match="value_head=True"):
        CriticUpdate(critic, opt, None, config=CriticUpdateConfig(objective="iql"))
    with pytest.raises(ConfigError, match="objective"):
        CriticUpdateConfig(objective="sac")
    policy = GaussianPolicy.for_state(2, 1, hidden_dims=(8,))
    update = CriticUpdate(critic, opt, policy, ImprovementConfig(action_mask="all", num_steps=1),
                          CriticUpdateConfig(objective="calql", num_samples=2))
    batch = TwoStepChain().sample(4, torch.Generator().manual_seed(0))
    no_mc = TransitionBatch(batch.obs, batch.actions, batch.rewards, batch.next_obs, batch.dones)
    with pytest.raises(ValueError, match="mc_returns"):
        update.step(no_mc)
    with pytest.raises(ValueError, match="rewards"):
        TransitionBatch(batch.obs, batch.actions, batch.rewards[:2], batch.next_obs, batch.dones)
