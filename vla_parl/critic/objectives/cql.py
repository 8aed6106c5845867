"""CQL critic loss (Kumar et al. 2020) with the PA-RL TD target, in the official PA-RL code's convention.

Paper notation (the CQL(H) objective, one Q; the CQL paper writes ½ before the Bellman error):

    L = α ( E_s [ log Σ_{a'∼μ} exp Q(s, a') ] − E_{(s,a)∼D} [ Q(s, a) ] ) + ½ E_{(s,a)∼D} [ (Q(s, a) − y)² ]

    y = r + γ (1 − d) min_{j∈pair} Q̄_j(s', a'*)          (see `td.td_target`; no gradient)

The official PA-RL code (and this function) for an ensemble of E heads Q_1..Q_E:

    L = 1/(E B) Σ_i Σ_b (Q_i(s_b, a_b) − y_b)²                             (mean over heads and batch, no ½)
        + α · 1/|H| Σ_{i∈H} ( E_s [ log Σ_{a'∈μ} exp Q_i(s, a') − log |μ| ] − E_{(s,a)∼D} [ Q_i(s, a) ] )

H = `conservative_heads` heads (default 2) drawn at random with `generator` for this batch
(`td.random_head_subset`; all E heads, nothing drawn, when E ≤ conservative_heads). The official μ
(`include_data_action=True`) holds |μ| = 3n + 1 actions, all scored at s: n uniform actions
(`q_random`), the operator's argmax action at s repeated n times and the argmax action at s' (the TD
target's a'*) repeated n times (`q_policy`, 2n values), and the data action a itself; the − log(3n+1)
turns log Σ exp into log-mean-exp (a constant: it moves the loss value, not the gradient). No importance
sampling. With `include_data_action=False` μ is only `q_random` and `q_policy` and there is no
constant: the `refined_candidates` push-down set of `CriticUpdateConfig` (n uniform + the k refined
candidates at s).

Scale: for a 2-head ensemble (H = both heads) and the same μ, the official form at α' = 2α equals the
former ½·Σ-over-heads form at α: mean_i (Q_i − y)² + 2α mean_i gap_i = ½ Σ_i (Q_i − y)² + α Σ_i gap_i.
Defaults (spec): α = 0.005 (state) / 0.01 (images); n = cql_n_actions = 10 (state) / 4 (images).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from vla_parl.critic.objectives.td import random_head_subset

__all__ = ["CQLLoss", "cql_loss"]


class CQLLoss(NamedTuple):
    loss: torch.Tensor                # scalar, differentiable: TD + α · gap
    td_loss: torch.Tensor             # mean_{i,b} (Q_i − y)²                         (detached)
    conservative_gap: torch.Tensor    # mean_{i∈H} E_s[log Σ_μ exp Q_i − log|μ| − Q_i(s, a)]  (detached, before α)
    q_data: torch.Tensor              # mean Q_i(s, a) over all heads and the batch   (detached)
    q_ood_logsumexp: torch.Tensor     # mean_{i∈H} E_s[log Σ_μ exp Q_i − log|μ|]       (detached)
    target: torch.Tensor              # mean y (detached)

    def stats(self, prefix: str = "critic/") -> dict[str, float]:
        return {prefix + k: float(v.detach()) for k, v in self._asdict().items()}


def _check(q_data: torch.Tensor, y: torch.Tensor, q_random: torch.Tensor, q_policy: torch.Tensor,
           alpha: float, conservative_heads: int) -> None:
    if q_data.ndim != 2:
        raise ValueError(f"q_data must be [E, B], got {tuple(q_data.shape)}")
    E, B = q_data.shape
    if y.shape != (B,):
        raise ValueError(f"y must be [B] = [{B}], got {tuple(y.shape)}")
    for name, q in (("q_random", q_random), ("q_policy", q_policy)):
        if q.ndim != 3 or q.shape[:2] != (E, B):
            raise ValueError(f"{name} must be [E, B, N] = [{E}, {B}, N], got {tuple(q.shape)}")
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if conservative_heads < 1:
        raise ValueError(f"conservative_heads must be >= 1, got {conservative_heads}")


def cql_loss(q_data: torch.Tensor, y: torch.Tensor, q_random: torch.Tensor, q_policy: torch.Tensor,
             alpha: float, *, include_data_action: bool = True, conservative_heads: int = 2,
             generator: torch.Generator | None = None) -> CQLLoss:
    """q_data [E, B] = Q_i(s, a); y [B]; q_random [E, B, Nr], q_policy [E, B, Np] = Q_i at μ's uniform and
    policy actions (official: Nr = n, Np = 2n). include_data_action: μ also holds a, normalised by
    log(Nr + Np + 1). conservative_heads, generator: the random head subset H of the conservative term."""
    _check(q_data, y, q_random, q_policy, alpha, conservative_heads)
    y = y.detach()
    td = (q_data - y[None]).pow(2).mean()
    mu = [q_random, q_policy] + ([q_data[:, :, None]] if include_data_action else [])
    values = torch.cat(mu, dim=2)                                                  # [E, B, |μ|]
    log_size = math.log(values.shape[2]) if include_data_action else 0.0
    ood = torch.logsumexp(values, dim=2) - log_size                                # [E, B]
    ood_h, data_h = random_head_subset(torch.stack([ood, q_data], dim=1), conservative_heads,
                                       generator).unbind(1)                        # [|H|, B] each
    gap = (ood_h - data_h).mean()
    loss = td + alpha * gap
    return CQLLoss(loss=loss, td_loss=td.detach(), conservative_gap=gap.detach(), q_data=q_data.mean().detach(),
                   q_ood_logsumexp=ood_h.mean().detach(), target=y.mean())
