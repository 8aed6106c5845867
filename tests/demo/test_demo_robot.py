"""`vla-parl run demo ... online.env=robot`: the online phase runs through a real `vla-parl serve` process and
simulated robot processes; the learner's rounds are published and served, each round's episodes come from the
newest version, and the demo's outputs are the same as with in-process collection."""

from __future__ import annotations

import json

import pytest

from tests.recipes._cli import run_cli


@pytest.mark.slow
def test_the_demo_online_phase_through_server_learner_and_simulated_robots(tmp_path):
    from vla_parl.data import ReplayBuffer
    from vla_parl.training.publish import list_versions

    out = tmp_path / "demo"
    proc, _ = run_cli("run", "demo", "--config", "demo_ci", "--output-dir", str(out), "online.env=robot",
                      "online.rounds=2", "ablations=[]", "eval.episodes=2", "policies=[openvla]")
    assert proc.returncode == 0, proc.stderr[-4000:]
    robot = out / "seed_0" / "robot"
    assert "online through the robot loop" in proc.stdout
    assert [v.version for v in list_versions(robot / "published")] == [1, 2]
    with ReplayBuffer(robot / "episodes", readonly=True) as store:
        metas = [store.episode_meta(e) for e in store.episode_ids]
        assert set(store.schema["obs"]) == {"image", "proprio", "state"}    # what the demo's critic reads
    # 2 rounds × 2 episodes, paced: round k's episodes were served by version k (v0: the offline policy)
    assert sorted(m["info"]["policy_versions"][0] for m in metas) == [0, 0, 1, 1]
    assert all(m["info"]["source"] == "act" for m in metas)
    assert "policy version 1" in (robot / "robots.log").read_text()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    collected = [r for r in records if r.get("phase") == "collect"]
    assert [r["online/collect_episodes/v0" if r["round"] == 0 else "online/collect_episodes/v1"]
            for r in collected] == [2.0, 2.0]
    rows = json.loads((out / "summary.json").read_text())["seeds"]["0"]["phases"]
    assert set(rows) == {f"openvla/{phase}/{acting}" for phase in ("offline", "online") for acting in
                         ("policy", "operator")} | {"openvla/sft/policy"}
    assert (out / "final" / "model").is_dir()
