"""`CriticUpdate`'s push-down set μ, read off the one critic forward of a step (a forward hook on a real
tiny critic), and its loss checked against the hand loops of `tests/critic/_official_losses`.

official:            μ = n uniform + a*(s) × n + a'* × n + the data action (3n + 1, all scored at s)
refined_candidates:  μ = n uniform + the k refined candidates at s; with 2 heads and α' = 2α its loss is the
                     former ½·Σ-over-heads loss at α.
The expected a*(s), a'* and y come from replaying the step's random stream (same seed) on the operator
before the step.
"""

from __future__ import annotations

import pytest
import torch

from tests.critic._official_losses import half_sum_cql, official_cql
from tests.parl._parl_toys import TwoStepChain
from vla_parl.critic import critic_state
from vla_parl.errors import ConfigError
from vla_parl.parl import CriticUpdate, CriticUpdateConfig, ImprovementConfig
from vla_parl.policy import GaussianPolicy

N_UNIFORM, TOP_K, GAMMA = 3, 2, 0.9


def _update(objective: str, push_down: str, alpha: float) -> tuple:
    torch.manual_seed(0)
    critic = critic_state(2, 1, hidden_dims=(16, 16))                        # 2 heads: no head draw
    policy = GaussianPolicy.for_state(2, 1, hidden_dims=(8,))
    update = CriticUpdate(critic, torch.optim.Adam(critic.trainable_parameters(), lr=1e-3), policy,
                          ImprovementConfig(top_k=TOP_K, num_steps=2, step_size=0.1, action_mask="all"),
                          CriticUpdateConfig(objective=objective, num_samples=4, cql_n_actions=N_UNIFORM,
                                             cql_alpha=alpha, push_down=push_down),
                          gamma=GAMMA, generator=torch.Generator().manual_seed(0))
    return critic, update


def _replay(critic, update, batch):
    """a'*, y and the operator at s, from the same random stream the step will use (seed 0)."""
    g = torch.Generator().manual_seed(0)
    next_actions = update.operator.improve(batch.next_obs, generator=g).actions
    next_q = critic.target_q(batch.next_obs, next_actions[:, None], g)[:, 0]
    y = batch.rewards + GAMMA * (1 - batch.dones.float()) * next_q
    return next_actions, y, update.operator.improve(batch.obs, generator=g)


def _record_forward(critic) -> list:
    calls = []
    critic.register_forward_hook(lambda module, args, out: calls.append((args[0], args[1].clone(), out.q.detach())))
    return calls


@pytest.mark.parametrize("objective", ["cql", "calql"])
def test_official_push_down_set_is_uniform_argmax_s_argmax_next_and_data(objective):
    critic, update = _update(objective, "official", alpha=0.5)
    batch = TwoStepChain(gamma=GAMMA).sample(8, torch.Generator().manual_seed(1))
    next_actions, y, at_s = _replay(critic, update, batch)
    calls = _record_forward(critic)
    stats = update.step(batch)
    assert len(calls) == 1
    obs, actions, q = calls[0]
    assert obs is batch.obs                                             # every action of μ is scored at s
    n = N_UNIFORM
    assert actions.shape == (8, 1 + n + 2, 1)                           # a, n uniform, a*(s), a'* (once each)
    assert torch.equal(actions[:, 0], batch.actions)                    # the data action is in μ
    assert ((actions[:, 1:1 + n] >= -1) & (actions[:, 1:1 + n] <= 1)).all()
    torch.testing.assert_close(actions[:, 1 + n], at_s.actions)         # the operator's argmax at s
    torch.testing.assert_close(actions[:, 2 + n], next_actions)         # the TD target's a'*, scored at s
    assert not torch.allclose(next_actions, at_s.actions)               # (s ≠ s': the two are distinguishable)
    # the loss over |μ| = 3n + 1 values: a*(s) and a'* each counted n times, − log(3n + 1)
    q_policy = [[[row[1 + n]] * n + [row[2 + n]] * n for row in head] for head in q.tolist()]
    q_random = [[row[1:1 + n] for row in head] for head in q.tolist()]
    v_mu = batch.mc_returns.tolist() if objective == "calql" else None
    loss, td, gap = official_cql(q[:, :, 0].tolist(), y.tolist(), q_random, q_policy, 0.5, [0, 1], v_mu=v_mu)
    assert stats["critic/td_loss"] == pytest.approx(td, rel=1e-5)
    assert stats["critic/conservative_gap"] == pytest.approx(gap, rel=1e-5, abs=1e-6)
    assert stats["critic/loss"] == pytest.approx(loss, rel=1e-5)


def test_refined_candidates_keeps_the_former_set_and_loss_at_half_alpha():
    critic, update = _update("cql", "refined_candidates", alpha=2 * 0.5)
    batch = TwoStepChain(gamma=GAMMA).sample(8, torch.Generator().manual_seed(1))
    _, y, at_s = _replay(critic, update, batch)
    calls = _record_forward(critic)
    stats = update.step(batch)
    obs, actions, q = calls[0]
    n = N_UNIFORM
    assert actions.shape == (8, 1 + n + TOP_K, 1)                       # a (for the TD term), n uniform, k refined
    torch.testing.assert_close(actions[:, 1 + n:], at_s.candidates)
    q_random = [[row[1:1 + n] for row in head] for head in q.tolist()]
    q_policy = [[row[1 + n:] for row in head] for head in q.tolist()]
    assert stats["critic/loss"] == pytest.approx(half_sum_cql(q[:, :, 0].tolist(), y.tolist(), q_random, q_policy, 0.5),
                                                 rel=1e-5)


def test_push_down_and_conservative_heads_are_validated():
    assert CriticUpdateConfig().push_down == "official" and CriticUpdateConfig().conservative_heads == 2
    with pytest.raises(ConfigError, match=r"push_down must be one of \('official', 'refined_candidates'\)"):
        CriticUpdateConfig(push_down="uniform")
    with pytest.raises(ConfigError, match="conservative_heads"):
        CriticUpdateConfig(conservative_heads=0)
