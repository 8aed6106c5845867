"""Where actions come from during rollouts: a local model, any batched callable, or a remote policy server.

Everything the rollout loop needs is `ActionSource.act_batch(images, instructions) -> float [N, A]`, one
call per environment step for all N environments. `serving.client.PolicyClient` already has that method,
so remote robots / remote policies plug in as they are (nothing from `serving` is imported here).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

__all__ = ["ActionSource", "ModelSource", "CallableSource", "as_action_source"]


@runtime_checkable
class ActionSource(Protocol):
    """N images (uint8 [H, W, 3]) and N instructions → actions float [N, A] in robot units."""

    def act_batch(self, images: Sequence[np.ndarray], instructions: Sequence[str]) -> np.ndarray:
        ...


class ModelSource:
    """A local OpenVLA: one batched `predict_action` (greedy) call for all environments."""

    def __init__(self, model: Any, unnorm_key: str | None = None) -> None:
        self.model = model
        self.unnorm_key = unnorm_key

    def act_batch(self, images: Sequence[np.ndarray], instructions: Sequence[str]) -> np.ndarray:
        return np.asarray(self.model.predict_action(list(images), list(instructions), unnorm_key=self.unnorm_key))


class CallableSource:
    """Any `policy(obs_batch) -> actions [N, A]`, with obs_batch = {"image": uint8 [N, H, W, 3],
    "instruction": list of N strings}."""

    def __init__(self, policy: Callable[[dict[str, Any]], Any]) -> None:
        self.policy = policy

    def act_batch(self, images: Sequence[np.ndarray], instructions: Sequence[str]) -> np.ndarray:
        actions = self.policy({"image": np.stack(list(images)), "instruction": list(instructions)})
        if hasattr(actions, "detach"):
            actions = actions.detach().cpu().numpy()
        return np.asarray(actions)


def as_action_source(obj: Any, unnorm_key: str | None = None) -> ActionSource:
    """An `ActionSource` from: an object with `act_batch` (e.g. `PolicyClient`; used as is), a model with
    `predict_action` (→ `ModelSource`), or a callable on an obs batch (→ `CallableSource`)."""
    if hasattr(obj, "act_batch"):
        return obj
    if hasattr(obj, "predict_action"):
        return ModelSource(obj, unnorm_key)
    if callable(obj):
        return CallableSource(obj)
    raise TypeError(f"{type(obj).__name__} is not an action source: it needs act_batch(images, instructions), "
                    "predict_action(images, instructions) or to be callable on an observation batch")
