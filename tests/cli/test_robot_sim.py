"""`vla-parl robot sim`: tabletop robots in their own processes record episodes on a real server over HTTP only;
scenes depend on the episode number, not on how many processes run them; errors end the run with exit 2."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.serving._robot_server import episode_server, save_tiny_policy
from vla_parl.cli.main import main
from vla_parl.cli.robot import DEFAULTS

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def policy_dirs(tmp_path_factory) -> tuple[Path, Path]:
    return save_tiny_policy(tmp_path_factory.mktemp("policy"))


@pytest.fixture(scope="module")
def server(policy_dirs, tmp_path_factory):
    episodes = tmp_path_factory.mktemp("robot_episodes")
    with episode_server(*policy_dirs, episodes) as url:
        yield url, episodes


def _stored(episodes_dir: Path) -> dict[str, dict]:
    """{server episode id: its info} from the replay store the server writes, read as the learner reads it."""
    from vla_parl.data import ReplayBuffer

    with ReplayBuffer(episodes_dir, readonly=True) as buffer:
        infos = [buffer.episode_meta(e) for e in buffer.episode_ids]
        # every step and the final observation carry the camera frame at the demo's size (the default), the
        # tabletop's proprio [7] and block state [6]
        size = DEFAULTS["image_size"]
        assert {k: v["shape"] for k, v in buffer.schema["obs"].items()} == {
            "image": [size, size, 3], "proprio": [7], "state": [6]}
    return {meta["info"]["server_episode_id"]: {**meta["info"], "num_steps": meta["num_steps"]} for meta in infos}


def _table_rows(out: str) -> dict[str, tuple[int, int]]:
    return {m[1]: (int(m[2]), int(m[3])) for m in re.finditer(r"^\s*(\w+) \|\s+(\d+) \|\s+(\d+) \|", out, re.M)}


def test_two_robot_processes_record_every_episode_and_scenes_follow_the_seed(server, capsys):
    url, episodes_dir = server
    assert main(["robot", "sim", "--url", url, "--episodes", "3", "--processes", "2", "--max-steps", "3",
                 "--mode", "greedy", "--unnorm-key", "default", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert "3 reach episode(s) on 2 robot process(es), mode greedy" in out
    stored = _stored(episodes_dir)
    by_seed = {info["metadata"]["seed"]: info for info in stored.values()}
    assert sorted(by_seed) == [7, 8, 9]
    assert {info["metadata"]["robot"] for info in stored.values()} == {"tabletop-sim-0", "tabletop-sim-1"}
    assert all(info["policy_versions"] == [0] * info["num_steps"] for info in stored.values())
    successes = sum(bool(info["success"]) for info in stored.values())
    assert _table_rows(out) == {"0": (3, successes), "all": (3, successes)}

    # the same seeds on one process: the same scenes, so the same greedy actions
    assert main(["robot", "sim", "--url", url, "--episodes", "2", "--max-steps", "3", "--mode", "greedy",
                 "--unnorm-key", "default", "--seed", "8"]) == 0
    again = {info["metadata"]["seed"]: info for info in _stored(episodes_dir).values() if info["server_episode_id"]
             not in stored}
    assert sorted(again) == [8, 9]
    for seed in (8, 9):
        np.testing.assert_array_equal(again[seed]["served_actions"], by_seed[seed]["served_actions"])


def test_robots_collect_refined_when_the_server_has_a_critic(server, capsys):
    url, _ = server
    assert main(["robot", "sim", "--url", url, "--episodes", "1", "--max-steps", "1", "--unnorm-key", "default"]) == 0
    out = capsys.readouterr().out
    assert "mode refined" in out and "robot 0 episode 0 (seed 0): " in out


def test_server_errors_end_the_run_with_a_clear_message(policy_dirs, capsys):
    from serving.app import ServerConfig, ServerThread, create_app
    from serving.engine import PolicyEngine

    with ServerThread(create_app(PolicyEngine.load(policy_dirs[0]), ServerConfig())) as url:  # no --episodes
        assert main(["robot", "sim", "--url", url, "--episodes", "2", "--processes", "2", "--max-steps", "1"]) == 2
        err = capsys.readouterr().err
        assert "failed a robot request" in err and "start it with --episodes DIR" in err
        assert main(["robot", "sim", "--url", url, "--mode", "refined", "--max-steps", "1"]) == 2
        assert "not --mode refined" in capsys.readouterr().err
    assert main(["robot", "sim", "--url", "http://127.0.0.1:9", "--episodes", "1"]) == 2
    assert "cannot use the policy server at http://127.0.0.1:9" in capsys.readouterr().err
    assert main(["robot", "sim", "--url", "127.0.0.1:8000"]) == 2
    assert "must start with http://" in capsys.readouterr().err
    assert main(["robot", "sim", "--url", "http://127.0.0.1:9", "--targets", "purple"]) == 2
    assert "--targets purple: not a block colour" in capsys.readouterr().err


def test_defaults_are_the_demo_tabletop():
    data = yaml.safe_load((REPO_ROOT / "configs" / "demo.yaml").read_text())["data"]
    assert DEFAULTS == {"task": data["task"], "targets": data["targets"], "max_steps": data["max_episode_steps"],
                        "image_size": data["env_image_size"]}


def test_the_table_splits_success_by_policy_version_across_a_reload(policy_dirs, tmp_path, capsys):
    """A learner publishes v1, the client asks the server to load it: later episodes are served (and counted)
    by v1, and the server's own episode table agrees."""
    from tests.serving._helpers import make_tiny_vla
    from vla_parl.training.publish import PolicyPublisher
    from vla_parl_client import PolicyClient

    publish = tmp_path / "publish"
    with episode_server(*policy_dirs, tmp_path / "eps", policy_updates_dir=str(publish), policy_poll_s=3600) as url:
        sim = ["robot", "sim", "--url", url, "--episodes", "1", "--max-steps", "2", "--mode", "greedy",
               "--unnorm-key", "default"]
        assert main(sim) == 0
        assert _table_rows(capsys.readouterr().out)["0"][0] == 1
        PolicyPublisher(publish).publish(make_tiny_vla(), version=1, kind="model", base=str(policy_dirs[0]),
                                         episodes=[], metrics={})
        with PolicyClient(url) as client:
            assert client.reload()["policy_version"] == 1
            assert main(sim + ["--seed", "1"]) == 0
            out = capsys.readouterr().out
            table = client.episodes()["by_policy_version"]
        assert "(policy version 1)" in out and "policy version 1\n" in out     # the header and the episode line
        successes = table["1"]["successes"]
        assert _table_rows(out) == {"1": (1, successes), "all": (1, successes)}
        assert table["0"]["episodes"] == 1 and table["1"]["episodes"] == 1


def test_paced_robots_run_k_episodes_per_policy_version_then_wait_for_the_next(policy_dirs, tmp_path, capsys):
    """--episodes-per-version 2 on 2 processes: episodes 0–1 are served by v0; the robots then wait until the
    learner's v1 is served, and episodes 2–3 run on v1 (PA-RL's alternating real-robot rounds)."""
    import threading
    import time

    from tests.serving._helpers import make_tiny_vla
    from vla_parl.training.publish import PolicyPublisher

    publish, episodes = tmp_path / "publish", tmp_path / "eps"
    with episode_server(*policy_dirs, episodes, policy_updates_dir=str(publish), policy_poll_s=0.2) as url:
        codes: list[int] = []
        robots = threading.Thread(target=lambda: codes.append(main([
            "robot", "sim", "--url", url, "--episodes", "4", "--processes", "2", "--episodes-per-version", "2",
            "--max-steps", "2", "--mode", "greedy", "--unnorm-key", "default", "--version-wait", "120"])))
        robots.start()
        deadline = time.monotonic() + 120
        while not (episodes / "buffer.json").is_file() or len(_stored(episodes)) < 2:
            assert time.monotonic() < deadline and robots.is_alive()
            time.sleep(0.1)
        time.sleep(1.0)                               # the robots are waiting, not running ahead on v0
        assert len(_stored(episodes)) == 2
        PolicyPublisher(publish).publish(make_tiny_vla(), version=1, kind="model", base=str(policy_dirs[0]),
                                         episodes=[], metrics={})
        robots.join(180)
    assert codes == [0]
    by_seed = {info["metadata"]["seed"]: info["policy_versions"] for info in _stored(episodes).values()}
    assert {seed: versions[0] for seed, versions in by_seed.items()} == {0: 0, 1: 0, 2: 1, 3: 1}
    assert _table_rows(capsys.readouterr().out)["all"][0] == 4
