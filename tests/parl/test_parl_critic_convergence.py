"""Critics trained with CQL, Cal-QL and IQL through `CriticUpdate` on a two-step chain with analytic Q.

Q*((x, 0), a) = −(a − x)² + γ a — the t = 0 values are only right if the TD target bootstraps from the
*optimized* next action (max_a' Q*((a, 1), a') = a). IQL has its own analytic fixed point (V is an
expectile of Q under the uniform behaviour, not a max), computed in `iql_fixed_point`.
Tolerance: RMSE ≤ 0.1 over a grid of states × actions where Q* spans about [−5, 0.5].
"""

from __future__ import annotations

import pytest
import torch

from tests.parl._parl_toys import TwoStepChain, iql_fixed_point
from vla_parl.critic import critic_state
from vla_parl.parl import CriticUpdate, CriticUpdateConfig, ImprovementConfig
from vla_parl.policy import GaussianPolicy

TAU_IQL = 0.9


def _train(objective: str, steps: int):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    chain = TwoStepChain(gamma=0.9)
    critic = critic_state(2, 1, hidden_dims=(64, 64), value_head=objective == "iql")
    policy = GaussianPolicy.for_state(2, 1, hidden_dims=(16,))           # untrained: broad candidates
    update = CriticUpdate(
        critic, torch.optim.Adam(critic.trainable_parameters(), lr=2e-3), policy,
        ImprovementConfig(top_k=4, num_steps=3, step_size=0.1, action_mask="all"),
        CriticUpdateConfig(objective=objective, polyak_tau=0.05, num_samples=8, cql_n_actions=4, expectile=TAU_IQL),
        gamma=chain.gamma, generator=g)
    for _ in range(steps):
        stats = update.step(chain.sample(128, g))
    critic.eval()
    obs, actions, q_star = chain.eval_grid()
    with torch.no_grad():
        q = critic.q_mean(critic.encode(obs), actions)
    return chain, critic, obs, actions, q_star, q, stats


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["cql", "calql"])
def test_conservative_critics_recover_q_star(objective):
    chain, critic, obs, actions, q_star, q, stats = _train(objective, 300)
    rmse = (q - q_star).pow(2).mean().sqrt().item()
    assert rmse < 0.1, rmse
    # the greedy action at t = 0 is x + γ/2 = x + 0.45, halfway between grid actions (spacing 0.1):
    # allow 1.5 grid steps (an untrained critic is off by up to ~1.5)
    x0 = obs.state[:11, 0]
    greedy = actions[:11, :, 0].gather(1, q[:11].argmax(1, keepdim=True))[:, 0]
    assert (greedy - (x0 + 0.45)).abs().max() <= 0.15 + 1e-5
    if objective == "calql":
        assert 0.0 <= stats["critic/bound_rate"] < 0.2    # behaviour returns rarely exceed the optimized Q


def test_iql_recovers_its_analytic_fixed_point():
    chain, critic, obs, actions, _, q, _ = _train("iql", 400)
    x = obs.state[:, :1].expand_as(actions[..., 0])
    t = obs.state[:, 1:].expand_as(actions[..., 0])
    q_fp, v_fp = iql_fixed_point(chain, x, t, actions[..., 0], TAU_IQL)
    rmse = (q - q_fp).pow(2).mean().sqrt().item()
    assert rmse < 0.1, rmse
    with torch.no_grad():
        v = critic.v_values(critic.encode(obs))
    assert (v - v_fp[:, 0]).abs().max() < 0.15
