"""Coinlocally's REST snapshot as `userstream serve` answers it, sans-I/O: the query read, replies rendered.

It owns the emulator's half of `protocol.coinlocally_rest`: the reading of an openOrders query (symbol and
limit, a `MessageShapeError` naming the parameter otherwise), the account and openOrders replies in
Binance's shapes, and the {"code","msg"} error reply. Orders are written with `protocol.coinlocally_render`'s
words and numbers, the ones the stream's execution report carries, so a snapshot and the stream agree. The
signature a request carries is read and verified by `protocol.coinlocally_rest` (`signed_headers`,
`verify`), beside the rule that signs it. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import msgspec

from userstream.errors import LocalProtocolError, MessageShapeError
from userstream.events import BalanceUpdate, OrderUpdate
from userstream.protocol.coinlocally_render import _wire_decimal, _wire_status, _wire_symbol, _wire_type
from userstream.protocol.coinlocally_rest import (
    DEFAULT_OPEN_ORDERS_LIMIT,
    MAX_OPEN_ORDERS_LIMIT,
    MAX_SYMBOL_LENGTH,
    _check_symbol,
)

__all__ = [
    "OpenOrdersQuery",
    "parse_open_orders_query",
    "render_account",
    "render_error",
    "render_open_orders",
]


@dataclass(frozen=True, slots=True)
class OpenOrdersQuery:
    symbol: str
    limit: int


def parse_open_orders_query(query: Mapping[str, str]) -> OpenOrdersQuery:
    """Server side: the symbol and limit an openOrders request asks for; MessageShapeError naming the
    parameter that is missing or malformed."""
    symbol = query.get("symbol")
    if not symbol:
        raise MessageShapeError("mandatory parameter 'symbol' was not sent or was empty", field="symbol")
    try:
        _check_symbol(symbol)
    except LocalProtocolError:
        raise MessageShapeError(
            f"parameter 'symbol' must be printable and at most {MAX_SYMBOL_LENGTH} characters", field="symbol"
        ) from None
    text = query.get("limit")
    if text is None:
        return OpenOrdersQuery(symbol, DEFAULT_OPEN_ORDERS_LIMIT)
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text[:5]) <= MAX_OPEN_ORDERS_LIMIT:
        raise MessageShapeError(
            f"parameter 'limit' must be an integer in 1..{MAX_OPEN_ORDERS_LIMIT}", field="limit"
        )
    return OpenOrdersQuery(symbol, int(text))


class _BalanceOut(msgspec.Struct, gc=False):
    asset: str
    free: str
    locked: str


class _AccountOut(msgspec.Struct, gc=False):
    balances: list[_BalanceOut]


class _OrderOut(msgspec.Struct, omit_defaults=True, gc=False):
    """Fields in Binance's order (the encoder keeps declaration order). `time` is left out when the order
    has no creation time, as the stream leaves out its `O`."""

    orderId: int | str  # noqa: N815
    orderIdString: str  # noqa: N815
    symbol: str
    price: str
    origQty: str  # noqa: N815
    executedQty: str  # noqa: N815
    cummulativeQuoteQty: str  # noqa: N815
    status: str
    type: str
    side: str
    time: int | None = None


class _ErrorOut(msgspec.Struct, gc=False):
    code: int
    msg: str


_ENCODER: Final = msgspec.json.Encoder()


def render_account(balances: Iterable[BalanceUpdate]) -> bytes:
    """The account reply for these balances (decimals as plain-notation strings, as the stream has them)."""
    entries = [
        _BalanceOut(balance.asset, format(balance.free, "f"), format(balance.locked, "f"))
        for balance in balances
    ]
    return _ENCODER.encode(_AccountOut(entries))


def render_open_orders(orders: Iterable[OrderUpdate]) -> bytes:
    """The openOrders reply for these orders, with the very words and numbers the stream's execution
    report writes for them (a value the order lacks is "0" there, so it is here)."""
    return _ENCODER.encode([_order_out(order) for order in orders])


def _order_out(order: OrderUpdate) -> _OrderOut:
    return _OrderOut(
        # Binance's orderId is a number; an id that is not a canonical integer can only travel as text.
        orderId=_numeric_id(order.id),
        orderIdString=order.id,
        symbol=_wire_symbol(order),
        price=_wire_decimal(order.price),
        origQty=_wire_decimal(order.amount),
        executedQty=_wire_decimal(order.filled),
        cummulativeQuoteQty=_wire_decimal(order.cost),
        status=_wire_status(order),
        type=_wire_type(order),
        side=order.side.value.upper(),
        time=order.created_at,
    )


def _numeric_id(order_id: str) -> int | str:
    if order_id.isascii() and order_id.isdigit() and len(order_id) <= 19:
        number = int(order_id)
        if str(number) == order_id and number < 2**63:
            return number
    return order_id


def render_error(code: int, message: str) -> bytes:
    """An error reply, {"code": <negative int>, "msg": <text>}."""
    return _ENCODER.encode(_ErrorOut(code, message))
