"""Presets: the published 7B architecture on the meta device, and tiny models on the same code path."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from vla_parl.models import openvla_7b, openvla_tiny
from vla_parl.models.openvla.checkpoint import to_checkpoint_key
from vla_parl.models.openvla.modeling import resolve_attn_implementation


def test_openvla_7b_on_meta_matches_published_checkpoint():
    with torch.device("meta"):
        model = openvla_7b()
    assert all(p.is_meta for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == 7_541_237_184  # openvla/openvla-7b
    shapes = {to_checkpoint_key(k): tuple(v.shape) for k, v in model.state_dict().items()}
    expected = {
        "vision_backbone.featurizer.blocks.23.ls1.scale_factor": (1024,),
        "vision_backbone.featurizer.reg_token": (1, 4, 1024),
        "vision_backbone.featurizer.pos_embed": (1, 256, 1024),
        "vision_backbone.fused_featurizer.blocks.26.mlp.fc1.weight": (4304, 1152),
        "vision_backbone.fused_featurizer.attn_pool.latent": (1, 1, 1152),
        "projector.fc1.weight": (8704, 2176),
        "projector.fc2.weight": (4096, 8704),
        "projector.fc3.weight": (4096, 4096),
        "language_model.model.embed_tokens.weight": (32064, 4096),
        "language_model.model.layers.31.mlp.down_proj.weight": (4096, 11008),
        "language_model.lm_head.weight": (32064, 4096),
    }
    for key, shape in expected.items():
        assert shapes[key] == shape, key
    assert len(shapes) == 982
    assert model.config.action_vocab_end == 32000 and model.vision_backbone.num_patches() == 256


def test_tiny_uses_the_same_structure_and_configurable_image_size():
    model = openvla_tiny(image_size=112)
    assert model.vision_backbone.num_patches() == 64
    names = {to_checkpoint_key(k) for k in model.state_dict()}
    assert "vision_backbone.featurizer.blocks.0.ls1.scale_factor" in names
    assert "vision_backbone.fused_featurizer.attn_pool.kv.weight" in names
    assert model.predict_action(np.zeros((90, 120, 3), np.uint8), "lift the blue block").shape == (7,)
    assert model.predict_action([np.zeros((30, 30, 3), np.uint8)] * 2, "lift the blue block").shape == (2, 7)
    with pytest.raises(ValueError, match="multiple of the ViT patch size 14"):
        openvla_tiny(image_size=64)


def test_tiny_with_the_siglip_tower_alone_saves_and_reloads(tmp_path):
    from vla_parl.models import OpenVLA

    model = openvla_tiny(image_size=84, vision="siglip")
    assert model.config.timm_model_ids == ["vit_so400m_patch14_siglip_224"]
    assert not model.config.use_fused_vision_backbone and model.vision_backbone.num_patches() == 36
    names = {to_checkpoint_key(k) for k in model.state_dict()}
    assert "vision_backbone.featurizer.attn_pool.kv.weight" in names
    assert not any(n.startswith("vision_backbone.fused_featurizer") for n in names)
    # one tower of width 72 feeds the projector, where the fused pair feeds 64 + 72
    assert model.projector.fc1.weight.shape[1] == 72
    assert openvla_tiny(image_size=84).projector.fc1.weight.shape[1] == 64 + 72
    # SigLIP's own statistics: a mid-grey image becomes zeros
    grey = np.full((84, 84, 3), 127.5, np.float32).astype(np.uint8)
    pixels = model.processor.pixel_values([grey])
    assert pixels.shape == (1, 3, 84, 84) and float(pixels.abs().max()) < 0.01
    model.save_pretrained(tmp_path)
    reloaded = OpenVLA.from_pretrained(tmp_path)
    image = np.random.default_rng(0).integers(0, 255, (84, 84, 3), dtype=np.uint8)
    with torch.no_grad():
        assert np.array_equal(reloaded.predict_action(image, "lift the red block"),
                              model.predict_action(image, "lift the red block"))
    with pytest.raises(ValueError, match="vision must be one of"):
        openvla_tiny(image_size=56, vision="dino")


def test_tiny_is_deterministic_per_seed():
    a, b, c = openvla_tiny(image_size=56, seed=3), openvla_tiny(image_size=56, seed=3), openvla_tiny(image_size=56, seed=4)
    wa, wb, wc = (m.projector.fc1.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_attention_implementations():
    assert resolve_attn_implementation(None) == "sdpa"
    with pytest.raises(ValueError, match="attn_implementation"):
        resolve_attn_implementation("xformers")
    if not torch.cuda.is_available():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert resolve_attn_implementation("flash_attention_2") == "sdpa"
        assert any("falling back to sdpa" in str(w.message) for w in caught)


def test_eager_and_sdpa_agree():
    image = np.random.default_rng(1).integers(0, 256, (56, 56, 3), dtype=np.uint8)
    logits = []
    for attn in ("eager", "sdpa"):
        model = openvla_tiny(image_size=56, attn_implementation=attn)
        pixel_values, prompts = model.prepare_inputs([image, image], ["open the drawer", "push the red block left"])
        with torch.no_grad():
            logits.append(model.prefill(pixel_values, prompts).last_logits)
    torch.testing.assert_close(logits[0], logits[1], atol=1e-4, rtol=1e-4)


def test_mismatched_inputs_get_clear_errors(tiny_vla):
    with pytest.raises(ValueError, match="2 images but 3 instructions"):
        tiny_vla.predict_action([np.zeros((8, 8, 3), np.uint8)] * 2, ["a", "b", "c"])
