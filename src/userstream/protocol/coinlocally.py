"""Coinlocally's private spot stream on the wire, sans-I/O: the document's constants and the frame parser.

It owns what every other Coinlocally module reads: the WebSocket URL and path, the control replies, the
heartbeat's timing, the tables of wire words (status, type, side), and the classification of every incoming
frame (text or binary, gzip or plain) into `protocol.messages.Incoming` (the `e` -> wire type registry, the
wire types and `Parser`). The credential and the control frames (handshake headers, sub, ping, pong, the
server's reading of the client's frames) live in `protocol.coinlocally_control`; the emulator's rendering of
normalized events into the document's gzip-compressed, Binance-style one-letter-key JSON lives in
`protocol.coinlocally_render`. It holds no socket, task, clock or HTTP client: time comes in as arguments.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Annotated, Any, Final, Union

import msgspec

from userstream.errors import FrameDecodeError, MessageShapeError, RemoteProtocolError
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
)
from userstream.money import checked, exact_sub
from userstream.protocol.codec import DEFAULT_MAX_FRAME, decode_frame
from userstream.protocol.messages import (
    ControlReply,
    DataEvents,
    ErrorReply,
    Incoming,
    Ping,
    Pong,
    SystemClose,
    Unknown,
    UnknownKind,
    impossible_balance,
    impossible_order,
    money_error,
    suspect_order,
)
from userstream.protocol.refusal import read_refusal, read_text_refusal
from userstream.protocol.symbols import DEFAULT_QUOTES, SymbolSplitter
from userstream.validation import failure

__all__ = [
    "CONNECT_SUCCESS",
    "HEARTBEAT_TIMEOUT_MS",
    "MAX_CLIENT_FRAME",
    "PING_INTERVAL_MS",
    "SUB_SUCCESS",
    "WS_PATH",
    "WS_URL",
    "Parser",
]


WS_URL: Final = "wss://ws2.coinlocally.com/spotws_user/userData/ws"
WS_PATH: Final = "/spotws_user/userData/ws"
CONNECT_SUCCESS: Final = "connect success"
SUB_SUCCESS: Final = "sub success"
#: The document: "Client must send a ping every 30 seconds" and "closed if no ping is received in 40 seconds".
PING_INTERVAL_MS: Final = 30_000
HEARTBEAT_TIMEOUT_MS: Final = 40_000
#: The largest client frame the server side accepts. A sub or ping frame is well under 200 bytes.
MAX_CLIENT_FRAME: Final = 4096

_CONTROL_REPLIES: Final = frozenset({CONNECT_SUCCESS, SUB_SUCCESS})
_PREVIEW_CHARS: Final = 512  # how much of a frame an `Unknown` keeps: enough to debug, bounded for safety

# --- the tables -----------------------------------------------------------------------------------------

_STATUSES: Final[Mapping[str, OrderStatus]] = {
    "NEW": OrderStatus.OPEN,
    "PART_FILLED": OrderStatus.OPEN,
    "PENDING_CANCEL": OrderStatus.OPEN,
    "FILLED": OrderStatus.CLOSED,
    "CANCELED": OrderStatus.CANCELED,
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.EXPIRED,
}
_TYPES: Final[Mapping[str, OrderType]] = {"LIMIT": OrderType.LIMIT, "MARKET": OrderType.MARKET}
_SIDES: Final[Mapping[str, Side]] = {"BUY": Side.BUY, "SELL": Side.SELL}


# Enum members bound once: on CPython 3.11 a member looked up on its class (`Exchange.COINLOCALLY`) costs
# several times a module constant's load, and every event names two or three.
_COINLOCALLY: Final = Exchange.COINLOCALLY
_STREAM: Final = Source.STREAM
_LIMIT: Final = OrderType.LIMIT

_Millis = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_NumericOrderId = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]

# --- incoming frames: the wire types --------------------------------------------------------------------


class _WireEvent(msgspec.Struct, frozen=True, gc=False, tag_field="e"):
    """A data message, tagged by `e`. Each subclass knows how to become normalized events."""

    def normalize(self, parser: Parser, raw: str) -> tuple[Event, ...]:
        raise NotImplementedError


class _WireBalance(msgspec.Struct, frozen=True, gc=False):
    asset: str = msgspec.field(name="a")
    free: Decimal = msgspec.field(name="f")
    locked: Decimal = msgspec.field(name="l")


class _AccountPosition(_WireEvent, frozen=True, gc=False, tag="outboundAccountPosition"):
    event_time: _Millis = msgspec.field(name="E")
    balances: list[_WireBalance] = msgspec.field(name="B")
    # "u" (last account update time) is not part of the normalized event and is not read.

    def normalize(self, parser: Parser, raw: str) -> tuple[Event, ...]:
        account, timestamp = parser.account, self.event_time
        events: list[Event] = []
        suspect = False
        try:
            for balance in self.balances:
                free, locked = balance.free, balance.locked
                checked(free)  # returns its argument: each value is kept as msgspec built it
                checked(locked)
                if free.is_signed() or locked.is_signed():  # the cheap guard; -0 is possible
                    suspect = True
                # Positional, in BalanceUpdate's field order (a keyword call costs ~2x more: events.py).
                events.append(
                    BalanceUpdate(_COINLOCALLY, account, timestamp, balance.asset, free, locked, _STREAM, raw)
                )
        except ValueError:
            raise money_error(
                *(
                    (f"$.B[{index}].{key}", value)
                    for index, balance in enumerate(self.balances)
                    for key, value in (("f", balance.free), ("l", balance.locked))
                )
            ) from None
        if suspect:  # only once every value is known to be money: a bad number is named before a sign
            for index, balance in enumerate(self.balances):
                error = impossible_balance(
                    (f"$.B[{index}].f", balance.free), (f"$.B[{index}].l", balance.locked)
                )
                if error is not None:
                    raise error
        return tuple(events)


class _ExecutionReport(_WireEvent, frozen=True, gc=False, tag="executionReport"):
    # Only what the normalized event needs is declared; T, x, Q, P and any new key are skipped unread.
    event_time: _Millis = msgspec.field(name="E")
    side: str = msgspec.field(name="S")
    symbol: str = msgspec.field(name="s")
    status: str = msgspec.field(name="X")
    # The document sends a string; Binance, whose format this copies, sends a number. Accept both.
    order_id: str | _NumericOrderId = msgspec.field(name="i")
    order_type: str = msgspec.field(name="o")
    amount: Decimal = msgspec.field(name="q")
    filled: Decimal = msgspec.field(name="z")
    price: Decimal | None = msgspec.field(default=None, name="p")
    cost: Decimal | None = msgspec.field(default=None, name="Z")
    last_fill_amount: Decimal | None = msgspec.field(default=None, name="l")
    last_fill_price: Decimal | None = msgspec.field(default=None, name="L")
    fee: Decimal | None = msgspec.field(default=None, name="n")
    created_at: _Millis | None = msgspec.field(default=None, name="O")

    def normalize(self, parser: Parser, raw: str) -> tuple[Event, ...]:
        side = _SIDES.get(self.side)
        if side is None:
            raise MessageShapeError(f"unknown side {self.side[:32]!r}", field="$.S")
        amount, filled, price, cost = self.amount, self.filled, self.price, self.cost
        fill_amount, fill_price, fee = self.last_fill_amount, self.last_fill_price, self.fee
        try:
            checked(amount)  # returns its argument: each value is kept as msgspec built it
            checked(filled)
            # `if ... is not None` is written out: a helper call per field costs more than the check itself.
            if price is not None:
                checked(price)
            if cost is not None:
                checked(cost)
            if fill_amount is not None:
                checked(fill_amount)
            if fill_price is not None:
                checked(fill_price)
            if fee is not None:
                checked(fee)
        except ValueError:
            raise money_error(
                ("$.q", amount),
                ("$.z", filled),
                ("$.p", price),
                ("$.Z", cost),
                ("$.l", fill_amount),
                ("$.L", fill_price),
                ("$.n", fee),
            ) from None
        raw_type = self.order_type
        order_type = _TYPES.get(raw_type)
        limit = order_type is _LIMIT
        # The cheap guard for impossible values (docs/events.md); the slow path names the field. The fee is
        # not judged: a negative commission is a rebate.
        if (
            suspect_order(limit, amount, filled, price, cost)
            or (
                fill_amount is not None
                and (
                    fill_amount.is_signed()
                    or (fill_amount and (fill_amount > filled or (fill_price is not None and not fill_price)))
                )
            )
            or (fill_price is not None and fill_price.is_signed())
        ):
            error = impossible_order(
                limit=limit,
                amount=("$.q", amount),
                filled=("$.z", filled),
                price=("$.p", price),
                cost=("$.Z", cost),
                last_fill_amount=("$.l", fill_amount),
                last_fill_price=("$.L", fill_price),
            )
            if error is not None:
                raise error
        order_id, symbol, status = self.order_id, self.symbol, self.status
        # Positional, in OrderUpdate's field order (a keyword call costs ~2x more; events.py pins it).
        order = OrderUpdate(
            _COINLOCALLY,  # exchange
            parser.account,  # account
            self.event_time,  # timestamp
            order_id if isinstance(order_id, str) else str(order_id),  # id
            # symbol: a symbol seen before is a dict lookup (the splitter's call costs 2-3x that)
            parser.known_symbol(symbol) or parser.split_symbol(symbol),
            symbol,  # raw_symbol
            side,
            order_type,  # type
            raw_type,
            _STATUSES.get(status),  # status
            status,  # raw_status
            price,
            amount,
            filled,
            exact_sub(amount, filled),  # remaining
            cost,
            fill_amount,  # last_fill_amount
            fill_price,  # last_fill_price
            fee,
            self.created_at,  # created_at
            _STREAM,  # source
            raw,
        )
        return (order,)


#: `e` -> its wire type: the one place a data event type is registered. The decoder's tagged union is
#: built from it, so an `e` that is not here is reported as an unknown event type.
_EVENT_TYPES: Final[Mapping[str, type[_WireEvent]]] = {
    "outboundAccountPosition": _AccountPosition,
    "executionReport": _ExecutionReport,
}
_WIRE_EVENT_UNION: Final[Any] = Union[tuple(_EVENT_TYPES.values())]  # noqa: UP007 (built at runtime)


class _Envelope(msgspec.Struct, frozen=True, gc=False):
    """The keys that tell a non-data JSON message apart. Values are type-checked once the kind is known,
    so a wrong type in one key names that key instead of failing the whole envelope."""

    e: Any = None
    ping: Any = None
    pong: Any = None
    channel: Any = None
    et: Any = None
    uid: Any = None


def _convert(value: Any, kind: Any, field: str) -> Any:
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise MessageShapeError(f"{field}: {exc}", field=field) from None


def _utf8(message: bytes) -> str:
    try:
        return message.decode()
    except UnicodeDecodeError as exc:
        raise FrameDecodeError(f"frame is not UTF-8: {exc.reason} at byte {exc.start}") from None


def _preview(frame: bytes | str) -> str:
    if isinstance(frame, str):
        return frame[:_PREVIEW_CHARS]
    return frame[:_PREVIEW_CHARS].decode("utf-8", "backslashreplace")[:_PREVIEW_CHARS]


# --- incoming frames: the parser ------------------------------------------------------------------------


class Parser:
    """Classify one incoming WebSocket frame into exactly one `Incoming`. Calling it never raises.

    `account` labels the events; `quotes` is the quote-asset list that splits "BTCUSDT" into "BTC/USDT";
    `max_frame` bounds a decoded message (gzip bombs included). `parse` is the same classification for
    callers who want the typed error (`FrameDecodeError`, `MessageShapeError`) instead of an `Unknown`.
    """

    __slots__ = (
        "_data_decoder",
        "_envelope_decoder",
        "_max_frame",
        "_object_decoder",
        "account",
        "known_symbol",
        "split_symbol",
    )

    def __init__(
        self,
        account: str = "default",
        quotes: Iterable[str] = DEFAULT_QUOTES,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.account = account
        self.split_symbol = SymbolSplitter(quotes)
        #: raw -> unified of a symbol split before, else None: the hot path tries it first (the cache)
        self.known_symbol = self.split_symbol.known.get
        self._max_frame = max_frame
        self._data_decoder: msgspec.json.Decoder[_WireEvent] = msgspec.json.Decoder(_WIRE_EVENT_UNION)
        self._envelope_decoder = msgspec.json.Decoder(_Envelope)
        self._object_decoder = msgspec.json.Decoder(dict[str, Any])

    def __call__(self, frame: bytes | str) -> Incoming:
        try:
            message = decode_frame(frame, self._max_frame)
            text = _utf8(message)
        except FrameDecodeError as exc:
            return Unknown(_preview(frame), str(exc), UnknownKind.UNDECODABLE)
        try:
            return self._classify(message, text)
        except FrameDecodeError as exc:
            return Unknown(text[:_PREVIEW_CHARS], str(exc), UnknownKind.UNDECODABLE)
        except RemoteProtocolError as exc:  # a MessageShapeError: a message of ours, broken
            return Unknown(text[:_PREVIEW_CHARS], str(exc), UnknownKind.MALFORMED)
        except Exception as exc:  # the contract is "never raises": a bug must not end the stream
            return Unknown(text[:_PREVIEW_CHARS], f"internal error: {type(exc).__name__}: {exc}")

    def parse(self, frame: bytes | str) -> Incoming:
        """Classify `frame`, raising `FrameDecodeError` or `MessageShapeError` on bad input.

        Well-formed frames that are simply not understood (an unknown `e`, unrecognized text) still come
        back as `Unknown`: they are not errors of the peer, just news to us.
        """
        message = decode_frame(frame, self._max_frame)
        return self._classify(message, _utf8(message))

    def _classify(self, message: bytes, text: str) -> Incoming:
        # Cheap routing first: every data message is a JSON object, control replies are bare or quoted text.
        if message[:1] != b"{":
            stripped = text.strip()
            if not stripped:
                raise FrameDecodeError("empty frame")
            if stripped[0] != "{":
                return self._control_text(stripped, text)
        try:
            wire = self._data_decoder.decode(message)
        except msgspec.ValidationError as data_error:
            return self._non_data(message, text, data_error)
        except msgspec.DecodeError as exc:
            raise FrameDecodeError(f"frame is not JSON: {exc}") from None
        except RecursionError:  # msgspec's answer to absurd nesting (found by tests/fuzz)
            raise FrameDecodeError("frame is nested too deeply") from None
        # clip_raw, written out: a call per frame costs more than the test
        return DataEvents(wire.normalize(self, text if len(text) <= RAW_LIMIT else ClippedRaw(text)))

    @staticmethod
    def _control_text(stripped: str, text: str) -> Incoming:
        reply = stripped
        if stripped[0] == '"':  # the document shows the replies JSON-quoted; accept both spellings
            try:
                reply = msgspec.json.decode(stripped, type=str)
            except msgspec.DecodeError as exc:
                raise FrameDecodeError(f"frame is neither a control reply nor JSON: {exc}") from None
        if reply in _CONTROL_REPLIES:
            return ControlReply(reply)
        refusal = read_text_refusal(reply)  # a plain-text refusal ("token invalid"): docs/client.md
        if refusal is not None:
            return ErrorReply(refusal.code, refusal.message, refusal.transient)
        return Unknown(text[:_PREVIEW_CHARS], "unrecognized text frame")

    def _non_data(self, message: bytes, text: str, data_error: msgspec.ValidationError) -> Incoming:
        try:
            envelope = self._envelope_decoder.decode(message)
        except msgspec.ValidationError as exc:
            raise MessageShapeError(f"malformed message: {exc}", field=failure(exc).at) from None
        except msgspec.DecodeError as exc:  # the data decoder stopped at the shape before the syntax
            raise FrameDecodeError(f"frame is not JSON: {exc}") from None
        except RecursionError:
            raise FrameDecodeError("frame is nested too deeply") from None
        if envelope.e is not None:
            if isinstance(envelope.e, str) and envelope.e in _EVENT_TYPES:
                raise MessageShapeError(f"malformed {envelope.e}: {data_error}", field=failure(data_error).at)
            return Unknown(text[:_PREVIEW_CHARS], f"unknown event type {repr(envelope.e)[:64]}")
        if envelope.ping is not None:
            return Ping(_convert(envelope.ping, _Millis, "$.ping"))
        if envelope.pong is not None:
            return Pong(_convert(envelope.pong, _Millis, "$.pong"))
        if envelope.channel == "SYSTEM" and envelope.et == "close":
            return SystemClose(_convert(envelope.uid, _Millis | None, "$.uid"))
        return self._other_reply(message, text)

    def _other_reply(self, message: bytes, text: str) -> Incoming:
        """A JSON object of none of the known kinds: a refusal in any shape (our emulator's
        {"event":"error","code":..,"message":..} as much as an exchange's {"code":"10002","msg":..}: see
        protocol.refusal), a control reply wrapped in JSON ({"code":0,"msg":"sub success"}), or news to us."""
        obj = self._object_decoder.decode(message)  # the envelope decoded it: an object, valid JSON
        refusal = read_refusal(obj)
        if refusal is not None:
            return ErrorReply(refusal.code, refusal.message, refusal.transient)
        for value in obj.values():
            if isinstance(value, str) and value.strip() in _CONTROL_REPLIES:
                return ControlReply(value.strip())
        return Unknown(text[:_PREVIEW_CHARS], "unrecognized message (no known keys)")
