"""Everything about Coinlocally's private spot stream on the wire, in both directions, sans-I/O.

This module owns the Coinlocally wire and nothing else: the WebSocket URL, the handshake headers (`token`
or `api-key`), the subscribe, ping and pong frames, the classification of every incoming frame (text or
binary, gzip or plain) into `protocol.messages.Incoming`, and, for the exchange-side emulator, rendering
normalized events back into the document's gzip-compressed, Binance-style one-letter-key JSON and parsing
the client's own frames. It is built from tables (the `e` -> wire type registry, the status, type and side
maps) and holds no socket, task, clock or HTTP client: time comes in as arguments.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Final, Union

import msgspec

from userstream.errors import (
    ConfigurationError,
    FrameDecodeError,
    LocalProtocolError,
    MessageShapeError,
    RemoteProtocolError,
)
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
from userstream.protocol.codec import DEFAULT_MAX_FRAME, decode_frame, gzip_bytes
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
    "Credentials",
    "Parser",
    "PingRequest",
    "SubRequest",
    "credentials_from_headers",
    "handshake_headers",
    "parse_client_frame",
    "ping_frame",
    "pong_frame",
    "render_balances",
    "render_error",
    "render_event",
    "render_message",
    "render_pong",
    "render_system_close",
    "sub_frame",
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

# Enum members bound once: on CPython 3.11 a member looked up on its class (`Exchange.COINLOCALLY`) costs
# several times a module constant's load, and every event names two or three.
_COINLOCALLY: Final = Exchange.COINLOCALLY
_STREAM: Final = Source.STREAM
_LIMIT: Final = OrderType.LIMIT

_Millis = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_NumericOrderId = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]

# --- credentials and client frames ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class Credentials:
    """A Coinlocally credential: a login `token` or an `api_key`, exactly one. The repr never shows it."""

    token: str | None = None
    api_key: str | None = None

    def __post_init__(self) -> None:
        given = [name for name in ("token", "api_key") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ConfigurationError(
                "Coinlocally needs exactly one credential: a token or an api_key "
                f"(got {' and '.join(given) or 'neither'})"
            )
        secret = self.secret
        if not secret or any(ord(char) < 0x20 or ord(char) == 0x7F for char in secret):
            # An empty value or a CR/LF would make a broken (or injected) handshake header.
            raise ConfigurationError(f"the Coinlocally {given[0]} is empty or has control characters")

    @property
    def header_name(self) -> str:
        return "token" if self.token is not None else "api-key"

    @property
    def secret(self) -> str:
        """The credential's value: what the handshake header and the sub frame's "token" carry."""
        # __post_init__ guarantees exactly one, non-empty: `or` picks it.
        return self.token or self.api_key or ""

    def __repr__(self) -> str:
        name = "token" if self.token is not None else "api_key"
        return f"Credentials({name}=<hidden>)"


def handshake_headers(creds: Credentials) -> dict[str, str]:
    return {creds.header_name: creds.secret}


_ENCODER: Final = msgspec.json.Encoder()


def sub_frame(creds: Credentials) -> str:
    """The subscribe frame; the document sends the api key in the "token" field too."""
    return _ENCODER.encode({"event": "sub", "token": creds.secret}).decode()


def ping_frame(now_ms: int) -> str:
    return f'{{"ping":{int(now_ms)}}}'


def pong_frame(timestamp: int) -> str:
    return f'{{"pong":{int(timestamp)}}}'


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


# --- the server side: rendering events and parsing the client's frames ----------------------------------


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


def credentials_from_headers(headers: Mapping[str, str]) -> Credentials | None:
    """The handshake credential, from `token` or `api-key` (names case-insensitive); None unless
    exactly one is present and usable."""
    found = {name.lower(): value for name, value in headers.items()}
    token, api_key = found.get("token"), found.get("api-key")
    try:
        return Credentials(token=token, api_key=api_key)
    except ConfigurationError:
        return None


class SubRequest(msgspec.Struct, frozen=True):
    """The client's {"event": "sub", "token": ...}; `token` is the login token or the api key."""

    token: str

    def __repr__(self) -> str:
        return "SubRequest(token=<hidden>)"


class PingRequest(msgspec.Struct, frozen=True):
    """The client's {"ping": n}; the server answers {"pong": ...}."""

    timestamp: int


class _ClientFrame(msgspec.Struct, frozen=True, gc=False):
    event: Any = None
    token: Any = None
    ping: Any = None


_CLIENT_DECODER: Final = msgspec.json.Decoder(_ClientFrame)


def parse_client_frame(frame: bytes | str) -> SubRequest | PingRequest | Unknown:
    """Classify a frame from the client (server side). Bounded to `MAX_CLIENT_FRAME`; never raises."""
    try:
        message = decode_frame(frame, MAX_CLIENT_FRAME)
        _utf8(message)  # msgspec does not check the UTF-8 of keys it skips; a peer's frame must be text
        parsed = _CLIENT_DECODER.decode(message)
    except FrameDecodeError as exc:
        return Unknown(_client_preview(frame), str(exc))
    except msgspec.DecodeError as exc:  # ValidationError included: not a JSON object
        return Unknown(_client_preview(frame), f"not a JSON object: {exc}")
    except RecursionError:  # absurd nesting (found by tests/fuzz)
        return Unknown(_client_preview(frame), "client frame nested too deeply")
    except Exception as exc:  # the contract is "never raises": a bug must not end the connection
        return Unknown(_client_preview(frame), f"internal error: {type(exc).__name__}")
    if parsed.event == "sub":
        if isinstance(parsed.token, str):
            return SubRequest(parsed.token)
        return Unknown(_client_preview(frame), "sub frame without a string token")
    if parsed.ping is not None:
        try:
            return PingRequest(_convert(parsed.ping, _Millis, "$.ping"))
        except MessageShapeError as exc:
            return Unknown(_client_preview(frame), str(exc))
    return Unknown(_client_preview(frame), "unrecognized client frame")


def _client_preview(frame: bytes | str) -> str:
    """A client frame kept for debugging, unless it may carry a credential: secrets never reach logs."""
    preview = _preview(frame)
    if isinstance(frame, bytes) and frame[:2] == b"\x1f\x8b":
        return f"<gzip client frame of {len(frame)} bytes>"  # compressed: cannot tell, so never show
    return "<redacted: mentions a token>" if "token" in preview.lower() else preview
