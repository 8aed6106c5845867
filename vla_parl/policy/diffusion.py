"""`DiffusionPolicy`: a DDPM ε-prediction policy over normalised actions, for state or image tasks.

Forward process (K steps, β_k from a cosine or linear schedule, ᾱ_k = Π_{j≤k} (1 − β_j)):

    a_k = √ᾱ_k · a_0 + √(1 − ᾱ_k) · ε,   ε ~ N(0, I)

Loss (the supervised / distillation loss PA-RL calls):

    L(θ) = E_{k, ε} ‖ ε − ε_θ(a_k, k, φ(s)) ‖²

Sampling: a_K ~ N(0, I); for k = K..1, â_0 = clip((a_k − √(1−ᾱ_k) ε_θ) / √ᾱ_k, −1, 1) and
a_{k−1} ~ N(μ̃_k(a_k, â_0), β̃_k I) (the DDPM posterior; no noise at the last step); output in [−1, 1].

ε_θ is an MLP-ResNet (`MLPResNet`: residual blocks with dropout and LayerNorm) on [a_k, embed(k), φ(s)];
its defaults (K = 5 cosine steps, 3 blocks of 256, dropout 0.1) are in `vla_parl.policy.configuration`.
φ(s) is the observation hook (`obs_encoder`, default `StateEncoder` on `Observation.state`); it is
computed once per state and shared by the N candidates.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from vla_parl.errors import ConfigError
from vla_parl.policy._common import (CheckpointedPolicyMixin, StateEncoder, check_num_samples, check_target_actions,
                                     randn)
from vla_parl.policy.base import CandidateActions, Observation, PolicyLoss
from vla_parl.policy.configuration import BETA_SCHEDULES, DiffusionPolicyConfig

__all__ = ["DiffusionPolicyConfig", "DiffusionPolicy", "MLPResNet", "make_beta_schedule"]

_SCHEDULES = BETA_SCHEDULES


def make_beta_schedule(kind: str, num_steps: int) -> torch.Tensor:
    """β_1..β_K (float64 [K]).

    cosine: ᾱ(t) = cos²(((t/K) + s)/(1 + s) · π/2) with s = 0.008, β_k = 1 − ᾱ(k)/ᾱ(k−1) clipped to 0.999.
    linear: the DDPM range 1e-4 → 0.02 rescaled by 1000/K so that ᾱ_K ≈ 0 for any K.
    """
    if kind == "cosine":
        s = 0.008
        t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
        alpha_bar = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    if kind == "linear":
        scale = 1000.0 / num_steps
        return torch.linspace(1e-4 * scale, min(0.02 * scale, 0.999), num_steps, dtype=torch.float64)
    raise ConfigError(f"beta_schedule must be one of {_SCHEDULES}, got {kind!r}")


def _time_embedding(k: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer steps k [M] → [M, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=k.device, dtype=torch.float32) / half)
    angles = k.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class _ResidualBlock(nn.Module):
    """x + W₂ mish(W₁ LN(dropout(x))): the MLP-ResNet block, widening to 4·width inside."""

    def __init__(self, width: int, dropout: float, layer_norm: bool) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.norm = nn.LayerNorm(width) if layer_norm else nn.Identity()
        self.up = nn.Linear(width, 4 * width)
        self.down = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(nn.functional.mish(self.up(self.norm(self.dropout(x)))))


class MLPResNet(nn.Module):
    """in_dim → Linear → `num_blocks` residual blocks of `width` → mish → Linear → out_dim (the ε-net)."""

    def __init__(self, in_dim: int, out_dim: int, width: int, num_blocks: int, dropout: float,
                 layer_norm: bool) -> None:
        super().__init__()
        self.inp = nn.Linear(in_dim, width)
        self.blocks = nn.Sequential(*(_ResidualBlock(width, dropout, layer_norm) for _ in range(num_blocks)))
        self.out = nn.Linear(width, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(nn.functional.mish(self.blocks(self.inp(x))))


class DiffusionPolicy(CheckpointedPolicyMixin, nn.Module):
    """DDPM policy: ε_θ is an MLP-ResNet on [a_k, embed(k), φ(s)]. Implements `vla_parl.policy.Policy`."""

    config_class = DiffusionPolicyConfig

    def __init__(self, config: DiffusionPolicyConfig, obs_encoder: nn.Module) -> None:
        super().__init__()
        self._init_policy(config, obs_encoder)
        self.time_mlp = nn.Sequential(nn.Linear(config.time_embed_dim, config.time_embed_dim * 2), nn.Mish(),
                                      nn.Linear(config.time_embed_dim * 2, config.time_embed_dim))
        self.eps_net = MLPResNet(config.action_dim + config.time_embed_dim + obs_encoder.output_dim,
                                 config.action_dim, config.hidden_dim, config.num_blocks, config.dropout,
                                 config.layer_norm)
        betas = make_beta_schedule(config.beta_schedule, config.num_diffusion_steps)
        alphas = 1 - betas
        alpha_bar = torch.cumprod(alphas, 0)
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        sched = {
            "betas": betas,
            "alpha_bar": alpha_bar,
            "sqrt_alpha_bar": alpha_bar.sqrt(),
            "sqrt_one_minus_alpha_bar": (1 - alpha_bar).sqrt(),
            # posterior q(a_{k-1} | a_k, a_0): mean = c0 · a_0 + ck · a_k, variance β̃_k
            "posterior_c0": betas * alpha_bar_prev.sqrt() / (1 - alpha_bar),
            "posterior_ck": (1 - alpha_bar_prev) * alphas.sqrt() / (1 - alpha_bar),
            "posterior_std": (betas * (1 - alpha_bar_prev) / (1 - alpha_bar)).clamp(min=1e-20).sqrt(),
        }
        for name, value in sched.items():
            self.register_buffer(name, value.float(), persistent=False)

    # ---- construction -----------------------------------------------------------------------------------
    @classmethod
    def for_state(cls, state_dim: int, action_dim: int, **config: Any) -> "DiffusionPolicy":
        """A policy on `Observation.state` [B, state_dim]; `config` are `DiffusionPolicyConfig` fields."""
        return cls(DiffusionPolicyConfig(action_dim=action_dim, **config), StateEncoder(state_dim))

    # ---- the network ------------------------------------------------------------------------------------
    def predict_noise(self, noisy_actions: torch.Tensor, k: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """ε_θ(a_k, k, φ(s)): noisy_actions [M, A], k int [M] (0-based step), features [M, F] → [M, A]."""
        t_emb = self.time_mlp(_time_embedding(k, self.config.time_embed_dim))
        return self.eps_net(torch.cat([noisy_actions, t_emb, features], dim=-1))

    # ---- Policy protocol --------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_actions(self, obs: Observation, num_samples: int, *,
                       generator: torch.Generator | None = None) -> CandidateActions:
        """N reverse-diffusion samples per state (eval mode): actions [B, N, A] in [−1, 1]; no log-probs."""
        check_num_samples(num_samples)
        with self.sampling():
            return self._reverse_diffusion(obs, num_samples, generator)

    def _reverse_diffusion(self, obs: Observation, num_samples: int,
                           generator: torch.Generator | None) -> CandidateActions:
        features = self.encode(obs)                                  # [B, F]
        B, A = features.shape[0], self.action_dim
        features = features.repeat_interleave(num_samples, dim=0)         # [B·N, F]
        x = randn((B * num_samples, A), generator, features.device, features.dtype)
        for k in reversed(range(self.config.num_diffusion_steps)):
            steps = torch.full((B * num_samples,), k, device=x.device, dtype=torch.long)
            eps = self.predict_noise(x, steps, features)
            a0_hat = ((x - self.sqrt_one_minus_alpha_bar[k] * eps) / self.sqrt_alpha_bar[k]).clamp(-1, 1)
            x = self.posterior_c0[k] * a0_hat + self.posterior_ck[k] * x
            if k > 0:
                noise = randn(tuple(x.shape), generator, x.device, x.dtype)
                x = x + self.posterior_std[k] * noise
        return CandidateActions(actions=x.clamp(-1, 1).view(B, num_samples, A))

    def supervised_loss(self, obs: Observation, target_actions: torch.Tensor) -> PolicyLoss:
        """L = E_{k, ε} ‖ε − ε_θ(√ᾱ_k a + √(1−ᾱ_k) ε, k, φ(s))‖² for target_actions a [B, A]."""
        features = self.encode(obs)
        check_target_actions(target_actions, features.shape[0], self.action_dim)
        a0 = target_actions.to(features.device, features.dtype)
        k = torch.randint(0, self.config.num_diffusion_steps, (a0.shape[0],), device=a0.device)
        eps = torch.randn_like(a0)
        noisy = self.sqrt_alpha_bar[k, None] * a0 + self.sqrt_one_minus_alpha_bar[k, None] * eps
        loss = (eps - self.predict_noise(noisy, k, features)).pow(2).mean()
        return PolicyLoss(loss=loss, stats={"diffusion_loss": float(loss.detach())})
