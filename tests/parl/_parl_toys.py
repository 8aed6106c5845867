"""Toy problems with analytic answers, shared by the PA-RL tests.

`QuadraticCritic`: Q_i(s, a) = −Σ_d w_d (a_d − a*_d(s) − δ_i)² with a*(s) = s[:, :A] (state = optimum),
so the per-head optimum is a* + δ_i and the mean over heads peaks at a* + mean_i δ_i.

`TwoStepChain`: state (x, t), 1-D action a ∈ [−1, 1], γ given, c = 1.
  t = 0: r = −(a − x)², s' = (a, 1), d = 0.        t = 1: r = −(a − x)² + c·x, d = 1.
  Q*((x, 1), a) = −(a − x)² + c x,   Q*((x, 0), a) = −(a − x)² + γ c a   (max_a' Q*((a, 1), a') = c a).
"""

from __future__ import annotations

import torch
from torch import nn

from vla_parl.parl import TransitionBatch
from vla_parl.policy import Observation


class QuadraticCritic(nn.Module):
    def __init__(self, action_dim: int, offsets: list[float] | None = None, weights: list[float] | None = None):
        super().__init__()
        self.action_dim = action_dim
        self.register_buffer("offsets", torch.tensor(offsets or [0.0]))                  # δ_i  [E]
        self.register_buffer("w", torch.tensor(weights or [1.0] * action_dim))           # w_d  [A]
        self.encode_calls = 0

    def encode(self, obs: Observation) -> torch.Tensor:
        self.encode_calls += 1
        return obs.state[:, : self.action_dim].float()

    def q_values(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        opt = features[None, :, None, :] + self.offsets[:, None, None, None]            # [E, B, 1, A]
        return -((actions[None] - opt).pow(2) * self.w).sum(-1)                          # [E, B, N]


class TwoStepChain:
    def __init__(self, gamma: float = 0.9, c: float = 1.0):
        self.gamma, self.c = gamma, c

    def q_star(self, x: torch.Tensor, t: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        base = -(a - x).pow(2)
        return torch.where(t > 0.5, base + self.c * x, base + self.gamma * self.c * a)

    def sample(self, batch_size: int, generator: torch.Generator) -> TransitionBatch:
        """Uniform behaviour: half the transitions at t = 0, half at t = 1; with MC returns of μ."""
        half = batch_size // 2
        x0 = torch.rand(half, generator=generator) - 0.5
        a0 = 2 * torch.rand(half, generator=generator) - 1
        x1 = 2 * torch.rand(half, generator=generator) - 1        # t = 1 states anywhere in [−1, 1]
        a1 = 2 * torch.rand(half, generator=generator) - 1
        r0 = -(a0 - x0).pow(2)
        r1 = -(a1 - x1).pow(2) + self.c * x1
        # V^μ: at t = 1, E_a[−(a − x)²] + c x = −(x² + 1/3) + c x; at t = 0, r0 + γ V^μ(a0, 1)
        v1 = -(x1.pow(2) + 1 / 3) + self.c * x1
        mc0 = r0 + self.gamma * (-(a0.pow(2) + 1 / 3) + self.c * a0)
        x = torch.cat([x0, x1]); t = torch.cat([torch.zeros(half), torch.ones(half)])
        state = torch.stack([x, t], -1)
        next_state = torch.stack([torch.cat([a0, x1]), torch.ones(2 * half)], -1)   # terminal rows: any s'
        return TransitionBatch(obs=Observation(state=state), actions=torch.cat([a0, a1])[:, None],
                               rewards=torch.cat([r0, r1]), next_obs=Observation(state=next_state),
                               dones=t.clone(), mc_returns=torch.cat([mc0, v1]))

    def eval_grid(self) -> tuple[Observation, torch.Tensor, torch.Tensor]:
        """States x ∈ [−0.5, 0.5] at t = 0 and x ∈ [−1, 1] at t = 1, actions on a grid: obs [S], actions
        [S, M, 1], Q* [S, M]."""
        x = torch.cat([torch.linspace(-0.5, 0.5, 11), torch.linspace(-1, 1, 11)])
        t = torch.cat([torch.zeros(11), torch.ones(11)])
        a = torch.linspace(-1, 1, 21)[None, :].expand(22, 21)
        return Observation(state=torch.stack([x, t], -1)), a[..., None], self.q_star(x[:, None], t[:, None], a)


def expectile(samples: torch.Tensor, tau: float, iters: int = 40) -> torch.Tensor:
    """τ-expectile m of each row of samples [S, M]: root of τ E[(Y − m)₊] = (1 − τ) E[(m − Y)₊] (bisection)."""
    lo, hi = samples.min(dim=1).values, samples.max(dim=1).values
    for _ in range(iters):
        m = (lo + hi) / 2
        above = tau * (samples - m[:, None]).clamp(min=0).mean(1)
        below = (1 - tau) * (m[:, None] - samples).clamp(min=0).mean(1)
        lo, hi = torch.where(above > below, m, lo), torch.where(above > below, hi, m)
    return (lo + hi) / 2


def iql_fixed_point(chain: TwoStepChain, x: torch.Tensor, t: torch.Tensor, a: torch.Tensor, tau: float):
    """IQL's own fixed point on the chain with uniform behaviour (it is not Q*: V is an expectile, not a max).

    V(x, 1) = e_τ[−(U − x)²] + c x,  Q((x, 1), a) = Q*((x, 1), a),  Q((x, 0), a) = −(a − x)² + γ V(a, 1).
    Returns Q [same shape as a] and V at (x, t) [same shape as x].
    """
    u = torch.linspace(-1, 1, 801, dtype=torch.float64)

    def v1(xs: torch.Tensor) -> torch.Tensor:
        flat = xs.reshape(-1).double()
        return (expectile(-(u[None] - flat[:, None]).pow(2), tau) + chain.c * flat).reshape(xs.shape).float()

    q = torch.where(t > 0.5, chain.q_star(x, t, a), -(a - x).pow(2) + chain.gamma * v1(a))
    # V(x, 0) = e_τ over a ~ U of Q((x, 0), a)
    x0 = x.reshape(-1)
    q0 = -(u[None] - x0.double()[:, None]).pow(2) + chain.gamma * v1(u.float()).double()[None]
    v0 = expectile(q0, tau).float()
    v = torch.where(t.reshape(-1) > 0.5, v1(x.reshape(-1)), v0).reshape(x.shape)
    return q, v
