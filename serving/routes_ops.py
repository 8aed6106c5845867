"""Operations routes: `GET /health` (liveness, open without the API key), `GET /v1/metadata` (what is served
and the server's limits) and `POST /v1/admin/reload` (load the newest published policy version now)."""

# no `from __future__ import annotations`: FastAPI reads the route annotations at runtime

import sys
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from serving.images import PayloadError
from serving.schemas import ErrorResponse, HealthResponse, MetadataResponse, ReloadResponse
from serving.services import Services, services

__all__ = ["router", "metadata"]

router = APIRouter()


@router.get("/health", response_model=HealthResponse, tags=["ops"])
async def health(request: Request) -> HealthResponse:
    ctx = services(request)
    return HealthResponse(status="ok", uptime_s=time.time() - ctx.started, batching=ctx.batcher.stats())


@router.get("/v1/metadata", response_model=MetadataResponse, tags=["ops"])
async def get_metadata(request: Request) -> MetadataResponse:
    return MetadataResponse(**metadata(services(request)))


@router.post("/v1/admin/reload", response_model=ReloadResponse, tags=["ops"],
             summary="load the newest published policy version now (the server's --policy-updates DIR)",
             responses={404: {"model": ErrorResponse}})
async def reload(request: Request) -> ReloadResponse:
    updates = services(request).policy_updates
    if updates is None:
        raise PayloadError("this server does not take policy updates: start it with --policy-updates DIR",
                           status=404)
    return ReloadResponse(**await run_in_threadpool(updates.reload))   # loading is slow: never on the event loop


def metadata(ctx: Services) -> dict[str, Any]:
    """The `/v1/metadata` answer."""
    import fastapi
    import torch

    from vla_parl import __version__

    engine, config = ctx.engine, ctx.config
    model, critic = engine.model, engine.critic
    critic_info: dict[str, Any] = {"loaded": critic is not None}
    if critic is not None:
        critic_info.update(path=engine.critic_path, image_size=critic.config.image_size,
                           num_q_heads=critic.num_q_heads, action_dim=critic.action_dim,
                           instruction=critic.config.vocab_size > 0, proprio_dim=critic.config.proprio_dim,
                           state_dim=critic.config.state_dim, improvement=engine.improvement.to_dict())
    modes = ["greedy", "sample"] + (["refined"] if critic is not None else [])
    return {
        "model": {"name": "openvla", "checkpoint": engine.checkpoint,
                  "parameters": sum(p.numel() for p in model.parameters()),
                  "image_sizes": list(model.config.image_sizes), "action_dims": engine.action_dims,
                  "device": str(model.device), "dtype": str(model.dtype).removeprefix("torch.")},
        "policy_version": engine.policy_version,
        "stored_episodes": ctx.episodes.stored_count if ctx.episodes is not None else None,
        "action_dim": engine.action_dim, "unnorm_keys": engine.unnorm_keys,
        "default_unnorm_key": engine.default_unnorm_key, "modes": modes, "critic": critic_info,
        "versions": {"vla_parl": __version__, "torch": torch.__version__, "fastapi": fastapi.__version__,
                     "numpy": np.__version__, "python": sys.version.split()[0]},
        "limits": {"max_request_bytes": config.max_request_bytes, "max_image_pixels": config.max_image_pixels,
                   "max_batch_items": config.max_batch_items, "max_num_samples": config.max_num_samples,
                   "api_key_required": config.api_key is not None},
        "batching": ctx.batcher.stats(),
    }
