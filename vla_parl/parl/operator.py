"""`ImprovementOperator`: PA-RL's policy-improvement operator, the one implementation everyone calls.

    operator = ImprovementOperator.from_critic(critic, policy)          # the settings saved with the critic
    out = operator.improve(obs, generator=g)                            # out.actions [B, A], out.q [B]

Given a policy π, a critic ensemble {Q_i} and an `ImprovementConfig`, for each state s:

1. Candidates: a_1..a_N ~ π(·|s) (`policy.sample_actions`), or given ones; `include` adds actions that are
   always candidates (the serving greedy action), placed first.
2. Global step: score Q(s, a_j) = mean_i Q_i(s, a_j) (or min_i) and keep the top k (hard top-k).
   Distillation (`data_actions` given, `config.data_action` on): the dataset action of s replaces the worst
   kept start, slot k − 1, as the official code does — with k = 1 it is then the only candidate.
3. Local step: for t = 1..T,  a ← clip(a + η · m ⊙ ∇_a Q(s, a), low, high)  (plain gradient ascent on the
   online critic; m is the 0/1 mask of optimised dims — default every dim, as in the official code;
   `action_mask="except_last"` keeps a gripper as sampled); each candidate keeps the best iterate seen,
   the start included, so no candidate ever gets worse.
4. Choice: j* = argmax_j Q(s, a_j) or j* ~ softmax(Q(s, a_j) / τ) over the k refined candidates.

s is encoded once (`critic.encode`), and the features are reused for every score and gradient. Random
draws, in order: the policy's samples, then (softmax choice only) one multinomial draw per state, all from
`generator`.

Distillation (`PolicyUpdate`), the TD target (`CriticUpdate`), evaluation (`vla-parl eval`), serving's
refined mode and the demo's V-GPS ablation all call `improve`.

Diagnostics (all averaged over the B states, in `OptimizedActions.stats`):
  q_samples_mean  mean_j Q(s, a_j) over the candidates  q_samples_first  Q(s, a_1) (one plain sample)
  q_global        max Q over the k starts (the data action included when it replaced one)
  q_local         max over refined candidates
  q_chosen        Q of the returned action
  global_gain     = q_global − q_samples_mean       (what picking the best sample buys over the average)
  global_gain_vs_first = q_global − q_samples_first (… over acting with one policy sample)
  local_gain      = q_local − q_global ≥ 0          (what gradient ascent adds on top)
  action_shift    mean ‖a_refined − a_start‖₂ over the top-k
  with data actions: q_data_action  Q of the dataset action;  data_action_chosen  fraction of states whose
  chosen candidate is the data action's slot (k − 1, possibly moved by the local steps)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from vla_parl.errors import ConfigError
from vla_parl.parl.configuration import CHOICES, ImprovementConfig
from vla_parl.policy.base import CandidateActions, Observation

__all__ = ["Critic", "ImprovementConfig", "ImprovementOperator", "OptimizedActions"]


class Critic(Protocol):
    """What the operator needs from a critic (`vla_parl.critic.QCritic` implements it)."""

    def encode(self, obs: Observation) -> torch.Tensor:
        """State features [B, F]."""
        ...

    def q_values(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q_i(s, a) for actions [B, N, A] → [E, B, N]."""
        ...


class OptimizedActions(NamedTuple):
    actions: torch.Tensor            # [B, A] the chosen optimized action per state
    q: torch.Tensor                  # [B]    its score (mean or min over heads)
    index: torch.Tensor              # [B]    int64, which of the k refined candidates was chosen
    candidates: torch.Tensor         # [B, k, A] all refined candidates (in the order of their start score;
                                     #           a data action, when given, in slot k − 1)
    candidate_q: torch.Tensor        # [B, k]
    stats: dict[str, float]
    samples: torch.Tensor | None = None     # [B, N, A] the scored candidates (`include` first), before top-k
    sample_q: torch.Tensor | None = None    # [B, N] their scores


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


def _critic_device(critic: Any) -> torch.device | None:
    if isinstance(critic, torch.nn.Module):
        for parameter in critic.parameters():
            return parameter.device
    return None


class ImprovementOperator:
    """`improve(obs) -> OptimizedActions`: candidates → top-k → local ascent → choice, with one config.

    critic: anything with `encode` / `q_values` (only read, never trained here). policy: anything with
    `sample_actions(obs, n, generator=...)` (a `Policy`, a `CandidateCache`); may be None when candidates
    are always given.
    """

    def __init__(self, critic: Critic, policy: Any | None = None, config: ImprovementConfig | None = None,
                 **overrides: Any) -> None:
        self.critic = critic
        self.policy = policy
        self.config = (config or ImprovementConfig()).with_overrides(**overrides)

    @classmethod
    def from_critic(cls, critic: Any, policy: Any | None = None, *, fallback: ImprovementConfig | None = None,
                    **overrides: Any) -> "ImprovementOperator":
        """The operator saved with `critic` (`critic.improvement`), with explicit `overrides` (None = keep the
        saved value): CLI flags and request fields. A critic saved without one gets `fallback` (default:
        `ImprovementConfig()`), so callers keep their historical defaults for old checkpoints."""
        saved = getattr(critic, "improvement", None)
        config = ImprovementConfig.from_saved(saved) if saved is not None else (fallback or ImprovementConfig())
        return cls(critic, policy, config, **overrides)

    def with_config(self, **overrides: Any) -> "ImprovementOperator":
        """The same critic and policy with some settings replaced (None = keep)."""
        return ImprovementOperator(self.critic, self.policy, self.config, **overrides)

    def with_policy(self, policy: Any) -> "ImprovementOperator":
        """The same critic and settings over another candidate source (e.g. the live policy, not a cache)."""
        return ImprovementOperator(self.critic, policy, self.config)

    # ---- pieces ------------------------------------------------------------------------------------------------
    def mask(self, action_dim: int, device: torch.device) -> torch.Tensor:
        """The 0/1 float mask m [A] of dims the local step may move: None / "all" every dim, "except_last"
        all but the last (a gripper), or the given booleans."""
        spec = self.config.action_mask
        if spec is None or isinstance(spec, str):
            mask = torch.ones(action_dim, dtype=torch.bool)
            if spec == "except_last":
                mask[-1] = False
        else:
            mask = torch.as_tensor(list(spec), dtype=torch.bool)
            if mask.shape != (action_dim,):
                raise ConfigError(f"action_mask has {mask.numel()} entries but actions have {action_dim} dims")
        if self.config.num_steps > 0 and not bool(mask.any()):
            raise ConfigError(f"action_mask={spec!r} selects no dims of a {action_dim}-dim action, so the local "
                              "step would do nothing: use action_mask='all' (e.g. no gripper dim) or num_steps=0")
        return mask.to(device=device, dtype=torch.float32)

    def score(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q(s, a) [B, N] for actions [B, N, A]: the mean (or min) over the critic's heads."""
        q = self.critic.q_values(features, actions)                       # [E, B, N]
        if q.ndim != 3 or q.shape[1:] != actions.shape[:2]:
            raise ValueError(f"critic.q_values must return [E, B, N] = [E, {actions.shape[0]}, "
                             f"{actions.shape[1]}], got {tuple(q.shape)}")
        return q.mean(dim=0) if self.config.ensemble_reduce == "mean" else q.min(dim=0).values

    def sample(self, obs: Observation, generator: torch.Generator | None = None) -> torch.Tensor:
        """N = config.num_samples candidates per state from the policy: [B, N, A]."""
        if self.policy is None:
            raise ValueError("this ImprovementOperator has no policy: pass candidates=..., or build it with one")
        with torch.no_grad():
            return self.policy.sample_actions(obs, self.config.num_samples, generator=generator).actions

    # ---- the operator --------------------------------------------------------------------------------------------
    def improve(self, obs: Observation | None, *, candidates: torch.Tensor | CandidateActions | None = None,
                include: torch.Tensor | None = None, features: torch.Tensor | None = None,
                choice: str | None = None, generator: torch.Generator | None = None,
                data_actions: torch.Tensor | None = None) -> OptimizedActions:
        """a*(s) for each state of `obs` [B].

        candidates: [B, N, A] to use instead of sampling N from the policy. include: [B, M, A] actions that
        are candidates too, placed first (so Q(result) ≥ Q(include)). features: precomputed
        `critic.encode(obs)` [B, F] (then obs is used only for sampling). choice: override the config's.
        data_actions: [B, A] the dataset's actions at these states (distillation): with `config.data_action`
        on, each replaces its state's worst kept start (slot k − 1) before the local steps; ignored when off.
        """
        if candidates is None:
            if obs is None:
                raise ValueError("pass obs (to sample candidates from the policy) or candidates")
            candidates = self.sample(obs, generator)
        actions = candidates.actions if isinstance(candidates, CandidateActions) else candidates
        if actions.ndim != 3:
            raise ValueError(f"candidates must be [B, N, A], got {tuple(actions.shape)}")
        if include is not None:
            if include.ndim != 3 or include.shape[0] != actions.shape[0] or include.shape[2] != actions.shape[2]:
                raise ValueError(f"include must be [B, M, A] = [{actions.shape[0]}, M, {actions.shape[2]}], "
                                 f"got {tuple(include.shape)}")
            actions = torch.cat([include.to(actions), actions], dim=1)
        if data_actions is not None:
            if data_actions.ndim != 2 or data_actions.shape != (actions.shape[0], actions.shape[2]):
                raise ValueError(f"data_actions must be [B, A] = [{actions.shape[0]}, {actions.shape[2]}], "
                                 f"got {tuple(data_actions.shape)}")
            if not self.config.data_action:
                data_actions = None
        return self._optimize(obs, actions, features=features, choice=choice or self.config.choice,
                              generator=generator, data_actions=data_actions)

    def actor(self, generator: torch.Generator | None = None, choice: str | None = None) -> Any:
        """`act(obs) -> np.ndarray` [B, A]: normalised actions of the operator, for `run_episodes`."""
        def act(obs: Observation) -> np.ndarray:
            return self.improve(obs, generator=generator, choice=choice).actions.detach().cpu().numpy()

        return act

    def _optimize(self, obs: Observation | None, actions: torch.Tensor, *, features: torch.Tensor | None,
                  choice: str, generator: torch.Generator | None,
                  data_actions: torch.Tensor | None) -> OptimizedActions:
        cfg, critic = self.config, self.critic
        if choice not in CHOICES:
            raise ConfigError(f"choice must be one of {CHOICES}, got {choice!r}")
        B, N, A = actions.shape
        k = min(cfg.top_k, N)
        with _eval_mode(critic), torch.autocast(device_type=actions.device.type, enabled=False):
            if features is None:
                if obs is None:
                    raise ValueError("pass obs (to encode) or features")
                device = _critic_device(critic)
                with torch.no_grad():
                    features = critic.encode(obs if device is None else obs.to(device))
            features = features.detach().float()
            if features.shape[0] != B:
                raise ValueError(f"candidates have B = {B} states but the observations/features have "
                                 f"{features.shape[0]}")
            actions = actions.detach().float().to(features.device)
            # ---- global step: hard top-k over the N samples
            with torch.no_grad():
                sample_q = self.score(features, actions)                                # [B, N]
                start_q, top = sample_q.topk(k, dim=1)                                   # [B, k]
                start = actions.gather(1, top[..., None].expand(B, k, A))               # [B, k, A]
                if data_actions is not None:                    # the worst kept start → the dataset action
                    data = data_actions.detach().float().to(features.device)
                    data_q = self.score(features, data[:, None])[:, 0]
                    start[:, k - 1], start_q[:, k - 1] = data, data_q
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
                    q = self.score(features, a)
                    (grad,) = torch.autograd.grad(q.sum(), a)
                with torch.no_grad():
                    if t > 0:
                        keep_best(a.detach(), q.detach())
                    a = (a.detach() + cfg.step_size * grad * mask).clamp(cfg.low, cfg.high)
            if cfg.num_steps > 0:
                with torch.no_grad():
                    keep_best(a, self.score(features, a))
            # ---- choice
            if choice == "argmax":
                index = best_q.argmax(dim=1)
            else:
                probs = torch.softmax(best_q / cfg.temperature, dim=1)
                draw_device = generator.device if generator is not None else probs.device
                index = torch.multinomial(probs.to(draw_device), 1, generator=generator).squeeze(1).to(probs.device)
        rows = torch.arange(B, device=actions.device)
        chosen, chosen_q = best[rows, index], best_q[rows, index]
        q_global = start_q.max(dim=1).values
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
        if data_actions is not None:
            stats["q_data_action"] = float(data_q.mean())
            stats["data_action_chosen"] = float((index == k - 1).float().mean())
        return OptimizedActions(actions=chosen, q=chosen_q, index=index, candidates=best, candidate_q=best_q,
                                stats=stats, samples=actions, sample_q=sample_q)
