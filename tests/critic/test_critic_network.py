"""QCritic: the vectorised ensemble, action in every layer, encode-once scoring, targets, language, I/O."""

from __future__ import annotations

import pytest
import torch

from vla_parl.critic import (CriticConfig, HashingTokenizer, ObservationEncoder, QCritic, critic_resnet18,
                             critic_state)
from vla_parl.critic.encoders import random_shift
from vla_parl.errors import CheckpointError, ConfigError
from vla_parl.policy import Observation


def _per_head_loop(critic: QCritic, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """The ensemble written the slow way: one head at a time, [h; a] fed to every layer."""
    heads = critic.q_heads
    B, N, A = actions.shape
    out = []
    for i in range(heads.num_heads):
        h = features[:, None].expand(B, N, features.shape[1])
        for layer, (w, b) in enumerate(zip(heads.weights, heads.biases)):
            if layer > 0:
                h = torch.relu(h)
            h = torch.cat([h, actions], -1) @ w[i] + b[i, 0]
        out.append(h.squeeze(-1))
    return torch.stack(out)


def test_vectorised_ensemble_equals_a_loop_over_heads():
    torch.manual_seed(0)
    critic = critic_state(3, 2, hidden_dims=(8, 8, 8), num_q_heads=5)
    features = critic.encode(Observation(state=torch.randn(4, 3)))
    actions = torch.rand(4, 6, 2) * 2 - 1
    q = critic.q_values(features, actions)
    assert q.shape == (5, 4, 6)
    torch.testing.assert_close(q, _per_head_loop(critic, features, actions))
    # the action is concatenated into every layer's input, the output layer included
    widths = [w.shape[1] for w in critic.q_heads.weights]
    assert widths == [3 + 2, 8 + 2, 8 + 2, 8 + 2]
    torch.testing.assert_close(critic.q_mean(features, actions), q.mean(0))
    torch.testing.assert_close(critic.q_min(features, actions), q.min(0).values)


def test_scoring_n_candidates_equals_scoring_each_alone():
    torch.manual_seed(0)
    critic = critic_state(3, 2, hidden_dims=(16, 16))
    features = critic.encode(Observation(state=torch.randn(4, 3)))
    actions = torch.rand(4, 7, 2)
    together = critic.q_values(features, actions)
    alone = torch.cat([critic.q_values(features, actions[:, j:j + 1]) for j in range(7)], dim=2)
    torch.testing.assert_close(together, alone)


def test_soft_update_is_polyak_and_target_is_frozen():
    torch.manual_seed(0)
    critic = critic_state(3, 2, hidden_dims=(8,), value_head=True)
    assert all(not p.requires_grad for p in critic.target.parameters())
    target_ids = {id(p) for p in critic.target.parameters()}
    assert not target_ids & {id(p) for p in critic.trainable_parameters()}
    for p in critic.trainable_parameters():
        torch.testing.assert_close(p, dict(critic.target.named_parameters())[_name(critic, p)])
    with torch.no_grad():
        for p in critic.trainable_parameters():
            p.add_(1.0)
    before = [p.clone() for p in critic.target.parameters()]
    critic.soft_update(0.25)
    for old, new, online in zip(before, critic.target.parameters(), critic.trainable_parameters()):
        torch.testing.assert_close(new, 0.25 * online + 0.75 * old)   # θ̄ ← τθ + (1 − τ)θ̄
    critic.train()
    assert critic.training and not critic.target.training
    with pytest.raises(ValueError, match="tau"):
        critic.soft_update(0.0)


def _name(critic: QCritic, param: torch.nn.Parameter) -> str:
    return next(n for n, p in critic.named_parameters() if p is param)


def test_target_q_is_min_over_a_random_pair_of_target_heads():
    torch.manual_seed(0)
    critic = critic_state(3, 2, hidden_dims=(8,), num_q_heads=4)
    obs = Observation(state=torch.randn(5, 3))
    actions = torch.rand(5, 3, 2)
    q = critic.target.q_values(critic.target.encode(obs), actions)                 # [4, 5, 3]
    for seed in range(5):
        pair = torch.randperm(4, generator=torch.Generator().manual_seed(seed))[:2]
        expected = q[pair].min(0).values
        out = critic.target_q(obs, actions, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(out, expected)
    # the target network, not the online one
    with torch.no_grad():
        for p in critic.trainable_parameters():
            p.add_(1.0)
    torch.testing.assert_close(critic.target_q(obs, actions, generator=torch.Generator().manual_seed(0)),
                               q[torch.randperm(4, generator=torch.Generator().manual_seed(0))[:2]].min(0).values)


def test_instruction_conditioning_with_hashing_and_custom_tokenizers():
    tok = HashingTokenizer(97)
    assert tok(["Open the Drawer!"]) == tok(["open the drawer"]) and len(tok(["open the drawer"])[0]) == 3
    assert tok(["open the drawer"]) == HashingTokenizer(97)(["open the drawer"])      # stable
    torch.manual_seed(0)
    critic = QCritic(CriticConfig(action_dim=2, hidden_dims=(16,), vocab_size=97, instruction_dim=8, state_dim=1))
    state = torch.zeros(2, 1)
    f = critic.encode(Observation(state=state, instructions=["open the drawer", "lift the block"]))
    assert f.shape == (2, 9) and not torch.allclose(f[0], f[1])
    # a custom tokenizer (e.g. the VLA's) is used as given
    vocab = {"open": 1, "the": 2, "drawer": 3, "lift": 4, "block": 5}
    custom = QCritic(CriticConfig(action_dim=2, hidden_dims=(16,), vocab_size=6, instruction_dim=4),
                     tokenize=lambda texts: [[vocab[w] for w in t.split()] for t in texts])
    emb = custom.encoder.instruction.embedding.weight
    out = custom.encode(Observation(instructions=["open drawer"]))
    torch.testing.assert_close(out[0], (emb[1] + emb[3]) / 2)
    bad = QCritic(CriticConfig(action_dim=2, hidden_dims=(4,), vocab_size=3, instruction_dim=4),
                  tokenize=lambda texts: [[7] for _ in texts])
    with pytest.raises(ValueError, match="vocab_size"):
        bad.encode(Observation(instructions=["x"]))


def test_random_shift_translates_within_the_pad():
    torch.manual_seed(0)
    images = torch.rand(6, 3, 10, 12)
    out = random_shift(images, 2)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="replicate")
    for b in range(6):
        crops = [padded[b, :, i:i + 10, j:j + 12] for i in range(5) for j in range(5)]
        assert any(torch.equal(out[b], c) for c in crops)
    torch.testing.assert_close(random_shift(images, 0), images)


def test_image_critic_preset_augments_only_in_training_mode():
    torch.manual_seed(0)
    critic = critic_resnet18(action_dim=7, image_size=48, proprio_dim=3, hidden_dims=(32, 32), num_q_heads=10)
    assert critic.encoder.image.backbone.num_features == 512
    obs = Observation(images=torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8),
                      instructions=["pick up the cup", "put the pot in the sink"], proprio=torch.zeros(2, 3))
    critic.eval()
    with torch.no_grad():
        f1, f2 = critic.encode(obs), critic.encode(obs)
        torch.testing.assert_close(f1, f2)
        assert critic.q_values(f1, torch.zeros(2, 4, 7)).shape == (10, 2, 4)
        critic.train()
        assert not torch.allclose(critic.encode(obs), critic.encode(obs))


def test_image_width_scales_the_resnet_stages_and_survives_save_load(tmp_path):
    torch.manual_seed(0)
    standard = ObservationEncoder(image_size=32, image_feature_dim=8).image.backbone
    narrow = ObservationEncoder(image_size=32, image_feature_dim=8, image_width=16).image.backbone
    assert standard.num_features == 512 and narrow.num_features == 128
    assert narrow.layer1[0].conv1.out_channels == 16 and narrow.layer1[0].bn1.num_groups == 16
    assert standard.layer1[0].bn1.num_groups == 32
    assert sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in standard.parameters()) / 10
    critic = QCritic(CriticConfig(action_dim=2, hidden_dims=(8,), image_size=32, image_feature_dim=8, image_width=24))
    critic.save(tmp_path / "c")
    restored = QCritic.load(tmp_path / "c")
    assert restored.encoder.image.backbone.layer1[0].conv1.out_channels == 24 and restored.config.image_width == 24
    obs = Observation(images=torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8))
    critic.eval(), restored.eval()
    with torch.no_grad():
        torch.testing.assert_close(restored.encode(obs), critic.encode(obs))
    with pytest.raises(ConfigError, match="base width"):
        ObservationEncoder(image_size=32, image_width=4)


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    critic = critic_state(3, 2, hidden_dims=(8,), num_q_heads=3, value_head=True)
    with torch.no_grad():
        for p in critic.trainable_parameters():
            p.add_(0.1)  # online ≠ target, both must survive
    critic.save(tmp_path / "c")
    restored = QCritic.load(tmp_path / "c")
    obs, actions = Observation(state=torch.randn(2, 3)), torch.rand(2, 4, 2)
    for a, b in ((critic, restored), (critic.target, restored.target)):
        torch.testing.assert_close(a.q_values(a.encode(obs), actions), b.q_values(b.encode(obs), actions))
    custom = QCritic(CriticConfig(action_dim=2, hidden_dims=(4,), vocab_size=5, instruction_dim=2),
                     tokenize=lambda texts: [[1] for _ in texts])
    custom.save(tmp_path / "custom")
    with pytest.raises(ConfigError, match="tokenize"):
        QCritic.load(tmp_path / "custom")
    QCritic.load(tmp_path / "custom", tokenize=lambda texts: [[1] for _ in texts])
    with pytest.raises(CheckpointError):
        QCritic.load(tmp_path / "missing")


def test_bad_inputs_name_the_problem():
    critic = critic_state(3, 2, hidden_dims=(8,))
    with pytest.raises(ValueError, match="obs.state is None"):
        critic.encode(Observation(instructions=["a"]))
    features = critic.encode(Observation(state=torch.zeros(2, 3)))
    with pytest.raises(ValueError, match=r"\[B, N, A\]"):
        critic.q_values(features, torch.zeros(2, 2))
    with pytest.raises(ConfigError, match="value_head"):
        critic.v_values(features)
    with pytest.raises(ConfigError, match="reads nothing"):
        ObservationEncoder()
    with pytest.raises(ConfigError, match="num_q_heads"):
        CriticConfig(action_dim=2, num_q_heads=0)
    with pytest.raises(ConfigError, match="image_size"):
        critic_resnet18(image_size=16)
