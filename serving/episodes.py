"""Episode sessions: what robots do through the server, recorded step by step and stored as replay episodes.

    store = EpisodeStore("runs/robot/episodes", engine)        # takes the replay buffer's writer lock
    eid = store.start("put the carrot in the pot")              # POST /v1/episodes
    admission = store.admit([StepRow(eid, ...)])               # POST /v1/act with episode_id, before the model
    steps = admission.record(results)                           #   ... and after: the step indices
    store.end(eid, EpisodeEnd(success=True))                    # POST /v1/episodes/{id}/end → ReplayBuffer

A session keeps the observations the server received (image, proprio, state) and the actions it answered, in
memory, until the robot ends it; only then is the whole episode written — atomically, by
`vla_parl.data.ReplayBuffer.add_episode` — so a killed server loses only unfinished episodes. Sessions
without a call for `timeout` seconds are discarded (`sweep`); limits bound the steps per episode and the
open sessions (memory ≈ open × steps × image bytes).

Stored episode: obs ``image`` (uint8 [L, H, W, 3], as received), ``proprio`` and ``state`` (float32, when sent:
the low-dimensional inputs a critic may read — `VECTOR_KEYS`);
``action`` = the executed action (`executed_actions` when the robot gives them, else the served one)
normalised to [-1, 1] with the served model's statistics for the episode's unnorm key (as every other
replay store of this toolkit); ``reward`` = PA-RL's sparse −1 per step and 0 on the last step of a success
(`vla_parl.data.rewards`) or the robot's per-step rewards; Monte-Carlo returns with γ = `gamma`;
``terminal`` = success. Its info: server_episode_id, policy_versions (per step), served_actions (robot
units), executed_steps (steps whose executed action differs from the served one), success, unnorm_key,
metadata, source ("act" or "upload").

Every client mistake raises `PayloadError` with the HTTP status to answer (404 unknown id, 409 ended,
422 malformed, 429 too many open episodes) and a message naming the problem and the fix.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serving.images import PayloadError
from serving.parsing import parse_vector

__all__ = ["EpisodeStore", "StepRow", "EpisodeEnd", "EpisodeUpload", "Admission", "VECTOR_KEYS"]

#: vector observations an episode may carry, each on every step or on none: the robot's proprioception and a
#: low-dimensional `state` (object poses from a tracker; the simulated tabletop's block state)
VECTOR_KEYS = ("proprio", "state")

logger = logging.getLogger("vla_parl.serving.episodes")

_FORGET_AFTER = 100_000       # ended / discarded ids remembered for a precise 409 / 404 message


@dataclass
class StepRow:
    """One observation of an episode, as an act request brought it (validated, image decoded)."""

    episode_id: str
    instruction: str
    unnorm_key: str
    image: np.ndarray                 # uint8 [H, W, 3]
    proprio: np.ndarray | None        # float32 [P]
    state: np.ndarray | None = None   # float32 [S]

    def vectors(self) -> dict[str, np.ndarray | None]:
        return {"proprio": self.proprio, "state": self.state}


@dataclass
class EpisodeEnd:
    """How an episode ended (`POST /v1/episodes/{id}/end`): a success label and/or per-step rewards."""

    success: bool | None = None
    rewards: list[float] | None = None
    executed_actions: list[list[float]] | None = None     # robot units, [T, A]
    final_image: np.ndarray | None = None                 # uint8 [H, W, 3], the observation after the last step
    final_proprio: list[float] | None = None
    final_state: list[float] | None = None


@dataclass
class EpisodeUpload:
    """A whole episode collected elsewhere (`POST /v1/episodes/upload`); actions in robot units."""

    instruction: str
    images: list[np.ndarray]
    actions: list[list[float]]
    unnorm_key: str
    end: EpisodeEnd
    proprio: list[list[float]] | None = None
    state: list[list[float]] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Step:
    image: np.ndarray
    vectors: dict[str, np.ndarray | None]   # VECTOR_KEYS → float32 [D] or None
    action: np.ndarray                # float64 [A], robot units, as served
    policy_version: int


@dataclass
class _Session:
    episode_id: str
    instruction: str
    unnorm_key: str
    metadata: dict[str, Any]
    last_seen: float
    steps: list[_Step] = field(default_factory=list)
    image_shape: tuple[int, ...] | None = None
    vector_dims: dict[str, int] | None = None    # VECTOR_KEYS → length (0: steps carry none); None: no step yet
    pending: int = 0                  # admitted steps whose action is being computed
    ending: bool = False              # being written: no more steps, not swept


class Admission:
    """Steps admitted before the model call; `record` appends them with their actions, `release` gives them up."""

    def __init__(self, store: "EpisodeStore", rows: list[StepRow | None], sessions: list[_Session | None]) -> None:
        self._store, self._rows, self._sessions = store, rows, sessions
        self._open = True

    def record(self, results: list[Any]) -> list[int | None]:
        """Append each row's served action (`ActResult`) to its episode; → its step index (None: no episode)."""
        self._open = False
        return self._store._record(self._rows, self._sessions, results)

    def release(self) -> None:
        """The model call failed: forget the admitted steps."""
        if self._open:
            self._open = False
            self._store._release(self._sessions)


class EpisodeStore:
    """Open episode sessions and the replay store (`vla_parl.data.ReplayBuffer`) they are written to.

    engine: the served `PolicyEngine` (its unnorm keys, action dims, statistics and policy version).
    Thread-safe: admissions run on the event loop, `end` / `upload` (which write) on worker threads; the
    sessions are guarded by one lock held only for dictionary work, the writer by another.
    """

    def __init__(self, root: str | Path, engine: Any, *, timeout: float = 300.0, max_steps: int = 1000,
                 max_open: int = 32, gamma: float = 0.99) -> None:
        from vla_parl.data import ReplayBuffer

        self.root = Path(root)
        self.engine = engine
        self.timeout, self.max_steps, self.max_open = timeout, max_steps, max_open
        self.buffer = ReplayBuffer(self.root, mc_gamma=gamma, mc_tail="failure")   # robot episodes: Cal-QL's rule
        self._lock = threading.Lock()           # sessions, closed ids, summaries
        self._write_lock = threading.Lock()     # the replay buffer (one writer)
        self._open: dict[str, _Session] = {}
        self._closed: OrderedDict[str, tuple[int, str]] = OrderedDict()   # id → (status, why it is not open)
        self._stored = [_summary(self.buffer.episode_meta(i)) for i in self.buffer.episode_ids]

    # ---- sessions ------------------------------------------------------------------------------------------
    def start(self, instruction: str, unnorm_key: str | None = None, metadata: dict[str, Any] | None = None) -> str:
        """Open an episode; → its id. 429 when `max_open` are open, 422 for a key the store cannot take."""
        key = self.engine.resolve_unnorm_key(unnorm_key)
        self._check_action_dim(key)
        with self._lock:
            if len(self._open) >= self.max_open:
                raise PayloadError(f"{len(self._open)} episodes are open, this server's limit "
                                   f"(--max-open-episodes {self.max_open}); end some with POST "
                                   "/v1/episodes/{id}/end or wait for abandoned ones to time out "
                                   f"(--episode-timeout {self.timeout:g} s)", status=429)
            episode_id = uuid.uuid4().hex
            self._open[episode_id] = _Session(episode_id, instruction, key, dict(metadata or {}), time.monotonic())
        return episode_id

    def unnorm_key(self, episode_id: str) -> str:
        """The unnorm key an episode was opened with (what its act rows use when they name none)."""
        with self._lock:
            return self._session(episode_id).unnorm_key

    def admit(self, rows: list[StepRow | None]) -> Admission:
        """Check every episode row against its session (open, not full, same instruction / key / image size /
        proprio/state lengths as its earlier steps) and reserve its step; rows that are None are not in an episode."""
        with self._lock:
            sessions = [None if row is None else self._session(row.episode_id) for row in rows]
            added: Counter[str] = Counter()
            for row, session in zip(rows, sessions):
                if row is not None and session is not None:
                    added[session.episode_id] += 1
                    self._check_step(session, row, added[session.episode_id])
            now = time.monotonic()
            for session in sessions:
                if session is not None:
                    session.pending += 1
                    session.last_seen = now
        return Admission(self, rows, sessions)

    def _record(self, rows: list[StepRow | None], sessions: list[_Session | None], results: list[Any]
                ) -> list[int | None]:
        steps: list[int | None] = []
        with self._lock:
            for row, session, result in zip(rows, sessions, results):
                if row is None or session is None:
                    steps.append(None)
                    continue
                session.pending -= 1
                session.steps.append(_Step(row.image, row.vectors(), np.asarray(result.action, np.float64),
                                           int(result.policy_version)))
                session.last_seen = time.monotonic()
                steps.append(len(session.steps) - 1)
        return steps

    def _release(self, sessions: list[_Session | None]) -> None:
        with self._lock:
            for session in sessions:
                if session is not None:
                    session.pending -= 1

    def sweep(self) -> list[str]:
        """Discard the episodes without a call for `timeout` seconds (never one being written); → their ids."""
        now = time.monotonic()
        with self._lock:
            expired = [s for s in self._open.values()
                       if not s.ending and not s.pending and now - s.last_seen > self.timeout]
            for session in expired:
                del self._open[session.episode_id]
                self._forget(session.episode_id, 404, f"was discarded after {self.timeout:g} s without a call "
                                                      "(--episode-timeout)")
        for session in expired:
            logger.warning("episode %s discarded: no call for %g s (%d steps)", session.episode_id, self.timeout,
                           len(session.steps))
        return [s.episode_id for s in expired]

    # ---- storing ---------------------------------------------------------------------------------------------
    def end(self, episode_id: str, end: EpisodeEnd) -> dict[str, Any]:
        """Write an episode into the replay store (blocking: call it off the event loop) → {episode_id, steps,
        stored}. 404 unknown, 409 ended (or being ended), 422 when `end` does not fit its steps (the episode
        then stays open, so a corrected call can end it)."""
        with self._lock:
            session = self._session(episode_id)
            if session.pending:
                raise PayloadError(f"episode {episode_id} still has {session.pending} act request(s) in flight; "
                                   "end it after their answers arrive", status=409)
            if not session.steps:
                raise PayloadError(f"episode {episode_id} has no steps: send /v1/act requests with "
                                   f"\"episode_id\": \"{episode_id}\" before ending it")
            steps = list(session.steps)
            session.ending = True
        try:
            obs, action, served = self._arrays(session.unnorm_key, [s.image for s in steps],
                                               {k: [s.vectors[k] for s in steps] for k in VECTOR_KEYS},
                                               [s.action for s in steps], end)
            versions = [s.policy_version for s in steps]
            info = {"server_episode_id": episode_id, "policy_versions": versions,
                    "served_actions": served.tolist(),
                    "executed_steps": _differing_steps(served, end.executed_actions),
                    "success": end.success, "unnorm_key": session.unnorm_key, "metadata": session.metadata,
                    "source": "act"}
            self._write(obs, action, end, session.instruction, info)
        except BaseException:
            with self._lock:
                session.ending = False
            raise
        with self._lock:
            self._open.pop(episode_id, None)
            self._forget(episode_id, 409, "has already been ended and stored")
        return {"episode_id": episode_id, "steps": len(steps), "stored": True}

    def upload(self, upload: EpisodeUpload) -> dict[str, Any]:
        """Store a whole episode collected elsewhere (blocking) → {episode_id, steps, stored}."""
        key = self.engine.resolve_unnorm_key(upload.unnorm_key)
        self._check_action_dim(key)
        num_steps = len(upload.images)
        if num_steps > self.max_steps:
            raise PayloadError(f"the episode has {num_steps} steps; this server stores at most {self.max_steps} "
                               "per episode (--max-episode-steps)", status=413)
        if len(upload.actions) != num_steps:
            raise PayloadError(f"'actions' has {len(upload.actions)} rows but 'images' has {num_steps}: send one "
                               "action per image")
        vectors: dict[str, list[np.ndarray | None]] = {}
        for name in VECTOR_KEYS:
            rows = getattr(upload, name)
            if rows is not None and len(rows) != num_steps:
                raise PayloadError(f"'{name}' has {len(rows)} rows but 'images' has {num_steps}: send one {name} "
                                   "vector per image")
            vectors[name] = ([None] * num_steps if rows is None
                             else [parse_vector(v, f"{name}[{t}]") for t, v in enumerate(rows)])
            if len({0 if v is None else len(v) for v in vectors[name]}) > 1:
                raise PayloadError(f"every '{name}' row must have the same length")
        shape = upload.images[0].shape
        for t, image in enumerate(upload.images):
            if image.shape != shape:
                raise PayloadError(f"images[{t}] is {_size(image.shape)} but images[0] is {_size(shape)}: every "
                                   "image of an episode must have the same size")
        actions = _matrix(upload.actions, "actions", self.engine.action_dims[key])
        self._check_store_obs(shape, {name: rows[0] for name, rows in vectors.items()})
        obs, action, served = self._arrays(key, upload.images, vectors, list(actions), upload.end)
        episode_id = uuid.uuid4().hex
        info = {"server_episode_id": episode_id, "policy_versions": [], "served_actions": served.tolist(),
                "executed_steps": [], "success": upload.end.success, "unnorm_key": key,
                "metadata": upload.metadata, "source": "upload"}
        self._write(obs, action, upload.end, upload.instruction, info)
        with self._lock:
            self._forget(episode_id, 409, "was uploaded and stored")
        return {"episode_id": episode_id, "steps": num_steps, "stored": True}

    def _arrays(self, key: str, images: list[np.ndarray], vectors: dict[str, list[np.ndarray | None]],
                served: list[np.ndarray], end: EpisodeEnd) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Check `end` against the steps → (obs arrays, normalised actions [T, A], raw actions [T, A])."""
        num_steps, action_dim = len(images), self.engine.action_dims[key]
        if end.success is None and end.rewards is None:
            raise PayloadError("say how the episode went: send \"success\": true/false (sparse −1/0 rewards) "
                               "and/or \"rewards\": one float per step")
        if end.rewards is not None and len(end.rewards) != num_steps:
            raise PayloadError(f"'rewards' has {len(end.rewards)} entries but the episode has {num_steps} steps: "
                               "send one reward per step")
        raw = np.stack([np.asarray(a, np.float64) for a in served])
        taken = raw
        if end.executed_actions is not None:
            taken = _matrix(end.executed_actions, "executed_actions", action_dim)
            if len(taken) != num_steps:
                raise PayloadError(f"'executed_actions' has {len(taken)} rows but the episode has {num_steps} "
                                   "steps: send one executed action per step")
        obs = {"image": np.stack(images)}
        for name, rows in vectors.items():
            if rows[0] is not None:
                obs[name] = np.stack(rows).astype(np.float32)
        if end.final_image is not None:
            if end.final_image.shape != images[0].shape:
                raise PayloadError(f"'final_image' is {_size(end.final_image.shape)} but the episode's images are "
                                   f"{_size(images[0].shape)}: send the final camera frame at the same size")
            obs["image"] = np.concatenate([obs["image"], end.final_image[None]])
        for name in VECTOR_KEYS:
            final_value = getattr(end, f"final_{name}")
            if end.final_image is None:
                if final_value is not None:
                    raise PayloadError(f"'final_{name}' needs 'final_image' (the final observation is both)")
            elif name in obs:
                if final_value is None:
                    raise PayloadError(f"this episode's steps carry '{name}', so a 'final_image' needs its "
                                       f"'final_{name}' too (or leave both out)")
                final = parse_vector(final_value, f"final_{name}")
                if len(final) != obs[name].shape[1]:
                    raise PayloadError(f"'final_{name}' has {len(final)} entries but the episode's {name} has "
                                       f"{obs[name].shape[1]}")
                obs[name] = np.concatenate([obs[name], final[None]])
            if name not in obs and final_value is not None:
                raise PayloadError(f"'final_{name}' was sent but the episode's steps carry no {name}")
        normalised = self.engine.model.action_normalizer(key).normalize(taken).astype(np.float32)
        return obs, normalised, raw

    def _write(self, obs: dict[str, np.ndarray], action: np.ndarray, end: EpisodeEnd, instruction: str,
               info: dict[str, Any]) -> None:
        from vla_parl.data.rewards import sparse_rewards, success_labels
        from vla_parl.errors import ConfigError

        num_steps = len(action)
        reward = (np.asarray(end.rewards, np.float32) if end.rewards is not None
                  else sparse_rewards(success_labels(num_steps, bool(end.success))))
        with self._write_lock:
            try:
                eid = self.buffer.add_episode(obs, action, reward, terminal=bool(end.success),
                                              instruction=instruction, info=info)
            except ConfigError as exc:     # checked before; a store changed under us still answers 4xx
                raise PayloadError(f"the episode does not fit the replay store {str(self.root)!r}: {exc}") from exc
            meta = self.buffer.episode_meta(eid)
        with self._lock:
            self._stored.append(_summary(meta))
        logger.info("episode %s stored as %s/%09d (%d steps, success %s)", info["server_episode_id"], self.root,
                    eid, num_steps, end.success)

    # ---- checks ----------------------------------------------------------------------------------------------
    def _session(self, episode_id: str) -> _Session:
        """The open session (caller holds the lock); 404 unknown, 409 ended / being ended."""
        session = self._open.get(episode_id)
        if session is None:
            status, why = self._closed.get(episode_id, (404, "is not known to this server"))
            raise PayloadError(f"episode {episode_id} {why}" + ("; start one with POST /v1/episodes"
                                                                 if status == 404 else ""), status=status)
        if session.ending:
            raise PayloadError(f"episode {episode_id} is being ended and stored", status=409)
        return session

    def _check_step(self, session: _Session, row: StepRow, adding: int) -> None:
        name = f"episode {session.episode_id}"
        if row.instruction != session.instruction:
            raise PayloadError(f"{name} was started with instruction {session.instruction!r}; this request "
                               f"says {row.instruction!r} (one episode, one instruction: start a new episode)")
        if row.unnorm_key != session.unnorm_key:
            raise PayloadError(f"{name} was started with unnorm_key {session.unnorm_key!r}; this request uses "
                               f"{row.unnorm_key!r}")
        if len(session.steps) + session.pending + adding > self.max_steps:
            raise PayloadError(f"{name} has {len(session.steps) + session.pending} steps and this request adds "
                               f"{adding}; this server records at most {self.max_steps} per episode "
                               "(--max-episode-steps): end it with POST /v1/episodes/{id}/end and start another",
                               status=413)
        dims = {key: 0 if value is None else len(value) for key, value in row.vectors().items()}
        if session.image_shape is None:
            self._check_store_obs(row.image.shape, row.vectors())
            session.image_shape, session.vector_dims = row.image.shape, dims
        if row.image.shape != session.image_shape:
            raise PayloadError(f"{name}: this image is {_size(row.image.shape)} but its earlier steps are "
                               f"{_size(session.image_shape)}; every image of an episode must have the same size")
        for key, dim in dims.items():
            if dim != session.vector_dims[key]:
                raise PayloadError(f"{name}: this request's '{key}' has {dim} entries but its earlier steps had "
                                   f"{session.vector_dims[key]} (0 = none); send the same {key} vector on every "
                                   "step")

    def _check_store_obs(self, image_shape: tuple[int, ...], vectors: dict[str, np.ndarray | None]) -> None:
        """The replay store's earlier episodes fix the image size and proprio/state lengths of every later one."""
        stored = self.buffer.schema["obs"]
        if stored is None:
            return
        want_image = tuple(stored["image"]["shape"])
        if tuple(image_shape) != want_image:
            raise PayloadError(f"the replay store {str(self.root)!r} holds {_size(want_image)} images; this image "
                               f"is {_size(image_shape)} (resize the camera frames, or serve with another "
                               "--episodes DIR)")
        for name, value in vectors.items():
            want = stored[name]["shape"][0] if name in stored else 0
            have = 0 if value is None else len(value)
            if have != want:
                raise PayloadError(f"the replay store {str(self.root)!r} holds episodes with {want}-entry "
                                   f"'{name}' (0 = none); this request sends {have}")

    def _check_action_dim(self, key: str) -> None:
        stored = self.buffer.schema["action_dim"]
        if stored is not None and stored != self.engine.action_dims[key]:
            raise PayloadError(f"unnorm_key {key!r} has {self.engine.action_dims[key]}-dim actions but the replay "
                               f"store {str(self.root)!r} holds {stored}-dim ones; use a key with {stored} dims")

    def _forget(self, episode_id: str, status: int, why: str) -> None:
        self._closed[episode_id] = (status, why)
        while len(self._closed) > _FORGET_AFTER:
            self._closed.popitem(last=False)

    # ---- reporting -------------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """GET /v1/episodes: the stored episodes and their success per policy version."""
        with self._lock:
            stored, open_count = list(self._stored), len(self._open)
        by_version: dict[str, dict[str, Any]] = {}
        for episode in stored:
            if episode["policy_version"] is None:
                continue
            stats = by_version.setdefault(str(episode["policy_version"]),
                                          {"episodes": 0, "labelled": 0, "successes": 0})
            stats["episodes"] += 1
            if episode["success"] is not None:
                stats["labelled"] += 1
                stats["successes"] += int(episode["success"])
        for stats in by_version.values():
            stats["success_rate"] = stats["successes"] / stats["labelled"] if stats["labelled"] else None
        return {"count": len(stored), "open": open_count, "episodes": stored,
                "by_policy_version": dict(sorted(by_version.items(), key=lambda kv: int(kv[0])))}

    @property
    def stored_count(self) -> int:
        with self._lock:
            return len(self._stored)

    def close(self) -> None:
        """Release the replay store's writer lock (open sessions are dropped)."""
        with self._write_lock:
            self.buffer.close()


def _summary(meta: dict[str, Any]) -> dict[str, Any]:
    """A stored episode as `GET /v1/episodes` lists it; its policy version is the one that served its first step
    (as the learner and `vla-parl robot sim` count it), None for an upload or an episode the server did not
    record."""
    info = meta.get("info") or {}
    versions = info.get("policy_versions") or []
    version = int(versions[0]) if versions else None
    return {"episode_id": str(info.get("server_episode_id", meta["id"])), "steps": int(meta["num_steps"]),
            "success": info.get("success"), "policy_version": version}


def _differing_steps(served: np.ndarray, executed: list[list[float]] | None) -> list[int]:
    if executed is None:
        return []
    return [t for t, (a, b) in enumerate(zip(served, np.asarray(executed, np.float64))) if not np.array_equal(a, b)]


def _matrix(rows: list[list[float]], name: str, width: int) -> np.ndarray:
    try:
        array = np.asarray(rows, np.float64)
    except ValueError as exc:
        raise PayloadError(f"'{name}' must be a list of equal-length action lists ({exc})") from exc
    if array.ndim != 2 or array.shape[1] != width or not np.all(np.isfinite(array)):
        raise PayloadError(f"'{name}' must be [steps][{width}] finite numbers (this unnorm_key's action dim is "
                           f"{width}), got shape {list(array.shape)}")
    return array


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[0]}x{shape[1]}"
