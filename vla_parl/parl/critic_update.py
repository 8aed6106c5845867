"""`CriticUpdate`: one critic gradient step with CQL, Cal-QL or IQL, PA-RL style.

For CQL / Cal-QL the TD target bootstraps from the *optimized* next action:

    a'*  = action_optimization(s')  (N policy samples → top-k → T ascent steps → argmax)
    y    = r + γ (1 − d) min_{i∈pair} Q̄_i(s', a'*)

and the conservative term pushes down Q at s on the set μ (`config.push_down`; n = `cql_n_actions`
uniform draws from U[low, high]^A in both):

    official            μ = n uniform + a*(s) × n + a'* × n + the data action a   (3n + 1 actions, all at s),
                        a*(s) = action_optimization(s).actions (argmax); log-mean-exp, − log(3n+1)
    refined_candidates  μ = n uniform + the k refined candidates of action_optimization(s); log Σ exp

a*(s) and a'* are scored once each at s and their values repeated n times in the log-sum-exp (the same
value and gradient as scoring each n times). Losses (see `vla_parl.critic.objectives`): mean over heads
and batch of (Q_i − y)², no ½, + α · the conservative gap averaged over `conservative_heads` heads drawn
with the update's generator. IQL needs no policy: Q ← r + γ(1 − d) V(s').
After each synchronised optimiser step the target moves: θ̄ ← τ θ + (1 − τ) θ̄.

The settings are a `CriticUpdateConfig` (`vla_parl.parl.configuration`, the recipes' `objective:` section);
γ is the data's discount (`data.gamma`), passed to `CriticUpdate` so the TD target and Cal-QL's Monte-Carlo
returns always agree.
"""

from __future__ import annotations

from typing import Any

import torch

from vla_parl.config.schema import check_range
from vla_parl.critic.objectives import CalQLLoss, CQLLoss, calql_loss, cql_loss, iql_loss, td_target
from vla_parl.errors import ConfigError
from vla_parl.parl._accel import AcceleratorShim
from vla_parl.parl.configuration import CriticUpdateConfig, ImprovementConfig
from vla_parl.parl.operator import ImprovementOperator
from vla_parl.parl.batch import TransitionBatch
from vla_parl.policy.base import Policy

__all__ = ["CriticUpdateConfig", "CriticUpdate"]

class CriticUpdate:
    """`CriticUpdate(critic, optimizer, policy, ...).step(batch) -> dict[str, float]`.

    critic: a `QCritic` (or its `accelerator.prepare`d wrapper; its forward is used for the loss so DDP
    syncs gradients). optimizer: over `critic.trainable_parameters()`. policy: any `Policy` (only
    `sample_actions` is used; may be None for IQL). improvement: the operator's settings (its N and choice
    are replaced by `config.num_samples` and argmax here). gamma: the discount γ of the data.
    """

    def __init__(self, critic: Any, optimizer: torch.optim.Optimizer, policy: Policy | None,
                 improvement: ImprovementConfig | None = None, config: CriticUpdateConfig | None = None, *,
                 gamma: float = 0.99, accelerator: Any | None = None,
                 generator: torch.Generator | None = None) -> None:
        self.config = config or CriticUpdateConfig()
        check_range("gamma", gamma, low=0, high=1)
        self.gamma = gamma
        if self.config.objective != "iql" and policy is None:
            raise ConfigError(f"objective {self.config.objective!r} bootstraps from optimized policy actions: "
                              "pass a policy (only IQL works without one)")
        self.accel = AcceleratorShim(accelerator)
        self.critic = critic
        self.core = self.accel.unwrap(critic)
        if self.config.objective == "iql" and getattr(self.core, "value", None) is None:
            raise ConfigError("IQL needs V(s): build the critic with value_head=True (recipes: "
                              "critic.value_head=true)")
        self.optimizer = optimizer
        self.policy = policy
        # the TD target and μ's policy actions: N policy samples, optimised on the online critic, argmax
        self.operator = ImprovementOperator(self.core, policy, improvement, num_samples=self.config.num_samples,
                                            choice="argmax")
        self.generator = generator

    def _optimized(self, obs: Any, stats: dict[str, float], prefix: str) -> Any:
        result = self.operator.improve(obs, generator=self.generator)
        stats.update({f"{prefix}{k}": v for k, v in result.stats.items()})
        return result

    def _conservative_loss(self, q: torch.Tensor, next_q_value: torch.Tensor,
                           batch: TransitionBatch) -> CQLLoss | CalQLLoss:
        """CQL / Cal-QL from q [E, B, 1 + n + P] = Q_i at (data, n uniform, P policy actions) at s."""
        cfg = self.config
        n = cfg.cql_n_actions
        q_data, q_random, q_policy = q[:, :, 0], q[:, :, 1:1 + n], q[:, :, 1 + n:]
        official = cfg.push_down == "official"
        if official:                       # a*(s), a'* scored once, each value n times in μ: [E, B, 2n]
            q_policy = q_policy.repeat_interleave(n, dim=2)
        kwargs = dict(include_data_action=official, conservative_heads=cfg.conservative_heads,
                      generator=self.generator)
        if cfg.objective == "cql":
            return cql_loss(q_data, next_q_value, q_random, q_policy, cfg.cql_alpha, **kwargs)
        return calql_loss(q_data, next_q_value, q_random, q_policy, batch.mc_returns.float(), cfg.cql_alpha,
                          **kwargs)

    def step(self, batch: TransitionBatch) -> dict[str, float]:
        cfg = self.config
        B, A = batch.actions.shape
        r, d = batch.rewards.float(), batch.dones.float()
        stats: dict[str, float] = {}
        self.core.train()
        with torch.no_grad():
            if cfg.objective == "iql":
                q_target = self.core.target_q(batch.obs, batch.actions[:, None], self.generator)[:, 0]
                v_next = self.core.v_values(self.core.encode(batch.next_obs))
                actions = batch.actions[:, None]                                        # [B, 1, A]
            else:
                next_actions = self._optimized(batch.next_obs, stats, "critic/next_opt/").actions
                next_q = self.core.target_q(batch.next_obs, next_actions[:, None], self.generator)[:, 0]
                next_q_value = td_target(r, d, next_q, self.gamma)                       # y [B]
                optimized = self._optimized(batch.obs, stats, "critic/policy_opt/")
                if cfg.push_down == "official":                                          # a*(s), a'*: [B, 2, A]
                    policy_actions = torch.stack([optimized.actions, next_actions], 1)
                else:
                    policy_actions = optimized.candidates                                # [B, k, A]
                low, high = self.operator.config.low, self.operator.config.high
                draw_device = self.generator.device if self.generator is not None else batch.actions.device
                random_actions = torch.rand(B, cfg.cql_n_actions, A, generator=self.generator,
                                            device=draw_device).to(batch.actions)
                random_actions = low + (high - low) * random_actions                    # [B, n, A]
                actions = torch.cat([batch.actions[:, None], random_actions, policy_actions.to(batch.actions)], 1)
        if cfg.objective == "calql" and batch.mc_returns is None:
            raise ValueError("Cal-QL needs batch.mc_returns (V^μ(s), the Monte-Carlo return-to-go of the data; "
                             "see vla_parl.data.rewards.mc_returns)")
        with self.accel.train_context(self.critic):
            out = self.critic(batch.obs, actions)
            q = out.q.float()                                                            # [E, B, 1(+n+2 | +n+k)]
            q_data = q[:, :, 0]
            if cfg.objective == "iql":
                result = iql_loss(q_data, q_target, out.v.float(), v_next, r, d, self.gamma, cfg.expectile)
            else:
                result = self._conservative_loss(q, next_q_value, batch)
            self.accel.backward(result.loss)
            grad_norm = self.accel.clip_grad_norm_(self.core.trainable_parameters(), cfg.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        if self.accel.sync_gradients:
            self.core.soft_update(cfg.polyak_tau)
        stats.update(result.stats())
        stats["critic/loss"] = float(result.loss.detach())
        if grad_norm is not None:
            stats["critic/grad_norm"] = grad_norm
        return stats
