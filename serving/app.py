"""The REST policy server: OpenVLA's `POST /act` (drop-in) plus a typed `/v1` API, with dynamic batching.

    engine = PolicyEngine.load("checkpoints/openvla-parl", critic="checkpoints/critic")
    app = create_app(engine, ServerConfig(api_key="..."))
    uvicorn.run(app, host="127.0.0.1", port=8000)           # or: vla-parl serve --checkpoint ...

Routes (one module per resource): `serving.routes_act` — `POST /act` (json_numpy in, json_numpy out — as
vla-scripts/deploy.py), `POST /v1/act`, `POST /v1/act/batch`; `serving.routes_episodes` — `POST /v1/episodes`,
`POST /v1/episodes/{id}/end`, `POST /v1/episodes/upload`, `GET /v1/episodes`; `serving.routes_ops` —
`GET /health`, `GET /v1/metadata`, `POST /v1/admin/reload`; and the OpenAPI docs at `/docs`.

Safety: every client error is a 4xx JSON `ErrorResponse` saying what is wrong (`serving.errors`); a failure
inside the model is a 5xx JSON error and the server keeps serving. An API key (when configured) is checked in
constant time before the body is read; bodies over `max_request_bytes` get 413 without being read in full
(`serving.guard`). `create_app` only wires these parts together.
"""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import asynccontextmanager
from typing import Any

from serving.batching import DynamicBatcher
from serving.config import ServerConfig
from serving.decoding import BodyDecoder
from serving.engine import ActItem, ActResult, PolicyEngine
from serving.guard import OPEN_PATHS, GuardMiddleware
from serving.parsing import RequestParser
from serving.schemas import ErrorResponse
from serving.timeouts import uvicorn_config

__all__ = ["ServerConfig", "create_app", "ServerThread", "OPEN_PATHS"]


def create_app(engine: PolicyEngine, config: ServerConfig | None = None, *, policy_updates: Any | None = None) -> Any:
    """Build the FastAPI app serving `engine`. Batching, the episode store (`config.episodes_dir`) and the
    policy updates (`policy_updates`, else one built for `config.policy_updates_dir`) start with the app's
    lifespan and stop with it."""
    try:
        from fastapi import FastAPI
    except ImportError as exc:
        from vla_parl.errors import MissingExtraError

        raise MissingExtraError.for_package(exc.name or "fastapi", "serve", "the policy server") from exc
    from serving import routes_act, routes_episodes, routes_ops
    from serving.docs_offline import install_offline_docs   # /docs without a CDN (offline robot networks)
    from serving.errors import install_error_handlers
    from serving.openapi import publish_body_schemas
    from serving.services import Services
    from vla_parl import __version__

    config = config or ServerConfig()
    batcher: DynamicBatcher[ActItem, ActResult] = DynamicBatcher(
        engine.run, max_batch_size=config.max_batch_size, max_wait_ms=config.max_wait_ms,
        max_queue_size=config.max_queue_size)
    decoder = BodyDecoder()
    if policy_updates is None and config.policy_updates_dir is not None:
        from serving.policy_updates import PolicyUpdates

        policy_updates = PolicyUpdates(engine, config.policy_updates_dir, poll_s=config.policy_poll_s)
    episodes = None
    if config.episodes_dir is not None:    # takes the replay store's writer lock now: a second server fails here
        from serving.episodes import EpisodeStore

        episodes = EpisodeStore(config.episodes_dir, engine, timeout=config.episode_timeout,
                                max_steps=config.max_episode_steps, max_open=config.max_open_episodes,
                                gamma=config.episode_gamma)
    ctx = Services(engine=engine, config=config, batcher=batcher, decoder=decoder,
                   parser=RequestParser(engine, config, decoder), started=time.time(), episodes=episodes,
                   policy_updates=policy_updates)

    @asynccontextmanager
    async def lifespan(_: Any):
        await batcher.start()
        sweeper = None
        if episodes is not None:
            sweeper = asyncio.create_task(_sweep(episodes, config.episode_timeout), name="vla-parl-episodes")
        if policy_updates is not None:
            policy_updates.start()
        try:
            yield
        finally:
            if policy_updates is not None:
                policy_updates.stop()
            if sweeper is not None:
                sweeper.cancel()
                episodes.close()
            await batcher.stop()
            decoder.close()

    app = FastAPI(title="vla-parl policy server", version=__version__, lifespan=lifespan,
                  description="OpenVLA-compatible `/act` plus a typed API with PA-RL refined actions and episode "
                              "recording. Errors are JSON `ErrorResponse` objects with a message saying what is "
                              "wrong.",
                  responses={422: {"model": ErrorResponse}, 500: {"model": ErrorResponse}})
    app.add_middleware(GuardMiddleware, api_key=config.api_key, max_bytes=config.max_request_bytes,
                       body_timeout=config.body_timeout)
    app.state.services = ctx
    app.state.config = config
    app.state.policy_updates = policy_updates
    install_offline_docs(app)
    install_error_handlers(app)
    for routes in (routes_act, routes_episodes, routes_ops):
        app.include_router(routes.router)
    publish_body_schemas(app, routes_act.BODY_MODELS + routes_episodes.BODY_MODELS)
    return app


async def _sweep(store: Any, timeout: float) -> None:
    """Discard abandoned episodes, checking a few times per timeout (at least every 5 s)."""
    while True:
        await asyncio.sleep(min(timeout / 4, 5.0))
        store.sweep()


class ServerThread:
    """Run an app under uvicorn in a background thread (tests, benchmarks, notebooks).

        with ServerThread(app) as url:        # binds 127.0.0.1 on a free port
            requests.get(url + "/health")
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        import uvicorn

        self.host = host
        config = getattr(app.state, "config", None) or ServerConfig()     # the deadlines of `create_app`'s config
        self.server = uvicorn.Server(uvicorn_config(app, host=host, port=port, log_level=log_level,
                                                    header_timeout=config.header_timeout,
                                                    timeout_keep_alive=config.timeout_keep_alive))
        self.thread = threading.Thread(target=self.server.run, name="vla-parl-uvicorn", daemon=True)
        self.url = ""

    def start(self, timeout: float = 30.0) -> str:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.host} within {timeout} s")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://{self.host}:{port}"
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
