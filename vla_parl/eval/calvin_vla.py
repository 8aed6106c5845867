"""An OpenVLA checkpoint as a CALVIN evaluation policy (greedy, or PA-RL-refined with a critic).

The policy is a picklable factory: each evaluation worker loads the checkpoint once, on first use.
Observations: the static camera `obs["rgb_obs"]["rgb_static"]`; actions are the model's un-normalised
7-D relative actions (CALVIN's `rel_actions` convention), the gripper thresholded at 0 by the harness.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["OpenVLACalvinPolicy"]


class OpenVLACalvinPolicy:
    def __init__(self, checkpoint: str, unnorm_key: str | None = None, critic: str | None = None,
                 num_samples: int = 32, top_k: int = 10, local_steps: int = 10, step_size: float = 3e-4,
                 device: str = "cpu", seed: int = 0) -> None:
        self.checkpoint, self.unnorm_key, self.critic_dir = checkpoint, unnorm_key, critic
        self.num_samples, self.top_k, self.local_steps, self.step_size = num_samples, top_k, local_steps, step_size
        self.device, self.seed = device, seed
        self._model = self._critic = self._optimizer = self._policy = self._generator = None

    def _load(self) -> None:
        import torch

        from vla_parl.models import OpenVLA

        self._model = OpenVLA.from_pretrained(self.checkpoint, device=self.device)
        self._model.action_normalizer(self.unnorm_key)  # fail fast on a bad key, listing the choices
        if self.critic_dir:
            from vla_parl.critic import QCritic
            from vla_parl.parl.action_optimizer import ActionOptimizer
            from vla_parl.policy.openvla import OpenVLAPolicy

            self._critic = QCritic.load(self.critic_dir, tokenize=self._model.processor.tokenizer.encode_batch,
                                        map_location=self.device).eval()
            self._optimizer = ActionOptimizer(top_k=self.top_k, num_steps=self.local_steps, step_size=self.step_size)
            self._policy = OpenVLAPolicy(self._model, unnorm_key=self.unnorm_key)
            self._generator = torch.Generator().manual_seed(self.seed)

    def reset(self) -> None:
        if self._model is None:
            self._load()

    def act(self, obs: dict[str, Any], instruction: str) -> np.ndarray:
        if self._model is None:
            self._load()
        image = np.asarray(obs["rgb_obs"]["rgb_static"], dtype=np.uint8)
        if self._critic is None:
            return self._model.predict_action(image, instruction, unnorm_key=self.unnorm_key)
        import torch

        from vla_parl.policy.base import Observation

        batch = Observation(images=torch.from_numpy(image[None]).to(self.device), instructions=[instruction])
        candidates = self._policy.sample_actions(batch, self.num_samples, generator=self._generator)
        best = self._optimizer(self._critic, batch, candidates.actions).actions
        return self._policy.unnormalize(best)[0]
