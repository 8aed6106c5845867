"""`vla-parl eval tabletop`: greedy and critic-re-ranked success on seeded simulator episodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_eval_tabletop_greedy_and_refined(tmp_path):
    """The run's settings (its config.yaml beside final/model) by default; with --critic both rows."""
    from vla_parl.critic import QCritic
    from vla_parl.critic.critic import CriticConfig
    from vla_parl.models import openvla_tiny

    run = tmp_path / "run"
    openvla_tiny(image_size=56).save_pretrained(run / "final" / "model")
    (run / "config.yaml").write_text("recipe: demo\ndata: {kind: tabletop, task: reach, targets: [red], "
                                     "env_image_size: 56, max_episode_steps: 4}\neval: {episodes: 3, seed: 7}\n")
    QCritic(CriticConfig(action_dim=7, hidden_dims=(16,), image_size=32, image_feature_dim=8, vocab_size=64,
                         instruction_dim=4, proprio_dim=7)).save(tmp_path / "critic")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "vla_parl.cli.main", "eval", "tabletop", "--checkpoint", str(run / "final" / "model")]
    greedy = subprocess.run([*base, "--gif", "1", "--output-dir", str(tmp_path / "greedy")], capture_output=True,
                            text=True, timeout=300, env=env)
    assert greedy.returncode == 0, greedy.stderr[-2000:]
    summary = json.loads((tmp_path / "greedy" / "tabletop_results.json").read_text())
    assert summary["episodes"] == 3 and summary["mode"] == "greedy" and 0 <= summary["success_rate"] <= 1
    assert summary["settings"]["targets"] == ["red"] and summary["settings"]["max_episode_steps"] == 4
    assert summary["settings"]["seed"] == 7 and summary["settings"]["from"] == str((run / "config.yaml").resolve())
    assert set(summary["rows"]) == {"policy"}
    assert (tmp_path / "greedy" / "rollout_policy_0.gif").stat().st_size > 0
    refined = subprocess.run([*base, "--critic", str(tmp_path / "critic"), "--num-samples", "4", "--top-k", "2",
                              "--local-steps", "1", "--episodes", "2", "--output-dir", str(tmp_path / "refined")],
                             capture_output=True, text=True, timeout=300, env=env)
    assert refined.returncode == 0, refined.stderr[-2000:]
    summary = json.loads((tmp_path / "refined" / "tabletop_results.json").read_text())
    assert summary["mode"] == "refined" and summary["episodes"] == 2          # a flag beats the run's setting
    assert set(summary["rows"]) == {"policy", "operator"} and summary["rows"]["operator"]["episodes"] == 2
    # the flags override; this critic was saved without operator settings, so the rest are the demo's
    used = summary["improvement"]
    assert (used["num_samples"], used["top_k"], used["num_steps"], used["step_size"]) == (4, 2, 1, 0.05)
    assert "policy alone" in refined.stdout and "policy + operator" in refined.stdout and "95% CI" in refined.stdout
