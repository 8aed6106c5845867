"""`RobotEpisodes`: the learner's reader of the policy server's episode store (a real `ReplayBuffer` written
as the server writes it)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from vla_parl.data import ReplayBuffer
from vla_parl.errors import ConfigError, VLAParlError
from vla_parl.rollout import RobotEpisodes, robot_metrics


def _add(store: ReplayBuffer, server_id: str | None, *, success: bool = True, version: int = 0, size: int = 56,
         proprio: bool = True, steps: int = 3) -> None:
    reward = -np.ones(steps, np.float32)
    reward[-1] = 0.0 if success else -1.0
    obs = {"image": np.full((steps, size, size, 3), 200, np.uint8)}
    if proprio:
        obs["proprio"] = np.zeros((steps, 7), np.float32)
    info = {"policy_versions": [version] * steps, "success": success}
    if server_id is not None:
        info["server_episode_id"] = server_id
    store.add_episode(obs, np.zeros((steps, 7), np.float32), reward, terminal=success, instruction="reach",
                      info=info)


def test_pending_episodes_skip_consumed_ones_oldest_first(tmp_path):
    robot = RobotEpisodes(tmp_path / "episodes", poll_s=0.01)
    assert robot.pending(set()) == []                           # no server has written yet
    with ReplayBuffer(tmp_path / "episodes") as store:
        for name in ("a", "b", None, "d"):
            _add(store, name)
        assert robot.pending({"b"}) == [0, 2, 3]
        assert [e.server_id for e in robot.load([2, 3])] == ["store-2", "d"]   # a store written without ids


def test_wait_returns_once_enough_new_episodes_are_stored_and_times_out_clearly(tmp_path, capsys):
    store = ReplayBuffer(tmp_path / "episodes")
    _add(store, "a")
    robot = RobotEpisodes(tmp_path / "episodes", poll_s=0.01)
    with pytest.raises(VLAParlError, match=r"waited 0.05 s for 2 new finished robot episodes in .*episodes and "
                                           r"got 1: .*online.robot.wait_timeout_s"):
        robot.wait(2, set(), timeout_s=0.05, progress=False)
    assert "waiting for 2 new finished robot episodes" in capsys.readouterr().err

    def robot_finishes_one() -> None:
        time.sleep(0.2)
        _add(store, "b")

    thread = threading.Thread(target=robot_finishes_one)
    thread.start()
    assert robot.wait(1, {"a"}, timeout_s=60, progress=False) == [1]
    thread.join()
    store.close()


def test_to_learner_resizes_images_and_names_what_is_missing(tmp_path):
    with ReplayBuffer(tmp_path / "big") as store:
        _add(store, "big", size=112)
    with ReplayBuffer(tmp_path / "bare") as store:
        _add(store, "bare", proprio=False)
    robot = RobotEpisodes(tmp_path / "big")
    robot.match_offline({"image": (56, 56, 3), "proprio": (7,)})     # a critic that reads no state
    episode = robot.to_learner(robot.load([0])[0])
    assert episode["image"].shape == (3, 56, 56, 3) and int(episode["image"][0, 10, 10, 0]) == 200
    assert "state" not in episode and episode["info"]["server_episode_id"] == "big"
    bare = RobotEpisodes(tmp_path / "bare")
    bare.match_offline({"image": (56, 56, 3), "proprio": (7,)})
    with pytest.raises(VLAParlError, match=r"has no 'proprio'.*PolicyClient.act\(\.\.\., proprio=\.\.\.\)"):
        bare.to_learner(bare.load([0])[0])
    robot.match_offline({"image": (56, 56, 3), "proprio": (7,), "state": (6,)})   # a critic that reads state
    with pytest.raises(VLAParlError, match=r"has no 'state'.*PolicyClient.act\(\.\.\., state=\.\.\.\)"):
        robot.to_learner(robot.load([0])[0])
    with pytest.raises(ConfigError, match=r"holds \['image_wrist'\], which robot episodes do not carry"):
        bare.match_offline({"image": (56, 56, 3), "image_wrist": (56, 56, 3)})


def test_robot_metrics_count_each_episode_under_the_version_of_its_first_step(tmp_path):
    with ReplayBuffer(tmp_path / "episodes") as store:
        for name, success, version in (("a", True, 0), ("b", False, 1), ("c", True, 1), ("d", False, 1)):
            _add(store, name, success=success, version=version)
    metrics = robot_metrics(RobotEpisodes(tmp_path / "episodes").load([0, 1, 2, 3]))
    assert metrics["collect_success"] == 0.5 and metrics["collect_length"] == 3.0
    assert metrics["collect_return"] == pytest.approx((-2 - 3 - 2 - 3) / 4)
    assert (metrics["collect_episodes/v0"], metrics["collect_success/v0"]) == (1.0, 1.0)
    assert (metrics["collect_episodes/v1"], metrics["collect_success/v1"]) == (3.0, pytest.approx(1 / 3))


def test_robot_episodes_reach_the_learner_with_the_real_robot_mc_rule(tmp_path):
    """A failed robot episode enters the learner's replay worth −1/(1 − γ) at every step (Cal-QL's real-robot
    rule); a simulated episode that ends unfinished keeps the truncated sum."""
    from vla_parl.training.data import episodes_to_buffer

    with ReplayBuffer(tmp_path / "episodes") as store:
        _add(store, "failed", success=False)
        _add(store, "solved", success=True)
    robot = RobotEpisodes(tmp_path / "episodes")
    robot.match_offline({"image": (56, 56, 3), "proprio": (7,)})
    learner = [robot.to_learner(e) for e in robot.load([0, 1])]
    assert [e["mc_tail"] for e in learner] == ["failure", "failure"]
    simulated = {k: v for k, v in learner[0].items() if k not in ("mc_tail", "info")}   # as run_episodes returns it
    with ReplayBuffer(tmp_path / "online") as online:
        episodes_to_buffer([*learner, simulated], online, lambda a: a, 0.5)
        # γ = 0.5. failed robot, r = [−1, −1, −1]: −1/(1 − 0.5) = −2 everywhere;
        # solved robot, r = [−1, −1, 0]: G2 = 0, G1 = −1, G0 = −1.5;
        # simulated failure, the truncated sum: G2 = −1, G1 = −1.5, G0 = −1.75
        np.testing.assert_allclose(online.episode(0)["mc_return"], [-2, -2, -2])
        np.testing.assert_allclose(online.episode(1)["mc_return"], [-1.5, -1.0, 0.0])
        np.testing.assert_allclose(online.episode(2)["mc_return"], [-1.75, -1.5, -1.0])
