"""Error answers: every failure is a JSON `ErrorResponse` {error, message, details?} with the right status.

Client mistakes raise `serving.images.PayloadError` (any 4xx status, with a message saying what is wrong and
how to fix it), schema violations become 422 with one line per violated field, a full queue 503, and a
failure inside the model a 500 (`ModelFailure`) after which the server keeps serving.
"""

from __future__ import annotations

from typing import Any

from serving.batching import QueueFullError
from serving.images import PayloadError
from serving.schemas import ErrorResponse

__all__ = ["ERROR_KINDS", "error_response", "ModelFailure", "validation_details", "install_error_handlers"]

ERROR_KINDS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 408: "request_timeout", 409: "conflict", 413: "payload_too_large",
               415: "unsupported_media_type", 422: "invalid_request", 429: "too_many_requests",
               500: "internal_error", 503: "overloaded"}


class ModelFailure(Exception):
    """Raised from a route when the batched model call failed (its cause is chained); answered with 500."""


def error_response(status: int, message: str, details: list[str] | None = None,
                   headers: dict[str, str] | None = None) -> Any:
    """A `JSONResponse` holding an `ErrorResponse` (also usable as a bare ASGI app by the guard middleware)."""
    from fastapi.responses import JSONResponse

    body = ErrorResponse(error=ERROR_KINDS.get(status, "error"), message=message, details=details)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def validation_details(errors: list[dict[str, Any]]) -> list[str]:
    """pydantic errors → at most 20 lines "field.path: what is wrong"."""
    details = []
    for err in errors[:20]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        details.append(f"{loc}: {err.get('msg', 'invalid')}")
    return details


def install_error_handlers(app: Any) -> None:
    """Register the handlers that turn every exception a route raises into an `ErrorResponse`."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from vla_parl.errors import UnnormKeyError

    async def on_validation(_: Request, exc: RequestValidationError) -> Any:
        details = validation_details(list(exc.errors()))
        return error_response(422, "the request does not match the schema: " + "; ".join(details[:3]), details)

    async def on_http(_: Request, exc: StarletteHTTPException) -> Any:
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    async def on_payload(_: Request, exc: PayloadError) -> Any:
        return error_response(exc.status, str(exc))

    async def on_unnorm(_: Request, exc: UnnormKeyError) -> Any:
        return error_response(422, str(exc))

    async def on_full(_: Request, exc: QueueFullError) -> Any:
        return error_response(503, str(exc), headers={"Retry-After": "1"})

    async def on_model_failure(_: Request, exc: ModelFailure) -> Any:
        cause = exc.__cause__
        return error_response(500, f"the model failed on this request ({type(cause).__name__}: {cause}); the "
                                   "server is still running — if this repeats, check the server log and the "
                                   "checkpoint")

    async def on_internal(_: Request, exc: Exception) -> Any:  # last resort (a bug): still a JSON 500
        return error_response(500, f"internal error ({type(exc).__name__}: {exc})")

    for kind, handler in ((RequestValidationError, on_validation), (StarletteHTTPException, on_http),
                          (PayloadError, on_payload), (UnnormKeyError, on_unnorm), (QueueFullError, on_full),
                          (ModelFailure, on_model_failure), (Exception, on_internal)):
        app.add_exception_handler(kind, handler)
