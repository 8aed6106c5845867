"""The guard in front of every route: API key and body limits, checked before the app reads the body.

Pure ASGI middleware: the API key (when configured) is compared in constant time; a declared Content-Length
over the limit is refused 413 unread; then the body is read whole, within `body_timeout` seconds (408 and
the connection closed otherwise) and up to `max_bytes` (413), and replayed to the app. `OPEN_PATHS` answer
without the key: liveness probes and the (non-secret) API description.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from serving.errors import error_response
from serving.timeouts import BodyTooLarge, read_body

__all__ = ["OPEN_PATHS", "GuardMiddleware"]

OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


class GuardMiddleware:
    """API key (constant-time) and body-size limit, both before the body is read; then the body is read whole
    within `body_timeout` seconds (408 and the connection closed otherwise) and replayed to the app."""

    def __init__(self, app: Any, api_key: str | None, max_bytes: int, body_timeout: float = 30.0) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout

    @staticmethod
    def _presented_key(headers: dict[bytes, bytes]) -> bytes | None:
        if b"x-api-key" in headers:
            return headers[b"x-api-key"].strip()
        auth = headers.get(b"authorization", b"")
        scheme, _, token = auth.partition(b" ")
        return token.strip() if scheme.lower() == b"bearer" and token.strip() else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        if self.api_key is not None and scope["path"] not in OPEN_PATHS:
            presented = self._presented_key(headers)
            if presented is None:
                return await error_response(401, "this server requires an API key: send it in the 'X-API-Key' "
                                                  "header or as 'Authorization: Bearer <key>'",
                                            headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
            if not hmac.compare_digest(presented, self.api_key):
                return await error_response(403, "the API key is not valid")(scope, receive, send)
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return await error_response(400, "the Content-Length header is not an integer")(scope, receive, send)
            if declared > self.max_bytes:
                return await error_response(413, f"the request body is {declared} bytes; this server accepts at "
                                                  f"most {self.max_bytes} (see --max-request-bytes)")(scope, receive,
                                                                                                      send)
        # read the whole body (chunked or not) up to the limit and within the deadline, then replay it to the app
        try:
            messages = await asyncio.wait_for(read_body(receive, self.max_bytes), self.body_timeout)
        except BodyTooLarge:
            return await error_response(413, f"the request body exceeds {self.max_bytes} bytes "
                                             "(see --max-request-bytes)")(scope, receive, send)
        except asyncio.TimeoutError:
            return await error_response(408, f"the request body did not arrive within {self.body_timeout:g} s "
                                             "(see --body-timeout)", headers={"Connection": "close"})(scope, receive,
                                                                                                     send)
        return await self.app(scope, _replay(messages, receive), send)


def _replay(messages: list[dict[str, Any]], receive: Any = None) -> Any:
    async def replay() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        if receive is not None:
            return await receive()
        return {"type": "http.disconnect"}
    return replay
