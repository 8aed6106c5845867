"""The typed `/v1` API: image encodings, greedy / sample / refined modes, batch, metadata, health."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import requests
import torch
from PIL import Image

from serving.client import encode_png
from tests.serving._helpers import INSTRUCTION, scene


def _post(url: str, path: str, body: dict) -> requests.Response:
    return requests.post(url + path, json=body, timeout=60)


@pytest.mark.parametrize("encoding", ["png", "nested", "data_url"])
def test_greedy_equals_predict_action(server_url, reference_model, encoding):
    image = scene(11, 40)
    encoded = {"png": encode_png(image), "nested": image.tolist(),
               "data_url": "data:image/png;base64," + encode_png(image)}[encoding]
    response = _post(server_url, "/v1/act", {"image": encoded, "instruction": INSTRUCTION, "unnorm_key": "default"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == "greedy" and body["unnorm_key"] == "default" and body["q"] is None
    np.testing.assert_array_equal(body["action"], reference_model.predict_action(image, INSTRUCTION, "default"))
    assert body["timing"]["batch_size"] >= 1 and body["timing"]["inference_ms"] > 0


def test_jpeg_is_decoded_like_pil(server_url, reference_model):
    buffer = io.BytesIO()
    Image.fromarray(scene(4, 48)).save(buffer, format="JPEG", quality=90)
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    response = _post(server_url, "/v1/act", {"image": base64.b64encode(buffer.getvalue()).decode(),
                                             "instruction": INSTRUCTION, "unnorm_key": "default"})
    assert response.status_code == 200, response.text
    np.testing.assert_array_equal(response.json()["action"], reference_model.predict_action(decoded, INSTRUCTION,
                                                                                            "default"))


def test_sample_mode_returns_the_requested_samples(server_url):
    body = {"image": encode_png(scene(2, 32)), "instruction": INSTRUCTION, "unnorm_key": "bridge_orig",
            "mode": "sample", "num_samples": 6, "temperature": 1.5}
    result = _post(server_url, "/v1/act", body).json()
    samples = np.array(result["samples"])
    assert samples.shape == (6, 7)
    np.testing.assert_array_equal(samples[0], result["action"])
    q01 = np.array([-0.05, -0.04, -0.03, -0.2, -0.2, -0.3])
    assert np.all(np.abs(samples[:, :6]) <= np.abs(q01) + 1e-9)   # within bridge_orig's [q01, q99]
    assert len({tuple(s) for s in samples}) > 1                     # high temperature: not all equal


def test_refined_q_is_at_least_the_greedy_q_under_the_same_critic(server_url, reference_model, checkpoint_dirs):
    from vla_parl.critic import QCritic
    from vla_parl.policy.base import Observation

    critic = QCritic.load(checkpoint_dirs[1]).eval()
    for seed in (21, 22):
        image = scene(seed, 32)  # the critic's image size: no resizing on either side
        response = _post(server_url, "/v1/act", {"image": encode_png(image), "instruction": INSTRUCTION,
                                                 "unnorm_key": "default", "mode": "refined", "num_samples": 8,
                                                 "top_k": 4, "steps": 5})
        assert response.status_code == 200, response.text
        body = response.json()
        # the greedy action's Q, computed here: normalised greedy action from the model, scored by the critic
        pixel_values, prompt_ids = reference_model.prepare_inputs([image], [INSTRUCTION])
        tokens = reference_model.generate_action_tokens(pixel_values, prompt_ids, 7)
        greedy = torch.as_tensor(reference_model.action_tokenizer.decode(tokens.numpy()), dtype=torch.float32)
        with torch.no_grad():
            obs = Observation(images=torch.as_tensor(image[None]), instructions=[INSTRUCTION])
            greedy_q = float(critic.q_mean(critic.encode(obs), greedy[:, None])[0, 0])
            refined = torch.as_tensor(body["action"], dtype=torch.float32)[None, None]  # identity stats: normalised
            refined_q = float(critic.q_mean(critic.encode(obs), refined)[0, 0])
        assert body["greedy_q"] == pytest.approx(greedy_q, abs=1e-5)
        assert body["q"] == pytest.approx(refined_q, abs=1e-4)
        assert body["q"] >= greedy_q - 1e-6
        assert len(body["candidate_q"]) == 4 and max(body["candidate_q"]) == pytest.approx(body["q"])


def test_batch_endpoint_matches_single_requests(server_url, reference_model):
    images = [scene(30 + i, 40 + 8 * i) for i in range(3)]
    instructions = [INSTRUCTION, "push the blue block", "lift the green block"]
    body = {"requests": [{"image": encode_png(im), "instruction": ins, "unnorm_key": key}
                         for im, ins, key in zip(images, instructions, ["default", "bridge_orig", "default"])]}
    response = _post(server_url, "/v1/act/batch", body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["unnorm_key"] for r in results] == ["default", "bridge_orig", "default"]
    for result, image, instruction in zip(results, images, instructions):
        expected = reference_model.predict_action(image, instruction, unnorm_key=result["unnorm_key"])
        np.testing.assert_allclose(result["action"], expected, atol=1e-12)
    assert max(r["timing"]["batch_size"] for r in results) >= 2  # the rows shared a model call


def test_metadata_and_health(server_url):
    meta = requests.get(server_url + "/v1/metadata", timeout=10).json()
    assert meta["action_dim"] == 7 and meta["unnorm_keys"] == ["bridge_orig", "corrupt", "default"]
    assert meta["default_unnorm_key"] is None
    assert meta["critic"]["loaded"] and meta["critic"]["image_size"] == 32
    assert meta["modes"] == ["greedy", "sample", "refined"]
    assert meta["model"]["image_sizes"] == [56, 56] and meta["versions"]["vla_parl"]
    assert meta["limits"]["max_request_bytes"] == 2 * 1024 * 1024 and not meta["limits"]["api_key_required"]
    health = requests.get(server_url + "/health", timeout=10).json()
    assert health["status"] == "ok" and health["batching"]["max_batch_size"] == 16
    schema = requests.get(server_url + "/openapi.json", timeout=10).json()
    assert {"/act", "/v1/act", "/v1/act/batch", "/v1/metadata", "/health"} <= set(schema["paths"])
    act_schema = schema["components"]["schemas"]["ActRequest"]
    assert act_schema["additionalProperties"] is False and "mode" in act_schema["properties"]


def test_critic_trained_with_the_model_tokenizer_is_loaded_with_it(tmp_path, checkpoint_dirs, reference_model):
    from serving.engine import ActItem, PolicyEngine
    from vla_parl.critic import critic_resnet18
    from vla_parl.errors import CheckpointError

    tokenize = reference_model.processor.tokenizer.encode_batch
    critic = critic_resnet18(action_dim=7, image_size=32, hidden_dims=(16,), num_q_heads=2, image_feature_dim=16,
                             vocab_size=32064, tokenize=tokenize)
    critic.save(tmp_path / "critic")
    engine = PolicyEngine.load(checkpoint_dirs[0], tmp_path / "critic")
    assert engine.critic.config.custom_tokenizer
    item = ActItem(image=scene(7, 32), instruction=INSTRUCTION, unnorm_key="default", mode="refined", num_samples=3,
                   top_k=2, steps=1)
    (result,) = engine.run([item])
    assert result.q >= result.greedy_q - 1e-6 and len(result.candidate_q) == 2
    with pytest.raises(CheckpointError, match="is not a QCritic checkpoint"):
        PolicyEngine.load(checkpoint_dirs[0], tmp_path / "missing")
