"""Policies PA-RL can improve, all behind one `Policy` protocol (see `vla_parl.policy.base`).

- `DiffusionPolicy` — DDPM ε-prediction MLP policy (state or image features).
- `GaussianPolicy` — clipped Gaussian MLP policy (NLL loss).
- `OpenVLAPolicy` — the OpenVLA-7B wrapper; imported lazily from `vla_parl.policy.openvla`.
"""

from __future__ import annotations

from typing import Any

from vla_parl.policy._common import StateEncoder
from vla_parl.policy.base import CandidateActions, Observation, Policy, PolicyLoss
from vla_parl.policy.diffusion import DiffusionPolicy, DiffusionPolicyConfig
from vla_parl.policy.gaussian import GaussianPolicy, GaussianPolicyConfig

__all__ = [
    "Observation", "CandidateActions", "PolicyLoss", "Policy",
    "StateEncoder",
    "DiffusionPolicy", "DiffusionPolicyConfig",
    "GaussianPolicy", "GaussianPolicyConfig",
]  # `OpenVLAPolicy` is importable by name but left out of `*` so star-imports stay light



def __getattr__(name: str) -> Any:
    if name == "OpenVLAPolicy":
        from vla_parl.policy.openvla import OpenVLAPolicy

        return OpenVLAPolicy
    raise AttributeError(f"module 'vla_parl.policy' has no attribute {name!r}")
