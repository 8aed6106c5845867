"""The PA-RL critic: a light, separate Q(s, a) ensemble (`QCritic`) and its objectives.

    critic = critic_resnet18(action_dim=7)            # or critic_state(state_dim, action_dim)
    features = critic.encode(obs)                     # [B, F], once per state
    q = critic.q_values(features, actions)            # actions [B, N, A] → [E, B, N]
"""

from vla_parl.critic.critic import CriticConfig, CriticOutput, QCritic, critic_resnet18, critic_state
from vla_parl.critic.encoders import HashingTokenizer, ImageEncoder, InstructionEncoder, ObservationEncoder
from vla_parl.critic.ensemble import EnsembleQ
from vla_parl.critic.objectives import (CalQLLoss, CQLLoss, IQLLoss, calql_loss, cql_loss, expectile_loss,
                                        iql_loss, mc_return_to_go, min_over_random_subset, td_target)

__all__ = [
    "CriticConfig", "CriticOutput", "QCritic", "critic_resnet18", "critic_state",
    "HashingTokenizer", "ImageEncoder", "InstructionEncoder", "ObservationEncoder", "EnsembleQ",
    "CQLLoss", "cql_loss", "CalQLLoss", "calql_loss", "mc_return_to_go", "IQLLoss", "expectile_loss",
    "iql_loss", "min_over_random_subset", "td_target",
]
