"""The 7B memory plan: parameter counts against the meta-device model, and the arithmetic by hand."""

from __future__ import annotations

import argparse

import pytest
import torch

from vla_parl.bench import memory
from vla_parl.models import openvla_7b, openvla_tiny
from vla_parl.models.openvla.lora import LoraSettings, apply_lora

GIB = 2 ** 30
P_7B = 7_541_237_184


@pytest.fixture(scope="module")
def meta_7b():
    with torch.device("meta"):
        return openvla_7b()


@pytest.fixture(scope="module")
def result():
    parser = argparse.ArgumentParser()
    memory.add_arguments(parser)
    return memory.run(parser.parse_args([]))


def test_parameter_counts_match_the_meta_model_and_peft(meta_7b, result):
    params = result["params"]
    assert params["total"] == P_7B == sum(p.numel() for p in meta_7b.parameters())
    assert params["vision"] + params["projector"] + params["llm"] == P_7B
    # Llama-2-7B decoder: 32 layers × (4·4096² attention + 3·4096·11008 MLP) linear weights
    assert params["llm_decoder_linears"] == 32 * (4 * 4096 ** 2 + 3 * 4096 * 11008) == 6_476_005_376
    apply_lora(meta_7b, LoraSettings(r=32, alpha=16))  # the real peft injection, on meta: no memory
    assert params["lora"] == sum(p.numel() for n, p in meta_7b.named_parameters() if "lora_" in n) == 109_563_904


def test_lora_count_formula_matches_peft_on_a_real_tiny_model():
    model = openvla_tiny(image_size=56)
    expected = memory.parameter_breakdown(model, lora_rank=4)["lora"]
    apply_lora(model, LoraSettings(r=4, alpha=8))
    assert expected == sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) > 0


def test_memory_plan_arithmetic(result):
    rows = {r["setup"].split(",")[1].strip(): r for r in result["rows"]}
    lora_row, qlora, fsdp_full = rows["LoRA"], rows["QLoRA (NF4 base"], rows["FSDP full fine-tune"]
    assert lora_row["weights"] == pytest.approx(2 * P_7B / GIB) == pytest.approx(14.047, abs=1e-3)
    assert lora_row["optimizer"] == pytest.approx(8 * 109_563_904 / GIB)  # AdamW m, v in fp32
    # NF4: 0.5 B + double-quantised absmax (1/64 B + 4/(64·256) B) on the decoder linears, bf16 elsewhere
    nf4 = 0.5 + 1 / 64 + 4 / (64 * 256)
    assert qlora["weights"] == pytest.approx((nf4 * 6_476_005_376 + 2 * (P_7B - 6_476_005_376)) / GIB)
    # FSDP full FT over 8 GPUs: 4 (fp32 params) + 4 (grads) + 8 (AdamW) bytes per param / 8
    assert fsdp_full["grads"] + fsdp_full["optimizer"] == pytest.approx(12 * P_7B / 8 / GIB)
    # activations, Llama part, no checkpointing: tokens (1 + 256 + 20 + 8 = 285) × micro-batch 16 × 4096
    # × 2 B × 32 layers × f (8 + 4·11008/4096 = 18.75) = 22,413,312,000 B
    act = result["activations"]
    assert act["no_gc"]["llm"] == pytest.approx(285 * 16 * 4096 * 2 * 32 * 18.75) == pytest.approx(22_413_312_000)
    assert act["gc"]["llm"] == pytest.approx(285 * 16 * 4096 * 2 * (32 + 18.75))
    for row in result["rows"]:
        fixed = row["weights"] + row["trainable"] + row["grads"] + row["optimizer"]
        assert row["total_gc"] == pytest.approx(fixed + act["gc"]["total"] / GIB)
        assert row["total_no_gc"] > row["total_gc"]
    assert qlora["total_gc"] < lora_row["total_gc"] < 24  # fits a 24 GiB card with checkpointing
