"""A disk-backed, crash-safe replay buffer of whole episodes, with n-step and offline/online mixing.

On disk (``root/``)::

    buffer.json                 format, observation schema (key → shape, dtype), action dim
    index.jsonl                 one JSON line per committed episode (a cache: rebuilt from episodes/)
    episodes/000000042/         one folder per episode:
        obs.image.npy           uint8 [L, H, W, 3]   (L = T, or T + 1 with the final observation)
        obs.proprio.npy         float32 [L, P]       (any other obs keys likewise)
        action.npy              float32 [T, A]
        reward.npy              float32 [T]
        mc_return.npy           float32 [T]          (optional)
        meta.json               instruction, T, L, terminal

**Crash safety.** An episode is written into ``episodes/.tmp-*``, every file fsync'ed, then the folder is
renamed into place (atomic) and the parent fsync'ed; only then is its index line appended. A process
killed at any point loses at most the episode in flight: on the next open, leftover ``.tmp-*`` folders
are deleted, and index lines are reconciled with the episode folders (folders missing from the index are
added; index lines without a folder, or torn lines, are dropped). Earlier episodes are never rewritten.
One writer at a time (an ``fcntl`` lock on ``root/.lock``); any number of read-only openers.

**Memory.** Arrays are opened with ``np.load(mmap_mode="r")``, for at most ``cache_episodes`` episodes
at a time (LRU), so RAM stays bounded by the page cache whatever the buffer size.

**Transitions.** For episode step t with n-step horizon n (see `vla_parl.data.rewards.n_step_returns`):
m = min(n, T − t, steps to the terminal), reward = Σ_{i<m} γ^i r_{t+i}, discount = γ^m,
done = terminal reached, next_obs = obs[t + m]. The TD target is y = reward + discount · (1 − done) · Q(next).
Starts whose next observation is not stored (the tail of a non-terminal episode stored without its
final observation) are never sampled.

A **batch** (`ReplayBuffer.sample`, `sample_mixed`) is a dict of numpy arrays::

    obs:      {"image": uint8 [B,H,W,3], "proprio": float32 [B,P], ..., "instruction": list[str]}
    next_obs: same keys
    action float32 [B,A]; reward float32 [B]; done float32 [B]; discount float32 [B];
    mc_return float32 [B] (when every episode has one); is_online bool [B] (sample_mixed only);
    episode int64 [B]; t int64 [B]

`to_torch` converts the arrays to tensors.
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import shutil
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from vla_parl.data._io import atomic_write_bytes, atomic_write_json, fsync_dir
from vla_parl.data.rewards import MC_TAILS, mc_returns, n_step_returns
from vla_parl.errors import ConfigError, VLAParlError

__all__ = ["ReplayBuffer", "sample_mixed", "to_torch"]

_FORMAT = "vla-parl-replay"


def _write_npy(path: Path, arr: np.ndarray, durable: bool = True) -> None:
    with open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(arr), allow_pickle=False)
        if durable:
            f.flush()
            os.fsync(f.fileno())


class ReplayBuffer:
    """Episodes on disk; uniform sampling over valid transitions.

    Args:
        root: buffer folder (created if missing, reopened and continued if it exists).
        gamma: discount for n-step rewards.
        n_step: horizon n of the returned transitions.
        mc_gamma: when set, `add_episode` computes ``mc_return`` with this γ if none is given, by the rule
            `mc_tail`.
        mc_tail: Cal-QL's rule for episodes that end without success (`vla_parl.data.rewards.mc_returns`):
            ``"truncated"`` (simulated and offline data) or ``"failure"`` (real-robot episodes); required
            with `mc_gamma`, so every store says which data it holds.
        readonly: open without taking the writer lock (no appends).
        cache_episodes: how many episodes keep their memory maps open.
        action_transform: applied to the actions of every sampled batch (e.g. normalisation of a store
            that keeps raw actions); None: as stored.
        durable: fsync every file of every appended episode (False: the caller syncs once at the end, as
            the transition store does before publishing itself).
    """

    def __init__(self, root: str | os.PathLike, *, gamma: float = 0.99, n_step: int = 1,
                 mc_gamma: float | None = None, mc_tail: str | None = None, readonly: bool = False,
                 cache_episodes: int = 128,
                 action_transform: Callable[[np.ndarray], np.ndarray] | None = None, durable: bool = True):
        if n_step < 1:
            raise ConfigError(f"n_step must be >= 1; got {n_step}.")
        self.root = Path(root).expanduser()
        if mc_gamma is not None and mc_tail not in MC_TAILS:
            raise ConfigError(f"mc_gamma needs mc_tail, one of {MC_TAILS}: 'truncated' for simulated and offline "
                              f"episodes, 'failure' for real-robot ones (Cal-QL's official rule); got {mc_tail!r}.")
        self.gamma, self.n_step, self.mc_gamma, self.readonly = gamma, n_step, mc_gamma, readonly
        self.mc_tail = mc_tail
        self.action_transform, self.durable = action_transform, durable
        self._cache: OrderedDict[int, dict] = OrderedDict()
        self._cache_size = max(1, cache_episodes)
        self._lock_fd = None
        if readonly and not (self.root / "buffer.json").is_file():
            raise ConfigError(f"{str(self.root)!r} is not a replay buffer (no buffer.json).")
        if not readonly:
            (self.root / "episodes").mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                os.close(self._lock_fd)
                raise VLAParlError(f"replay buffer {str(self.root)!r} is open for writing by another "
                                   f"process; open it with readonly=True to sample only.") from exc
        self._meta = self._read_buffer_json()
        self._episodes: dict[int, dict] = {}
        self._recover()
        self._rebuild_sampling_table()

    # ---------------------------------------------------------------- opening / recovery
    def _read_buffer_json(self) -> dict:
        p = self.root / "buffer.json"
        if not p.is_file():
            return {"format": _FORMAT, "version": 1, "obs": None, "action_dim": None}
        try:
            meta = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise VLAParlError(f"{str(p)!r} is not valid JSON ({exc}).") from exc
        if meta.get("format") != _FORMAT:
            raise ConfigError(f"{str(self.root)!r} is not a vla-parl replay buffer ({str(p)!r} has format "
                              f"{meta.get('format')!r}).")
        return meta

    def _ep_dir(self, eid: int) -> Path:
        return self.root / "episodes" / f"{eid:09d}"

    def _recover(self) -> None:
        ep_root = self.root / "episodes"
        if not self.readonly:
            for p in ep_root.glob(".tmp-*"):
                shutil.rmtree(p, ignore_errors=True)  # an append that never committed
        indexed: dict[int, dict] = {}
        idx = self.root / "index.jsonl"
        if idx.is_file():
            for line in idx.read_text().splitlines():
                try:
                    e = json.loads(line)
                    indexed[int(e["id"])] = e
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue  # a torn last line from a crash
        on_disk = {int(p.name) for p in ep_root.iterdir() if p.is_dir() and p.name.isdigit()} \
            if ep_root.is_dir() else set()
        changed = set(indexed) != on_disk
        for eid in sorted(on_disk):
            e = indexed.get(eid)
            if e is None:
                try:
                    e = json.loads((self._ep_dir(eid) / "meta.json").read_text())
                    e["id"] = eid
                except (OSError, json.JSONDecodeError) as exc:
                    raise VLAParlError(f"episode folder {str(self._ep_dir(eid))!r} has no readable meta.json "
                                       f"({exc}); move it out of the buffer to continue.") from exc
            self._episodes[eid] = e
        if changed and not self.readonly:
            lines = "".join(json.dumps(self._episodes[i]) + "\n" for i in sorted(self._episodes))
            atomic_write_bytes(idx, lines.encode())

    def _rebuild_sampling_table(self) -> None:
        self._ids = np.array(sorted(self._episodes), dtype=np.int64)
        counts = np.array([self._valid_count(self._episodes[i]) for i in self._ids], dtype=np.int64)
        self._cum = np.cumsum(counts)

    def _valid_count(self, e: dict) -> int:
        T, L = e["num_steps"], e["num_obs"]
        return T if (e["terminal"] or L == T + 1) else max(T - self.n_step, 0)

    # ---------------------------------------------------------------- writing
    def add_episode(self, obs: Mapping[str, np.ndarray], action: np.ndarray, reward: np.ndarray, *,
                    terminal: bool, instruction: str = "", mc_return: np.ndarray | None = None,
                    info: Mapping | None = None) -> int:
        """Append one episode atomically; returns its id.

        Args:
            obs: key → array [L, ...] with L = T (no final observation) or T + 1; ``image`` must be
                uint8 [L, H, W, 3]. Keys and trailing shapes must match earlier episodes.
            action: [T, A]; reward: [T]; terminal: the episode ended in a terminal state (after its
                last step); mc_return: optional [T] Monte-Carlo returns; info: extra JSON metadata.
        """
        if self.readonly:
            raise VLAParlError(f"replay buffer {str(self.root)!r} was opened read-only.")
        action = np.asarray(action, np.float32)
        reward = np.asarray(reward, np.float32).reshape(-1)
        T = len(action)
        if T == 0 or action.ndim != 2 or reward.shape != (T,):
            raise ConfigError(f"episode needs action [T, A] and reward [T] with T >= 1; got {action.shape} "
                              f"and {reward.shape}.")
        obs = {k: np.asarray(v) for k, v in obs.items()}
        if "image" in obs and (obs["image"].dtype != np.uint8 or obs["image"].ndim != 4 or obs["image"].shape[-1] != 3):
            raise ConfigError(f"obs['image'] must be uint8 [L, H, W, 3]; got {obs['image'].dtype} "
                              f"{obs['image'].shape}. Convert with (img * 255).round().astype(np.uint8).")
        lens = {k: len(v) for k, v in obs.items()}
        if not obs or len(set(lens.values())) != 1 or next(iter(lens.values())) not in (T, T + 1):
            raise ConfigError(f"every obs array needs length T={T} or T+1={T + 1}; got {lens}.")
        L = next(iter(lens.values()))
        schema = {k: {"shape": list(v.shape[1:]), "dtype": str(v.dtype)} for k, v in obs.items()}
        if self._meta["obs"] is None:
            self._meta.update(obs=schema, action_dim=int(action.shape[1]))
            atomic_write_json(self.root / "buffer.json", self._meta)
        elif schema != self._meta["obs"] or action.shape[1] != self._meta["action_dim"]:
            raise ConfigError(f"episode does not match the buffer's schema: obs {schema}, action dim "
                              f"{action.shape[1]}; the buffer holds obs {self._meta['obs']}, action dim "
                              f"{self._meta['action_dim']}.")
        if mc_return is None and self.mc_gamma is not None:
            mc_return = mc_returns(reward, self.mc_gamma, tail=self.mc_tail)
        if mc_return is not None:
            mc_return = np.asarray(mc_return, np.float32).reshape(-1)
            if mc_return.shape != (T,):
                raise ConfigError(f"mc_return must have shape [{T}]; got {mc_return.shape}.")
        eid = int(self._ids[-1]) + 1 if len(self._ids) else 0
        entry = {"id": eid, "num_steps": T, "num_obs": L, "terminal": bool(terminal),
                 "instruction": str(instruction), "has_mc_return": mc_return is not None,
                 "info": dict(info or {})}
        ep_root = self.root / "episodes"
        tmp = ep_root / f".tmp-{eid:09d}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            for k, v in obs.items():
                _write_npy(tmp / f"obs.{k}.npy", v, self.durable)
            _write_npy(tmp / "action.npy", action, self.durable)
            _write_npy(tmp / "reward.npy", reward, self.durable)
            if mc_return is not None:
                _write_npy(tmp / "mc_return.npy", mc_return, self.durable)
            with open(tmp / "meta.json", "w") as f:
                json.dump(entry, f)
                if self.durable:
                    f.flush()
                    os.fsync(f.fileno())
            if self.durable:
                fsync_dir(tmp)
            os.rename(tmp, self._ep_dir(eid))
            if self.durable:
                fsync_dir(ep_root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        with open(self.root / "index.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")
            if self.durable:
                f.flush()
                os.fsync(f.fileno())
        self._episodes[eid] = entry
        self._rebuild_sampling_table()
        return eid

    def add_trajectory(self, traj: Mapping, *, final_obs: Mapping[str, np.ndarray] | None = None,
                       mc_return: np.ndarray | None = None, obs_keys=("image", "image_wrist", "proprio")) -> int:
        """Append a reader trajectory (`vla_parl.data.standardize` format). `final_obs` (key → single
        observation) adds the observation after the last step."""
        obs = {k: np.asarray(traj[k]) for k in obs_keys if k in traj}
        if final_obs is not None:
            obs = {k: np.concatenate([v, np.asarray(final_obs[k])[None]]) for k, v in obs.items()}
        terminal = bool(np.asarray(traj.get("is_terminal", [False]))[-1])
        return self.add_episode(obs, traj["action"], traj["reward"], terminal=terminal,
                                instruction=str(traj.get("instruction", "")), mc_return=mc_return,
                                info={"episode_id": str(traj.get("episode_id", ""))})

    def truncate(self, keep: int) -> None:
        """Keep the first `keep` episodes (by id) and drop the rest, e.g. those a run added after the checkpoint
        it resumes from. Crash-safe: each dropped folder is first renamed to ``episodes/.tmp-*`` (which the next
        open deletes), then the index is rewritten; a kill midway leaves a buffer that holds a prefix of its
        episodes, and calling `truncate(keep)` again finishes the job."""
        if self.readonly:
            raise VLAParlError(f"replay buffer {str(self.root)!r} was opened read-only.")
        if keep < 0:
            raise ConfigError(f"truncate(keep) needs keep >= 0; got {keep}.")
        ep_root = self.root / "episodes"
        dropped = []
        for eid in reversed(self.episode_ids[keep:]):          # newest first: what remains is always a prefix
            tmp = ep_root / f".tmp-drop-{eid:09d}-{uuid.uuid4().hex[:8]}"
            os.rename(self._ep_dir(eid), tmp)
            dropped.append(tmp)
            self._episodes.pop(eid)
            self._cache.pop(eid, None)
        if not dropped:
            return
        fsync_dir(ep_root)
        lines = "".join(json.dumps(self._episodes[i]) + "\n" for i in sorted(self._episodes))
        atomic_write_bytes(self.root / "index.jsonl", lines.encode())
        for tmp in dropped:
            shutil.rmtree(tmp, ignore_errors=True)
        self._rebuild_sampling_table()

    # ---------------------------------------------------------------- reading
    @property
    def num_episodes(self) -> int:
        return len(self._ids)

    @property
    def schema(self) -> dict:
        """What every episode must match: {"obs": {key: {"shape", "dtype"}} | None, "action_dim": int | None}
        (None until the first episode is stored)."""
        return copy.deepcopy({"obs": self._meta["obs"], "action_dim": self._meta["action_dim"]})

    def episode_meta(self, eid: int) -> dict:
        """Episode `eid`'s meta.json (instruction, num_steps, num_obs, terminal, info) without opening its arrays."""
        if eid not in self._episodes:
            raise KeyError(f"episode {eid} not in replay buffer {str(self.root)!r}")
        return copy.deepcopy(self._episodes[eid])

    def __len__(self) -> int:
        """Number of sampleable transitions (depends on n_step)."""
        return int(self._cum[-1]) if len(self._cum) else 0

    @property
    def episode_ids(self) -> list[int]:
        return [int(i) for i in self._ids]

    @property
    def has_mc_return(self) -> bool:
        return bool(self._episodes) and all(e["has_mc_return"] for e in self._episodes.values())

    def episode(self, eid: int) -> dict:
        """Episode `eid` as memory-mapped arrays: obs {key: [L, ...]}, action, reward, (mc_return), meta."""
        if eid in self._cache:
            self._cache.move_to_end(eid)
            return self._cache[eid]
        if eid not in self._episodes:
            raise KeyError(f"episode {eid} not in replay buffer {str(self.root)!r}")
        d, e = self._ep_dir(eid), self._episodes[eid]
        try:
            ep = {"obs": {k: np.load(d / f"obs.{k}.npy", mmap_mode="r") for k in self._meta["obs"]},
                  "action": np.load(d / "action.npy", mmap_mode="r"),
                  "reward": np.load(d / "reward.npy", mmap_mode="r"), "meta": e}
            if e["has_mc_return"]:
                ep["mc_return"] = np.load(d / "mc_return.npy", mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise VLAParlError(f"episode folder {str(d)!r} is unreadable ({exc}).") from exc
        self._cache[eid] = ep
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return ep

    def _transition(self, eid: int, t: int) -> tuple:
        ep = self.episode(eid)
        if "n_step" not in ep:  # computed once per cached episode
            e = ep["meta"]
            T = e["num_steps"]
            ep["n_step"] = n_step_returns(np.asarray(ep["reward"]), (np.arange(T) == T - 1) & e["terminal"],
                                          self.gamma, self.n_step, has_final_obs=e["num_obs"] == T + 1)
        R, disc, done, nxt, _ = ep["n_step"]
        return ep, float(R[t]), float(disc[t]), bool(done[t]), min(int(nxt[t]), ep["meta"]["num_obs"] - 1)

    def sample(self, batch_size: int, rng: np.random.Generator | None = None) -> dict:
        """A batch of `batch_size` transitions drawn uniformly (with replacement); see the module doc."""
        if len(self) == 0:
            raise VLAParlError(f"replay buffer {str(self.root)!r} has no sampleable transitions yet.")
        rng = rng if rng is not None else np.random.default_rng()
        flat = rng.integers(0, len(self), size=batch_size)
        which = np.searchsorted(self._cum, flat, side="right")
        starts = flat - np.concatenate([[0], self._cum])[which]
        keys = list(self._meta["obs"])
        obs = {k: [] for k in keys}
        nobs = {k: [] for k in keys}
        action, reward, done, disc, mc, instr = [], [], [], [], [], []
        for w, t in zip(which, starts):
            eid = int(self._ids[w])
            ep, R, d, dn, nxt = self._transition(eid, int(t))
            for k in keys:
                obs[k].append(ep["obs"][k][t])
                nobs[k].append(ep["obs"][k][nxt])
            action.append(ep["action"][t])
            reward.append(R)
            disc.append(d)
            done.append(dn)
            instr.append(ep["meta"]["instruction"])
            if "mc_return" in ep:
                mc.append(ep["mc_return"][t])
        batch = {
            "obs": {**{k: np.stack(v) for k, v in obs.items()}, "instruction": instr},
            "next_obs": {**{k: np.stack(v) for k, v in nobs.items()}, "instruction": list(instr)},
            "action": np.asarray(self.action_transform(np.stack(action)) if self.action_transform is not None
                                 else np.stack(action), np.float32),
            "reward": np.asarray(reward, np.float32), "done": np.asarray(done, np.float32),
            "discount": np.asarray(disc, np.float32),
            "episode": self._ids[which].astype(np.int64), "t": starts.astype(np.int64),
        }
        if len(mc) == batch_size:
            batch["mc_return"] = np.asarray(mc, np.float32)
        return batch

    def close(self) -> None:
        """Drop memory maps and release the writer lock."""
        self._cache.clear()
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "ReplayBuffer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def _concat(a, b):
    if isinstance(a, dict):
        return {k: _concat(a[k], b[k]) for k in a if k in b}
    if isinstance(a, list):
        return a + b
    return np.concatenate([a, b])


def sample_mixed(offline: ReplayBuffer, online: ReplayBuffer, batch_size: int, *,
                 online_fraction: float = 0.5, rng: np.random.Generator | None = None) -> dict:
    """A batch mixing two buffers: ⌊f·B⌋ online samples, one more with probability frac(f·B) (so the
    long-run fraction is exactly f), the rest offline. PA-RL's critic default is f = 0.5. Until the
    online buffer has a sampleable transition, the whole batch is offline. Adds ``is_online`` bool [B];
    ``mc_return`` is returned only when both buffers have it for every episode (so the keys of a batch
    never depend on the draw).
    """
    if not 0.0 <= online_fraction <= 1.0:
        raise ConfigError(f"online_fraction must be in [0, 1]; got {online_fraction}.")
    rng = rng if rng is not None else np.random.default_rng()
    x = online_fraction * batch_size
    n_on = int(np.floor(x)) + int(rng.random() < x - np.floor(x))
    if len(online) == 0:
        n_on = 0
    if len(offline) == 0:
        if len(online) == 0:
            raise VLAParlError("both replay buffers are empty.")
        n_on = batch_size
    parts = []
    if batch_size - n_on:
        b = offline.sample(batch_size - n_on, rng)
        b["is_online"] = np.zeros(batch_size - n_on, bool)
        parts.append(b)
    if n_on:
        b = online.sample(n_on, rng)
        b["is_online"] = np.ones(n_on, bool)
        parts.append(b)
    out = parts[0] if len(parts) == 1 else _concat(parts[0], parts[1])
    if not (offline.has_mc_return and online.has_mc_return):
        out.pop("mc_return", None)
    return out


def to_torch(batch: dict, device=None) -> dict:
    """Numpy arrays → torch tensors on `device` (lists of strings stay lists)."""
    import torch

    def conv(x):
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items()}
        if isinstance(x, np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(x)).to(device)
        return x

    return conv(batch)
