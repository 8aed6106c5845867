"""4/8-bit quantisation of the LLM's linear layers with bitsandbytes (QLoRA), CUDA only.

As in the official QLoRA setting: NF4 with bf16 compute for 4-bit, LLM.int8 for 8-bit; the vision
backbone, projector and LM head stay in full precision.
"""

from __future__ import annotations

import torch
from torch import nn

from vla_parl.errors import MissingExtraError, VLAParlError

__all__ = ["check_quantization_available", "quantize_language_model"]


def check_quantization_available() -> None:
    """Raise a clear error unless bitsandbytes and a CUDA device are present."""
    if not torch.cuda.is_available():
        raise VLAParlError("4-bit/8-bit loading (QLoRA) needs a CUDA GPU: bitsandbytes quantised kernels do not run "
                           "on CPU. On CPU load with torch_dtype=torch.float32 or torch.bfloat16 instead.")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError.for_package("bitsandbytes", "gpu", "4-bit/8-bit loading (QLoRA)") from exc


def quantize_language_model(model: nn.Module, bits: int = 4, compute_dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """Replace every nn.Linear inside `model.language_model.model` by a bitsandbytes layer, on the GPU."""
    check_quantization_available()
    import bitsandbytes as bnb

    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, got {bits}")
    device = torch.device("cuda", torch.cuda.current_device())
    llm = model.language_model.model
    for parent_name, parent in list(llm.named_modules()):
        for child_name, child in list(parent.named_children()):
            if not isinstance(child, nn.Linear):
                continue
            weight = child.weight.data.to("cpu", torch.float16 if bits == 8 else compute_dtype)
            if bits == 4:
                layer = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                          compute_dtype=compute_dtype, quant_type="nf4")
                layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4")
            else:
                layer = bnb.nn.Linear8bitLt(child.in_features, child.out_features, bias=child.bias is not None,
                                            has_fp16_weights=False)
                layer.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
            if child.bias is not None:
                layer.bias = nn.Parameter(child.bias.data.to(compute_dtype), requires_grad=False)
            setattr(parent, child_name, layer.to(device))
    return model
