"""forward(labels=...) is the official fine-tuning loss, and training on it teaches predict_action."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vla_parl.models import openvla_tiny
from vla_parl.models.openvla.processor import IGNORE_INDEX


def test_loss_equals_cross_entropy_on_action_tokens_and_eos(tiny_vla):
    tokens = torch.tensor([[31800, 31810, 31820, 31830, 31840, 31850, 31990]])
    batch = tiny_vla.processor.training_batch([np.zeros((56, 56, 3), np.uint8)], ["open the drawer"], tokens)
    with torch.no_grad():
        out = tiny_vla(batch.input_ids, batch.pixel_values, batch.attention_mask, labels=batch.labels)
        full = tiny_vla(batch.input_ids, batch.pixel_values, batch.attention_mask).logits
    assert out.logits.shape == (8, 32064) and out.target_ids.tolist() == tokens[0].tolist() + [2]
    # reference: shifted CE over the full multimodal logits, ignoring prompt and patch positions
    patches = full.shape[1] - batch.input_ids.shape[1]
    labels = torch.cat([batch.labels[:, :1], torch.full((1, patches), IGNORE_INDEX), batch.labels[:, 1:]], dim=1)
    reference = F.cross_entropy(full[0, :-1], labels[0, 1:], ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(out.loss, reference, atol=1e-5, rtol=1e-5)
    assert 0.0 <= out.action_accuracy <= 1.0 and out.action_l1 >= 0.0



def test_action_token_loss_is_cross_entropy_under_the_action_token_softmax():
    model = openvla_tiny(image_size=56)
    tokens = torch.tensor([[31800, 31810, 31820, 31830, 31840, 31850, 31990]])
    batch = model.processor.training_batch([np.zeros((56, 56, 3), np.uint8)], ["open the drawer"], tokens)
    start, end = model.action_tokenizer.token_start, model.action_tokenizer.token_end
    with torch.no_grad():
        full = model(batch.input_ids, batch.pixel_values, batch.attention_mask).logits
    model.loss_vocab = "action_tokens"
    out = model(batch.input_ids, batch.pixel_values, batch.attention_mask, labels=batch.labels)
    # the 7 action positions only (EOS unsupervised), logits over the 256 action tokens
    assert out.logits.shape == (7, end - start) and out.target_ids.tolist() == tokens[0].tolist()
    action_logits = full[0, -9:-2, start:end]          # the positions predicting the 7 action tokens
    reference = F.cross_entropy(action_logits, tokens[0] - start)
    torch.testing.assert_close(out.loss, reference, atol=1e-5, rtol=1e-5)
    assert reference < F.cross_entropy(full[0, -9:-2], tokens[0])   # a smaller softmax: a different loss
    out.loss.backward()
    head_grad = model.language_model.lm_head.weight.grad
    assert head_grad[start:end].abs().sum() > 0 and head_grad[:start].abs().sum() == 0
    with pytest.raises(ValueError, match="loss_vocab must be"):
        model.loss_vocab = "actions"


def test_a_model_trained_on_action_tokens_decodes_greedily_among_them(tmp_path):
    """The action-token loss leaves the other logits untrained, so the model is marked (saved in config.json) and
    its greedy decoding — predict_action, serving's greedy rows — takes the argmax over the action tokens."""
    from vla_parl.models import OpenVLA
    from vla_parl.policy.openvla import OpenVLAPolicy, SamplingSettings

    model = openvla_tiny(image_size=56, seed=3)
    start = model.action_tokenizer.token_start
    with torch.no_grad():   # untrained non-action rows that outscore every action token
        model.language_model.lm_head.weight[:start] *= 100
    pixel_values, prompts = model.prepare_inputs([np.full((56, 56, 3), v, np.uint8) for v in (0, 90, 200)],
                                                 ["reach the red block"] * 3)
    assert not bool(model.action_tokenizer.is_action_token(model.generate_action_tokens(pixel_values, prompts, 7)).all())
    assert not model.config.greedy_action_tokens_only
    model.loss_vocab = "action_tokens"
    model.save_pretrained(tmp_path / "m")
    reloaded = OpenVLA.from_pretrained(tmp_path / "m").eval()
    assert reloaded.config.greedy_action_tokens_only and reloaded.loss_vocab == "full"   # the loss is not saved
    greedy = reloaded.generate_action_tokens(pixel_values, prompts, 7)
    restricted, _ = OpenVLAPolicy(reloaded, SamplingSettings(temperature=0.0)).sample_tokens(pixel_values, prompts, 1)
    assert torch.equal(greedy, restricted[:, 0])


def test_overfitting_one_example_makes_predict_action_return_it():
    model = openvla_tiny(image_size=56, seed=1).train()
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    target = np.array([0.5, -0.5, 0.25, 0.0, -0.75, 0.9, 1.0])  # normalised; identity stats except gripper
    tokens = model.action_tokenizer.encode(torch.from_numpy(target))[None]
    batch = model.processor.training_batch([image], ["pick up the red block"], tokens)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        out = model(batch.input_ids, batch.pixel_values, batch.attention_mask, labels=batch.labels)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.05 * losses[0]
    assert out.action_accuracy == 1.0
    action = model.predict_action(image, "pick up the red block")
    expected = model.action_tokenizer.decode(tokens[0].numpy())  # bin centres of the target
    np.testing.assert_allclose(action, expected, atol=1e-12)
    assert model.training, "predict_action must restore the training mode"


def test_gradient_checkpointing_gives_the_same_gradients_and_switches_off():
    model = openvla_tiny(image_size=56, seed=2).train()
    tokens = torch.tensor([[31800, 31810, 31820, 31830, 31840, 31850, 31990]])
    batch = model.processor.training_batch([np.full((56, 56, 3), 90, np.uint8)], ["open the drawer"], tokens)

    def grads() -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        model(batch.input_ids, batch.pixel_values, batch.attention_mask, labels=batch.labels).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.enable_gradient_checkpointing()
    assert model.vision_backbone.gradient_checkpointing and _llm_checkpointing(model)
    checkpointed = grads()
    model.disable_gradient_checkpointing()
    assert not model.vision_backbone.gradient_checkpointing and not _llm_checkpointing(model)
    assert plain.keys() == checkpointed.keys() and len(plain) > 10
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, atol=1e-6, rtol=1e-5, msg=name)


def _llm_checkpointing(model) -> bool:
    llm = model.language_model   # transformers >= 5.2x renamed is_gradient_checkpointing
    return llm.is_activation_checkpointing if hasattr(type(llm), "is_activation_checkpointing") else \
        llm.is_gradient_checkpointing
