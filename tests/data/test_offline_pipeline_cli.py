"""SFT → critic → PA-RL (offline) through the real CLI on each on-disk format: RLDS, LeRobot v2.1, LeRobot v3.0.

SFT streams the steps; the critic builds the dataset's transition store once and PA-RL reuses it (nothing is
copied into the run directories).
"""

from __future__ import annotations

import json

import pytest

from tests.recipes._cli import run_cli

TINY = ["model.name=tiny", "model.image_size=56", "run.progress=false",
        "data.shuffle_buffer=8"]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["rlds", "lerobot_v2.1", "lerobot_v3.0"])
def test_sft_critic_parl_offline_on_each_format(fmt, rlds_dir, lerobot_dirs, tmp_path):
    if fmt == "rlds":
        data = ["data.kind=rlds", f"data.path={rlds_dir}", "data.dataset_name=bridge_orig",
                "model.unnorm_key=bridge_orig"]
    else:
        data = ["data.kind=lerobot", f"data.path={lerobot_dirs[fmt.split('_')[1]]}", "model.unnorm_key=tiny"]
    data += [f"data.store_dir={tmp_path / 'stores'}", *TINY]
    sft, critic, parl = tmp_path / "sft", tmp_path / "critic", tmp_path / "parl"
    proc, _ = run_cli("run", "sft", "--output-dir", str(sft), *data, "optim.steps=2", "optim.batch_size=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (sft / "final" / "model").is_dir() and not (sft / "data" / "offline").exists()   # streamed
    stats = json.loads((sft / "data" / "statistics.json").read_text())
    assert len(stats) == 1 and stats[next(iter(stats))]["num_trajectories"] >= 3
    proc, _ = run_cli("run", "critic", "--output-dir", str(critic), f"policy={sft / 'final' / 'model'}", *data,
                      "critic.privileged_state=false", "optim.steps=2", "optim.batch_size=8",
                      "candidate_cache_states=8", "objective.num_samples=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    stores = [p for p in (tmp_path / "stores").iterdir() if p.is_dir()]
    assert len(stores) == 1 and (stores[0] / "complete").is_file()
    built = (stores[0] / "complete").stat().st_mtime_ns
    proc, _ = run_cli("run", "parl", "--output-dir", str(parl), f"policy={sft / 'final' / 'model'}",
                      f"critic.checkpoint={critic / 'final' / 'critic'}", *data, "critic.privileged_state=false",
                      "online.rounds=0",
                      "parl.offline_refreshes=1", "parl.distill_steps_per_refresh=2", "parl.cache_states=8",
                      "parl.num_samples=2", "parl.critic_steps_per_refresh=1", "objective.num_samples=2",
                      "critic_optim.batch_size=8", "policy_optim.batch_size=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (parl / "final" / "model").is_dir() and (parl / "final" / "critic").is_dir()
    assert (stores[0] / "complete").stat().st_mtime_ns == built and not (parl / "data" / "offline").exists()
