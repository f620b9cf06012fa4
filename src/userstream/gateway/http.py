"""The gateway's HTTP API (aiohttp): health, metrics, each account's picture, and the live event stream.

This module owns the routes and the JSON shapes of their answers (docs/gateway.md is their contract):

    GET /                               an index: these endpoints, and the accounts' names
    GET /healthz                        200 when every account and sink is healthy, else 503
    GET /metrics                        Prometheus text format (metrics.py)
    GET /accounts                       every account's connection state and counters
    GET /accounts/{name}                one of them
    GET /accounts/{name}/balances       the account's balances, as docs/events.md balance objects
    GET /accounts/{name}/orders         its open orders, as order objects
    GET /accounts/{name}/fills          its most recent fills, as fill objects (oldest first)
    GET /events[?account=NAME]          Server-Sent Events of every event, as sse.py frames them

It knows the gateway only as a `GatewaySource` (snapshot.py): each request takes ONE `GatewaySnapshot` and
answers from it alone, so every figure of an answer is of one moment; `/events` subscribes to the live hub.
It changes nothing. Decimals are strings, exactly as in the event contract. Nothing here shows a
credential: the service never holds one outside the client's streams. `Gateway` (app.py) builds the server.

Every connection is bounded (userstream.netguard; docs/gateway.md, "Bounds"): a request head within
`http_header_timeout`, the next within `http_idle_timeout`, capped in all and per address, with a reserve for
/healthz and /metrics. `/events` refuses readers beyond `sse_max_subscribers` (503), and disconnects a reader
that takes no bytes for `sse_write_timeout` (its socket full): a stalled reader never holds a descriptor,
a buffer or a task for longer than that.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any

import msgspec
from aiohttp import web

from userstream.eventjson import to_dict
from userstream.gateway.metrics import CONTENT_TYPE, render_metrics
from userstream.gateway.snapshot import AccountView, GatewaySource, SinkView
from userstream.netguard import (
    ConnectionGuard,
    ConnectionLimits,
    bound_port,
    descriptor_budget,
    limit_accept_error_log,
    reset_connection,
)

__all__ = ["ENDPOINTS", "SSE_KEEPALIVE", "HttpServer", "create_app"]

_log = logging.getLogger("userstream.gateway")
_ENCODER = msgspec.json.Encoder()

#: Seconds between comment lines on a quiet /events response, so proxies and clients see it alive.
SSE_KEEPALIVE = 15.0
#: Defaults of the HTTP API's caps (GatewayConfig's None): an operator's API, not a public service.
HTTP_MAX_CONNECTIONS = 1000
HTTP_MAX_CONNECTIONS_PER_IP = 100


def create_app(gateway: GatewaySource, *, sse_keepalive: float = SSE_KEEPALIVE) -> web.Application:
    app = web.Application()
    routes = _Routes(gateway, sse_keepalive)
    app.router.add_get("/", routes.index)
    app.router.add_get("/healthz", routes.healthz)
    app.router.add_get("/metrics", routes.metrics)
    app.router.add_get("/accounts", routes.accounts)
    app.router.add_get("/accounts/{name}", routes.account)
    app.router.add_get("/accounts/{name}/balances", routes.balances)
    app.router.add_get("/accounts/{name}/orders", routes.orders)
    app.router.add_get("/accounts/{name}/fills", routes.fills)
    app.router.add_get("/events", routes.events)
    return app


def http_limits(gateway: GatewaySource) -> ConnectionLimits:
    """The bounds of the API's connections for the gateway's config, the descriptor limit read now (half of
    what it leaves is the most the API may take: the streams and sinks need the rest)."""
    config = gateway.config
    total = config.http_max_connections or min(HTTP_MAX_CONNECTIONS, max(1, descriptor_budget() // 2))
    return ConnectionLimits(
        header_timeout=config.http_header_timeout,
        idle_timeout=config.http_idle_timeout,
        max_connections=total,
        max_per_address=config.http_max_connections_per_ip or HTTP_MAX_CONNECTIONS_PER_IP,
        exempt_loopback=config.http_max_connections_per_ip is None,
        reserve_paths=frozenset({"/healthz", "/metrics"}),
    )


class HttpServer:
    """The API served on one address until `stop()`."""

    def __init__(self, gateway: GatewaySource) -> None:
        self._gateway = gateway
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._restore_log: Any = None
        self.guard = ConnectionGuard(http_limits(gateway), name="gateway http")
        self.url: str | None = None

    async def start(self, host: str, port: int) -> None:
        if not _is_loopback(host):
            _log.warning(
                "the HTTP API listens on %s: it has no authentication and shows balances and orders; "
                "put it behind something that has",
                host,
            )
        app = create_app(self._gateway)
        app.middlewares.insert(0, self.guard.middleware)
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=self._gateway.config.http_idle_timeout,
            # A reader that leaves /events ends its handler (and frees its place under the cap) at once,
            # not at the next write.
            handler_cancellation=True,
        )
        await runner.setup()
        self._runner = runner
        self._restore_log = limit_accept_error_log(asyncio.get_running_loop())
        self._listener = await self.guard.serve(runner, host, port)
        bound = bound_port(self._listener, port)
        shown = "127.0.0.1" if host in ("", "0.0.0.0") else host  # noqa: S104 - display only
        if ":" in shown:
            shown = f"[{shown}]"
        self.url = f"http://{shown}:{bound}"

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._restore_log is not None:
            self._restore_log()
            self._restore_log = None


class _WriteTimeoutError(Exception):
    """A write to an /events reader did not complete in time: the reader takes no more bytes."""


class _Routes:
    def __init__(self, gateway: GatewaySource, sse_keepalive: float) -> None:
        self._gateway = gateway
        self._keepalive = sse_keepalive
        self._write_timeout = gateway.config.sse_write_timeout
        self._max_subscribers = gateway.config.sse_max_subscribers
        self._names = tuple(account.name for account in gateway.config.accounts)

    async def healthz(self, request: web.Request) -> web.Response:
        snapshot = self._gateway.snapshot()
        healthy = snapshot.healthy
        body = {
            "status": "ok" if healthy else "down",
            "stopping": snapshot.stopping,
            "accounts": {
                account.name: {
                    "exchange": account.exchange.value,
                    "state": account.connection.value,
                    "healthy": account.healthy,
                    "seconds_in_state": round(account.seconds_in_state, 3),
                    "error": account.error,
                }
                for account in snapshot.accounts
            },
            "sinks": {sink.name: _sink_health(sink) for sink in snapshot.sinks},
        }
        if snapshot.cluster is not None:  # sharded: this instance's leases (docs/scaling.md)
            body["cluster"] = dict(snapshot.cluster)
        return _json(body, status=200 if healthy else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=render_metrics(self._gateway.snapshot()).encode())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    async def accounts(self, request: web.Request) -> web.Response:
        return _json({"accounts": [_summary(account) for account in self._gateway.snapshot().accounts]})

    async def account(self, request: web.Request) -> web.Response:
        account = self._find(request)
        return _json(_summary(account))

    async def balances(self, request: web.Request) -> web.Response:
        account = self._find(request)
        balances = account.picture.balances
        return _json(
            {
                "account": account.name,
                "exchange": account.exchange.value,
                "balances": [to_dict(balances[asset]) for asset in sorted(balances)],
            }
        )

    async def orders(self, request: web.Request) -> web.Response:
        account = self._find(request)
        orders = account.picture.open_orders.values()
        ordered = sorted(orders, key=lambda order: (order.created_at or 0, order.id))
        return _json(
            {
                "account": account.name,
                "exchange": account.exchange.value,
                "orders": [to_dict(order) for order in ordered],
            }
        )

    async def fills(self, request: web.Request) -> web.Response:
        account = self._find(request)
        picture = account.picture
        return _json(
            {
                "account": account.name,
                "exchange": account.exchange.value,
                "fill_count": picture.fill_count,
                "fills": [to_dict(fill) for fill in picture.recent_fills],
            }
        )

    async def events(self, request: web.Request) -> web.StreamResponse:
        wanted = request.query.get("account")
        if wanted is not None and wanted not in self._names:
            raise _not_found(wanted)
        hub = self._gateway.hub
        if hub.subscribers >= self._max_subscribers:
            hub.refused_subscribers += 1
            refusal = _json(
                {"error": f"too many /events subscribers: at most {self._max_subscribers} at once"},
                status=503,
            )
            refusal.headers["Retry-After"] = "1"
            return refusal
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # nginx: do not buffer a live stream
            }
        )
        subscription = hub.subscribe(wanted)  # counted from now: the cap holds while this one prepares
        try:
            await self._write(response.prepare(request))
            # The comment tells the reader it is subscribed: everything published from now on reaches it.
            await self._write(response.write(b": subscribed\n\n"))
            while True:
                batch = await subscription.next_batch(self._keepalive)
                if batch is None:
                    break
                if not batch:
                    await self._write(response.write(b": keepalive\n\n"))
                    continue
                await self._write(response.write(b"".join(message.sse for message in batch)))
            if subscription.dropped_reason is not None:
                notice = _ENCODER.encode({"reason": subscription.dropped_reason})
                await self._write(response.write(b"event: dropped\ndata: " + notice + b"\n\n"))
            await self._write(response.write_eof())
        except ConnectionResetError:
            pass  # the reader left
        except _WriteTimeoutError:
            hub.stalled_subscribers += 1
            _log.info(
                "an /events reader took no bytes for %s s: disconnected (%d so far)",
                self._write_timeout,
                hub.stalled_subscribers,
            )
            if request.transport is not None:
                reset_connection(request.transport)  # its unsent bytes and its descriptor go at once
        finally:
            hub.unsubscribe(subscription)
        return response

    async def _write(self, writing: Any) -> None:
        """Await one write to an /events reader, for at most `sse_write_timeout` seconds."""
        try:
            async with asyncio.timeout(self._write_timeout):
                await writing
        except TimeoutError:
            raise _WriteTimeoutError from None

    # --- helpers --------------------------------------------------------------------------------------

    def _find(self, request: web.Request) -> AccountView:
        name = request.match_info["name"]
        account = self._gateway.snapshot().account(name)
        if account is None:
            raise _not_found(name)
        return account

    async def index(self, request: web.Request) -> web.Response:
        return _json(
            {
                "service": "userstream gateway",
                "docs": "docs/gateway.md",
                "endpoints": ENDPOINTS,
                "accounts": list(self._names),
            }
        )


def _summary(account: AccountView) -> dict[str, Any]:
    picture = account.picture
    since = account.seconds_since_last_event
    return {
        "name": account.name,
        "exchange": account.exchange.value,
        "state": account.connection.value,
        "healthy": account.healthy,
        "seconds_in_state": round(account.seconds_in_state, 3),
        "error": account.error,
        "events": dict(account.events),
        "snapshot_events": account.snapshot_events,
        "reconnects": account.reconnects,
        "disconnects": account.disconnects,
        "keepalive_failures": account.keepalive_failures,
        "resyncs": account.resyncs,
        "resync_failures": account.resync_failures,
        "seconds_since_last_event": None if since is None else round(since, 3),
        "lag_seconds": None if account.lag is None else round(account.lag, 3),
        "balances": len(picture.balances),
        "open_orders": len(picture.open_orders),
        "fills": picture.fill_count,
    }


def _sink_health(sink: SinkView) -> dict[str, Any]:
    health = sink.health
    return {
        "healthy": health.up,
        "state": health.state,
        "pending": sink.pending,
        "error": health.error,
        "failing_seconds": health.failing_for,
        "attempts": health.attempts,
    }


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_ENCODER.encode(body), status=status, content_type="application/json")


def _not_found(name: str) -> web.HTTPNotFound:
    body = _ENCODER.encode({"error": f"unknown account {name[:64]!r}"}).decode()
    return web.HTTPNotFound(text=body, content_type="application/json")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: What `GET /` lists: every route of `create_app`, with what it answers (a test holds the two together).
ENDPOINTS: dict[str, str] = {
    "/": "this index",
    "/healthz": "200 when every account and sink is healthy, else 503",
    "/metrics": "Prometheus text format",
    "/accounts": "every account's connection state and counters",
    "/accounts/{name}": "one account's connection state and counters",
    "/accounts/{name}/balances": "the account's balances (docs/events.md balance objects)",
    "/accounts/{name}/orders": "its open orders (order objects)",
    "/accounts/{name}/fills": "its most recent fills, oldest first (fill objects)",
    "/events": "every event as Server-Sent Events; ?account=NAME for one account's",
}
