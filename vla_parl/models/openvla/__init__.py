"""OpenVLA: model, processor, action tokenizer, presets, LoRA."""

from vla_parl.models.openvla.action_tokenizer import ActionTokenizer
from vla_parl.models.openvla.configuration import OpenVLAConfig
from vla_parl.models.openvla.image_transforms import ImageTransform
from vla_parl.models.openvla.modeling import OpenVLA, OpenVLAOutput, PrefixState
from vla_parl.models.openvla.normalization import ActionNormalizer, resolve_unnorm_key
from vla_parl.models.openvla.presets import default_norm_stats, openvla_7b, openvla_tiny
from vla_parl.models.openvla.processor import OpenVLAProcessor, TrainingBatch, build_prompt
from vla_parl.models.openvla.tokenizer import PromptTokenizer

__all__ = ["ActionNormalizer", "ActionTokenizer", "ImageTransform", "OpenVLA", "OpenVLAConfig", "OpenVLAOutput",
           "OpenVLAProcessor", "PrefixState", "PromptTokenizer", "TrainingBatch", "build_prompt",
           "default_norm_stats", "openvla_7b", "openvla_tiny", "resolve_unnorm_key"]
