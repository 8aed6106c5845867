import json
import os

import numpy as np
import pytest

from vla_parl.data.rlds import iter_trajectories
from vla_parl.data.statistics import (array_statistics, calvin_statistics, compute_statistics, load_statistics,
                                      merge_norm_stats, rlds_statistics, save_statistics)
from vla_parl.errors import ConfigError


def _numpy_stats(x, mask):
    return {"mean": x.mean(0), "std": x.std(0), "min": x.min(0), "max": x.max(0),
            "q01": np.quantile(x, 0.01, axis=0), "q99": np.quantile(x, 0.99, axis=0), "mask": mask}


def test_compute_equals_numpy():
    rng = np.random.default_rng(0)
    trajs = [{"action": rng.normal(size=(n, 7)).astype(np.float32),
              "proprio": rng.normal(size=(n, 3)).astype(np.float32)} for n in (5, 17, 1)]
    s = compute_statistics(trajs)
    a = np.concatenate([t["action"] for t in trajs]).astype(np.float64)
    p = np.concatenate([t["proprio"] for t in trajs]).astype(np.float64)
    for got, exp in ((s["action"], _numpy_stats(a, [True] * 6 + [False])), (s["proprio"], _numpy_stats(p, [True] * 3))):
        for k in exp:
            np.testing.assert_allclose(got[k], exp[k], rtol=1e-12, err_msg=k)
    assert s["num_transitions"] == 23 and s["num_trajectories"] == 3


def test_rlds_statistics_and_cache(rlds_dir):
    stats, path, hit = rlds_statistics(rlds_dir, "bridge_orig", refresh=True)
    assert not hit and path.parent == rlds_dir / "bridge_orig" / "1.0.0"
    trajs = list(iter_trajectories(rlds_dir, "bridge_orig"))
    a = np.concatenate([t["action"] for t in trajs]).astype(np.float64)
    np.testing.assert_allclose(stats["bridge_orig"]["action"]["q99"], np.quantile(a, 0.99, axis=0), rtol=1e-12)
    assert stats["bridge_orig"]["num_trajectories"] == 3 and stats["bridge_orig"]["num_transitions"] == len(a)
    assert json.loads(path.read_text()) == stats
    again, path2, hit2 = rlds_statistics(rlds_dir, "bridge_orig")
    assert hit2 and path2 == path and again == stats


def test_cache_miss_when_data_changes(calvin_dir):
    s1, p1, _ = calvin_statistics(calvin_dir, name="calvin_tiny", refresh=True)
    assert calvin_statistics(calvin_dir, name="calvin_tiny")[2]  # hit
    f = calvin_dir / "training" / "episode_0000003.npz"
    st = os.stat(f)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    s2, p2, hit = calvin_statistics(calvin_dir, name="calvin_tiny")
    assert not hit and p2 != p1 and s2 == s1  # same content, new key
    assert s1["calvin_tiny"]["proprio"]["mask"] == [True] * 15


def test_merge_norm_stats_and_io(tmp_path):
    entry = {"action": array_statistics(np.arange(14.0).reshape(2, 7)), "num_transitions": 2,
             "num_trajectories": 1}
    model = {"bridge_orig": {"action": {"q01": [0] * 7}}, "fractal20220817_data": {"action": {}}}
    merged = merge_norm_stats(model, {"bridge_orig": entry, "mine": entry})
    assert set(merged) == {"bridge_orig", "fractal20220817_data", "mine"}
    assert merged["bridge_orig"] == entry and model["bridge_orig"] == {"action": {"q01": [0] * 7}}
    assert merge_norm_stats(None, {"mine": entry}) == {"mine": entry}
    with pytest.raises(ConfigError, match="lacks \\['q01', 'q99'\\]"):
        merge_norm_stats(None, {"mine": {"action": {"mask": [True]}}})
    with pytest.raises(ConfigError, match="non-empty"):
        merge_norm_stats({}, {})
    save_statistics(tmp_path / "dataset_statistics.json", {"mine": entry})
    assert load_statistics(tmp_path / "dataset_statistics.json") == {"mine": entry}
    with pytest.raises(ConfigError, match="vla-parl data stats"):
        load_statistics(tmp_path / "missing.json")
