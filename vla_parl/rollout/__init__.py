"""Rollouts: policies acting in environments.

- `run_episodes` (`vla_parl.rollout.episodes`): fixed seeded episodes in lockstep, one `Observation` batch
  per step, normalised actions, replay-ready trajectories — evaluation and online PA-RL collection. What
  differs between environments is an `EnvAdapter` (`vla_parl.rollout.adapters`: `TabletopAdapter`,
  `CalvinParlAdapter`).
- `ParallelRollout` (`vla_parl.rollout.runner`): throughput — N auto-resetting environment workers, one
  batched call per step to an `ActionSource` (`vla_parl.rollout.sources`: a local model or a policy server).
"""

from vla_parl.rollout.adapters import CALVIN_PARL_INSTRUCTION, CalvinParlAdapter, TabletopAdapter
from vla_parl.rollout.episodes import EnvAdapter, EvalResult, run_episodes, wilson_interval
from vla_parl.rollout.runner import ParallelRollout, RolloutStats, make_rollout_env
from vla_parl.rollout.sources import ActionSource, CallableSource, ModelSource, as_action_source

__all__ = ["ParallelRollout", "RolloutStats", "make_rollout_env", "ActionSource", "ModelSource",
           "CallableSource", "as_action_source", "EnvAdapter", "EvalResult", "run_episodes", "wilson_interval",
           "TabletopAdapter", "CalvinParlAdapter", "CALVIN_PARL_INSTRUCTION"]
