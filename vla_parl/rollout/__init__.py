"""Rollouts: policies acting in environments.

- `run_episodes` (`vla_parl.rollout.episodes`): fixed seeded episodes in lockstep, one `Observation` batch
  per step, normalised actions, replay-ready trajectories — evaluation and online PA-RL collection. What
  differs between environments is an `EnvAdapter` (`vla_parl.rollout.adapters`: `TabletopAdapter`,
  `CalvinParlAdapter`); episodes robots finished through the policy server are read by `RobotEpisodes`
  (`vla_parl.rollout.robot_episodes`, the learner's side of `online.env=robot`); the robots' side, simulated:
  `vla_parl.rollout.sim_robot` (`vla-parl robot sim`, tabletop robots that speak only HTTP).
- `ExpertActor` / `expert_episodes` (`vla_parl.rollout.experts`): the tabletop's scripted experts as a
  `run_episodes` actor (they read the simulator through `EnvView`), for demonstrations.
- `ParallelRollout` (`vla_parl.rollout.runner`): throughput — N auto-resetting environment workers, one
  batched call per step to an `ActionSource` (`vla_parl.rollout.sources`: a local model or a policy server).
"""

from vla_parl.rollout.adapters import CalvinParlAdapter, TabletopAdapter
from vla_parl.rollout.episodes import EnvAdapter, EnvView, EvalResult, run_episodes, wilson_interval
from vla_parl.rollout.experts import ExpertActor, expert_episodes
from vla_parl.rollout.robot_episodes import RobotEpisode, RobotEpisodes, robot_metrics
from vla_parl.rollout.runner import ParallelRollout, RolloutStats, make_rollout_env
from vla_parl.rollout.sources import ActionSource, CallableSource, ModelSource, as_action_source

__all__ = ["ParallelRollout", "RolloutStats", "make_rollout_env", "ActionSource", "ModelSource",
           "CallableSource", "as_action_source", "EnvAdapter", "EnvView", "EvalResult", "run_episodes",
           "wilson_interval", "ExpertActor", "expert_episodes",
           "TabletopAdapter", "CalvinParlAdapter", "RobotEpisode", "RobotEpisodes", "robot_metrics"]
