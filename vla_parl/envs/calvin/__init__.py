"""CALVIN in one place: scene D, its tasks, the long-horizon protocol and the dataset reader.

| module | what |
|---|---|
| `tasks` | the 34 tasks written once: names, categories, rules, instructions, success thresholds; PA-RL's four |
| `sequences` | the official 1000 evaluation chains and the initial `robot_obs` / `scene_obs` of each |
| `oracle` | success detection on two `get_info()` dicts (`CalvinTaskOracle`), pure numpy |
| `assets` | where the scene assets are (`find_calvin_assets`); they are data, never copied here |
| `scene` | our scene D on PyBullet (`CalvinSceneEnv`), faithful to calvin_env |
| `official` | the official calvin_env simulator behind the same contract (`OfficialCalvinEnv`), lazily imported |
| `scripted` | a waypoint oracle policy and a do-nothing floor (`ScriptedCalvinPolicy`, `NoopCalvinPolicy`) |
| `protocol` | the long-horizon evaluation (`evaluate_calvin`: 5-instruction chains, 360 steps per subtask) |
| `parl_env` | PA-RL's 4-task, 360-step setting as a gymnasium env (`CalvinParlEnv`) |
| `reader` | the CALVIN dataset's annotated windows as standard trajectories (`CalvinReader`) |

Everything here sits in the lowest layer (beside `data/` and `models/`); `tasks`, `sequences`, `oracle`,
`protocol` and `reader` compute with numpy and build no simulator. What needs higher layers stays
with them: the OpenVLA checkpoint as a CALVIN policy (`vla_parl.eval.calvin_vla`, it loads models and the
PA-RL operator) and `run_episodes`' adapter for the PA-RL setting (`vla_parl.rollout.CalvinParlAdapter`, it
implements the rollout layer's `EnvAdapter`). Import the submodules directly; this package imports nothing.
"""
