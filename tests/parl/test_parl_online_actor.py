"""`online.collect_with=operator` (the default): PA-RL's online episodes act with the improvement operator (real
CLI, demo_ci)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.recipes._cli import run_cli


@pytest.mark.slow
def test_online_episodes_act_with_the_operator(tmp_path):
    from vla_parl.data import ReplayBuffer
    from vla_parl.models import OpenVLA

    out = tmp_path / "demo"
    proc, _ = run_cli("run", "demo", "--config", "demo_ci", "--output-dir", str(out), "eval.episodes=1",
                      "ablations=[]", "run.threads=1", "online.collect_with=operator", "online.episodes_per_round=3",
                      "policies=[openvla]")
    assert proc.returncode == 0, proc.stderr[-4000:]
    replay = ReplayBuffer(out / "seed_0" / "parl" / "replay" / "online", readonly=True)
    actions = np.concatenate([np.asarray(replay.episode(e)["action"]) for e in replay.episode_ids])
    replay.close()
    assert len(actions) > 0
    # a policy sample is a decoded action token: a bin centre in every dim. The operator's local step
    # (demo_ci: one step of 0.05) moves the arm dims off the bins and leaves the gripper as sampled.
    tokenizer = OpenVLA.from_pretrained(out / "final" / "model").action_tokenizer
    on_bins = np.isclose(tokenizer.decode(tokenizer.encode(actions)), actions, atol=1e-6)
    assert on_bins[:, -1].all()
    assert not on_bins[:, :-1].all()
