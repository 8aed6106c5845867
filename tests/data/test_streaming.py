"""SFT's step stream: DataLoader workers (and DDP ranks) read disjoint shares that together are the dataset."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.data._lerobot_data import LENGTHS


def _data(path, **kw):
    from vla_parl.recipes._configs import DataSection

    return DataSection(kind="lerobot", path=str(path), **kw)


def test_two_workers_stream_every_step_exactly_once(lerobot_dirs):
    from torch.utils.data import DataLoader

    from vla_parl.data.loader import StepStream, collate_steps
    from vla_parl.data.sources import OfflineSource

    source = OfflineSource(_data(lerobot_dirs["v3.0"]))
    want = np.concatenate([t["action"] for t in source.trajectories(images=False)])
    loader = DataLoader(StepStream(source, shuffle_buffer=4, seed=1), batch_size=5, collate_fn=collate_steps,
                        num_workers=2, multiprocessing_context="spawn")
    got = np.concatenate([b["action"] for b in loader])
    assert len(got) == sum(LENGTHS)
    order = lambda a: a[np.lexsort(a.T[::-1])]   # noqa: E731 - rows sorted, to compare as multisets
    np.testing.assert_array_equal(order(got), order(want))
    assert not np.array_equal(got, want)          # shuffled


@pytest.mark.slow
def test_sft_and_critic_under_two_processes_on_lerobot(lerobot_dirs, tmp_path):
    """torchrun × 2 (gloo, CPU): SFT streams per-rank shares; the critic's main rank builds the store once."""
    import socket

    def launch(recipe: str, *overrides: str) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(port), "-m", f"vla_parl.recipes.{recipe}", "--output-dir", str(tmp_path / recipe),
               "data.kind=lerobot", f"data.path={lerobot_dirs['v3.0']}",
               f"data.store_dir={tmp_path / 'stores'}", "data.shuffle_buffer=4", "run.progress=false",
               "model.unnorm_key=tiny", *overrides]
        env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        assert result.returncode == 0, result.stderr[-4000:]

    launch("sft", "optim.steps=3", "optim.batch_size=2")
    assert (tmp_path / "sft" / "final" / "model" / "config.json").is_file()
    launch("critic", f"policy={tmp_path / 'sft' / 'final' / 'model'}", "critic.privileged_state=false",
           "optim.steps=2", "optim.batch_size=8", "candidate_cache_states=8", "objective.num_samples=2")
    stores = [p for p in (tmp_path / "stores").iterdir() if p.is_dir()]
    assert len(stores) == 1 and (stores[0] / "complete").is_file()
    assert (tmp_path / "critic" / "final" / "critic").is_dir()
