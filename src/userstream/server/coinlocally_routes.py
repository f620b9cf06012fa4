"""serve's Coinlocally REST routes: the two signed snapshot endpoints.

    GET /sapi/v1/account                                every balance (signed)
    GET /sapi/v1/openOrders?symbol=S[&limit=n]          the open orders of one symbol (signed)

Requests need X-CH-APIKEY (an account's `coinlocally_api_key` that has a `coinlocally_secret_key`), an
X-CH-TS within `coinlocally_rest.TIMESTAMP_WINDOW_MS` of the server's clock, and a valid X-CH-SIGN; they are
rate-limited with the limits of the Bitmusa routes, counted apart. They answer from the server's truth
(truth.py); wire shapes come from `protocol.coinlocally_rest` (the signature) and
`protocol.coinlocally_rest_render` (the query and the replies). This module translates HTTP and nothing else,
and never logs or echoes a credential or signature; docs/server.md has the contract. It is serve's
Coinlocally module, chosen through the table of serve_exchanges.py.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from userstream.errors import ConfigurationError, MessageShapeError
from userstream.events import Exchange
from userstream.logs import log_event
from userstream.protocol import (
    coinlocally,
    coinlocally_control,
    coinlocally_render,
    coinlocally_rest,
    coinlocally_rest_render,
)
from userstream.server.config import Account
from userstream.server.exchange import ExchangeServer
from userstream.server.variants import Variants

__all__ = ["ERR_AUTH_THROTTLED", "EXCHANGE", "add_routes", "throttled_body", "variant_middleware"]

#: The exchange whose REST API this module serves.
EXCHANGE: Final = Exchange.COINLOCALLY
#: Ours (Coinlocally documents no codes; Bitmusa's numbering, HTTP status * 1000 + n): a stream's handshake
#: refused for too many failed authentications from its address. The stream's other codes are its server
#: session's (protocol/coinlocally_server.py).
ERR_AUTH_THROTTLED: Final = 429003

_log = logging.getLogger("userstream.server.snapshots")
_JSON = "application/json"


def add_routes(app: web.Application, server: ExchangeServer) -> None:
    """Register the two signed snapshot routes on `app`."""
    routes = _CoinlocallyRoutes(server)
    app.router.add_get(coinlocally_rest.ACCOUNT_PATH, routes.account)
    app.router.add_get(coinlocally_rest.OPEN_ORDERS_PATH, routes.open_orders)


def throttled_body(path: str, message: str) -> bytes | None:
    """The body of a 429 for too many failed authentications, if `path` is Coinlocally's (limits.py)."""
    if path.startswith(coinlocally.WS_PATH):
        return coinlocally_render.render_error(ERR_AUTH_THROTTLED, message).encode()
    if path.startswith("/sapi/"):
        return coinlocally_rest_render.render_error(coinlocally_rest.ERR_TOO_MANY_REQUESTS, message)
    return None


def variant_middleware(variants: Variants) -> Middleware | None:
    """No variant rewrites Coinlocally's REST replies (its conversation's are the session's style)."""
    return None


def _reply(body: bytes, status: int = 200, **headers: str) -> web.Response:
    return web.Response(status=status, body=body, content_type=_JSON, headers=headers)


def _coinlocally_error(status: int, code: int, message: str, **headers: str) -> web.Response:
    return _reply(coinlocally_rest_render.render_error(code, message), status, **headers)


class _CoinlocallyRoutes:
    def __init__(self, server: ExchangeServer) -> None:
        self.server = server
        self.config = server.config

    # --- Coinlocally ----------------------------------------------------------------------------------------

    async def account(self, request: web.Request) -> web.Response:
        account = await self._authorize_coinlocally(request)
        if isinstance(account, web.Response):
            return account
        truth = self.server.truth.snapshot(account.name)
        balances = [truth.balances[asset] for asset in sorted(truth.balances)]
        return _reply(coinlocally_rest_render.render_account(balances))

    async def open_orders(self, request: web.Request) -> web.Response:
        account = await self._authorize_coinlocally(request)
        if isinstance(account, web.Response):
            return account
        try:
            query = coinlocally_rest_render.parse_open_orders_query(request.query)
        except MessageShapeError as exc:
            return _coinlocally_error(400, coinlocally_rest.ERR_BAD_PARAMETER, str(exc))
        truth = self.server.truth.snapshot(account.name)
        wanted = query.symbol.upper()  # Coinlocally's symbols are case-insensitive ("btcusdt" works)
        orders = [
            truth.open_orders[order_id]
            for order_id in sorted(truth.open_orders)
            if coinlocally_rest.wire_symbol(truth.open_orders[order_id]).upper() == wanted
        ]
        return _reply(coinlocally_rest_render.render_open_orders(orders[: query.limit]))

    async def _authorize_coinlocally(self, request: web.Request) -> Account | web.Response:
        """The account a signed request acts for, or the refusal to send (401, 400, 429)."""
        signed = coinlocally_rest.signed_headers(request.headers)
        if signed is None:
            return self._refused(
                401,
                coinlocally_rest.ERR_INVALID_API_KEY,
                "missing credentials: send X-CH-APIKEY, X-CH-TS and X-CH-SIGN",
                reason="missing credentials",
            )
        account = self._account_by_api_key(signed.api_key)
        if account is None:
            return self._refused(
                401, coinlocally_rest.ERR_INVALID_API_KEY, "invalid api key", reason="unknown api key"
            )
        secret_key = account.coinlocally_secret_key
        if secret_key is None:
            return self._refused(
                401,
                coinlocally_rest.ERR_INVALID_API_KEY,
                "this api key has no secret key: signed requests are refused",
                reason="no secret key",
                account=account.name,
            )
        timestamp = signed.timestamp_ms
        if timestamp is None:
            return self._refused(
                400,
                coinlocally_rest.ERR_BAD_PARAMETER,
                "X-CH-TS must be the request time in milliseconds since the epoch",
                reason="malformed timestamp",
                account=account.name,
            )
        window = coinlocally_rest.TIMESTAMP_WINDOW_MS
        if abs(time.time_ns() // 1_000_000 - timestamp) > window:
            return self._refused(
                400,
                coinlocally_rest.ERR_TIMESTAMP_OUTSIDE_WINDOW,
                f"timestamp for this request is more than {window} ms away from the server's time",
                reason="timestamp outside the window",
                account=account.name,
            )
        body = await request.read()
        # raw_path is the request target exactly as sent (path and query, still percent-encoded): what
        # the client signed, whatever aiohttp would make of it once decoded.
        if not coinlocally_rest.verify(secret_key, signed, request.method, request.raw_path, body):
            return self._refused(
                401,
                coinlocally_rest.ERR_BAD_SIGNATURE,
                "signature for this request is not valid",
                reason="bad signature",
                account=account.name,
            )
        wait = self.server.limiter.acquire(f"coinlocally/{account.name}", time.monotonic())
        if wait > 0:
            return self._refused(
                429,
                coinlocally_rest.ERR_TOO_MANY_REQUESTS,
                f"too many requests: at most {self.config.rate_limit_per_second} per second and "
                f"{self.config.rate_limit_per_minute} per minute per account",
                reason="rate limited",
                account=account.name,
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return account

    def _account_by_api_key(self, api_key: str) -> Account | None:
        try:
            creds = coinlocally_control.Credentials(api_key=api_key)
        except ConfigurationError:  # control characters: no account has such a key
            return None
        return self.server.account_for(EXCHANGE, {"api_key": creds.secret})

    @staticmethod
    def _refused(
        status: int,
        code: int,
        message: str,
        *,
        reason: str,
        account: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        fields = {"exchange": "coinlocally", "reason": reason, "status": status}
        if account is not None:
            fields["account"] = account
        log_event(_log, logging.INFO, "snapshot request refused", **fields)
        return _coinlocally_error(status, code, message, **(headers or {}))
