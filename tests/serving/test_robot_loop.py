"""The whole robot loop for real, on loopback (docs/robot.md): `vla-parl serve --episodes E --policy-updates P`
(tiny model + critic), the learner `vla-parl run parl --config parl_robot online.env=robot ...` and two simulated
robots (`vla-parl robot sim --processes 2`), each its own process, meeting only over HTTP and the two folders.

1. Two rounds: episodes are stored with the actions the robots were served and −1/0 rewards; the learner publishes
   v1 and v2 from disjoint episodes and the server swaps each in; answers carry the version that computed them; no
   request fails across the swaps (a robot's failed request makes `robot sim` exit 2; a second client sends refined
   `/v1/act` requests all along).
2. SIGKILL: the server with an episode open and the learner in the middle of round 2; the store stays readable
   without the open episode, and `--resume` finishes round 2 on the same episodes, none counted twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from serving.process import ServerProcess
from tests.recipes._cli import REPO_ROOT, last_values, run_cli
from vla_parl.cli.robot import DEFAULTS

pytestmark = pytest.mark.slow

INSTRUCTION = "reach the red block"
FRAME = (DEFAULTS["image_size"], DEFAULTS["image_size"], 3)   # the camera frame `robot sim` sends by default
# parl_robot.yaml shrunk to seconds: the tiny model, a 16-unit critic, one-step action optimization
TINY = ["critic.hidden_dims=[16]", "critic.instruction_dim=4", "data.num_episodes=3", "data.max_episode_steps=5",
        "action_optimizer.num_samples=2", "action_optimizer.top_k=2", "action_optimizer.num_steps=1",
        "objective.num_samples=2", "objective.cql_n_actions=2", "parl.cache_states=6",
        "parl.distill_steps_per_refresh=1", "parl.critic_steps_per_refresh=1", "policy_optim.batch_size=2",
        "critic_optim.batch_size=4", "run.progress=false", "run.threads=1", "run.log_every=1"]


def _env() -> dict[str, str]:
    """A clean environment for a user's process: one thread, no API key or quiet flag inherited from this one."""
    env = {k: v for k, v in os.environ.items() if k not in ("VLA_PARL_API_KEY", "VLA_PARL_QUIET")}
    return {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "vla_parl.cli.main", *args]


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> tuple[Path, Path]:
    """The served checkpoint and critic: a parl_robot run without robot rounds (a robot-ready critic: no
    privileged state) → (final/model, final/critic)."""
    run = tmp_path_factory.mktemp("base") / "run"
    proc, _ = run_cli("run", "parl", "--config", "parl_robot", "--output-dir", str(run), "policy=random",
                      "critic.checkpoint=fresh", *TINY, "parl.offline_refreshes=1", "online.rounds=0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run / "final" / "model", run / "final" / "critic"


def _serve(policy: tuple[Path, Path], episodes: Path, published: Path, log: Path) -> ServerProcess:
    server = ServerProcess(["--checkpoint", str(policy[0]), "--critic", str(policy[1]), "--episodes", str(episodes),
                            "--policy-updates", str(published), "--policy-poll-s", "0.2", "--log-level", "warning"],
                           env={"VLA_PARL_API_KEY": None}, log_path=log)
    server.start()
    return server


def _learner(policy: tuple[Path, Path], run: Path, episodes: Path, published: Path, log: Path,
             *extra: str) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(_cli("run", "parl", "--config", "parl_robot", "--output-dir", str(run),
                                     f"policy={policy[0]}", f"critic.checkpoint={policy[1]}", *TINY,
                                     "parl.offline_refreshes=0", "online.env=robot", "online.rounds=2",
                                     "online.episodes_per_round=2", "online.critic_steps_per_round=1",
                                     f"online.robot.replay_dir={episodes}", f"online.robot.publish_dir={published}",
                                     "online.robot.poll_s=0.1", "online.robot.wait_timeout_s=300", *extra),
                                env=_env(), stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)


def _robots(url: str, seed: int) -> str:
    """Two episodes on two `vla-parl robot sim` processes; any failed request makes it exit 2."""
    proc = subprocess.run(_cli("robot", "sim", "--url", url, "--episodes", "2", "--processes", "2", "--max-steps",
                               "3", "--seed", str(seed)), env=_env(), capture_output=True, text=True, timeout=300,
                          cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def _metadata(url: str) -> dict:
    return requests.get(url + "/v1/metadata", timeout=10).json()


class _Traffic(threading.Thread):
    """Another client sending refined `/v1/act` requests (as robots collect), outside any episode, back to back:
    (HTTP status, policy_version) of each."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.answers, self.halt = url, [], threading.Event()
        image = np.random.default_rng(0).integers(0, 256, FRAME, dtype=np.uint8).tolist()
        self.request = {"image": image, "instruction": INSTRUCTION, "mode": "refined", "proprio": [0.0] * 7}

    def run(self) -> None:
        with requests.Session() as session:
            while not self.halt.is_set():
                try:
                    r = session.post(self.url + "/v1/act", json=self.request, timeout=60)
                    self.answers.append((r.status_code, r.json().get("policy_version")))
                except requests.RequestException as exc:
                    self.answers.append((repr(exc), None))
                time.sleep(0.05)


def _stored(episodes: Path) -> list[dict]:
    """Every stored episode (arrays and meta), in store order; opening read-only is what the learner does."""
    from vla_parl.data import ReplayBuffer

    with ReplayBuffer(episodes, readonly=True) as store:
        return [store.episode(e) for e in store.episode_ids]


def _manifest(published: Path, version: int) -> dict:
    from vla_parl.models.published import read_version

    return read_version(published / f"v{version}").manifest


def _learner_episode_ids(run: Path) -> list[str]:
    from vla_parl.data import ReplayBuffer

    with ReplayBuffer(run / "replay" / "online", readonly=True) as online:
        return [online.episode(e)["meta"]["info"]["server_episode_id"] for e in online.episode_ids]


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(30)


def test_two_rounds_store_served_actions_publish_and_swap_without_a_failed_request(policy, tmp_path):
    from vla_parl.models import OpenVLA
    from vla_parl_client import PolicyClient

    episodes, published, run = tmp_path / "episodes", tmp_path / "published", tmp_path / "learner"
    server = _serve(policy, episodes, published, tmp_path / "server.log")
    url = server.url
    learner = _learner(policy, run, episodes, published, tmp_path / "learner.log")
    traffic = _Traffic(url)
    traffic.start()
    try:
        seed, deadline = 0, time.monotonic() + 600
        while _metadata(url)["policy_version"] < 2:          # robots keep acting until v2 serves
            assert time.monotonic() < deadline, (tmp_path / "learner.log").read_text()[-3000:]
            if learner.poll() is None:
                _robots(url, seed)
                seed += 2
            else:
                assert learner.returncode == 0, (tmp_path / "learner.log").read_text()[-3000:]
                time.sleep(0.2)
        assert learner.wait(60) == 0, (tmp_path / "learner.log").read_text()[-3000:]
        with PolicyClient(url) as client:                   # one more episode by hand, on v2
            episode_id = client.start_episode(INSTRUCTION)
            image = np.random.default_rng(1).integers(0, 256, FRAME, dtype=np.uint8)
            answers = [client.act_info(image, INSTRUCTION, mode="refined", episode_id=episode_id,   # as robot sim:
                                       proprio=np.full(7, 0.1 * t), state=np.zeros(6)) for t in range(2)]  # 7 + 6
            assert client.end_episode(episode_id, success=True)["stored"] is True
            summary = client.episodes()
    finally:
        traffic.halt.set()
        traffic.join(60)
        _stop(learner)
        server.stop()

    # zero failed requests across the swaps; answers report v0, then v1, then v2, never going back
    assert traffic.answers and all(status == 200 for status, _ in traffic.answers), \
        [a for a in traffic.answers if a[0] != 200][:5]
    versions = [v for _, v in traffic.answers]
    assert versions == sorted(versions) and {0, 1, 2} <= set(versions)
    assert [(a["step"], a["policy_version"]) for a in answers] == [(0, 2), (1, 2)]

    # stored: the served actions (normalised with the served statistics) and sparse −1/0 rewards
    normalizer = OpenVLA.from_pretrained(policy[0]).action_normalizer("tabletop")
    stored = _stored(episodes)
    for episode in stored:
        info, steps = episode["meta"]["info"], len(episode["reward"])
        np.testing.assert_allclose(normalizer.unnormalize(episode["action"]), info["served_actions"], atol=1e-4)
        expected = -np.ones(steps)
        expected[-1] = 0.0 if info["success"] else -1.0
        np.testing.assert_array_equal(episode["reward"], expected)
        assert len(info["policy_versions"]) == steps and bool(episode["meta"]["terminal"]) == info["success"]
    mine = stored[-1]["meta"]["info"]
    assert (mine["server_episode_id"], mine["policy_versions"]) == (episode_id, [2, 2])
    np.testing.assert_allclose(mine["served_actions"], [a["action"] for a in answers], atol=1e-6)
    robot_ids = [e["meta"]["info"]["server_episode_id"] for e in stored[:-1]]
    assert summary["count"] == len(stored) and [e["episode_id"] for e in summary["episodes"]][-1] == episode_id
    assert summary["by_policy_version"]["2"]["episodes"] >= 1 and summary["by_policy_version"]["0"]["episodes"] >= 2

    # v1 and v2, each from two robot episodes it had not seen; the learner's metrics per round
    v1, v2 = _manifest(published, 1), _manifest(published, 2)
    assert (v1["version"], v2["version"]) == (1, 2)
    assert len(v1["episodes"]) == len(v2["episodes"]) == 2 and not set(v1["episodes"]) & set(v2["episodes"])
    assert set(v1["episodes"]) | set(v2["episodes"]) <= set(robot_ids)
    assert _learner_episode_ids(run) == v1["episodes"] + v2["episodes"]
    assert set(last_values(run / "metrics.jsonl", "online/collect_success")) == {1, 2}
    assert "policy/distill_loss" in v2["metrics"] and "critic/loss" in v2["metrics"]


def test_sigkilled_server_and_learner_lose_only_unfinished_work(policy, tmp_path):
    from vla_parl.data import ReplayBuffer
    from vla_parl_client import PolicyClient

    episodes, published, run = tmp_path / "episodes", tmp_path / "published", tmp_path / "learner"
    learner_log = tmp_path / "learner.log"
    server = _serve(policy, episodes, published, tmp_path / "server.log")
    url = server.url
    # round 2 trains long enough (hundreds of steps) to be killed in the middle of it
    learner = _learner(policy, run, episodes, published, learner_log, "online.distill_steps_per_round=400")
    try:
        _robots(url, seed=0)
        deadline = time.monotonic() + 300
        while not (published / "v1").exists():              # round 1 is short: its 400 steps on 6 states
            assert learner.poll() is None and time.monotonic() < deadline, learner_log.read_text()[-3000:]
            time.sleep(0.1)
        with PolicyClient(url) as client:                    # an episode the server never hears the end of
            unfinished = client.start_episode(INSTRUCTION)
            image = np.zeros(FRAME, np.uint8)
            for _ in range(2):
                client.act_info(image, INSTRUCTION, episode_id=unfinished, proprio=np.zeros(7), state=np.zeros(6))
        _robots(url, seed=2)
        while True:                                          # round 2 took its episodes and is training
            assert learner.poll() is None and time.monotonic() < deadline, learner_log.read_text()[-3000:]
            try:
                if len(_learner_episode_ids(run)) == 4:
                    break
            except Exception:                                # noqa: BLE001 — not created / being written yet
                pass
            time.sleep(0.05)
        learner.send_signal(signal.SIGKILL)
        server.kill()                                        # SIGKILL, with the episode open
        learner.wait(30)
    finally:
        _stop(learner)
        server.stop()
    assert not (published / "v2").exists(), "the learner finished round 2 before it was killed: make it longer"

    stored = _stored(episodes)                               # every finished episode whole, the open one absent
    ids = [e["meta"]["info"]["server_episode_id"] for e in stored]
    assert len(ids) == 4 and unfinished not in ids
    with ReplayBuffer(episodes, readonly=True) as store:
        assert store.sample(8)["action"].shape == (8, 7)
    v1 = _manifest(published, 1)
    assert v1["episodes"] == ids[:2]

    proc, _ = run_cli("run", "parl", "--output-dir", str(run), "--resume", "online.distill_steps_per_round=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _manifest(published, 2)["episodes"] == ids[2:]     # round 2 again, on the same two episodes
    assert _learner_episode_ids(run) == ids                  # each copied into the learner's replay once
    assert set(last_values(run / "metrics.jsonl", "online/collect_success")) == {1, 2}
