"""Every policy class through the same recipes: `run sft policy.type=diffusion|gaussian` → `run critic` →
`run parl` (an offline refresh and an online round in the tabletop simulator) through the real CLI, on tiny
sizes; the outputs load back, and the policy PA-RL distilled is the saved one, changed by its own BC loss."""

from __future__ import annotations

import pytest
import torch

from tests.recipes._cli import last_values, run_cli

_DATA = ["data.num_episodes=3", "data.max_episode_steps=5", "run.threads=1", "run.log_every=1"]
_NETS = {"diffusion": ["policy.diffusion.hidden_dim=32", "policy.diffusion.num_blocks=1"],
         "gaussian": ["policy.gaussian.hidden_dims=[32]"]}
_LOSS = {"diffusion": "diffusion_loss", "gaussian": "nll"}
_OPERATOR = ["action_optimizer.num_samples=4", "action_optimizer.top_k=2", "action_optimizer.num_steps=2",
             "objective.num_samples=2"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["diffusion", "gaussian"])
def test_sft_critic_parl_for_a_non_vla_policy_class(kind, tmp_path):
    from vla_parl.critic import QCritic
    from vla_parl.policy import DiffusionPolicy, GaussianPolicy, Observation
    from vla_parl.utils.manifest import verify_manifest

    cls = DiffusionPolicy if kind == "diffusion" else GaussianPolicy
    sft, critic, parl = tmp_path / "sft", tmp_path / "critic", tmp_path / "parl"
    proc, _ = run_cli("run", "sft", "--output-dir", str(sft), f"policy.type={kind}", "policy.image_size=32",
                      "policy.image_width=16", "policy.image_feature_dim=8", *_NETS[kind], *_DATA, "optim.steps=4",
                      "optim.batch_size=8", "run.checkpoint_every=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    bc = cls.load(sft / "final" / "model")
    verify_manifest(sft / "final" / "model")
    assert bc.unnorm_key == "tabletop" and bc.obs_encoder.proprio_dim == 7      # the tabletop data's proprio
    assert bc.obs_encoder.image.backbone.layer1[0].conv1.out_channels == 16     # policy.image_width
    losses = last_values(sft / "metrics.jsonl", f"sft/{_LOSS[kind]}")
    assert sorted(losses) == [1, 2, 3, 4] and all(v == v for v in losses.values())

    proc, _ = run_cli("run", "critic", "--output-dir", str(critic), f"policy={sft / 'final' / 'model'}", *_DATA,
                      *_OPERATOR, "optim.steps=3", "optim.batch_size=8", "candidate_cache_states=8",
                      "critic.hidden_dims=[16]", "critic.instruction_dim=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded_critic = QCritic.load(critic / "final" / "critic")
    assert loaded_critic.tokenizer_info()["kind"] == "hashing"     # no VLA tokenizer: hashed instruction words

    proc, _ = run_cli("run", "parl", "--output-dir", str(parl), f"policy={sft / 'final' / 'model'}",
                      f"critic.checkpoint={critic / 'final' / 'critic'}", *_DATA, *_OPERATOR,
                      "parl.cache_states=8", "parl.offline_refreshes=1", "parl.distill_steps_per_refresh=2",
                      "online.rounds=1", "online.episodes_per_round=2", "online.distill_steps_per_round=2",
                      "online.critic_steps_per_round=2", "policy_optim.batch_size=4", "critic_optim.batch_size=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    distilled = last_values(parl / "metrics.jsonl", f"policy/{_LOSS[kind]}")
    assert sorted(distilled) == [1, 2, 3, 4]                       # 2 offline + 2 online distillation steps
    assert last_values(parl / "metrics.jsonl", "online/collect_success")   # an online round collected episodes
    final = cls.load(parl / "final" / "model")
    QCritic.load(parl / "final" / "critic")
    changed = [not torch.equal(a, b) for a, b in zip(bc.state_dict().values(), final.state_dict().values())]
    assert any(changed)                                            # distillation moved the policy
    assert final.norm_stats == bc.norm_stats                       # the statistics travel with it
    obs = Observation(images=torch.zeros(2, 56, 56, 3, dtype=torch.uint8), instructions=["reach"] * 2,
                      proprio=torch.zeros(2, 7))
    actions = final.sample_actions(obs, 3, generator=torch.Generator().manual_seed(0)).actions
    assert actions.shape == (2, 3, 7) and actions.abs().max() <= 1


def test_non_vla_sft_refuses_openvla_augmentation():
    proc, _ = run_cli("run", "sft", "policy.type=diffusion", "data.image_aug=true")
    assert proc.returncode != 0 and "set data.image_aug=false" in proc.stderr


@pytest.mark.slow
def test_diffusion_sft_stopped_then_resumed_matches_an_uninterrupted_run(tmp_path):
    """The DDPM draws (step k, noise ε, random shifts) come from the checkpointed RNG: a resumed run logs the
    losses of the run it continues, bit for bit."""
    args = ["policy.type=diffusion", "policy.image_size=32", "policy.image_feature_dim=8", *_NETS["diffusion"],
            *_DATA, "optim.steps=4", "optim.batch_size=4", "run.checkpoint_every=2"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert run_cli("run", "sft", "--output-dir", str(whole), *args)[0].returncode == 0
    assert run_cli("run", "sft", "--output-dir", str(parts), *args, "run.stop_after=2")[0].returncode == 0
    assert not (parts / "final").exists()
    proc, _ = run_cli("run", "sft", "--output-dir", str(parts), "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = last_values(whole / "metrics.jsonl", "sft/diffusion_loss")
    assert sorted(expected) == [1, 2, 3, 4]
    assert last_values(parts / "metrics.jsonl", "sft/diffusion_loss") == expected
