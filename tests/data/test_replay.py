import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from vla_parl.data.replay import ReplayBuffer, sample_mixed, to_torch
from vla_parl.errors import ConfigError, VLAParlError

REPO = Path(__file__).resolve().parents[2]


def _episode(eid, T=5, size=8, final=True, terminal=True):
    L = T + 1 if final else T
    img = np.full((L, size, size, 3), eid % 251, np.uint8)
    img[:, 0, 0, 0] = np.arange(L)
    return dict(obs={"image": img, "proprio": np.arange(L * 2, dtype=np.float32).reshape(L, 2) + eid},
                action=np.full((T, 7), eid, np.float32) + np.arange(T)[:, None],
                reward=np.arange(T, dtype=np.float32) + 10 * eid, terminal=terminal, instruction=f"task {eid}")


def _check_episode(buf, eid, **kw):
    exp, ep = _episode(eid, **kw), buf.episode(eid)
    np.testing.assert_array_equal(ep["obs"]["image"], exp["obs"]["image"])
    np.testing.assert_array_equal(ep["obs"]["proprio"], exp["obs"]["proprio"])
    np.testing.assert_array_equal(ep["action"], exp["action"])
    np.testing.assert_array_equal(ep["reward"], exp["reward"])
    assert ep["meta"]["instruction"] == exp["instruction"]


def test_roundtrip_reopen_continue(tmp_path):
    with ReplayBuffer(tmp_path / "b", mc_gamma=0.5, mc_tail="truncated") as buf:
        for e in range(3):
            assert buf.add_episode(**_episode(e)) == e
        assert len(buf) == 15 and buf.has_mc_return
        assert isinstance(buf.episode(0)["obs"]["image"], np.memmap)
    buf = ReplayBuffer(tmp_path / "b")
    assert buf.episode_ids == [0, 1, 2]
    for e in range(3):
        _check_episode(buf, e)
    # r = [0,1,2,3,4], terminal, gamma 0.5: G4 = 4, G3 = 3+2 = 5, G2 = 2+2.5 = 4.5, G1 = 1+2.25 = 3.25,
    # G0 = 0 + 1.625 = 1.625
    np.testing.assert_allclose(buf.episode(0)["mc_return"], [1.625, 3.25, 4.5, 5, 4])
    assert buf.add_episode(**_episode(3)) == 3
    buf.close()


def test_mc_returns_follow_the_store_rule(tmp_path):
    with pytest.raises(ConfigError, match="mc_gamma needs mc_tail.*'failure' for real-robot"):
        ReplayBuffer(tmp_path / "none", mc_gamma=0.5)
    failed = dict(_episode(0, T=3, terminal=False), reward=-np.ones(3, np.float32))
    # gamma 0.5, r = [-1, -1, -1] never successful: a real-robot store values it -1/(1 - 0.5) = -2 everywhere,
    # a simulated/offline one by the truncated sum [-1.75, -1.5, -1]
    for tail, expected in (("failure", [-2, -2, -2]), ("truncated", [-1.75, -1.5, -1.0])):
        with ReplayBuffer(tmp_path / tail, mc_gamma=0.5, mc_tail=tail) as buf:
            buf.add_episode(**failed)
            np.testing.assert_allclose(buf.episode(0)["mc_return"], expected)


def test_sample_batch_and_n_step(tmp_path):
    buf = ReplayBuffer(tmp_path / "b", gamma=0.5, n_step=2)
    buf.add_episode(**_episode(0, T=4, final=False, terminal=False))  # starts 0, 1 valid (t + 2 < 4)
    buf.add_episode(**_episode(1, T=3, final=False, terminal=True))   # all 3 starts valid
    assert len(buf) == 5
    b = buf.sample(400, np.random.default_rng(0))
    assert b["obs"]["image"].dtype == np.uint8 and b["obs"]["image"].shape == (400, 8, 8, 3)
    assert b["action"].shape == (400, 7) and len(b["obs"]["instruction"]) == 400
    assert "mc_return" not in b
    seen = set()
    for i in range(400):
        e, t = int(b["episode"][i]), int(b["t"][i])
        seen.add((e, t))
        r = np.arange(4 if e == 0 else 3) + 10 * e
        m = min(2, len(r) - t)
        assert b["reward"][i] == pytest.approx(sum(0.5 ** j * r[t + j] for j in range(m)))
        assert b["discount"][i] == 0.5 ** m
        assert b["done"][i] == float(e == 1 and t + m == 3)
        if not b["done"][i]:  # next obs = obs[t + m] (pixel (0,0,0) holds the frame index)
            assert b["next_obs"]["image"][i, 0, 0, 0] == t + m
        assert b["obs"]["image"][i, 0, 0, 0] == t and b["obs"]["instruction"][i] == f"task {e}"
    assert seen == {(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)}
    tb = to_torch(b)
    assert tb["obs"]["image"].dtype.__str__() == "torch.uint8" and tb["reward"].shape == (400,)


def test_mixed_ratio(tmp_path):
    off = ReplayBuffer(tmp_path / "off", mc_gamma=0.9, mc_tail="truncated")
    on = ReplayBuffer(tmp_path / "on", mc_gamma=0.9, mc_tail="truncated")
    for e in range(3):
        off.add_episode(**_episode(e))
    rng = np.random.default_rng(0)
    assert not sample_mixed(off, on, 8, rng=rng)["is_online"].any()  # online empty: all offline
    on.add_episode(**_episode(7))
    b = sample_mixed(off, on, 256, rng=rng)
    assert b["is_online"].sum() == 128 and "mc_return" in b
    assert (b["episode"][b["is_online"]] == 0).all() and (b["obs"]["instruction"][-1] == "task 7")
    fracs = [sample_mixed(off, on, 10, online_fraction=0.25, rng=rng)["is_online"].mean() for _ in range(2000)]
    assert abs(np.mean(fracs) - 0.25) < 0.01  # 2.5 per batch on average: 2 or 3
    assert set(np.round(np.array(fracs) * 10).astype(int)) == {2, 3}
    with pytest.raises(ConfigError, match="online_fraction"):
        sample_mixed(off, on, 8, online_fraction=1.5)


def test_schema_lock_and_bad_input(tmp_path):
    buf = ReplayBuffer(tmp_path / "b")
    buf.add_episode(**_episode(0))
    with pytest.raises(ConfigError, match="schema"):
        buf.add_episode(**_episode(1, size=4))
    bad = _episode(1)
    bad["obs"]["image"] = bad["obs"]["image"].astype(np.float32)
    with pytest.raises(ConfigError, match="uint8"):
        buf.add_episode(**bad)
    with pytest.raises(VLAParlError, match="readonly=True"):
        ReplayBuffer(tmp_path / "b")
    ro = ReplayBuffer(tmp_path / "b", readonly=True)
    assert ro.num_episodes == 1
    with pytest.raises(VLAParlError, match="read-only"):
        ro.add_episode(**_episode(1))
    with pytest.raises(ConfigError, match="not a replay buffer"):
        ReplayBuffer(tmp_path / "none", readonly=True)


def test_index_rebuilt_from_episode_folders(tmp_path):
    with ReplayBuffer(tmp_path / "b") as buf:
        for e in range(3):
            buf.add_episode(**_episode(e))
    idx = tmp_path / "b" / "index.jsonl"
    lines = idx.read_text().splitlines()
    idx.write_text(lines[0] + "\n" + lines[1][:7])  # lost episode 2's line and tore episode 1's
    with ReplayBuffer(tmp_path / "b") as buf:
        assert buf.episode_ids == [0, 1, 2]
        for e in range(3):
            _check_episode(buf, e)
    assert [json.loads(x)["id"] for x in idx.read_text().splitlines()] == [0, 1, 2]
    idx.unlink()
    with ReplayBuffer(tmp_path / "b") as buf:
        assert buf.episode_ids == [0, 1, 2]


_CHILD = textwrap.dedent("""
    import sys, numpy as np
    sys.path.insert(0, {repo!r})
    from vla_parl.data.replay import ReplayBuffer
    buf = ReplayBuffer({root!r})
    e = buf.num_episodes
    while True:
        T = 3 if e < 3 else 150  # the first three are small, later ones take a while to write
        img = np.full((T + 1, 128, 128, 3), e % 251, np.uint8)
        buf.add_episode({{"image": img, "proprio": np.full((T + 1, 2), e, np.float32)}},
                        np.full((T, 7), e, np.float32), np.full(T, e, np.float32), terminal=True,
                        instruction=f"ep {{e}}")
        print(e, flush=True)
        e += 1
""")


def test_survives_sigkill_mid_append(tmp_path):
    root = tmp_path / "b"
    child = subprocess.Popen([sys.executable, "-c", _CHILD.format(repo=str(REPO), root=str(root))],
                             stdout=subprocess.PIPE, text=True)
    try:
        done = [int(child.stdout.readline()) for _ in range(4)]
        deadline = time.time() + 30
        while time.time() < deadline:  # kill while an episode is being written
            if any(p.name.startswith(".tmp-") for p in os.scandir(root / "episodes")):
                os.kill(child.pid, signal.SIGKILL)
                break
            time.sleep(0.0005)
        else:
            pytest.fail("never saw an append in flight")
    finally:
        child.kill()
        child.wait()
    done += [int(x) for x in child.stdout.read().split()]
    in_flight = [p.name for p in os.scandir(root / "episodes") if p.name.startswith(".tmp-")]
    buf = ReplayBuffer(root)
    assert buf.episode_ids[:len(done)] == done and buf.num_episodes in (len(done), len(done) + 1)
    for e in buf.episode_ids:
        ep = buf.episode(e)
        assert (ep["obs"]["image"] == e % 251).all() and (ep["action"] == e).all()
        assert ep["meta"]["instruction"] == f"ep {e}"
    assert not any(p.name.startswith(".tmp-") for p in os.scandir(root / "episodes"))
    assert in_flight, "the kill must land while an episode is being written"
    nxt = buf.add_episode({"image": np.zeros((2, 128, 128, 3), np.uint8), "proprio": np.zeros((2, 2), np.float32)},
                          np.zeros((1, 7)), np.zeros(1), terminal=True)
    assert nxt == buf.episode_ids[-2] + 1
    buf.sample(16)
    buf.close()


def test_schema_and_episode_meta_without_opening_arrays(tmp_path):
    with ReplayBuffer(tmp_path / "b") as buf:
        assert buf.schema == {"obs": None, "action_dim": None}
        eid = buf.add_episode(**_episode(0), info={"server_episode_id": "abc", "policy_versions": [0, 1]})
        assert buf.schema == {"obs": {"image": {"shape": [8, 8, 3], "dtype": "uint8"},
                                      "proprio": {"shape": [2], "dtype": "float32"}}, "action_dim": 7}
    with ReplayBuffer(tmp_path / "b", readonly=True) as ro:
        meta = ro.episode_meta(eid)
        assert meta["info"] == {"server_episode_id": "abc", "policy_versions": [0, 1]}
        assert (meta["num_steps"], meta["num_obs"], meta["terminal"]) == (5, 6, True)
        meta["info"]["x"] = 1                   # a copy: the buffer's own entry is unchanged
        assert "x" not in ro.episode_meta(eid)["info"] and not ro._cache
        with pytest.raises(KeyError, match="episode 7"):
            ro.episode_meta(7)
