"""Fixtures: a tiny OpenVLA + critic saved to disk, loaded by `PolicyEngine`, served by real uvicorn on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.serving._helpers import make_tiny_vla


@pytest.fixture(scope="session")
def checkpoint_dirs(tmp_path_factory) -> tuple[Path, Path]:
    from vla_parl.critic import critic_resnet18

    root = tmp_path_factory.mktemp("serving")
    make_tiny_vla().save_pretrained(root / "model")
    torch.manual_seed(0)
    critic = critic_resnet18(action_dim=7, image_size=32, hidden_dims=(32, 32), num_q_heads=2, image_feature_dim=32,
                             vocab_size=128)
    critic.save(root / "critic")
    return root / "model", root / "critic"


@pytest.fixture(scope="session")
def engine(checkpoint_dirs):
    from serving.engine import PolicyEngine

    model_dir, critic_dir = checkpoint_dirs
    return PolicyEngine.load(model_dir, critic_dir)


@pytest.fixture(scope="session")
def reference_model(checkpoint_dirs):
    """The same checkpoint loaded separately: what a user would call `predict_action` on."""
    from vla_parl.models import OpenVLA

    return OpenVLA.from_pretrained(checkpoint_dirs[0])


@pytest.fixture(scope="session")
def server_url(engine):
    from serving.app import ServerConfig, ServerThread, create_app

    config = ServerConfig(max_batch_size=16, max_wait_ms=5, max_request_bytes=2 * 1024 * 1024,
                          max_image_pixels=512 * 512, max_batch_items=8, max_num_samples=32)
    with ServerThread(create_app(engine, config)) as url:
        yield url


@pytest.fixture(scope="session")
def keyed_server_url(engine):
    from serving.app import ServerConfig, ServerThread, create_app

    with ServerThread(create_app(engine, ServerConfig(api_key="s3cret-key", max_batch_size=4))) as url:
        yield url
