"""The offline transition store: built once per dataset content, shared across runs, never half-written."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.data._lerobot_data import LENGTHS


class _Main:
    """The one-process stand-in for an Accelerator that `open_offline_data` needs (main rank, no barrier)."""

    is_main_process = True

    def main_process_first(self):
        import contextlib

        return contextlib.nullcontext()


def _data(path, **kw):
    from vla_parl.recipes._configs import DataSection

    return DataSection(kind="lerobot", path=str(path), **kw)


def test_store_is_built_once_shared_and_normalised_when_sampled(lerobot_dirs, tmp_path):
    from vla_parl.training.data import open_offline_data

    data = _data(lerobot_dirs["v3.0"], store_dir=str(tmp_path / "stores"))
    runs = [tmp_path / "run_a", tmp_path / "run_b"]
    raw = open_offline_data(_Main(), data, runs[0], None, None, 0.9)
    (store,) = [p for p in (tmp_path / "stores").iterdir() if p.is_dir()]
    assert store.name.startswith("tiny_v3-") and (store / "complete").is_file()
    built = (store / "complete").stat().st_mtime_ns
    doubled = open_offline_data(_Main(), data, runs[1], None, lambda a: 2 * a, 0.9)
    assert (store / "complete").stat().st_mtime_ns == built          # reused, not rebuilt
    assert not any(r.exists() for r in runs)                        # nothing copied into the run dirs
    # failed (odd) episodes end without the observation after their last step: that transition is not sampled
    assert raw.num_episodes == len(LENGTHS) and len(raw) == sum(LENGTHS) - len(LENGTHS[1::2])
    a = raw.sample(16, np.random.default_rng(1))
    b = doubled.sample(16, np.random.default_rng(1))
    np.testing.assert_allclose(b["action"], 2 * a["action"])       # each run normalises its own samples
    assert a["obs"]["image"].dtype == np.uint8 and a["obs"]["image"].shape[1:] == (32, 32, 3)
    ep = raw.episode(raw.episode_ids[0])
    assert isinstance(ep["obs"]["image"], np.memmap)                 # memory-mapped, not loaded
    # success labels → PA-RL's sparse reward (−1 per step, 0 on success) and Monte-Carlo returns with γ
    assert ep["reward"].tolist() == [-1.0] * (LENGTHS[0] - 1) + [0.0]
    raw.close(), doubled.close()


def test_store_key_follows_content_and_gamma(lerobot_dirs, tmp_path):
    import shutil

    from vla_parl.data.sources import OfflineSource
    from vla_parl.data.transition_store import store_path

    root = shutil.copytree(lerobot_dirs["v2.1"], tmp_path / "ds")
    src = OfflineSource(_data(root))
    key = store_path(tmp_path, src.name, src.identity(), src.files(), 0.9)
    assert key == store_path(tmp_path, src.name, src.identity(), src.files(), 0.9)
    assert key != store_path(tmp_path, src.name, src.identity(), src.files(), 0.99)
    assert key != store_path(tmp_path, src.name, {**src.identity(), "max_episodes": 2}, src.files(), 0.9)
    f = root / "data" / "chunk-000" / "episode_000002.parquet"
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))   # the data changed
    assert key != store_path(tmp_path, src.name, src.identity(), OfflineSource(_data(root)).files(), 0.9)


def test_a_failed_build_leaves_nothing_behind_and_a_crash_is_cleaned(tmp_path):
    from vla_parl.data.transition_store import build_store, is_complete

    path = tmp_path / "stores" / "demo-abc"

    def episodes(fail_at: int | None = 2):
        for i in range(3 if fail_at else 2):
            if i == fail_at:
                raise RuntimeError("reader failed mid-way")
            yield {"image": np.zeros((4, 8, 8, 3), np.uint8), "action": np.zeros((3, 7), np.float32),
                   "reward": -np.ones(3, np.float32), "terminal": False, "instruction": "x"}

    with pytest.raises(RuntimeError, match="mid-way"):
        build_store(path, episodes, 0.9)
    assert not path.exists() and not list(path.parent.glob(".tmp-*"))
    (path.parent / f".tmp-{path.name}-dead").mkdir()                  # a build killed by the OS
    (path.parent / f".tmp-{path.name}-dead" / "buffer.json").write_text("{")
    record = build_store(path, lambda: episodes(fail_at=None), 0.9)
    assert is_complete(path) and record["episodes"] == 2 and record["transitions"] == 6
    assert not list(path.parent.glob(".tmp-*"))


# ---- a wrist camera: stored when the dataset has one and data.wrist_camera_key asks for it -----------------------

def _sample_store(data, tmp_path):
    from vla_parl.training.data import batch_to_transitions, open_offline_data

    store = open_offline_data(_Main(), data, tmp_path / "run", None, None, 0.9)
    batch = store.sample(12, np.random.default_rng(0))
    transitions = batch_to_transitions(batch, use_state=False)
    store.close()
    return batch, transitions


def test_lerobot_wrist_camera_is_stored_and_sampled(tmp_path):
    from tests.data._lerobot_data import colour, write

    root = write(tmp_path / "wrist_v3", "v3.0", wrist=True)
    batch, transitions = _sample_store(_data(root, store_dir=str(tmp_path / "stores"),
                                             wrist_camera_key="observation.images.wrist"), tmp_path)
    for obs in (batch["obs"], batch["next_obs"]):
        assert obs["image_wrist"].shape == obs["image"].shape and obs["image_wrist"].dtype == np.uint8
    want = 255 - np.array([colour(int(e), int(t)) for e, t in zip(batch["episode"], batch["t"])], np.float32)
    assert np.abs(batch["obs"]["image_wrist"].mean(axis=(1, 2)) - want).max() < 6   # lossy video, flat colours
    assert transitions.obs.extras["image_wrist"].shape == tuple(batch["obs"]["image_wrist"].shape)
    # without the key the same dataset gives the unchanged format (and its own store)
    batch, transitions = _sample_store(_data(root, store_dir=str(tmp_path / "stores")), tmp_path)
    assert "image_wrist" not in batch["obs"] and "image_wrist" not in transitions.obs.extras
    assert len([p for p in (tmp_path / "stores").iterdir() if p.is_dir()]) == 2


def test_rlds_and_calvin_wrist_cameras_are_stored_when_asked(rlds_dir, calvin_dir, tmp_path):
    from vla_parl.data.sources import OfflineSource
    from vla_parl.recipes._configs import DataSection

    rlds = DataSection(kind="rlds", path=str(rlds_dir), dataset_name="bridge_orig",
                       store_dir=str(tmp_path / "stores"), wrist_camera_key="image_1")
    batch, _ = _sample_store(rlds, tmp_path)
    trajectories = list(OfflineSource(rlds).trajectories())
    for e, t, wrist in zip(batch["episode"], batch["t"], batch["obs"]["image_wrist"]):
        np.testing.assert_array_equal(wrist, trajectories[int(e)]["image_wrist"][int(t)])   # image_1, as read
    calvin = DataSection(kind="calvin", path=str(calvin_dir),
                         store_dir=str(tmp_path / "stores"), wrist_camera_key="rgb_gripper")
    batch, _ = _sample_store(calvin, tmp_path)
    assert batch["obs"]["image_wrist"].dtype == np.uint8 and batch["obs"]["image_wrist"].shape[0] == 12
    from vla_parl.errors import ConfigError

    with pytest.raises(ConfigError, match="CALVIN's wrist camera is 'rgb_gripper'"):
        OfflineSource(DataSection(kind="calvin", path=str(calvin_dir),
                                  wrist_camera_key="gripper"))
