"""The recipes under 2 processes (torchrun + Accelerate on CPU, gloo): sft → critic → parl, for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from serving.process import free_port



TINY = ["data.num_episodes=4", "data.max_episode_steps=6", "run.progress=false"]


def _launch(recipe: str, config: str, out: Path, *overrides: str) -> None:
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                "--master_port", str(free_port())]
    cmd = [*torchrun, "-m", f"vla_parl.recipes.{recipe}", "--config", config, "--output-dir", str(out), *TINY,
           *overrides]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-4000:]


def _steps(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_sft_critic_parl_under_ddp(tmp_path):
    _launch("sft", "sft_tabletop", tmp_path / "sft", "optim.steps=4", "optim.batch_size=4", "run.log_every=1")
    steps = _steps(tmp_path / "sft")
    assert steps == sorted(set(steps)), "only the main rank logs: no duplicated steps"
    assert (tmp_path / "sft" / "final" / "model" / "config.json").is_file()
    _launch("critic", "critic_tabletop", tmp_path / "critic", f"policy={tmp_path / 'sft' / 'final' / 'model'}",
            "optim.steps=3", "optim.batch_size=8")
    _launch("parl", "parl_tabletop", tmp_path / "parl", f"policy={tmp_path / 'sft' / 'final' / 'model'}",
            f"critic.checkpoint={tmp_path / 'critic' / 'final' / 'critic'}", "parl.offline_refreshes=1",
            "parl.distill_steps_per_refresh=2", "parl.cache_states=8", "online.rounds=1",
            "online.episodes_per_round=2", "online.distill_steps_per_round=2", "online.critic_steps_per_round=2",
            "policy_optim.batch_size=4", "critic_optim.batch_size=8")
    assert sorted(p.name for p in (tmp_path / "parl" / "replay").iterdir()) == ["online_rank0", "online_rank1"]
    assert (tmp_path / "parl" / "final").is_dir()
