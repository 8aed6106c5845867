"""Shared test fixtures. The golden OpenVLA checkpoint lives in `tests/fixtures/openvla-tiny-golden`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIR = REPO_ROOT / "tests" / "fixtures" / "openvla-tiny-golden"

#: Why a test that needs CALVIN's third-party scene assets was skipped, and the one line that provides them.
CALVIN_ASSETS_HINT = ("CALVIN scene assets not found (see docs/calvin.md); provide them with: git clone "
                      "https://github.com/mees/calvin_env ~/calvin_env && export CALVIN_ENV_DATA=~/calvin_env")


def have_calvin_assets() -> bool:
    """Whether `vla_parl.envs.calvin.assets.find_calvin_assets()` finds the scene assets (e.g. ../shared)."""
    from vla_parl.envs.calvin.assets import find_calvin_assets
    from vla_parl.errors import ConfigError

    try:
        find_calvin_assets()
    except ConfigError:
        return False
    return True


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "calvin_assets: needs CALVIN's scene assets (skipped, naming the command "
                                       "that provides them, where they are absent)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the `calvin_assets` tests, with the one-line fix, where the assets cannot be found."""
    marked = [item for item in items if item.get_closest_marker("calvin_assets")]
    if marked and not have_calvin_assets():
        for item in marked:
            item.add_marker(pytest.mark.skip(reason=CALVIN_ASSETS_HINT))


# 2-core CI machines: one intra-op thread per test process avoids oversubscription.
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session", autouse=True)
def _private_store_cache(tmp_path_factory):
    """Offline transition stores built by tests (and the CLI runs they start) go to a temporary folder, never
    to ~/.cache/vla_parl (`vla_parl.data.sources.cache_root` reads $VLA_PARL_CACHE)."""
    if "VLA_PARL_CACHE" not in os.environ:
        os.environ["VLA_PARL_CACHE"] = str(tmp_path_factory.mktemp("vla_parl_cache"))
    yield


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    if not GOLDEN_DIR.is_dir():
        pytest.fail(f"golden fixture not found at {GOLDEN_DIR}: it is part of the repository; restore it "
                    "with `git checkout -- tests/fixtures`")
    return GOLDEN_DIR


@pytest.fixture(scope="session")
def tiny_vla():
    """A tiny OpenVLA (56 px images: 16 patches) shared by tests that do not modify it."""
    from vla_parl.models import openvla_tiny

    return openvla_tiny(image_size=56)
