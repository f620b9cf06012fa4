"""How a `serve` node talks to Redis: the client it opens, and redis-py's failures made ours.

`open_client` builds the redis-py client (timeouts bounded, one immediate retry, no sleeping of its own: an
outage is the health check's to notice and report). `call` awaits one operation and turns any failure into
`BackendUnavailableError` (HTTP 503), so redis-py's exceptions never leave the backend; `FAILURES` is what a
background loop catches instead, and `describe` what it says about one.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Final

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from userstream.errors import ConfigurationError
from userstream.logs import redacted_url
from userstream.server.backend.interface import BackendUnavailableError

__all__ = ["FAILURES", "SOCKET_TIMEOUT", "call", "describe", "open_client"]

SOCKET_TIMEOUT: Final = 5.0
#: What a Redis operation raises when Redis cannot be used (a connection, a timeout, a reply error).
FAILURES: Final = (redis.exceptions.RedisError, OSError)


def open_client(url: str, check_interval: float) -> redis.asyncio.Redis:
    """A client of `url`; ConfigurationError (URL redacted) when the URL is unusable."""
    try:
        return redis.asyncio.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=min(SOCKET_TIMEOUT, max(0.5, 2 * check_interval)),
            # One immediate retry replaces a pooled connection that died (a Redis restart); an outage
            # is the health check's to notice and report, so redis-py must not sleep on its own.
            retry=Retry(NoBackoff(), 1),
        )
    except ValueError as exc:
        raise ConfigurationError(f"invalid Redis URL {redacted_url(url)}: {exc}") from None


async def call(operation: Awaitable[Any]) -> Any:
    """Await one Redis operation; a failure is `BackendUnavailableError` (HTTP 503), never redis-py's."""
    try:
        return await operation
    except FAILURES as exc:
        raise BackendUnavailableError(f"Redis unreachable: {describe(exc)}") from None


def describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."
