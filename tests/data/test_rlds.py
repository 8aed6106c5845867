import shutil

import numpy as np
import pytest

from vla_parl.data.loader import RLDSStepDataset
from vla_parl.data.rlds import iter_steps, iter_trajectories, resolve_dataset_dir, shuffle_steps
from vla_parl.data.standardize import bridge_standardize
from vla_parl.data.synthetic import rlds_episode
from vla_parl.errors import ConfigError, VLAParlError


def _expected(lengths, image_size=32):
    """Standardised trajectories of the fixture, computed from the raw content without TFDS."""
    out = {}
    for ep, T in enumerate(lengths):
        raw = rlds_episode(ep, T, image_size)
        if not raw["instruction"]:
            continue
        out[raw["instruction"]] = bridge_standardize({
            "state": raw["state"], "action": raw["action"], "image": raw["image_0"], "reward": raw["reward"],
            "is_terminal": np.arange(T) == T - 1, "instruction": raw["instruction"]})
    return out


def test_reads_back_exact_values(rlds_dir, rlds_lengths):
    expected = _expected(rlds_lengths)
    got = {t["instruction"]: t for t in iter_trajectories(rlds_dir, "bridge_orig")}
    assert sorted(got) == sorted(expected)  # episode 1 (no language) is skipped
    for k, exp in expected.items():
        g = got[k]
        for key in ("action", "proprio", "reward", "is_first", "is_last", "is_terminal"):
            np.testing.assert_array_equal(g[key], exp[key], err_msg=key)
        assert g["image"].dtype == np.uint8 and g["image"].shape == exp["image"].shape
        assert np.abs(g["image"].astype(int) - exp["image"]).max() <= 3  # JPEG of flat colours
        assert "image_1" not in g
    # the relabelled gripper: raw commands 1, .5, 0, 0, .7 after dropping step 0 -> 1, 0, 0, 0 (+ dropped)
    np.testing.assert_array_equal(got["put the block 0 in the pot"]["action"][:, 6], [1, 0, 0, 0])


def test_shards_are_disjoint_and_cover(rlds_dir):
    ids = [[t["episode_id"] for t in iter_trajectories(rlds_dir, "bridge_orig", shard=(i, 3))] for i in range(3)]
    flat = [x for part in ids for x in part]
    assert len(flat) == len(set(flat)) == 3


def test_torch_dataloader_epochs(rlds_dir, rlds_lengths):
    import torch

    ds = RLDSStepDataset(rlds_dir, "bridge_orig", shuffle_buffer=4, seed=1)
    n_steps = sum(len(t["action"]) for t in _expected(rlds_lengths).values())
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=0)
    orders = []
    for _ in range(2):
        seen = []
        for b in loader:
            assert b["image"].dtype == torch.uint8 and b["image"].shape[1:] == (32, 32, 3)
            assert b["action"].shape[1:] == (7,) and isinstance(b["instruction"], list)
            seen += [f"{e}/{int(s)}" for e, s in zip(b["episode_id"], b["step"])]
        assert len(seen) == len(set(seen)) == n_steps
        orders.append(seen)
    assert orders[0] != orders[1]  # a new shuffle each epoch


@pytest.mark.slow
def test_torch_dataloader_workers_are_disjoint(rlds_dir, rlds_lengths):
    import torch

    ds = RLDSStepDataset(rlds_dir, "bridge_orig", shuffle_buffer=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="spawn")
    seen = [f"{s['episode_id']}/{int(s['step'])}" for s in loader]
    assert len(seen) == len(set(seen)) == sum(len(t["action"]) for t in _expected(rlds_lengths).values())


def test_shuffle_buffer_is_bounded_permutation():
    import random

    held = []

    def stream():
        for i in range(100):
            held.append(i)
            yield {"i": i}

    out = []
    for s in shuffle_steps(stream(), 10, random.Random(0)):
        out.append(s["i"])
        # at most buffer_size items read but not yet emitted
        assert len(held) - len(out) <= 10
    assert sorted(out) == list(range(100)) and out != list(range(100))
    assert [s["i"] for s in shuffle_steps(({"i": i} for i in range(5)), 0, random.Random(0))] == list(range(5))


def test_missing_dir_and_wrong_name(rlds_dir, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_dataset_dir(tmp_path / "nope", "bridge_orig")
    with pytest.raises(ConfigError, match=r'not found.*Did you mean "bridge_orig".*holds: bridge_orig'):
        resolve_dataset_dir(rlds_dir, "bridge_orgi")
    with pytest.raises(ConfigError, match="available: 1.0.0"):
        resolve_dataset_dir(rlds_dir, "bridge_orig", "9.9.9")
    shutil.copytree(rlds_dir / "bridge_orig", tmp_path / "d" / "bridge_origx")
    with pytest.raises(ConfigError, match="no reader layout registered.*Did you mean"):
        next(iter_trajectories(tmp_path / "d", "bridge_origx"))
    with pytest.raises(ConfigError, match="split 'test' not in"):
        next(iter_trajectories(rlds_dir, "bridge_orig", split="test"))


def test_corrupt_tfrecord_names_the_file(rlds_dir, tmp_path):
    shutil.copytree(rlds_dir, tmp_path / "d")
    shard = next((tmp_path / "d" / "bridge_orig" / "1.0.0").glob("*.tfrecord*"))
    data = bytearray(shard.read_bytes())
    for i in range(200, 260):
        data[i] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(VLAParlError, match=f"corrupt TFDS record.*{shard.name}"):
        list(iter_steps(tmp_path / "d", "bridge_orig"))
