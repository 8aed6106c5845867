"""The built-in pybullet tabletop simulator: language-conditioned reach / push / lift, experts, vector envs.

See docs/envs.md for the task list, observation/action conventions and speed figures. CALVIN (scene, tasks,
protocol, dataset reader) is the `vla_parl.envs.calvin` subpackage.
"""

from __future__ import annotations

import gymnasium as gym

from vla_parl.envs.experts import DEFAULT_NOISE, ExpertNoise, ScriptedExpert, make_expert
from vla_parl.envs.tabletop import BLOCK_COLORS, PUSH_DIRECTIONS, TASKS, TabletopEnv, make_env, tabletop_state
from vla_parl.envs.vector import make_tabletop_vec_env

__all__ = [
    "TASKS", "BLOCK_COLORS", "PUSH_DIRECTIONS", "TabletopEnv", "make_env", "tabletop_state", "make_tabletop_vec_env",
    "ENV_ID", "ScriptedExpert", "ExpertNoise", "DEFAULT_NOISE", "make_expert",
]

ENV_ID = "vla_parl/Tabletop-v0"
if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point="vla_parl.envs.tabletop:TabletopEnv")
