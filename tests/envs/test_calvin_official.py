"""The official calvin_env adapter: same contract as our scene, so the same harness runs on both; and
our scene side by side with calvin_env: the same resets and actions give the same observations.

The calvin_env tests run only where `calvin_env` is installed (a heavy, git-only install: the skip
reason gives the command); the contract check itself also runs on our scene, always."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from vla_parl.errors import MissingExtraError
from vla_parl.envs.calvin.protocol import CalvinEnv, run_chain
from vla_parl.envs.calvin.sequences import get_env_state_for_initial_condition
from vla_parl.envs.calvin.official import INSTALL_HINT, OfficialCalvinEnv, import_calvin_env
from vla_parl.envs.calvin.scene import ENV_VERSIONS, CalvinSceneEnv
from vla_parl.envs.calvin.scripted import ScriptedCalvinPolicy
from vla_parl.envs.calvin.tasks import INSTRUCTIONS

HAVE_CALVIN_ENV = importlib.util.find_spec("calvin_env") is not None
STATE = {"led": 0, "lightbulb": 0, "slider": "right", "drawer": "closed", "red_block": "slider_left",
         "blue_block": "table", "pink_block": "table", "grasped": 0}


def check_contract(env, *, ours: bool = False) -> None:
    """What `vla_parl.envs.calvin.protocol` relies on, checked on a live env. The scripted policy's waypoints
    are tuned on our scene (door friction differs in calvin_env), so the chain must succeed there."""
    assert isinstance(env, CalvinEnv)
    robot_obs, scene_obs = get_env_state_for_initial_condition(STATE)
    obs = env.reset(robot_obs=robot_obs, scene_obs=scene_obs)
    assert obs["rgb_obs"]["rgb_static"].shape == (200, 200, 3)
    assert obs["robot_obs"].shape == (15,) and obs["scene_obs"].shape == (24,)
    np.testing.assert_allclose(obs["scene_obs"][:6], scene_obs[:6], atol=1e-6)
    np.testing.assert_allclose(obs["scene_obs"][6:], scene_obs[6:], atol=5e-3)  # reset ends with one physics step
    start = env.get_info()
    out = env.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))
    assert len(out) == 4 and set(out[3]) >= {"robot_info", "scene_info"}
    assert env.completed_tasks(start, out[3], {"turn_on_led"}) == set()
    result = run_chain(env, ScriptedCalvinPolicy(), STATE, ["turn_on_led", "open_drawer"], ep_len=150)
    assert len(result.steps) == min(result.result + 1, 2) and all(0 < s <= 150 for s in result.steps)
    if ours:
        assert result.result == 2, result


@pytest.mark.calvin_assets
def test_contract_on_our_scene():
    with CalvinSceneEnv() as env:
        check_contract(env, ours=True)


@pytest.mark.skipif(HAVE_CALVIN_ENV, reason="calvin_env is installed")
def test_missing_calvin_env_gives_the_install_hint():
    with pytest.raises(MissingExtraError, match="pip install -e calvin_env"):
        import_calvin_env()
    with pytest.raises(MissingExtraError, match="git clone --recursive https://github.com/mees/calvin_env"):
        OfficialCalvinEnv()


@pytest.mark.skipif(not HAVE_CALVIN_ENV, reason=INSTALL_HINT)
def test_contract_on_the_official_env():
    env = OfficialCalvinEnv(use_egl=False)
    try:
        check_contract(env)
    finally:
        env.close()


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_CALVIN_ENV, reason=INSTALL_HINT)
def test_our_scene_matches_the_official_env_step_for_step():
    """Same reset, same actions (a scripted chain that presses the button, opens the drawer and pushes a
    block): robot_obs, scene_obs, both camera images and the oracle agree exactly."""
    official = OfficialCalvinEnv(use_egl=False)  # built first: calvin_env issues some calls on client 0
    version = official.commit if official.commit in ENV_VERSIONS else "797142c"
    ours = CalvinSceneEnv(cameras=("static", "gripper"), env_version=version)
    try:
        state = {**STATE, "led": 1}
        robot_obs, scene_obs = get_env_state_for_initial_condition(state)
        pair = [official.reset(robot_obs, scene_obs), ours.reset(robot_obs, scene_obs)]
        policy = ScriptedCalvinPolicy()
        for task in ("turn_off_led", "open_drawer", "push_blue_block_right"):
            policy.reset()
            starts = [official.get_info(), ours.get_info()]
            for _ in range(60):
                for a, b in ((pair[0]["robot_obs"], pair[1]["robot_obs"]), (pair[0]["scene_obs"], pair[1]["scene_obs"])):
                    np.testing.assert_array_equal(a, b)
                for cam in ("rgb_static", "rgb_gripper"):
                    np.testing.assert_array_equal(pair[0]["rgb_obs"][cam], pair[1]["rgb_obs"][cam])
                action = policy.act(pair[1], INSTRUCTIONS[task])
                steps = [official.step(action.copy()), ours.step(action.copy())]
                pair = [s[0] for s in steps]
                done = [env.completed_tasks(start, s[3]) for env, start, s in zip((official, ours), starts, steps)]
                assert done[0] == done[1]
    finally:
        ours.close()
        official.close()


@pytest.mark.skipif(not HAVE_CALVIN_ENV, reason=INSTALL_HINT)
def test_official_env_from_a_dataset_config_honours_use_egl(tmp_path):
    """A dataset split's `.hydra/merged_config.yaml` (here: the checkout's composed config, whose env says
    `use_egl: true`) builds the env, and our `use_egl=False` wins over the file."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    conf = Path(import_calvin_env().__file__).resolve().parent.parent / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base=None):
        cfg = compose("config_data_collection.yaml", overrides=["cameras=static_and_gripper"])
    assert cfg.env.use_egl is True
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / ".hydra" / "merged_config.yaml", resolve=False)
    env = OfficialCalvinEnv(tmp_path, use_egl=False, cameras={"rgb_obs": ["rgb_static"], "depth_obs": []})
    try:
        assert env.env.use_egl is False and [c.name for c in env.env.cameras] == ["static"]
        assert env.describe()["simulator"] == "official" and env.describe()["use_egl"] is False
        obs = env.reset(*get_env_state_for_initial_condition(STATE))
        assert obs["rgb_obs"]["rgb_static"].shape == (200, 200, 3)
    finally:
        env.close()
    with pytest.raises(FileNotFoundError, match="merged_config.yaml"):
        OfficialCalvinEnv(tmp_path / "missing")
