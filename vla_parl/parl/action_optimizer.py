"""PA-RL action optimization: the policy-improvement operator that works for any policy class.

Given N candidates a_1..a_N ~ π(·|s) [B, N, A] and a critic ensemble {Q_i}:

1. Global step: score Q(s, a_j) = mean_i Q_i(s, a_j) (or min_i) and keep the top k (hard top-k).
2. Local step: for t = 1..T,  a ← clip(a + η · m ⊙ ∇_a Q(s, a), low, high)  (plain gradient ascent on the
   online critic; m is the 0/1 mask of optimised dims — default all but the last, the gripper); each
   candidate keeps the best iterate seen, the start included, so no candidate ever gets worse.
3. Choice: j* = argmax_j Q(s, a_j) or j* ~ softmax(Q(s, a_j) / τ) over the k refined candidates.

s is encoded once (`critic.encode`), and the features are reused for every score and gradient.

Diagnostics (all averaged over the B states, in `OptimizedActions.stats`):
  q_samples_mean  mean_j Q(s, a_j) over the N samples   q_samples_first  Q(s, a_1) (one plain sample)
  q_global        max_j Q(s, a_j) (best of the top-k)   q_local          max over refined candidates
  q_chosen        Q of the returned action
  global_gain     = q_global − q_samples_mean       (what picking the best sample buys over the average)
  global_gain_vs_first = q_global − q_samples_first (… over acting with one policy sample)
  local_gain      = q_local − q_global ≥ 0          (what gradient ascent adds on top)
  action_shift    mean ‖a_refined − a_start‖₂ over the top-k
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Protocol

import torch

from vla_parl.errors import ConfigError
from vla_parl.policy.base import CandidateActions, Observation

__all__ = ["Critic", "ActionOptimizerConfig", "OptimizedActions", "ActionOptimizer"]


class Critic(Protocol):
    """What the optimizer needs from a critic (`vla_parl.critic.QCritic` implements it)."""

    def encode(self, obs: Observation) -> torch.Tensor:
        """State features [B, F]."""
        ...

    def q_values(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q_i(s, a) for actions [B, N, A] → [E, B, N]."""
        ...


_REDUCE = ("mean", "min")
_CHOICE = ("argmax", "softmax")


@dataclass
class ActionOptimizerConfig:
    top_k: int = 10                  # k (clamped to N when N < k)
    num_steps: int = 10              # T gradient-ascent steps (0 = global step only)
    step_size: float = 3e-4          # η; toy critics with small Q scales need larger steps
    ensemble_reduce: str = "mean"    # "mean" | "min" over the Q heads
    action_mask: Sequence[bool] | str | None = None   # None: all dims but the last (gripper); "all"
    low: float = -1.0
    high: float = 1.0
    choice: str = "argmax"           # "argmax" | "softmax"
    temperature: float = 1.0         # τ for choice = "softmax"

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {self.top_k}")
        if self.num_steps < 0:
            raise ConfigError(f"num_steps must be >= 0, got {self.num_steps}")
        if self.step_size <= 0:
            raise ConfigError(f"step_size must be > 0, got {self.step_size}")
        if self.ensemble_reduce not in _REDUCE:
            raise ConfigError(f"ensemble_reduce must be one of {_REDUCE}, got {self.ensemble_reduce!r}")
        if self.choice not in _CHOICE:
            raise ConfigError(f"choice must be one of {_CHOICE}, got {self.choice!r}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if not self.low < self.high:
            raise ConfigError(f"low ({self.low}) must be < high ({self.high})")
        if isinstance(self.action_mask, str) and self.action_mask != "all":
            raise ConfigError(f"action_mask must be None, 'all' or a list of booleans, got {self.action_mask!r}")


class OptimizedActions(NamedTuple):
    actions: torch.Tensor            # [B, A] the chosen optimized action per state
    q: torch.Tensor                  # [B]    its score (mean or min over heads)
    index: torch.Tensor              # [B]    int64, which of the k refined candidates was chosen
    candidates: torch.Tensor         # [B, k, A] all refined candidates (sorted by their start score)
    candidate_q: torch.Tensor        # [B, k]
    stats: dict[str, float]


@contextlib.contextmanager
def _eval_mode(critic: Any) -> Iterator[None]:
    """No augmentation/dropout while scoring; restores the caller's mode."""
    was_training = bool(getattr(critic, "training", False))
    if isinstance(critic, torch.nn.Module):
        critic.train(False)
    try:
        yield
    finally:
        if isinstance(critic, torch.nn.Module):
            critic.train(was_training)


class ActionOptimizer:
    """`optimizer(critic, obs, candidates) -> OptimizedActions`; stateless apart from its config."""

    def __init__(self, config: ActionOptimizerConfig | None = None, **overrides: Any) -> None:
        self.config = replace(config or ActionOptimizerConfig(), **overrides)

    def mask(self, action_dim: int, device: torch.device) -> torch.Tensor:
        """The 0/1 float mask m [A] of dims the local step may move."""
        spec = self.config.action_mask
        if spec is None:
            mask = torch.ones(action_dim, dtype=torch.bool)
            mask[-1] = False
        elif isinstance(spec, str):
            mask = torch.ones(action_dim, dtype=torch.bool)
        else:
            mask = torch.as_tensor(list(spec), dtype=torch.bool)
            if mask.shape != (action_dim,):
                raise ConfigError(f"action_mask has {mask.numel()} entries but actions have {action_dim} dims")
        if self.config.num_steps > 0 and not bool(mask.any()):
            raise ConfigError(f"action_mask selects no dims of a {action_dim}-dim action, so the local step "
                              "would do nothing: use action_mask='all' (e.g. no gripper dim) or num_steps=0")
        return mask.to(device=device, dtype=torch.float32)

    def _score(self, critic: Critic, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        q = critic.q_values(features, actions)                       # [E, B, N]
        if q.ndim != 3 or q.shape[1:] != actions.shape[:2]:
            raise ValueError(f"critic.q_values must return [E, B, N] = [E, {actions.shape[0]}, "
                             f"{actions.shape[1]}], got {tuple(q.shape)}")
        return q.mean(dim=0) if self.config.ensemble_reduce == "mean" else q.min(dim=0).values

    def __call__(self, critic: Critic, obs: Observation | None, candidates: torch.Tensor | CandidateActions, *,
                 features: torch.Tensor | None = None, choice: str | None = None,
                 generator: torch.Generator | None = None) -> OptimizedActions:
        """Optimize candidates [B, N, A] for the states in `obs` (or precomputed `features` [B, F])."""
        cfg = self.config
        actions = candidates.actions if isinstance(candidates, CandidateActions) else candidates
        if actions.ndim != 3:
            raise ValueError(f"candidates must be [B, N, A], got {tuple(actions.shape)}")
        choice = choice or cfg.choice
        if choice not in _CHOICE:
            raise ConfigError(f"choice must be one of {_CHOICE}, got {choice!r}")
        B, N, A = actions.shape
        k = min(cfg.top_k, N)
        with _eval_mode(critic), torch.autocast(device_type=actions.device.type, enabled=False):
            if features is None:
                if obs is None:
                    raise ValueError("pass obs (to encode) or features")
                with torch.no_grad():
                    features = critic.encode(obs)
            features = features.detach().float()
            if features.shape[0] != B:
                raise ValueError(f"candidates have B = {B} states but the observations/features have "
                                 f"{features.shape[0]}")
            actions = actions.detach().float()
            # ---- global step: hard top-k over the N samples
            with torch.no_grad():
                sample_q = self._score(critic, features, actions)                      # [B, N]
                start_q, top = sample_q.topk(k, dim=1)                                   # [B, k]
                start = actions.gather(1, top[..., None].expand(B, k, A))               # [B, k, A]
            # ---- local step: T steps of masked, clipped gradient ascent; keep the best iterate
            mask = self.mask(A, actions.device)
            best, best_q = start.clone(), start_q.clone()
            a = start.clone()

            def keep_best(a_t: torch.Tensor, q_t: torch.Tensor) -> None:
                nonlocal best, best_q
                improved = q_t > best_q
                best = torch.where(improved[..., None], a_t, best)
                best_q = torch.where(improved, q_t, best_q)

            # the gradient pass at iterate t also scores it, so T steps cost T + 1 critic evaluations
            for t in range(cfg.num_steps):
                a.requires_grad_(True)
                with torch.enable_grad():
                    q = self._score(critic, features, a)
                    (grad,) = torch.autograd.grad(q.sum(), a)
                with torch.no_grad():
                    if t > 0:
                        keep_best(a.detach(), q.detach())
                    a = (a.detach() + cfg.step_size * grad * mask).clamp(cfg.low, cfg.high)
            if cfg.num_steps > 0:
                with torch.no_grad():
                    keep_best(a, self._score(critic, features, a))
            # ---- choice
            if choice == "argmax":
                index = best_q.argmax(dim=1)
            else:
                probs = torch.softmax(best_q / cfg.temperature, dim=1)
                draw_device = generator.device if generator is not None else probs.device
                index = torch.multinomial(probs.to(draw_device), 1, generator=generator).squeeze(1).to(probs.device)
        rows = torch.arange(B, device=actions.device)
        chosen, chosen_q = best[rows, index], best_q[rows, index]
        q_global = start_q[:, 0]
        q_local = best_q.max(dim=1).values
        stats = {
            "q_samples_mean": float(sample_q.mean()),
            "q_samples_first": float(sample_q[:, 0].mean()),
            "q_global": float(q_global.mean()),
            "q_local": float(q_local.mean()),
            "q_chosen": float(chosen_q.mean()),
            "global_gain": float((q_global - sample_q.mean(dim=1)).mean()),
            "global_gain_vs_first": float((q_global - sample_q[:, 0]).mean()),
            "local_gain": float((q_local - q_global).mean()),
            "action_shift": float((best - start).norm(dim=-1).mean()),
        }
        return OptimizedActions(actions=chosen, q=chosen_q, index=index, candidates=best, candidate_q=best_q,
                                stats=stats)
