"""Cal-QL critic loss (Nakamoto et al. 2023): CQL whose push-down is calibrated by the data's returns.

Paper notation (one Q; V^μ(s) the Monte-Carlo return-to-go of the data trajectory; the paper, like CQL,
writes ½ before the Bellman error):

    L = α ( E_s [ log Σ_{a'∼μ} exp Q̃(s, a') ] − E_{(s,a)∼D} [ Q(s, a) ] ) + ½ E_{(s,a)∼D} [ (Q(s, a) − y)² ]

    Q̃(s, a') = max(Q(s, a'), V^μ(s)) for policy actions a' ∼ π,   Q̃(s, a') = Q(s, a') otherwise

    y = r + γ (1 − d) min_{j∈pair} Q̄_j(s', a'*)

The official PA-RL code (and this function) uses `cql_loss`'s convention with Q̃ in the push-down:
mean over heads and batch of (Q_i − y)², no ½, + α · the gap averaged over the random head subset H,
with μ of 3n + 1 actions and − log(3n+1). Only the 2n policy actions (the argmax at s and at s', n times
each; `q_policy`) are lower-bounded; the n uniform actions and the data action enter as in CQL. Where
Q_i(s, a') < V^μ(s) the bound is active and that term carries no gradient into Q_i(s, a').
With `include_data_action=False` (the `refined_candidates` push-down set) μ is n uniform actions + the k
refined candidates at s (bounded) with no data action and no constant.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from vla_parl.critic.objectives.cql import cql_loss

__all__ = ["CalQLLoss", "calql_loss"]


class CalQLLoss(NamedTuple):
    loss: torch.Tensor
    td_loss: torch.Tensor
    conservative_gap: torch.Tensor
    q_data: torch.Tensor
    q_ood_logsumexp: torch.Tensor
    target: torch.Tensor
    bound_rate: torch.Tensor          # fraction of policy-action values (all heads) lifted to V^μ(s) (detached)

    def stats(self, prefix: str = "critic/") -> dict[str, float]:
        return {prefix + k: float(v.detach()) for k, v in self._asdict().items()}


def calql_loss(q_data: torch.Tensor, y: torch.Tensor, q_random: torch.Tensor, q_policy: torch.Tensor,
               v_mu: torch.Tensor, alpha: float, *, include_data_action: bool = True, conservative_heads: int = 2,
               generator: torch.Generator | None = None) -> CalQLLoss:
    """As `cql_loss`, plus v_mu [B] = V^μ(s), the MC return-to-go that comes with the data; the bound
    applies to `q_policy` only."""
    if v_mu.ndim != 1 or v_mu.shape[0] != q_data.shape[-1]:
        raise ValueError(f"v_mu must be [B] = [{q_data.shape[-1]}], got {tuple(v_mu.shape)} "
                         "(the batch's Monte-Carlo returns, see vla_parl.data.rewards.mc_returns)")
    v_mu = v_mu.detach().to(q_policy.dtype)[None, :, None]
    bounded = torch.maximum(q_policy, v_mu)
    out = cql_loss(q_data, y, q_random, bounded, alpha, include_data_action=include_data_action,
                   conservative_heads=conservative_heads, generator=generator)
    bound_rate = (q_policy < v_mu).float().mean().detach()
    return CalQLLoss(*out, bound_rate=bound_rate)
