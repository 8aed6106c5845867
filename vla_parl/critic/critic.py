"""`QCritic`: a light Q(s, a) ensemble with Polyak targets, separate from the policy.

Encode once, score many: ``features = critic.encode(obs)`` ([B, F]) then
``critic.q_values(features, actions)`` for actions [B, N, A] → Q [E, B, N] (E heads). The target
network is `critic.target` (a `QCritic` of the same shape, eval mode, no gradients), updated with
``critic.soft_update(tau)``:  θ̄ ← τ θ + (1 − τ) θ̄.

With `value_head=True` the critic also has V(s) (an MLP on the same features) for IQL.

A saved critic (`save` → `config.json`) also records what it reads (`inputs()`: image size, instruction,
proprio and state dims), where its instruction tokenizer comes from (`tokenizer_info()`), and the settings
of the PA-RL improvement operator it was trained with (`critic.improvement`, a plain dict that
`vla_parl.parl.ImprovementConfig.from_saved` reads; None for a critic saved before it was recorded).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from vla_parl.critic.configuration import CriticConfig
from vla_parl.critic.encoders import ObservationEncoder
from vla_parl.critic.ensemble import EnsembleQ
from vla_parl.critic.objectives.td import min_over_random_subset
from vla_parl.errors import ConfigError
from vla_parl.policy._common import read_checkpoint, write_checkpoint
from vla_parl.policy.base import Observation

__all__ = ["CriticConfig", "CriticOutput", "QCritic", "critic_resnet18", "critic_state"]


class CriticOutput(NamedTuple):
    q: torch.Tensor                 # [E, B, N]
    v: torch.Tensor | None          # [B] when the critic has a value head


class QCritic(nn.Module):
    """Q-ensemble critic (and optional V) over `Observation`s; normalised actions in [−1, 1].

    config: its shapes (`action_dim`, `vocab_size`, `proprio_dim`, `state_dim`; encoder parts are on when their
    size is > 0) and network knobs; `self.config` is that config describing the built network (see
    `vla_parl.critic.configuration`)."""

    def __init__(self, config: CriticConfig, *, tokenize: Callable[[list[str]], list[list[int]]] | None = None,
                 with_target: bool = True, tokenizer_source: str | None = None) -> None:
        super().__init__()
        if config.action_dim < 1:
            raise ConfigError(f"action_dim must be >= 1, got {config.action_dim} (a critic config from a recipe "
                              "gets it from the policy: CriticConfig.with_shapes)")
        # saved with the weights: the improvement operator's settings (set by whoever trains with one) and,
        # for a custom tokenizer, what it is (the callable itself is not saved)
        self.improvement: dict[str, Any] | None = None
        self.tokenizer_source = (tokenizer_source or _describe(tokenize)) if tokenize is not None else None
        self.action_dim = config.action_dim
        self.num_q_heads = config.num_q_heads
        self.encoder = ObservationEncoder(
            image_size=config.image_size, image_feature_dim=config.image_feature_dim, shift_pad=config.shift_pad,
            image_width=config.image_width, vocab_size=config.vocab_size, instruction_dim=config.instruction_dim,
            proprio_dim=config.proprio_dim, state_dim=config.state_dim, tokenize=tokenize,
            custom_tokenizer=config.custom_tokenizer)
        self.config = config = config.described(custom_tokenizer=tokenize is not None)
        self.q_heads = EnsembleQ(self.encoder.output_dim, config.action_dim, config.hidden_dims, config.num_q_heads)
        self.value = None
        if config.value_head:
            layers: list[nn.Module] = []
            width = self.encoder.output_dim
            for hidden in config.hidden_dims:
                layers += [nn.Linear(width, hidden), nn.ReLU()]
                width = hidden
            self.value = nn.Sequential(*layers, nn.Linear(width, 1))
        self.target: QCritic | None = None
        if with_target:
            target = QCritic(config, tokenize=tokenize, with_target=False)
            target.load_state_dict(self.state_dict())
            target.requires_grad_(False)
            self.target = target.eval()

    # ---- scoring ------------------------------------------------------------------------------------------
    def encode(self, obs: Observation) -> torch.Tensor:
        """State features [B, F] (random-shift augmented in training mode when images are used)."""
        return self.encoder(obs)

    def q_values(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q_i(s, a) for every head: features [B, F], actions [B, N, A] → [E, B, N]."""
        return self.q_heads(features, actions)

    def q_mean(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """mean_i Q_i(s, a): [B, N]."""
        return self.q_values(features, actions).mean(dim=0)

    def q_min(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """min_i Q_i(s, a): [B, N]."""
        return self.q_values(features, actions).min(dim=0).values

    def v_values(self, features: torch.Tensor) -> torch.Tensor:
        """V(s) [B] (needs `value_head=True`)."""
        if self.value is None:
            raise ConfigError("this critic has no value head; build it with value_head=True (needed for IQL)")
        return self.value(features).squeeze(-1)

    def forward(self, obs: Observation, actions: torch.Tensor) -> CriticOutput:
        """One pass for training (so DDP wrappers see it): Q [E, B, N] and V [B] (or None)."""
        features = self.encode(obs)
        return CriticOutput(q=self.q_values(features, actions),
                            v=self.v_values(features) if self.value is not None else None)

    @torch.no_grad()
    def target_q(self, obs: Observation, actions: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """min_{i ∈ pair} Q̄_i(s, a) with the target network: actions [B, N, A] → [B, N]."""
        target = self._target()
        q = target.q_values(target.encode(obs), actions)
        return min_over_random_subset(q, self.config.target_pair_size, generator)

    # ---- target network -----------------------------------------------------------------------------------
    def _target(self) -> "QCritic":
        if self.target is None:
            raise ConfigError("this QCritic was built with with_target=False (it is itself a target network)")
        return self.target

    @torch.no_grad()
    def soft_update(self, tau: float) -> None:
        """Polyak averaging θ̄ ← τ θ + (1 − τ) θ̄ (τ = 1 copies)."""
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {tau}")
        target = self._target()
        for p_target, p in zip(target.parameters(), self.trainable_parameters(), strict=True):
            p_target.lerp_(p.detach(), tau)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Online parameters only (the target network's are excluded): give these to the optimiser."""
        return [p for name, p in self.named_parameters() if not name.startswith("target.")]

    def train(self, mode: bool = True) -> "QCritic":
        super().train(mode)
        if self.target is not None:
            self.target.eval()
        return self

    # ---- what it reads ---------------------------------------------------------------------------------------
    def inputs(self) -> dict[str, Any]:
        """The observation fields the critic reads: {"image_size": px or 0, "instruction": bool,
        "proprio_dim": P or 0, "state_dim": S or 0} (callers that build observations check against it)."""
        c = self.config
        return {"image_size": c.image_size, "instruction": c.vocab_size > 0, "proprio_dim": c.proprio_dim,
                "state_dim": c.state_dim}

    def check_vectors(self, proprio: int | None = None, state: int | None = None) -> list[str]:
        """What is wrong with the proprio/state vectors offered to this critic, given their lengths (None: not
        given): one message per field it reads that is missing or of the wrong length; [] when they fit.
        Vectors it does not read are not checked (callers may always send them)."""
        problems = []
        fields = (("proprio", self.config.proprio_dim, proprio), ("state", self.config.state_dim, state))
        for name, dim, given in fields:
            if dim and given != dim:
                problems.append(f"'{name}' must be a vector of {dim} numbers: the critic reads a {dim}-dim {name} "
                                f"(got {'none' if given is None else f'{given} numbers'})")
        return problems

    def tokenizer_info(self) -> dict[str, Any] | None:
        """Where the instruction token ids come from: {"kind": "hashing" | "custom", "vocab_size", "source"}
        (None when the critic does not read the instruction). A custom tokenizer must be passed to `load`."""
        if not self.config.vocab_size:
            return None
        if not self.config.custom_tokenizer:
            return {"kind": "hashing", "vocab_size": self.config.vocab_size,
                    "source": "built-in HashingTokenizer (saved implicitly: nothing to pass to load)"}
        return {"kind": "custom", "vocab_size": self.config.vocab_size,
                "source": self.tokenizer_source or "a tokenize callable (not recorded); the toolkit passes the "
                                                    "policy's tokenizer, model.processor.tokenizer.encode_batch"}

    # ---- checkpoints ----------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write config.json + model.safetensors (online and target weights) into directory `path`.

        config.json holds the network config, `inputs()`, `tokenizer_info()` and `improvement` (the operator
        settings; null when none were set)."""
        write_checkpoint(path, {"kind": "QCritic", "config": asdict(self.config), "inputs": self.inputs(),
                                "instruction_tokenizer": self.tokenizer_info(), "improvement": self.improvement},
                         self)

    @classmethod
    def load(cls, path: str | Path, *, tokenize: Callable[[list[str]], list[list[int]]] | None = None,
             map_location: str | torch.device = "cpu") -> "QCritic":
        """Restore from `save` (also checkpoints written before `inputs`/`improvement` were recorded). A critic
        saved with a custom `tokenize` needs the same one passed again; for a critic with the built-in hashing
        tokenizer `tokenize` is ignored, so callers may always pass it."""
        config, state = read_checkpoint(path, "QCritic")
        custom = bool(config["config"].get("custom_tokenizer"))
        tokenizer = config.get("instruction_tokenizer") or {}
        if custom and tokenize is None:
            raise ConfigError(f"the critic in {path} reads instructions through a custom tokenizer "
                              f"({tokenizer.get('source', 'not recorded')}; vocabulary "
                              f"{config['config'].get('vocab_size')}), which is not saved: pass "
                              "QCritic.load(..., tokenize=that tokenizer), e.g. model.processor.tokenizer.encode_batch")
        critic = cls(CriticConfig(**config["config"]), tokenize=tokenize if custom else None,
                     tokenizer_source=tokenizer.get("source") if custom else None)
        critic.improvement = config.get("improvement")
        critic.load_state_dict(state)
        return critic.to(map_location)


def _describe(tokenize: Callable[..., Any]) -> str | None:
    """'PromptTokenizer.encode_batch' for a bound method; None for a lambda or closure."""
    owner = getattr(tokenize, "__self__", None)
    name = getattr(tokenize, "__name__", "")
    return f"{type(owner).__name__}.{name}" if owner is not None and name else None


def critic_resnet18(action_dim: int = 7, *, image_size: int = 112, shift_pad: int = 4, image_feature_dim: int = 256,
                    vocab_size: int = 4096, instruction_dim: int = 64,
                    tokenize: Callable[[list[str]], list[list[int]]] | None = None, proprio_dim: int = 0,
                    hidden_dims: tuple[int, ...] = (512, 512, 512), num_q_heads: int = 10,
                    target_pair_size: int = 2, value_head: bool = False) -> QCritic:
    """The official PA-RL image critic plus language: ResNet-18 from scratch (random shift, pad 4), MLP
    512-512-512 with the action in every layer, 10 heads, target = min over 2 random heads. Conditions on
    the instruction through a hashing tokenizer with `vocab_size` buckets, or through `tokenize` (then
    `vocab_size` must be that tokenizer's vocabulary size, e.g. 32000 for the OpenVLA/Llama-2 tokenizer).
    """
    return QCritic(CriticConfig(action_dim=action_dim, hidden_dims=hidden_dims, num_q_heads=num_q_heads,
                                target_pair_size=target_pair_size, value_head=value_head, image_size=image_size,
                                image_feature_dim=image_feature_dim, shift_pad=shift_pad, vocab_size=vocab_size,
                                instruction_dim=instruction_dim, proprio_dim=proprio_dim),
                   tokenize=tokenize)


def critic_state(state_dim: int, action_dim: int, *, hidden_dims: tuple[int, ...] = (256, 256),
                 num_q_heads: int = 2, target_pair_size: int = 2, value_head: bool = False) -> QCritic:
    """A critic on `Observation.state` only (state tasks, toy MDPs, tests)."""
    return QCritic(CriticConfig(action_dim=action_dim, hidden_dims=hidden_dims, num_q_heads=num_q_heads,
                                target_pair_size=target_pair_size, value_head=value_head, state_dim=state_dim))
