"""The learner's side of the robot loop: episodes that robots finished through the policy server.

`vla-parl serve --episodes DIR` writes every finished episode into DIR as a `vla_parl.data.ReplayBuffer`
(the server holds the writer lock; a reader sees an episode whole or not at all). `RobotEpisodes(DIR)`
reopens it read-only on every poll and hands out the episodes not yet consumed, oldest first — the
`online.env=robot` adapter of the parl recipe:

    robot = RobotEpisodes(replay_dir, poll_s=2.0)
    robot.match_offline({"image": (56, 56, 3), "proprio": (7,), "state": (6,)})   # what training mixes with
    ids = robot.wait(16, consumed=set_of_server_episode_ids, timeout_s=3600, hint="...")
    episodes = robot.load(ids)                  # RobotEpisode, in store order
    learner_dicts = [robot.to_learner(ep) for ep in episodes]

A stored episode holds obs ``image`` uint8 [L, H, W, 3] (+ ``proprio`` [L, P], ``state`` [L, S] when the robot
sends them), the executed actions
normalised to [-1, 1] [T, A], rewards [T] (−1 per step, 0 on the last step of a success, or the robot's
own), ``terminal`` and the instruction; its info names the server's episode id ("server_episode_id") and
the policy version that served each step ("policy_versions"). An episode is counted under the version that
served its first step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vla_parl.errors import ConfigError, VLAParlError

__all__ = ["RobotEpisode", "RobotEpisodes", "robot_metrics"]

#: observation keys a robot may send: its camera, its proprioception and, for a critic that reads one, a
#: low-dimensional `state` (object poses from a tracker; the simulated robots send the tabletop's block state)
ROBOT_OBS_KEYS = ("image", "proprio", "state")


@dataclass
class RobotEpisode:
    """One stored robot episode (arrays copied out of the store)."""

    server_id: str
    store_id: int
    obs: dict[str, np.ndarray]
    action: np.ndarray
    reward: np.ndarray
    terminal: bool
    instruction: str
    success: bool
    policy_version: int | None


class RobotEpisodes:
    """Waits for and reads finished episodes in the policy server's replay store.

    Args:
        replay_dir: the server's `--episodes DIR` (it need not exist yet: the learner may start first).
        poll_s: seconds between looks at the store while waiting.
    """

    def __init__(self, replay_dir: str | Path, *, poll_s: float = 2.0) -> None:
        self.replay_dir = Path(replay_dir).expanduser()
        self.poll_s = poll_s
        self.obs_shapes: dict[str, tuple[int, ...]] | None = None
        self._server_ids: dict[int, str] = {}      # store id → server episode id, for episodes already seen

    # ---- what training mixes the episodes with ------------------------------------------------------------------
    def match_offline(self, offline_shapes: dict[str, tuple[int, ...]]) -> None:
        """Take the shapes of the offline observations training reads: robot episodes are converted to them
        (`to_learner`). ConfigError when they include a camera or input a robot episode cannot carry."""
        extra = sorted(set(offline_shapes) - set(ROBOT_OBS_KEYS))
        if extra:
            raise ConfigError(f"online.env=robot: the offline data holds {extra}, which robot episodes do not carry "
                              f"(they hold {list(ROBOT_OBS_KEYS)}); train on data without them (e.g. leave "
                              f"data.wrist_camera_key null)")
        self.obs_shapes = {k: tuple(offline_shapes[k]) for k in ROBOT_OBS_KEYS if k in offline_shapes}

    # ---- the store ----------------------------------------------------------------------------------------------
    def _open(self) -> Any:
        from vla_parl.data import ReplayBuffer

        if not (self.replay_dir / "buffer.json").is_file():
            return None                                 # no episode stored yet (or no server started)
        return ReplayBuffer(self.replay_dir, readonly=True)

    def pending(self, consumed: set[str]) -> list[int]:
        """Store ids of the finished episodes whose server id is not in `consumed`, oldest first."""
        store = self._open()
        if store is None:
            return []
        try:
            for eid in store.episode_ids:
                if eid not in self._server_ids:
                    info = store.episode(eid)["meta"].get("info", {})
                    self._server_ids[eid] = str(info.get("server_episode_id") or f"store-{eid}")
            return [eid for eid in store.episode_ids if self._server_ids[eid] not in consumed]
        finally:
            store.close()

    def wait(self, count: int, consumed: set[str], *, timeout_s: float, progress: bool = True,
             hint: str | None = "") -> list[int]:
        """Block until `count` unconsumed episodes are stored; their store ids (the oldest `count`).

        Shows a progress bar "waiting for robot episodes k/N" (`progress`) and, once, a line on stderr saying
        where it waits and `hint` (what to run; None: no line). VLAParlError after `timeout_s` seconds without
        enough episodes."""
        import sys

        from tqdm import tqdm

        started = time.monotonic()
        found = self.pending(consumed)
        if len(found) >= count:
            return found[:count]
        if hint is not None:
            print(f"vla-parl: waiting for {count} new finished robot episodes in {self.replay_dir} "
                  f"({len(found)} there now){'; ' + hint if hint else ''}", file=sys.stderr, flush=True)
        with tqdm(total=count, initial=len(found), desc="waiting for robot episodes", disable=not progress,
                  leave=False) as bar:
            while len(found) < count:
                if time.monotonic() - started > timeout_s:
                    raise VLAParlError(
                        f"waited {timeout_s:g} s for {count} new finished robot episodes in {self.replay_dir} and "
                        f"got {len(found)}: is the policy server running with --episodes {self.replay_dir} and are "
                        f"robots ending their episodes? Raise online.robot.wait_timeout_s to wait longer; the last "
                        f"checkpoint is kept, continue with --resume")
                time.sleep(self.poll_s)
                found = self.pending(consumed)
                bar.update(min(len(found), count) - bar.n)
        return found[:count]

    def load(self, store_ids: list[int]) -> list[RobotEpisode]:
        """The episodes with these store ids, arrays copied out of the store."""
        store = self._open()
        if store is None:
            raise VLAParlError(f"{self.replay_dir} holds no episodes: point online.robot.replay_dir at the "
                               f"policy server's --episodes DIR")
        try:
            return [self._episode(store, eid) for eid in store_ids]
        finally:
            store.close()

    @staticmethod
    def _episode(store: Any, eid: int) -> RobotEpisode:
        ep = store.episode(eid)
        meta = ep["meta"]
        info = meta.get("info", {})
        versions = info.get("policy_versions") or []
        return RobotEpisode(server_id=str(info.get("server_episode_id") or f"store-{eid}"), store_id=eid,
                            obs={k: np.array(v) for k, v in ep["obs"].items()}, action=np.array(ep["action"]),
                            reward=np.array(ep["reward"]), terminal=bool(meta["terminal"]),
                            instruction=str(meta["instruction"]),
                            success=bool(info.get("success", meta["terminal"])),
                            policy_version=int(versions[0]) if versions else None)

    # ---- into the learner's replay ------------------------------------------------------------------------------
    def to_learner(self, ep: RobotEpisode) -> dict[str, Any]:
        """An episode dict as `vla_parl.training.data.episodes_to_buffer` takes it (actions already
        normalised): the offline data's observation keys, images resized to its size, and ``mc_tail="failure"``:
        Cal-QL's official rule for real-robot episodes (a never-successful −1 episode is worth −1/(1 − γ) at
        every step, `vla_parl.data.rewards.mc_returns`). VLAParlError when the offline data has proprio the
        episode lacks, or of another size."""
        if self.obs_shapes is None:
            raise RuntimeError("call match_offline() before to_learner()")
        out: dict[str, Any] = {}
        for key, shape in self.obs_shapes.items():
            if key not in ep.obs:
                raise VLAParlError(f"robot episode {ep.server_id} has no {key!r}, which the offline data (and the "
                                   f"critic) read: send it with every action request (PolicyClient.act(..., "
                                   f"{key}=...)), or train without it (critic.{key}=false)")
            value = ep.obs[key]
            if key == "image" and tuple(value.shape[1:]) != shape:
                value = _resize_frames(value, shape[:2])
            elif tuple(value.shape[1:]) != shape:
                raise VLAParlError(f"robot episode {ep.server_id} has {key} of shape {tuple(value.shape[1:])}, the "
                                   f"offline data {shape}: the robot must send the same {key} as the demonstrations")
            out[key] = value
        return {**out, "action": ep.action.astype(np.float32), "reward": ep.reward.astype(np.float32),
                "terminal": ep.terminal, "instruction": ep.instruction, "success": ep.success, "mc_tail": "failure",
                "info": {"server_episode_id": ep.server_id, "policy_version": ep.policy_version}}


def _resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [L, H, W, 3] → [L, *size, 3] (area-averaged when shrinking, bilinear when growing)."""
    from PIL import Image

    height, width = size
    method = Image.BOX if frames.shape[1] >= height and frames.shape[2] >= width else Image.BILINEAR
    return np.stack([np.asarray(Image.fromarray(np.asarray(f)).resize((width, height), method)) for f in frames])


def robot_metrics(episodes: list[RobotEpisode]) -> dict[str, float]:
    """Collection metrics of one round: success rate, mean return and length, and per policy version
    (the version that served the episode's first step) the episodes and their success rate."""
    out = {"collect_success": float(np.mean([e.success for e in episodes])),
           "collect_return": float(np.mean([e.reward.sum() for e in episodes])),
           "collect_length": float(np.mean([len(e.action) for e in episodes]))}
    for version in sorted({e.policy_version for e in episodes if e.policy_version is not None}):
        mine = [e.success for e in episodes if e.policy_version == version]
        out[f"collect_episodes/v{version}"] = float(len(mine))
        out[f"collect_success/v{version}"] = float(np.mean(mine))
    return out
