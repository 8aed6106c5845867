"""`ServerConfig`: every setting of the policy server (the `vla-parl serve` flags), checked when built."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ServerConfig"]


@dataclass
class ServerConfig:
    """Server settings (the `vla-parl serve` flags)."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_batch_size: int = 16          # 1 = no dynamic batching
    max_wait_ms: float = 5.0
    max_queue_size: int = 1024
    max_request_bytes: int = 16 * 1024 * 1024
    max_image_pixels: int = 4096 * 4096
    max_batch_items: int = 64         # rows in one /v1/act/batch request
    max_num_samples: int = 64
    # refined-mode request defaults; None = the critic's improvement operator settings (`PolicyEngine.improvement`)
    default_samples_refined: int | None = None
    default_top_k: int | None = None
    default_steps: int | None = None
    default_temperature: float = 1.0
    # connection deadlines (seconds; `serving.timeouts`): a request head must be complete `header_timeout` after
    # the connection opens (or the next request starts), its body `body_timeout` after the head; idle kept-alive
    # connections close after `timeout_keep_alive`
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    timeout_keep_alive: float = 5.0
    # episode sessions (`serving.episodes`): finished episodes go to the replay store `episodes_dir` (None: off);
    # an episode without a call for `episode_timeout` seconds is discarded
    episodes_dir: str | None = None
    episode_timeout: float = 300.0
    max_episode_steps: int = 1000
    max_open_episodes: int = 32
    episode_gamma: float = 0.99       # discount of the stored Monte-Carlo returns
    # hot swap (`serving.policy_updates`): watch this publish directory for new versions (None: off)
    policy_updates_dir: str | None = None
    policy_poll_s: float = 2.0

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_queue_size", "max_request_bytes", "max_image_pixels", "max_batch_items",
                     "max_num_samples", "max_episode_steps", "max_open_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        for name in ("header_timeout", "body_timeout", "timeout_keep_alive", "episode_timeout", "policy_poll_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {getattr(self, name)}")
        if not 0.0 <= self.episode_gamma < 1.0:
            raise ValueError(f"episode_gamma must be in [0, 1), got {self.episode_gamma}")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must not be empty (omit it to run without a key)")
