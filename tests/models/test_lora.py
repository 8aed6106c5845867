"""LoRA adapters: only adapters train, save/load is exact, and merging gives the adapter outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vla_parl.errors import CheckpointError, VLAParlError
from vla_parl.models import OpenVLA, openvla_tiny
from vla_parl.models.openvla.lora import (LoraSettings, apply_lora, has_lora, load_lora_adapter, lora_target_modules,
                                          merge_lora, save_lora_adapter)


def _logits(model, image):
    pixel_values, prompts = model.prepare_inputs([image], ["pick up the red block"])
    with torch.no_grad():
        return model.prefill(pixel_values, prompts).last_logits


@pytest.fixture()
def adapted():
    model = apply_lora(openvla_tiny(image_size=56), LoraSettings(r=4, alpha=8))
    with torch.no_grad():  # B starts at zero; give the adapters an effect to check
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05, generator=torch.Generator().manual_seed(hash(name) % 2**31))
    return model


IMAGE = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)


def test_defaults_and_targets():
    settings = LoraSettings()
    assert (settings.r, settings.alpha, settings.dropout, settings.init) == (32, 16, 0.0, "gaussian")
    model = openvla_tiny(image_size=56)
    targets = lora_target_modules(model)
    assert "language_model.lm_head" not in targets
    assert {"projector.fc1", "language_model.model.layers.0.self_attn.q_proj",
            "vision_backbone.featurizer.blocks.0.attn.qkv"} <= set(targets)
    assert all(t.startswith("language_model.") for t in lora_target_modules(model, include_vision=False))


def test_only_adapters_are_trainable(adapted):
    trainable = [n for n, p in adapted.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_adapter_save_load_and_merge(adapted, tmp_path):
    reference = _logits(adapted, IMAGE)
    base = _logits(openvla_tiny(image_size=56), IMAGE)
    assert not torch.allclose(reference, base), "the adapters must change the outputs for this test to mean anything"
    save_lora_adapter(adapted, tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (4, 8)

    reloaded = load_lora_adapter(openvla_tiny(image_size=56), tmp_path / "adapter")
    assert torch.equal(_logits(reloaded, IMAGE), reference)

    merged = merge_lora(reloaded)
    assert not has_lora(merged)
    torch.testing.assert_close(_logits(merged, IMAGE), reference, atol=1e-5, rtol=1e-5)
    merged.save_pretrained(tmp_path / "merged")
    full = OpenVLA.from_pretrained(tmp_path / "merged")
    torch.testing.assert_close(_logits(full, IMAGE), reference, atol=1e-5, rtol=1e-5)


def test_saving_an_unmerged_model_is_refused(adapted, tmp_path):
    with pytest.raises(RuntimeError, match="save_lora_adapter"):
        adapted.save_pretrained(tmp_path)


def test_missing_adapter_files(tmp_path):
    with pytest.raises(CheckpointError, match="adapter_config.json not found"):
        load_lora_adapter(openvla_tiny(image_size=56), tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU error path")
def test_quantized_loading_needs_cuda(golden_dir):
    with pytest.raises(VLAParlError, match="needs a CUDA GPU"):
        OpenVLA.from_pretrained(golden_dir, load_in_4bit=True)
    with pytest.raises(VLAParlError, match="needs a CUDA GPU"):
        OpenVLA.from_pretrained(golden_dir, load_in_8bit=True)
