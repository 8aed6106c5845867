"""BridgeData (RLDS) offline evaluation: how well a policy's actions match held-out demonstrations.

For every step of a held-out split, with the ground-truth action a (robot units) normalised to
x = normalize(a) and tokenized to t = encode(x):

- token accuracy per dim:  mean[ t̂_d = t_d ]
- L1 / MSE per dim, in normalised units (x̂ vs x) and in original units (â = unnormalize(x̂) vs a)
- gripper accuracy:        mean[ (â_g > ½) = (a_g > ½) ] on the last dim (open = 1)

`greedy` rows use the VLA's greedy action; with a critic, `refined` rows use PA-RL's improvement
operator (N samples → top-k by Q → local gradient steps → argmax), the action a refined server would send.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

__all__ = ["ActionMetrics", "evaluate_actions", "plot_bridge_metrics", "batched"]


@dataclass
class ActionMetrics:
    """Running sums of per-dimension action errors."""

    action_dim: int
    count: int = 0
    token_correct: np.ndarray = field(init=False)
    abs_norm: np.ndarray = field(init=False)
    sq_norm: np.ndarray = field(init=False)
    abs_raw: np.ndarray = field(init=False)
    sq_raw: np.ndarray = field(init=False)
    gripper_correct: int = 0

    def __post_init__(self) -> None:
        for name in ("token_correct", "abs_norm", "sq_norm", "abs_raw", "sq_raw"):
            setattr(self, name, np.zeros(self.action_dim))

    def update(self, pred_tokens: np.ndarray, true_tokens: np.ndarray, pred_norm: np.ndarray, true_norm: np.ndarray,
               pred_raw: np.ndarray, true_raw: np.ndarray) -> None:
        self.count += len(true_tokens)
        self.token_correct += (pred_tokens == true_tokens).sum(axis=0)
        self.abs_norm += np.abs(pred_norm - true_norm).sum(axis=0)
        self.sq_norm += ((pred_norm - true_norm) ** 2).sum(axis=0)
        self.abs_raw += np.abs(pred_raw - true_raw).sum(axis=0)
        self.sq_raw += ((pred_raw - true_raw) ** 2).sum(axis=0)
        self.gripper_correct += int(((pred_raw[:, -1] > 0.5) == (true_raw[:, -1] > 0.5)).sum())

    def summary(self) -> dict[str, Any]:
        n = max(self.count, 1)

        def per_dim(total: np.ndarray) -> dict[str, Any]:
            values = total / n
            return {"per_dim": values.tolist(), "mean": float(values.mean())}

        return {"num_steps": self.count, "token_accuracy": per_dim(self.token_correct),
                "l1_normalized": per_dim(self.abs_norm), "mse_normalized": per_dim(self.sq_norm),
                "l1": per_dim(self.abs_raw), "mse": per_dim(self.sq_raw),
                "gripper_accuracy": self.gripper_correct / n}


def batched(steps: Iterable[dict], batch_size: int, max_steps: int | None = None) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for i, step in enumerate(steps):
        if max_steps is not None and i >= max_steps:
            break
        batch.append(step)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def evaluate_actions(model, steps: Iterable[dict], unnorm_key: str | None = None, *, batch_size: int = 16,
                     max_steps: int | None = None, critic=None, improvement=None, seed: int = 0,
                     progress: bool = True) -> dict[str, Any]:
    """Greedy (and, with `critic`, PA-RL-refined) action metrics over standardised steps.

    steps: dicts with `image` uint8 [H, W, 3], `instruction` str and `action` [A] in robot units
    (e.g. `vla_parl.data.iter_steps(data_dir, "bridge_orig", split="val")`).
    improvement: the operator's `ImprovementConfig` (None: the one saved with the critic); refined rows act
    with its max-Q choice, sampling from a generator seeded with `seed`.
    """
    from vla_parl.parl.operator import ImprovementOperator
    from vla_parl.policy.base import Observation
    from vla_parl.policy.openvla import OpenVLAPolicy

    normalizer = model.action_normalizer(unnorm_key)
    tokenizer = model.action_tokenizer
    greedy = ActionMetrics(normalizer.action_dim)
    refined = ActionMetrics(normalizer.action_dim) if critic is not None else None
    policy = OpenVLAPolicy(model, action_dim=normalizer.action_dim, unnorm_key=unnorm_key)
    operator = None
    if critic is not None:
        operator = (ImprovementOperator(critic, policy, improvement) if improvement is not None
                    else ImprovementOperator.from_critic(critic, policy))
    generator = torch.Generator().manual_seed(seed)
    bar = _progress(progress, max_steps)
    was_training = model.training
    model.eval()
    try:
        for batch in batched(steps, batch_size, max_steps):
            images = [np.asarray(s["image"], dtype=np.uint8) for s in batch]
            instructions = [str(s["instruction"]) for s in batch]
            true_raw = np.stack([np.asarray(s["action"], dtype=np.float64) for s in batch])
            true_norm = normalizer.normalize(true_raw)
            true_tokens = tokenizer.encode(true_norm)
            pixel_values, prompts = model.prepare_inputs(images, instructions)
            pred_tokens = model.generate_action_tokens(pixel_values.to(model.device), prompts,
                                                       normalizer.action_dim).cpu().numpy()
            pred_norm = tokenizer.decode(pred_tokens)
            greedy.update(pred_tokens, true_tokens, pred_norm, true_norm, normalizer.unnormalize(pred_norm), true_raw)
            if refined is not None:
                obs = Observation(images=torch.from_numpy(_common_size(images)), instructions=instructions,
                                  **_critic_vectors(critic, batch))
                best = operator.improve(obs, generator=generator, choice="argmax").actions.cpu().numpy()
                best_tokens = tokenizer.retokenize(best)   # as distillation labels it (a sampled 31744 stays)
                best_norm = tokenizer.decode(best_tokens)  # what the VLA would emit after distillation
                refined.update(best_tokens, true_tokens, best_norm, true_norm, normalizer.unnormalize(best_norm),
                               true_raw)
            bar.advance(len(batch))
    finally:
        bar.close()
        model.train(was_training)
    result: dict[str, Any] = {"unnorm_key": unnorm_key, "greedy": greedy.summary()}
    if refined is not None:
        config = operator.config
        result["refined"] = {**refined.summary(), "num_samples": config.num_samples, "top_k": config.top_k,
                             "local_steps": config.num_steps, "step_size": config.step_size}
    return result


def _critic_vectors(critic: Any, batch: list[dict]) -> dict[str, torch.Tensor]:
    """The steps' `proprio` (and `state`) when the critic reads them, or a ConfigError saying what is missing."""
    from vla_parl.errors import ConfigError

    out: dict[str, torch.Tensor] = {}
    for name, dim in (("proprio", critic.config.proprio_dim), ("state", critic.config.state_dim)):
        if not dim:
            continue
        values = [s.get(name) for s in batch]
        problems = critic.check_vectors(**{name: None if values[0] is None else len(values[0])})
        if problems or any(v is None for v in values):
            raise ConfigError(f"the critic cannot score these steps: {'; '.join(problems) or name + ' is missing'} "
                              f"(the data's steps carry {sorted(batch[0])})")
        out[name] = torch.as_tensor(np.stack([np.asarray(v, dtype=np.float32) for v in values]))
    return out


def _common_size(images: list[np.ndarray]) -> np.ndarray:
    """Stack images, resizing to the first one's size when they differ (the critic resizes anyway)."""
    from PIL import Image

    h, w = images[0].shape[:2]
    same = [im if im.shape[:2] == (h, w) else np.asarray(Image.fromarray(im).resize((w, h), Image.BILINEAR))
            for im in images]
    return np.stack(same)


class _progress:
    def __init__(self, enabled: bool, total: int | None) -> None:
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc="bridge eval", unit="step")

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def plot_bridge_metrics(result: dict[str, Any], path: str | Path) -> Path:
    """Bar charts of per-dimension token accuracy and normalised L1 (greedy vs refined)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [k for k in ("greedy", "refined") if k in result]
    dims = len(result["greedy"]["token_accuracy"]["per_dim"])
    labels = ["x", "y", "z", "roll", "pitch", "yaw", "grip"][:dims] if dims == 7 else [str(i) for i in range(dims)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    width = 0.8 / len(rows)
    for j, row in enumerate(rows):
        xs = np.arange(dims) + j * width
        axes[0].bar(xs, result[row]["token_accuracy"]["per_dim"], width, label=row)
        axes[1].bar(xs, result[row]["l1_normalized"]["per_dim"], width, label=row)
    for ax, title in zip(axes, ("action-token accuracy", "L1 (normalised units)")):
        ax.set_xticks(np.arange(dims) + width * (len(rows) - 1) / 2, labels)
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_results(result: dict[str, Any], output_dir: str | Path) -> tuple[Path, Path]:
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path = output_dir / "bridge_results.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    return json_path, plot_bridge_metrics(result, output_dir / "bridge_metrics.png")
