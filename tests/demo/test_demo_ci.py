"""`vla-parl run demo --config demo_ci` end to end through the real CLI: every phase runs and the run dir is complete."""

from __future__ import annotations

import json

import pytest

from tests.recipes._cli import run_cli


@pytest.mark.slow
def test_demo_ci_writes_a_complete_run_dir(tmp_path):
    out = tmp_path / "demo"
    proc, _ = run_cli("run", "demo", "--config", "demo_ci", "--output-dir", str(out), "eval.episodes=3")
    assert proc.returncode == 0, proc.stderr[-4000:]
    for name in ("report.md", "summary.json", "metrics.jsonl", "config.yaml", "curves_training.png",
                 "curves_success.png", "rollouts_before_after.gif"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["seeds"]["0"]["phases"]
    # both policy classes (the diffusion one in a process of its own), every phase alone and with the operator
    assert set(rows) == {f"{kind}/{row}" for kind in ("openvla", "diffusion") for row in (
        "sft/policy", "vgps/operator", *(f"{phase}/{acting}" for phase in ("offline", "online", "no_local_steps")
                                         for acting in ("policy", "operator")))}
    assert set(summary["mean"]) == set(rows) and "total_wall_time_s" in summary
    assert {"diffusion/sft", "diffusion/parl_total"} <= set(summary["seeds"]["0"]["wall_time_s"])
    assert (out / "seed_0" / "diffusion" / "parl" / "final" / "model" / "config.json").is_file()
    # each class's no-local-steps ablation ran in a process of its own, beside its PA-RL run, on a copy of the
    # critic phase's demo buffer instead of generating the demos again
    assert "parl_no_local_steps: reuses the demo buffer of" in proc.stdout
    for root in (out / "seed_0", out / "seed_0" / "diffusion"):
        assert (root / "no_local_steps" / "demo_state.json").is_file() and (root / "parl_no_local_steps").is_dir()
    for row in rows.values():
        assert row["episodes"] == 3 and 0 <= row["interval95"][0] <= row["success_rate"] <= row["interval95"][1] <= 1
    assert {"sft", "critic", "parl_total"} <= set(summary["seeds"]["0"]["wall_time_s"])
    report = (out / "report.md").read_text()
    assert "| tiny OpenVLA: online PA-RL, policy + operator |" in report and "Wilson" in report
    assert "Policy: tiny OpenVLA (SigLIP tower alone, tiny widths, 56 px;" in report
    # the final checkpoint is servable: a merged OpenVLA and the critic
    from vla_parl.critic import QCritic
    from vla_parl.models import OpenVLA

    model = OpenVLA.from_pretrained(out / "final" / "model")
    assert "tabletop" in model.norm_stats
    assert model.config.timm_model_ids == ["vit_so400m_patch14_siglip_224"]   # demo_ci's model.vision=siglip
    tokenizer = model.processor.tokenizer
    QCritic.load(out / "final" / "critic", tokenize=lambda texts: tokenizer.encode_batch(texts))
    action = model.predict_action(__import__("numpy").zeros((56, 56, 3), "uint8"), "reach the red block")
    assert action.shape == (7,)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("sft/loss" in r for r in records) and any("critic/loss" in r for r in records)
    assert any("policy/distill_loss" in r for r in records)
    assert any(r.get("run") == "diffusion/parl" and "policy/diffusion_loss" in r for r in records)   # the worker's
    assert any(r.get("run") == "diffusion/parl_no_local_steps" and "policy/diffusion_loss" in r for r in records)
    # a finished seed keeps its phases' outputs and online replay, not their rebuilt copies of the demos
    assert not list((out / "seed_0").glob("*/data")) and (out / "seed_0" / "parl" / "replay").is_dir()
    assert (out / "seed_0" / "sft" / "final" / "model").is_dir()
    # `eval tabletop` on the run's checkpoint and critic takes the run's settings and reproduces its online rows
    proc, _ = run_cli("eval", "tabletop", "--checkpoint", str(out / "final" / "model"), "--critic",
                      str(out / "final" / "critic"), "--output-dir", str(tmp_path / "eval"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    evaluated = json.loads((tmp_path / "eval" / "tabletop_results.json").read_text())["rows"]
    for acting in ("policy", "operator"):
        assert evaluated[acting] == rows[f"openvla/online/{acting}"], acting


@pytest.mark.slow
def test_demo_ci_runs_the_ablation_in_process_without_parallel_policies(tmp_path):
    """parallel_policies=false: every phase, the no-local-steps ablation included, runs in the one process."""
    out = tmp_path / "demo"
    proc, _ = run_cli("run", "demo", "--config", "demo_ci", "--output-dir", str(out), "policies=[openvla]",
                      "parallel_policies=false", "eval.episodes=2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "runs in process" not in proc.stdout
    rows = json.loads((out / "summary.json").read_text())["seeds"]["0"]["phases"]
    assert {"openvla/no_local_steps/policy", "openvla/no_local_steps/operator", "openvla/online/operator"} <= set(rows)
    assert not (out / "seed_0" / "no_local_steps").exists() and (out / "seed_0" / "parl_no_local_steps").is_dir()


@pytest.mark.slow
def test_demo_ci_runs_the_openvla_in_a_worker_when_it_is_not_the_first_class(tmp_path):
    """policies=[diffusion, openvla]: the OpenVLA's phases run in the spawned worker, which keeps its state in the
    OpenVLA's phase root seed_<s>/ where the main process reads it back."""
    out = tmp_path / "demo"
    proc, _ = run_cli("run", "demo", "--config", "demo_ci", "--output-dir", str(out), "policies=[diffusion,openvla]",
                      "ablations=[vgps]", "diffusion.ablations=[vgps]", "eval.episodes=2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "openvla: runs in process" in proc.stdout
    assert (out / "seed_0" / "demo_state.json").is_file() and not (out / "seed_0" / "openvla").exists()
    rows = json.loads((out / "summary.json").read_text())["seeds"]["0"]["phases"]
    assert {f"{kind}/online/{acting}" for kind in ("openvla", "diffusion") for acting in ("policy", "operator")} <= set(rows)
    assert (out / "final" / "model" / "config.json").is_file()
