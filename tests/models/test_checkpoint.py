"""Loading and saving checkpoint directories: round trips, sharding, and clear errors on bad files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from vla_parl.errors import CheckpointError
from vla_parl.models import OpenVLA


def _logits(model, image, instruction="pick up the red block"):
    pixel_values, prompts = model.prepare_inputs([image], [instruction])
    with torch.no_grad():
        return model.prefill(pixel_values, prompts).last_logits


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, size=(80, 96, 3), dtype=np.uint8)


def test_round_trip_single_file(tiny_vla, image, tmp_path):
    tiny_vla.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json",
            "dataset_statistics.json", "generation_config.json"} <= {p.name for p in tmp_path.iterdir()}
    assert not list(tmp_path.glob(".*.tmp")), "temporary files must not survive a save"
    loaded = OpenVLA.from_pretrained(tmp_path)
    assert torch.equal(_logits(tiny_vla, image), _logits(loaded, image))
    assert loaded.norm_stats == tiny_vla.norm_stats
    assert json.loads((tmp_path / "config.json").read_text())["timm_model_kwargs"][0]["embed_dim"] == 64


def test_round_trip_sharded_and_golden_layout(golden_dir, tmp_path):
    model = OpenVLA.from_pretrained(golden_dir, torch_dtype=torch.bfloat16)
    model.save_pretrained(tmp_path, max_shard_size="2MB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) > 1 and not (tmp_path / "model.safetensors").exists()
    # LayerScale parameters keep the published name, and every tensor is byte-identical to the original
    from safetensors.torch import load_file

    original = load_file(str(golden_dir / "model.safetensors"))
    resaved = {k: v for s in shards for k, v in load_file(str(tmp_path / s)).items()}
    assert original.keys() == resaved.keys()
    assert all(torch.equal(original[k], resaved[k]) for k in original)
    # and the original config fields survive (unknown fields are kept)
    cfg_in = json.loads((golden_dir / "config.json").read_text())
    cfg_out = json.loads((tmp_path / "config.json").read_text())
    assert {k: v for k, v in cfg_in.items() if k != "transformers_version"}.items() <= cfg_out.items()


def test_dataset_statistics_file_overrides_config(tiny_vla, tmp_path):
    tiny_vla.save_pretrained(tmp_path)
    stats = json.loads((tmp_path / "dataset_statistics.json").read_text())
    stats["my_robot"] = stats["default"]
    (tmp_path / "dataset_statistics.json").write_text(json.dumps(stats))
    assert set(OpenVLA.from_pretrained(tmp_path).norm_stats) == {"default", "my_robot"}


def test_truncated_safetensors_names_the_file(tiny_vla, tmp_path):
    tiny_vla.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="model.safetensors is corrupt or truncated"):
        OpenVLA.from_pretrained(tmp_path)


def test_garbage_safetensors_names_the_file(tiny_vla, tmp_path):
    tiny_vla.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        OpenVLA.from_pretrained(tmp_path)


def test_missing_config_key_names_file_and_key(golden_dir, tmp_path):
    shutil.copytree(golden_dir, tmp_path / "ckpt")
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    del config["timm_model_ids"]
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config\.json is missing required key\(s\) \['timm_model_ids'\]"):
        OpenVLA.from_pretrained(tmp_path / "ckpt")


def test_corrupt_config_json(golden_dir, tmp_path):
    shutil.copytree(golden_dir, tmp_path / "ckpt")
    (tmp_path / "ckpt" / "config.json").write_text('{"timm_model_ids": [')
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        OpenVLA.from_pretrained(tmp_path / "ckpt")


def test_missing_shard_and_missing_weights(tiny_vla, tmp_path):
    tiny_vla.save_pretrained(tmp_path / "a", max_shard_size="1MB")
    next((tmp_path / "a").glob("model-00002-of-*.safetensors")).unlink()
    with pytest.raises(CheckpointError, match="lists shard"):
        OpenVLA.from_pretrained(tmp_path / "a")
    tiny_vla.save_pretrained(tmp_path / "b")
    (tmp_path / "b" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        OpenVLA.from_pretrained(tmp_path / "b")


def test_weights_that_do_not_match_config(tiny_vla, tmp_path):
    tiny_vla.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["text_config"]["num_hidden_layers"] = 3
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="missing .* tensor"):
        OpenVLA.from_pretrained(tmp_path)


def test_missing_directory_and_offline_hub_id(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        OpenVLA.from_pretrained(tmp_path / "does-not-exist")
    with pytest.raises(CheckpointError, match="could not fetch 'nobody/no-such-vla'"):
        OpenVLA.from_pretrained("nobody/no-such-vla", local_files_only=True)


def test_hub_id_resolves_through_local_cache(golden_dir, tmp_path, monkeypatch):
    """A hub id is read from the Hugging Face cache layout (models--org--name/snapshots/<rev>/...)."""
    repo = tmp_path / "hub" / "models--openvla--openvla-tiny"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(golden_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    model = OpenVLA.from_pretrained("openvla/openvla-tiny", local_files_only=True)
    assert model.config.n_action_bins == 256
