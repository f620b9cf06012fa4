"""serve's limits on who may hold what: connections per address, all connections, failed authentications.

This module owns the rules that turn `ServerConfig` into figures, and the throttle of failed
authentications:

- `websocket_limit(config, peer)`: the WebSockets one address may hold at once. The default (100) applies
  to other addresses; loopback peers are exempt, since serve's main use is a developer's machine or CI where
  every client is 127.0.0.1. An explicit `max_connections_per_ip` applies to every address, loopback too.
- `connection_limits(config)`: the bounds of every TCP connection (userstream.netguard): header and idle
  timeouts, the cap on all connections (by default what the descriptor limit leaves room for, at most
  `MAX_TCP_CONNECTIONS`), and per address (by default the WebSocket limit plus `TCP_HEADROOM_PER_IP` for
  REST beside them; loopback exempt unless set explicitly).
- `AuthThrottle`: failed authentications (HTTP 401, and a Bitmusa stream refused for an unknown listenKey,
  which is a guessed credential too) are counted per address in a token bucket; beyond
  `auth_failure_burst` at once, refilled at `auth_failures_per_second`, every request from that address
  (health checks excepted) is answered 429 before any credential is looked at, in the dialect of the route
  (the bodies come from serve's per-exchange modules, serve_exchanges.py; a path of none: plain JSON).
  Loopback is not exempt: an attack may come from anywhere, and a test suite's failures stay far below.

No credential, token or listenKey reaches a log line from here: an address and counts only.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import msgspec
from aiohttp import web

from userstream.netguard import ConnectionLimits, SummarizedLog, descriptor_budget, is_loopback_address
from userstream.protocol.registry import REGISTRY
from userstream.server.config import ServerConfig

__all__ = [
    "DEFAULT_WEBSOCKETS_PER_IP",
    "MAX_TCP_CONNECTIONS",
    "TCP_HEADROOM_PER_IP",
    "AuthThrottle",
    "connection_limits",
    "websocket_limit",
]

#: WebSockets one non-loopback address may hold at once unless `max_connections_per_ip` says otherwise.
DEFAULT_WEBSOCKETS_PER_IP: Final = 100
#: TCP connections per address beyond its WebSocket limit: room for REST beside a full set of streams.
TCP_HEADROOM_PER_IP: Final = 100
#: The default cap on all connections, whatever the descriptor limit (about 20 KiB each: ~1 GiB).
MAX_TCP_CONNECTIONS: Final = 50_000
#: (path, message) -> the body of a 429 in the dialect of `path`, or None when the path is not the dialect's.
ThrottledBody = Callable[[str, str], bytes | None]

_log = logging.getLogger("userstream.server.limits")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_UNTHROTTLED_PATHS = frozenset({"/healthz"})
#: A stream refused (404) on these paths was refused a guessed credential: Bitmusa's listenKey path.
_CREDENTIAL_PATHS = tuple(entry.ws_path for entry in REGISTRY.values() if entry.listen_key_path is not None)
_MAX_TRACKED_ADDRESSES = 100_000  # buckets kept at once (about 10 MB at most)


def websocket_limit(config: ServerConfig, peer: str) -> int | None:
    """WebSockets `peer` may hold at once (None: no limit)."""
    if config.max_connections_per_ip is not None:
        return config.max_connections_per_ip
    return None if is_loopback_address(peer) else DEFAULT_WEBSOCKETS_PER_IP


def connection_limits(config: ServerConfig) -> ConnectionLimits:
    """The bounds of serve's TCP connections for `config`, the descriptor limit read now."""
    total = config.max_tcp_connections or min(MAX_TCP_CONNECTIONS, descriptor_budget())
    per_address = config.max_tcp_connections_per_ip
    if per_address is None:
        per_address = (config.max_connections_per_ip or DEFAULT_WEBSOCKETS_PER_IP) + TCP_HEADROOM_PER_IP
    return ConnectionLimits(
        header_timeout=config.header_timeout,
        idle_timeout=config.idle_timeout,
        max_connections=total,
        max_per_address=per_address,
        exempt_loopback=config.max_tcp_connections_per_ip is None,
    )


class AuthThrottle:
    """Failed authentications per address, in token buckets: `burst` at once, `rate` per second after."""

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        bodies: Sequence[ThrottledBody] = (),
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._bodies = tuple(bodies)
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, when counted)
        self.failures = 0  # failed authentications counted
        self.throttled = 0  # requests answered 429 for it
        self._refusals = SummarizedLog(_log)  # an attack must not fill the log

    def wait(self, address: str) -> float:
        """Seconds until `address` may try again (0: now)."""
        tokens = self._tokens(address, self._clock())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def failed(self, address: str) -> None:
        """Count one failed authentication from `address`."""
        now = self._clock()
        self.failures += 1
        tokens = self._tokens(address, now)
        # Buckets are kept in the order they were last charged: when too many addresses fail at once, the
        # one charged longest ago (the fullest, most likely) is forgotten. O(1) per failure.
        self._buckets.pop(address, None)
        if len(self._buckets) >= _MAX_TRACKED_ADDRESSES:
            del self._buckets[next(iter(self._buckets))]
        self._buckets[address] = (max(0.0, tokens - 1), now)

    def _tokens(self, address: str, now: float) -> float:
        held = self._buckets.get(address)
        if held is None:
            return float(self.burst)
        tokens, since = held
        return min(float(self.burst), tokens + (now - since) * self.rate)

    @web.middleware
    async def middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        if request.path in _UNTHROTTLED_PATHS:
            return await handler(request)
        address = request.remote or ""
        wait = self.wait(address)
        if wait > 0:
            self.throttled += 1
            self._refusals.note(
                "auth", "too many failed authentications: requests refused (429)", peer=address
            )
            return _throttled(request.path, self, max(1, math.ceil(wait)))
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if _is_failed_authentication(request.path, exc.status):
                self.failed(address)
            raise
        if _is_failed_authentication(request.path, response.status):
            self.failed(address)
        return response


def _is_failed_authentication(path: str, status: int) -> bool:
    return status == 401 or (status == 404 and path.startswith(_CREDENTIAL_PATHS))


def _throttled(path: str, throttle: AuthThrottle, retry_after: int) -> web.Response:
    message = (
        f"too many failed authentications from this address: at most {throttle.burst} at once, then "
        f"{throttle.rate:g} per second; retry in {retry_after} s"
    )
    headers = {"Retry-After": str(retry_after)}
    body = next((found for found in (dialect(path, message) for dialect in throttle._bodies) if found), None)
    if body is None:
        body = msgspec.json.encode({"error": message})
    return web.Response(status=429, body=body, content_type="application/json", headers=headers)
