"""CQL critic loss (Kumar et al. 2020) with the PA-RL TD target.

For each head i of the ensemble (heads are trained independently; the total loss sums over i):

    L_i = ½ E_{(s,a)∼D} [ (Q_i(s, a) − y)² ]
          + α ( E_s [ log Σ_{a'∼μ} exp Q_i(s, a') ] − E_{(s,a)∼D} [ Q_i(s, a) ] )

    y = r + γ (1 − d) min_{j∈pair} Q̄_j(s', a'*)          (see `td.td_target`; no gradient)

μ mixes uniform random actions (`q_random`, cql_n_actions of them) and policy actions — in PA-RL the
action-optimized candidates of π at s (`q_policy`). The sum in log Σ exp runs over all of them together.
Defaults (spec): α = 0.005 (state) / 0.01 (images); cql_n_actions = 10 (state) / 4 (images).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["CQLLoss", "cql_loss"]


class CQLLoss(NamedTuple):
    loss: torch.Tensor                # scalar, differentiable: Σ_i L_i
    td_loss: torch.Tensor             # Σ_i ½ E[(Q_i − y)²]          (detached)
    conservative_gap: torch.Tensor    # mean_i E_s[log Σ exp Q_i − Q_i(s, a)]  (detached, before α)
    q_data: torch.Tensor              # mean Q_i(s, a) over heads and batch (detached)
    q_ood_logsumexp: torch.Tensor     # mean log Σ_{a'∼μ} exp Q_i(s, a') (detached)
    target: torch.Tensor              # mean y (detached)

    def stats(self, prefix: str = "critic/") -> dict[str, float]:
        return {prefix + k: float(v.detach()) for k, v in self._asdict().items()}


def _check(q_data: torch.Tensor, y: torch.Tensor, q_random: torch.Tensor, q_policy: torch.Tensor) -> None:
    if q_data.ndim != 2:
        raise ValueError(f"q_data must be [E, B], got {tuple(q_data.shape)}")
    E, B = q_data.shape
    if y.shape != (B,):
        raise ValueError(f"y must be [B] = [{B}], got {tuple(y.shape)}")
    for name, q in (("q_random", q_random), ("q_policy", q_policy)):
        if q.ndim != 3 or q.shape[:2] != (E, B):
            raise ValueError(f"{name} must be [E, B, N] = [{E}, {B}, N], got {tuple(q.shape)}")


def cql_loss(q_data: torch.Tensor, y: torch.Tensor, q_random: torch.Tensor, q_policy: torch.Tensor,
             alpha: float) -> CQLLoss:
    """q_data [E, B] = Q_i(s, a); y [B]; q_random [E, B, Nr], q_policy [E, B, Np] = Q_i at μ's actions."""
    _check(q_data, y, q_random, q_policy)
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    y = y.detach()
    td = 0.5 * (q_data - y[None]).pow(2).mean(dim=1)                              # [E]
    ood = torch.logsumexp(torch.cat([q_random, q_policy], dim=2), dim=2)          # [E, B]
    gap = (ood - q_data).mean(dim=1)                                               # [E]
    loss = (td + alpha * gap).sum()
    return CQLLoss(loss=loss, td_loss=td.sum().detach(), conservative_gap=gap.mean().detach(),
                   q_data=q_data.mean().detach(), q_ood_logsumexp=ood.mean().detach(), target=y.mean())
