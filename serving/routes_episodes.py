"""Episode routes (`serving.episodes`): open an episode, end it (→ the replay store), upload a whole one, list
the stored ones. Their bodies are validated and their images decoded on worker threads, and episodes are
written on worker threads too, so the event loop keeps answering act requests meanwhile."""

# no `from __future__ import annotations`: FastAPI reads the route annotations at runtime

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from serving.decoding import RequestInvalid, validate_json
from serving.episodes import EpisodeEnd, EpisodeUpload
from serving.images import decode_image
from serving.openapi import body_schema
from serving.schemas import (EpisodeEndRequest, EpisodeListResponse, EpisodeStartRequest, EpisodeStartResponse,
                             EpisodeStored, EpisodeUploadRequest, ErrorResponse)
from serving.services import services

__all__ = ["router", "BODY_MODELS"]

router = APIRouter()
BODY_MODELS = (EpisodeStartRequest, EpisodeEndRequest, EpisodeUploadRequest)
_ERRORS = {status: {"model": ErrorResponse} for status in (401, 404, 409, 413, 429)}


@router.post("/v1/episodes", response_model=EpisodeStartResponse, tags=["episodes"], summary="open an episode",
             openapi_extra=body_schema(EpisodeStartRequest), responses=_ERRORS)
async def start_episode(request: Request) -> EpisodeStartResponse:
    ctx = services(request)
    store = ctx.episode_store()
    req = await _validated(EpisodeStartRequest, await request.body())
    episode_id = store.start(ctx.parser.instruction(req.instruction), req.unnorm_key, req.metadata)
    return EpisodeStartResponse(episode_id=episode_id)


@router.post("/v1/episodes/upload", response_model=EpisodeStored, tags=["episodes"],
             summary="store a whole episode collected elsewhere", openapi_extra=body_schema(EpisodeUploadRequest),
             responses=_ERRORS)
async def upload_episode(request: Request) -> EpisodeStored:
    ctx = services(request)
    store, max_pixels = ctx.episode_store(), ctx.config.max_image_pixels
    req = await _validated(EpisodeUploadRequest, await request.body())
    upload = EpisodeUpload(
        instruction=ctx.parser.instruction(req.instruction), actions=req.actions, proprio=req.proprio, state=req.state,
        images=await asyncio.to_thread(lambda: [decode_image(image, max_pixels, f"images[{t}]")
                                                for t, image in enumerate(req.images)]),
        unnorm_key=req.unnorm_key, metadata=req.metadata or {}, end=await _end(req, max_pixels, None))
    return EpisodeStored(**await run_in_threadpool(store.upload, upload))


@router.post("/v1/episodes/{episode_id}/end", response_model=EpisodeStored, tags=["episodes"],
             summary="end an episode and store it", openapi_extra=body_schema(EpisodeEndRequest), responses=_ERRORS)
async def end_episode(episode_id: str, request: Request) -> EpisodeStored:
    ctx = services(request)
    store = ctx.episode_store()
    req = await _validated(EpisodeEndRequest, await request.body())
    end = await _end(req, ctx.config.max_image_pixels, req.executed_actions)
    return EpisodeStored(**await run_in_threadpool(store.end, episode_id, end))


@router.get("/v1/episodes", response_model=EpisodeListResponse, tags=["episodes"],
            summary="stored episodes and their success per policy version", responses=_ERRORS)
async def list_episodes(request: Request) -> EpisodeListResponse:
    return EpisodeListResponse(**services(request).episode_store().summary())


async def _validated(model: Any, body: bytes) -> Any:
    try:
        return await asyncio.to_thread(validate_json, model, body)
    except RequestInvalid as exc:
        raise RequestValidationError(exc.errors) from None


async def _end(req: Any, max_pixels: int, executed_actions: list[list[float]] | None) -> EpisodeEnd:
    """The ending fields of an end or upload request (the final image decoded on a worker thread)."""
    final_image = None
    if req.final_image is not None:
        final_image = await asyncio.to_thread(decode_image, req.final_image, max_pixels, "final_image")
    return EpisodeEnd(success=req.success, rewards=req.rewards, final_image=final_image,
                      final_proprio=req.final_proprio, final_state=req.final_state,
                      executed_actions=executed_actions)
