"""Cal-QL critic loss (Nakamoto et al. 2023): CQL whose push-down is calibrated by the data's returns.

Per head i (summed over heads), with V^μ(s) the Monte-Carlo return-to-go of the data trajectory:

    L_i = ½ E_{(s,a)∼D} [ (Q_i(s, a) − y)² ]
          + α ( E_s [ log ( Σ_{a'∼unif} exp Q_i(s, a') + Σ_{a'∼π} exp max(Q_i(s, a'), V^μ(s)) ) ]
                − E_{(s,a)∼D} [ Q_i(s, a) ] )

    y = r + γ (1 − d) min_{j∈pair} Q̄_j(s', a'*)

Only policy actions are lower-bounded; uniform random actions are pushed down as in CQL. Where
Q_i(s, a') < V^μ(s) the bound is active and that term carries no gradient into Q_i(s, a').
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from vla_parl.critic.objectives.cql import cql_loss

__all__ = ["CalQLLoss", "calql_loss", "mc_return_to_go"]


class CalQLLoss(NamedTuple):
    loss: torch.Tensor
    td_loss: torch.Tensor
    conservative_gap: torch.Tensor
    q_data: torch.Tensor
    q_ood_logsumexp: torch.Tensor
    target: torch.Tensor
    bound_rate: torch.Tensor          # fraction of policy-action values lifted to V^μ(s) (detached)

    def stats(self, prefix: str = "critic/") -> dict[str, float]:
        return {prefix + k: float(v.detach()) for k, v in self._asdict().items()}


def calql_loss(q_data: torch.Tensor, y: torch.Tensor, q_random: torch.Tensor, q_policy: torch.Tensor,
               v_mu: torch.Tensor, alpha: float) -> CalQLLoss:
    """As `cql_loss`, plus v_mu [B] = V^μ(s), the MC return-to-go that comes with the data."""
    if v_mu.ndim != 1 or v_mu.shape[0] != q_data.shape[-1]:
        raise ValueError(f"v_mu must be [B] = [{q_data.shape[-1]}], got {tuple(v_mu.shape)} "
                         "(the batch's Monte-Carlo returns, see mc_return_to_go)")
    v_mu = v_mu.detach().to(q_policy.dtype)[None, :, None]
    bounded = torch.maximum(q_policy, v_mu)
    out = cql_loss(q_data, y, q_random, bounded, alpha)
    bound_rate = (q_policy < v_mu).float().mean().detach()
    return CalQLLoss(*out, bound_rate=bound_rate)


def mc_return_to_go(rewards: torch.Tensor, gamma: float, *, failure_reward: float | None = None) -> torch.Tensor:
    """V^μ for one trajectory: rewards [T] → G_t = Σ_{k≥t} γ^{k−t} r_k  [T].

    With `failure_reward` set (e.g. −1 for the −1/0 sparse reward) and every reward equal to it (the task
    was never solved), the trajectory is treated as never-ending failure: G_t = failure_reward / (1 − γ).
    """
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be one trajectory [T], got {tuple(rewards.shape)}")
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must be in [0, 1), got {gamma}")
    rewards = rewards.to(torch.float64)
    if failure_reward is not None and bool((rewards == failure_reward).all()):
        return torch.full_like(rewards, failure_reward / (1.0 - gamma)).float()
    returns = torch.empty_like(rewards)
    running = 0.0
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = float(rewards[t]) + gamma * running
        returns[t] = running
    return returns.float()
