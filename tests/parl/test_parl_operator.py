"""ImprovementOperator: one improve() for every caller, its random draws, and its settings saved with the critic."""

from __future__ import annotations

import json

import pytest
import torch

from tests.parl._parl_toys import QuadraticCritic
from vla_parl.critic import QCritic, critic_state
from vla_parl.critic.critic import CriticConfig
from vla_parl.errors import ConfigError
from vla_parl.parl import ImprovementConfig, ImprovementOperator, PolicyUpdate
from vla_parl.policy import CandidateActions, Observation


class UniformPolicy:
    """a ~ U[−1, 1]^A, drawn from the generator it is given (so a test can count the draws)."""

    action_dim = 3

    def sample_actions(self, obs: Observation, num_samples: int, *,
                       generator: torch.Generator | None = None) -> CandidateActions:
        return CandidateActions(actions=2 * torch.rand(len(obs), num_samples, 3, generator=generator) - 1)


def _obs(B: int = 4) -> Observation:
    return Observation(state=0.5 * (2 * torch.rand(B, 3, generator=torch.Generator().manual_seed(1)) - 1))


def test_improve_samples_n_then_optimizes_with_the_same_draws_as_sampling_by_hand():
    operator = ImprovementOperator(QuadraticCritic(3), UniformPolicy(), num_samples=6, top_k=2, num_steps=3,
                                   step_size=0.1, action_mask="all")
    obs = _obs()
    g = torch.Generator().manual_seed(7)
    out = operator.improve(obs, generator=g)
    # by hand: the same generator state → the same N candidates → the same optimisation
    g_hand = torch.Generator().manual_seed(7)
    candidates = UniformPolicy().sample_actions(obs, 6, generator=g_hand).actions
    by_hand = ImprovementOperator(QuadraticCritic(3), config=operator.config).improve(obs, candidates=candidates)
    torch.testing.assert_close(out.actions, by_hand.actions)
    torch.testing.assert_close(out.samples, candidates)
    assert out.candidates.shape == (4, 2, 3) and out.sample_q.shape == (4, 6)
    # argmax draws nothing after sampling: both generators are in the same state
    assert torch.equal(g.get_state(), g_hand.get_state())
    # softmax draws one index per state after the samples
    g_soft = torch.Generator().manual_seed(7)
    operator.with_config(choice="softmax").improve(obs, generator=g_soft)
    assert not torch.equal(g_soft.get_state(), g_hand.get_state())


def test_included_actions_are_candidates_so_the_result_is_never_worse():
    critic = QuadraticCritic(3)
    obs = _obs()
    include = obs.state[:, None, :].clone()                         # the optimum itself: Q = 0, the best possible
    out = ImprovementOperator(critic, UniformPolicy(), num_samples=5, top_k=3, num_steps=0).improve(
        obs, include=include, generator=torch.Generator().manual_seed(0))
    assert out.samples.shape == (4, 6, 3) and torch.equal(out.samples[:, 0], include[:, 0])
    torch.testing.assert_close(out.actions, include[:, 0])
    torch.testing.assert_close(out.sample_q[:, 0], torch.zeros(4))
    with pytest.raises(ValueError, match=r"include must be \[B, M, A\]"):
        ImprovementOperator(critic, UniformPolicy()).improve(obs, include=include[:2])
    with pytest.raises(ValueError, match="no policy"):
        ImprovementOperator(critic).improve(obs)


def test_policy_update_and_its_operator_share_one_implementation():
    update = PolicyUpdate(UniformPolicy(), None, QuadraticCritic(3),
                          ImprovementConfig(num_samples=5, top_k=2, num_steps=2, step_size=0.1, action_mask="all",
                                            choice="softmax"),
                          generator=torch.Generator().manual_seed(3))
    assert update.operator.config == ImprovementConfig(num_samples=5, top_k=2, num_steps=2, step_size=0.1,
                                                       action_mask="all", choice="softmax")
    obs = _obs()
    expected = update.operator.improve(obs, generator=torch.Generator().manual_seed(3)).actions
    torch.testing.assert_close(update.improve(obs).actions, expected)


def _saved_critic(tmp_path, improvement: dict | None):
    torch.manual_seed(0)
    critic = critic_state(3, 3, hidden_dims=(8,))
    critic.improvement = improvement
    critic.save(tmp_path / "critic")
    return tmp_path / "critic"


def test_the_operator_settings_travel_with_the_critic(tmp_path):
    settings = ImprovementConfig(num_samples=5, top_k=3, num_steps=4, step_size=0.02, ensemble_reduce="min",
                                 action_mask="all")
    path = _saved_critic(tmp_path, settings.to_dict())
    saved = json.loads((path / "config.json").read_text())
    assert saved["inputs"] == {"image_size": 0, "instruction": False, "proprio_dim": 0, "state_dim": 3}
    assert saved["instruction_tokenizer"] is None and saved["improvement"]["step_size"] == 0.02
    critic = QCritic.load(path)
    operator = ImprovementOperator.from_critic(critic, UniformPolicy())
    assert operator.config == settings
    # explicit overrides win; None keeps the saved value (an unset CLI flag or request field)
    overridden = ImprovementOperator.from_critic(critic, top_k=1, step_size=None)
    assert (overridden.config.top_k, overridden.config.step_size, overridden.config.num_samples) == (1, 0.02, 5)
    with pytest.raises(ConfigError, match="unknown improvement setting"):
        ImprovementOperator.from_critic(critic, topk=1)


def test_critics_saved_before_the_settings_were_recorded_still_load(tmp_path):
    path = _saved_critic(tmp_path, None)
    config = json.loads((path / "config.json").read_text())
    for key in ("inputs", "instruction_tokenizer", "improvement"):   # the old format: kind + config only
        del config[key]
    (path / "config.json").write_text(json.dumps(config))
    critic = QCritic.load(path)
    assert critic.improvement is None
    assert ImprovementOperator.from_critic(critic).config == ImprovementConfig()
    legacy = ImprovementConfig(num_samples=16, top_k=4, step_size=0.05)
    assert ImprovementOperator.from_critic(critic, fallback=legacy).config == legacy


def test_a_bad_saved_setting_names_the_key(tmp_path):
    path = _saved_critic(tmp_path, {**ImprovementConfig().to_dict(), "topk": 3})
    with pytest.raises(ConfigError, match="improvement.topk.*did you mean 'improvement.top_k'"):
        ImprovementOperator.from_critic(QCritic.load(path))


def test_the_critic_records_its_inputs_and_tokenizer(tmp_path):
    class Words:
        def encode_batch(self, texts: list[str]) -> list[list[int]]:
            return [[len(w) % 10 for w in t.split()] for t in texts]

    critic = QCritic(CriticConfig(action_dim=2, hidden_dims=(4,), vocab_size=10, instruction_dim=2, proprio_dim=5,
                                  state_dim=2), tokenize=Words().encode_batch)
    assert critic.inputs() == {"image_size": 0, "instruction": True, "proprio_dim": 5, "state_dim": 2}
    assert critic.tokenizer_info() == {"kind": "custom", "vocab_size": 10, "source": "Words.encode_batch"}
    critic.save(tmp_path / "critic")
    with pytest.raises(ConfigError, match=r"custom tokenizer \(Words.encode_batch; vocabulary 10\).*tokenize="):
        QCritic.load(tmp_path / "critic")
    assert QCritic.load(tmp_path / "critic", tokenize=Words().encode_batch).tokenizer_source == "Words.encode_batch"
    assert critic.check_vectors(proprio=5, state=2) == []
    assert critic.check_vectors(proprio=4) == [
        "'proprio' must be a vector of 5 numbers: the critic reads a 5-dim proprio (got 4 numbers)",
        "'state' must be a vector of 2 numbers: the critic reads a 2-dim state (got none)"]
    hashing = critic_state(3, 2)
    assert hashing.tokenizer_info() is None and hashing.check_vectors() == ["'state' must be a vector of 3 numbers: "
                                                                            "the critic reads a 3-dim state (got none)"]
