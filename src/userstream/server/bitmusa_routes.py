"""serve's Bitmusa REST routes: the listenKey (create, keep alive, close) and the two snapshot endpoints.

    POST|PUT|DELETE /spot/userDataStream              the listenKey: create (or get), extend, close
    GET /spot/wallet                                  every balance
    GET /spot/order/history?status=TRADING&symbol=S   the open orders of one symbol

Every request is authenticated (`Authorization: Bearer <auth key>` and `x-api-key`) and rate-limited per
account by `authorize`, the same for all five. The bitmusa-errors variants rewrite every Bitmusa error reply
(`variant_middleware`). The listenKey rules are `ExchangeServer`'s (exchange.py);
the snapshots answer from the server's truth (truth.py); wire shapes come from `protocol.bitmusa`,
`protocol.bitmusa_listen_key`, `protocol.bitmusa_render` and `protocol.bitmusa_rest`. This module translates
HTTP and nothing else; docs/server.md has the contract. It is serve's Bitmusa module, chosen through the
table of serve_exchanges.py.
"""

from __future__ import annotations

import logging
import math
import time
from http import HTTPStatus
from typing import Any, Final

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from userstream.errors import MessageShapeError
from userstream.events import Exchange
from userstream.logs import log_event
from userstream.protocol import bitmusa, bitmusa_listen_key, bitmusa_render, bitmusa_rest
from userstream.protocol.bitmusa_server import ERR_UNAVAILABLE
from userstream.protocol.registry import spec
from userstream.server.backend.interface import BackendUnavailableError
from userstream.server.config import Account
from userstream.server.exchange import ExchangeServer
from userstream.server.variants import Variants

__all__ = [
    "EXCHANGE",
    "add_routes",
    "bitmusa_error",
    "error_middleware",
    "throttled_body",
    "variant_middleware",
]

#: The exchange whose REST API this module serves.
EXCHANGE: Final = Exchange.BITMUSA

_log = logging.getLogger("userstream.server.app")
_JSON = "application/json"


def add_routes(app: web.Application, server: ExchangeServer) -> None:
    """Register the listenKey routes and the two snapshot routes on `app`."""
    routes = _BitmusaRoutes(server)
    app.router.add_post(bitmusa.LISTEN_KEY_PATH, routes.create_listen_key)
    app.router.add_put(bitmusa.LISTEN_KEY_PATH, routes.keepalive_listen_key)
    app.router.add_delete(bitmusa.LISTEN_KEY_PATH, routes.close_listen_key)
    app.router.add_get(bitmusa_rest.WALLET_PATH, routes.wallet)
    app.router.add_get(bitmusa_rest.ORDER_HISTORY_PATH, routes.open_orders)


def bitmusa_error(status: int, code: int, message: str, **headers: str) -> web.Response:
    """A Bitmusa error reply (our shape; the bitmusa-errors variants rewrite it, variants.py)."""
    return web.Response(
        status=status, body=bitmusa_render.render_error(code, message), content_type=_JSON, headers=headers
    )


def throttled_body(path: str, message: str) -> bytes | None:
    """The body of a 429 for too many failed authentications, if `path` is Bitmusa's (limits.py)."""
    if path.startswith(("/spot/", bitmusa.WS_PATH_PREFIX)):
        return bitmusa_render.render_error(bitmusa.ERR_RATE_LIMITED, message)
    return None


class _BitmusaRoutes:
    def __init__(self, server: ExchangeServer) -> None:
        self.server = server
        self.config = server.config

    # --- the listenKey --------------------------------------------------------------------------------------

    async def create_listen_key(self, request: web.Request) -> web.Response:
        account = self.authorize(request)
        if isinstance(account, web.Response):
            return account
        try:
            key = await self.server.create_listen_key(account)
        except BackendUnavailableError as exc:
            return _unavailable(exc)
        return web.Response(body=bitmusa_render.render_listen_key(key), content_type=_JSON)

    async def keepalive_listen_key(self, request: web.Request) -> web.Response:
        account = self.authorize(request)
        if isinstance(account, web.Response):
            return account
        try:
            extended = await self.server.keepalive_listen_key(account)
        except BackendUnavailableError as exc:
            return _unavailable(exc)
        if not extended:
            return _no_active_key()
        return web.Response(body=bitmusa_render.render_ok(), content_type=_JSON)

    async def close_listen_key(self, request: web.Request) -> web.Response:
        account = self.authorize(request)
        if isinstance(account, web.Response):
            return account
        try:
            closed = await self.server.close_listen_key(account)
        except BackendUnavailableError as exc:
            return _unavailable(exc)
        if not closed:
            return _no_active_key()
        return web.Response(body=bitmusa_render.render_ok(), content_type=_JSON)

    # --- the snapshots --------------------------------------------------------------------------------------

    async def wallet(self, request: web.Request) -> web.Response:
        account = self.authorize(request)
        if isinstance(account, web.Response):
            return account
        truth = self.server.truth.snapshot(account.name)
        balances = [truth.balances[asset] for asset in sorted(truth.balances)]
        return _reply(bitmusa_rest.render_wallet(balances))

    async def open_orders(self, request: web.Request) -> web.Response:
        account = self.authorize(request)
        if isinstance(account, web.Response):
            return account
        try:
            symbol = bitmusa_rest.parse_open_orders_query(request.query)
        except MessageShapeError as exc:
            return _reply(bitmusa_render.render_error(bitmusa.ERR_BAD_REQUEST, str(exc)), 400)
        truth = self.server.truth.snapshot(account.name)
        orders = [
            truth.open_orders[order_id]
            for order_id in sorted(truth.open_orders)
            if bitmusa_rest.wire_symbol(truth.open_orders[order_id]) == symbol
        ]
        return _reply(bitmusa_rest.render_open_orders(orders))

    # --- who asks -------------------------------------------------------------------------------------------

    def authorize(self, request: web.Request) -> Account | web.Response:
        """The account a request acts for, or the refusal to send (401, 429)."""
        creds = bitmusa_listen_key.credentials_from_headers(request.headers)
        if creds is None:
            log_event(_log, logging.INFO, "listenKey request refused", reason="missing credentials")
            return bitmusa_error(
                401,
                bitmusa.ERR_UNAUTHORIZED,
                "missing credentials: send 'Authorization: Bearer <auth key>' and 'x-api-key'",
            )
        # The api key finds the account, the auth key must then match it too.
        account = self.server.account_for(EXCHANGE, {"api_key": creds.api_key, "auth_key": creds.auth_key})
        if account is None:
            log_event(_log, logging.INFO, "listenKey request refused", reason="unknown credentials")
            return bitmusa_error(401, bitmusa.ERR_UNAUTHORIZED, "invalid api key or auth key")
        wait = self.server.limiter.acquire(account.name, time.monotonic())
        if wait > 0:
            log_event(_log, logging.INFO, "listenKey request limited", account=account.name)
            return bitmusa_error(
                429,
                bitmusa.ERR_RATE_LIMITED,
                f"too many requests: at most {self.config.rate_limit_per_second} per second and "
                f"{self.config.rate_limit_per_minute} per minute per account",
                **{"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return account


def _reply(body: bytes, status: int = 200) -> web.Response:
    return web.Response(status=status, body=body, content_type=_JSON)


def _unavailable(exc: BackendUnavailableError) -> web.Response:
    return bitmusa_error(503, ERR_UNAVAILABLE, f"service unavailable: {exc}")


def _no_active_key() -> web.Response:
    return bitmusa_error(
        404, bitmusa.ERR_LISTEN_KEY_NOT_FOUND, "no active listenKey for this account: create one with POST"
    )


# --- the bitmusa-errors variants: the error bodies of a run -------------------------------------------------

_PATHS: Final = spec(EXCHANGE).rest_paths
_WS_PATH: Final = spec(EXCHANGE).ws_path
_OUR_ERROR: Final = msgspec.json.Decoder(dict[str, Any])


def variant_middleware(variants: Variants) -> Middleware | None:
    """The middleware of the run's bitmusa-errors variant (None: ours, none chosen)."""
    for shape in ("code-msg", "html"):
        if f"bitmusa-errors-{shape}" in variants.values:
            return error_middleware(shape)
    return None


def error_middleware(shape: str) -> Middleware:
    """An aiohttp middleware writing every Bitmusa error reply (REST and the stream's handshake refusals) in
    `shape` ("code-msg" or "html"); headers such as Retry-After are kept."""

    @web.middleware
    async def rewrite_bitmusa_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        path = request.path
        if (
            not isinstance(response, web.Response)
            or response.status < 400
            or not (path in _PATHS or path.startswith(_WS_PATH))
            or not isinstance(response.body, bytes)
        ):
            return response
        try:
            ours = _OUR_ERROR.decode(response.body)
        except msgspec.DecodeError:
            return response
        headers = {
            name: value
            for name, value in response.headers.items()
            if name.lower() not in ("content-type", "content-length")
        }
        if shape == "html":
            return web.Response(
                status=response.status,
                text=_html_status(response.status),
                content_type="text/html",
                headers=headers,
            )
        body = msgspec.json.encode({"code": ours.get("code"), "msg": ours.get("message")})
        return web.Response(
            status=response.status, body=body, content_type="application/json", headers=headers
        )

    return rewrite_bitmusa_errors


def _html_status(status: int) -> str:
    """The page nginx sends for an error status: the status line and nothing else."""
    try:
        line = f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        line = str(status)
    return (
        f"<html>\r\n<head><title>{line}</title></head>\r\n<body>\r\n<center><h1>{line}</h1></center>\r\n"
        "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
