"""Metric logs stay one record per (stream, step) across resumes; exports refuse non-finite weights."""

from __future__ import annotations

import json

import pytest
import torch

from vla_parl.errors import CheckpointError
from vla_parl.recipes._configs import RunSection, SFTRecipeConfig
from vla_parl.training import CheckpointManager, MetricLogger
from vla_parl.training.builders import make_accelerator, resume_and_open_logger
from vla_parl.training.metrics import read_metrics, truncate_metrics, without_timings


def test_logger_refuses_a_step_twice_or_backwards_within_a_stream(tmp_path):
    logger = MetricLogger(tmp_path)
    logger.log(1, {"loss": 1.0}, phase="sft")
    logger.log(1, {"critic/loss": 1.0}, phase="critic")                  # another stream
    logger.log(1, {"online/episodes": 2.0}, phase="collect", round=0)
    logger.log(2, {"online/episodes": 4.0}, phase="collect", round=1)    # `round` labels a row, not a stream
    with pytest.raises(ValueError, match="step 1 after step 1 in stream {'phase': 'sft'}"):
        logger.log(1, {"loss": 0.5}, phase="sft")
    with pytest.raises(ValueError, match="step 1 after step 2"):
        logger.log(1, {"online/episodes": 6.0}, phase="collect", round=2)
    logger.close()
    assert len(read_metrics(tmp_path / "metrics.jsonl")) == 4


def test_a_torn_last_line_is_cut_before_appending(tmp_path):
    logger = MetricLogger(tmp_path)
    logger.log(1, {"loss": 1.0})
    logger.close()
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 2, "lo')                                   # killed mid-write
    logger = MetricLogger(tmp_path)
    assert logger.records == 1
    logger.log(2, {"loss": 0.5})
    logger.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]


def test_truncate_keeps_exactly_the_first_records(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s}) + "\n" for s in range(5)) + '{"step": 5')
    assert truncate_metrics(path, 3) == 3
    assert [r["step"] for r in read_metrics(path)] == [0, 1, 2]
    assert truncate_metrics(path, 10) == 3 and truncate_metrics(path, 0) == 0 and path.read_text() == ""
    assert truncate_metrics(tmp_path / "absent.jsonl", 2) == 0


def test_without_timings_drops_wall_clock_fields_only():
    record = {"step": 1, "time": 5.0, "sft/step_time": 0.1, "sft/loss": 2.0}
    assert without_timings(record) == {"step": 1, "sft/loss": 2.0}


def _open(tmp_path, resume: bool) -> tuple[MetricLogger, CheckpointManager, bool]:
    cfg = SFTRecipeConfig(run=RunSection(progress=False))
    checkpoints = CheckpointManager(tmp_path)
    logger, resumed = resume_and_open_logger(make_accelerator(cfg.run), checkpoints, tmp_path, cfg, resume,
                                             lambda path: checkpoints.load(path)["step"])
    return logger, checkpoints, resumed


def test_resume_cuts_the_log_back_to_the_checkpoint_and_a_fresh_start_empties_it(tmp_path):
    logger, checkpoints, resumed = _open(tmp_path, resume=False)
    assert not resumed
    for step in (1, 2):
        logger.log(step, {"loss": float(step)}, phase="sft")
    checkpoints.save(2, lambda d: None, {})
    for step in (3, 4):                             # logged after the checkpoint, then the run is killed
        logger.log(step, {"loss": float(step)}, phase="sft")
    logger.close()
    logger, _, resumed = _open(tmp_path, resume=True)
    assert resumed and [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2]
    logger.log(3, {"loss": 3.0}, phase="sft")
    logger.close()
    logger, _, _ = _open(tmp_path, resume=False)    # a fresh run in the same directory starts a fresh log
    logger.close()
    assert read_metrics(tmp_path / "metrics.jsonl") == []


def test_resume_without_any_checkpoint_drops_the_killed_attempts_records(tmp_path):
    logger, _, _ = _open(tmp_path, resume=False)
    logger.log(1, {"loss": 1.0}, phase="sft")
    logger.close()                                  # killed before the first checkpoint
    logger, _, resumed = _open(tmp_path, resume=True)
    logger.close()
    assert not resumed and read_metrics(tmp_path / "metrics.jsonl") == []


# ---- exports refuse non-finite weights, naming the tensor ----------------------------------------------------

def test_model_export_refuses_nan_weights_naming_the_tensor(tmp_path):
    from vla_parl.models import openvla_tiny

    model = openvla_tiny(image_size=56)
    name, param = next((n, p) for n, p in model.named_parameters() if "embed_tokens" in n)
    with torch.no_grad():
        param.view(-1)[:1024] = float("nan")
    with pytest.raises(CheckpointError, match=f"tensor '{name}'.* holds 1024 NaN and 0 infinite"):
        model.save_pretrained(tmp_path / "model")
    assert not list((tmp_path / "model").glob("*.safetensors"))


def test_adapter_and_critic_exports_refuse_infinite_weights(tmp_path):
    from vla_parl.critic.critic import critic_state
    from vla_parl.models import openvla_tiny
    from vla_parl.models.openvla.lora import LoraSettings, apply_lora, save_lora_adapter

    model = apply_lora(openvla_tiny(image_size=56), LoraSettings(r=2, include_vision=False))
    name, param = next((n, p) for n, p in model.named_parameters() if "lora_B" in n)
    with torch.no_grad():
        param.view(-1)[0] = float("inf")
    with pytest.raises(CheckpointError, match="the LoRA adapter .* 0 NaN and 1 infinite"):
        save_lora_adapter(model, tmp_path / "adapter")
    critic = critic_state(3, 2, hidden_dims=(4,))
    critic.save(tmp_path / "ok")                     # finite: written
    with torch.no_grad():
        next(critic.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(CheckpointError, match="QCritic weights"):
        critic.save(tmp_path / "critic")
