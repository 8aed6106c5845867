"""`vla-parl bench memory|rollout|all` through the real CLI, with JSON output."""

from __future__ import annotations

import json

import pytest

from vla_parl.bench import BENCHMARKS, suite
from vla_parl.cli.main import main


def test_new_benchmarks_are_registered():
    assert {"memory", "rollout", "train_step", "parl_step", "all"} <= set(BENCHMARKS)


def test_bench_memory_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "memory.json"
    assert main(["bench", "memory", "--micro-batch", "8", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["micro_batch"] == 8 and len(result["rows"]) == 4
    assert "memory plan" in capsys.readouterr().out


def test_bench_rollout_cli_side_by_side(tmp_path):
    out = tmp_path / "rollout.json"
    assert main(["bench", "rollout", "--policy", "random", "--workers", "1", "2", "--steps", "4",
                 "--warmup-steps", "1", "--env-image-size", "32", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["workers"] for r in rows] == [1, 2]
    assert [r["env_steps"] for r in rows] == [4, 8]
    assert rows[0]["speedup_vs_1"] == 1.0 and all(r["steps_per_s"] > 0 for r in rows)


def test_bench_parl_step_cli_times_both_checkpointing_settings(tmp_path, capsys, monkeypatch):
    from vla_parl.models.openvla import vision

    calls = []
    real_checkpoint = vision.checkpoint
    monkeypatch.setattr(vision, "checkpoint", lambda *a, **k: calls.append(1) or real_checkpoint(*a, **k))
    out = tmp_path / "parl_step.json"
    assert main(["bench", "parl_step", "--image-size", "56", "--batch-size", "2", "--num-samples", "3",
                 "--top-k", "2", "--refine-steps", "2", "--lora-rank", "4", "--repeats", "1", "--threads", "1",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["gradient_checkpointing"] for r in result["rows"]] == [True, False]
    for row in result["rows"]:
        assert row["step_s"] > 0 and row["improve_s"] > 0 and row["distill_s"] >= 0 and row["peak_memory_mb"] > 0
        assert row["states_per_s"] == pytest.approx(2 / row["step_s"])
    assert result["checkpointing_time_ratio"] > 0 and result["checkpointing_memory_ratio"] > 0
    assert [r["loss_vocab"] for r in result["loss_vocab_rows"]] == ["full", "action_tokens"]
    assert all(r["step_s"] > 0 for r in result["loss_vocab_rows"]) and result["action_token_loss_distill_ratio"] > 0
    assert 0 < result["trainable_params"] < 200_000        # the LoRA r = 4 adapters only (the tiny model: 4.9M)
    assert "one PA-RL iteration" in capsys.readouterr().out
    assert calls, "the checkpointed setting must really recompute (the distillation forward runs in training mode)"



def test_bench_parl_step_full_finetune_trains_every_weight(tmp_path):
    out = tmp_path / "parl_step.json"
    assert main(["bench", "parl_step", "--image-size", "56", "--batch-size", "2", "--num-samples", "2",
                 "--top-k", "1", "--refine-steps", "1", "--repeats", "1", "--threads", "1", "--full-finetune",
                 "--vision", "siglip", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    # the whole tiny model with the SigLIP tower alone (the fused pair has 4.9 M weights)
    assert result["lora_rank"] is None and result["trainable_params"] == 4_587_977
    assert result["action_token_loss_distill_ratio"] > 0
    # the recipes' AdamW is the fused kernel on a CPU; torch's default is the for-loop
    assert [(r["optimizer"], r["fused"]) for r in result["optimizer_rows"]] == [("recipes", True),
                                                                               ("torch default", False)]
    assert all(r["step_s"] > 0 and r["optimizer_step_s"] > 0 for r in result["optimizer_rows"])
    assert result["recipe_optimizer_distill_ratio"] > 0 and result["recipe_optimizer_step_ratio"] > 0


def test_suite_skips_a_missing_script_and_reports_a_failing_benchmark(monkeypatch, tmp_path):
    monkeypatch.setitem(suite.SCRIPTS, "data", ("scripts/does_not_exist.py", [], []))
    monkeypatch.setitem(suite.MODULES, "memory", ("vla_parl.bench.memory", ["--micro-batch", "0"], []))
    out = tmp_path / "all.json"
    assert main(["bench", "all", "--only", "data", "memory", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["status"]["data"].startswith("skipped: scripts/does_not_exist.py")
    assert result["status"]["memory"].startswith("failed:")
    assert result["headlines"] == []


@pytest.mark.slow
def test_bench_all_quick_runs_everything(tmp_path):
    out = tmp_path / "all.json"
    assert main(["bench", "all", "--quick", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["quick"] is True
    for name in ("inference", "sample", "memory", "rollout", "train_step", "parl_step"):
        assert result["status"][name] == "ok", result["status"][name]
    names = {row["name"] for row in result["headlines"]}
    assert {"inference", "sample", "action_optimization", "memory", "rollout", "train_step", "parl_step"} <= names
    for row in result["headlines"]:
        assert row["ratio"] is None or row["ratio"] > 0, row
    for name in ("data", "serving"):  # other engineers' scripts: run when present, skipped otherwise
        assert result["status"][name] == "ok" or result["status"][name].startswith("skipped"), result["status"][name]
