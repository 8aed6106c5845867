"""The PA-RL critic: a light, separate Q(s, a) ensemble (`QCritic`) and its objectives.

    critic = critic_resnet18(action_dim=7)            # or critic_state(state_dim, action_dim)
    features = critic.encode(obs)                     # [B, F], once per state
    q = critic.q_values(features, actions)            # actions [B, N, A] → [E, B, N]

`CriticConfig` (`vla_parl.critic.configuration`) is torch-free, and so is importing this package: the
torch-backed names load on first use, so a recipe config can name `CriticConfig` and still validate in
well under a second.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from vla_parl.critic.configuration import CriticConfig

__all__ = [
    "CriticConfig", "CriticOutput", "QCritic", "critic_resnet18", "critic_state",
    "HashingTokenizer", "ImageEncoder", "InstructionEncoder", "ObservationEncoder", "EnsembleQ",
    "CQLLoss", "cql_loss", "CalQLLoss", "calql_loss", "IQLLoss", "expectile_loss",
    "iql_loss", "min_over_random_subset", "td_target",
]

_LAZY = {
    **dict.fromkeys(["CriticOutput", "QCritic", "critic_resnet18", "critic_state"], "critic"),
    **dict.fromkeys(["HashingTokenizer", "ImageEncoder", "InstructionEncoder", "ObservationEncoder"], "encoders"),
    "EnsembleQ": "ensemble",
    **dict.fromkeys(["CQLLoss", "cql_loss", "CalQLLoss", "calql_loss", "IQLLoss",
                     "expectile_loss", "iql_loss", "min_over_random_subset", "td_target"], "objectives"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"vla_parl.critic.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'vla_parl.critic' has no attribute {name!r}")
