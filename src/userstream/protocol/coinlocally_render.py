"""Coinlocally's wire as `userstream serve` writes it, sans-I/O: events rendered, and the server's frames.

It owns the rendering of normalized events back into the document's gzip-compressed, Binance-style
one-letter-key JSON (`render_event`, `render_balances`, `render_message`), with the words the parser
reads (`protocol.coinlocally`'s tables) so a rendered frame parses back to its event, and the server's
other frames (`render_system_close`, `render_error`, `render_pong`). The `_wire_*` rules are shared with
`protocol.coinlocally_rest`'s openOrders reply. No socket, task or clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Final

import msgspec

from userstream.errors import LocalProtocolError
from userstream.events import BalanceUpdate, Event, OrderStatus, OrderUpdate, Side
from userstream.protocol.codec import gzip_bytes
from userstream.protocol.coinlocally import _STATUSES, _TYPES
from userstream.protocol.coinlocally_control import pong_frame

__all__ = [
    "render_balances",
    "render_error",
    "render_event",
    "render_message",
    "render_pong",
    "render_system_close",
]

# Rendering: the wire status for a normalized status whose raw_status does not fit Coinlocally. OPEN is
# not here: it becomes NEW or PART_FILLED depending on whether anything has been filled.
_WIRE_STATUS: Final[Mapping[OrderStatus, str]] = {
    OrderStatus.CLOSED: "FILLED",
    OrderStatus.CANCELED: "CANCELED",
    OrderStatus.REJECTED: "REJECTED",
    OrderStatus.EXPIRED: "EXPIRED",
}
_WIRE_SIDE: Final[Mapping[Side, str]] = {Side.BUY: "BUY", Side.SELL: "SELL"}
# Rendering `x` (execution type), which the normalized event does not carry: "TRADE" when the update
# carries a fill (l != 0); otherwise the status change itself when it is one of Binance's execution types;
# otherwise "STATUS", the value the document's own example uses (PENDING_CANCEL, FILLED, unknown, ...).
# Parsing ignores `x`, so this choice cannot break a round trip.
_EXECUTION_TYPE: Final[Mapping[str, str]] = {
    "NEW": "NEW",
    "CANCELED": "CANCELED",
    "EXPIRED": "EXPIRED",
    "REJECTED": "REJECTED",
}
_ENCODER: Final = msgspec.json.Encoder()

# --- events ---------------------------------------------------------------------------------------------


class _WireBalanceOut(msgspec.Struct, frozen=True, gc=False):
    asset: str = msgspec.field(name="a")
    free: str = msgspec.field(name="f")
    locked: str = msgspec.field(name="l")


class _AccountPositionOut(
    msgspec.Struct, frozen=True, gc=False, tag_field="e", tag="outboundAccountPosition"
):
    event_time: int = msgspec.field(name="E")
    update_time: int = msgspec.field(name="u")
    balances: list[_WireBalanceOut] = msgspec.field(name="B")


class _ExecutionReportOut(
    msgspec.Struct,
    frozen=True,
    gc=False,
    kw_only=True,
    omit_defaults=True,
    tag_field="e",
    tag="executionReport",
):
    """Fields in the document's key order (the encoder keeps declaration order)."""

    event_time: int = msgspec.field(name="E")
    transaction_time: int = msgspec.field(name="T")
    side: str = msgspec.field(name="S")
    symbol: str = msgspec.field(name="s")
    status: str = msgspec.field(name="X")
    execution_type: str = msgspec.field(name="x")
    order_id: str = msgspec.field(name="i")
    last_fill_amount: str = msgspec.field(name="l")
    filled: str = msgspec.field(name="z")
    last_fill_price: str = msgspec.field(name="L")
    cost: str = msgspec.field(name="Z")
    fee: str = msgspec.field(name="n")
    order_type: str = msgspec.field(name="o")
    amount: str = msgspec.field(name="q")
    price: str = msgspec.field(name="p")
    quote_amount: str = msgspec.field(name="Q")
    created_at: int | None = msgspec.field(default=None, name="O")  # omitted when unknown
    stop_price: str = msgspec.field(name="P")


# Q (quote order quantity) and P (stop price) are not part of the normalized event; the document's
# example sends "0" for P, so both are rendered as "0".
_NOT_CARRIED: Final = "0"


def _wire_decimal(value: Decimal | None) -> str:
    """Decimals go on the wire as plain-notation strings, trailing zeros kept. Coinlocally always sends
    l, L, n, Z and p, so a value the event lacks (None) is rendered as "0"."""
    return "0" if value is None else format(value, "f")


def _wire_status(order: OrderUpdate) -> str:
    if order.status is None:
        if order.raw_status in _STATUSES:
            raise LocalProtocolError(
                f"order {order.id!r} has no status but a known raw_status {order.raw_status!r}"
            )
        return order.raw_status  # an unknown status travels as the exchange wrote it
    if _STATUSES.get(order.raw_status) is order.status:
        return order.raw_status
    if order.status is OrderStatus.OPEN:
        return "NEW" if order.filled == 0 else "PART_FILLED"
    return _WIRE_STATUS[order.status]


def _wire_type(order: OrderUpdate) -> str:
    if order.type is None:
        if order.raw_type in _TYPES:
            raise LocalProtocolError(
                f"order {order.id!r} has no type but a known raw_type {order.raw_type!r}"
            )
        return order.raw_type
    if _TYPES.get(order.raw_type) is order.type:
        return order.raw_type
    return order.type.value.upper()


def _wire_symbol(order: OrderUpdate) -> str:
    concatenated = order.symbol.replace("/", "")
    raw = order.raw_symbol
    if "/" not in raw and raw.upper() == concatenated.upper():
        return raw
    return concatenated  # e.g. a Bitmusa "XRP/USDT" becomes "XRPUSDT"


def _execution_report(order: OrderUpdate) -> _ExecutionReportOut:
    status = _wire_status(order)
    has_fill = order.last_fill_amount is not None and order.last_fill_amount != 0
    return _ExecutionReportOut(
        event_time=order.timestamp,
        transaction_time=order.timestamp,
        side=_WIRE_SIDE[order.side],
        symbol=_wire_symbol(order),
        status=status,
        execution_type="TRADE" if has_fill else _EXECUTION_TYPE.get(status, "STATUS"),
        order_id=order.id,
        last_fill_amount=_wire_decimal(order.last_fill_amount),
        filled=_wire_decimal(order.filled),
        last_fill_price=_wire_decimal(order.last_fill_price),
        cost=_wire_decimal(order.cost),
        fee=_wire_decimal(order.fee),
        order_type=_wire_type(order),
        amount=_wire_decimal(order.amount),
        price=_wire_decimal(order.price),
        quote_amount=_NOT_CARRIED,
        created_at=order.created_at,
        stop_price=_NOT_CARRIED,
    )


def _account_position(balances: Iterable[BalanceUpdate]) -> _AccountPositionOut:
    entries = list(balances)
    if not entries:
        raise LocalProtocolError("an outboundAccountPosition needs at least one balance")
    timestamp = entries[0].timestamp
    if any(balance.timestamp != timestamp for balance in entries):
        # One frame has one E; balances of different times would come back with the wrong timestamp.
        raise LocalProtocolError("balances rendered into one frame must share one timestamp")
    return _AccountPositionOut(
        event_time=timestamp,
        update_time=timestamp,
        balances=[
            _WireBalanceOut(
                asset=balance.asset,
                free=format(balance.free, "f"),
                locked=format(balance.locked, "f"),
            )
            for balance in entries
        ],
    )


def render_message(event: Event) -> bytes:
    """The event as Coinlocally's JSON message (before gzip)."""
    if isinstance(event, BalanceUpdate):
        return _ENCODER.encode(_account_position((event,)))
    if isinstance(event, OrderUpdate):
        return _ENCODER.encode(_execution_report(event))
    raise LocalProtocolError(f"Coinlocally cannot render a {type(event).__name__}")


def render_event(event: Event) -> bytes:
    """The event as the binary frame Coinlocally sends: its JSON message, gzip-compressed."""
    return gzip_bytes(render_message(event))


def render_balances(events: Iterable[BalanceUpdate]) -> bytes:
    """Several assets of one moment in one gzip-compressed outboundAccountPosition frame."""
    return gzip_bytes(_ENCODER.encode(_account_position(events)))


def render_system_close(uid: int) -> bytes:
    return gzip_bytes(_ENCODER.encode({"uid": uid, "channel": "SYSTEM", "et": "close"}))


def render_error(code: int, message: str) -> str:
    """Our error frame (the document is silent): sent as text before the server closes."""
    return _ENCODER.encode({"event": "error", "code": code, "message": message}).decode()


def render_pong(timestamp: int) -> str:
    return pong_frame(timestamp)
