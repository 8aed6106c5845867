"""PA-RL's component configs, torch-free (recipes validate them before importing torch); each is one YAML
section of the recipes, as is: `ImprovementConfig` is `action_optimizer:`, `CriticUpdateConfig` is `objective:`.

`ImprovementConfig`, the settings of the policy-improvement operator:

    N candidates a_1..a_N ~ π(·|s)  →  keep the critic's top k  →  T steps a ← clip(a + η m ⊙ ∇_a Q, low, high)
    →  choose argmax_j Q  (or j ~ softmax(Q / τ))

The config is saved with the critic (`QCritic.save` writes it into `config.json` under "improvement"), so
loading a critic gives back the operator it was trained and distilled with; `ImprovementConfig.from_saved`
reads it back (a critic saved before this existed gives the defaults below).

`action_mask` (which dims the local step moves): null (the default) and "all" move every dim, as the official
PA-RL code does; "except_last" keeps the last dim (a gripper) as sampled; or one boolean per dim. A critic
saved by an older version with `action_mask: null` meant "all but the last" then and means every dim now: load
it with `ImprovementOperator.from_critic(critic, action_mask="except_last")` for the old behaviour. (Callers'
fallbacks for critics saved with no settings at all keep "except_last", their historical behaviour.)

`data_action` (distillation only): the dataset action of each state replaces the worst of the k kept
candidates before the local steps (the official `action_optimization.py`), when the caller passes it
(`PolicyUpdate.step(..., data_actions=...)`); acting, serving and the TD target pass none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal, Optional, Union

from vla_parl.config.schema import check_range
from vla_parl.errors import ConfigError

__all__ = ["ImprovementConfig", "CriticUpdateConfig", "REDUCTIONS", "CHOICES", "OBJECTIVES", "MASK_NAMES",
           "PUSH_DOWN_SETS"]

REDUCTIONS = ("mean", "min")
CHOICES = ("argmax", "softmax")
MASK_NAMES = ("all", "except_last")
OBJECTIVES = ("cql", "calql", "iql")
PUSH_DOWN_SETS = ("official", "refined_candidates")


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
    # dims the local step may move: None or "all" = every dim (official), "except_last" = all but the last
    # (the gripper option), or one bool per dim
    action_mask: Optional[Union[list[bool], str]] = None
    low: float = -1.0                # the (normalised) action box the local step clips to
    high: float = 1.0
    # distillation: the dataset action replaces the worst of the k kept candidates before the local steps
    data_action: bool = True

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
        self._check_action_mask()
        if not isinstance(self.data_action, bool):
            raise ConfigError(f"data_action must be true or false, got {self.data_action!r}")

    def _check_action_mask(self) -> None:
        mask = self.action_mask
        expected = "action_mask must be null (every dim), 'all', 'except_last' (every dim but the gripper) or a list "
        if isinstance(mask, str):
            if mask not in MASK_NAMES:
                raise ConfigError(f"{expected}of booleans, one per action dim; got {mask!r}")
        elif mask is not None:
            if not isinstance(mask, (list, tuple)) or not all(isinstance(m, bool) for m in mask):
                raise ConfigError(f"{expected}of booleans (true/false), one per action dim; got {mask!r}")
            self.action_mask = list(mask)

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
    cql_alpha: float = 0.01           # α (official PA-RL: 0.005 state / 0.01 images; no-½, mean-over-heads loss)
    cql_n_actions: int = 4            # n: uniform actions per state (official: 10 state / 4 images)
    num_samples: int = 4              # N policy candidates per state for the TD target and μ's policy actions
    # CQL / Cal-QL push-down set μ at s. official: n uniform + argmax(s)×n + argmax(s')×n + the data action,
    # log-mean-exp over the 3n+1; refined_candidates: n uniform + the k refined candidates at s, log Σ exp
    push_down: Literal["official", "refined_candidates"] = "official"
    conservative_heads: int = 2       # the conservative term averages over this many random heads (all if fewer)
    expectile: float = 0.7            # IQL τ: 0.7 (V-GPS) or 0.9
    max_grad_norm: Optional[float] = None

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.push_down not in PUSH_DOWN_SETS:
            raise ConfigError(f"push_down must be one of {PUSH_DOWN_SETS}, got {self.push_down!r} (official: the "
                              "PA-RL code's 3n+1 set; refined_candidates: uniform + the k refined candidates)")
        check_range("conservative_heads", self.conservative_heads, low=1)
        check_range("polyak_tau", self.polyak_tau, low=0, high=1, low_open=True)
        check_range("cql_alpha", self.cql_alpha, low=0)
        check_range("cql_n_actions", self.cql_n_actions, low=1)
        check_range("num_samples", self.num_samples, low=1)
        check_range("expectile", self.expectile, low=0, high=1, low_open=True, high_open=True)
        check_range("max_grad_norm", self.max_grad_norm, low=0, low_open=True, optional=True)
