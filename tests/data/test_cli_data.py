"""`vla-parl data ...` run as users run it: the real CLI in a subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def _cli(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
           "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "vla_parl.cli.main", "data", *args], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=120)


@pytest.mark.slow  # two CLI runs that import tensorflow (~10 s each on 2 shared cores)
def test_stats_rlds_writes_json_and_reuses_cache(rlds_dir, tmp_path):
    out = tmp_path / "dataset_statistics.json"
    r = _cli("stats", "--data-dir", str(rlds_dir), "--dataset", "bridge_orig", "--out", str(out), "--refresh")
    assert r.returncode == 0, r.stderr
    assert "computed statistics" in r.stdout
    stats = json.loads(out.read_text())
    entry = stats["bridge_orig"]
    assert set(entry) == {"action", "proprio", "num_transitions", "num_trajectories"}
    assert set(entry["action"]) == {"mean", "std", "min", "max", "q01", "q99", "mask"}
    assert entry["action"]["mask"] == [True] * 6 + [False] and entry["num_trajectories"] == 3
    r2 = _cli("stats", "--data-dir", str(rlds_dir), "--dataset", "bridge_orig")
    assert r2.returncode == 0 and "reused cached" in r2.stdout
    assert json.loads(r2.stdout[r2.stdout.index("{"):]) == stats


@pytest.mark.slow  # three CLI runs, one importing tensorflow
def test_inspect_and_calvin(rlds_dir, calvin_dir, tmp_path):
    r = _cli("inspect", "--data-dir", str(rlds_dir), "--dataset", "bridge_orig")
    assert r.returncode == 0, r.stderr
    assert "raw episodes per split {'train': 4}" in r.stdout and "(32, 32, 3)" in r.stdout
    assert "put the block" in r.stdout
    r = _cli("inspect", "--data-dir", str(calvin_dir), "--dataset", "calvin_tiny")
    assert r.returncode == 0, r.stderr
    assert "2 episodes, 3 annotated windows" in r.stdout and "rel_actions" not in r.stdout
    out = tmp_path / "s.json"
    r = _cli("stats", "--data-dir", str(calvin_dir), "--dataset", "calvin_tiny", "--out", str(out))
    assert r.returncode == 0, r.stderr
    s = json.loads(out.read_text())["calvin_tiny"]
    assert s["num_trajectories"] == 3 and s["num_transitions"] == 10 + 15 + 14
    assert len(s["proprio"]["mean"]) == 15
    np.testing.assert_allclose(s["action"]["max"][6], 1.0)


def test_user_errors_are_clean(rlds_dir, tmp_path):
    r = _cli("stats", "--data-dir", str(rlds_dir), "--dataset", "brigde_orig")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert 'vla-parl: error: dataset \'brigde_orig\' not found' in r.stderr and 'Did you mean "bridge_orig"' in r.stderr
    r = _cli("inspect", "--data-dir", str(tmp_path / "missing"), "--dataset", "bridge_orig")
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
