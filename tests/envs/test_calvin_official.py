"""The official calvin_env adapter: same contract as our scene, so the same harness runs on both.

The adapter test runs only where `calvin_env` is installed (it is a heavy, git-only install); the
contract check itself also runs on our scene, always."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from vla_parl.errors import MissingExtraError
from vla_parl.eval.calvin import CalvinEnv, run_chain
from vla_parl.eval.calvin_tasks import get_env_state_for_initial_condition
from vla_parl.envs.calvin_official import INSTALL_HINT, OfficialCalvinEnv, import_calvin_env
from vla_parl.envs.calvin_scripted import ScriptedCalvinPolicy

HAVE_CALVIN_ENV = importlib.util.find_spec("calvin_env") is not None
STATE = {"led": 0, "lightbulb": 0, "slider": "right", "drawer": "closed", "red_block": "slider_left",
         "blue_block": "table", "pink_block": "table", "grasped": 0}


def check_contract(env, *, ours: bool = False) -> None:
    """What `vla_parl.eval.calvin` relies on, checked on a live env. The scripted policy's waypoints
    are tuned on our scene (door friction differs in calvin_env), so the chain must succeed there."""
    assert isinstance(env, CalvinEnv)
    robot_obs, scene_obs = get_env_state_for_initial_condition(STATE)
    obs = env.reset(robot_obs=robot_obs, scene_obs=scene_obs)
    assert obs["rgb_obs"]["rgb_static"].shape == (200, 200, 3)
    assert obs["robot_obs"].shape == (15,) and obs["scene_obs"].shape == (24,)
    np.testing.assert_allclose(obs["scene_obs"], scene_obs, atol=1e-6)
    start = env.get_info()
    out = env.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))
    assert len(out) == 4 and set(out[3]) >= {"robot_info", "scene_info"}
    assert env.completed_tasks(start, out[3], {"turn_on_led"}) == set()
    result = run_chain(env, ScriptedCalvinPolicy(), STATE, ["turn_on_led", "open_drawer"], ep_len=150)
    assert len(result.steps) == min(result.result + 1, 2) and all(0 < s <= 150 for s in result.steps)
    if ours:
        assert result.result == 2, result


def test_contract_on_our_scene():
    from vla_parl.envs.calvin_scene import CalvinSceneEnv

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
