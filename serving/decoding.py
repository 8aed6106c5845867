"""Decode `/v1` request bodies off the event loop, so `/health` and small requests answer while big ones parse.

Validating a JSON body and turning a nested-list image into an array is CPU work that holds the GIL
(pydantic-core and numpy do not release it): ~2 s for an 11 MB nested-list image, during which a thread
would stall the event loop as surely as running on it. So bodies of `offload_bytes` or more are decoded in
a small pool of worker *processes* (started on first use, with `spawn`: they import only pydantic, numpy and
Pillow), smaller ones on a thread, where they take milliseconds. Either way the result is the validated
request model with each image already decoded to a uint8 H×W×3 array.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from serving.images import decode_image

__all__ = ["RequestInvalid", "validate_json", "parse_request", "BodyDecoder"]


class RequestInvalid(Exception):
    """The body does not match the request schema; `errors` are pydantic's (loc, msg, type) entries."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


def validate_json(model: Any, body: bytes) -> Any:
    """`model.model_validate_json(body)`, a schema violation raised as `RequestInvalid`."""
    from pydantic import ValidationError

    try:
        return model.model_validate_json(body)
    except ValidationError as exc:     # only what the error answer uses: never the (possibly huge) input
        raise RequestInvalid([{"loc": e["loc"], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]) from None


def parse_request(body: bytes, batch: bool, max_pixels: int, max_items: int) -> Any:
    """Validate `body` as an `ActRequest` (or `ActBatchRequest`) and decode its images in place.

    Raises `RequestInvalid` (schema) or `PayloadError` (too many rows, undecodable or oversize image)."""
    from serving.images import PayloadError
    from serving.schemas import ActBatchRequest, ActRequest

    request = validate_json(ActBatchRequest if batch else ActRequest, body)
    if batch and len(request.requests) > max_items:
        raise PayloadError(f"{len(request.requests)} requests in one batch; this server accepts at most "
                           f"{max_items} (see --max-batch-items)", status=413)
    rows = request.requests if batch else [request]
    for i, row in enumerate(rows):
        row.image = decode_image(row.image, max_pixels, f"requests[{i}].image" if batch else "image")
    return request


class BodyDecoder:
    """Runs `parse_request` on a thread (small bodies) or in a worker process (large ones)."""

    def __init__(self, offload_bytes: int = 1 << 20, workers: int | None = None) -> None:
        self.offload_bytes = offload_bytes
        self.workers = workers or max(1, min(4, (os.cpu_count() or 2) // 2))
        self._pool: ProcessPoolExecutor | None = None

    async def __call__(self, body: bytes, *args: Any) -> Any:
        if len(body) < self.offload_bytes:
            return await asyncio.to_thread(parse_request, body, *args)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, parse_request, body, *args)
        except BrokenProcessPool as exc:          # a worker died (e.g. killed for memory): a fresh pool next time
            self._pool = None
            raise RuntimeError("a request-decoding worker process died; the next request starts a new one") from exc

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
