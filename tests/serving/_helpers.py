"""Helpers shared by the serving tests (imported as tests.serving._helpers)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import torch

from vla_parl.models.openvla.presets import default_norm_stats

INSTRUCTION = "pick up the red block"


def _norm_stats() -> dict:
    stats = default_norm_stats("default")
    scaled = default_norm_stats("bridge_orig")["bridge_orig"]
    scaled["action"].update(q01=[-0.05, -0.04, -0.03, -0.2, -0.2, -0.3, 0.0],
                            q99=[0.05, 0.04, 0.03, 0.2, 0.2, 0.3, 1.0])
    corrupt = default_norm_stats("corrupt")["corrupt"]
    corrupt["action"]["q01"] = [math.nan] * 7          # a broken dataset_statistics.json entry
    return {**stats, "bridge_orig": scaled, "corrupt": corrupt}


def make_tiny_vla():
    """openvla_tiny(56) whose greedy argmax lands on action tokens (non-action rows of lm_head zeroed), so
    greedy actions depend on the image and instruction instead of saturating at one clipped value."""
    from vla_parl.models import openvla_tiny

    model = openvla_tiny(image_size=56, norm_stats=_norm_stats())
    with torch.no_grad():
        weight = model.language_model.lm_head.weight
        keep = torch.zeros(weight.shape[0], dtype=torch.bool)
        keep[model.action_tokenizer.token_start:model.action_tokenizer.token_end] = True
        weight[~keep] = 0.0
        weight[keep] *= 4.0
    return model


def scene(seed: int, size: int = 64) -> np.ndarray:
    """A deterministic uint8 test image."""
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def run_client_snippet(code: str, timeout: float = 60.0) -> str:
    """Run client code in a fresh interpreter (as a robot would: its own process, its own json patching)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
