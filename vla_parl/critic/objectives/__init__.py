"""Critic objectives, one module each (equation in the module docstring): CQL, Cal-QL, IQL, TD target."""

from vla_parl.critic.objectives.calql import CalQLLoss, calql_loss, mc_return_to_go
from vla_parl.critic.objectives.cql import CQLLoss, cql_loss
from vla_parl.critic.objectives.iql import IQLLoss, expectile_loss, iql_loss
from vla_parl.critic.objectives.td import min_over_random_subset, td_target

__all__ = ["CQLLoss", "cql_loss", "CalQLLoss", "calql_loss", "mc_return_to_go", "IQLLoss", "expectile_loss",
           "iql_loss", "min_over_random_subset", "td_target"]
