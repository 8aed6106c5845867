"""The recipes under the Accelerate FSDP2 config on 2 CPU processes match one process on the same global batch.

`accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 2 -m vla_parl.recipes.<name>` on
CPU (gloo): the recipes shard the policy with FSDP2 (`vla_parl.training.parallel`). Each rank trains on its
half of a global batch of 4; the single-process reference (`vla-parl run`) on all 4.

* SFT, LoRA: 2 steps at 2 processes, stopped; the sharded checkpoint of step 2 resumes at 2 and at 1
  processes for step 3; the export (adapters gathered to rank 0, merged once there) equals the reference's.
* PA-RL offline, full fine-tuning: 2 refreshes of 1 critic + 2 distillation steps (candidates sampled by
  each rank for its share of the pool, per-state seeds; the reference uses `parl.per_state_seeds=true`);
  the export (gathered whole to rank 0) equals the reference's. Then `--resume` with one online round at
  2 processes: collection with gathered weights, the per-rank replay all-gathered into one pool.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from serving.process import free_port
from tests.recipes._cli import REPO_ROOT, last_values, run_cli

RTOL = 1e-4
TINY = ["data.num_episodes=2", "data.max_episode_steps=6", "run.progress=false", "run.threads=1", "run.log_every=1"]
SFT = [*TINY, "lora.enabled=true", "lora.r=4", "lora.alpha=8", "optim.steps=3", "run.checkpoint_every=2"]
PARL = [*TINY, "policy=random", "critic.checkpoint=fresh",
        "critic.hidden_dims=[16]", "critic.instruction_dim=4", "parl.num_samples=4", "parl.cache_states=8",
        "parl.offline_refreshes=2", "parl.distill_steps_per_refresh=2", "parl.critic_steps_per_refresh=1",
        "online.rounds=0", "objective.num_samples=4", "objective.cql_n_actions=2", "action_optimizer.top_k=2",
        "action_optimizer.num_steps=2", "critic_optim.batch_size=4"]



def _launch_fsdp(recipe: str, out: Path, *args: str) -> None:
    """`accelerate launch` of the FSDP2 config with 2 processes (on CPU: gloo)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(REPO_ROOT / "configs" / "accelerate" / "fsdp.yaml"), "--num_processes", "2",
           "--main_process_port", str(free_port()), "-m", f"vla_parl.recipes.{recipe}", "--output-dir", str(out),
           *args]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]


def _run_single(recipe: str, out: Path, *args: str) -> None:
    proc, _ = run_cli("run", recipe, "--output-dir", str(out), *args, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]


def _assert_match(got: dict[int, float], want: dict[int, float], steps: list[int]) -> None:
    assert sorted(got) == steps
    for step in steps:
        assert got[step] == pytest.approx(want[step], rel=RTOL), step


def _assert_same_model(a: Path, b: Path) -> None:
    from vla_parl.models import OpenVLA

    sa, sb = OpenVLA.from_pretrained(a).state_dict(), OpenVLA.from_pretrained(b).state_dict()
    assert sa.keys() == sb.keys()
    worst = max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)
    assert worst < 1e-5, worst


@pytest.mark.slow
def test_sft_fsdp2_matches_one_process_resumes_at_1_and_2_and_exports_lora(tmp_path):
    ref, two, one = tmp_path / "ref", tmp_path / "fsdp", tmp_path / "fsdp_resumed_at_1"
    _run_single("sft", ref, *SFT, "optim.batch_size=4")
    _launch_fsdp("sft", two, *SFT, "optim.batch_size=2", "run.stop_after=2")
    step2 = two / "checkpoints" / "step_00000002"
    assert (two / "checkpoints" / "latest").read_text().strip() == step2.name and not (two / "final").exists()
    assert sorted(p.name for p in (step2 / "policy").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert json.loads((step2 / "trainer_state.json").read_text())["global_batch"] == 4
    shutil.copytree(two, one)

    _launch_fsdp("sft", two, "--resume", "run.stop_after=null")
    _run_single("sft", one, "--resume", "run.stop_after=null", "optim.batch_size=4")   # same global batch

    want = last_values(ref / "metrics.jsonl", "sft/loss")
    assert len({round(v, 4) for v in want.values()}) == 3          # training moved the loss
    for run in (two, one):
        _assert_match(last_values(run / "metrics.jsonl", "sft/loss"), want, [1, 2, 3])
    for run in (two, one):
        _assert_same_model(run / "final" / "model", ref / "final" / "model")
    # the adapter gathered to rank 0 is the trained one: base + adapter gives the merged model's weights
    from vla_parl.models import OpenVLA, openvla_tiny
    from vla_parl.models.openvla.lora import load_lora_adapter, merge_lora

    merged = merge_lora(load_lora_adapter(openvla_tiny(image_size=56), two / "final" / "adapter"))
    exported = OpenVLA.from_pretrained(two / "final" / "model").state_dict()
    for name, value in merged.state_dict().items():
        torch.testing.assert_close(value, exported[name], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_parl_fsdp2_matches_one_process_then_resumes_online(tmp_path):
    ref, two = tmp_path / "ref", tmp_path / "fsdp"
    _run_single("parl", ref, *PARL, "policy_optim.batch_size=4", "parl.per_state_seeds=true")
    _launch_fsdp("parl", two, *PARL, "policy_optim.batch_size=2")
    for key in ("policy/loss", "critic/loss"):
        want = last_values(ref / "metrics.jsonl", key)
        _assert_match(last_values(two / "metrics.jsonl", key), want, sorted(want))
    assert sorted(last_values(ref / "metrics.jsonl", "policy/loss")) == [1, 2, 3, 4]
    _assert_same_model(two / "final" / "model", ref / "final" / "model")
    assert (two / "final" / "critic").is_dir()

    _launch_fsdp("parl", two, "--resume", "online.rounds=1", "online.episodes_per_round=2",
                 "online.distill_steps_per_round=1", "online.critic_steps_per_round=1")
    steps = last_values(two / "metrics.jsonl", "policy/loss")
    assert sorted(steps) == [1, 2, 3, 4, 5]
    assert sorted(p.name for p in (two / "replay").iterdir()) == ["online_rank0", "online_rank1"]
    assert (two / "checkpoints" / "latest").read_text().strip() == "step_00002001"
