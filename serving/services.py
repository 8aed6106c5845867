"""`Services`: what the routes share — the engine, its batcher, the request parser, the episode store and the
policy updates — kept on `app.state.services` by `serving.app.create_app`."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from serving.batching import DynamicBatcher, QueueFullError
from serving.config import ServerConfig
from serving.decoding import BodyDecoder
from serving.engine import ActItem, ActResult, PolicyEngine
from serving.errors import ModelFailure
from serving.images import PayloadError
from serving.parsing import Outcome, RequestParser

__all__ = ["Services", "services"]

logger = logging.getLogger("vla_parl.serving")


@dataclass
class Services:
    engine: PolicyEngine
    config: ServerConfig
    batcher: DynamicBatcher[ActItem, ActResult]
    decoder: BodyDecoder
    parser: RequestParser
    started: float                     # time.time() at start
    episodes: Any = None               # serving.episodes.EpisodeStore, or None without --episodes
    policy_updates: Any = None         # serving.policy_updates.PolicyUpdates, or None without --policy-updates

    async def submit(self, items: list[ActItem]) -> list[Outcome]:
        """Preprocess the rows' images on worker threads, then run them through the batcher (one model call
        with whatever else is waiting); a model failure becomes `ModelFailure` (HTTP 500 for these rows only)."""
        from starlette.concurrency import run_in_threadpool

        batcher = self.batcher
        batcher.announce(len(items))
        try:
            try:
                pixels = await asyncio.gather(*(run_in_threadpool(self.engine.preprocess, i.image) for i in items))
            except BaseException:
                batcher.withdraw(len(items))
                raise
            for item, pixel_values in zip(items, pixels):
                item.pixel_values = pixel_values
            return await batcher.submit_many(items, announced=True)
        except QueueFullError:
            raise
        except Exception as exc:  # noqa: BLE001 - a model-side failure: 5xx for this request only
            logger.exception("model call failed")
            raise ModelFailure() from exc

    def episode_store(self) -> Any:
        """The episode store, or a 404 saying how to turn episodes on."""
        if self.episodes is None:
            raise PayloadError("this server does not record episodes: start it with --episodes DIR", status=404)
        return self.episodes


def services(request: Any) -> Services:
    """The `Services` of the app serving `request`."""
    return request.app.state.services
