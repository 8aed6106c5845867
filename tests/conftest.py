"""Shared test fixtures. `../shared` (beside the repo) holds the specs and golden fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("VLA_PARL_SHARED", REPO_ROOT.parent / "shared"))
GOLDEN_DIR = SHARED_DIR / "fixtures" / "openvla-tiny-golden"

# 2-core CI machines: one intra-op thread per test process avoids oversubscription.
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    if not GOLDEN_DIR.is_dir():
        pytest.fail(f"golden fixture not found at {GOLDEN_DIR}; clone the repo next to ../shared "
                    "or set VLA_PARL_SHARED")
    return GOLDEN_DIR


@pytest.fixture(scope="session")
def tiny_vla():
    """A tiny OpenVLA (56 px images: 16 patches) shared by tests that do not modify it."""
    from vla_parl.models import openvla_tiny

    return openvla_tiny(image_size=56)
