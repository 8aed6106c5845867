"""`GaussianPolicy`: a clipped Gaussian MLP policy over normalised actions.

    μ_θ(s) = tanh(f_μ(φ(s))),   log σ_θ(s) = clamp(f_σ(φ(s)), log σ_min, log σ_max)
    a ~ clip(N(μ_θ(s), σ_θ(s)²), −1, 1)

Loss (negative log-likelihood of target actions a [B, A] under the unclipped Gaussian):

    L(θ) = E_s [ −log N(a | μ_θ(s), σ_θ(s)²) ]
         = E_s Σ_d [ (a_d − μ_d)² / (2σ_d²) + log σ_d + ½ log 2π ]

The mean stays in [−1, 1] through tanh; clipping (not tanh-squashing) the samples keeps the NLL finite
for targets exactly on the bounds, which optimized actions often are.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from vla_parl.policy._common import (CheckpointedPolicyMixin, StateEncoder, check_num_samples, check_target_actions,
                                     mlp, randn)
from vla_parl.policy.base import CandidateActions, Observation, PolicyLoss
from vla_parl.policy.configuration import GaussianPolicyConfig

__all__ = ["GaussianPolicyConfig", "GaussianPolicy"]


class GaussianPolicy(CheckpointedPolicyMixin, nn.Module):
    """Gaussian MLP policy with state-dependent σ. Implements `vla_parl.policy.Policy`."""

    config_class = GaussianPolicyConfig

    def __init__(self, config: GaussianPolicyConfig, obs_encoder: nn.Module) -> None:
        super().__init__()
        self._init_policy(config, obs_encoder)
        self.net = mlp(obs_encoder.output_dim, config.hidden_dims, 2 * config.action_dim)

    @classmethod
    def for_state(cls, state_dim: int, action_dim: int, **config: Any) -> "GaussianPolicy":
        """A policy on `Observation.state` [B, state_dim]; `config` are `GaussianPolicyConfig` fields."""
        return cls(GaussianPolicyConfig(action_dim=action_dim, **config), StateEncoder(state_dim))

    def distribution_params(self, obs: Observation) -> tuple[torch.Tensor, torch.Tensor]:
        """μ [B, A] in (−1, 1) and log σ [B, A]."""
        raw_mean, raw_log_std = self.net(self.encode(obs)).chunk(2, dim=-1)
        log_std = raw_log_std.clamp(self.config.log_std_min, self.config.log_std_max)
        return torch.tanh(raw_mean), log_std

    @torch.no_grad()
    def mean_action(self, obs: Observation) -> torch.Tensor:
        """The deterministic action μ_θ(s) [B, A] (eval mode)."""
        with self.sampling():
            return self.distribution_params(obs)[0]

    # ---- Policy protocol --------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_actions(self, obs: Observation, num_samples: int, *,
                       generator: torch.Generator | None = None) -> CandidateActions:
        """actions [B, N, A] = clip(μ + σ·z, −1, 1); log_probs [B, N] of the unclipped draw."""
        check_num_samples(num_samples)
        with self.sampling():
            mean, log_std = self.distribution_params(obs)
        B, A = mean.shape
        z = randn((B, num_samples, A), generator, mean.device, mean.dtype)
        raw = mean[:, None] + log_std.exp()[:, None] * z
        log_probs = (-0.5 * z.pow(2) - log_std[:, None] - 0.5 * math.log(2 * math.pi)).sum(-1)
        return CandidateActions(actions=raw.clamp(-1, 1), log_probs=log_probs)

    def supervised_loss(self, obs: Observation, target_actions: torch.Tensor) -> PolicyLoss:
        """Mean over the batch of −log N(a | μ_θ(s), σ_θ(s)²), summed over action dims."""
        mean, log_std = self.distribution_params(obs)
        check_target_actions(target_actions, mean.shape[0], self.action_dim)
        a = target_actions.to(mean.device, mean.dtype)
        nll = (0.5 * ((a - mean) / log_std.exp()).pow(2) + log_std + 0.5 * math.log(2 * math.pi)).sum(-1)
        loss = nll.mean()
        return PolicyLoss(loss=loss, stats={"nll": float(loss.detach()),
                                            "policy_std": float(log_std.detach().exp().mean())})
