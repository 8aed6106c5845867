"""A real policy server that records episodes (tiny model + critic, uvicorn on loopback), for the robot-side
tests (imported as tests.serving._robot_server; tests/cli uses it too)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from tests.serving._helpers import make_tiny_vla


def save_tiny_policy(root: Path) -> tuple[Path, Path]:
    """The serving tests' tiny OpenVLA and critic, saved under `root` → (model dir, critic dir)."""
    from vla_parl.critic import critic_resnet18

    make_tiny_vla().save_pretrained(root / "model")
    torch.manual_seed(0)
    critic_resnet18(action_dim=7, image_size=32, hidden_dims=(32, 32), num_q_heads=2, image_feature_dim=32,
                    vocab_size=128).save(root / "critic")
    return root / "model", root / "critic"


@contextmanager
def episode_server(model_dir: Path, critic_dir: Path | None, episodes_dir: Path, **config: Any) -> Iterator[str]:
    """`vla-parl serve --episodes episodes_dir` in a thread → its URL (a fresh engine: version 0)."""
    from serving.app import ServerConfig, ServerThread, create_app
    from serving.engine import PolicyEngine

    engine = PolicyEngine.load(model_dir, critic_dir)
    with ServerThread(create_app(engine, ServerConfig(episodes_dir=str(episodes_dir), **config))) as url:
        yield url
