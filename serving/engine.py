"""`PolicyEngine`: turn a batch of act requests into actions with one batched model pass per kind of work.

For a batch of B rows (any mix of modes and unnorm keys):

1. preprocess all B images and prompts (`model.prepare_inputs`, or stack pixel values computed earlier)
   (the server computes each image's pixel values when the request arrives, on a thread pool, so this
   overlaps with the model working on the previous batch);
2. greedy tokens for every greedy and refined row in one `generate_action_tokens` call (A_max tokens;
   a row whose dataset has A < A_max actions keeps its first A tokens, which greedy decoding makes equal
   to a separate A-token generation);
3. sampled tokens for sample/refined rows, one prefix-shared `OpenVLAPolicy.sample_tokens` call per
   (N, temperature, A) group; a row with a `seed` is sampled alone from its own generator, so its answer is
   reproducible and does not depend on what it was batched with;
4. refined rows: `ImprovementOperator.improve` of the served critic on the N samples with the greedy action
   included as a candidate (so Q(refined) ≥ Q(greedy)), the max-Q choice, one call per (top_k, steps) group;
   the critic reads the rows' images, instructions and, when it needs them, their `proprio` / `state`;
5. per-row un-normalisation with that row's dataset statistics.

The operator's settings are the ones saved with the critic (`QCritic.save`), overridden by the server's
flags (`overrides`) and then by each request's num_samples / top_k / steps.

Per-row failures come back as exceptions in the result list; the batcher turns them into 5xx answers.

Hot swap: the served policy (model, its statistics, its version number) is one `_ServedPolicy`, never changed.
`run` reads it once when a batch starts and uses it to the end, so `swap(model, version)` — a single
reference assignment, made by `serving.policy_updates` after it loaded the new model off the request path —
takes effect for the next batch; a batch already running finishes on the version it started with, and each
`ActResult.policy_version` names the version that computed that row. The critic stays across swaps.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vla_parl.errors import VLAParlError

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
    proprio: np.ndarray | None = None   # float32 [P], read by a critic with proprio_dim = P (refined)
    state: np.ndarray | None = None     # float32 [S], read by a critic with state_dim = S (refined)
    seed: int | None = None             # sample/refined: draw this row's samples from its own seeded generator


@dataclass
class ActResult:
    action: np.ndarray                       # float64 [A], robot units
    q: float | None = None
    greedy_q: float | None = None
    candidate_q: list[float] | None = None
    samples: np.ndarray | None = None        # float64 [N, A]
    policy_version: int = 0                  # the served version that computed this row (0: the start checkpoint)


class _ServedPolicy:
    """One served model with what `run` derives from it. Model, version and statistics never change after
    construction (a swap makes a new one), so a batch that holds it sees one consistent version."""

    def __init__(self, model: Any, version: int) -> None:
        self.model = model.eval()
        self.version = version
        self.unnorm_keys = sorted(model.norm_stats)
        self.normalizers = {key: model.action_normalizer(key) for key in self.unnorm_keys}
        self.action_dims = {key: n.action_dim for key, n in self.normalizers.items()}
        self.policies: dict[int, Any] = {}   # action_dim → OpenVLAPolicy over this model (sampling), built lazily


def resize_for_critic(images: list[np.ndarray], size: int) -> np.ndarray:
    """uint8 images of any sizes → uint8 [B, size, size, 3] (bilinear), so they stack for the critic."""
    from PIL import Image

    out = [img if img.shape[:2] == (size, size)
           else np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR)) for img in images]
    return np.stack(out)


def _legacy_improvement() -> Any:
    """The refined-mode settings for a critic saved without its own (what the server always used)."""
    from vla_parl.parl import ImprovementConfig

    return ImprovementConfig(num_samples=16, top_k=10, num_steps=10, step_size=3e-4, action_mask="except_last")


class PolicyEngine:
    """The served model, an optional critic, and the batched `run(items)` the batcher calls.

    improvement: the refined mode's `ImprovementConfig` (None: the one saved with the critic, or the server's
    historical settings — 16 samples, top-10, 10 steps of 3e-4 — for a critic saved without one).
    overrides: `ImprovementConfig` fields replacing those (None values keep them): the server's flags.
    """

    def __init__(self, model: Any, critic: Any | None = None, *, checkpoint: str | None = None,
                 critic_path: str | None = None, improvement: Any | None = None,
                 overrides: dict[str, Any] | None = None) -> None:
        from vla_parl.parl import ImprovementOperator

        self._served = _ServedPolicy(model, 0)
        self._swap_lock = threading.Lock()   # concurrent swaps: one wins, the other is refused as not newer
        self.critic = critic.eval() if critic is not None else None
        self.checkpoint = checkpoint
        self.critic_path = critic_path
        self.operator = None
        if self.critic is not None:
            overrides = overrides or {}
            self.operator = (ImprovementOperator(self.critic, None, improvement, **overrides) if improvement
                             else ImprovementOperator.from_critic(self.critic, fallback=_legacy_improvement(),
                                                                  **overrides))

    # ---- the served policy (swapped between batches) ---------------------------------------------------------
    @property
    def model(self) -> Any:
        """The model new batches use."""
        return self._served.model

    @property
    def policy_version(self) -> int:
        """The version new batches use: 0 for the checkpoint served at start, k after `swap(model, k)`."""
        return self._served.version

    @property
    def unnorm_keys(self) -> list[str]:
        return self._served.unnorm_keys

    @property
    def action_dims(self) -> dict[str, int]:
        return self._served.action_dims

    def swap(self, model: Any, version: int) -> None:
        """Serve `model` as `version` from the next batch on (a running batch finishes on its own version).

        `VLAParlError` when the version is not newer, or when the model cannot replace the served one without
        a restart: requests are validated (unnorm key, action dims) and their images preprocessed before they
        reach a batch, so it must have the same datasets, action dims and image transform (its statistics
        may differ)."""
        candidate = _ServedPolicy(model, version)
        with self._swap_lock:
            served, problem = self._served, None
            if version <= served.version:
                problem = f"it is not newer than the served version {served.version}"
            elif candidate.action_dims != served.action_dims:
                problem = (f"its datasets/action dims {candidate.action_dims} differ from the served model's "
                           f"{served.action_dims}")
            elif (model.processor.image_transform.to_preprocessor_config()
                  != served.model.processor.image_transform.to_preprocessor_config()):
                problem = "its image transform (preprocessor_config.json) differs from the served model's"
            if problem:
                raise VLAParlError(f"cannot hot-swap to version {version}: {problem}; restart the server with it")
            self._served = candidate   # one reference: the next batch's `run` reads it

    # ---- loading -----------------------------------------------------------------------------------------
    @classmethod
    def load(cls, checkpoint: str | Path, critic: str | Path | None = None, *, device: str | None = None,
             dtype: str | None = None, overrides: dict[str, Any] | None = None) -> "PolicyEngine":
        """Load an OpenVLA checkpoint (and a `QCritic.save` directory) for serving.

        overrides: `ImprovementConfig` fields replacing the settings saved with the critic (None values keep
        them): the `vla-parl serve` flags --num-samples, --top-k, --steps, --step-size."""
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
                   overrides=overrides)

    @property
    def improvement(self) -> Any:
        """The refined mode's `ImprovementConfig` (None without a critic): request defaults come from it."""
        return self.operator.config if self.operator is not None else None

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
        if self.critic.action_dim != self.action_dims[unnorm_key]:
            return (f"the served critic scores {self.critic.action_dim}-dim actions but unnorm_key {unnorm_key!r} "
                    f"has {self.action_dims[unnorm_key]}-dim actions")
        return None

    def vector_problems(self, proprio: np.ndarray | None, state: np.ndarray | None) -> list[str]:
        """For a refined row: what is wrong with its proprio/state for the served critic (missing or of the
        wrong length, naming the field and the length expected); [] when they fit or nothing reads them."""
        if self.critic is None:
            return []
        return self.critic.check_vectors(proprio=None if proprio is None else len(proprio),
                                         state=None if state is None else len(state))

    def preprocess(self, image: np.ndarray) -> Any:
        """The model's image transform for one image (float [C, S, S]); thread-safe, so the server runs it
        while the model works on the previous batch."""
        return self.model.processor.pixel_values([image])[0]

    # ---- the batched call ----------------------------------------------------------------------------------
    def run(self, items: list[ActItem]) -> list[ActResult | BaseException]:
        """Act on every item with batched model calls, all on the policy served when the batch starts;
        failures are returned per row."""
        import torch

        served = self._served   # this batch's version, whatever `swap` does meanwhile
        model = served.model
        with torch.inference_mode():
            if all(i.pixel_values is not None for i in items):   # preprocessed at admission (same transform)
                pixel_values = torch.stack([i.pixel_values for i in items])
                prompt_ids = model.processor.batch_prompt_ids([i.instruction for i in items])
            else:
                pixel_values, prompt_ids = model.prepare_inputs([i.image for i in items],
                                                                [i.instruction for i in items])
            pixel_values = pixel_values.to(model.device)
            normalised: list[np.ndarray | None] = [None] * len(items)   # chosen action per row, normalised
            greedy: dict[int, np.ndarray] = {}
            samples: dict[int, np.ndarray] = {}
            greedy_rows = [r for r, i in enumerate(items) if i.mode in ("greedy", "refined")]
            if greedy_rows:
                num_tokens = max(served.action_dims[items[r].unnorm_key] for r in greedy_rows)
                tokens = model.generate_action_tokens(pixel_values[greedy_rows],
                                                      [prompt_ids[r] for r in greedy_rows], num_tokens)
                decoded = model.action_tokenizer.decode(tokens.cpu().numpy())
                for j, r in enumerate(greedy_rows):
                    greedy[r] = decoded[j, : served.action_dims[items[r].unnorm_key]]
            # rows with a seed are sampled alone (the last key part keeps them apart), from their own generator
            groups: dict[tuple[int, float, int, int | None], list[int]] = defaultdict(list)
            for r, item in enumerate(items):
                if item.mode in ("sample", "refined"):
                    groups[(item.num_samples, item.temperature, served.action_dims[item.unnorm_key],
                            None if item.seed is None else r)].append(r)
            for (num_samples, temperature, action_dim, seeded), rows in groups.items():
                generator = None if seeded is None else torch.Generator().manual_seed(items[seeded].seed)
                samples.update(zip(rows, self._sample(served, pixel_values[rows], [prompt_ids[r] for r in rows],
                                                      num_samples, temperature, action_dim, generator)))
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
                results[r] = self._finish(served, item, normalised[r], samples.get(r), extras.get(r, {}))
            except Exception as exc:  # noqa: BLE001 - reported to that row's client as a 5xx
                results[r] = exc
        return results  # type: ignore[return-value]

    @staticmethod
    def _sample(served: _ServedPolicy, pixel_values: Any, prompt_ids: list[list[int]], num_samples: int,
                temperature: float, action_dim: int, generator: Any = None) -> list[np.ndarray]:
        from vla_parl.policy.openvla import OpenVLAPolicy, SamplingSettings

        policy = served.policies.get(action_dim)
        if policy is None:
            policy = served.policies[action_dim] = OpenVLAPolicy(served.model, action_dim=action_dim)
        ids, _ = policy.sample_tokens(pixel_values, prompt_ids, num_samples,
                                      settings=SamplingSettings(temperature=temperature), generator=generator)
        return list(served.model.action_tokenizer.decode(ids.cpu().numpy()))   # each [N, A]

    def _refine(self, items: list[ActItem], rows: list[int], greedy: dict[int, np.ndarray],
                samples: dict[int, np.ndarray], top_k: int, steps: int) -> list[tuple[np.ndarray, dict[str, Any]]]:
        import torch

        assert self.critic is not None and self.operator is not None
        device = next(self.critic.parameters()).device
        include = torch.as_tensor(np.stack([greedy[r][None] for r in rows]), dtype=torch.float32, device=device)
        candidates = torch.as_tensor(np.stack([samples[r] for r in rows]), dtype=torch.float32, device=device)
        operator = self.operator.with_config(top_k=top_k, num_steps=steps)
        with torch.no_grad():
            features = self.critic.encode(self.critic_observation([items[r] for r in rows]).to(device))
        out = operator.improve(None, candidates=candidates, include=include, features=features, choice="argmax")
        greedy_q = out.sample_q[:, 0]                                                     # the included greedy
        return [(out.actions[b].double().cpu().numpy(),
                 {"q": float(out.q[b]), "greedy_q": float(greedy_q[b]),
                  "candidate_q": [float(q) for q in out.candidate_q[b]]}) for b in range(len(rows))]

    def critic_observation(self, items: list[ActItem]) -> Any:
        """What the served critic reads of these rows: images (resized to its size), instructions, and the
        rows' proprio / state vectors when it reads them (checked at admission by `vector_problems`)."""
        import torch

        from vla_parl.policy.base import Observation

        assert self.critic is not None
        config = self.critic.config
        images = resize_for_critic([i.image for i in items], config.image_size) if config.image_size else None

        def vectors(name: str, dim: int) -> torch.Tensor | None:
            if not dim:
                return None
            return torch.as_tensor(np.stack([np.asarray(getattr(i, name), dtype=np.float32) for i in items]))

        return Observation(images=torch.as_tensor(images) if images is not None else None,
                           instructions=[i.instruction for i in items],
                           proprio=vectors("proprio", config.proprio_dim), state=vectors("state", config.state_dim))

    @staticmethod
    def _finish(served: _ServedPolicy, item: ActItem, normalised: np.ndarray | None, samples: np.ndarray | None,
                extra: dict[str, Any]) -> ActResult:
        if normalised is None:
            raise ModelOutputError(f"no action was computed for mode {item.mode!r}")
        normalizer = served.normalizers[item.unnorm_key]
        action = np.asarray(normalizer.unnormalize(normalised), dtype=np.float64)
        if not np.all(np.isfinite(action)):
            raise ModelOutputError(f"the model produced a non-finite action {action.tolist()} for unnorm_key "
                                   f"{item.unnorm_key!r}; check that dataset's statistics (q01/q99) in the checkpoint")
        unnorm_samples = None
        if item.mode == "sample" and samples is not None:
            unnorm_samples = np.asarray(normalizer.unnormalize(samples), dtype=np.float64)
        return ActResult(action=action, samples=unnorm_samples, policy_version=served.version, **extra)
