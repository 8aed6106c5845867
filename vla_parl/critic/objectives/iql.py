"""IQL critic losses (Kostrikov et al. 2021): expectile V, then Q from V(s'). Policy-free.

    L_V = E_{(s,a)∼D} [ L₂^τ( Q̄(s, a) − V(s) ) ],   L₂^τ(u) = |τ − 1(u < 0)| u²
    L_Q = E_{(s,a,r,s')∼D} [ ( Q(s, a) − (r + γ (1 − d) V(s')) )² ]
    L   = L_V + L_Q

In the official PA-RL code's convention (this function) L_Q for an ensemble Q_1..Q_E is the mean over
heads and batch, 1/(E B) Σ_i Σ_b (Q_i(s_b, a_b) − y_b)², with no ½ (as in CQL / Cal-QL here).
Q̄(s, a) = min over the random target pair (no gradient); V(s') comes from the online V without
gradient. τ = 0.7 (V-GPS) or 0.9. PA-RL's optimized actions are used only for acting/distilling.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["IQLLoss", "expectile_loss", "iql_loss"]


class IQLLoss(NamedTuple):
    loss: torch.Tensor               # L_V + L_Q (differentiable)
    value_loss: torch.Tensor         # L_V (detached)
    q_loss: torch.Tensor             # L_Q = mean_{i,b} (Q_i − y)² (detached)
    q_data: torch.Tensor             # mean Q_i(s, a)
    v: torch.Tensor                  # mean V(s)
    target: torch.Tensor             # mean r + γ(1−d)V(s')

    def stats(self, prefix: str = "critic/") -> dict[str, float]:
        return {prefix + k: float(v.detach()) for k, v in self._asdict().items()}


def expectile_loss(u: torch.Tensor, tau: float) -> torch.Tensor:
    """L₂^τ(u) = |τ − 1(u < 0)| u², elementwise."""
    if not 0.0 < tau < 1.0:
        raise ValueError(f"expectile tau must be in (0, 1), got {tau}")
    return torch.abs(tau - (u < 0).to(u.dtype)) * u.pow(2)


def iql_loss(q_data: torch.Tensor, q_target: torch.Tensor, v: torch.Tensor, v_next: torch.Tensor,
             r: torch.Tensor, d: torch.Tensor, gamma: float, tau: float) -> IQLLoss:
    """q_data [E, B] = Q_i(s, a); q_target [B] = Q̄(s, a); v [B] = V(s); v_next [B] = V(s'); r, d [B]."""
    if q_data.ndim != 2:
        raise ValueError(f"q_data must be [E, B], got {tuple(q_data.shape)}")
    B = q_data.shape[1]
    for name, x in (("q_target", q_target), ("v", v), ("v_next", v_next), ("r", r), ("d", d)):
        if x.shape != (B,):
            raise ValueError(f"{name} must be [B] = [{B}], got {tuple(x.shape)}")
    value_loss = expectile_loss(q_target.detach() - v, tau).mean()
    y = r + gamma * (1.0 - d.to(r.dtype)) * v_next.detach()
    q_loss = (q_data - y[None]).pow(2).mean()
    return IQLLoss(loss=value_loss + q_loss, value_loss=value_loss.detach(), q_loss=q_loss.detach(),
                   q_data=q_data.mean().detach(), v=v.mean().detach(), target=y.mean().detach())
