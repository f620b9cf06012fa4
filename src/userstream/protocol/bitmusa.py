"""Bitmusa's stream wire, sans-I/O: the document's constants and words, and the parser of incoming frames.

It owns what every other Bitmusa module reads: the endpoints and lifetimes of the document (REST and
WebSocket bases, the listenKey path, the WebSocket path of a key), our error codes, the tables of wire words
(status, type, side), and the classification of every incoming text frame into normalized events (the
wire types, `Parser` and its errors). The listenKey REST calls live in `protocol.bitmusa_listen_key`, the
rendering `userstream serve` sends in `protocol.bitmusa_render`, the REST snapshot in `protocol.bitmusa_rest`.
It must not touch sockets, asyncio, HTTP clients or clocks: callers pass bytes (and time) in and take
values out. The wire is described by tables (endpoints, stream name -> wire type, status/type/side words),
so a change to the wire is a change to a table.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Final
from urllib.parse import quote

import msgspec

from userstream.errors import FrameDecodeError, LocalProtocolError, MessageShapeError, UserStreamError
from userstream.events import (
    RAW_LIMIT,
    BalanceUpdate,
    ClippedRaw,
    Event,
    Exchange,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    Source,
    clip_raw,
)
from userstream.money import checked, exact_sub
from userstream.protocol.codec import DEFAULT_MAX_FRAME, decode_frame
from userstream.protocol.messages import (
    DataEvents,
    Incoming,
    Unknown,
    UnknownKind,
    impossible_balance,
    impossible_order,
    money_error,
    suspect_order,
)
from userstream.validation import failure

__all__ = [
    "ENDPOINTS",
    "ERR_BAD_REQUEST",
    "ERR_LISTEN_KEY_NOT_FOUND",
    "ERR_RATE_LIMITED",
    "ERR_UNAUTHORIZED",
    "LISTEN_KEY_PATH",
    "LISTEN_KEY_VALIDITY_MS",
    "MAX_CONNECTION_AGE_MS",
    "ORDER_TYPES",
    "ORDER_TYPE_WORDS",
    "REST_BASE",
    "SIDES",
    "SIDE_WORDS",
    "STATUSES",
    "STATUS_WORDS",
    "STREAMS",
    "UNKNOWN_RAW_LIMIT",
    "WS_BASE",
    "WS_PATH_PREFIX",
    "ListenKeyAction",
    "Parser",
    "ws_path",
    "ws_url",
]

# --- endpoints and lifetimes (the document) -------------------------------------------------------

REST_BASE = "https://openapi.bitmusa.com"
WS_BASE = "wss://websocket.bitmusa.com:60002"
LISTEN_KEY_PATH = "/spot/userDataStream"
WS_PATH_PREFIX = "/ws/spot/"
#: A listenKey lapses 60 minutes after its creation or its last keep-alive (PUT).
LISTEN_KEY_VALIDITY_MS = 3_600_000
#: The exchange cuts every connection at the 24-hour mark.
MAX_CONNECTION_AGE_MS = 86_400_000


class ListenKeyAction(StrEnum):
    CREATE = "create"  # returns the account's active listenKey if one exists
    KEEPALIVE = "keepalive"  # extends the validity by LISTEN_KEY_VALIDITY_MS
    CLOSE = "close"  # invalidates the listenKey and ends its streams


#: action -> (HTTP method, path). All three share one path and differ by method.
ENDPOINTS: dict[ListenKeyAction, tuple[str, str]] = {
    ListenKeyAction.CREATE: ("POST", LISTEN_KEY_PATH),
    ListenKeyAction.KEEPALIVE: ("PUT", LISTEN_KEY_PATH),
    ListenKeyAction.CLOSE: ("DELETE", LISTEN_KEY_PATH),
}
# The document is silent on error replies; these codes and the {"code", "message"} shape are ours
# (docs/server.md), shared by the client's judgement and the server's rendering below.
ERR_BAD_REQUEST = 400001
ERR_UNAUTHORIZED = 401001
ERR_LISTEN_KEY_NOT_FOUND = 404001
ERR_RATE_LIMITED = 429001

# --- the words of the order stream ----------------------------------------------------------------

#: wire status -> normalized status. Anything else normalizes to None and is kept in raw_status.
STATUSES: dict[str, OrderStatus] = {
    "TRADING": OrderStatus.OPEN,
    "COMPLETED": OrderStatus.CLOSED,
    "CANCELED": OrderStatus.CANCELED,
    "OVERTIMED": OrderStatus.EXPIRED,
}
#: normalized status -> the word rendered when an event's raw_status is not Bitmusa's word for it.
#: Bitmusa has no "rejected": an order it refused ends as CANCELED, so a rejected order renders so.
STATUS_WORDS: dict[OrderStatus, str] = {
    OrderStatus.OPEN: "TRADING",
    OrderStatus.CLOSED: "COMPLETED",
    OrderStatus.CANCELED: "CANCELED",
    OrderStatus.EXPIRED: "OVERTIMED",
    OrderStatus.REJECTED: "CANCELED",
}
ORDER_TYPES: dict[str, OrderType] = {
    "LIMIT_PRICE": OrderType.LIMIT,
    "MARKET_PRICE": OrderType.MARKET,
}
ORDER_TYPE_WORDS: dict[OrderType, str] = {value: word for word, value in ORDER_TYPES.items()}
SIDES: dict[str, Side] = {"BUY": Side.BUY, "SELL": Side.SELL}
SIDE_WORDS: dict[Side, str] = {value: word for word, value in SIDES.items()}

#: How much of an unclassifiable frame `Unknown.raw` keeps, in characters.
UNKNOWN_RAW_LIMIT = 512
_REASON_LIMIT = 300

# --- the WebSocket path -------------------------------------------------------------------------


def ws_path(listen_key: str) -> str:
    """The WebSocket path of a listenKey. The key is percent-quoted: it comes from the wire."""
    if not listen_key:
        raise LocalProtocolError("an empty listenKey has no stream path")
    return WS_PATH_PREFIX + quote(listen_key, safe="")


def ws_url(listen_key: str, base: str = WS_BASE) -> str:
    return base.rstrip("/") + ws_path(listen_key)


# --- the streams: wire types ----------------------------------------------------------------------

_Millis = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
# Enum members bound once: on CPython 3.11 a member looked up on its class (`Exchange.BITMUSA`) costs
# several times a module constant's load, and every event names two or three.
_BITMUSA: Final = Exchange.BITMUSA
_STREAM: Final = Source.STREAM
_LIMIT: Final = OrderType.LIMIT
_WALLET_STREAM = "spot_wallet"
_ORDER_STREAM = "spot_order"


class _WalletData(msgspec.Struct, frozen=True, gc=False):
    asset: str
    free: Decimal  # msgspec builds a Decimal from the wire text itself, string or number: never via float
    locked: Decimal


class _OrderData(msgspec.Struct, frozen=True, gc=False):
    orderId: str  # noqa: N815 - the wire's own names
    symbol: str
    direction: str
    type: str
    price: Decimal | None  # null is accepted for a market order without a price
    amount: Decimal
    tradedAmount: Decimal  # noqa: N815
    value: Decimal | None
    status: str
    createdTime: _Millis | None  # noqa: N815
    canceledTime: _Millis | None = None  # noqa: N815 - checked, not kept: the event's timestamp says when
    completedTime: _Millis | None = None  # noqa: N815


class _Frame(msgspec.Struct, frozen=True, gc=False, tag_field="stream"):
    """A data frame; the concrete class is chosen by its `stream` value (a msgspec tagged union)."""

    eventTime: _Millis  # noqa: N815

    def event(self, account: str, raw: str) -> Event:
        raise NotImplementedError


class _WalletFrame(_Frame, frozen=True, gc=False, tag=_WALLET_STREAM):
    data: _WalletData

    def event(self, account: str, raw: str) -> Event:
        data = self.data
        free, locked = data.free, data.locked
        try:
            checked(free)  # returns its argument: the value is kept as msgspec built it
            checked(locked)
        except ValueError:
            raise money_error(("$.data.free", free), ("$.data.locked", locked)) from None
        if free.is_signed() or locked.is_signed():  # the cheap guard; -0 is signed and possible
            error = impossible_balance(("$.data.free", free), ("$.data.locked", locked))
            if error is not None:
                raise error
        # Positional, in BalanceUpdate's field order (a keyword call costs ~2x more; events.py pins it).
        return BalanceUpdate(_BITMUSA, account, self.eventTime, data.asset, free, locked, _STREAM, raw)


class _OrderFrame(_Frame, frozen=True, gc=False, tag=_ORDER_STREAM):
    data: _OrderData

    def event(self, account: str, raw: str) -> Event:
        data = self.data
        side = SIDES.get(data.direction)
        if side is None:
            # An order whose side is unknown cannot be applied safely to balances (docs/events.md).
            raise MessageShapeError(f"unknown direction {_clip(data.direction)!r}", field="$.data.direction")
        amount, filled, price, cost = data.amount, data.tradedAmount, data.price, data.value
        try:
            checked(amount)  # returns its argument: each value is kept as msgspec built it
            checked(filled)
            if price is not None:
                checked(price)
            if cost is not None:
                checked(cost)
        except ValueError:
            raise money_error(
                ("$.data.amount", amount),
                ("$.data.tradedAmount", filled),
                ("$.data.price", price),
                ("$.data.value", cost),
            ) from None
        raw_type = data.type
        order_type = ORDER_TYPES.get(raw_type)
        limit = order_type is _LIMIT
        # The cheap guard for impossible values (docs/events.md); the slow path names the field.
        if suspect_order(limit, amount, filled, price, cost):
            error = impossible_order(
                limit=limit,
                amount=("$.data.amount", amount),
                filled=("$.data.tradedAmount", filled),
                price=("$.data.price", price),
                cost=("$.data.value", cost),
            )
            if error is not None:
                raise error
        symbol, status = data.symbol, data.status
        # Positional, in OrderUpdate's field order (a keyword call costs ~2x more; events.py pins it).
        return OrderUpdate(
            _BITMUSA,  # exchange
            account,
            self.eventTime,  # timestamp
            data.orderId,  # id
            symbol,  # symbol: Bitmusa already writes the unified "BASE/QUOTE"
            symbol,  # raw_symbol
            side,
            order_type,  # type
            raw_type,
            STATUSES.get(status),  # status
            status,  # raw_status
            price,
            amount,
            filled,
            exact_sub(amount, filled),  # remaining
            cost,
            None,  # last_fill_amount: Bitmusa reports no single execution
            None,  # last_fill_price
            None,  # fee
            data.createdTime,  # created_at
            _STREAM,  # source
            raw,
        )


#: stream name -> the wire type that parses it (its `event` method builds the normalized event).
STREAMS: dict[str, type[_Frame]] = {_WALLET_STREAM: _WalletFrame, _ORDER_STREAM: _OrderFrame}
_FRAME_UNION: Any = functools.reduce(operator.or_, STREAMS.values())


# --- the streams: parsing -------------------------------------------------------------------------


class Parser:
    """Classify one incoming frame: a data frame becomes DataEvents, anything else Unknown. Never raises.

    Keep one Parser per connection: it holds the account label and one msgspec decoder for every stream.
    """

    __slots__ = ("_decoder", "account", "max_frame")

    def __init__(self, account: str = "default", max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.account = account
        self.max_frame = max_frame
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(_FRAME_UNION)

    def __call__(self, frame: bytes | str) -> Incoming:
        if type(frame) is str and 0 < len(frame) <= self.max_frame:
            # The usual frame, in its shortest path: `parse_message`'s, written out (a call per frame
            # costs), with the same errors.
            try:
                decoded: _Frame = self._decoder.decode(frame)
                raw = frame if len(frame) <= RAW_LIMIT else ClippedRaw(frame)  # clip_raw, written out
                return DataEvents((decoded.event(self.account, raw),))
            except (msgspec.DecodeError, RecursionError) as exc:  # ValidationError is a DecodeError
                error = _decode_error(exc)
            except UserStreamError as exc:
                error = exc
            return Unknown(_preview(frame), _clip(str(error), _REASON_LIMIT), _kind_of(error))
        try:
            return self.parse_message(frame)
        except UserStreamError as exc:
            return Unknown(_preview(frame), _clip(str(exc), _REASON_LIMIT), _kind_of(exc))

    def parse_message(self, message: bytes | str | Mapping[str, Any]) -> DataEvents:
        """Like calling the parser, but raise FrameDecodeError or MessageShapeError instead of Unknown.

        `message` is a frame (text or bytes), or a JSON object already decoded. Decimals are exact from
        the wire text only for frames: a decoded object's floats have already lost it.
        """
        if type(message) is str and 0 < len(message) <= self.max_frame:
            text = message  # the usual frame, in its shortest path: `_frame_text` would return it as is
        elif not isinstance(message, str | bytes | bytearray | memoryview):
            return self._parse_object(message)
        else:
            text = _frame_text(message, self.max_frame)
        try:
            frame: _Frame = self._decoder.decode(text)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise _decode_error(exc) from None
        return DataEvents((frame.event(self.account, clip_raw(text)),))

    def _parse_object(self, message: Mapping[str, Any]) -> DataEvents:
        if not isinstance(message, Mapping):
            raise MessageShapeError(f"expected a frame or a JSON object, got {type(message).__name__}")
        obj = dict(message)
        try:
            frame: _Frame = msgspec.convert(obj, _FRAME_UNION)
            raw = msgspec.json.encode(obj).decode()
        except msgspec.ValidationError as exc:
            raise _shape_error(exc) from None
        except (TypeError, ValueError, RecursionError) as exc:  # msgspec.EncodeError is a ValueError
            raise MessageShapeError(f"not a JSON object: {exc}", field="$") from None
        return DataEvents((frame.event(self.account, clip_raw(raw)),))


def _frame_text(frame: bytes | str, max_frame: int) -> str:
    if not frame:
        raise FrameDecodeError("empty frame")
    if isinstance(frame, str):
        if len(frame) > max_frame:
            raise FrameDecodeError(f"frame of {len(frame)} characters exceeds the {max_frame} limit")
        return frame
    message = decode_frame(frame, max_frame)
    try:
        return str(message, "utf-8")
    except UnicodeDecodeError as exc:
        raise FrameDecodeError(f"Bitmusa frame is not UTF-8: {exc}") from None


def _kind_of(exc: UserStreamError) -> UnknownKind:
    """A frame without a stream of ours (`$.stream` missing, of another type or another name) is news to us;
    a broken one of our streams is malformed; bytes that do not decode are undecodable."""
    if isinstance(exc, MessageShapeError):
        return UnknownKind.UNKNOWN if exc.field == "$.stream" else UnknownKind.MALFORMED
    if isinstance(exc, FrameDecodeError):
        return UnknownKind.UNDECODABLE
    return UnknownKind.MALFORMED


def _decode_error(exc: msgspec.DecodeError | RecursionError) -> UserStreamError:
    """The typed error for what the frame decoder raised."""
    if isinstance(exc, msgspec.ValidationError):
        return _shape_error(exc)
    if isinstance(exc, msgspec.DecodeError):
        return FrameDecodeError(f"Bitmusa frame is not JSON: {exc}")
    # msgspec looks ahead for the `stream` tag and recurses into any nesting it meets.
    return FrameDecodeError("Bitmusa frame is nested too deeply")


def _shape_error(exc: msgspec.ValidationError) -> MessageShapeError:
    text = str(exc)
    field = failure(text).path
    if field != "$.stream":
        prefix = "malformed Bitmusa message"
    elif text.startswith("Invalid value"):
        prefix = "unknown stream"
    else:  # no `stream`, or not a string: a message of some other kind (an error reply, a ping, ...)
        prefix = "not a Bitmusa stream message"
    return MessageShapeError(f"{prefix}: {_clip(text, _REASON_LIMIT)}", field=field)


def _preview(frame: object) -> str:
    if isinstance(frame, str):
        return frame[:UNKNOWN_RAW_LIMIT]
    if isinstance(frame, bytes | bytearray | memoryview):
        return bytes(frame[: 4 * UNKNOWN_RAW_LIMIT]).decode("utf-8", "replace")[:UNKNOWN_RAW_LIMIT]
    return repr(frame)[:UNKNOWN_RAW_LIMIT]


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
