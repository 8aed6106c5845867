"""HTTP to the policy server: one `requests` session, timeouts, and retries that never apply a request twice.

When is a request sent again?

| failure | replayable request | state-changing request |
|---|---|---|
| could not connect (refused, DNS, connect timeout): nothing was sent | retried | retried |
| 429 / 503 (the server refused it before doing any work; `Retry-After` honoured) | retried | retried |
| read timeout, connection cut after sending, 500 / 502 / 504 | retried | **raised** |
| any other 4xx (the request itself is wrong) | raised | raised |

Replayable requests are the GETs and `/v1/act` calls outside an episode: sending one twice only computes
an answer twice. State-changing requests — `/v1/act` rows with an `episode_id` (each records a step),
starting, ending and uploading episodes, `/v1/admin/reload` — may already have been applied when the
answer is lost, and a second copy would record a step twice or end an episode twice (409). For those, an
error after sending is raised at once as `PolicyServerError` saying the request may have been applied;
the robot's episode then ends unrecorded (the server discards it after `--episode-timeout`).
Retries wait `backoff * 2**attempt` seconds, capped at `max_backoff`.
"""

from __future__ import annotations

import time
from typing import Any

import requests
from urllib3.exceptions import NewConnectionError

from vla_parl_client.errors import PolicyServerError

__all__ = ["Transport"]

_REFUSED_UNAPPLIED = frozenset({429, 503})       # the server turned the request away before working on it
_SERVER_FAILURE = frozenset({500, 502, 504})     # it may have worked on it


class Transport:
    """A keep-alive session to `url` with the retry rule above.

    Args:
        url: server base URL, e.g. "http://127.0.0.1:8000".
        api_key: sent as `Authorization: Bearer <key>` when given.
        timeout: seconds per attempt (connect and read).
        retries: extra attempts after the first (see the table for which failures).
        backoff: first retry delay in seconds; doubles each retry, capped at `max_backoff`.
    """

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 10.0, retries: int = 3,
                 backoff: float = 0.1, max_backoff: float = 5.0) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the server URL must start with http:// or https://, e.g. http://127.0.0.1:8000; "
                             f"got {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.session = requests.Session()
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    def request(self, method: str, path: str, payload: Any = None, *, replayable: bool,
                timeout: float | None = None) -> Any:
        """The JSON answer of `method path`; `replayable=False` for a request that changes server state."""
        where = f"{method} {path}"
        attempt = 0
        while True:
            last_try = attempt == self.retries
            delay = min(self.backoff * (2 ** attempt), self.max_backoff)
            try:
                response = self.session.request(method, self.url + path, json=payload,
                                                timeout=timeout or self.timeout)
            except requests.RequestException as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, ValueError):            # InvalidURL, MissingSchema, ...: nothing to retry
                    raise PolicyServerError(f"{where}: {reason} (the server URL is {self.url!r})",
                                            message=reason) from exc
                if not (_never_sent(exc) or replayable):
                    raise PolicyServerError(f"{where}: {reason}; the server may have applied it, so it is not "
                                            "sent again (it changes server state)", message=reason) from exc
                if last_try:
                    raise PolicyServerError(f"{where} failed after {attempt + 1} attempt(s): {reason}",
                                            message=reason) from exc
            else:
                body = _json_or_text(response)
                if response.status_code < 400:
                    if isinstance(body, str):
                        raise PolicyServerError(f"{where} → HTTP {response.status_code} with a non-JSON answer "
                                                f"({body[:80]!r}): is {self.url} a vla-parl policy server?",
                                                response.status_code, body)
                    return body
                message = body.get("message", str(body)) if isinstance(body, dict) else str(body)
                status = response.status_code
                retry = status in _REFUSED_UNAPPLIED or (replayable and status in _SERVER_FAILURE)
                if not retry:
                    why = ("" if replayable or status not in _SERVER_FAILURE
                           else " (not sent again: the server may have applied it)")
                    raise PolicyServerError(f"{where} → HTTP {status}: {message}{why}", status, body, message)
                if last_try:
                    raise PolicyServerError(f"{where} failed after {attempt + 1} attempt(s): HTTP {status}: "
                                            f"{message}", status, body, message)
                retry_after = response.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    delay = min(float(retry_after), self.max_backoff)
            time.sleep(delay)
            attempt += 1

    def close(self) -> None:
        self.session.close()


def _never_sent(exc: Exception) -> bool:
    """True when the request failed while connecting, so no byte of it reached the server."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    cause = exc.args[0] if exc.args else None
    return isinstance(getattr(cause, "reason", cause), NewConnectionError)


def _json_or_text(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text
