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

The per-exchange REST modules are chosen through serve_exchanges.py (serve's one per-exchange table). This
module's own routes are the user streams, one per registry entry, all handled alike and naming no exchange:
the registry says where each listens (`ws_path`) and how its upgrade names the account
(`handshake_names_account`: a listenKey as the path's last segment, looked up among the active keys, or a
credential header, matched against the accounts by `ExchangeServer.account_for`), and
`handshake_credential` reads it out of the request. The checks run in one order: at the first problem the
exchange's protocol module says how it refuses (`refuse_handshake`); otherwise the handler makes the
exchange's protocol session for the stream (sessions.py), opens it and hands it to `ExchangeServer.serve`.
What is said on the stream afterwards is the session's alone (connection.py drives it).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from userstream.events import Exchange
from userstream.logs import log_event
from userstream.protocol.registry import REGISTRY, spec
from userstream.protocol.server_session import (
    AccountNamedBy,
    HandshakeCredential,
    HandshakeProblem,
    HttpRefusal,
)
from userstream.server import admin_routes
from userstream.server.admin_routes import ADMIN_EVENTS_PATH, HEALTH_PATH
from userstream.server.backend.interface import BackendUnavailableError
from userstream.server.config import Account, ServerConfig
from userstream.server.exchange import ExchangeServer
from userstream.server.faults import FaultController, chaos
from userstream.server.limits import AuthThrottle, websocket_limit
from userstream.server.serve_exchanges import SERVE_EXCHANGES, add_rest_routes, variant_middlewares
from userstream.server.sessions import new_session, serve_unaccounted
from userstream.server.wsmask import MaskedOnlyWebSocketResponse

__all__ = [
    "ADMIN_EVENTS_PATH",
    "AUTH_THROTTLE_KEY",
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
    for exchange, entry in REGISTRY.items():  # each exchange's user stream, named its way
        by_path = entry.handshake_names_account is AccountNamedBy.LISTEN_KEY_IN_PATH
        app.router.add_get(entry.ws_path + ("{credential}" if by_path else ""), routes.stream_of(exchange))
    add_rest_routes(app, server)  # listenKeys and snapshots, per exchange (serve_exchanges.py)
    admin_routes.add_routes(app, server, faults)  # ingest, faults, /healthz
    app.cleanup_ctx.append(server.background)
    app.cleanup_ctx.append(lambda app: chaos(faults, config))  # serve --chaos (faults.py)
    app.on_shutdown.append(server.shutdown)
    return app


class _Routes:
    def __init__(self, server: ExchangeServer, faults: FaultController) -> None:
        self.server = server
        self.config = server.config
        self.faults = faults
        # How this run's sessions write their frames: each exchange's variants laid over our answers.
        self.style = server.variants.session_style()

    # --- the WebSockets: the handshake, then the session ----------------------------------------------------

    def stream_of(self, exchange: Exchange) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The handler of `exchange`'s user stream."""

        async def stream(request: web.Request) -> web.StreamResponse:
            return await self._stream(request, exchange)

        return stream

    async def _stream(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
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
        identity = await self._identify(request, exchange)
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

    async def _identify(self, request: web.Request, exchange: Exchange) -> _Identity | _Problem | None:
        """Who the upgrade is for, named the exchange's way (the registry's `handshake_names_account`): an
        identity, the problem, or None: a credential that matched nobody, which a refusal variant says the
        exchange upgrades and refuses at the sub."""
        entry = spec(exchange)
        credential = entry.handshake_credential(request.match_info.get("credential"), request.headers)
        if entry.handshake_names_account is AccountNamedBy.LISTEN_KEY_IN_PATH:
            return await self._listen_key_identity(credential)
        return self._credential_identity(exchange, credential)

    async def _listen_key_identity(self, credential: HandshakeCredential | None) -> _Identity | _Problem:
        """The account of the listenKey in the path (looked up in the backend), or the problem."""
        if credential is None:
            return HandshakeProblem.NO_CREDENTIALS, ""
        try:
            account = await self.server.lookup_listen_key(credential.value)
        except BackendUnavailableError as exc:
            return HandshakeProblem.UNAVAILABLE, str(exc)
        if account is None:
            return HandshakeProblem.UNKNOWN_CREDENTIALS, ""
        return _Identity(account, listen_key=credential.value)

    def _credential_identity(
        self, exchange: Exchange, credential: HandshakeCredential | None
    ) -> _Identity | _Problem | None:
        """The account of the handshake's credential header, the problem, or None (see `_identify`)."""
        refuses_at_sub = self.server.variants.refuses_after_upgrade(exchange)
        if credential is None:
            if not refuses_at_sub:
                return HandshakeProblem.NO_CREDENTIALS, ""
        else:
            account = self.server.account_for(exchange, {credential.kind: credential.value})
            if account is not None:
                return _Identity(account, secret=credential.value)
        log_event(_log, logging.INFO, "stream refused", exchange=exchange.value, reason="unknown credential")
        # (a missing credential gets here only when refused at the sub)
        if credential is None or refuses_at_sub:
            return None
        return HandshakeProblem.UNKNOWN_CREDENTIALS, credential.label

    def _refused_by_fault(self, account: Account, exchange: Exchange) -> int | None:
        """The Retry-After (whole seconds) of a `refuse` fault covering this new stream, or None."""
        left = self.faults.refusing(account.name, exchange)
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
    secret: str | None = None  # a credential header's value (Coinlocally's sub must repeat it)
    listen_key: str | None = None  # a listenKey in the path: the key whose end closes the stream

    def __repr__(self) -> str:
        return f"_Identity(account={self.account.name!r})"


_Problem = tuple[HandshakeProblem, str]


def _refusal(refusal: HttpRefusal) -> web.Response:
    """A refused upgrade as the exchange answers it (Bitmusa's body is bytes, ours for Coinlocally text)."""
    headers = {} if refusal.retry_after is None else {"Retry-After": str(refusal.retry_after)}
    if isinstance(refusal.body, str):
        return web.Response(status=refusal.status, text=refusal.body, content_type=_JSON, headers=headers)
    return web.Response(status=refusal.status, body=refusal.body, content_type=_JSON, headers=headers)
