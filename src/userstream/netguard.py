"""Bounds on the TCP connections of an aiohttp server: every connection is counted, timed and capped.

This module owns `ConnectionGuard`, which sits between the listening socket and aiohttp's own protocol
(a protocol wrapper made by `guard.protocol_factory(runner.server)`, and an aiohttp middleware that tells it
when a request starts and ends), and the two process-wide protections of a server: `raise_descriptor_limit()`
(the soft RLIMIT_NOFILE up to the hard one) and `limit_accept_error_log(loop)` (asyncio's "socket.accept() out
of system resource" log, which otherwise repeats with a traceback many times a second).

What a guarded server promises (docs/server.md and docs/gateway.md give the figures of each service):

- A connection must deliver its first request head within `header_timeout` of being accepted, and, between
  two requests of a keep-alive connection, the next one within `idle_timeout`; else it is closed (aborted if
  what it was last sent is still unread). A request in progress (a WebSocket, an SSE stream) has no deadline
  here: its own protocol bounds it.
- At most `max_connections` are open at once, and at most `max_per_address` from one address (loopback
  addresses exempt when `exempt_loopback`). When a limit is reached, a new connection takes the place of the
  oldest one that is waiting for a request (an idle one: it has nothing in progress); when none is idle, it
  is refused at once with a short HTTP answer (429 for its address's limit, 503 for the server's) and closed.
- Beyond `max_connections`, `reserve` more connections are accepted for `reserve_paths` only (health): a
  server whose every connection is a busy stream still answers its health check. Any other request on such a
  connection is answered 503.

It never reads a request's bytes: what it knows of requests comes from the middleware. Nothing here logs a
request's content; refusals are logged at most once a minute per kind, with a count.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import resource
import socket
import struct
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

__all__ = [
    "ConnectionGuard",
    "ConnectionLimits",
    "GuardStats",
    "SummarizedLog",
    "bound_port",
    "descriptor_budget",
    "is_loopback_address",
    "limit_accept_error_log",
    "raise_descriptor_limit",
    "reset_connection",
]

_log = logging.getLogger("userstream.netguard")
_FIELDS = "userstream_fields"  # as userstream.logs.log_event attaches them
#: A process needs descriptors beside its connections (listening sockets, logs, Redis, sink files, the
#: gateway's own outbound streams): at least this many, or 1/16 of the limit, are kept out of the caps.
_MIN_SPARE_DESCRIPTORS = 64
_SUMMARY_INTERVAL = 60.0
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback_address(address: str) -> bool:
    """Whether a peer address (as `peername` gives it) is this machine's own (127.0.0.0/8, ::1)."""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped.is_loopback
    return parsed.is_loopback


def reset_connection(transport: asyncio.Transport) -> None:
    """Close a connection at once, with a TCP reset: what it has not sent is discarded by the kernel too.

    A plain close (or asyncio's abort) of a socket whose peer does not read leaves the kernel holding the
    unsent bytes (megabytes per socket) and retrying for minutes; SO_LINGER 0 drops them now."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def raise_descriptor_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return (before, after). Never fails: a limit that
    cannot be raised stays as it was (the caps are then derived from it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft, soft
    return soft, target


def descriptor_budget() -> int:
    """How many connections the current soft descriptor limit leaves room for, spare descriptors kept."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(1, soft - max(_MIN_SPARE_DESCRIPTORS, soft // 16))


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The bounds of one guarded server (seconds for durations; None: no per-address limit)."""

    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    max_connections: int = 1000
    max_per_address: int | None = 200
    exempt_loopback: bool = True
    reserve: int = 8
    reserve_paths: frozenset[str] = frozenset({"/healthz"})

    def __post_init__(self) -> None:
        for name in ("header_timeout", "idle_timeout"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {value}")
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be positive, not {self.max_connections}")
        if self.max_per_address is not None and self.max_per_address < 1:
            raise ValueError(f"max_per_address must be positive, not {self.max_per_address}")
        if self.reserve < 0:
            raise ValueError(f"reserve must not be negative, not {self.reserve}")

    def per_address_limit(self, address: str) -> int | None:
        """The limit that applies to connections from `address` (None: none)."""
        if self.exempt_loopback and is_loopback_address(address):
            return None
        return self.max_per_address


@dataclass(slots=True)
class GuardStats:
    """What a guard did since it started (each a count of connections)."""

    accepted: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # by reason: "address", "server"
    evicted: int = 0  # idle connections closed to make room for a new one
    timed_out: int = 0  # closed at their header or idle deadline
    reserve_accepted: int = 0  # accepted beyond the cap, for health only
    reserve_refused_requests: int = 0  # requests other than health on a reserve connection (503)


class ConnectionGuard:
    """Counts, times and caps the connections of one server; see the module docstring for the rules."""

    def __init__(self, limits: ConnectionLimits, *, name: str = "server") -> None:
        self.limits = limits
        self.name = name
        self.stats = GuardStats()
        self._by_transport: dict[asyncio.BaseTransport, _Guarded] = {}
        self._idle: OrderedDict[_Guarded, None] = OrderedDict()  # waiting for a request, oldest first
        self._per_address: Counter[str] = Counter()
        self._normal = 0  # open connections within max_connections
        self._reserve = 0  # open connections in the health reserve
        self._refusal_log = SummarizedLog(_log)

    # --- what it holds ----------------------------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        return self._normal + self._reserve

    def connections_from(self, address: str) -> int:
        return self._per_address[address]

    def describe(self) -> dict[str, Any]:
        """Counts for health and metrics (no address, no content)."""
        limits = self.limits
        return {
            "open": self.open_connections,
            "max": limits.max_connections,
            "reserve_open": self._reserve,
            "accepted": self.stats.accepted,
            "refused": dict(sorted(self.stats.refused.items())),
            "evicted": self.stats.evicted,
            "timed_out": self.stats.timed_out,
        }

    # --- wiring -----------------------------------------------------------------------------------------

    def protocol_factory(self, inner: Callable[[], asyncio.BaseProtocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for `loop.create_server` that guards the protocols `inner` makes."""
        return lambda: _Guarded(self, inner)

    @web.middleware
    async def middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """Tells the guard a request is in progress (so its connection has no deadline and is never
        evicted), and keeps the health reserve for health requests."""
        transport = request.transport
        connection = self._by_transport.get(transport) if transport is not None else None
        if connection is None:  # served without the guard's protocol (a test client, say)
            return await handler(request)
        connection.request_started()
        try:
            if connection.reserve and request.path not in self.limits.reserve_paths:
                self.stats.reserve_refused_requests += 1
                refusal = _refusal_response(
                    503,
                    f"the server is at its connection limit ({self.limits.max_connections}): only "
                    "health checks are answered now; retry shortly",
                )
                refusal.force_close()
                return refusal
            response = await handler(request)
            if connection.reserve:
                response.force_close()  # a reserve place serves one health check
            return response
        finally:
            connection.request_ended()

    async def serve(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        *,
        ssl_context: Any = None,
        backlog: int = 1024,
    ) -> asyncio.Server:
        """Listen on host:port for `runner` (set up, its app holding `self.middleware`), guarded. The
        caller closes the returned server before `runner.cleanup()`. TLS handshakes must finish within
        `header_timeout` (they happen before the connection is counted)."""
        server = runner.server
        if server is None:
            raise RuntimeError("the runner is not set up")
        loop = asyncio.get_running_loop()
        return await loop.create_server(
            self.protocol_factory(server),
            host or None,
            port,
            ssl=ssl_context,
            backlog=backlog,
            ssl_handshake_timeout=self.limits.header_timeout if ssl_context is not None else None,
        )

    # --- admission (called by _Guarded) -----------------------------------------------------------------

    def _admit(self, connection: _Guarded) -> tuple[int, str] | None:
        """Admit `connection` (possibly into the reserve, possibly evicting an idle one), or the refusal:
        (HTTP status, message)."""
        limits = self.limits
        address = connection.address
        per_address = limits.per_address_limit(address)
        full = per_address is not None and self._per_address[address] >= per_address
        if full and not self._evict_idle(address=address):
            self.stats.refused["address"] += 1
            self._refusal_log.note(
                "address",
                f"{self.name}: connection refused: too many from one address",
                limit=per_address,
            )
            return 429, f"too many connections from this address: at most {per_address} at once"
        if self._normal >= limits.max_connections and not self._evict_idle(reserve=False):
            if self._reserve >= limits.reserve and not self._evict_idle(reserve=True):
                self.stats.refused["server"] += 1
                self._refusal_log.note(
                    "server",
                    f"{self.name}: connection refused: at the connection limit",
                    limit=limits.max_connections,
                )
                return 503, (
                    f"the server is at its connection limit ({limits.max_connections}): retry shortly"
                )
            connection.reserve = True
            self.stats.reserve_accepted += 1
        if connection.reserve:
            self._reserve += 1
        else:
            self._normal += 1
        self._per_address[address] += 1
        self._by_transport[connection.transport_key] = connection
        self._idle[connection] = None
        self.stats.accepted += 1
        return None

    def _evict_idle(self, *, address: str | None = None, reserve: bool = False) -> bool:
        """Close the oldest idle connection of `address` (None: of the reserve, or of the connections
        within the cap); False if there is none."""
        for candidate in self._idle:
            if candidate.address == address if address is not None else candidate.reserve == reserve:
                self.stats.evicted += 1
                candidate.shut()
                return True
        return False

    def _release(self, connection: _Guarded) -> None:
        if connection.reserve:
            self._reserve -= 1
        else:
            self._normal -= 1
        self._per_address[connection.address] -= 1
        if self._per_address[connection.address] <= 0:
            del self._per_address[connection.address]
        self._by_transport.pop(connection.transport_key, None)
        self._idle.pop(connection, None)

    def _set_idle(self, connection: _Guarded, idle: bool) -> None:
        if idle:
            self._idle[connection] = None
            self._idle.move_to_end(connection)
        else:
            self._idle.pop(connection, None)


class _Guarded(asyncio.Protocol):
    """One accepted connection: aiohttp's protocol inside, the guard's count and deadline around it."""

    __slots__ = (
        "_counted",
        "_deadline",
        "_guard",
        "_inner",
        "_inner_factory",
        "address",
        "busy",
        "reserve",
        "transport",
        "transport_key",
    )

    def __init__(self, guard: ConnectionGuard, inner_factory: Callable[[], asyncio.BaseProtocol]) -> None:
        self._guard = guard
        self._inner_factory = inner_factory
        self._inner: asyncio.Protocol | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._counted = False
        self.address = ""
        self.busy = 0  # requests in progress
        self.reserve = False
        self.transport: asyncio.Transport | None = None
        self.transport_key: Any = None

    # --- asyncio.Protocol ---------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not isinstance(transport, asyncio.Transport):  # a stream server always gives one
            raise TypeError(f"expected a stream transport, not {type(transport).__name__}")
        self.transport = self.transport_key = transport
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        refusal = self._guard._admit(self)
        if refusal is not None:
            _refuse(transport, *refusal)
            return
        self._counted = True
        self._arm(self._guard.limits.header_timeout)
        inner = self._inner_factory()
        if not isinstance(inner, asyncio.Protocol):
            raise TypeError(f"expected a stream protocol, not {type(inner).__name__}")
        self._inner = inner
        inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._inner is not None:
            return self._inner.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._uncount()
        inner, self._inner = self._inner, None
        self.transport = None
        if inner is not None:
            inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    # --- requests and deadlines ---------------------------------------------------------------------------

    def request_started(self) -> None:
        self.busy += 1
        if self.busy == 1:
            self._disarm()
            self._guard._set_idle(self, idle=False)

    def request_ended(self) -> None:
        self.busy -= 1
        if self.busy == 0 and self._counted:
            self._guard._set_idle(self, idle=True)
            self._arm(self._guard.limits.idle_timeout)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = asyncio.get_running_loop().call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.busy == 0 and self._counted:
            self._guard.stats.timed_out += 1
            self.shut()

    def shut(self) -> None:
        """Close an idle connection now: gently when nothing is left to send, else reset (a peer that
        does not read would otherwise keep it open forever). Its place is free at once."""
        self._uncount()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size():
            reset_connection(transport)
        else:
            transport.close()

    def _uncount(self) -> None:
        self._disarm()
        if self._counted:
            self._counted = False
            self._guard._release(self)


def _refusal_body(message: str) -> bytes:
    return msgspec.json.encode({"error": message})


def _refusal_response(status: int, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=_refusal_body(message),
        content_type="application/json",
        headers={"Retry-After": "1"},
    )


_REASONS = {429: "Too Many Requests", 503: "Service Unavailable"}


def _refuse(transport: asyncio.Transport, status: int, message: str) -> None:
    """Answer a connection that is not admitted, before it sends anything, and close it."""
    body = _refusal_body(message)
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    try:
        transport.write(head.encode() + body)
    except (OSError, RuntimeError):
        transport.abort()
        return
    transport.close()


class SummarizedLog:
    """The first occurrence of each kind logged at WARNING, then at most one line a minute with the count
    of what happened meanwhile: an attack cannot flood the log."""

    def __init__(self, logger: logging.Logger, interval: float = _SUMMARY_INTERVAL) -> None:
        self._logger = logger
        self._interval = interval
        self._next: dict[str, float] = {}
        self._pending: Counter[str] = Counter()

    def note(self, kind: str, message: str, **fields: Any) -> bool:
        """Count one occurrence; True when it was logged."""
        now = time.monotonic()
        self._pending[kind] += 1
        if now < self._next.get(kind, 0.0):
            return False
        count = self._pending.pop(kind)
        self._next[kind] = now + self._interval
        extra = {**fields, "count": count, "per_seconds": self._interval}
        self._logger.warning(message, extra={_FIELDS: extra})
        return True


class _AcceptErrorLimiter:
    """The loop's exception handler, minus the flood of asyncio's accept errors (summarized instead)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.previous = loop.get_exception_handler()
        self.users = 0
        self.errors = 0
        self._log = SummarizedLog(_log)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == "socket.accept() out of system resource":
            self.errors += 1
            error = context.get("exception")
            code = errno.errorcode.get(getattr(error, "errno", None) or 0, "unknown")
            self._log.note(
                "accept",
                "cannot accept connections: out of system resources (descriptors or memory); "
                "retrying every second",
                error=code,
            )
            return
        if self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)


def limit_accept_error_log(loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """Summarize asyncio's "socket.accept() out of system resource" errors on `loop` (the first at once, then
    one line a minute with the count); everything else reaches the previous handler. Returns the undo
    (servers sharing a loop share one limiter; the last undo restores the previous handler)."""
    current = loop.get_exception_handler()
    limiter = current if isinstance(current, _AcceptErrorLimiter) else _AcceptErrorLimiter(loop)
    if limiter is not current:
        loop.set_exception_handler(limiter)
    limiter.users += 1
    undone = False

    def undo() -> None:
        nonlocal undone
        if undone:
            return
        undone = True
        limiter.users -= 1
        if limiter.users == 0 and loop.get_exception_handler() is limiter:
            loop.set_exception_handler(limiter.previous)

    return undo


def bound_port(listener: asyncio.Server, requested: int) -> int:
    """The TCP port `listener` is bound to (`requested` unless that was 0: the one the system chose)."""
    for sock in listener.sockets:
        address = sock.getsockname()
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return requested
