"""Every config value is range-checked when the config is loaded: the error names the key, the value and the
valid range; an empty config file and hardware the machine lacks are errors too."""

from __future__ import annotations

import pytest
import torch

from tests.recipes._cli import run_cli
from vla_parl.cli.run import load_recipe_config
from vla_parl.config.schema import check_range
from vla_parl.errors import ConfigError

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")


@pytest.mark.parametrize("recipe, override, message", [
    ("sft", "optim.lr=-1", r"optim.lr=-1.0 is out of range: it must be > 0"),
    ("sft", "optim.lr=.nan", r"optim.lr=nan is out of range: it must be > 0"),
    ("sft", "run.checkpoint_every=0", r"run.checkpoint_every=0 is out of range: it must be >= 1"),
    ("sft", "run.checkpoint_every=-5", r"run.checkpoint_every=-5 is out of range: it must be >= 1"),
    ("sft", "run.log_every=0", r"run.log_every=0 is out of range: it must be >= 1"),
    ("sft", "lora.r=0", r"lora.r=0 is out of range: it must be >= 1"),
    ("sft", "lora.dropout=1.0", r"lora.dropout=1.0 is out of range: it must be in \[0, 1\)"),
    ("sft", "optim.max_grad_norm=0", r"optim.max_grad_norm=0.0 is out of range: it must be > 0 \(or null\)"),
    ("sft", "run.stop_after=-1", r"run.stop_after=-1 is out of range"),
    ("sft", "model.image_size=0", r"model.image_size=0 is out of range: it must be >= 14"),
    ("critic", "optim.lr=0", r"optim.lr=0.0 is out of range: it must be > 0"),
    ("critic", "candidate_cache_states=0", r"candidate_cache_states=0 is out of range: it must be >= 1"),
    ("critic", "objective.polyak_tau=0", r"objective.polyak_tau=0.0 is out of range: it must be in \(0, 1\]"),
    ("critic", "critic.hidden_dims=[]", r"critic.hidden_dims=\[\] is out of range"),
    ("critic", "critic.num_q_heads=1", r"critic.num_q_heads=1 is out of range: it must be >= 2"),
    ("parl", "critic_optim.lr=-0.001", r"critic_optim.lr=-0.001 is out of range: it must be > 0"),
    ("parl", "policy_optim.batch_size=0", r"policy_optim.batch_size=0 is out of range: it must be >= 1"),
    ("parl", "parl.cache_states=0", r"parl.cache_states=0 is out of range: it must be >= 1"),
    ("parl", "online.episodes_per_round=0", r"online.episodes_per_round=0 is out of range: it must be >= 1"),
    ("parl", "action_optimizer.top_k=0", r"action_optimizer.top_k=0 is out of range: it must be >= 1"),
    ("demo", "eval.episodes=0", r"eval.episodes=0 is out of range: it must be >= 1"),
    ("demo", "sft.lr=-1", r"sft.lr=-1.0 is out of range: it must be > 0"),
])
def test_out_of_range_values_name_key_value_and_range(recipe, override, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe_config(recipe, None, [override])


@NO_CUDA
@pytest.mark.parametrize("override, message", [
    ("run.mixed_precision=fp16", r"run.mixed_precision=fp16 needs a CUDA GPU"),
    ("model.dtype=float16", r"model.dtype=float16 needs a CUDA GPU"),
    ("model.load_in_4bit=true", r"model.load_in_4bit=true \(QLoRA\) needs a CUDA GPU"),
])
def test_settings_the_hardware_cannot_run_fail_at_load_time(override, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe_config("sft", None, [override])
    with pytest.warns(UserWarning, match="run.mixed_precision=bf16 has no effect without a CUDA GPU"):
        cfg = load_recipe_config("sft", None, ["run.mixed_precision=bf16"])
    assert cfg.run.mixed_precision == "no"                              # the fallback, said and recorded


def test_model_vision_is_a_tiny_model_choice():
    assert load_recipe_config("sft", None, ["model.vision=siglip"]).model.vision == "siglip"
    with pytest.raises(ConfigError, match=r"model.vision"):
        load_recipe_config("sft", None, ["model.vision=dino"])
    with pytest.raises(ConfigError, match=r"model.name=openvla_7b brings its own vision backbone: drop model.vision"):
        load_recipe_config("sft", None, ["model.name=openvla_7b", "model.vision=siglip"])


def test_empty_or_binary_config_file_is_an_error(tmp_path):
    path = tmp_path / "empty.yaml"
    for text in ("", "\n", "# only a comment\n"):
        path.write_text(text)
        with pytest.raises(ConfigError, match=r"config file .*empty.yaml is empty"):
            load_recipe_config("sft", str(path), [])
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match=r"empty.yaml is not valid YAML"):
        load_recipe_config("sft", str(path), [])


def test_check_range_messages():
    check_range("x", 0.5, low=0, high=1)
    check_range("x", None, low=1, optional=True)
    with pytest.raises(ConfigError, match=r"x=None is out of range: it must be >= 1$"):
        check_range("x", None, low=1)
    with pytest.raises(ConfigError, match=r"x=2 is out of range: it must be < 2$"):
        check_range("x", 2, high=2, high_open=True)


def test_the_cli_prints_the_range_error_without_a_traceback(tmp_path):
    proc, _ = run_cli("run", "sft", "--output-dir", str(tmp_path / "run"), "run.log_every=0")
    assert proc.returncode != 0
    assert "run.log_every=0 is out of range: it must be >= 1" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()
