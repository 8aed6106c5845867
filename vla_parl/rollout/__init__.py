"""Parallel rollouts: N environment workers, one batched policy (or remote server) call per step.

See `vla_parl.rollout.runner` for the loop and `vla_parl.rollout.sources` for the `ActionSource` protocol.
"""

from vla_parl.rollout.runner import ParallelRollout, RolloutStats, make_rollout_env
from vla_parl.rollout.sources import ActionSource, CallableSource, ModelSource, as_action_source

__all__ = ["ParallelRollout", "RolloutStats", "make_rollout_env", "ActionSource", "ModelSource",
           "CallableSource", "as_action_source"]
