"""`PolicyEngine`: turn a batch of act requests into actions with one batched model pass per kind of work.

For a batch of B rows (any mix of modes and unnorm keys):

1. preprocess all B images and prompts (`model.prepare_inputs`, or stack pixel values computed earlier)
   (the server computes each image's pixel values when the request arrives, on a thread pool, so this
   overlaps with the model working on the previous batch);
2. greedy tokens for every greedy and refined row in one `generate_action_tokens` call (A_max tokens;
   a row whose dataset has A < A_max actions keeps its first A tokens, which greedy decoding makes equal
   to a separate A-token generation);
3. sampled tokens for sample/refined rows, one prefix-shared `OpenVLAPolicy.sample_tokens` call per
   (N, temperature, A) group;
4. refined rows: candidates = [greedy, N samples] (normalised) → `ActionOptimizer` with the served critic,
   one call per (top_k, steps) group; the greedy action is a candidate, so Q(refined) ≥ Q(greedy);
5. per-row un-normalisation with that row's dataset statistics.

Per-row failures come back as exceptions in the result list; the batcher turns them into 5xx answers.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ActItem", "ActResult", "PolicyEngine", "ModelOutputError", "resize_for_critic"]


class ModelOutputError(RuntimeError):
    """The model (or its statistics) produced an unusable action; a server-side fault (HTTP 500)."""


@dataclass
class ActItem:
    """One row to act on (already validated). `unnorm_key` is resolved; option fields have their defaults."""

    image: np.ndarray            # uint8 [H, W, 3]
    instruction: str
    unnorm_key: str
    mode: str = "greedy"
    num_samples: int = 1
    temperature: float = 1.0
    top_k: int = 10
    steps: int = 10
    pixel_values: Any = None     # float [C, S, S] from `PolicyEngine.preprocess`, or None (done in `run`)


@dataclass
class ActResult:
    action: np.ndarray                       # float64 [A], robot units
    q: float | None = None
    greedy_q: float | None = None
    candidate_q: list[float] | None = None
    samples: np.ndarray | None = None        # float64 [N, A]


def resize_for_critic(images: list[np.ndarray], size: int) -> np.ndarray:
    """uint8 images of any sizes → uint8 [B, size, size, 3] (bilinear), so they stack for the critic."""
    from PIL import Image

    out = [img if img.shape[:2] == (size, size)
           else np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR)) for img in images]
    return np.stack(out)


class PolicyEngine:
    """The served model, an optional critic, and the batched `run(items)` the batcher calls."""

    def __init__(self, model: Any, critic: Any | None = None, *, checkpoint: str | None = None,
                 critic_path: str | None = None, step_size: float = 3e-4) -> None:
        self.model = model.eval()
        self.critic = critic.eval() if critic is not None else None
        self.checkpoint = checkpoint
        self.critic_path = critic_path
        self.step_size = step_size
        self.unnorm_keys = sorted(model.norm_stats)
        self._normalizers = {key: model.action_normalizer(key) for key in self.unnorm_keys}
        self.action_dims = {key: n.action_dim for key, n in self._normalizers.items()}
        self._policies: dict[int, Any] = {}

    # ---- loading -----------------------------------------------------------------------------------------
    @classmethod
    def load(cls, checkpoint: str | Path, critic: str | Path | None = None, *, device: str | None = None,
             dtype: str | None = None, step_size: float = 3e-4) -> "PolicyEngine":
        """Load an OpenVLA checkpoint (and a `QCritic.save` directory) for serving."""
        import torch

        from vla_parl.critic import QCritic
        from vla_parl.models import OpenVLA

        torch_dtype = getattr(torch, dtype) if dtype else None
        model = OpenVLA.from_pretrained(checkpoint, device=device, torch_dtype=torch_dtype)
        q_critic = None
        if critic is not None:
            # QCritic.load uses the VLA tokenizer only for critics trained with it
            q_critic = QCritic.load(critic, tokenize=model.processor.tokenizer.encode_batch, map_location=model.device)
        return cls(model, q_critic, checkpoint=str(checkpoint), critic_path=str(critic) if critic else None,
                   step_size=step_size)

    # ---- metadata ----------------------------------------------------------------------------------------
    @property
    def default_unnorm_key(self) -> str | None:
        return self.unnorm_keys[0] if len(self.unnorm_keys) == 1 else None

    @property
    def action_dim(self) -> int:
        key = self.default_unnorm_key or (self.unnorm_keys[0] if self.unnorm_keys else None)
        return self.action_dims[key] if key else 0

    def resolve_unnorm_key(self, unnorm_key: str | None) -> str:
        """The dataset key to use, or `vla_parl.errors.UnnormKeyError` naming the available keys."""
        from vla_parl.models.openvla.normalization import resolve_unnorm_key

        return resolve_unnorm_key(self.model.norm_stats, unnorm_key)

    def refined_problem(self, unnorm_key: str) -> str | None:
        """Why refined mode cannot serve this key (no critic / dims differ), or None when it can."""
        if self.critic is None:
            return "mode 'refined' needs a critic; start the server with --critic DIR (or use greedy/sample)"
        config = self.critic.config
        if config.proprio_dim or config.state_dim:
            return ("the served critic reads proprio/state, which this API does not carry; serve a critic "
                    "on images and instructions only")
        if self.critic.action_dim != self.action_dims[unnorm_key]:
            return (f"the served critic scores {self.critic.action_dim}-dim actions but unnorm_key {unnorm_key!r} "
                    f"has {self.action_dims[unnorm_key]}-dim actions")
        return None

    def preprocess(self, image: np.ndarray) -> Any:
        """The model's image transform for one image (float [C, S, S]); thread-safe, so the server runs it
        while the model works on the previous batch."""
        return self.model.processor.pixel_values([image])[0]

    # ---- the batched call ----------------------------------------------------------------------------------
    def run(self, items: list[ActItem]) -> list[ActResult | BaseException]:
        """Act on every item with batched model calls; failures are returned per row."""
        import torch

        with torch.inference_mode():
            if all(i.pixel_values is not None for i in items):   # preprocessed at admission (same transform)
                pixel_values = torch.stack([i.pixel_values for i in items])
                prompt_ids = self.model.processor.batch_prompt_ids([i.instruction for i in items])
            else:
                pixel_values, prompt_ids = self.model.prepare_inputs([i.image for i in items],
                                                                     [i.instruction for i in items])
            pixel_values = pixel_values.to(self.model.device)
            normalised: list[np.ndarray | None] = [None] * len(items)   # chosen action per row, normalised
            greedy: dict[int, np.ndarray] = {}
            samples: dict[int, np.ndarray] = {}
            greedy_rows = [r for r, i in enumerate(items) if i.mode in ("greedy", "refined")]
            if greedy_rows:
                num_tokens = max(self.action_dims[items[r].unnorm_key] for r in greedy_rows)
                tokens = self.model.generate_action_tokens(pixel_values[greedy_rows],
                                                           [prompt_ids[r] for r in greedy_rows], num_tokens)
                decoded = self.model.action_tokenizer.decode(tokens.cpu().numpy())
                for j, r in enumerate(greedy_rows):
                    greedy[r] = decoded[j, : self.action_dims[items[r].unnorm_key]]
            groups: dict[tuple[int, float, int], list[int]] = defaultdict(list)
            for r, item in enumerate(items):
                if item.mode in ("sample", "refined"):
                    groups[(item.num_samples, item.temperature, self.action_dims[item.unnorm_key])].append(r)
            for (num_samples, temperature, action_dim), rows in groups.items():
                samples.update(zip(rows, self._sample(pixel_values[rows], [prompt_ids[r] for r in rows],
                                                      num_samples, temperature, action_dim)))
        results: list[ActResult | BaseException | None] = [None] * len(items)
        for r, item in enumerate(items):
            if item.mode == "greedy":
                normalised[r] = greedy[r]
            elif item.mode == "sample":
                normalised[r] = samples[r][0]
        refined_groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for r, item in enumerate(items):
            if item.mode == "refined":
                refined_groups[(item.top_k, item.steps)].append(r)
        extras: dict[int, dict[str, Any]] = {}
        for (top_k, steps), rows in refined_groups.items():
            for r, (action, extra) in zip(rows, self._refine(items, rows, greedy, samples, top_k, steps)):
                normalised[r], extras[r] = action, extra
        for r, item in enumerate(items):
            try:
                results[r] = self._finish(item, normalised[r], samples.get(r), extras.get(r, {}))
            except Exception as exc:  # noqa: BLE001 - reported to that row's client as a 5xx
                results[r] = exc
        return results  # type: ignore[return-value]

    def _sample(self, pixel_values: Any, prompt_ids: list[list[int]], num_samples: int, temperature: float,
                action_dim: int) -> list[np.ndarray]:
        from vla_parl.policy.openvla import OpenVLAPolicy, SamplingSettings

        policy = self._policies.get(action_dim)
        if policy is None:
            policy = self._policies[action_dim] = OpenVLAPolicy(self.model, action_dim=action_dim)
        ids, _ = policy.sample_tokens(pixel_values, prompt_ids, num_samples,
                                      settings=SamplingSettings(temperature=temperature))
        return list(self.model.action_tokenizer.decode(ids.cpu().numpy()))   # each [N, A]

    def _refine(self, items: list[ActItem], rows: list[int], greedy: dict[int, np.ndarray],
                samples: dict[int, np.ndarray], top_k: int, steps: int) -> list[tuple[np.ndarray, dict[str, Any]]]:
        import torch

        from vla_parl.parl.action_optimizer import ActionOptimizer
        from vla_parl.policy.base import Observation

        assert self.critic is not None
        device = next(self.critic.parameters()).device
        candidates = torch.as_tensor(np.stack([np.concatenate([greedy[r][None], samples[r]]) for r in rows]),
                                     dtype=torch.float32, device=device)             # [B, 1 + N, A]
        images = resize_for_critic([items[r].image for r in rows], self.critic.config.image_size) \
            if self.critic.config.image_size else None
        obs = Observation(images=torch.as_tensor(images, device=device) if images is not None else None,
                          instructions=[items[r].instruction for r in rows])
        optimizer = ActionOptimizer(top_k=top_k, num_steps=steps, step_size=self.step_size)
        with torch.no_grad():
            features = self.critic.encode(obs)
            greedy_q = self.critic.q_mean(features, candidates[:, :1]).squeeze(1)    # [B]
        out = optimizer(self.critic, None, candidates, features=features)
        return [(out.actions[b].double().cpu().numpy(),
                 {"q": float(out.q[b]), "greedy_q": float(greedy_q[b]),
                  "candidate_q": [float(q) for q in out.candidate_q[b]]}) for b in range(len(rows))]

    def _finish(self, item: ActItem, normalised: np.ndarray | None, samples: np.ndarray | None,
                extra: dict[str, Any]) -> ActResult:
        if normalised is None:
            raise ModelOutputError(f"no action was computed for mode {item.mode!r}")
        normalizer = self._normalizers[item.unnorm_key]
        action = np.asarray(normalizer.unnormalize(normalised), dtype=np.float64)
        if not np.all(np.isfinite(action)):
            raise ModelOutputError(f"the model produced a non-finite action {action.tolist()} for unnorm_key "
                                   f"{item.unnorm_key!r}; check that dataset's statistics (q01/q99) in the checkpoint")
        unnorm_samples = None
        if item.mode == "sample" and samples is not None:
            unnorm_samples = np.asarray(normalizer.unnormalize(samples), dtype=np.float64)
        return ActResult(action=action, samples=unnorm_samples, **extra)
