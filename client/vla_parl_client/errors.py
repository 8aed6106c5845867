"""The one error the client raises for anything the server says or does not say."""

from __future__ import annotations

from typing import Any

__all__ = ["PolicyServerError"]


class PolicyServerError(RuntimeError):
    """The server answered with an error, or could not be reached.

    Attributes:
        status: the HTTP status of the last answer (None: no answer — unreachable, timed out, cut off).
        message: the server's own `message` (or the transport error) of the last attempt.
        body: the last answer's JSON body (or text), None without an answer.
    """

    def __init__(self, text: str, status: int | None = None, body: Any = None, message: str = "") -> None:
        super().__init__(text)
        self.status = status
        self.body = body
        self.message = message or text
