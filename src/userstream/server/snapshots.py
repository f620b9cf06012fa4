"""The REST snapshot endpoints of `userstream serve`, and the true state they answer from.

This module owns `TrueStates`, one `userstream.state.AccountState` per account fed with every batch the
server publishes (admin ingest and simulator alike, see `ExchangeServer.publish`), so that the endpoints
answer what the events imply right now, including events no stream received; and the handlers of the four
snapshot routes (docs/server.md has the contract):

    GET /spot/wallet                                    Bitmusa: every balance
    GET /spot/order/history?status=TRADING&symbol=S     Bitmusa: the open orders of one symbol
    GET /sapi/v1/account                                Coinlocally: every balance (signed)
    GET /sapi/v1/openOrders?symbol=S[&limit=n]          Coinlocally: the open orders of one symbol (signed)

Bitmusa requests are authenticated and rate-limited by the listenKey routes' own function. Coinlocally
requests need X-CH-APIKEY (an account's `coinlocally_api_key` that has a `coinlocally_secret_key`), an
X-CH-TS within `coinlocally_rest.TIMESTAMP_WINDOW_MS` of the server's clock, and a valid X-CH-SIGN; they are
rate-limited with the same limits, counted apart from Bitmusa's. Wire shapes come from
`protocol.bitmusa_rest` and `protocol.coinlocally_rest`; this module translates HTTP and nothing else, and
never logs or echoes a credential or signature.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from aiohttp import web

from userstream.errors import ConfigurationError, MessageShapeError
from userstream.events import Event
from userstream.logs import log_event
from userstream.protocol import bitmusa, bitmusa_rest, coinlocally, coinlocally_rest
from userstream.server.config import Account
from userstream.state import AccountSnapshot, AccountState

if TYPE_CHECKING:
    from userstream.server.exchange import ExchangeServer

__all__ = ["BitmusaAuthorizer", "TrueStates", "add_routes"]

_log = logging.getLogger("userstream.server.snapshots")
_JSON = "application/json"

#: How a Bitmusa request is authorized: the account it acts for, or the refusal to send (app.py's).
BitmusaAuthorizer = Callable[[web.Request], Account | web.Response]


class TrueStates:
    """account name -> the `AccountState` its published events imply: the server's truth."""

    def __init__(self) -> None:
        self._states: dict[str, AccountState] = {}

    def apply(self, account: str, events: Iterable[Event]) -> None:
        state = self._states.get(account)
        if state is None:
            state = self._states[account] = AccountState()
        for event in events:
            state.apply(event)

    def snapshot(self, account: str) -> AccountSnapshot:
        """The account's balances and open orders now (empty for an account without events)."""
        state = self._states.get(account)
        return AccountSnapshot.of() if state is None else state.snapshot()


def add_routes(app: web.Application, server: ExchangeServer, *, authorize_bitmusa: BitmusaAuthorizer) -> None:
    """Register the four snapshot routes on `app`."""
    routes = _SnapshotRoutes(server, authorize_bitmusa)
    app.router.add_get(bitmusa_rest.WALLET_PATH, routes.bitmusa_wallet)
    app.router.add_get(bitmusa_rest.ORDER_HISTORY_PATH, routes.bitmusa_open_orders)
    app.router.add_get(coinlocally_rest.ACCOUNT_PATH, routes.coinlocally_account)
    app.router.add_get(coinlocally_rest.OPEN_ORDERS_PATH, routes.coinlocally_open_orders)


def _reply(body: bytes, status: int = 200, **headers: str) -> web.Response:
    return web.Response(status=status, body=body, content_type=_JSON, headers=headers)


def _coinlocally_error(status: int, code: int, message: str, **headers: str) -> web.Response:
    return _reply(coinlocally_rest.render_error(code, message), status, **headers)


class _SnapshotRoutes:
    def __init__(self, server: ExchangeServer, authorize_bitmusa: BitmusaAuthorizer) -> None:
        self.server = server
        self.config = server.config
        self._authorize_bitmusa = authorize_bitmusa

    # --- Bitmusa --------------------------------------------------------------------------------------------

    async def bitmusa_wallet(self, request: web.Request) -> web.Response:
        account = self._authorize_bitmusa(request)
        if isinstance(account, web.Response):
            return account
        truth = self.server.truth.snapshot(account.name)
        balances = [truth.balances[asset] for asset in sorted(truth.balances)]
        return _reply(bitmusa_rest.render_wallet(balances))

    async def bitmusa_open_orders(self, request: web.Request) -> web.Response:
        account = self._authorize_bitmusa(request)
        if isinstance(account, web.Response):
            return account
        try:
            symbol = bitmusa_rest.parse_open_orders_query(request.query)
        except MessageShapeError as exc:
            return _reply(bitmusa.render_error(bitmusa.ERR_BAD_REQUEST, str(exc)), 400)
        truth = self.server.truth.snapshot(account.name)
        orders = [
            truth.open_orders[order_id]
            for order_id in sorted(truth.open_orders)
            if bitmusa_rest.wire_symbol(truth.open_orders[order_id]) == symbol
        ]
        return _reply(bitmusa_rest.render_open_orders(orders))

    # --- Coinlocally ----------------------------------------------------------------------------------------

    async def coinlocally_account(self, request: web.Request) -> web.Response:
        account = await self._authorize_coinlocally(request)
        if isinstance(account, web.Response):
            return account
        truth = self.server.truth.snapshot(account.name)
        balances = [truth.balances[asset] for asset in sorted(truth.balances)]
        return _reply(coinlocally_rest.render_account(balances))

    async def coinlocally_open_orders(self, request: web.Request) -> web.Response:
        account = await self._authorize_coinlocally(request)
        if isinstance(account, web.Response):
            return account
        try:
            query = coinlocally_rest.parse_open_orders_query(request.query)
        except MessageShapeError as exc:
            return _coinlocally_error(400, coinlocally_rest.ERR_BAD_PARAMETER, str(exc))
        truth = self.server.truth.snapshot(account.name)
        wanted = query.symbol.upper()  # Coinlocally's symbols are case-insensitive ("btcusdt" works)
        orders = [
            truth.open_orders[order_id]
            for order_id in sorted(truth.open_orders)
            if coinlocally_rest.wire_symbol(truth.open_orders[order_id]).upper() == wanted
        ]
        return _reply(coinlocally_rest.render_open_orders(orders[: query.limit]))

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
            creds = coinlocally.Credentials(api_key=api_key)
        except ConfigurationError:  # control characters: no account has such a key
            return None
        return self.server.coinlocally_account(creds)

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
