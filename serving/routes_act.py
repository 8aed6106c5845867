"""Act routes: OpenVLA's `POST /act` (json_numpy in and out, drop-in for vla-scripts/deploy.py) and the typed
`POST /v1/act`, `POST /v1/act/batch`. A `/v1` row with an `episode_id` is checked against its episode before
the model runs, and recorded as the episode's next step after (`serving.episodes`)."""

# no `from __future__ import annotations`: FastAPI reads the route annotations at runtime

import json
import time

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from serving.engine import ActItem
from serving.episodes import StepRow
from serving.images import check_image_array, decode_act_payload, encode_array
from serving.openapi import body_schema
from serving.parsing import act_response, parse_vector
from serving.schemas import ActBatchRequest, ActBatchResponse, ActRequest, ActResponse, ErrorResponse
from serving.services import Services, services

__all__ = ["router", "BODY_MODELS"]

router = APIRouter()
BODY_MODELS = (ActRequest, ActBatchRequest)

_ACT_SCHEMA = {"type": "object", "required": ["image", "instruction"], "properties": {
    "image": {"type": "object", "description": "json_numpy uint8 HxWx3 array",
              "required": ["__numpy__", "dtype", "shape"],
              "properties": {"__numpy__": {"type": "string", "format": "byte"}, "dtype": {"type": "string"},
                             "shape": {"type": "array", "items": {"type": "integer"}}}},
    "instruction": {"type": "string"}, "unnorm_key": {"type": "string"},
    "encoded": {"type": "string", "description": "alternative: the whole payload as a JSON string"}}}
_ERRORS = {413: {"model": ErrorResponse}, 401: {"model": ErrorResponse}}


@router.post("/act", tags=["openvla"], summary="OpenVLA-compatible act (json_numpy in and out)",
             openapi_extra={"requestBody": {"required": True,
                                            "content": {"application/json": {"schema": _ACT_SCHEMA}}}},
             responses={200: {"description": "json_numpy-encoded float64 action (a JSON string of it for the "
                                             "'encoded' form)", "content": {"application/json": {"schema": {}}}},
                        422: {"model": ErrorResponse}})
async def act_openvla(request: Request) -> Response:
    ctx = services(request)
    config, parser = ctx.config, ctx.parser
    # JSON and base64 decoding off the event loop: /health keeps answering while large bodies are parsed
    payload, encoded = await run_in_threadpool(decode_act_payload, await request.body(), config.max_request_bytes,
                                               config.max_image_pixels)
    image = check_image_array(payload["image"], config.max_image_pixels, "'image'")
    item = ActItem(image=image, instruction=parser.instruction(payload["instruction"]),
                   unnorm_key=parser.unnorm_key(payload.get("unnorm_key")),
                   proprio=parse_vector(payload.get("proprio"), "proprio"),
                   state=parse_vector(payload.get("state"), "state"))
    ((result, *_),) = await ctx.submit([item])
    body = encode_array(result.action)
    return Response(json.dumps(body) if encoded else body, media_type="application/json")


@router.post("/v1/act", response_model=ActResponse, tags=["v1"], summary="act on one observation",
             openapi_extra=body_schema(ActRequest), responses=_ERRORS)
async def act(request: Request) -> ActResponse:
    t0 = time.perf_counter()
    (response,) = await _act(services(request), await request.body(), batch=False, t0=t0)
    return response


@router.post("/v1/act/batch", response_model=ActBatchResponse, tags=["v1"], summary="act on several observations",
             openapi_extra=body_schema(ActBatchRequest), responses=_ERRORS)
async def act_batch(request: Request) -> ActBatchResponse:
    t0 = time.perf_counter()
    return ActBatchResponse(results=await _act(services(request), await request.body(), batch=True, t0=t0))


async def _act(ctx: Services, body: bytes, batch: bool, t0: float) -> list[ActResponse]:
    """Parse, admit the episode rows, run the model, record the episode steps, answer."""
    requests = await ctx.parser.requests(body, batch)
    store = ctx.episode_store() if any(r.episode_id is not None for r in requests) else None
    for req in requests:    # an episode row without unnorm_key uses its episode's
        if req.episode_id is not None and req.unnorm_key is None:
            req.unnorm_key = store.unnorm_key(req.episode_id)
    items = [ctx.parser.item(r, f"requests[{i}].image" if batch else "image") for i, r in enumerate(requests)]
    if store is None:
        outcomes = await ctx.submit(items)
        return [act_response(i, o, t0) for i, o in zip(items, outcomes)]
    admission = store.admit([None if r.episode_id is None else
                             StepRow(r.episode_id, i.instruction, i.unnorm_key, i.image, i.proprio, i.state)
                             for r, i in zip(requests, items)])
    try:
        outcomes = await ctx.submit(items)
    except BaseException:
        admission.release()
        raise
    steps = admission.record([o[0] for o in outcomes])
    return [act_response(i, o, t0, s) for i, o, s in zip(items, outcomes, steps)]
