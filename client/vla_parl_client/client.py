"""`PolicyClient`: the robot side of `vla-parl serve` (the typed `/v1` API), with retries and timeouts.

    client = PolicyClient("http://127.0.0.1:8000", api_key=os.environ.get("VLA_PARL_API_KEY"))
    action = client.act(image, "pick up the red block")                 # np.ndarray [A], robot units
    info = client.act_info(image, "pick up the red block", mode="refined")  # dict with q, policy_version, ...

Episodes for online PA-RL (the server records every step of an episode; the learner trains on them):

    episode = client.start_episode("pick up the red block")
    action = client.act(image, "pick up the red block", mode="refined", episode_id=episode, proprio=joints)
    ...
    client.end_episode(episode, success=True)           # → {"episode_id", "steps", "stored": True}

Images are sent as lossless base64 PNG. Which failures are retried is in `vla_parl_client.transport`:
nothing that records a step or ends an episode is ever sent twice. Every error is a `PolicyServerError`
with the HTTP `status` and the server's `message`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import numpy as np

from vla_parl_client.encoding import encode_png, float_list
from vla_parl_client.transport import Transport

__all__ = ["PolicyClient"]

#: seconds `reload` waits by default: loading a 7B version from disk can take minutes
RELOAD_TIMEOUT_S = 600.0


class PolicyClient:
    """HTTP client for `vla-parl serve`.

    Args:
        url: server base URL, e.g. "http://127.0.0.1:8000".
        api_key: sent as `Authorization: Bearer <key>` when given.
        timeout: seconds per attempt (connect and read).
        retries: extra attempts after the first (see `vla_parl_client.transport` for which failures).
        backoff: first retry delay in seconds; doubles each retry, capped at `max_backoff`.
    """

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 10.0, retries: int = 3,
                 backoff: float = 0.1, max_backoff: float = 5.0) -> None:
        self.transport = Transport(url, api_key, timeout=timeout, retries=retries, backoff=backoff,
                                   max_backoff=max_backoff)
        self.url = self.transport.url

    # ---- server ------------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self.transport.request("GET", "/health", replayable=True)

    def metadata(self) -> dict[str, Any]:
        """Model, unnorm keys, `modes` (refined only with a critic), critic inputs, `policy_version`, limits."""
        return self.transport.request("GET", "/v1/metadata", replayable=True)

    def reload(self, timeout: float = RELOAD_TIMEOUT_S) -> dict[str, Any]:
        """Ask the server to load the newest published policy version now (`POST /v1/admin/reload`; needs a
        server started with `--policy-updates DIR`) → {"policy_version", "loaded", "message"}."""
        return self.transport.request("POST", "/v1/admin/reload", {}, replayable=False, timeout=timeout)

    # ---- actions -----------------------------------------------------------------------------------------
    def act_info(self, image: Any, instruction: str, unnorm_key: str | None = None, mode: str = "greedy", *,
                 episode_id: str | None = None, proprio: Any = None, state: Any = None,
                 num_samples: int | None = None, top_k: int | None = None, steps: int | None = None,
                 temperature: float | None = None, seed: int | None = None) -> dict[str, Any]:
        """The full `/v1/act` answer: action, mode, unnorm_key, policy_version, step (in an episode), q /
        candidate_q (refined), samples, timing.

        episode_id: record this observation and the answered action as the episode's next step (the
            answer's `step` is its 0-based index). Such a call is not sent again once it may have reached
            the server (`vla_parl_client.transport`).
        proprio / state: the robot's proprioception (recorded in an episode) and a simulator state; refined
            requests need them when the server's critic reads them (`metadata()["critic"]["proprio_dim"]`,
            `["state_dim"]`)."""
        body = _act_row(image, instruction, unnorm_key, mode, episode_id=episode_id, proprio=proprio, state=state,
                        num_samples=num_samples, top_k=top_k, steps=steps, temperature=temperature, seed=seed)
        return self.transport.request("POST", "/v1/act", body, replayable=episode_id is None)

    def act(self, image: Any, instruction: str, unnorm_key: str | None = None, mode: str = "greedy",
            **options: Any) -> np.ndarray:
        """The action (float64 [A], robot units) for one uint8 H×W×3 image and instruction; `options` as for
        `act_info` (episode_id, proprio, state, num_samples, top_k, steps, temperature, seed)."""
        return np.asarray(self.act_info(image, instruction, unnorm_key, mode, **options)["action"], dtype=np.float64)

    def act_batch(self, images: Sequence[Any], instructions: str | Sequence[str], unnorm_key: str | None = None,
                  mode: str = "greedy", *, episode_ids: Sequence[str | None] | None = None,
                  proprio: Sequence[Any] | None = None, state: Sequence[Any] | None = None,
                  num_samples: int | None = None, top_k: int | None = None, steps: int | None = None,
                  temperature: float | None = None) -> np.ndarray:
        """Actions [B, A] for B images (one instruction for all, or one each); episode_ids / proprio / state
        give one entry per row (None entries: no episode / no vector)."""
        rows = len(images)
        instructions = [instructions] * rows if isinstance(instructions, str) else list(instructions)
        per_row = {"instructions": instructions, "episode_ids": episode_ids, "proprio": proprio, "state": state}
        for name, values in per_row.items():
            if values is not None and len(values) != rows:
                raise ValueError(f"{rows} images but {len(values)} {name}: give one per image")
        body = {"requests": [
            _act_row(images[i], instructions[i], unnorm_key, mode,
                     episode_id=None if episode_ids is None else episode_ids[i],
                     proprio=None if proprio is None else proprio[i], state=None if state is None else state[i],
                     num_samples=num_samples, top_k=top_k, steps=steps, temperature=temperature)
            for i in range(rows)]}
        replayable = episode_ids is None or all(e is None for e in episode_ids)
        results = self.transport.request("POST", "/v1/act/batch", body, replayable=replayable)["results"]
        return np.asarray([r["action"] for r in results], dtype=np.float64)

    # ---- episodes ----------------------------------------------------------------------------------------
    def start_episode(self, instruction: str, unnorm_key: str | None = None,
                      metadata: dict[str, Any] | None = None) -> str:
        """Open an episode on the server (`POST /v1/episodes`) → its id, for `act(..., episode_id=)`."""
        body = _without_none({"instruction": instruction, "unnorm_key": unnorm_key, "metadata": metadata})
        return self.transport.request("POST", "/v1/episodes", body, replayable=False)["episode_id"]

    def end_episode(self, episode_id: str, *, success: bool | None = None, rewards: Sequence[float] | None = None,
                    executed_actions: Any = None, final_image: Any = None,
                    final_proprio: Any = None, final_state: Any = None) -> dict[str, Any]:
        """Finish an episode: the server writes it into its replay store → {"episode_id", "steps", "stored"}.

        success: the episode's label (sparse reward: −1 per step, 0 on the last step of a success);
        rewards: one per step instead (or as well); executed_actions: [T, A] what the robot really executed
        where a person or a safety layer overrode the served action; final_image: the frame after the last
        action (final_proprio / final_state: its proprioception / state, when the steps carry them)."""
        if success is None and rewards is None:
            raise ValueError("end_episode needs success=True/False or rewards=[one per step]")
        body = _without_none({"success": None if success is None else bool(success),
                              "rewards": float_list(rewards),
                              "executed_actions": _matrix(executed_actions),
                              "final_image": None if final_image is None else encode_png(final_image),
                              "final_proprio": float_list(final_proprio),
                              "final_state": float_list(final_state)})
        return self.transport.request("POST", f"/v1/episodes/{quote(episode_id, safe='')}/end", body,
                                      replayable=False)

    def upload_episode(self, instruction: str, images: Sequence[Any], actions: Any, *, success: bool | None = None,
                       rewards: Sequence[float] | None = None, proprio: Any = None, state: Any = None,
                       unnorm_key: str | None = None, metadata: dict[str, Any] | None = None,
                       final_image: Any = None, final_proprio: Any = None, final_state: Any = None) -> dict[str, Any]:
        """Store a whole episode collected elsewhere (teleoperation, another controller) in one request:
        T images, actions [T, A] in robot units, success and/or T rewards, optional proprio [T, P] and
        state [T, S] → {"episode_id", "steps", "stored"}."""
        if success is None and rewards is None:
            raise ValueError("upload_episode needs success=True/False or rewards=[one per step]")
        body = _without_none({"instruction": instruction, "images": [encode_png(image) for image in images],
                              "actions": _matrix(actions), "success": None if success is None else bool(success),
                              "rewards": float_list(rewards), "proprio": _matrix(proprio), "state": _matrix(state),
                              "unnorm_key": unnorm_key, "metadata": metadata,
                              "final_proprio": float_list(final_proprio), "final_state": float_list(final_state),
                              "final_image": None if final_image is None else encode_png(final_image)})
        return self.transport.request("POST", "/v1/episodes/upload", body, replayable=False)

    def episodes(self) -> dict[str, Any]:
        """The server's stored episodes: {"count", "episodes": [...], "by_policy_version": {...}}."""
        return self.transport.request("GET", "/v1/episodes", replayable=True)

    # ---- lifetime ----------------------------------------------------------------------------------------
    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> "PolicyClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _act_row(image: Any, instruction: str, unnorm_key: str | None, mode: str, **options: Any) -> dict[str, Any]:
    """One `/v1/act` request body (also a `/v1/act/batch` row)."""
    options["proprio"] = float_list(options.get("proprio"))
    options["state"] = float_list(options.get("state"))
    body = {"image": encode_png(image), "instruction": instruction, "mode": mode, "unnorm_key": unnorm_key}
    return _without_none({**body, **options})


def _matrix(rows: Any) -> list[list[float]] | None:
    """[T, D] array-like → nested lists of floats (None stays None)."""
    if rows is None:
        return None
    array = np.asarray(rows, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"expected a [steps, dims] array, got shape {array.shape}")
    return array.tolist()


def _without_none(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None}
