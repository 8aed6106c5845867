"""Critic objectives, one module each (equation in the module docstring): CQL, Cal-QL, IQL, TD target."""

from vla_parl.critic.objectives.calql import CalQLLoss, calql_loss
from vla_parl.critic.objectives.cql import CQLLoss, cql_loss
from vla_parl.critic.objectives.iql import IQLLoss, expectile_loss, iql_loss
from vla_parl.critic.objectives.td import min_over_random_subset, random_head_subset, td_target

__all__ = ["CQLLoss", "cql_loss", "CalQLLoss", "calql_loss", "IQLLoss", "expectile_loss",
           "iql_loss", "min_over_random_subset", "random_head_subset", "td_target"]
