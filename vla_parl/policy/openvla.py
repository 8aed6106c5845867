"""`OpenVLAPolicy`: OpenVLA behind the `Policy` protocol, with prefix-shared candidate sampling.

Sampling N candidates per observation costs about one generation: the image + prompt prefix is encoded
and prefilled **once** per observation, its KV cache is shared by the N continuations
(`PrefixState.repeat_interleave`), and only the A action tokens are decoded for the B·N rows together.
The official PA-RL code instead ran one `generate()` per candidate (N prefills).

Per decoding step t the next token is drawn from softmax(z_t / T) after optional restriction to the
256 action tokens (default on), top-k and top-p filtering; T = 0 means argmax (greedy decoding).
Draws use the Gumbel-max trick, argmax_i (z_i / T + g_i) with g_i ~ Gumbel(0, 1), an exact sample of
that categorical; with the restriction on, the LM head is evaluated on the 256 action rows only.
`log_probs` are Σ_t log p(token_t) under that sampling distribution.

Distillation (`supervised_loss`) re-tokenizes target actions into the 256 bins and applies the official
fine-tuning loss: cross-entropy on the A action tokens plus EOS. It uses `ActionTokenizer.retokenize`, under
which a decoded token re-encodes to itself: with the plain `encode` a sampled +1 token (31744, decoded to
the last bin centre) would come back as 31745, so every unmoved target would flip an open gripper's token.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from vla_parl.models.openvla.modeling import OpenVLA
from vla_parl.policy.base import CandidateActions, Observation, PolicyLoss

__all__ = ["OpenVLAPolicy", "SamplingSettings", "draw_tokens", "filter_logits"]


@dataclass
class SamplingSettings:
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    restrict_to_action_tokens: bool = True

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


def filter_logits(logits: torch.Tensor, settings: SamplingSettings, token_range: tuple[int, int] | None) -> torch.Tensor:
    """Apply action-token restriction, temperature, top-k and top-p to logits [R, V] (float32).

    `token_range` masks everything outside [start, end) when restriction is on; pass None when the logits
    already cover the action tokens only.
    """
    out = logits.float()
    if settings.restrict_to_action_tokens and token_range is not None:
        start, end = token_range
        masked = torch.full_like(out, float("-inf"))
        masked[:, start:end] = out[:, start:end]
        out = masked
    if settings.temperature > 0:
        out = out / settings.temperature
    if settings.top_k is not None and settings.top_k < out.shape[-1]:
        kth = torch.topk(out, settings.top_k, dim=-1).values[:, -1:]
        out = out.masked_fill(out < kth, float("-inf"))
    if settings.top_p is not None and settings.top_p < 1.0:
        sorted_logits, order = torch.sort(out, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = cumulative - sorted_logits.softmax(dim=-1) >= settings.top_p  # keep the token crossing p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        out = out.masked_fill(drop, float("-inf"))
    return out


def draw_tokens(logits: torch.Tensor, sample: bool, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per row of filtered logits [R, V]: argmax (sample=False) or an exact categorical draw
    by Gumbel-max, argmax_i (z_i + g_i), g_i = −log(−log u_i), u_i ~ U(0, 1). Returns (ids [R], log p [R])."""
    if sample:
        gen_device = generator.device if generator is not None else logits.device
        uniform = torch.rand(logits.shape, generator=generator, device=gen_device).to(logits.device)
        choice = (logits - torch.log(-torch.log(uniform.clamp_(min=1e-20)))).argmax(dim=-1)
    else:
        choice = logits.argmax(dim=-1)
    return choice, logits.log_softmax(dim=-1).gather(-1, choice[:, None]).squeeze(-1)


class OpenVLAPolicy:
    """PA-RL's view of an OpenVLA: normalised actions in, normalised candidates out."""

    def __init__(self, model: OpenVLA, sampling: SamplingSettings | None = None, action_dim: int | None = None,
                 unnorm_key: str | None = None) -> None:
        self.model = model
        self.sampling = sampling or SamplingSettings()
        self.unnorm_key = unnorm_key
        self.action_dim = int(action_dim if action_dim is not None else model.get_action_dim(unnorm_key))

    # ---- inputs ----------------------------------------------------------------------------------------------
    def _model_inputs(self, obs: Observation) -> tuple[torch.Tensor, list[list[int]]]:
        if obs.images is None or obs.instructions is None:
            raise ValueError("OpenVLAPolicy needs Observation.images (uint8 [B, H, W, 3]) and .instructions")
        images = [img for img in obs.images.detach().cpu().numpy()]
        return self.model.prepare_inputs(images, obs.instructions)

    # ---- sampling --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_tokens(self, pixel_values: torch.Tensor, prompt_ids: Sequence[Sequence[int]], num_samples: int,
                      settings: SamplingSettings | None = None, generator: torch.Generator | None = None,
                      share_prefix: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids [B, N, A] and their summed log-probs [B, N].

        share_prefix=False runs one prefill per candidate (the naive baseline, for benchmarks).
        """
        settings = settings or self.sampling
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        batch = pixel_values.shape[0]
        action_range = (self.model.action_tokenizer.token_start, self.model.action_tokenizer.token_end)
        logits_slice = action_range if settings.restrict_to_action_tokens else None
        offset = action_range[0] if logits_slice else 0
        if share_prefix:
            state = self.model.prefill(pixel_values, prompt_ids, logits_slice).repeat_interleave(num_samples)
        else:
            state = self.model.prefill(pixel_values.repeat_interleave(num_samples, dim=0),
                                       [p for p in prompt_ids for _ in range(num_samples)], logits_slice)
        tokens, log_probs = [], torch.zeros(batch * num_samples, device=pixel_values.device)
        for step in range(self.action_dim):
            choice, log_prob = draw_tokens(filter_logits(state.last_logits, settings, None), settings.temperature > 0,
                                           generator)
            log_probs += log_prob
            next_ids = choice + offset
            tokens.append(next_ids)
            if step + 1 < self.action_dim:
                state = self.model.decode_step(state, next_ids)
        ids = torch.stack(tokens, dim=1).view(batch, num_samples, self.action_dim)
        return ids, log_probs.view(batch, num_samples)

    def sample_actions(self, obs: Observation, num_samples: int, *,
                       generator: torch.Generator | None = None) -> CandidateActions:
        pixel_values, prompts = self._model_inputs(obs)
        was_training = self.model.training
        self.model.eval()
        try:
            ids, log_probs = self.sample_tokens(pixel_values.to(self.model.device), prompts, num_samples,
                                                generator=generator)
        finally:
            self.model.train(was_training)
        actions = self.model.action_tokenizer.decode(ids).to(torch.float32)
        return CandidateActions(actions=actions, log_probs=log_probs, tokens=ids)

    # ---- distillation ----------------------------------------------------------------------------------------
    def supervised_loss(self, obs: Observation, target_actions: torch.Tensor) -> PolicyLoss:
        if target_actions.ndim != 2 or target_actions.shape[1] != self.action_dim:
            raise ValueError(f"target_actions must be [B, {self.action_dim}] normalised actions, "
                             f"got {tuple(target_actions.shape)}")
        if obs.images is None or obs.instructions is None:
            raise ValueError("OpenVLAPolicy needs Observation.images and .instructions")
        tokens = self.model.action_tokenizer.retokenize(target_actions.detach().cpu())
        images = [img for img in obs.images.detach().cpu().numpy()]
        batch = self.model.processor.training_batch(images, obs.instructions, tokens).to(self.model.device)
        out = self.model(batch.input_ids, batch.pixel_values, batch.attention_mask, labels=batch.labels)
        stats = {"distill_loss": out.loss.item(), "action_accuracy": out.action_accuracy, "action_l1": out.action_l1}
        return PolicyLoss(out.loss, stats)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    # ---- acting in robot units -------------------------------------------------------------------------------
    def unnormalize(self, actions: torch.Tensor | np.ndarray) -> np.ndarray:
        array = actions.detach().cpu().numpy() if isinstance(actions, torch.Tensor) else np.asarray(actions)
        return self.model.action_normalizer(self.unnorm_key).unnormalize(array)

    # ---- save / load -----------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """LoRA-adapted models save only the adapter (`adapter/`); others save a full checkpoint (`model/`)."""
        from vla_parl.models.openvla.lora import has_lora, save_lora_adapter

        path = Path(path)
        if has_lora(self.model):
            save_lora_adapter(self.model, path / "adapter")
        else:
            self.model.save_pretrained(path / "model")

    @classmethod
    def load(cls, path: str | Path, base: OpenVLA | str | None = None, **kwargs: Any) -> "OpenVLAPolicy":
        """Restore from `save`: a full model, or an adapter applied to `base` (a model or checkpoint dir)."""
        from vla_parl.errors import CheckpointError
        from vla_parl.models.openvla.lora import load_lora_adapter

        path = Path(path)
        if (path / "model").is_dir():
            return cls(OpenVLA.from_pretrained(path / "model"), **kwargs)
        if (path / "adapter").is_dir():
            if base is None:
                raise CheckpointError(f"{path} holds a LoRA adapter; pass base= (the base model or its checkpoint)")
            model = OpenVLA.from_pretrained(base) if not isinstance(base, OpenVLA) else base
            return cls(load_lora_adapter(model, path / "adapter", trainable=True), **kwargs)
        raise CheckpointError(f"{path} has neither model/ nor adapter/ (written by OpenVLAPolicy.save)")
