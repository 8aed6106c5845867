"""Policy-Agnostic RL: the action optimizer and the two update steps (critic, policy distillation).

    optimizer = ActionOptimizer(top_k=10, num_steps=10, step_size=3e-4)
    best = optimizer(critic, obs, policy.sample_actions(obs, 32))   # best.actions [B, A]
    CriticUpdate(critic, critic_opt, policy, optimizer).step(batch)  # CQL / Cal-QL / IQL
    PolicyUpdate(policy, policy_opt, critic, optimizer).step(obs)    # sample → optimize → distill
"""

from vla_parl.parl.action_optimizer import ActionOptimizer, ActionOptimizerConfig, Critic, OptimizedActions
from vla_parl.parl.batch import TransitionBatch
from vla_parl.parl.critic_update import CriticUpdate, CriticUpdateConfig
from vla_parl.parl.policy_update import PolicyUpdate, PolicyUpdateConfig

__all__ = ["ActionOptimizer", "ActionOptimizerConfig", "Critic", "OptimizedActions", "TransitionBatch",
           "CriticUpdate", "CriticUpdateConfig", "PolicyUpdate", "PolicyUpdateConfig"]
