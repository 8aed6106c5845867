"""The non-VLA policy classes as the recipes build them: the official DDPM defaults and schedule, the losses by
hand, eval mode while sampling, and checkpoints with statistics and a manifest."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from vla_parl.errors import CheckpointError, ConfigError
from vla_parl.policy import (DiffusionPolicy, DiffusionPolicyConfig, GaussianPolicy, Observation, PolicyConfig,
                             StateEncoder)
from vla_parl.policy._common import checkpoint_kind
from vla_parl.policy.diffusion import make_beta_schedule


def test_official_ddpm_defaults_build_an_mlp_resnet_with_layernorm_and_dropout():
    config = DiffusionPolicyConfig(action_dim=7)
    assert (config.num_diffusion_steps, config.beta_schedule) == (5, "cosine")
    assert (config.hidden_dim, config.num_blocks, config.dropout, config.layer_norm) == (256, 3, 0.1, True)
    policy = DiffusionPolicy.for_state(3, 7)
    blocks = list(policy.eps_net.blocks)
    assert len(blocks) == 3
    for block in blocks:
        assert isinstance(block.norm, nn.LayerNorm) and block.norm.normalized_shape == (256,)
        assert isinstance(block.dropout, nn.Dropout) and block.dropout.p == 0.1
        assert block.up.out_features == 4 * 256 and block.down.out_features == 256
    assert policy.eps_net.out.out_features == 7
    assert policy.betas.shape == (5,)


def test_cosine_schedule_of_five_steps_by_hand():
    # f(t) = cos²(((t/5) + 0.008)/1.008 · π/2); β_k = 1 − f(k)/f(k−1), the last clipped to 0.999:
    # f(0..5) = 0.99984, 0.89856, 0.64737, 0.34076, 0.09403, ~0 → β = 0.10129, 0.27954, 0.47364, 0.72405, 0.999
    betas = make_beta_schedule("cosine", 5)
    torch.testing.assert_close(betas, torch.tensor([0.1012941, 0.2795438, 0.4736354, 0.7240524, 0.999],
                                                   dtype=torch.float64), atol=1e-6, rtol=0)
    # ᾱ_k = Π (1 − β_j): 0.89871, 0.64748, 0.34081, 0.09405, 0.09405 · 0.001
    policy = DiffusionPolicy.for_state(2, 2, hidden_dim=8, num_blocks=1)
    torch.testing.assert_close(policy.alpha_bar, torch.tensor([0.8987059, 0.6474782, 0.3408096, 0.0940456,
                                                               0.0940456e-3]), atol=1e-6, rtol=1e-5)


def test_diffusion_loss_by_hand():
    """With the ε-net's last layer zeroed and its bias b, ε_θ ≡ b, so L = mean over batch and dims of (ε − b)²."""
    torch.manual_seed(0)
    policy = DiffusionPolicy.for_state(2, 2, hidden_dim=8, num_blocks=1)
    with torch.no_grad():
        policy.eps_net.out.weight.zero_()
        policy.eps_net.out.bias.copy_(torch.tensor([0.1, -0.2]))
    obs, actions = Observation(state=torch.zeros(3, 2)), torch.tensor([[0.5, -0.5], [0.0, 1.0], [-1.0, 0.2]])
    torch.manual_seed(7)
    loss = policy.supervised_loss(obs, actions).loss
    torch.manual_seed(7)                     # the draws the loss makes: k ~ U{0..K−1} [B], then ε ~ N(0, I) [B, A]
    torch.randint(0, 5, (3,))
    eps = torch.randn(3, 2)
    expected = ((eps - torch.tensor([0.1, -0.2])) ** 2).mean()
    torch.testing.assert_close(loss, expected)


def test_gaussian_nll_by_hand():
    """μ = tanh(0) = 0, σ = 0.5 everywhere; a = (0.5, −1):
    NLL = Σ_d (a_d − μ_d)²/(2σ²) + log σ + ½ log 2π = (0.25 + 1)/0.5 + 2 log 0.5 + log 2π = 2.951583."""
    policy = GaussianPolicy.for_state(2, 2, hidden_dims=(4,))
    with torch.no_grad():
        last = policy.net[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, 0.0, math.log(0.5), math.log(0.5)]))
    out = policy.supervised_loss(Observation(state=torch.zeros(1, 2)), torch.tensor([[0.5, -1.0]]))
    assert out.loss.item() == pytest.approx(2.951583, abs=1e-6)
    assert out.stats["policy_std"] == pytest.approx(0.5)


def test_sampling_runs_in_eval_mode_and_restores_training():
    """Dropout 0.9 would make two draws with the same generator differ in training mode; sampling is eval."""
    torch.manual_seed(0)
    policy = DiffusionPolicy.for_state(2, 2, hidden_dim=16, num_blocks=2, dropout=0.9).train()
    obs = Observation(state=torch.randn(4, 2))
    a = policy.sample_actions(obs, 3, generator=torch.Generator().manual_seed(1)).actions
    b = policy.sample_actions(obs, 3, generator=torch.Generator().manual_seed(1)).actions
    torch.testing.assert_close(a, b)
    assert policy.training and policy.eps_net.training
    assert a.shape == (4, 3, 2) and a.abs().max() <= 1


def test_checkpoint_keeps_statistics_class_and_manifest(tmp_path):
    stats = {"tabletop": {"action": {"q01": [-2.0, 0.0], "q99": [2.0, 1.0], "mask": [True, False],
                                     "min": [-3.0, 0.0], "max": [3.0, 1.0]}}}
    policy = GaussianPolicy.for_state(2, 2, hidden_dims=(4,))
    policy.norm_stats, policy.unnorm_key = stats, "tabletop"
    policy.save(tmp_path / "p")
    assert checkpoint_kind(tmp_path / "p") == "GaussianPolicy" and checkpoint_kind(tmp_path / "none") is None
    assert set(json.loads((tmp_path / "p" / "manifest.json").read_text())["files"]) == {"config.json",
                                                                                       "model.safetensors"}
    restored = GaussianPolicy.load(tmp_path / "p")
    # un-normalise: a = ½ (x + 1)(q99 − q01) + q01 on masked dims; the unmasked (gripper) dim as is
    assert restored.unnormalize(torch.tensor([[0.5, 0.25]])).tolist() == [[1.0, 0.25]]
    with open(tmp_path / "p" / "model.safetensors", "r+b") as handle:   # a damaged file is named on load
        handle.seek(-1, 2)
        handle.write(b"\x00")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        GaussianPolicy.load(tmp_path / "p")


def test_policy_section_checks_and_stays_torch_free():
    with pytest.raises(ConfigError, match="policy.type"):
        PolicyConfig(type="transformer")
    with pytest.raises(ConfigError, match="image_size"):
        PolicyConfig(image_size=16)
    with pytest.raises(ConfigError, match="dropout"):
        DiffusionPolicyConfig(dropout=1.0)
    with pytest.raises(ConfigError, match="action_dim must be >= 1"):
        DiffusionPolicy(DiffusionPolicyConfig(), StateEncoder(2))   # action_dim 0: filled in by a recipe
    code = ("import sys; from vla_parl.policy import PolicyConfig; from vla_parl.recipes._configs import "
            "SFTRecipeConfig; assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
