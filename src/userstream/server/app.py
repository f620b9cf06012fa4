"""The HTTP face of `userstream serve`: one aiohttp application, one port, REST and both WebSockets.

Routes (docs/server.md has the full contract):

    POST|PUT|DELETE /spot/userDataStream   Bitmusa listenKey: create (or get), keep alive, close
    GET /ws/spot/{listenKey}               Bitmusa user stream (text JSON frames)
    GET /spotws_user/userData/ws           Coinlocally user stream (token/api-key header, sub, gzip)
    GET /spot/wallet, /spot/order/history  Bitmusa REST snapshot (snapshots.py)
    GET /sapi/v1/account, /sapi/v1/openOrders   Coinlocally signed REST snapshot (snapshots.py)
    POST /admin/events                     ingest events for one account (Bearer admin token)
    GET /healthz                           status, accounts and connection counts (no secrets)

This module only translates HTTP to `ExchangeServer` calls and back; the wire shapes come from the protocol
modules, the state and rules from exchange.py. A WebSocket route checks the handshake (an HTTP refusal
otherwise), makes the exchange's protocol session for the stream (sessions.py), opens it and hands it to
`ExchangeServer.serve`; what is said on the stream afterwards is the session's alone (connection.py drives
it). `create_app(config)` is the importable factory.
"""

from __future__ import annotations

import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web

from userstream.events import Exchange
from userstream.protocol import bitmusa, bitmusa_server, coinlocally, coinlocally_server
from userstream.protocol.registry import spec
from userstream.protocol.server_session import HandshakeProblem, HttpRefusal
from userstream.server.backend import BackendUnavailableError
from userstream.server.config import Account, ServerConfig
from userstream.server.exchange import ExchangeServer
from userstream.server.faults import add_routes as add_fault_routes
from userstream.server.ingest import IngestError, parse_batch
from userstream.server.limits import AuthThrottle, websocket_limit
from userstream.server.logs import log_event
from userstream.server.sessions import new_session, serve_unaccounted, session_style
from userstream.server.snapshots import add_routes as add_snapshot_routes
from userstream.server.variants import variant_middlewares
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
    "HEALTH_PATH",
    "SERVER_KEY",
    "create_app",
]

ADMIN_EVENTS_PATH = "/admin/events"
HEALTH_PATH = "/healthz"
#: Coinlocally documents no error codes; ours follow Bitmusa's numbering (HTTP status * 1000 + n). They are
#: the server session's (protocol/coinlocally_server.py), named here too as they always were.
COINLOCALLY_ERR_BAD_REQUEST = coinlocally_server.ERR_BAD_REQUEST
COINLOCALLY_ERR_UNAUTHORIZED = coinlocally_server.ERR_UNAUTHORIZED
COINLOCALLY_ERR_SUB_REJECTED = coinlocally_server.ERR_SUB_REJECTED
#: The shared store (Redis) of a multi-node deployment cannot be reached: this node refuses (HTTP 503).
BITMUSA_ERR_UNAVAILABLE = bitmusa_server.ERR_UNAVAILABLE
COINLOCALLY_ERR_UNAVAILABLE = coinlocally_server.ERR_UNAVAILABLE
COINLOCALLY_ERR_TOO_MANY_CONNECTIONS = coinlocally_server.ERR_TOO_MANY_CONNECTIONS

SERVER_KEY = web.AppKey("userstream_server", ExchangeServer)
AUTH_THROTTLE_KEY = web.AppKey("userstream_auth_throttle", AuthThrottle)

_log = logging.getLogger("userstream.server.app")
_JSON = "application/json"
_REFUSED = "service unavailable: new streams are refused for now (fault injection)"


def create_app(config: ServerConfig) -> web.Application:
    """A ready-to-run application for `config`; its `ExchangeServer` is `app[SERVER_KEY]`."""
    server = ExchangeServer(config)
    throttle = AuthThrottle(config.auth_failures_per_second, config.auth_failure_burst)  # limits.py
    middlewares = [throttle.middleware, *variant_middlewares(server.variants)]  # variants: none by default
    app = web.Application(client_max_size=config.max_ingest_body, middlewares=middlewares)
    app[SERVER_KEY] = server
    app[AUTH_THROTTLE_KEY] = throttle
    routes = _Routes(server)
    app.router.add_post(bitmusa.LISTEN_KEY_PATH, routes.create_listen_key)
    app.router.add_put(bitmusa.LISTEN_KEY_PATH, routes.keepalive_listen_key)
    app.router.add_delete(bitmusa.LISTEN_KEY_PATH, routes.close_listen_key)
    app.router.add_get(bitmusa.WS_PATH_PREFIX + "{listen_key}", routes.bitmusa_stream)
    app.router.add_get(coinlocally.WS_PATH, routes.coinlocally_stream)
    app.router.add_post(ADMIN_EVENTS_PATH, routes.ingest)
    app.router.add_get(HEALTH_PATH, routes.health)
    # The REST snapshots (snapshots.py); Bitmusa's are authorized exactly as the listenKey routes.
    add_snapshot_routes(app, server, authorize_bitmusa=routes._authorize_bitmusa)
    add_fault_routes(app, server, is_admin=routes._is_admin)  # POST|GET /admin/faults (faults.py)
    app.cleanup_ctx.append(server.background)
    app.on_shutdown.append(server.shutdown)
    return app


def _bitmusa_error(status: int, code: int, message: str, **headers: str) -> web.Response:
    return web.Response(
        status=status, body=bitmusa.render_error(code, message), content_type=_JSON, headers=headers
    )


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=msgspec.json.encode(body), content_type=_JSON)


class _Routes:
    def __init__(self, server: ExchangeServer) -> None:
        self.server = server
        self.config = server.config
        self.style = session_style(server.variants)  # how this run's sessions write their frames

    # --- Bitmusa REST ---------------------------------------------------------------------------------------

    async def create_listen_key(self, request: web.Request) -> web.Response:
        account = self._authorize_bitmusa(request)
        if isinstance(account, web.Response):
            return account
        try:
            key = await self.server.create_listen_key(account)
        except BackendUnavailableError as exc:
            return _bitmusa_unavailable(exc)
        return web.Response(body=bitmusa.render_listen_key(key), content_type=_JSON)

    async def keepalive_listen_key(self, request: web.Request) -> web.Response:
        account = self._authorize_bitmusa(request)
        if isinstance(account, web.Response):
            return account
        try:
            extended = await self.server.keepalive_listen_key(account)
        except BackendUnavailableError as exc:
            return _bitmusa_unavailable(exc)
        if not extended:
            return _no_active_key()
        return web.Response(body=bitmusa.render_ok(), content_type=_JSON)

    async def close_listen_key(self, request: web.Request) -> web.Response:
        account = self._authorize_bitmusa(request)
        if isinstance(account, web.Response):
            return account
        try:
            closed = await self.server.close_listen_key(account)
        except BackendUnavailableError as exc:
            return _bitmusa_unavailable(exc)
        if not closed:
            return _no_active_key()
        return web.Response(body=bitmusa.render_ok(), content_type=_JSON)

    def _authorize_bitmusa(self, request: web.Request) -> Account | web.Response:
        """The account a listenKey request acts for, or the refusal to send (401, 429)."""
        creds = bitmusa.credentials_from_headers(request.headers)
        if creds is None:
            log_event(_log, logging.INFO, "listenKey request refused", reason="missing credentials")
            return _bitmusa_error(
                401,
                bitmusa.ERR_UNAUTHORIZED,
                "missing credentials: send 'Authorization: Bearer <auth key>' and 'x-api-key'",
            )
        account = self.server.bitmusa_account(creds)
        if account is None:
            log_event(_log, logging.INFO, "listenKey request refused", reason="unknown credentials")
            return _bitmusa_error(401, bitmusa.ERR_UNAUTHORIZED, "invalid api key or auth key")
        wait = self.server.limiter.acquire(account.name, time.monotonic())
        if wait > 0:
            log_event(_log, logging.INFO, "listenKey request limited", account=account.name)
            return _bitmusa_error(
                429,
                bitmusa.ERR_RATE_LIMITED,
                f"too many requests: at most {self.config.rate_limit_per_second} per second and "
                f"{self.config.rate_limit_per_minute} per minute per account",
                **{"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return account

    # --- the WebSockets: the handshake, then the session ----------------------------------------------------

    async def bitmusa_stream(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, Exchange.BITMUSA, self._bitmusa_identity)

    async def coinlocally_stream(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, Exchange.COINLOCALLY, self._coinlocally_identity)

    async def _stream(
        self, request: web.Request, exchange: Exchange, identify: _Identify
    ) -> web.StreamResponse:
        """Check the upgrade in order (an HTTP refusal in the exchange's shape at the first problem), then
        run the stream: its session decides everything said on it."""
        refuse = spec(exchange).refuse_handshake
        ws = self._websocket()
        if not _can_upgrade(ws, request):
            return _refusal(refuse(HandshakeProblem.NOT_AN_UPGRADE, "", None))
        if self.server.shutting_down:
            return _refusal(refuse(HandshakeProblem.SHUTTING_DOWN, "", None))
        too_many = self._too_many_connections(request)
        if too_many is not None:
            return _refusal(refuse(HandshakeProblem.TOO_MANY_CONNECTIONS, too_many, 1))
        problem = self.server.backend.problem()
        if problem is not None:
            return _refusal(refuse(HandshakeProblem.UNAVAILABLE, problem, None))
        identity = await identify(request)
        if isinstance(identity, tuple):
            return _refusal(refuse(*identity, None))
        if identity is None:  # a credential that matched nobody, let through by a refusal variant
            request.app[AUTH_THROTTLE_KEY].failed(request.remote or "")  # no 401 here: counted by hand
            unaccounted = new_session(self.config, self.style, exchange, None)
            return await serve_unaccounted(request, ws, unaccounted)
        account = identity.account
        refused = self._refused_by_fault(account, exchange)
        if refused is not None:
            return _refusal(refuse(HandshakeProblem.REFUSED_FOR_NOW, _REFUSED, refused))
        session = new_session(self.config, self.style, exchange, account, secret=identity.secret)
        connection = self.server.new_connection(
            account, exchange, session, listen_key=identity.listen_key, peer=request.remote or ""
        )
        connection.open()
        await self.server.serve(request, ws, connection)
        return ws

    async def _bitmusa_identity(self, request: web.Request) -> _Identity | _Problem | None:
        """The account of the listenKey in the path (looked up in the backend), or the problem."""
        key = request.match_info["listen_key"]
        try:
            account = await self.server.lookup_listen_key(key)
        except BackendUnavailableError as exc:
            return HandshakeProblem.UNAVAILABLE, str(exc)
        if account is None:
            return HandshakeProblem.UNKNOWN_CREDENTIALS, ""
        return _Identity(account, listen_key=key)

    async def _coinlocally_identity(self, request: web.Request) -> _Identity | _Problem | None:
        """The account of the handshake's token or api-key header, the problem, or None: unknown, but a
        refusal variant says the exchange upgrades it and refuses it at the sub."""
        creds = coinlocally.credentials_from_headers(request.headers)
        refuses_at_sub = self.server.variants.refuses_after_upgrade
        if creds is None:
            if not refuses_at_sub:
                return HandshakeProblem.NO_CREDENTIALS, ""
        else:
            account = self.server.coinlocally_account(creds)
            if account is not None:
                return _Identity(account, secret=creds.secret)
        log_event(_log, logging.INFO, "stream refused", exchange="coinlocally", reason="unknown credential")
        if creds is None or refuses_at_sub:  # (a missing credential gets here only when refused at the sub)
            return None
        return HandshakeProblem.UNKNOWN_CREDENTIALS, creds.header_name

    def _refused_by_fault(self, account: Account, exchange: Exchange) -> int | None:
        """The Retry-After (whole seconds) of a `refuse` fault covering this new stream, or None."""
        left = self.server.faults.refusing(account.name, exchange)
        if left is None:
            return None
        log_event(_log, logging.INFO, "stream refused", reason="refuse fault", exchange=exchange.value)
        return max(1, math.ceil(left))

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

    # --- admin and health -----------------------------------------------------------------------------------

    async def ingest(self, request: web.Request) -> web.Response:
        if not self._is_admin(request):
            return _json(401, {"error": "admin token required: send 'Authorization: Bearer <token>'"})
        try:
            body = await request.read()
            account_name, items = parse_batch(body)
            accepted = await self.server.ingest(account_name, items)
        except IngestError as exc:
            log_event(_log, logging.INFO, "ingest refused", status=exc.status, **exc.to_json())
            return _json(exc.status, exc.to_json())
        except BackendUnavailableError as exc:
            log_event(_log, logging.WARNING, "ingest refused", status=503, error=str(exc))
            return _json(503, {"error": f"service unavailable: {exc}"})
        except web.HTTPRequestEntityTooLarge:
            return _json(413, {"error": f"the body exceeds {self.config.max_ingest_body} bytes"})
        log_event(_log, logging.DEBUG, "ingested", account=account_name, events=accepted)
        return _json(200, {"accepted": accepted})

    def _is_admin(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode(), self.config.admin_token.encode())

    async def health(self, request: web.Request) -> web.Response:
        body = self.server.health()
        return _json(503 if body["status"] == "unavailable" else 200, body)


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


@dataclass(frozen=True, slots=True)
class _Identity:
    """Who a stream's handshake showed: the account, and what its session or the hub must know of it."""

    account: Account
    secret: str | None = None  # Coinlocally: the credential the sub must repeat
    listen_key: str | None = None  # Bitmusa: the key whose end closes the stream

    def __repr__(self) -> str:
        return f"_Identity(account={self.account.name!r})"


_Problem = tuple[HandshakeProblem, str]
#: Finds out who an upgrade request is for: an identity, a problem (with its detail), or None (see above).
_Identify = Callable[[web.Request], Awaitable[_Identity | _Problem | None]]


def _refusal(refusal: HttpRefusal) -> web.Response:
    """A refused upgrade as the exchange answers it (Bitmusa's body is bytes, ours for Coinlocally text)."""
    headers = {} if refusal.retry_after is None else {"Retry-After": str(refusal.retry_after)}
    if isinstance(refusal.body, str):
        return web.Response(status=refusal.status, text=refusal.body, content_type=_JSON, headers=headers)
    return web.Response(status=refusal.status, body=refusal.body, content_type=_JSON, headers=headers)


def _bitmusa_unavailable(exc: BackendUnavailableError) -> web.Response:
    return _bitmusa_error(503, BITMUSA_ERR_UNAVAILABLE, f"service unavailable: {exc}")


def _no_active_key() -> web.Response:
    return _bitmusa_error(
        404, bitmusa.ERR_LISTEN_KEY_NOT_FOUND, "no active listenKey for this account: create one with POST"
    )
