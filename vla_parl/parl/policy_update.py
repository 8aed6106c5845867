"""`PolicyUpdate`: PA-RL policy improvement — sample, optimize with the critic, distill.

    a_1..a_N ~ π_θ(·|s)                       (any policy, through `Policy.sample_actions`)
    a*(s)    = action_optimization(s, a_1..a_N)   (`ImprovementOperator.improve`: top-k → local ascent → choice;
                                                    the dataset action, when given, replaces the worst kept one)
    θ        ← θ − lr ∇_θ L_π(θ; s, a*(s))      (the policy's own supervised loss: CE, ε-MSE, NLL)

Exactly one optimized action per state. The critic is only read (no critic gradients).
"""

from __future__ import annotations

from typing import Any

import torch

from vla_parl.config.schema import check_range
from vla_parl.parl._accel import AcceleratorShim
from vla_parl.parl.configuration import ImprovementConfig
from vla_parl.parl.operator import Critic, ImprovementOperator, OptimizedActions
from vla_parl.policy.base import Observation, Policy

__all__ = ["PolicyUpdate"]


class PolicyUpdate:
    """`PolicyUpdate(policy, optimizer, critic, ...).step(obs) -> dict[str, float]`.

    policy: the `Policy` object itself (for DDP, its `supervised_loss` should run its prepared module).
    optimizer: over `policy.trainable_parameters()`. critic: anything with `encode` / `q_values`.
    The improvement operator (`self.operator`) is the critic and policy with the `improvement` settings
    (N, top-k, steps, choice, ...). max_grad_norm: clip the policy's gradient norm (None: no clipping).
    """

    def __init__(self, policy: Policy, optimizer: torch.optim.Optimizer, critic: Critic,
                 improvement: ImprovementConfig | None = None, *, max_grad_norm: float | None = None,
                 accelerator: Any | None = None, generator: torch.Generator | None = None) -> None:
        check_range("max_grad_norm", max_grad_norm, low=0, low_open=True, optional=True)
        self.max_grad_norm = max_grad_norm
        self.accel = AcceleratorShim(accelerator)
        self.policy = policy
        self.optimizer = optimizer
        self.critic = self.accel.unwrap(critic)
        self.operator = ImprovementOperator(self.critic, policy, improvement)
        self.generator = generator

    @torch.no_grad()
    def improve(self, obs: Observation, data_actions: torch.Tensor | None = None) -> OptimizedActions:
        """The policy-improvement operator alone: a*(s) for each state (also what acting with PA-RL uses).
        data_actions: [B, A] the dataset's actions at these states (see `step`)."""
        return self.operator.improve(obs, generator=self.generator, data_actions=data_actions)

    def step(self, obs: Observation, local_rows: slice | None = None,
             data_actions: torch.Tensor | None = None) -> dict[str, float]:
        """One distillation step on a batch of states; returns float stats.

        local_rows: data parallelism over ranks. Every rank passes the same global batch `obs` [B] and
        computes a*(s) for all of it (cheap: cached or sampled candidates and the critic; the random draws
        then do not depend on the world size), and distills only on its own rows `obs[local_rows]`; the
        wrapped policy averages the gradients over ranks, as one process would on the global batch.
        data_actions: [B] rows like `obs` (the global batch), the dataset's normalised actions: with the
        operator's `data_action` setting on (the default), each replaces its state's worst kept candidate
        before the local steps (official PA-RL distillation); stats then include `data_action_chosen`.
        """
        target = self.improve(obs, data_actions)
        actions = target.actions.detach()
        if local_rows is not None:
            obs, actions = obs.index(local_rows), actions[local_rows]
        with self.accel.train_context(self.policy):
            out = self.policy.supervised_loss(obs, actions)
            self.accel.backward(out.loss)
            grad_norm = self.accel.clip_grad_norm_(self.policy.trainable_parameters(), self.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        stats = {f"policy/{k}": v for k, v in out.stats.items()}
        stats.update({f"policy/opt/{k}": v for k, v in target.stats.items()})
        stats["policy/loss"] = float(out.loss.detach())
        if grad_norm is not None:
            stats["policy/grad_norm"] = grad_norm
        return stats
