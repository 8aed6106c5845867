"""`OpenVLA`: the Prismatic/OpenVLA vision-language-action model on current transformers and timm.

Architecture (spec/openvla.md): a (fused) timm ViT backbone → MLP projector → Llama-2 (transformers'
`LlamaForCausalLM`). The multimodal sequence is ``[emb(BOS), projected patches, emb(rest of prompt)]``.
Actions are 7 greedy tokens among the last 256 ids of the text vocabulary, decoded to bin centres and
un-normalised with the statistics of the dataset named by `unnorm_key`.

Batched inference left-pads whole multimodal sequences (patches stay right after each row's BOS) and
passes explicit position ids, so row b of a batch sees exactly what it would see alone.
"""

from __future__ import annotations

import functools
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vla_parl.errors import CheckpointError
from vla_parl.models.openvla.action_tokenizer import ActionTokenizer
from vla_parl.models.openvla.checkpoint import (CheckpointOrigin, iter_checkpoint_tensors, read_checkpoint_json,
                                                resolve_checkpoint_dir, save_state_dict)
from vla_parl.models.openvla.configuration import GREEDY_ACTION_TOKENS_KEY, OpenVLAConfig
from vla_parl.models.openvla.normalization import ActionNormalizer, resolve_unnorm_key
from vla_parl.models.openvla.processor import IGNORE_INDEX, OpenVLAProcessor
from vla_parl.models.openvla.projector import Projector
from vla_parl.models.openvla.vision import VisionBackbone
from vla_parl.utils.files import atomic_write_text

__all__ = ["OpenVLA", "OpenVLAOutput", "PrefixState", "resolve_attn_implementation"]

_ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")


def resolve_attn_implementation(name: str | None) -> str:
    """`sdpa` (default), `eager` (reference) or `flash_attention_2` (falls back to sdpa when unavailable)."""
    name = name or "sdpa"
    if name not in _ATTN_IMPLEMENTATIONS:
        raise ValueError(f"attn_implementation {name!r} is not one of {_ATTN_IMPLEMENTATIONS}")
    if name == "flash_attention_2":
        import importlib.util

        if importlib.util.find_spec("flash_attn") is None or not torch.cuda.is_available():
            warnings.warn("flash_attention_2 needs the flash-attn package and a CUDA GPU "
                          "(pip install 'vla-parl[gpu]'); falling back to sdpa", stacklevel=3)
            return "sdpa"
    return name


@functools.cache
def _cache_argument() -> str:
    """The KV-cache argument of transformers' LlamaModel.forward: `cache` (>= 5.2x), `past_key_values` before."""
    import inspect

    from transformers import LlamaModel

    return "cache" if "cache" in inspect.signature(LlamaModel.forward).parameters else "past_key_values"


def _returned_cache(output: Any) -> Any:
    """The KV cache of a LlamaModel output, under either name (`cache` or `past_key_values`)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


@dataclass
class OpenVLAOutput:
    """forward() result.

    Without labels: `logits` [B, T, V] over the whole multimodal sequence.
    With labels: `loss` (mean CE over supervised positions), `logits` [M, V] at the M supervised
    positions only (the LM head is not run elsewhere), `target_ids` [M], and detached metrics:
    `action_accuracy` (argmax = label on action tokens) and `action_l1` (L1 of decoded normalised actions).
    """

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    target_ids: torch.Tensor | None = None
    action_accuracy: float | None = None
    action_l1: float | None = None


@dataclass
class PrefixState:
    """KV cache after prefilling image + prompt, ready for token-by-token decoding.

    cache: transformers Cache; attention_mask: [B, T] (0 on left padding); next_position: [B, 1];
    last_logits: [B, V] float32 next-token logits — or [B, end − start] when `logits_slice` restricts the
    LM head to token ids [start, end) (e.g. the 256 action tokens: 125× less LM-head work per step).
    """

    cache: Any
    attention_mask: torch.Tensor
    next_position: torch.Tensor
    last_logits: torch.Tensor
    logits_slice: tuple[int, int] | None = None  # last_logits cover token ids [start, end) only

    def repeat_interleave(self, n: int) -> "PrefixState":
        """Share this prefix with n continuations per row: [B] → [B·n]. The prefix is not recomputed."""
        self.cache.batch_repeat_interleave(n)
        return PrefixState(self.cache, self.attention_mask.repeat_interleave(n, dim=0),
                           self.next_position.repeat_interleave(n, dim=0), self.last_logits.repeat_interleave(n, dim=0),
                           self.logits_slice)


class OpenVLA(nn.Module):
    """OpenVLA-7B (and tiny variants): vision backbone + projector + Llama, with batched greedy actions."""

    def __init__(self, config: OpenVLAConfig, processor: OpenVLAProcessor | None = None,
                 attn_implementation: str | None = "sdpa") -> None:
        super().__init__()
        from transformers import LlamaConfig, LlamaForCausalLM

        self.config = config
        self.processor = processor
        self.vision_backbone = VisionBackbone(config.timm_model_ids, config.image_sizes, config.timm_model_kwargs,
                                              config.timm_override_act_layers)
        llama_config = LlamaConfig(**config.llama_config_dict)
        llama_config._attn_implementation = resolve_attn_implementation(attn_implementation)
        self.projector = Projector(self.vision_backbone.embed_dim, llama_config.hidden_size, config.fused_projector)
        self.language_model = LlamaForCausalLM(llama_config)
        self.action_tokenizer = ActionTokenizer(config.n_action_bins, config.action_vocab_end)
        self.origin: CheckpointOrigin | None = None  # set by from_pretrained; saves and the model card use it
        self._loss_vocab = "full"

    # ---- properties -------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.projector.fc1.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.projector.fc1.weight.dtype

    @property
    def loss_vocab(self) -> str:
        """The training loss's softmax: "full" vocabulary (official) | "action_tokens" (see `forward`); a training
        setting (recipes: model.loss_vocab). Setting "action_tokens" also marks the config
        (`greedy_action_tokens_only`, saved with the model): the other logits go untrained from then on, so greedy
        decoding keeps to the action tokens."""
        return self._loss_vocab

    @loss_vocab.setter
    def loss_vocab(self, value: str) -> None:
        if value not in ("full", "action_tokens"):
            raise ValueError(f"loss_vocab must be 'full' or 'action_tokens', got {value!r}")
        self._loss_vocab = value
        if value == "action_tokens":
            self.config.extra[GREEDY_ACTION_TOKENS_KEY] = True

    @property
    def attn_implementation(self) -> str:
        return self.language_model.config._attn_implementation

    @property
    def norm_stats(self) -> dict[str, Any]:
        return self.config.norm_stats or {}

    def get_input_embeddings(self) -> nn.Embedding:
        return self.language_model.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        """The LM head (peft looks it up by this name, as on transformers models)."""
        return self.language_model.lm_head

    def get_action_dim(self, unnorm_key: str | None = None) -> int:
        return len(self.norm_stats[resolve_unnorm_key(self.norm_stats, unnorm_key)]["action"]["q01"])

    def action_normalizer(self, unnorm_key: str | None = None) -> ActionNormalizer:
        return ActionNormalizer.from_norm_stats(self.norm_stats, unnorm_key)

    def enable_gradient_checkpointing(self) -> None:
        self.vision_backbone.gradient_checkpointing = True
        llm, kwargs = self.language_model, {"use_reentrant": False}
        if hasattr(llm, "activation_checkpointing_enable"):   # transformers >= 5.2x; gradient_* is deprecated there
            llm.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)

    def disable_gradient_checkpointing(self) -> None:
        self.vision_backbone.gradient_checkpointing = False
        llm = self.language_model
        (getattr(llm, "activation_checkpointing_disable", None) or llm.gradient_checkpointing_disable)()

    def compile_language_model(self, backend: str = "inductor", mode: str | None = None) -> None:
        """`torch.compile` the Llama forward that `prefill` and every `decode_step` run (on CUDA: fused kernels,
        fewer launches per decoded token), with dynamic shapes (batch and cache length vary).

        Opt-in and off by default: the eager path, and with it the golden outputs, is unchanged. The first calls
        compile (about a minute for the 7B on a GPU; minutes on CPU with inductor, where `backend="eager"`
        only traces). `mode` is torch.compile's (e.g. "max-autotune-no-cudagraphs")."""
        llm = self.language_model.model
        eager = llm.__dict__.get("_eager_forward") or llm.forward
        llm._eager_forward = eager
        llm.forward = torch.compile(eager, backend=backend, mode=mode, dynamic=True)

    def uncompile_language_model(self) -> None:
        """Back to the eager Llama forward (undoes `compile_language_model`)."""
        llm = self.language_model.model
        eager = llm.__dict__.pop("_eager_forward", None)
        if eager is None:
            return
        if getattr(eager, "__func__", None) is type(llm).forward:
            del llm.forward          # the class's own forward again
        else:
            llm.forward = eager      # a forward someone else had set on the instance

    def _require_processor(self) -> OpenVLAProcessor:
        if self.processor is None:
            raise RuntimeError("this OpenVLA has no processor (tokenizer + image transform); load it with "
                               "OpenVLA.from_pretrained or build it with a preset")
        return self.processor

    # ---- training / scoring forward ---------------------------------------------------------------
    def embed_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values [B, C, S, S] → projected patch embeddings [B, P, D_llm]."""
        patches = self.vision_backbone(pixel_values.to(device=self.device, dtype=self.dtype))
        return self.projector(patches)

    def forward(self, input_ids: torch.Tensor, pixel_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> OpenVLAOutput:
        """Right-padded input_ids [B, L] (BOS first) + pixel_values → logits, and the loss when labels are given.

        The loss, with `loss_vocab` "full" (default), is the official fine-tuning loss: cross-entropy of
        next-token prediction over the whole vocabulary V on positions whose label is not -100 (the action tokens
        and EOS, as built by `OpenVLAProcessor.training_batch`). With "action_tokens" it is the cross-entropy of
        the action tokens under a softmax over the 256 action-token logits only — the distribution the sampler
        draws from when it restricts itself to action tokens (`SamplingSettings.restrict_to_action_tokens`):
        `−log softmax(z[start:end])[y − start]`, the EOS position unsupervised. It runs the LM head on 256 rows
        instead of 32064 (half the step time of the tiny model on a CPU); `logits` are then [M, 256].
        """
        patches = self.embed_images(pixel_values)
        text = self.get_input_embeddings()(input_ids)
        embeds = torch.cat([text[:, :1], patches, text[:, 1:]], dim=1)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        patch_ones = attention_mask.new_ones(patches.shape[:2])
        mask = torch.cat([attention_mask[:, :1], patch_ones, attention_mask[:, 1:]], dim=1)
        hidden = self.language_model.model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state
        if labels is None:
            return OpenVLAOutput(logits=self.language_model.lm_head(hidden))
        ignore = labels.new_full(patches.shape[:2], IGNORE_INDEX)
        mm_labels = torch.cat([labels[:, :1], ignore, labels[:, 1:]], dim=1)
        targets = mm_labels[:, 1:]
        if self.loss_vocab == "action_tokens":
            tokens = self.action_tokenizer
            supervised = tokens.is_action_token(targets)
            target_ids = targets[supervised]
            logits = self._head_logits(hidden[:, :-1][supervised], (tokens.token_start, tokens.token_end))
            loss = F.cross_entropy(logits, target_ids - tokens.token_start)
            predicted = logits.detach().argmax(-1) + tokens.token_start
        else:
            supervised = targets != IGNORE_INDEX
            target_ids = targets[supervised]
            logits = self.language_model.lm_head(hidden[:, :-1][supervised])
            loss = F.cross_entropy(logits.float(), target_ids)
            predicted = logits.detach().argmax(-1)
        accuracy, l1 = self._action_metrics(predicted, target_ids)
        return OpenVLAOutput(logits=logits, loss=loss, target_ids=target_ids, action_accuracy=accuracy, action_l1=l1)

    def _action_metrics(self, predicted: torch.Tensor, target_ids: torch.Tensor) -> tuple[float, float]:
        """Token accuracy and decoded L1 of the predicted ids [M] on the positions whose label is an action token."""
        is_action = self.action_tokenizer.is_action_token(target_ids)
        if not bool(is_action.any()):
            return float("nan"), float("nan")
        predicted = predicted[is_action]
        labels = target_ids[is_action]
        accuracy = (predicted == labels).float().mean().item()
        l1 = (self.action_tokenizer.decode(predicted) - self.action_tokenizer.decode(labels)).abs().mean().item()
        return accuracy, l1

    # ---- batched prefill + decode (inference and candidate sampling) ------------------------------
    def prepare_inputs(self, images: Sequence[Any], instructions: Sequence[str]) -> tuple[torch.Tensor, list[list[int]]]:
        processor = self._require_processor()
        return processor.pixel_values(images), processor.batch_prompt_ids(instructions)

    def _head_logits(self, hidden: torch.Tensor, logits_slice: tuple[int, int] | None) -> torch.Tensor:
        """LM head on hidden states [M, D] → float32 logits over all ids or over ids [start, end)."""
        head = self.language_model.lm_head
        weight = head.weight
        # full logits for sharded (DTensor) heads and for heads that are not a plain Linear (a LoRA-adapted head's
        # `.weight` is its base weight alone: slicing it would drop the adapter)
        if logits_slice is None or type(weight.data) is not torch.Tensor or type(head) is not nn.Linear:
            logits = self.language_model.lm_head(hidden).float()
            return logits if logits_slice is None else logits[:, logits_slice[0]: logits_slice[1]]
        return F.linear(hidden, weight[logits_slice[0]: logits_slice[1]]).float()

    def prefill(self, pixel_values: torch.Tensor, prompt_ids: Sequence[Sequence[int]],
                logits_slice: tuple[int, int] | None = None) -> PrefixState:
        """Encode images + prompts once, left-padded, and return the KV cache and first-token logits."""
        if pixel_values.shape[0] != len(prompt_ids):
            raise ValueError(f"{pixel_values.shape[0]} images but {len(prompt_ids)} prompts")
        device = self.device
        batch = len(prompt_ids)
        lengths = torch.tensor([len(p) for p in prompt_ids], device=device)
        max_len = int(lengths.max())
        ids = torch.full((batch, max_len), self.config.pad_token_id, dtype=torch.long, device=device)
        for b, p in enumerate(prompt_ids):
            ids[b, : len(p)] = torch.as_tensor(list(p), dtype=torch.long, device=device)
        patches = self.embed_images(pixel_values)
        text = self.get_input_embeddings()(ids)
        embeds = torch.cat([text[:, :1], patches, text[:, 1:]], dim=1)  # right-padded
        total = embeds.shape[1]
        shift = max_len - lengths  # left padding per row
        positions = torch.arange(total, device=device)
        gather = (positions[None, :] - shift[:, None]) % total
        embeds = embeds.gather(1, gather[..., None].expand(-1, -1, embeds.shape[-1]))
        attention_mask = (positions[None, :] >= shift[:, None]).long()
        position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
        out = self.language_model.model(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids,
                                        use_cache=True)
        logits = self._head_logits(out.last_hidden_state[:, -1], logits_slice)
        return PrefixState(_returned_cache(out), attention_mask, position_ids[:, -1:] + 1, logits, logits_slice)

    def decode_step(self, state: PrefixState, token_ids: torch.Tensor) -> PrefixState:
        """Feed one token per row [B] and return the state with the next-token logits."""
        mask = torch.cat([state.attention_mask, state.attention_mask.new_ones((token_ids.shape[0], 1))], dim=1)
        out = self.language_model.model(input_ids=token_ids[:, None], attention_mask=mask,
                                        position_ids=state.next_position, use_cache=True,
                                        **{_cache_argument(): state.cache})
        logits = self._head_logits(out.last_hidden_state[:, -1], state.logits_slice)
        return PrefixState(_returned_cache(out), mask, state.next_position + 1, logits, state.logits_slice)

    @torch.inference_mode()
    def generate_action_tokens(self, pixel_values: torch.Tensor, prompt_ids: Sequence[Sequence[int]],
                               num_tokens: int) -> torch.Tensor:
        """Greedy decoding: int64 [B, num_tokens]. The argmax is over the whole vocabulary, as the official model's,
        or over the 256 action tokens for a model trained with the action-token loss
        (`config.greedy_action_tokens_only`)."""
        tokens_only = self.config.greedy_action_tokens_only
        logits_slice = (self.action_tokenizer.token_start, self.action_tokenizer.token_end) if tokens_only else None
        offset = logits_slice[0] if logits_slice else 0
        state = self.prefill(pixel_values, prompt_ids, logits_slice)
        tokens = []
        for step in range(num_tokens):
            next_ids = state.last_logits.argmax(dim=-1) + offset
            tokens.append(next_ids)
            if step + 1 < num_tokens:
                state = self.decode_step(state, next_ids)
        return torch.stack(tokens, dim=1)

    def predict_action(self, images: Any, instructions: str | Sequence[str], unnorm_key: str | None = None) -> np.ndarray:
        """Greedy actions in robot units: one image → float64 [A]; a list of B images → [B, A].

        images: uint8 H×W×3 arrays or PIL images (one, a list, or a uint8 [B, H, W, 3] array);
        instructions: one string (shared by all images) or one per image.
        """
        single = not isinstance(images, (list, tuple)) and not (isinstance(images, np.ndarray) and images.ndim == 4)
        image_list = [images] if single else list(images)
        if isinstance(instructions, str):
            instruction_list = [instructions] * len(image_list)
        else:
            instruction_list = list(instructions)
        if len(instruction_list) != len(image_list):
            raise ValueError(f"got {len(image_list)} images but {len(instruction_list)} instructions; pass one "
                             "instruction per image or a single string")
        if not image_list:
            raise ValueError("predict_action needs at least one image")
        normalizer = self.action_normalizer(unnorm_key)  # fail fast on a bad unnorm_key
        pixel_values, prompt_ids = self.prepare_inputs(image_list, instruction_list)
        was_training = self.training
        self.eval()
        try:
            tokens = self.generate_action_tokens(pixel_values, prompt_ids, normalizer.action_dim)
        finally:
            self.train(was_training)
        actions = normalizer.unnormalize(self.action_tokenizer.decode(tokens.cpu().numpy()))
        return actions[0] if single else actions

    # ---- loading / saving -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | Path, torch_dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, attn_implementation: str | None = "sdpa",
                        load_in_4bit: bool = False, load_in_8bit: bool = False, revision: str | None = None,
                        local_files_only: bool | None = None, dtype: torch.dtype | None = None) -> "OpenVLA":
        """Load a published-layout checkpoint (local directory or hub id).

        torch_dtype: parameter dtype (default: bfloat16 on CUDA, float32 otherwise). `dtype` is an alias.
        load_in_4bit / load_in_8bit: quantise the LLM's linear layers with bitsandbytes (CUDA only; QLoRA).
        """
        from accelerate import init_empty_weights
        from accelerate.utils import set_module_tensor_to_device

        torch_dtype = torch_dtype or dtype
        device = torch.device(device) if device is not None else torch.device("cpu")
        if load_in_4bit or load_in_8bit:
            from vla_parl.models.openvla.quantization import check_quantization_available

            check_quantization_available()
        if torch_dtype is None:
            torch_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        directory = resolve_checkpoint_dir(path_or_hub_id, revision=revision, local_files_only=local_files_only)
        config = OpenVLAConfig.from_json_file(directory / "config.json")
        stats_file = directory / "dataset_statistics.json"
        if stats_file.is_file():
            file_stats = read_checkpoint_json(stats_file, "dataset statistics")
            config.norm_stats = {**(config.norm_stats or {}), **file_stats}
        processor = OpenVLAProcessor.from_pretrained(directory)
        with init_empty_weights(include_buffers=False):
            model = cls(config, processor, attn_implementation=attn_implementation)
        expected = {name for name, _ in model.named_parameters()}
        loaded: set[str] = set()
        unexpected: list[str] = []
        for name, tensor in iter_checkpoint_tensors(directory):
            if name not in expected:
                if not name.endswith("rotary_emb.inv_freq"):
                    unexpected.append(name)
                continue
            param = model.get_parameter(name)
            if tuple(param.shape) != tuple(tensor.shape):
                raise CheckpointError(f"{directory}: tensor {name!r} has shape {tuple(tensor.shape)} but config.json "
                                      f"describes {tuple(param.shape)}; config and weights do not match")
            set_module_tensor_to_device(model, name, device, value=tensor, dtype=torch_dtype)
            loaded.add(name)
        missing = sorted(expected - loaded)
        if missing or unexpected:
            raise CheckpointError(f"{directory}: weights do not match the architecture in config.json — "
                                  f"missing {len(missing)} tensor(s) {missing[:5]}, unexpected {len(unexpected)} "
                                  f"{unexpected[:5]}")
        model.to(device)
        model.origin = CheckpointOrigin.read(directory, str(path_or_hub_id), revision, config.norm_stats)
        if load_in_4bit or load_in_8bit:
            from vla_parl.models.openvla.quantization import quantize_language_model

            quantize_language_model(model, bits=4 if load_in_4bit else 8)
        return model.eval()

    def save_pretrained(self, directory: str | Path, max_shard_size: int | str = "5GB") -> Path:
        """Write the published layout: weights, config.json (with norm_stats), dataset_statistics.json, processor,
        the base checkpoint's remote code (``*.py`` + ``auto_map``, when it had them) and a model card README.md."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = self.state_dict()
        if any("lora_" in k or ".base_layer." in k for k in state):
            raise RuntimeError("this model has LoRA adapters injected; save them with save_lora_adapter(), or "
                               "merge_lora() first to write a full checkpoint")
        save_state_dict(state, directory, max_shard_size=max_shard_size)
        self.config.extra["torch_dtype"] = str(self.dtype).removeprefix("torch.")
        atomic_write_text(directory / "config.json", json.dumps(self.config.to_dict(), indent=2, sort_keys=True) + "\n")
        if self.config.norm_stats:
            atomic_write_text(directory / "dataset_statistics.json", json.dumps(self.config.norm_stats, indent=2) + "\n")
        llama = self.config.llama_config_dict
        generation = {"bos_token_id": llama["bos_token_id"], "eos_token_id": llama["eos_token_id"],
                      "pad_token_id": self.config.pad_token_id}
        atomic_write_text(directory / "generation_config.json", json.dumps(generation, indent=2) + "\n")
        if self.processor is not None:
            self.processor.save_pretrained(directory)
        if self.origin is not None and self.origin.remote_code is not None:
            self.origin.remote_code.write(directory)
        from vla_parl.models.openvla.model_card import write_model_card

        write_model_card(self, directory)
        return directory
