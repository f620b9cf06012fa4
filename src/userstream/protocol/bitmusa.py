"""Everything about Bitmusa's wire, in both directions, without I/O: the whole truth in one file.

It owns the listenKey REST shapes (requests to build, replies to judge, and the server's replies to render),
the WebSocket path, the classification of every incoming text frame into normalized events, and the
rendering of normalized events back into the exact frames the exchange document shows. It must not touch
sockets, asyncio, HTTP clients or clocks: callers pass bytes (and time) in and take values out. The
wire is described by tables (endpoints, stream name -> wire type, status/type/side words), so a change
to the wire is a change to a table.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Final, TypeVar
from urllib.parse import quote

import msgspec

from userstream.errors import (
    AuthenticationError,
    ConfigurationError,
    EndpointNotFoundError,
    ExchangeError,
    FrameDecodeError,
    ListenKeyInvalidError,
    LocalProtocolError,
    MessageShapeError,
    RateLimitedError,
    TransportError,
    UserStreamError,
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
    clip_raw,
)
from userstream.money import MAX_DIGITS, checked, exact_sub
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
from userstream.protocol.refusal import read_refusal, reply_text, scrub
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
    "Credentials",
    "HttpRequest",
    "ListenKeyAction",
    "Parser",
    "close_listen_key_request",
    "create_listen_key_request",
    "credentials_from_headers",
    "keepalive_request",
    "parse_ack_response",
    "parse_listen_key_response",
    "render_error",
    "render_event",
    "render_listen_key",
    "render_ok",
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

# Which end-time field a terminal status fills in when rendering (the document shows both, null while open).
_END_TIME_FIELD: dict[OrderStatus, str] = {
    OrderStatus.CLOSED: "completedTime",
    OrderStatus.CANCELED: "canceledTime",
    OrderStatus.EXPIRED: "canceledTime",
}

#: How much of an unclassifiable frame `Unknown.raw` keeps, in characters.
UNKNOWN_RAW_LIMIT = 512
_REASON_LIMIT = 300

# --- credentials and REST requests ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class Credentials:
    """The two secrets every listenKey request carries. Its repr names them and never shows them."""

    api_key: str
    auth_key: str

    def __post_init__(self) -> None:
        for name in ("api_key", "auth_key"):
            value = getattr(self, name)
            # Refusing control characters keeps a secret from smuggling extra HTTP header lines.
            if not isinstance(value, str) or not value or not value.isprintable():
                raise ConfigurationError(f"Bitmusa {name} must be a non-empty printable string")

    def __repr__(self) -> str:
        return "Credentials(api_key=<hidden>, auth_key=<hidden>)"


@dataclass(frozen=True, slots=True, repr=False)
class HttpRequest:
    """One HTTP request to send, as values. Its repr shows header names only: the values are secrets."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""

    def url(self, base: str = REST_BASE) -> str:
        return base.rstrip("/") + self.path

    def __repr__(self) -> str:
        names = ", ".join(f"{name!r}: <hidden>" for name in self.headers)
        return (
            f"HttpRequest(method={self.method!r}, path={self.path!r}, headers={{{names}}}, "
            f"body=<{len(self.body)} bytes>)"
        )


def _auth_headers(creds: Credentials) -> dict[str, str]:
    return {"Authorization": f"Bearer {creds.auth_key}", "x-api-key": creds.api_key}


def _listen_key_request(action: ListenKeyAction, creds: Credentials) -> HttpRequest:
    method, path = ENDPOINTS[action]
    return HttpRequest(method, path, _auth_headers(creds))


def create_listen_key_request(creds: Credentials) -> HttpRequest:
    return _listen_key_request(ListenKeyAction.CREATE, creds)


def keepalive_request(creds: Credentials) -> HttpRequest:
    return _listen_key_request(ListenKeyAction.KEEPALIVE, creds)


def close_listen_key_request(creds: Credentials) -> HttpRequest:
    return _listen_key_request(ListenKeyAction.CLOSE, creds)


def ws_path(listen_key: str) -> str:
    """The WebSocket path of a listenKey. The key is percent-quoted: it comes from the wire."""
    if not listen_key:
        raise LocalProtocolError("an empty listenKey has no stream path")
    return WS_PATH_PREFIX + quote(listen_key, safe="")


def ws_url(listen_key: str, base: str = WS_BASE) -> str:
    return base.rstrip("/") + ws_path(listen_key)


# --- REST replies ---------------------------------------------------------------------------------

_REPLY_DECODER = msgspec.json.Decoder(dict[str, Any])
#: Longest listenKey accepted from a reply; the document's is 44 characters.
_LISTEN_KEY_LIMIT = 512

_ErrorFactory = Callable[[str, int], UserStreamError]


def _unauthorized(message: str, status: int) -> UserStreamError:
    return AuthenticationError(message, rejected="listenKey request", status=status)


def _rate_limited(message: str, status: int) -> UserStreamError:
    return RateLimitedError(message)


def _listen_key_invalid(message: str, status: int) -> UserStreamError:
    return ListenKeyInvalidError(message)


#: reply `code` -> the error it means. Any other non-zero code is an ExchangeError carrying the code.
_ERRORS_BY_CODE: dict[int, _ErrorFactory] = {
    ERR_UNAUTHORIZED: _unauthorized,
    ERR_RATE_LIMITED: _rate_limited,
    ERR_LISTEN_KEY_NOT_FOUND: _listen_key_invalid,
}
#: HTTP status -> the error it means, whatever the body says.
_ERRORS_BY_STATUS: dict[int, _ErrorFactory] = {
    401: _unauthorized,
    403: _unauthorized,
    429: _rate_limited,
}


def parse_listen_key_response(
    status: int, body: bytes, *, request: HttpRequest | None = None, url: str = ""
) -> str:
    """The listenKey of a create (POST) reply; a typed error naming what was wrong otherwise.

    With the `request` that was sent and the `url` it went to (scheme, host, path: nothing secret),
    errors name the method and URL, quote the server's text with the request's credentials scrubbed out,
    and a 404 is an `EndpointNotFoundError` (see `_judge_reply`)."""
    reply = _judge_reply(status, body, request=request, url=url)
    data = reply.get("data")
    if not isinstance(data, dict):
        raise MessageShapeError("listenKey reply has no `data` object", field="$.data")
    key = data.get("listenKey")
    if not isinstance(key, str) or not key or len(key) > _LISTEN_KEY_LIMIT:
        raise MessageShapeError(
            "listenKey reply has no usable `data.listenKey` string", field="$.data.listenKey"
        )
    return key


def parse_ack_response(
    status: int, body: bytes, *, request: HttpRequest | None = None, url: str = ""
) -> None:
    """Judge a keep-alive (PUT) or close (DELETE) reply: return on success, raise a typed error otherwise."""
    _judge_reply(status, body, request=request, url=url)


def _judge_reply(
    status: int, body: bytes, *, request: HttpRequest | None = None, url: str = ""
) -> dict[str, Any]:
    """The HTTP status first, the body second (docs/client.md, "Refusals"): 401/403 is a refused
    credential and 429 a rate limit whatever the body; a body that is not JSON is an error naming the
    status (a 404 of a known request: `EndpointNotFoundError`, 5xx: transient); a JSON object that refuses
    (`protocol.refusal`: a non-zero `code`, `success: false`, an `error`...) is the error its code means,
    else an `ExchangeError` quoting code and text; a 2xx that refuses nothing is the reply."""
    where = f"{request.method} {url}: " if request is not None and url else ""
    secrets = _secrets_of(request)
    try:
        reply: dict[str, Any] | None = _REPLY_DECODER.decode(body)
        shape_error = None
    except msgspec.ValidationError:
        # JSON of another type, or text that only starts like a number ("404: Not Found")
        reply, shape_error = None, ("not a JSON object" if _is_json(body) else None)
    except msgspec.DecodeError:
        reply, shape_error = None, None
    except RecursionError:
        raise FrameDecodeError(f"{where}Bitmusa reply (HTTP {status}) is nested too deeply") from None
    refusal = read_refusal(reply) if reply is not None else None
    text = reply_text(reply) if reply is not None and secrets else ""  # quoted only when it can be scrubbed
    said = f": {_clip(scrub(text, secrets))}" if text else ""
    by_status = _ERRORS_BY_STATUS.get(status)
    if by_status is not None:
        raise by_status(f"{where}Bitmusa answered HTTP {status}{said}", status)
    not_found = status == 404 and request is not None and bool(url)
    expected = "" if request is None else request.path
    if reply is None:
        if shape_error is not None:
            raise MessageShapeError(f"{where}Bitmusa reply is not a JSON object", field="$")
        raise _not_json(status, body, where, url=url if not_found else "", expected=expected)
    code = reply.get("code")
    if code is not None and type(code) is not int and not isinstance(code, str):  # bool, float, object
        raise MessageShapeError(f"{where}Bitmusa reply has no integer or text `code`", field="$.code")
    if refusal is not None and not (not_found and refusal.code != ERR_LISTEN_KEY_NOT_FOUND):
        shown = f", code {refusal.code}" if refusal.code is not None else ""
        text = f": {_clip(scrub(refusal.message, secrets))}" if refusal.message else ""
        message = f"{where}Bitmusa refused the request (HTTP {status}{shown}){text}"
        number = refusal.code if isinstance(refusal.code, int) else None
        by_code = _ERRORS_BY_CODE.get(number) if number is not None else None
        if by_code is not None:
            raise by_code(message, status)
        if status >= 500 and number is None:
            raise TransportError(message)
        raise ExchangeError(message, code=number, status=status)
    if not_found:
        raise EndpointNotFoundError(
            f"{where}HTTP 404: no Bitmusa endpoint at this URL", url=url, expected=expected
        )
    if not 200 <= status < 300:
        if code is None and status >= 500:
            raise TransportError(f"{where}Bitmusa answered HTTP {status} without a reply code")
        with_code = "without a reply code" if code is None else f"with code {code}"
        raise ExchangeError(f"{where}Bitmusa answered HTTP {status} {with_code}", code=0, status=status)
    return reply


def _not_json(status: int, body: bytes, where: str, *, url: str, expected: str) -> UserStreamError:
    """The error for a reply whose body is not JSON: it says the status and what the body looks like."""
    kind = _body_kind(body)
    if url:  # a 404 of a known request
        return EndpointNotFoundError(
            f"{where}HTTP 404 with {kind}: no Bitmusa endpoint at this URL", url=url, expected=expected
        )
    if status >= 500:
        return TransportError(f"{where}Bitmusa answered HTTP {status} without a JSON body ({kind})")
    return FrameDecodeError(f"{where}Bitmusa reply (HTTP {status}) is not JSON ({kind})")


def _is_json(body: bytes) -> bool:
    try:
        msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return False
    return True


def _secrets_of(request: HttpRequest | None) -> tuple[str, ...]:
    """The credentials a request carries (its header values, and a bearer token without its prefix)."""
    if request is None:
        return ()
    values = tuple(request.headers.values())
    return values + tuple(value.removeprefix("Bearer ") for value in values if value.startswith("Bearer "))


def _body_kind(body: bytes) -> str:
    """What a body that is not JSON looks like, without quoting it."""
    head = body.lstrip()[:64].lower()
    if not head:
        return "an empty body"
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in head:
        return "an HTML page"
    return f"a {len(body)}-byte body that is not JSON"


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


# --- the server side: rendering -------------------------------------------------------------------
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


def credentials_from_headers(headers: Mapping[str, str]) -> Credentials | None:
    """Server side: the credentials a listenKey request carries, or None when either is absent or malformed.

    Header names are case-insensitive (HTTP); so is the "Bearer" scheme (RFC 7235).
    """
    authorization = api_key = None
    for name, value in headers.items():
        lowered = name.lower()
        if lowered == "authorization":
            authorization = value
        elif lowered == "x-api-key":
            api_key = value
    if authorization is None or not api_key:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        return Credentials(api_key=api_key.strip(), auth_key=token)
    except ConfigurationError:
        return None
