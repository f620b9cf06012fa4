"""Bitmusa's REST snapshot of one account, sans-I/O: the wallet and the open orders, in both directions.

This module owns what a resync asks Bitmusa for and how the answers read: the requests (`GET /spot/wallet`
for every balance, `GET /spot/order/history?status=TRADING&symbol=<SYM>` for the open orders of one
symbol, both with the two headers of the listenKey calls), the judgement of their replies into normalized
events marked `source=snapshot`, and, for the emulator, the query's reading and the replies' rendering.

The document shows neither reply. The shapes are ours, in the document's own envelope, and written down in
docs/server.md so that a real reply that differs is a reported `MessageShapeError`, not a silent guess:

    GET /spot/wallet
        {"data":[{"asset":"USDT","free":"1132800.449","locked":"80669.91"}],"code":0,"message":"success"}
    GET /spot/order/history?status=TRADING&symbol=XRP%2FUSDT
        {"data":[<an order exactly as the spot_order stream's "data">],"code":0,"message":"success"}

Symbols are Bitmusa's own unified "BASE/QUOTE" (the stream writes them so), percent-quoted in the query.
Errors use protocol.bitmusa's envelope and codes. The wire types and words are `protocol.bitmusa`'s own, the
reply judgement `protocol.bitmusa_listen_key`'s and the order rendering `protocol.bitmusa_render`'s, imported
rather than copied, so an order read here and the same order read from the stream cannot drift apart. No I/O
and no clock: the snapshot's time comes in as `timestamp`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final
from urllib.parse import quote, urlencode

import msgspec

from userstream.errors import AuthenticationError, ConfigurationError, LocalProtocolError, MessageShapeError
from userstream.events import BalanceUpdate, OrderUpdate, Source
from userstream.protocol import bitmusa, bitmusa_listen_key, endpoints
from userstream.protocol.bitmusa import (  # the stream's own wire types and rules: one truth per exchange
    _OrderData,
    _OrderFrame,
    _WalletData,
    _WalletFrame,
)
from userstream.protocol.bitmusa_listen_key import _auth_headers, _judge_reply
from userstream.protocol.bitmusa_render import _OrderOutData, _render_balance, _render_order, _WalletOutData
from userstream.protocol.snapshot import SnapshotArguments, SnapshotPlan, SnapshotWire, UrlCheck
from userstream.validation import failure

__all__ = [
    "OPEN_ORDER_STATUS",
    "ORDER_HISTORY_PATH",
    "SNAPSHOT",
    "WALLET_PATH",
    "open_orders_request",
    "parse_open_orders_query",
    "parse_open_orders_response",
    "parse_wallet_response",
    "render_open_orders",
    "render_wallet",
    "wallet_request",
    "wire_symbol",
]

WALLET_PATH: Final = "/spot/wallet"
ORDER_HISTORY_PATH: Final = "/spot/order/history"
#: The `status` that asks the order history for open orders only (the stream's word for open).
OPEN_ORDER_STATUS: Final = "TRADING"
#: The longest symbol a query may name; a real one is a dozen characters.
MAX_SYMBOL_LENGTH: Final = 64

# --- requests (client side) ---------------------------------------------------------------------------


def wallet_request(creds: bitmusa_listen_key.Credentials) -> bitmusa_listen_key.HttpRequest:
    """Every balance of the account."""
    return bitmusa_listen_key.HttpRequest("GET", WALLET_PATH, _auth_headers(creds))


def open_orders_request(creds: bitmusa_listen_key.Credentials, symbol: str) -> bitmusa_listen_key.HttpRequest:
    """The open orders of one symbol ("XRP/USDT"): the order history filtered on status TRADING."""
    _check_symbol(symbol)
    query = urlencode({"status": OPEN_ORDER_STATUS, "symbol": symbol}, quote_via=quote, safe="")
    return bitmusa_listen_key.HttpRequest("GET", f"{ORDER_HISTORY_PATH}?{query}", _auth_headers(creds))


def _check_symbol(symbol: str) -> None:
    if (
        not isinstance(symbol, str)
        or not symbol
        or len(symbol) > MAX_SYMBOL_LENGTH
        or not symbol.isprintable()
    ):
        raise LocalProtocolError(
            f"a symbol must be a printable string of 1 to {MAX_SYMBOL_LENGTH} characters, not {symbol!r:.80}"
        )


# --- replies (client side) ----------------------------------------------------------------------------


class _WalletReply(msgspec.Struct, frozen=True, gc=False):
    data: list[_WalletData]


class _OrdersReply(msgspec.Struct, frozen=True, gc=False):
    data: list[_OrderData]


_WALLET_DECODER: Final = msgspec.json.Decoder(_WalletReply)
_ORDERS_DECODER: Final = msgspec.json.Decoder(_OrdersReply)


def parse_wallet_response(
    status: int, body: bytes, *, account: str, timestamp: int
) -> tuple[BalanceUpdate, ...]:
    """The balances of a wallet reply, stamped `timestamp` (when the snapshot was requested) and marked
    `source=snapshot`; a typed error (as protocol.bitmusa_listen_key judges replies) otherwise."""
    _judge(status, body)
    reply = _decode(_WALLET_DECODER, body)
    balances: list[BalanceUpdate] = []
    for index, data in enumerate(reply.data):
        frame = _WalletFrame(eventTime=timestamp, data=data)
        with _indexed(index):
            balance = frame.event(account, "")
        assert isinstance(balance, BalanceUpdate)  # noqa: S101 - narrowing: a wallet frame makes balances
        balances.append(msgspec.structs.replace(balance, source=Source.SNAPSHOT))
    return tuple(balances)


def parse_open_orders_response(
    status: int, body: bytes, *, account: str, timestamp: int
) -> tuple[OrderUpdate, ...]:
    """The orders of an open-orders reply, normalized exactly as the stream's `spot_order` data, stamped
    `timestamp` and marked `source=snapshot`; a typed error otherwise."""
    _judge(status, body)
    reply = _decode(_ORDERS_DECODER, body)
    orders: list[OrderUpdate] = []
    for index, data in enumerate(reply.data):
        frame = _OrderFrame(eventTime=timestamp, data=data)
        with _indexed(index):
            order = frame.event(account, "")
        assert isinstance(order, OrderUpdate)  # noqa: S101 - narrowing: an order frame makes orders
        orders.append(msgspec.structs.replace(order, source=Source.SNAPSHOT))
    return tuple(orders)


def _judge(status: int, body: bytes) -> None:
    try:
        _judge_reply(status, body)
    except AuthenticationError as exc:
        # protocol.bitmusa_listen_key names the listenKey request; here the snapshot request was refused.
        raise AuthenticationError(str(exc), rejected="snapshot request", status=exc.status) from None


def _decode(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise MessageShapeError(
            f"malformed Bitmusa snapshot reply: {str(exc)[:300]}", field=failure(exc).path
        ) from None
    except msgspec.DecodeError as exc:  # _judge_reply decoded it already; kept for a decoder's stricter view
        raise MessageShapeError(f"Bitmusa snapshot reply is not JSON: {exc}", field="$") from None


@contextmanager
def _indexed(index: int) -> Iterator[None]:
    """Re-point a MessageShapeError about one item's `$.data.x` to `$.data[index].x`."""
    try:
        yield
    except MessageShapeError as exc:
        if exc.field is None or not exc.field.startswith("$.data"):
            raise
        field = f"$.data[{index}]" + exc.field[len("$.data") :]
        raise MessageShapeError(f"item {index}: {exc}", field=field) from None


# --- the server side ----------------------------------------------------------------------------------


class _WalletReplyOut(msgspec.Struct, gc=False):
    data: list[_WalletOutData]
    code: int = 0
    message: str = "success"


class _OrdersReplyOut(msgspec.Struct, gc=False):
    data: list[_OrderOutData]
    code: int = 0
    message: str = "success"


# The stream's encoder choice: balances as strings, order quantities as JSON numbers with their exact digits.
_ENCODER: Final = msgspec.json.Encoder(decimal_format="number")


def render_wallet(balances: Iterable[BalanceUpdate]) -> bytes:
    """The wallet reply for these balances, each written exactly as the spot_wallet stream writes it."""
    return _ENCODER.encode(_WalletReplyOut([_render_balance(balance).data for balance in balances]))


def render_open_orders(orders: Iterable[OrderUpdate]) -> bytes:
    """The open-orders reply for these orders, each written exactly as the spot_order stream's data."""
    return _ENCODER.encode(_OrdersReplyOut([_render_order(order).data for order in orders]))


def wire_symbol(order: OrderUpdate) -> str:
    """The symbol Bitmusa writes for this order ("XRP/USDT", unified): what the history's `symbol` names."""
    return order.symbol


def parse_open_orders_query(query: Mapping[str, str]) -> str:
    """Server side: the symbol an open-orders query asks for. MessageShapeError naming the parameter when
    `symbol` is missing or unusable, or `status` is not TRADING (the emulator keeps no order history)."""
    status = query.get("status")
    if status != OPEN_ORDER_STATUS:
        raise MessageShapeError(
            f"status must be {OPEN_ORDER_STATUS}: this emulator keeps open orders only", field="status"
        )
    symbol = query.get("symbol")
    if symbol is None or not symbol:
        raise MessageShapeError("symbol is required", field="symbol")
    try:
        _check_symbol(symbol)
    except LocalProtocolError:
        raise MessageShapeError(
            f"symbol must be printable and at most {MAX_SYMBOL_LENGTH} characters", field="symbol"
        ) from None
    return symbol


# --- the snapshot as resync takes it (protocol.snapshot, named by the registry) ---------------------------


def _snapshot_plan(given: SnapshotArguments, check_url: UrlCheck) -> SnapshotPlan | str:
    """Bitmusa's snapshots use the listenKey calls' credentials and REST base (`rest_url`)."""
    if given.secret_key is not None:
        raise ConfigurationError("Bitmusa takes no secret_key: its snapshots use the api_key and auth_key")
    if given.snapshot_rest_url is not None:
        raise ConfigurationError("Bitmusa's snapshots use rest_url; snapshot_rest_url is Coinlocally's")
    if given.api_key is None or given.auth_key is None:  # the session refuses this first; kept for callers
        raise ConfigurationError("Bitmusa snapshots need the api_key and the auth_key")
    base = endpoints.bitmusa_rest_base(given.rest_url if given.rest_url is not None else bitmusa.REST_BASE)
    return SnapshotPlan(bitmusa_listen_key.Credentials(api_key=given.api_key, auth_key=given.auth_key), base)


def _parse_wallet(status: int, body: bytes, account: str, timestamp: int) -> tuple[BalanceUpdate, ...]:
    return parse_wallet_response(status, body, account=account, timestamp=timestamp)


def _parse_open_orders(
    status: int, body: bytes, account: str, timestamp: int, quotes: tuple[str, ...]
) -> tuple[OrderUpdate, ...]:
    return parse_open_orders_response(status, body, account=account, timestamp=timestamp)  # symbols unified


SNAPSHOT: Final = SnapshotWire(
    plan=_snapshot_plan,
    balances_request=lambda creds, now_ms: wallet_request(creds),  # Bitmusa signs nothing with time
    parse_balances=_parse_wallet,
    open_orders_request=lambda creds, symbol, now_ms: open_orders_request(creds, symbol),
    parse_open_orders=_parse_open_orders,
    wire_symbol=wire_symbol,
    configured_symbol=lambda symbol: symbol,  # Bitmusa writes the unified "BASE/QUOTE" itself
)
