"""`vla-parl data export-lerobot`: replay episodes → a LeRobotDataset v3.0 that reads back as it was written."""

from __future__ import annotations

import numpy as np

from tests.recipes._cli import run_cli


def _replay(root):
    from vla_parl.data.replay import ReplayBuffer

    rng = np.random.default_rng(0)
    buf = ReplayBuffer(root, mc_gamma=0.9, mc_tail="truncated")
    episodes = []
    for e, T in enumerate((4, 6, 5)):
        image = np.zeros((T + 1, 24, 24, 3), np.uint8)
        image[...] = np.array([(25 * t, 60 * e, 100) for t in range(T + 1)], np.uint8)[:, None, None, :]
        ep = {"image": image, "proprio": rng.normal(size=(T + 1, 7)).astype(np.float32),
              "action": rng.uniform(-1, 1, (T, 7)).astype(np.float32), "terminal": e != 1,
              "instruction": f"reach the block {e}"}
        reward = np.r_[-np.ones(T - 1), 0.0 if ep["terminal"] else -1.0].astype(np.float32)
        buf.add_episode({"image": image, "proprio": ep["proprio"]}, ep["action"], reward, terminal=ep["terminal"],
                        instruction=ep["instruction"], info={"success": ep["terminal"]})
        episodes.append(ep)
    buf.close()
    return episodes


def test_export_reads_back(tmp_path):
    from vla_parl.data.lerobot import LeRobotSource

    episodes = _replay(tmp_path / "replay")
    out = tmp_path / "exported"
    proc, _ = run_cli("data", "export-lerobot", str(tmp_path / "replay"), str(out), "--fps", "5")
    assert proc.returncode == 0, proc.stderr
    assert "wrote 3 episodes" in proc.stdout
    src = LeRobotSource(out)
    assert src.version == "v3.0" and src.fps == 5 and src.info["total_frames"] == 15
    for ep, traj in zip(episodes, src.iter_trajectories()):
        T = len(ep["action"])
        np.testing.assert_array_equal(traj["action"], ep["action"])
        np.testing.assert_array_equal(traj["proprio"], ep["proprio"][:T])     # the final observation is dropped
        assert traj["instruction"] == ep["instruction"]
        assert traj["reward"].tolist() == [0.0] * (T - 1) + [float(ep["terminal"])]   # next.success
        assert np.abs(traj["image"].astype(int) - ep["image"][:T]).mean() < 4          # lossy video
    proc, _ = run_cli("data", "export-lerobot", str(tmp_path / "replay"), str(out))
    assert proc.returncode != 0 and "already exists" in proc.stderr                  # never overwritten
    assert not list(tmp_path.glob(".exported.tmp-*"))


def test_a_stored_wrist_camera_is_exported_as_a_second_video(tmp_path):
    from vla_parl.data.lerobot import LeRobotSource
    from vla_parl.data.lerobot_write import replay_episodes, write_lerobot
    from vla_parl.data.replay import ReplayBuffer

    buf = ReplayBuffer(tmp_path / "replay", durable=False)
    frames = []
    for e, T in enumerate((3, 4)):
        image = np.zeros((T, 16, 16, 3), np.uint8)
        image[...] = np.array([(30 * t, 80 * e, 60) for t in range(T)], np.uint8)[:, None, None, :]
        buf.add_episode({"image": image, "image_wrist": 255 - image}, np.zeros((T, 7), np.float32),
                        -np.ones(T, np.float32), terminal=False, instruction="x")
        frames.append(255 - image)
    out = write_lerobot(replay_episodes(buf), tmp_path / "out", codec="libx264")
    buf.close()
    src = LeRobotSource(out, wrist_camera_key="observation.images.wrist")
    assert src.camera_key == "observation.images.image"
    assert sorted(p.parent.parent.name for p in (out / "videos").rglob("*.mp4")) == [
        "observation.images.image", "observation.images.wrist"]
    for want, traj in zip(frames, src.iter_trajectories()):
        assert np.abs(traj["image_wrist"].astype(int) - want).mean() < 4                 # lossy video
