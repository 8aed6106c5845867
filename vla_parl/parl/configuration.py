"""PA-RL's component configs, torch-free (recipes validate them before importing torch); each is one YAML
section of the recipes, as is: `ImprovementConfig` is `action_optimizer:`, `CriticUpdateConfig` is `objective:`.

`ImprovementConfig`, the settings of the policy-improvement operator:

    N candidates a_1..a_N ~ π(·|s)  →  keep the critic's top k  →  T steps a ← clip(a + η m ⊙ ∇_a Q, low, high)
    →  choose argmax_j Q  (or j ~ softmax(Q / τ))

The config is saved with the critic (`QCritic.save` writes it into `config.json` under "improvement"), so
loading a critic gives back the operator it was trained and distilled with; `ImprovementConfig.from_saved`
reads it back (a critic saved before this existed gives the defaults below).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal, Optional, Union

from vla_parl.config.schema import check_range
from vla_parl.errors import ConfigError

__all__ = ["ImprovementConfig", "CriticUpdateConfig", "REDUCTIONS", "CHOICES", "OBJECTIVES"]

REDUCTIONS = ("mean", "min")
CHOICES = ("argmax", "softmax")
OBJECTIVES = ("cql", "calql", "iql")


@dataclass
class ImprovementConfig:
    """N, k, T, η, the ensemble reduction, the choice rule (τ for softmax), the action box and mask."""

    num_samples: int = 16            # N candidates sampled from the policy per state (official OpenVLA run: 8)
    top_k: int = 4                   # k kept by the global step (clamped to the number of candidates)
    num_steps: int = 10              # T gradient-ascent steps (0 = global step only)
    step_size: float = 3e-4          # η; critics with small Q scales (the tabletop demo) need larger steps
    ensemble_reduce: Literal["mean", "min"] = "mean"   # Q(s, a) = mean_i Q_i or min_i Q_i over the heads
    choice: Literal["argmax", "softmax"] = "argmax"
    temperature: float = 1.0         # τ of choice = "softmax"
    # dims the local step may move: None = all but the last (the gripper), "all", or one bool per dim
    action_mask: Optional[Union[list[bool], str]] = None
    low: float = -1.0                # the (normalised) action box the local step clips to
    high: float = 1.0

    def __post_init__(self) -> None:
        check_range("num_samples", self.num_samples, low=1)
        check_range("top_k", self.top_k, low=1)
        check_range("num_steps", self.num_steps, low=0)
        check_range("step_size", self.step_size, low=0, low_open=True)
        check_range("temperature", self.temperature, low=0, low_open=True)
        if self.ensemble_reduce not in REDUCTIONS:
            raise ConfigError(f"ensemble_reduce must be one of {REDUCTIONS}, got {self.ensemble_reduce!r}")
        if self.choice not in CHOICES:
            raise ConfigError(f"choice must be one of {CHOICES}, got {self.choice!r}")
        if not self.low < self.high:
            raise ConfigError(f"low ({self.low}) must be < high ({self.high})")
        if isinstance(self.action_mask, str) and self.action_mask != "all":
            raise ConfigError(f"action_mask must be None, 'all' or a list of booleans, got {self.action_mask!r}")
        if self.action_mask is not None and not isinstance(self.action_mask, str):
            self.action_mask = [bool(m) for m in self.action_mask]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (what `QCritic.save` stores)."""
        return asdict(self)

    @classmethod
    def from_saved(cls, saved: Mapping[str, Any] | None) -> "ImprovementConfig":
        """The config stored with a critic (`critic.improvement`), or the defaults when it has none.

        Unknown or ill-typed keys are errors that name the key (a checkpoint written by a newer version)."""
        if saved is None:
            return cls()
        from vla_parl.config.schema import from_dict

        return from_dict(cls, dict(saved), "improvement")

    def with_overrides(self, **overrides: Any) -> "ImprovementConfig":
        """A copy with the given fields replaced; `None` values mean "keep" (unset CLI flags / request fields)."""
        names = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(f"unknown improvement setting(s) {unknown}; valid: {sorted(names)}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class CriticUpdateConfig:
    """The critic objective and its constants (the `objective:` section of the critic and parl recipes)."""

    objective: Literal["calql", "cql", "iql"] = "calql"
    polyak_tau: float = 0.005         # target update rate τ
    cql_alpha: float = 0.01           # α (official PA-RL: 0.005 state / 0.01 images)
    cql_n_actions: int = 4            # uniform actions per state (official: 10 state / 4 images)
    num_samples: int = 4              # N policy candidates per state for the TD target and μ's policy actions
    expectile: float = 0.7            # IQL τ: 0.7 (V-GPS) or 0.9
    max_grad_norm: Optional[float] = None

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        check_range("polyak_tau", self.polyak_tau, low=0, high=1, low_open=True)
        check_range("cql_alpha", self.cql_alpha, low=0)
        check_range("cql_n_actions", self.cql_n_actions, low=1)
        check_range("num_samples", self.num_samples, low=1)
        check_range("expectile", self.expectile, low=0, high=1, low_open=True, high_open=True)
        check_range("max_grad_norm", self.max_grad_norm, low=0, low_open=True, optional=True)
