"""`online.env=robot` through the real CLI: a learner that waits for episodes robots finish through the policy
server, trains on them and publishes v1, v2, ... — with a "robot" appending episodes to the server's replay store
(the real `ReplayBuffer` writer the server uses) while the learner waits."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.recipes._cli import REPO_ROOT, last_values, run_cli

ROBOT = ["policy=random", "critic.checkpoint=fresh", "critic.privileged_state=false",
         "data.num_episodes=3", "data.max_episode_steps=5", "critic.hidden_dims=[16]", "critic.instruction_dim=4",
         "action_optimizer.num_samples=2", "parl.cache_states=6", "parl.offline_refreshes=1",
         "parl.distill_steps_per_refresh=1", "parl.critic_steps_per_refresh=1", "online.env=robot", "online.rounds=2",
         "online.episodes_per_round=2", "online.distill_steps_per_round=1", "online.critic_steps_per_round=1",
         "objective.num_samples=2", "objective.cql_n_actions=2", "action_optimizer.top_k=2",
         "action_optimizer.num_steps=1", "policy_optim.batch_size=2", "critic_optim.batch_size=4", "run.log_every=1",
         "run.progress=false", "run.threads=1", "online.robot.poll_s=0.1"]


def _store_episode(store, server_id: str, *, success: bool, version: int, steps: int = 4) -> None:
    """One finished episode as the policy server stores it: 56×56 images and 7-D proprio (the tabletop's sizes),
    normalised actions, −1 per step and 0 on the last step of a success, the server's ids in the info."""
    from vla_parl.data import mc_returns

    rng = np.random.default_rng(abs(hash(server_id)) % 2**32)
    reward = -np.ones(steps, np.float32)
    if success:
        reward[-1] = 0.0
    store.add_episode({"image": rng.integers(0, 256, (steps + 1, 56, 56, 3), dtype=np.uint8),
                       "proprio": rng.normal(size=(steps + 1, 7)).astype(np.float32)},
                      np.clip(rng.normal(scale=0.5, size=(steps, 7)), -1, 1).astype(np.float32), reward,
                      terminal=success, instruction="reach the red block",
                      mc_return=mc_returns(reward, 0.95, tail="failure"),      # a robot episode
                      info={"server_episode_id": server_id, "policy_versions": [version] * steps, "success": success,
                            "source": "act"})


def _learner(run: Path, store: Path, *extra: str, stderr=subprocess.PIPE) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen([sys.executable, "-m", "vla_parl.cli.main", "run", "parl", "--output-dir", str(run),
                             *ROBOT, f"online.robot.replay_dir={store}", *extra],
                            stdout=subprocess.DEVNULL, stderr=stderr, text=True, env=env, cwd=REPO_ROOT)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the learner exited ({proc.returncode}) before {path} appeared"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def _manifest(published: Path, version: int) -> dict:
    from vla_parl.training.publish import read_version

    return read_version(published / f"v{version}").manifest


def _online_server_ids(run: Path) -> list[str]:
    from vla_parl.data import ReplayBuffer

    with ReplayBuffer(run / "replay" / "online", readonly=True) as online:
        return [online.episode(e)["meta"]["info"]["server_episode_id"] for e in online.episode_ids]


def test_two_robot_rounds_publish_v1_and_v2_each_from_new_episodes(tmp_path):
    from vla_parl.data import ReplayBuffer
    from vla_parl.models.openvla.modeling import OpenVLA

    run, store_dir = tmp_path / "run", tmp_path / "episodes"
    store = ReplayBuffer(store_dir)                      # the server's writer
    for i, success in enumerate((True, False, True)):  # round 1 takes the oldest two; a2 waits for round 2
        _store_episode(store, f"a{i}", success=success, version=0)
    proc = _learner(run, store_dir)

    def robot() -> None:                                 # acts with v1 once it is published
        _wait_for(run / "published" / "v1", proc)
        _store_episode(store, "b0", success=True, version=1)

    thread = threading.Thread(target=robot, daemon=True)
    thread.start()
    _, stderr = proc.communicate(timeout=600)
    thread.join(timeout=5)
    store.close()
    assert proc.returncode == 0, stderr[-3000:]
    assert "waiting for 2 new finished robot episodes in " + str(store_dir) in stderr

    published = run / "published"
    assert sorted(p.name for p in published.iterdir()) == ["v1", "v2"]      # no temporary folder left
    v1, v2 = _manifest(published, 1), _manifest(published, 2)
    assert (v1["version"], v1["kind"], v1["episodes"]) == (1, "model", ["a0", "a1"])
    assert (v2["version"], v2["kind"], v2["episodes"]) == (2, "model", ["a2", "b0"])
    assert v1["base"] == "random" and v1["metrics"]["online/collect_success"] == 0.5
    assert v2["metrics"]["online/collect_success/v0"] == 1.0 and v2["metrics"]["online/collect_episodes/v1"] == 1.0
    assert "policy/distill_loss" in v2["metrics"] and "critic/loss" in v2["metrics"]
    model = OpenVLA.from_pretrained(published / "v2" / "model")             # what the server loads
    assert model.action_normalizer("tabletop") is not None
    collected = last_values(run / "metrics.jsonl", "online/collect_success")
    assert collected == {1: 0.5, 2: 1.0}
    assert _online_server_ids(run) == ["a0", "a1", "a2", "b0"]               # each episode trained on once
    assert (run / "final" / "model" / "config.json").is_file()


@pytest.mark.slow
def test_learner_killed_while_waiting_resumes_without_recounting_or_republishing(tmp_path):
    from vla_parl.data import ReplayBuffer

    run, store_dir = tmp_path / "run", tmp_path / "episodes"
    store = ReplayBuffer(store_dir)
    for i in range(2):
        _store_episode(store, f"a{i}", success=bool(i), version=0)
    log = tmp_path / "learner.log"
    with open(log, "w") as stderr:
        proc = _learner(run, store_dir, stderr=stderr)
        _wait_for(run / "published" / "v1", proc)
        _store_episode(store, "b0", success=True, version=1)    # seen while waiting, not yet trained on
        deadline = time.monotonic() + 120
        while "waiting for 2 new finished robot episodes" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)                         # killed mid-round 2
        proc.wait(timeout=60)
    v1 = run / "published" / "v1" / "manifest.json"
    v1_before = (v1.read_bytes(), v1.stat().st_ino)
    _store_episode(store, "b1", success=False, version=1)
    proc, _ = run_cli("run", "parl", "--output-dir", str(run), "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (v1.read_bytes(), v1.stat().st_ino) == v1_before                 # v1 neither rewritten nor replaced
    assert _manifest(run / "published", 2)["episodes"] == ["b0", "b1"]
    assert _online_server_ids(run) == ["a0", "a1", "b0", "b1"]
    assert last_values(run / "metrics.jsonl", "online/collect_success") == {1: 0.5, 2: 0.5}

    # killed between round 2's checkpoint and its publishing: --resume publishes v2 from the checkpoint
    manifest_v2 = _manifest(run / "published", 2)
    import shutil

    shutil.rmtree(run / "published" / "v2")
    proc, _ = run_cli("run", "parl", "--output-dir", str(run), "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = _manifest(run / "published", 2)
    assert again["episodes"] == manifest_v2["episodes"] and again["metrics"] == manifest_v2["metrics"]
    store.close()


@pytest.mark.slow
def test_robot_rounds_under_two_processes_publish_lora_adapters(tmp_path):
    """torchrun + Accelerate on CPU (gloo): every rank polls the store and takes the same episodes; rank 0 alone
    publishes each version (kind adapter: the LoRA adapter only)."""
    from vla_parl.data import ReplayBuffer

    with ReplayBuffer(tmp_path / "episodes") as store:
        for i in range(4):
            _store_episode(store, f"e{i}", success=bool(i % 2), version=0)
    run = tmp_path / "run"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    from serving.process import free_port

    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                           "127.0.0.1", "--master_port", str(free_port()), "-m", "vla_parl.recipes.parl",
                           "--config", "parl_tabletop", "--output-dir", str(run), *ROBOT,
                           f"online.robot.replay_dir={tmp_path / 'episodes'}", "lora.enabled=true", "lora.r=4"],
                          capture_output=True, text=True, timeout=600, env=env, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for version, episodes in ((1, ["e0", "e1"]), (2, ["e2", "e3"])):
        manifest = _manifest(run / "published", version)
        assert (manifest["kind"], manifest["episodes"]) == ("adapter", episodes)
        assert sorted(p.name for p in (run / "published" / f"v{version}").iterdir()) == ["adapter", "manifest.json"]
    for rank in (0, 1):
        with ReplayBuffer(run / "replay" / f"online_rank{rank}", readonly=True) as online:
            ids = [online.episode(e)["meta"]["info"]["server_episode_id"] for e in online.episode_ids]
        assert ids == ["e0", "e1", "e2", "e3"]


def test_no_robot_episodes_within_the_timeout_is_a_clear_error_and_keeps_the_checkpoint(tmp_path):
    run, store_dir = tmp_path / "run", tmp_path / "episodes"
    proc, _ = run_cli("run", "parl", "--output-dir", str(run), *ROBOT, f"online.robot.replay_dir={store_dir}",
                      "online.robot.wait_timeout_s=0.5")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"waited 0.5 s for 2 new finished robot episodes in {store_dir} and got 0" in proc.stderr
    assert "online.robot.wait_timeout_s" in proc.stderr and "--resume" in proc.stderr
    assert "vla-parl serve --checkpoint random --episodes" in proc.stderr            # what to run
    assert (run / "checkpoints" / "latest").read_text().strip()                       # the offline refresh's
    assert not (run / "published").exists()


def test_a_publish_folder_of_another_run_is_refused(tmp_path):
    published = tmp_path / "published" / "v1"
    (published / "model").mkdir(parents=True)
    (published / "manifest.json").write_text(json.dumps({"version": 1, "kind": "model"}))
    proc, _ = run_cli("run", "parl", "--output-dir", str(tmp_path / "run"), *ROBOT,
                      f"online.robot.replay_dir={tmp_path / 'episodes'}",
                      f"online.robot.publish_dir={tmp_path / 'published'}", "parl.offline_refreshes=0")
    assert proc.returncode == 2
    assert f"{tmp_path / 'published'} already holds v1, but this run has done 0 robot rounds" in proc.stderr
    assert "online.robot.publish_dir" in proc.stderr


def test_a_critic_that_reads_state_needs_robot_episodes_that_carry_it(tmp_path):
    from vla_parl.critic import critic_state
    from vla_parl.data import ReplayBuffer

    critic_state(6, 7, hidden_dims=(8,)).save(tmp_path / "critic")       # trained with the tabletop's state
    with ReplayBuffer(tmp_path / "episodes") as store:                    # episodes of a robot that sends none
        for name in ("a0", "a1"):
            _store_episode(store, name, success=True, version=0)
    args = [a for a in ROBOT if not a.startswith("critic.checkpoint=")]
    proc, _ = run_cli("run", "parl", "--output-dir", str(tmp_path / "run"), *args,
                      f"critic.checkpoint={tmp_path / 'critic'}", f"online.robot.replay_dir={tmp_path / 'episodes'}")
    assert proc.returncode == 2
    assert "robot episode a0 has no 'state', which the offline data (and the critic) read: send it with every " \
           "action request (PolicyClient.act(..., state=...))" in proc.stderr


@pytest.mark.parametrize("override, expected", [
    ("online.robot.replay_dir=null", "online.env=robot needs online.robot.replay_dir"),
    ("online.robot.publish=adapter", "set online.robot.publish=model"),
    ("online.robot.wait_timeout_s=0", "online.robot.wait_timeout_s=0.0 is out of range"),
    ("online.robot.publsh=model", "did you mean 'online.robot.publish'"),
])
def test_robot_config_errors_name_the_key_and_the_fix(override, expected):
    from vla_parl.cli.run import load_recipe_config
    from vla_parl.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_recipe_config("parl", "parl_robot", [override])
