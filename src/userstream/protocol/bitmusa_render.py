"""Bitmusa's wire as `userstream serve` writes it, sans-I/O: normalized events and listenKey replies rendered.

It owns the frames the emulator sends (`render_event`: a normalized event back into the exact frame the
exchange document shows, field order included) and the listenKey REST replies (`render_listen_key`,
`render_ok`, `render_error`, in the document's envelope and our error codes). The words it writes are
`protocol.bitmusa`'s tables, the ones the parser reads, so a rendered frame parses back to its event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

import msgspec

from userstream.errors import LocalProtocolError
from userstream.events import BalanceUpdate, Event, OrderStatus, OrderType, OrderUpdate
from userstream.money import MAX_DIGITS
from userstream.protocol.bitmusa import (
    _ORDER_STREAM,
    _WALLET_STREAM,
    ORDER_TYPE_WORDS,
    ORDER_TYPES,
    SIDE_WORDS,
    STATUS_WORDS,
    STATUSES,
)

__all__ = [
    "render_error",
    "render_event",
    "render_listen_key",
    "render_ok",
]

# Which end-time field a terminal status fills in when rendering (the document shows both, null while open).
_END_TIME_FIELD: dict[OrderStatus, str] = {
    OrderStatus.CLOSED: "completedTime",
    OrderStatus.CANCELED: "canceledTime",
    OrderStatus.EXPIRED: "canceledTime",
}


# --- events ----------------------------------------------------------------------------------------
# Output types mirror the document's field order; msgspec writes Struct fields in declaration order.


class _WalletOutData(msgspec.Struct, gc=False):
    asset: str
    free: str  # the document shows balances as strings
    locked: str


class _WalletOut(msgspec.Struct, gc=False):
    data: _WalletOutData
    stream: str
    eventTime: int  # noqa: N815


class _OrderOutData(msgspec.Struct, gc=False):
    orderId: str  # noqa: N815
    symbol: str
    direction: str
    type: str
    price: Decimal | None  # the document shows order quantities as JSON numbers
    amount: Decimal
    tradedAmount: Decimal  # noqa: N815
    value: Decimal | None
    status: str
    createdTime: int | None  # noqa: N815
    canceledTime: int | None  # noqa: N815
    completedTime: int | None  # noqa: N815


class _OrderOut(msgspec.Struct, gc=False):
    data: _OrderOutData
    stream: str
    eventTime: int  # noqa: N815


_RENDER_ENCODER = msgspec.json.Encoder(decimal_format="number")
_REPLY_ENCODER = msgspec.json.Encoder()


def render_event(event: Event) -> str:
    """The text frame Bitmusa sends for `event`, in the document's exact shape and field order.

    The event's raw_status / raw_type are written when they are Bitmusa's word for the normalized value,
    else Bitmusa's word for it (a rejected order renders as CANCELED: Bitmusa has no other word). An
    unknown (None) status or type renders its raw text. `exchange` and `account` are not on the wire.
    """
    renderer = _RENDERERS.get(type(event))
    if renderer is None:
        raise LocalProtocolError(f"Bitmusa cannot render a {type(event).__name__}")
    return _RENDER_ENCODER.encode(renderer(event)).decode()


def _render_balance(event: BalanceUpdate) -> _WalletOut:
    data = _WalletOutData(event.asset, _plain(event.free), _plain(event.locked))
    return _WalletOut(data, _WALLET_STREAM, event.timestamp)


def _render_order(event: OrderUpdate) -> _OrderOut:
    status = _word(event.status, event.raw_status, STATUSES, STATUS_WORDS)
    # The end time follows the word actually written, so the frame is self-consistent.
    written = STATUSES.get(status)
    end_field = None if written is None else _END_TIME_FIELD.get(written)
    data = _OrderOutData(
        orderId=event.id,
        symbol=event.symbol,  # Bitmusa writes the unified symbol
        direction=SIDE_WORDS[event.side],
        type=_word(event.type, event.raw_type, ORDER_TYPES, ORDER_TYPE_WORDS),
        price=event.price,
        amount=event.amount,
        tradedAmount=event.filled,
        value=event.cost,
        status=status,
        createdTime=event.created_at,
        canceledTime=event.timestamp if end_field == "canceledTime" else None,
        completedTime=event.timestamp if end_field == "completedTime" else None,
    )
    return _OrderOut(data, _ORDER_STREAM, event.timestamp)


# event type -> its renderer (each takes exactly its own event type)
_RENDERERS: dict[type, Callable[[Any], _WalletOut | _OrderOut]] = {
    BalanceUpdate: _render_balance,
    OrderUpdate: _render_order,
}


_Word = TypeVar("_Word", OrderStatus, OrderType)


def _word(
    value: _Word | None, raw: str, words_in: Mapping[str, _Word], words_out: Mapping[_Word, str]
) -> str:
    """The wire word for a normalized value: its raw text if that is Bitmusa's word for it, else ours."""
    if value is None:
        return raw
    if words_in.get(raw) == value:
        return raw
    return words_out[value]


def _plain(value: Decimal) -> str:
    """Plain notation as the document writes balances; scientific only where plain would add digits
    past money's bound (trailing zeros of a huge exponent count as digits when read back)."""
    return format(value, "f") if value.adjusted() < MAX_DIGITS else str(value)


def render_listen_key(key: str) -> bytes:
    """The server's reply to a create (POST), in the document's shape."""
    return _REPLY_ENCODER.encode({"data": {"listenKey": key}, "code": 0, "message": "success"})


def render_ok() -> bytes:
    """The server's reply to a keep-alive (PUT) or close (DELETE)."""
    return _REPLY_ENCODER.encode({"code": 0, "message": "success"})


def render_error(code: int, message: str) -> bytes:
    """An error reply in our documented shape {"code": <int>, "message": <text>} (no "data")."""
    return _REPLY_ENCODER.encode({"code": code, "message": message})
