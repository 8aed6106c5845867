"""The PA-RL update steps run on OpenVLA through the same Protocol as any other policy (with LoRA)."""

from __future__ import annotations

import torch

from vla_parl.critic import QCritic
from vla_parl.critic.critic import CriticConfig
from vla_parl.models import openvla_tiny
from vla_parl.models.openvla.lora import LoraSettings, apply_lora
from vla_parl.parl import ImprovementConfig
from vla_parl.parl.batch import TransitionBatch
from vla_parl.parl.critic_update import CriticUpdate, CriticUpdateConfig
from vla_parl.parl.policy_update import PolicyUpdate
from vla_parl.policy.base import Observation
from vla_parl.policy.openvla import OpenVLAPolicy


def _small_image_critic(tokenize, vocab_size):
    return QCritic(CriticConfig(action_dim=7, hidden_dims=(32, 32), num_q_heads=2, image_size=32, image_feature_dim=16,
                                vocab_size=vocab_size, instruction_dim=8), tokenize=tokenize)


def _obs(batch: int, seed: int) -> Observation:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, 56, 56, 3), dtype=torch.uint8, generator=g)
    return Observation(images=images, instructions=["pick up the red block", "push the blue block left"][:batch])


def test_policy_update_distills_optimized_actions_into_lora_adapters():
    torch.manual_seed(0)
    model = apply_lora(openvla_tiny(image_size=56), LoraSettings(r=4, alpha=8))
    policy = OpenVLAPolicy(model)
    tokenizer = model.processor.tokenizer
    critic = _small_image_critic(lambda texts: tokenizer.encode_batch(texts), tokenizer.vocab_size)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    update = PolicyUpdate(policy, torch.optim.AdamW(policy.trainable_parameters(), lr=1e-3), critic,
                          ImprovementConfig(num_samples=8, top_k=4, num_steps=3, step_size=0.05), generator=torch.Generator().manual_seed(0))
    stats = update.step(_obs(2, 0))
    assert stats["policy/distill_loss"] > 0 and stats["policy/opt/local_gain"] >= 0
    assert stats["policy/opt/global_gain"] >= 0 and 0 <= stats["policy/action_accuracy"] <= 1
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed), "only LoRA adapters may change"


def test_critic_update_uses_openvla_candidates_for_the_td_target():
    model = openvla_tiny(image_size=56)
    policy = OpenVLAPolicy(model)
    tokenizer = model.processor.tokenizer
    critic = _small_image_critic(lambda texts: tokenizer.encode_batch(texts), tokenizer.vocab_size)
    update = CriticUpdate(critic, torch.optim.Adam(critic.trainable_parameters(), lr=1e-3), policy,
                          ImprovementConfig(top_k=2, num_steps=1, step_size=0.05),
                          CriticUpdateConfig(objective="calql", num_samples=4, cql_n_actions=2),
                          generator=torch.Generator().manual_seed(0))
    batch = TransitionBatch(obs=_obs(2, 1), actions=torch.zeros(2, 7), rewards=torch.tensor([-1.0, 0.0]),
                            next_obs=_obs(2, 2), dones=torch.tensor([0.0, 1.0]), mc_returns=torch.tensor([-5.0, 0.0]))
    first = update.step(batch)
    for _ in range(5):
        last = update.step(batch)
    assert all(torch.isfinite(torch.tensor(v)) for v in last.values())
    assert set(first) == set(last)
