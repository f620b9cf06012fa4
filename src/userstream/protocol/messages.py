"""What a classified incoming frame can be: the shared vocabulary of every exchange's protocol module.

An exchange's `Parser` (its wire module's) turns one WebSocket frame into exactly one of these. The client
session dispatches on the type (a control frame moves its state; data goes on to the runtime); nothing here
knows about sockets or time.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

import msgspec

from userstream.errors import MessageShapeError
from userstream.events import Event
from userstream.money import checked

__all__ = [
    "ControlReply",
    "DataEvents",
    "ErrorReply",
    "Incoming",
    "Ping",
    "Pong",
    "SystemClose",
    "Unknown",
    "UnknownKind",
    "impossible_balance",
    "impossible_order",
    "money_error",
]


class ControlReply(msgspec.Struct, frozen=True):
    """A plain control string from the server, such as "connect success" or "sub success"."""

    text: str


class ErrorReply(msgspec.Struct, frozen=True):
    """The server refused something (a sub with a wrong token, say) and will close. Not retryable as is,
    unless `transient` (a rate limit, a busy server: protocol.refusal). `code` is the server's own (a
    number, a word such as "INVALID_TOKEN", or None when it gave none)."""

    code: int | str | None
    message: str
    transient: bool = False


class Ping(msgspec.Struct, frozen=True):
    """The server's own heartbeat {"ping": n}; the client answers {"pong": n}."""

    timestamp: int


class Pong(msgspec.Struct, frozen=True):
    """The server's answer {"pong": m} to the client's ping."""

    timestamp: int


class SystemClose(msgspec.Struct, frozen=True):
    """Coinlocally's SYSTEM notice {"uid": ..., "channel": "SYSTEM", "et": "close"}: the server will close."""

    uid: int | None


class DataEvents(msgspec.Struct, frozen=True):
    """A data frame, normalized. One frame can carry several events (a multi-asset account update)."""

    events: tuple[Event, ...]


class UnknownKind(StrEnum):
    """Why a frame is `Unknown`: what the client counts and warns about separately (docs/client.md)."""

    #: bytes that do not decode: corrupt gzip, not UTF-8, not JSON, too large, empty (a FrameDecodeError)
    UNDECODABLE = "undecodable"
    #: a message of a known type with a wrong shape, type, range or an impossible value (a MessageShapeError)
    MALFORMED = "malformed"
    #: well-formed, but not a message this version knows (an unknown event type, stream or text)
    UNKNOWN = "unknown"


class Unknown(msgspec.Struct, frozen=True):
    """A frame that is not understood: kept raw (truncated for safety), with the reason, never a crash.

    `kind` says whether it was broken (`undecodable`, `malformed`: refused) or just news to us (`unknown`)."""

    raw: str
    reason: str
    kind: UnknownKind = UnknownKind.UNKNOWN


Incoming = ControlReply | ErrorReply | Ping | Pong | SystemClose | DataEvents | Unknown


def money_error(*fields: tuple[str, Decimal | None]) -> MessageShapeError:
    """The error for the first of `fields` (JSON path, value; None is skipped) that `money.checked` refuses.

    Parsers check a frame's money values in one `try` with `checked` itself, which is what the hot path can
    afford, and call this only when one failed, to name it."""
    for path, value in fields:
        if value is not None:
            try:
                checked(value)
            except ValueError as exc:
                return MessageShapeError(f"{path}: {exc}", field=path)
    raise AssertionError("money_error: every value is within bounds")


# --- impossible values ----------------------------------------------------------------------------------
# A value that is well-formed money but cannot be true (docs/events.md, "Impossible values") makes the whole
# frame malformed. Parsers test for it with a cheap guard on the Decimals they already hold (`is_signed()`,
# one comparison) and call these only when the guard trips, to name the field; they return None when the
# guard was cautious (a -0 is signed, and possible).


def impossible_balance(*fields: tuple[str, Decimal]) -> MessageShapeError | None:
    """The error for the first negative balance among `fields` (JSON path, value), or None."""
    for path, value in fields:
        if value < 0:
            return MessageShapeError(f"{path}: a balance cannot be negative, got {value}", field=path)
    return None


def suspect_order(
    limit: bool, amount: Decimal, filled: Decimal, price: Decimal | None, cost: Decimal | None
) -> bool:
    """The cheap guard on an order update's values: True when one of them may be impossible (a -0 trips it
    too), and only then does the parser call `impossible_order` to name it. Positional, for the hot path.
    An execution's own values (Coinlocally's `l` and `L`) are guarded by its parser."""
    return (
        amount.is_signed()
        or filled.is_signed()
        or (price is not None and (price.is_signed() or (limit and not price)))
        or (cost is not None and cost.is_signed())
        or (limit and filled > amount)
    )


_NO_FIELD: tuple[str, Decimal | None] = ("", None)


def impossible_order(
    *,
    limit: bool,
    amount: tuple[str, Decimal],
    filled: tuple[str, Decimal],
    price: tuple[str, Decimal | None],
    cost: tuple[str, Decimal | None],
    last_fill_amount: tuple[str, Decimal | None] = _NO_FIELD,
    last_fill_price: tuple[str, Decimal | None] = _NO_FIELD,
) -> MessageShapeError | None:
    """The error for the first impossible value of an order update (each a (JSON path, value) pair, None
    when not sent), in the order docs/events.md lists the rules; None when every value is possible.

    `limit`: the order is a limit order, whose amount is in the base asset and whose price is its limit.
    A market order's amount may be in the quote asset (Bitmusa's MARKET_PRICE buy, a Binance-style
    quote-quantity order reports `q` 0), so neither `filled > amount` nor a zero price is refused on one.
    A fee is never judged: a negative commission is a rebate."""
    for path, value in (amount, filled, price, cost, last_fill_amount, last_fill_price):
        if value is not None and value < 0:
            return MessageShapeError(f"{path}: cannot be negative, got {value}", field=path)
    price_path, price_value = price
    if limit and price_value is not None and price_value == 0:
        return MessageShapeError(
            f"{price_path}: a limit order's price must be positive, got {price_value}", field=price_path
        )
    if limit and filled[1] > amount[1]:
        return MessageShapeError(
            f"{filled[0]}: the filled quantity {filled[1]} exceeds the limit order's amount {amount[1]}",
            field=filled[0],
        )
    fill_path, fill_value = last_fill_amount
    if fill_value is not None and fill_value > filled[1]:
        return MessageShapeError(
            f"{fill_path}: the execution's quantity {fill_value} exceeds the order's filled quantity "
            f"{filled[1]}",
            field=fill_path,
        )
    fill_price_path, fill_price = last_fill_price
    if fill_value and fill_price is not None and fill_price == 0:
        return MessageShapeError(
            f"{fill_price_path}: an execution of {fill_value} at a price of {fill_price}",
            field=fill_price_path,
        )
    return None
