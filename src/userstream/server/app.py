"""The HTTP face of `userstream serve`: one aiohttp application, one port, REST and both WebSockets.

`create_app(config)` is the importable factory and the composition root: it builds the `ExchangeServer`
(exchange.py), lays the fault layer over it (faults.py), and registers the routes (docs/server.md has the
full contract):

    GET /ws/spot/{listenKey}               Bitmusa user stream (text JSON frames): here
    GET /spotws_user/userData/ws           Coinlocally user stream (token/api-key header, sub, gzip): here
    POST|PUT|DELETE /spot/userDataStream   Bitmusa listenKey (bitmusa_routes.py)
    GET /spot/wallet, /spot/order/history  Bitmusa REST snapshot (bitmusa_routes.py)
    GET /sapi/v1/account, /sapi/v1/openOrders   Coinlocally signed REST snapshot (coinlocally_routes.py)
    POST /admin/events, POST|GET /admin/faults, GET /healthz   the operator's routes (admin_routes.py)

The per-exchange REST modules are chosen through serve_exchanges.py. This module's own routes are the two
WebSocket handshakes and what a client may send on them; the wire shapes come from the protocol modules,
the state and rules from exchange.py.
"""

from __future__ import annotations

import hmac
import logging
import math
import time

from aiohttp import web

from userstream.events import Exchange
from userstream.logs import log_event
from userstream.protocol import bitmusa, coinlocally
from userstream.protocol.close import CloseCode
from userstream.server import admin_routes
from userstream.server.admin_routes import ADMIN_EVENTS_PATH, HEALTH_PATH
from userstream.server.backend.interface import BackendUnavailableError
from userstream.server.codes import (
    BITMUSA_ERR_UNAVAILABLE,
    COINLOCALLY_ERR_BAD_REQUEST,
    COINLOCALLY_ERR_SUB_REJECTED,
    COINLOCALLY_ERR_TOO_MANY_CONNECTIONS,
    COINLOCALLY_ERR_UNAUTHORIZED,
    COINLOCALLY_ERR_UNAVAILABLE,
)
from userstream.server.config import Account, ServerConfig
from userstream.server.connection import Connection
from userstream.server.exchange import ExchangeServer, now_ms
from userstream.server.faults import FaultController, chaos
from userstream.server.limits import AuthThrottle, websocket_limit
from userstream.server.serve_exchanges import SERVE_EXCHANGES, add_rest_routes
from userstream.server.variants import Refusal, is_client_pong, refuse_after_upgrade, variant_middlewares
from userstream.server.wsmask import MaskedOnlyWebSocketResponse

__all__ = [
    "ADMIN_EVENTS_PATH",
    "AUTH_THROTTLE_KEY",
    "BITMUSA_ERR_UNAVAILABLE",
    "COINLOCALLY_ERR_BAD_REQUEST",
    "COINLOCALLY_ERR_SUB_REJECTED",
    "COINLOCALLY_ERR_TOO_MANY_CONNECTIONS",
    "COINLOCALLY_ERR_UNAUTHORIZED",
    "COINLOCALLY_ERR_UNAVAILABLE",
    "FAULTS_KEY",
    "HEALTH_PATH",
    "SERVER_KEY",
    "create_app",
]

SERVER_KEY = web.AppKey("userstream_server", ExchangeServer)
FAULTS_KEY = web.AppKey("userstream_faults", FaultController)
AUTH_THROTTLE_KEY = web.AppKey("userstream_auth_throttle", AuthThrottle)

_log = logging.getLogger("userstream.server.app")
_JSON = "application/json"
_REFUSED = "service unavailable: new streams are refused for now (fault injection)"


def create_app(config: ServerConfig) -> web.Application:
    """A ready-to-run application for `config`; its `ExchangeServer` is `app[SERVER_KEY]`, its fault
    controller `app[FAULTS_KEY]`."""
    server = ExchangeServer(config)
    faults = FaultController(server.hub, server.backend, [account.name for account in config.accounts])
    server.on_open.append(faults.apply_delay)  # a delay window covers new connections too
    throttle = AuthThrottle(  # limits.py; the 429's body in the dialect of the path
        config.auth_failures_per_second,
        config.auth_failure_burst,
        bodies=[entry.throttled_body for entry in SERVE_EXCHANGES.values()],
    )
    middlewares = [throttle.middleware, *variant_middlewares(server.variants)]  # variants: none by default
    app = web.Application(client_max_size=config.max_ingest_body, middlewares=middlewares)
    app[SERVER_KEY] = server
    app[FAULTS_KEY] = faults
    app[AUTH_THROTTLE_KEY] = throttle
    routes = _Routes(server, faults)
    app.router.add_get(bitmusa.WS_PATH_PREFIX + "{listen_key}", routes.bitmusa_stream)
    app.router.add_get(coinlocally.WS_PATH, routes.coinlocally_stream)
    add_rest_routes(app, server)  # listenKeys and snapshots, per exchange (serve_exchanges.py)
    admin_routes.add_routes(app, server, faults)  # ingest, faults, /healthz
    app.cleanup_ctx.append(server.background)
    app.cleanup_ctx.append(lambda app: chaos(faults, config))  # serve --chaos (faults.py)
    app.on_shutdown.append(server.shutdown)
    return app


def _bitmusa_error(status: int, code: int, message: str, **headers: str) -> web.Response:
    return web.Response(
        status=status, body=bitmusa.render_error(code, message), content_type=_JSON, headers=headers
    )


def _coinlocally_error(
    status: int, code: int, message: str, *, retry_after: int | None = None
) -> web.Response:
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    return web.Response(
        status=status, text=coinlocally.render_error(code, message), content_type=_JSON, headers=headers
    )


class _Routes:
    def __init__(self, server: ExchangeServer, faults: FaultController) -> None:
        self.server = server
        self.config = server.config
        self.faults = faults

    # --- Bitmusa WebSocket ----------------------------------------------------------------------------------

    async def bitmusa_stream(self, request: web.Request) -> web.StreamResponse:
        ws = self._websocket()
        if not _can_upgrade(ws, request):
            return _bitmusa_error(400, bitmusa.ERR_BAD_REQUEST, "expected a WebSocket upgrade")
        if self.server.shutting_down:
            return _bitmusa_error(503, bitmusa.ERR_BAD_REQUEST, "the server is shutting down")
        too_many = self._too_many_connections(request)
        if too_many is not None:
            return _bitmusa_error(429, bitmusa.ERR_RATE_LIMITED, too_many, **{"Retry-After": "1"})
        problem = self.server.backend.problem()
        if problem is not None:
            return _bitmusa_error(503, BITMUSA_ERR_UNAVAILABLE, f"service unavailable: {problem}")
        key = request.match_info["listen_key"]
        try:
            account = await self.server.lookup_listen_key(key)
        except BackendUnavailableError as exc:
            return _bitmusa_unavailable(exc)
        if account is None:
            return _bitmusa_error(
                404, bitmusa.ERR_LISTEN_KEY_NOT_FOUND, "listenKey does not exist or has expired"
            )
        refused = self._refused_by_fault(account, Exchange.BITMUSA)
        if refused is not None:
            return _bitmusa_error(503, BITMUSA_ERR_UNAVAILABLE, _REFUSED, **{"Retry-After": refused})
        connection = self.server.new_connection(
            account, Exchange.BITMUSA, listen_key=key, peer=request.remote or ""
        )
        connection.live = True  # a listenKey stream pushes from the first moment
        await self.server.serve(request, ws, connection, _ignore_client_frame)
        return ws

    # --- Coinlocally WebSocket ------------------------------------------------------------------------------

    async def coinlocally_stream(self, request: web.Request) -> web.StreamResponse:
        ws = self._websocket()
        if not _can_upgrade(ws, request):
            return _coinlocally_error(400, COINLOCALLY_ERR_BAD_REQUEST, "expected a WebSocket upgrade")
        if self.server.shutting_down:
            return _coinlocally_error(503, COINLOCALLY_ERR_BAD_REQUEST, "the server is shutting down")
        too_many = self._too_many_connections(request)
        if too_many is not None:
            return _coinlocally_error(429, COINLOCALLY_ERR_TOO_MANY_CONNECTIONS, too_many, retry_after=1)
        problem = self.server.backend.problem()
        if problem is not None:
            return _coinlocally_error(503, COINLOCALLY_ERR_UNAVAILABLE, f"service unavailable: {problem}")
        creds = coinlocally.credentials_from_headers(request.headers)
        variants = self.server.variants
        if variants.refuses_after_upgrade and (
            creds is None or self.server.coinlocally_account(creds) is None
        ):
            log_event(
                _log, logging.INFO, "stream refused", exchange="coinlocally", reason="unknown credential"
            )
            request.app[AUTH_THROTTLE_KEY].failed(request.remote or "")  # no 401 here: counted by hand
            return await refuse_after_upgrade(request, ws, variants, wait=self.config.heartbeat_timeout)
        if creds is None:
            return _coinlocally_error(
                401,
                COINLOCALLY_ERR_UNAUTHORIZED,
                "missing credentials: send exactly one of the 'token' or 'api-key' headers",
            )
        account = self.server.coinlocally_account(creds)
        if account is None:
            log_event(
                _log, logging.INFO, "stream refused", exchange="coinlocally", reason="unknown credential"
            )
            return _coinlocally_error(401, COINLOCALLY_ERR_UNAUTHORIZED, f"invalid {creds.header_name}")
        refused = self._refused_by_fault(account, Exchange.COINLOCALLY)
        if refused is not None:
            return _coinlocally_error(503, COINLOCALLY_ERR_UNAVAILABLE, _REFUSED, retry_after=int(refused))
        connection = self.server.new_connection(
            account, Exchange.COINLOCALLY, listen_key=None, peer=request.remote or ""
        )
        connection.send(self.server.variants.control(coinlocally.CONNECT_SUCCESS))
        on_frame = _CoinlocallyFrames(self.server, connection, creds.secret)
        await self.server.serve(request, ws, connection, on_frame)
        return ws

    def _refused_by_fault(self, account: Account, exchange: Exchange) -> str | None:
        """The Retry-After (whole seconds) of a `refuse` fault covering this new stream, or None."""
        left = self.faults.refusing(account.name, exchange)
        if left is None:
            return None
        log_event(_log, logging.INFO, "stream refused", reason="refuse fault", exchange=exchange.value)
        return str(max(1, math.ceil(left)))

    def _too_many_connections(self, request: web.Request) -> str | None:
        """The refusal of a handshake over the per-address limit (checked before any credential), or None."""
        peer = request.remote or ""
        limit = websocket_limit(self.config, peer)  # None: loopback, exempt by default
        if limit is None or self.server.connections_from(peer) < limit:
            return None
        log_event(_log, logging.INFO, "stream refused", reason="too many connections", peer=peer, limit=limit)
        return f"too many connections from this address: at most {limit} at once"

    def _websocket(self) -> web.WebSocketResponse:
        # autoping off: pings are answered by the connection's writer, so a stalled connection can stop
        # answering them. No permessage-deflate: Coinlocally's frames are gzip already, Bitmusa's are tiny.
        # Unmasked client frames close the stream with 1002 (wsmask.py, RFC 6455).
        return MaskedOnlyWebSocketResponse(
            autoping=False,
            autoclose=False,  # a client's close is answered by the reader, unless the connection is stalled
            compress=False,
            max_msg_size=self.config.max_client_frame,
            timeout=self.config.close_timeout,
        )


def _can_upgrade(ws: web.WebSocketResponse, request: web.Request) -> bool:
    """Whether `request` is a WebSocket upgrade `ws` can accept.

    aiohttp builds its refusal's text from the offending header, and a header holding bytes that are not
    UTF-8 then fails to encode (UnicodeEncodeError, a 500): such a request is simply not an upgrade (found
    by tests/fuzz).
    """
    try:
        return bool(ws.can_prepare(request))
    except UnicodeError:
        return False


def _ignore_client_frame(data: str | bytes) -> None:
    """Bitmusa's document defines no client frames: they are read (the socket stays drained) and dropped."""


def _bitmusa_unavailable(exc: BackendUnavailableError) -> web.Response:
    return _bitmusa_error(503, BITMUSA_ERR_UNAVAILABLE, f"service unavailable: {exc}")


class _CoinlocallyFrames:
    """What a Coinlocally client may send: the sub frame (once its token matches, events flow) and pings."""

    def __init__(self, server: ExchangeServer, connection: Connection, secret: str) -> None:
        self._server = server
        self._connection = connection
        self._secret = secret.encode()

    def __call__(self, data: str | bytes) -> None:
        connection = self._connection
        variants = self._server.variants
        request = coinlocally.parse_client_frame(data)
        if isinstance(request, coinlocally.PingRequest):
            connection.heard_ping(time.monotonic())
            connection.send(variants.pong(now_ms()))
        elif isinstance(request, coinlocally.SubRequest):
            if hmac.compare_digest(request.token.encode(), self._secret):
                connection.send(variants.control(coinlocally.SUB_SUCCESS))
                if not connection.subscribed and not connection.closing:
                    connection.subscribed = connection.live = True  # events queue behind "sub success"
                    self._server.hub.notify()
            else:
                ours = coinlocally.render_error(
                    COINLOCALLY_ERR_SUB_REJECTED,
                    "sub rejected: the token does not match this connection's credential",
                )
                refusal = variants.sub_refusal(Refusal(ours, CloseCode.SUB_REJECTED, "sub rejected"))
                if refusal.reply is not None:
                    connection.send(refusal.reply)
                connection.request_close(refusal.code, refusal.reason, notify=False)
        elif variants.server_ping_interval is not None and is_client_pong(data):
            connection.heard_ping(time.monotonic())  # the answer to the server's own ping is a heartbeat too
        else:
            log_event(
                _log,
                logging.DEBUG,
                "client frame ignored",
                account=connection.account.name,
                reason=request.reason,
            )
