"""Memory plan for OpenVLA-7B fine-tuning, per GPU, computed from the real architecture on the meta device.

Parameter counts come from `openvla_7b()` built under `torch.device("meta")` (no memory); LoRA counts
from the all-linear target list (`lora_target_modules`: r·(d_in + d_out) per adapted linear, LM head
excluded). Bytes (GiB = 2^30):

  weights      bf16 2 B/param; QLoRA: the LLM's decoder linears NF4 = 0.5 B/param + one fp32 absmax per
               64-weight block (0.0625 B/param; 0.0157 B/param with double quantisation, the default
               here: 8-bit absmax + one fp32 constant per 256 blocks), everything else bf16
  LoRA         adapters fp32: 4 B/param, gradients 4 B/param, AdamW m and v 8 B/param
  FSDP full FT fp32 master params 4 + fp32 grads 4 + AdamW 8 = 16 B/param, all sharded / W GPUs, plus
               the bf16 copies gathered while a unit runs (the root unit + 2 decoder layers: current + prefetch)
  activations  per transformer layer: tokens × hidden × 2 B (bf16) × f, for b samples, where f counts
               the hidden-sized tensors autograd keeps (flash/SDPA attention, no T² scores):
               Llama (SwiGLU, i = intermediate): f = 8 + 4·i/h  (norm inputs 2, q k v 3, attention out 1,
               o_proj in 1, gate/up in 1 = 8 h; gate, up, silu(gate), product = 4 i)  → 18.75 for 7B
               ViT (GELU MLP m·d, LayerScale):   f = 10 + 2·m  (LN ins 2, qkv in 1, q k v 3, attn out 1,
               proj in 1, LayerScale ins 2 = 10 d; fc1 out, gelu out = 2 m d)  → 18 (DINOv2); without
               LayerScale f = 8 + 2·m  → 15.5 (SigLIP, m = 4304/1152)
               with gradient checkpointing only each layer's input is kept, plus one layer recomputed:
               tokens × hidden × 2 B × (L + f)
               logits: only the 8 supervised positions per sample reach the LM head (fp32, ×2 for grad)
  not counted  CUDA context and allocator fragmentation (≈ 1-3 GiB), LoRA's rank-r intermediate tensors.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_arguments", "run", "format_table", "parameter_breakdown", "memory_plan", "GIB"]

GIB = 2 ** 30
NF4_BYTES = 0.5
ABSMAX_BYTES = {False: 4 / 64, True: 1 / 64 + 4 / (64 * 256)}  # per param, keyed by double_quant


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--micro-batch", type=int, default=16, help="samples per GPU per forward/backward")
    parser.add_argument("--prompt-tokens", type=int, default=20,
                        help="text tokens after BOS (instruction prompt, typical Bridge instruction)")
    parser.add_argument("--lora-rank", type=int, default=32)
    parser.add_argument("--gpus", type=int, default=8, help="GPUs of the FSDP rows")
    parser.add_argument("--no-double-quant", dest="double_quant", action="store_false")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the result as JSON here")


def parameter_breakdown(model, lora_rank: int) -> dict[str, Any]:
    """Counts per component of an OpenVLA (any device, meta included) and its all-linear LoRA size."""
    from vla_parl.models.openvla.lora import lora_target_modules

    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    llm = model.language_model
    decoder_linears = sum(m.weight.numel() for m in llm.model.layers.modules() if type(m).__name__ == "Linear")
    targets = lora_target_modules(model)
    lora = sum(lora_rank * (model.get_submodule(n).in_features + model.get_submodule(n).out_features)
               for n in targets)
    vision = model.vision_backbone
    vits = [v for v in (vision.featurizer, vision.fused_featurizer) if v is not None]
    layer_sizes = [count(layer) for layer in llm.model.layers]
    unit_sizes = [count(b) for v in vits for b in v.blocks] + layer_sizes
    total = count(model)
    return {
        "total": total, "vision": count(vision), "projector": count(model.projector), "llm": count(llm),
        "llm_decoder_linears": decoder_linears, "lora": lora, "lora_target_modules": len(targets),
        "lora_rank": lora_rank, "llm_layer": max(layer_sizes), "fsdp_root_unit": total - sum(unit_sizes),
        "llm_hidden": llm.config.hidden_size, "llm_intermediate": llm.config.intermediate_size,
        "llm_layers": llm.config.num_hidden_layers, "vocab": llm.config.vocab_size,
        "vits": [{"dim": v.embed_dim, "blocks_used": len(v.blocks) - 1,
                  "tokens": v.patch_embed.num_patches + v.num_prefix_tokens,
                  "mlp_ratio": v.blocks[0].mlp.fc1.out_features / v.embed_dim,
                  "layerscale": type(v.blocks[0].ls1).__name__ != "Identity"} for v in vits],
        "patches": vits[0].patch_embed.num_patches,
    }


def activation_bytes(p: dict[str, Any], micro_batch: int, prompt_tokens: int, checkpointing: bool) -> dict[str, float]:
    """Activation bytes per GPU (see the module docstring for the formula)."""
    bf16 = 2
    out = {}
    llm_tokens = 1 + p["patches"] + prompt_tokens + 8  # BOS, patches, prompt, 7 actions + EOS
    f_llm = 8 + 4 * p["llm_intermediate"] / p["llm_hidden"]
    per_layer = llm_tokens * micro_batch * p["llm_hidden"] * bf16
    out["llm"] = per_layer * ((p["llm_layers"] + f_llm) if checkpointing else p["llm_layers"] * f_llm)
    vision = 0.0
    for vit in p["vits"]:
        f_vit = (10 if vit["layerscale"] else 8) + 2 * vit["mlp_ratio"]
        per_block = vit["tokens"] * micro_batch * vit["dim"] * bf16
        vision += per_block * ((vit["blocks_used"] + f_vit) if checkpointing else vit["blocks_used"] * f_vit)
    out["vision"] = vision
    out["logits"] = 8 * micro_batch * p["vocab"] * 4 * 2
    out["total"] = out["llm"] + out["vision"] + out["logits"]
    return out


def memory_plan(p: dict[str, Any], micro_batch: int = 16, prompt_tokens: int = 20, gpus: int = 8,
                double_quant: bool = True) -> list[dict[str, Any]]:
    """Per-GPU bytes for the four set-ups; each row has weights, trainable/grads/optimizer, activations."""
    act = {gc: activation_bytes(p, micro_batch, prompt_tokens, gc)["total"] for gc in (True, False)}
    lora_states = {"trainable": 4 * p["lora"], "grads": 4 * p["lora"], "optimizer": 8 * p["lora"]}
    nf4 = NF4_BYTES + ABSMAX_BYTES[double_quant]
    gathered = 2 * (p["fsdp_root_unit"] + 2 * p["llm_layer"])
    rows = [
        {"setup": "1 GPU, LoRA, bf16 base", "gpus": 1, "weights": 2 * p["total"], **lora_states},
        {"setup": f"1 GPU, QLoRA (NF4 base, {'double' if double_quant else 'single'} quant)", "gpus": 1,
         "weights": nf4 * p["llm_decoder_linears"] + 2 * (p["total"] - p["llm_decoder_linears"]), **lora_states},
        {"setup": f"{gpus} GPUs, FSDP LoRA", "gpus": gpus, "weights": 2 * p["total"] / gpus + gathered,
         **{k: v / gpus for k, v in lora_states.items()}},
        {"setup": f"{gpus} GPUs, FSDP full fine-tune", "gpus": gpus, "weights": 4 * p["total"] / gpus + gathered,
         "trainable": 0.0, "grads": 4 * p["total"] / gpus, "optimizer": 8 * p["total"] / gpus},
    ]
    for row in rows:
        fixed = row["weights"] + row["trainable"] + row["grads"] + row["optimizer"]
        row["activations_gc"], row["activations_no_gc"] = act[True], act[False]
        row["total_gc"], row["total_no_gc"] = fixed + act[True], fixed + act[False]
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from vla_parl.models import openvla_7b

    if args.micro_batch < 1 or args.gpus < 1 or args.lora_rank < 1 or args.prompt_tokens < 0:
        raise ValueError("--micro-batch, --gpus and --lora-rank must be >= 1 and --prompt-tokens >= 0")
    with torch.device("meta"):
        model = openvla_7b()
    params = parameter_breakdown(model, args.lora_rank)
    rows = memory_plan(params, args.micro_batch, args.prompt_tokens, args.gpus, args.double_quant)
    return {"benchmark": "memory", "model": "openvla-7b (meta device)", "micro_batch": args.micro_batch,
            "prompt_tokens": args.prompt_tokens, "params": params,
            "activations": {"gc": activation_bytes(params, args.micro_batch, args.prompt_tokens, True),
                            "no_gc": activation_bytes(params, args.micro_batch, args.prompt_tokens, False)},
            "rows": [{k: (v / GIB if isinstance(v, float | int) and k != "gpus" else v) for k, v in r.items()}
                     for r in rows], "unit": "GiB per GPU"}


def format_table(result: dict[str, Any]):
    from rich.table import Table

    p = result["params"]
    table = Table(title=f"OpenVLA-7B memory plan per GPU (GiB), micro-batch {result['micro_batch']}: "
                        f"{p['total']:,} params, LoRA r={p['lora_rank']} {p['lora']:,}")
    for col in ("set-up", "weights", "adapters", "grads", "AdamW", "act. (GC)", "act. (no GC)", "total (GC)",
                "total (no GC)"):
        table.add_column(col, justify="right")
    for r in result["rows"]:
        table.add_row(r["setup"], *(f"{r[k]:.2f}" for k in ("weights", "trainable", "grads", "optimizer",
                                                             "activations_gc", "activations_no_gc", "total_gc",
                                                             "total_no_gc")))
    table.caption = ("GC = gradient checkpointing. Excludes CUDA context / fragmentation (≈1-3 GiB). "
                     "Formulas: `vla-parl bench memory --help` / docs/scaling.md")
    return table
