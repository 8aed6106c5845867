"""`TransitionBatch`: what a critic update reads (offline data and online replay alike)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from vla_parl.policy.base import Observation

__all__ = ["TransitionBatch"]


@dataclass
class TransitionBatch:
    """B transitions (s, a, r, s', d) with normalised actions; `mc_returns` = V^μ(s) for Cal-QL.

    obs, next_obs: Observation (B each)   actions: float [B, A] in [−1, 1]
    rewards: float [B]   dones: float [B] (1 = terminal, no bootstrap)   mc_returns: float [B] or None
    """

    obs: Observation
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: Observation
    dones: torch.Tensor
    mc_returns: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.actions.ndim != 2:
            raise ValueError(f"TransitionBatch.actions must be [B, A], got {tuple(self.actions.shape)}")
        B = self.actions.shape[0]
        for name in ("rewards", "dones", "mc_returns"):
            value = getattr(self, name)
            if value is not None and value.shape != (B,):
                raise ValueError(f"TransitionBatch.{name} must be [B] = [{B}], got {tuple(value.shape)}")
        if len(self.obs) != B or len(self.next_obs) != B:
            raise ValueError(f"obs ({len(self.obs)}) and next_obs ({len(self.next_obs)}) must hold B = {B} states")

    def __len__(self) -> int:
        return self.actions.shape[0]

    def to(self, device: torch.device | str) -> "TransitionBatch":
        return replace(self, obs=self.obs.to(device), next_obs=self.next_obs.to(device),
                       actions=self.actions.to(device), rewards=self.rewards.to(device), dones=self.dones.to(device),
                       mc_returns=None if self.mc_returns is None else self.mc_returns.to(device))
