"""Policy-Agnostic RL: the improvement operator and the two update steps (critic, policy distillation).

    operator = ImprovementOperator.from_critic(critic, policy)       # settings saved with the critic
    best = operator.improve(obs, generator=g)                        # N samples → top-k → ascent → choice
    CriticUpdate(critic, critic_opt, policy, improvement, CriticUpdateConfig(), gamma=0.99).step(batch)
    PolicyUpdate(policy, policy_opt, critic, improvement).step(obs)  # sample → optimize → distill

The configs (`ImprovementConfig`, `CriticUpdateConfig`) are torch-free, and so is importing this package:
the torch-backed classes load on first use, so a recipe config can name these configs and still validate
in well under a second.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from vla_parl.parl.configuration import CriticUpdateConfig, ImprovementConfig

__all__ = ["ImprovementOperator", "ImprovementConfig", "Critic", "OptimizedActions", "TransitionBatch",
           "CandidateCache", "CriticUpdate", "CriticUpdateConfig", "PolicyUpdate"]

_LAZY = {"ImprovementOperator": "operator", "Critic": "operator", "OptimizedActions": "operator",
         "TransitionBatch": "batch", "CandidateCache": "candidate_cache", "CriticUpdate": "critic_update",
         "PolicyUpdate": "policy_update"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"vla_parl.parl.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'vla_parl.parl' has no attribute {name!r}")
