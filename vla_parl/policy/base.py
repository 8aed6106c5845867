"""The policy interface PA-RL sees: sample candidates, supervised loss on given actions, save/load.

PA-RL never looks inside a policy (no gradients flow through it, no access to tokens or noise
schedules). Any policy class — an autoregressive VLA, a diffusion policy, a Gaussian MLP — plugs in by
implementing `Policy`. Actions crossing this interface are always *normalised* to [-1, 1]^A.

Shapes: B states, N candidates per state, A action dims.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch

__all__ = ["Observation", "CandidateActions", "PolicyLoss", "Policy"]


@dataclass
class Observation:
    """A batch of B observations. Fields a given policy/critic does not use may be None.

    images:       uint8 [B, H, W, 3] camera frames (RGB)
    instructions: B natural-language instructions
    proprio:      float [B, P] proprioceptive state
    state:        float [B, S] low-dimensional state (state-based tasks and toy MDPs)
    """

    images: torch.Tensor | None = None
    instructions: list[str] | None = None
    proprio: torch.Tensor | None = None
    state: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sizes = {name: len(value) for name, value in self._present().items()}
        if not sizes:
            raise ValueError("an Observation needs at least one of images, instructions, proprio, state")
        if len(set(sizes.values())) != 1:
            raise ValueError(f"Observation fields disagree on the batch size: {sizes}")
        if self.images is not None and (self.images.ndim != 4 or self.images.shape[-1] != 3):
            raise ValueError(f"Observation.images must be [B, H, W, 3], got {tuple(self.images.shape)}")

    def _present(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "extras" and getattr(self, f.name) is not None}

    def __len__(self) -> int:
        return len(next(iter(self._present().values())))

    def to(self, device: torch.device | str) -> "Observation":
        moved = {k: v.to(device) for k, v in self._present().items() if isinstance(v, torch.Tensor)}
        return replace(self, **moved)

    def index(self, idx: torch.Tensor | slice | list[int]) -> "Observation":
        """Select a subset of the batch (rows `idx`)."""
        out: dict[str, Any] = {}
        for name, value in self._present().items():
            if isinstance(value, torch.Tensor):
                out[name] = value[idx]
            else:
                ids = range(len(value))[idx] if isinstance(idx, slice) else [int(i) for i in idx]
                out[name] = [value[i] for i in ids]
        return replace(self, **out)

    def repeat_interleave(self, n: int) -> "Observation":
        """Each observation repeated n times in place: [B] → [B·n] (for scoring N candidates)."""
        out: dict[str, Any] = {}
        for name, value in self._present().items():
            out[name] = (value.repeat_interleave(n, dim=0) if isinstance(value, torch.Tensor)
                         else [v for v in value for _ in range(n)])
        return replace(self, **out)


class CandidateActions(NamedTuple):
    """N sampled candidates per state.

    actions:   float [B, N, A], normalised to [-1, 1]
    log_probs: float [B, N] log π(a|s) where the policy can give it (sum over action tokens for the
               VLA), else None
    tokens:    int64 [B, N, A] action token ids for token policies, else None
    """

    actions: torch.Tensor
    log_probs: torch.Tensor | None = None
    tokens: torch.Tensor | None = None


class PolicyLoss(NamedTuple):
    """A differentiable supervised loss plus detached statistics for logging."""

    loss: torch.Tensor
    stats: dict[str, float]


@runtime_checkable
class Policy(Protocol):
    """What PA-RL needs from a policy. All actions are normalised [-1, 1]."""

    action_dim: int

    def sample_actions(self, obs: Observation, num_samples: int, *,
                       generator: torch.Generator | None = None) -> CandidateActions:
        """Sample `num_samples` candidate actions per observation: actions [B, N, A]."""
        ...

    def supervised_loss(self, obs: Observation, target_actions: torch.Tensor) -> PolicyLoss:
        """Distillation loss for target actions [B, A] (CE for token VLAs, ε-MSE for diffusion, NLL...)."""
        ...

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters the distillation optimiser updates (e.g. LoRA adapters only)."""
        ...

    def save(self, path: str | Path) -> None:
        """Write everything needed to restore the policy to directory `path`."""
        ...
