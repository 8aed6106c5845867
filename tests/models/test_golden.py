"""The official OpenVLA code's tiny checkpoint and its reference outputs, reproduced exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vla_parl.models import OpenVLA
from vla_parl.models.openvla.processor import build_prompt


@pytest.fixture(scope="module")
def golden(golden_dir):
    return np.load(golden_dir / "golden.npz")


@pytest.fixture(scope="module", params=["eager", "sdpa"])
def golden_model(request, golden_dir):
    return OpenVLA.from_pretrained(golden_dir, torch_dtype=torch.float32, attn_implementation=request.param)


@pytest.mark.parametrize("i", [0, 1, 2])
def test_processor_matches_reference(golden, golden_model, i):
    processor = golden_model.processor
    pixel_values = processor.pixel_values([golden[f"image_{i}"]])
    np.testing.assert_allclose(pixel_values.numpy(), golden[f"pixel_values_{i}"], atol=1e-5, rtol=0)
    ids = processor.tokenizer.encode(build_prompt(str(golden[f"instruction_{i}"])))
    assert ids == golden[f"input_ids_{i}"][0].tolist()


@pytest.mark.parametrize("i", [0, 1, 2])
def test_last_logits_generated_ids_and_actions(golden, golden_model, i):
    ids = golden[f"input_ids_{i}"][0].tolist() + [29871]
    with torch.no_grad():
        logits = golden_model(torch.tensor([ids]), torch.from_numpy(golden[f"pixel_values_{i}"])).logits
    np.testing.assert_allclose(logits[0, -1].numpy(), golden[f"last_logits_{i}"], atol=1e-4, rtol=0)

    image, instruction = golden[f"image_{i}"], str(golden[f"instruction_{i}"])
    pixel_values, prompts = golden_model.prepare_inputs([image], [instruction])
    tokens = golden_model.generate_action_tokens(pixel_values, prompts, num_tokens=7)
    assert tokens[0].tolist() == golden[f"generated_ids_{i}"].tolist()
    action = golden_model.predict_action(image, instruction, unnorm_key="bridge_orig")
    assert action.shape == (7,)
    assert np.array_equal(action, golden[f"action_{i}"])


def test_batch_equals_one_by_one(golden, golden_model):
    images = [golden[f"image_{i}"] for i in range(3)]
    instructions = [str(golden[f"instruction_{i}"]) for i in range(3)]
    batched = golden_model.predict_action(images, instructions, unnorm_key="bridge_orig")
    assert batched.shape == (3, 7)
    for i in range(3):
        assert np.array_equal(batched[i], golden[f"action_{i}"])
    # the prompts have different lengths, so the batch really is padded
    assert len({len(golden[f"input_ids_{i}"][0]) for i in range(3)}) == 3


def test_batched_prefill_logits_match_single(golden, golden_model):
    images = [golden[f"image_{i}"] for i in range(3)]
    instructions = [str(golden[f"instruction_{i}"]) for i in range(3)]
    pixel_values, prompts = golden_model.prepare_inputs(images, instructions)
    with torch.no_grad():
        batched = golden_model.prefill(pixel_values, prompts).last_logits
        for i in range(3):
            single = golden_model.prefill(pixel_values[i: i + 1], prompts[i: i + 1]).last_logits
            torch.testing.assert_close(batched[i], single[0], atol=1e-4, rtol=0)
            np.testing.assert_allclose(single[0].numpy(), golden[f"last_logits_{i}"], atol=1e-4, rtol=0)
