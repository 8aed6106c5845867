"""The robot side needs no torch: `vla_parl_client` imports and drives a real server in an interpreter where
torch, transformers, vla_parl and serving cannot be imported; the example robot loop runs the simulated
tabletop without torch; and the `vla-parl-client` wheel builds offline from client/ and installs on its own
with only numpy, pillow and requests as dependencies."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.serving._helpers import run_client_snippet

REPO_ROOT = Path(__file__).resolve().parents[2]


def blocker(*packages: str) -> str:
    """Code to prepend to a snippet: any import of `packages` raises, as on a robot computer without them."""
    return f"""
import sys
class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {set(packages)!r}:
            raise ImportError(f"{{name}} is not installed on this robot")
        return None
sys.meta_path.insert(0, _Blocked())
try:
    import torch
    raise SystemExit("the blocker let torch through")
except ImportError:
    pass
"""


# the client alone: no torch, no model code, no server code
BLOCKER = blocker("torch", "transformers", "peft", "vla_parl", "serving", "fastapi", "uvicorn")


@pytest.fixture(scope="module")
def episode_url(checkpoint_dirs, tmp_path_factory):
    from tests.serving._robot_server import episode_server

    with episode_server(*checkpoint_dirs, tmp_path_factory.mktemp("episodes")) as url:
        yield url


def test_the_client_runs_an_episode_without_torch(episode_url):
    out = run_client_snippet(BLOCKER + f"""
import numpy as np
import vla_parl_client
from vla_parl_client import PolicyClient
from vla_parl_client.client import _act_row

body = _act_row(np.zeros((8, 8, 3), np.uint8), "reach the red block", None, "greedy", proprio=[1, 2])
assert body["proprio"] == [1.0, 2.0] and body["image"].startswith("iVBOR")       # base64 PNG
with PolicyClient({episode_url!r}) as client:
    episode = client.start_episode("reach the red block", unnorm_key="default")
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    steps = [client.act_info(image, "reach the red block", "default", episode_id=episode, proprio=np.zeros(7))["step"]
             for _ in range(2)]
    stored = client.end_episode(episode, success=False)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "vla_parl", "serving"))
print(steps, stored["steps"], heavy)
""")
    assert out.strip() == "[0, 1] 2 []"


def test_the_example_robot_loop_drives_the_simulated_tabletop_without_torch(checkpoint_dirs, tmp_path):
    from tests.serving._robot_server import episode_server

    # a store of its own: the tabletop robot also sends its block state, which fixes the store's observation keys
    with episode_server(*checkpoint_dirs, tmp_path / "episodes") as url:
        out = run_client_snippet(blocker("torch", "transformers", "peft") + f"""
from serving.example_robot_loop import main
assert main(["--url", {url!r}, "--episodes", "1", "--max-steps", "2", "--unnorm-key", "default",
             "--image-size", "32", "--label", "robot"]) == 0
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers")))
""")
    assert "episode 0: " in out and out.strip().endswith("[]")


def test_the_client_wheel_builds_offline_and_installs_alone(tmp_path):
    import vla_parl

    pytest.importorskip("setuptools", reason="the offline build uses the environment's setuptools")
    source = shutil.copytree(REPO_ROOT / "client", tmp_path / "client")        # the build writes into its source
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert wheel.name == f"vla_parl_client-{vla_parl.__version__}-py3-none-any.whl"   # released with vla-parl
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(f"vla_parl_client-{vla_parl.__version__}.dist-info/METADATA").decode()
    assert {name.split("/")[0] for name in names} == {"vla_parl_client", f"vla_parl_client-{vla_parl.__version__}"
                                                                          ".dist-info"}
    requires = sorted(line.split(":", 1)[1].strip() for line in metadata.splitlines()
                      if line.startswith("Requires-Dist"))
    assert requires == ["numpy>=1.26", "pillow>=10", "requests>=2.31"]
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
                              str(site), str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    out = run_client_snippet(BLOCKER + f"""
sys.path.insert(0, {str(site)!r})
import vla_parl_client
print(vla_parl_client.__file__, vla_parl_client.__version__, sorted(vla_parl_client.__all__))
""")
    where, version, names = out.split(" ", 2)
    assert Path(where).is_relative_to(site) and version == vla_parl.__version__
    assert "PolicyClient" in names and "run_episode" in names
