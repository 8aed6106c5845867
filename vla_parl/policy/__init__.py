"""Policies PA-RL can improve, all behind one `Policy` protocol (see `vla_parl.policy.base`).

- `DiffusionPolicy` — DDPM ε-prediction policy (MLP-ResNet ε-net) on state or image features.
- `GaussianPolicy` — clipped Gaussian MLP policy (NLL loss).
- `OpenVLAPolicy` — the OpenVLA-7B wrapper (`vla_parl.policy.openvla`).
- `PolicyConfig` — the recipes' `policy:` section (`type: openvla | diffusion | gaussian`); with the classes'
  configs it lives in `vla_parl.policy.configuration`, torch-free, and so is importing this package: the
  torch-backed names load on first use, so a recipe config validates before torch is imported.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from vla_parl.policy.configuration import DiffusionPolicyConfig, GaussianPolicyConfig, PolicyConfig

__all__ = [
    "Observation", "CandidateActions", "PolicyLoss", "Policy",
    "StateEncoder", "PolicyConfig",
    "DiffusionPolicy", "DiffusionPolicyConfig",
    "GaussianPolicy", "GaussianPolicyConfig",
]  # `OpenVLAPolicy` is importable by name but left out of `*` so star-imports stay light

_LAZY = {
    **dict.fromkeys(["Observation", "CandidateActions", "PolicyLoss", "Policy"], "base"),
    "StateEncoder": "_common",
    "DiffusionPolicy": "diffusion",
    "GaussianPolicy": "gaussian",
    "OpenVLAPolicy": "openvla",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"vla_parl.policy.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'vla_parl.policy' has no attribute {name!r}")
