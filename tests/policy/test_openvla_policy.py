"""OpenVLAPolicy: prefix-shared sampling is exact, restricted, and distillation re-tokenizes correctly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vla_parl.models import OpenVLA
from vla_parl.policy.base import Observation, Policy
from vla_parl.policy.openvla import OpenVLAPolicy, SamplingSettings, draw_tokens, filter_logits


@pytest.fixture(scope="module")
def golden_policy(golden_dir):
    model = OpenVLA.from_pretrained(golden_dir, torch_dtype=torch.float32)
    return OpenVLAPolicy(model, unnorm_key="bridge_orig")


@pytest.fixture(scope="module")
def golden_obs(golden_dir):
    g = np.load(golden_dir / "golden.npz")
    images = [g[f"image_{i}"] for i in range(3)]
    instructions = [str(g[f"instruction_{i}"]) for i in range(3)]
    size = 64  # the policy takes a uint8 [B, H, W, 3] batch: resize to a common size
    from PIL import Image

    batch = np.stack([np.asarray(Image.fromarray(im).resize((size, size))) for im in images])
    return Observation(images=torch.from_numpy(batch), instructions=instructions)


def test_implements_protocol(golden_policy):
    assert isinstance(golden_policy, Policy)
    assert golden_policy.action_dim == 7


def test_temperature_zero_equals_greedy_predict_action(golden_policy, golden_obs):
    greedy = SamplingSettings(temperature=0.0, restrict_to_action_tokens=False)
    images = [im for im in golden_obs.images.numpy()]
    pixel_values, prompts = golden_policy.model.prepare_inputs(images, golden_obs.instructions)
    ids, _ = golden_policy.sample_tokens(pixel_values, prompts, num_samples=4, settings=greedy)
    expected = golden_policy.model.generate_action_tokens(pixel_values, prompts, num_tokens=7)
    assert torch.equal(ids, expected[:, None, :].expand(-1, 4, -1))
    # and in robot units it equals predict_action
    golden_policy.sampling = greedy
    try:
        candidates = golden_policy.sample_actions(golden_obs, 2)
    finally:
        golden_policy.sampling = SamplingSettings()
    # (candidates are float32 bin centres, predict_action decodes in float64: equal up to rounding)
    np.testing.assert_allclose(golden_policy.unnormalize(candidates.actions[:, 0]),
                               golden_policy.model.predict_action(images, golden_obs.instructions, unnorm_key="bridge_orig"),
                               atol=1e-6, rtol=0)
    # a tiny temperature converges to the same tokens
    ids_cold, _ = golden_policy.sample_tokens(pixel_values, prompts, 3, SamplingSettings(1e-6, restrict_to_action_tokens=False),
                                              generator=torch.Generator().manual_seed(0))
    assert torch.equal(ids_cold, expected[:, None, :].expand(-1, 3, -1))


def test_prefix_sharing_gives_every_candidate_the_unshared_first_token_logits(golden_policy, golden_obs):
    model = golden_policy.model
    images = [im for im in golden_obs.images.numpy()]
    pixel_values, prompts = model.prepare_inputs(images, golden_obs.instructions)
    with torch.no_grad():
        shared = model.prefill(pixel_values, prompts).repeat_interleave(5)
        for b in range(3):
            alone = model.prefill(pixel_values[b: b + 1], prompts[b: b + 1]).last_logits[0]
            for n in range(5):
                torch.testing.assert_close(shared.last_logits[5 * b + n], alone, atol=1e-4, rtol=0)
        # and the second-step logits after a shared prefix equal an unshared two-token forward
        tok = torch.full((15,), 31900)
        step = model.decode_step(shared, tok)
        for b in range(3):
            ids = torch.tensor([prompts[b] + [31900]])
            full = model(ids, pixel_values[b: b + 1]).logits[0, -1]
            torch.testing.assert_close(step.last_logits[5 * b], full, atol=1e-4, rtol=0)


def test_restricted_sampling_only_yields_action_tokens(golden_policy, golden_obs):
    candidates = golden_policy.sample_actions(golden_obs, 16, generator=torch.Generator().manual_seed(0))
    assert candidates.tokens.shape == (3, 16, 7) and candidates.actions.shape == (3, 16, 7)
    assert ((candidates.tokens >= 31744) & (candidates.tokens < 32000)).all()
    assert candidates.actions.abs().max() <= 1.0
    assert torch.isfinite(candidates.log_probs).all() and (candidates.log_probs <= 0).all()
    assert len({tuple(t) for t in candidates.tokens[0].tolist()}) > 1, "temperature 1 must give diverse candidates"


def test_sampling_is_reproducible_with_a_generator(golden_policy, golden_obs):
    a = golden_policy.sample_actions(golden_obs, 8, generator=torch.Generator().manual_seed(7))
    b = golden_policy.sample_actions(golden_obs, 8, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.tokens, b.tokens)


def test_filter_logits_top_k_top_p():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0, 10.0, -1.0]])
    settings = SamplingSettings(temperature=1.0, top_k=2, restrict_to_action_tokens=False)
    kept = torch.isfinite(filter_logits(logits, settings, (0, 6)))
    assert kept.tolist() == [[False, False, False, True, True, False]]
    # token 4 has probability > 0.99: top_p 0.9 keeps only it
    kept = torch.isfinite(filter_logits(logits, SamplingSettings(top_p=0.9, restrict_to_action_tokens=False), (0, 6)))
    assert kept.tolist() == [[False, False, False, False, True, False]]
    restricted = torch.isfinite(filter_logits(logits, SamplingSettings(), (2, 4)))
    assert restricted.tolist() == [[False, False, True, True, False, False]]


def test_distillation_retokenizes_bin_centres_exactly(golden_policy, golden_obs):
    tokenizer = golden_policy.model.action_tokenizer
    centres = torch.tensor(tokenizer.bin_centers[[3, 50, 100, 127, 180, 220, 254]], dtype=torch.float32)
    tokens = tokenizer.encode(centres)
    assert torch.equal(tokenizer.encode(tokenizer.decode(tokens)), tokens)
    targets = centres[None].repeat(3, 1)
    loss = golden_policy.supervised_loss(golden_obs, targets)
    assert loss.loss.requires_grad and np.isfinite(loss.stats["distill_loss"])
    with pytest.raises(ValueError, match=r"\[B, 7\]"):
        golden_policy.supervised_loss(golden_obs, targets[:, :6])


def test_distillation_labels_of_a_sampled_candidate_are_its_own_tokens_including_an_open_gripper():
    """A candidate kept as sampled is distilled on its own tokens: +1's token 31744 stays 31744 (plain `encode`
    of its decoded value would label it 31745)."""
    from vla_parl.models import openvla_tiny

    model = openvla_tiny(image_size=56, seed=3)
    policy = OpenVLAPolicy(model)
    obs = Observation(images=torch.zeros(2, 56, 56, 3, dtype=torch.uint8), instructions=["lift the red block"] * 2)
    tokens = torch.tensor([[31900, 31800, 31871, 31999, 31750, 31760, 31744],
                           [31870, 31871, 31872, 31873, 31874, 31875, 31744]])
    targets = model.action_tokenizer.decode(tokens)

    def loss_on(ids: torch.Tensor) -> float:
        batch = model.processor.training_batch(list(obs.images.numpy()), obs.instructions, ids)
        with torch.no_grad():
            return float(model(batch.input_ids, batch.pixel_values, batch.attention_mask, labels=batch.labels).loss)

    with torch.no_grad():
        distilled = float(policy.supervised_loss(obs, targets).loss)
    assert distilled == pytest.approx(loss_on(tokens), rel=1e-6)
    assert distilled != pytest.approx(loss_on(model.action_tokenizer.encode(targets)), rel=1e-6)


def test_distillation_moves_samples_toward_targets():
    """A few CE steps on one target action make it the most likely sample (LoRA-free tiny model)."""
    from vla_parl.models import openvla_tiny

    model = openvla_tiny(image_size=56, seed=2).train()
    policy = OpenVLAPolicy(model, sampling=SamplingSettings(temperature=0.0))
    obs = Observation(images=torch.zeros(2, 56, 56, 3, dtype=torch.uint8), instructions=["lift the red block"] * 2)
    target = torch.tensor([[0.3, -0.2, 0.5, 0.0, 0.1, -0.6, 0.9]] * 2)
    optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=3e-3)
    for _ in range(40):
        loss = policy.supervised_loss(obs, target)
        optimizer.zero_grad()
        loss.loss.backward()
        optimizer.step()
    greedy = policy.sample_actions(obs, 1).actions[:, 0]
    torch.testing.assert_close(greedy, model.action_tokenizer.decode(model.action_tokenizer.encode(target)),
                               atol=1e-6, rtol=0)


def test_save_and_load_adapter(tmp_path):
    from vla_parl.models import openvla_tiny
    from vla_parl.models.openvla.lora import LoraSettings, apply_lora

    model = apply_lora(openvla_tiny(image_size=56), LoraSettings(r=2, alpha=4))
    policy = OpenVLAPolicy(model)
    policy.save(tmp_path)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    restored = OpenVLAPolicy.load(tmp_path, base=openvla_tiny(image_size=56))
    assert restored.trainable_parameters() and all(p.requires_grad for p in restored.trainable_parameters())


def test_gumbel_max_draws_match_softmax_probabilities():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, float("-inf")]]).repeat(40_000, 1)
    ids, log_p = draw_tokens(logits, sample=True, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(ids, minlength=5).float() / len(ids)
    probs = logits[0].softmax(-1)
    # binomial std of a frequency is sqrt(p(1-p)/n) <= 0.0025 here; allow 4 sigma
    assert (freq - probs).abs().max() < 0.01
    assert freq[4] == 0  # masked tokens are never drawn
    torch.testing.assert_close(log_p, probs.log()[ids])
    greedy, _ = draw_tokens(logits[:2], sample=False)
    assert greedy.tolist() == [0, 0]
