"""Build the model a benchmark runs on: the tiny preset, the 7B architecture (random weights) or a checkpoint."""

from __future__ import annotations

import argparse

__all__ = ["add_model_arguments", "build_benchmark_model", "sample_images"]


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="tiny",
                        help="'tiny' (CPU preset), '7b' (published architecture, random weights) or a checkpoint dir")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--dtype", default="auto", help="fp32, bf16, fp16 or auto (bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager", "flash_attention_2"])
    parser.add_argument("--image-size", type=int, default=224, help="input image size of the tiny model")
    parser.add_argument("--vision", default="dinosiglip", choices=["dinosiglip", "siglip"],
                        help="the tiny model's vision towers: fused DINOv2 + SigLIP, or SigLIP alone")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (median reported)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice; 1 gives stable figures on a shared CPU)")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the result as JSON here")


def build_benchmark_model(args: argparse.Namespace):
    import torch

    from vla_parl.bench.timing import resolve_device, resolve_dtype
    from vla_parl.models import OpenVLA, openvla_7b, openvla_tiny

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    if args.model == "tiny":
        model = openvla_tiny(image_size=args.image_size, attn_implementation=args.attn, vision=args.vision)
    elif args.model == "7b":
        with torch.device(device):
            model = openvla_7b(attn_implementation=args.attn)
    else:
        return OpenVLA.from_pretrained(args.model, torch_dtype=dtype, device=device, attn_implementation=args.attn), device
    return model.to(device=device, dtype=dtype).eval(), device


def sample_images(n: int, seed: int = 0, size: int = 256) -> list:
    import numpy as np

    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8) for _ in range(n)]
