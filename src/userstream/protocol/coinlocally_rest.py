"""Coinlocally's signed REST snapshot of one account, sans-I/O: balances and open orders, in both directions.

This module owns the signing rule (and, for the emulator, the reading and verifying of signed headers), the
two requests a resync makes and the judgement of their replies into normalized events marked
`source=snapshot`. The emulator's reading of the openOrders query and its replies and errors are rendered by
`protocol.coinlocally_rest_render`. Coinlocally's stream document names no REST API; these follow the
exchange's ChainUp-style spot API, which copies Binance's shapes (docs/server.md records every choice):

    GET /sapi/v1/account                      {"balances":[{"asset":"BTC","free":"0.1","locked":"0"}]}
    GET /sapi/v1/openOrders?symbol=BTCUSDT&limit=1000
        [{"orderId":2690536306533246156,"orderIdString":"2690536306533246156","symbol":"BTCUSDT",
          "price":"13000","origQty":"1","executedQty":"0.17861112","cummulativeQuoteQty":"2321.94456",
          "status":"PART_FILLED","type":"LIMIT","side":"SELL","time":1745389507000}]
    errors                                    {"code":-1022,"msg":"signature for this request is not valid"}

Every request is signed: `X-CH-APIKEY` (the api key), `X-CH-TS` (milliseconds since the epoch) and
`X-CH-SIGN`, the lowercase hex HMAC-SHA256 with the secret key over timestamp + METHOD + request path
(with its query string) + body, exactly as the exchange's worked example computes it. The secret key only
ever enters `hmac`: no repr, message or error carries it. Orders are normalized by protocol.coinlocally's
own execution-report rules (status, type and side words, symbol splitting) and rendered with
protocol.coinlocally_render's words, imported rather than copied, so an order read here equals the same
order read from the stream. No I/O,
no clock: times come in as arguments.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Final, NoReturn
from urllib.parse import quote, urlencode

import msgspec

from userstream.errors import (
    AuthenticationError,
    ConfigurationError,
    ExchangeError,
    FrameDecodeError,
    LocalProtocolError,
    MessageShapeError,
    RateLimitedError,
    RemoteProtocolError,
    TransportError,
)
from userstream.events import BalanceUpdate, Exchange, OrderUpdate, Source
from userstream.money import checked
from userstream.protocol.coinlocally import (  # the stream's own rules: one truth per exchange
    Parser,
    _ExecutionReport,
)
from userstream.protocol.coinlocally_render import _wire_symbol
from userstream.protocol.messages import impossible_balance
from userstream.protocol.snapshot import SnapshotArguments, SnapshotPlan, SnapshotWire, UrlCheck
from userstream.protocol.symbols import DEFAULT_QUOTES
from userstream.validation import failure

__all__ = [
    "ACCOUNT_PATH",
    "DEFAULT_OPEN_ORDERS_LIMIT",
    "ERR_BAD_PARAMETER",
    "ERR_BAD_SIGNATURE",
    "ERR_INVALID_API_KEY",
    "ERR_TIMESTAMP_OUTSIDE_WINDOW",
    "ERR_TOO_MANY_REQUESTS",
    "HEADER_API_KEY",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "MAX_OPEN_ORDERS_LIMIT",
    "OPEN_ORDERS_PATH",
    "SNAPSHOT",
    "TIMESTAMP_WINDOW_MS",
    "Credentials",
    "HttpRequest",
    "SignedHeaders",
    "account_request",
    "open_orders_request",
    "parse_account_response",
    "parse_open_orders_response",
    "sign",
    "signed_headers",
    "signed_request",
    "verify",
    "wire_symbol",
]

ACCOUNT_PATH: Final = "/sapi/v1/account"
OPEN_ORDERS_PATH: Final = "/sapi/v1/openOrders"
HEADER_API_KEY: Final = "X-CH-APIKEY"
HEADER_TIMESTAMP: Final = "X-CH-TS"
HEADER_SIGNATURE: Final = "X-CH-SIGN"
#: How far X-CH-TS may be from the server's clock, either way (ours; Binance's recvWindow default is 5 s,
#: which a loaded client misses; 30 s still makes a captured request useless half a minute later).
TIMESTAMP_WINDOW_MS: Final = 30_000
#: openOrders lists at most `limit` orders: 100 unless asked, at most 1000 (ChainUp's numbers).
DEFAULT_OPEN_ORDERS_LIMIT: Final = 100
MAX_OPEN_ORDERS_LIMIT: Final = 1000
MAX_SYMBOL_LENGTH: Final = 64

# Error codes in Binance's numbering, which ChainUp-style APIs share; the {"code","msg"} shape too.
ERR_TOO_MANY_REQUESTS: Final = -1003
ERR_TIMESTAMP_OUTSIDE_WINDOW: Final = -1021
ERR_BAD_SIGNATURE: Final = -1022
ERR_BAD_PARAMETER: Final = -1102
ERR_INVALID_API_KEY: Final = -2015

_MESSAGE_LIMIT = 200

# --- credentials, signing, requests (client side) -----------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class Credentials:
    """An api key and the secret key that signs its requests. The repr names them, never shows them."""

    api_key: str
    secret_key: str

    def __post_init__(self) -> None:
        for name in ("api_key", "secret_key"):
            value = getattr(self, name)
            # Refusing control characters keeps a credential from smuggling extra HTTP header lines.
            if not isinstance(value, str) or not value or not value.isprintable():
                raise ConfigurationError(f"the Coinlocally {name} must be a non-empty printable string")

    def __repr__(self) -> str:
        return "Credentials(api_key=<hidden>, secret_key=<hidden>)"


@dataclass(frozen=True, slots=True, repr=False)
class HttpRequest:
    """One signed request, as values. Its repr shows header names only."""

    method: str
    path: str  # with its query string: exactly what was signed
    headers: dict[str, str]
    body: bytes = b""

    def __repr__(self) -> str:
        names = ", ".join(f"{name!r}: <hidden>" for name in self.headers)
        return (
            f"HttpRequest(method={self.method!r}, path={self.path!r}, headers={{{names}}}, "
            f"body=<{len(self.body)} bytes>)"
        )


def sign(
    secret_key: str, timestamp: int | str, method: str, request_path: str, body: bytes | str = b""
) -> str:
    """X-CH-SIGN: hex HMAC-SHA256(secret_key, timestamp + METHOD + request path with query + body)."""
    payload = f"{timestamp}{method.upper()}{request_path}".encode() + (
        body.encode() if isinstance(body, str) else body
    )
    return hmac.new(secret_key.encode(), payload, hashlib.sha256).hexdigest()


def signed_request(
    creds: Credentials,
    method: str,
    path: str,
    *,
    now_ms: int,
    query: Mapping[str, str] | None = None,
    body: bytes = b"",
) -> HttpRequest:
    """A request signed at `now_ms`. The query is percent-encoded once, here, so the path signed is the path
    sent: a server recomputes the signature over the request target as it arrives."""
    request_path = path if not query else f"{path}?{urlencode(query, quote_via=quote, safe='')}"
    headers = {
        HEADER_API_KEY: creds.api_key,
        HEADER_TIMESTAMP: str(now_ms),
        HEADER_SIGNATURE: sign(creds.secret_key, now_ms, method, request_path, body),
    }
    if body:
        headers["Content-Type"] = "application/json"
    return HttpRequest(method.upper(), request_path, headers, body)


def account_request(creds: Credentials, *, now_ms: int) -> HttpRequest:
    """Every balance of the account."""
    return signed_request(creds, "GET", ACCOUNT_PATH, now_ms=now_ms)


def open_orders_request(
    creds: Credentials, symbol: str, *, now_ms: int, limit: int = MAX_OPEN_ORDERS_LIMIT
) -> HttpRequest:
    """The open orders of one symbol, written as Coinlocally writes it ("BTCUSDT")."""
    _check_symbol(symbol)
    if not 1 <= limit <= MAX_OPEN_ORDERS_LIMIT:
        raise LocalProtocolError(f"limit must be in 1..{MAX_OPEN_ORDERS_LIMIT}, not {limit}")
    return signed_request(
        creds, "GET", OPEN_ORDERS_PATH, now_ms=now_ms, query={"symbol": symbol, "limit": str(limit)}
    )


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

_Millis = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_NumericOrderId = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class _Balance(msgspec.Struct, frozen=True, gc=False):
    asset: str
    free: Decimal  # msgspec builds the Decimal from the wire text itself, string or number
    locked: Decimal


class _Account(msgspec.Struct, frozen=True, gc=False):
    balances: list[_Balance]  # other keys (permissions, commissions) are skipped unread


class _Order(msgspec.Struct, frozen=True, gc=False):
    orderId: str | _NumericOrderId  # noqa: N815 - the wire's own names
    symbol: str
    side: str
    type: str
    status: str
    origQty: Decimal  # noqa: N815
    executedQty: Decimal  # noqa: N815
    price: Decimal | None = None
    cummulativeQuoteQty: Decimal | None = None  # noqa: N815 - Binance's spelling
    time: _Millis | None = None
    orderIdString: str | None = None  # noqa: N815 - ChainUp's exact id next to a numeric orderId


class _Error(msgspec.Struct, frozen=True, gc=False):
    code: Any = None
    msg: Any = None


_ACCOUNT_DECODER: Final = msgspec.json.Decoder(_Account)
_ORDERS_DECODER: Final = msgspec.json.Decoder(list[_Order])
_ERROR_DECODER: Final = msgspec.json.Decoder(_Error)

# The execution report's field names, as protocol.coinlocally names them in errors -> the REST names.
_REPORT_FIELDS: Final[Mapping[str, str]] = {
    "$.S": "side",
    "$.q": "origQty",
    "$.z": "executedQty",
    "$.p": "price",
    "$.Z": "cummulativeQuoteQty",
}


def parse_account_response(
    status: int, body: bytes, *, account: str, timestamp: int
) -> tuple[BalanceUpdate, ...]:
    """The balances of an account reply, stamped `timestamp` (when the snapshot was requested) and marked
    `source=snapshot`; a typed error otherwise."""
    _judge(status, body)
    reply: _Account = _decode(_ACCOUNT_DECODER, status, body)
    balances: list[BalanceUpdate] = []
    for index, entry in enumerate(reply.balances):
        with _indexed(f"$.balances[{index}]"):
            balances.append(
                BalanceUpdate(
                    exchange=Exchange.COINLOCALLY,
                    account=account,
                    timestamp=timestamp,
                    asset=entry.asset,
                    free=_balance(entry.free, "free"),
                    locked=_balance(entry.locked, "locked"),
                    source=Source.SNAPSHOT,
                )
            )
    return tuple(balances)


def parse_open_orders_response(
    status: int,
    body: bytes,
    *,
    account: str,
    timestamp: int,
    quotes: Iterable[str] = DEFAULT_QUOTES,
    limit: int | None = None,
) -> tuple[OrderUpdate, ...]:
    """The orders of an openOrders reply, normalized by the stream's execution-report rules, stamped
    `timestamp` and marked `source=snapshot`; a typed error otherwise.

    `limit` is the limit the request asked for: a reply that fills it may have left orders out, and a
    snapshot that misses open orders would report them gone, so that is a `RemoteProtocolError`.
    """
    _judge(status, body)
    entries: list[_Order] = _decode(_ORDERS_DECODER, status, body)
    if limit is not None and len(entries) >= limit:
        raise RemoteProtocolError(
            f"Coinlocally listed {len(entries)} open orders, the request's whole limit: the list may be "
            "incomplete, so it cannot serve as a snapshot"
        )
    parser = Parser(account=account, quotes=quotes)
    orders: list[OrderUpdate] = []
    for index, entry in enumerate(entries):
        report = _ExecutionReport(
            event_time=timestamp,
            side=entry.side,
            symbol=entry.symbol,
            status=entry.status,
            order_id=entry.orderIdString if entry.orderIdString is not None else entry.orderId,
            order_type=entry.type,
            amount=entry.origQty,
            filled=entry.executedQty,
            price=entry.price,
            cost=entry.cummulativeQuoteQty,
            created_at=entry.time,
        )
        with _indexed(f"$[{index}]"):
            (order,) = report.normalize(parser, "")
        assert isinstance(order, OrderUpdate)  # noqa: S101 - narrowing: a report makes one order
        orders.append(msgspec.structs.replace(order, source=Source.SNAPSHOT))
    return tuple(orders)


def _judge(status: int, body: bytes) -> None:
    """Return on a 2xx; otherwise raise the error the status and the {"code","msg"} body mean."""
    if 200 <= status < 300:
        return
    code, text = _error_of(body)
    _raise_error(status, code, text)


def _error_of(body: bytes) -> tuple[int | None, str]:
    """The code and msg of an error body, as far as it has them."""
    try:
        error = _ERROR_DECODER.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return None, ""
    code = error.code if type(error.code) is int else None  # bool is an int subclass and is no code
    return code, error.msg if isinstance(error.msg, str) else ""


def _raise_error(status: int, code: int | None, text: str) -> NoReturn:
    detail = f"HTTP {status}" + ("" if code is None else f", code {code}")
    shown = f": {text[:_MESSAGE_LIMIT]}" if text else ""
    if status == 429 or code == ERR_TOO_MANY_REQUESTS:
        raise RateLimitedError(f"Coinlocally limited the request ({detail}){shown}")
    if code == ERR_BAD_SIGNATURE:
        raise AuthenticationError(
            f"Coinlocally refused the request signature ({detail}){shown}",
            rejected="secret key",
            status=status,
        )
    if status in (401, 403) or code == ERR_INVALID_API_KEY:
        raise AuthenticationError(
            f"Coinlocally refused the api key ({detail}){shown}", rejected="api key", status=status
        )
    if code == ERR_TIMESTAMP_OUTSIDE_WINDOW:
        raise ExchangeError(
            f"Coinlocally refused the request's timestamp ({detail}){shown}; is this machine's clock right?",
            code=code,
            status=status,
        )
    if status >= 500:
        raise TransportError(f"Coinlocally answered {detail}{shown}")
    raise ExchangeError(f"Coinlocally refused the request ({detail}){shown}", code=code, status=status)


def _decode(decoder: msgspec.json.Decoder[Any], status: int, body: bytes) -> Any:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        code, text = _error_of(body)
        if code is not None and code != 0:  # an error sent with a 2xx status, as some ChainUp gateways do
            _raise_error(status, code, text)
        raise MessageShapeError(
            f"malformed Coinlocally snapshot reply: {str(exc)[:300]}", field=failure(exc).path
        ) from None
    except msgspec.DecodeError as exc:
        raise FrameDecodeError(f"Coinlocally snapshot reply is not JSON: {exc}") from None
    except RecursionError:
        raise FrameDecodeError("Coinlocally snapshot reply is nested too deeply") from None


def _money(value: Decimal, field: str) -> Decimal:
    try:
        return checked(value)
    except ValueError as exc:
        raise MessageShapeError(f"{field}: {exc}", field=f"$.{field}") from None


def _balance(value: Decimal, field: str) -> Decimal:
    """A balance's money value, refused when negative as the stream refuses it (docs/events.md)."""
    error = impossible_balance((f"$.{field}", _money(value, field)))
    if error is not None:
        raise error
    return value


@contextmanager
def _indexed(prefix: str) -> Iterator[None]:
    """Re-point a MessageShapeError about one item's field to its place in the reply."""
    try:
        yield
    except MessageShapeError as exc:
        field = exc.field or "$"
        name = _REPORT_FIELDS.get(field, field.removeprefix("$."))
        where = prefix if name in ("", "$") else f"{prefix}.{name}"
        raise MessageShapeError(f"{where}: {exc}", field=where) from None


# --- the signature, read back and verified (server side) ----------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class SignedHeaders:
    """What a signed request carries, as sent. The repr hides it all."""

    api_key: str
    timestamp: str
    signature: str

    def __repr__(self) -> str:
        return "SignedHeaders(api_key=<hidden>, timestamp=<hidden>, signature=<hidden>)"

    @property
    def timestamp_ms(self) -> int | None:
        """X-CH-TS as milliseconds, or None when it is not a plain non-negative integer."""
        text = self.timestamp
        if not (text.isascii() and text.isdigit()) or len(text) > 19:
            return None
        return int(text)


def signed_headers(headers: Mapping[str, str]) -> SignedHeaders | None:
    """Server side: the three X-CH headers (names case-insensitive), or None unless all are present."""
    found: dict[str, str] = {}
    wanted = {HEADER_API_KEY.lower(), HEADER_TIMESTAMP.lower(), HEADER_SIGNATURE.lower()}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in wanted:
            found[lowered] = value.strip()
    api_key = found.get(HEADER_API_KEY.lower())
    timestamp = found.get(HEADER_TIMESTAMP.lower())
    signature = found.get(HEADER_SIGNATURE.lower())
    if not api_key or not timestamp or not signature:
        return None
    return SignedHeaders(api_key=api_key, timestamp=timestamp, signature=signature)


def verify(secret_key: str, signed: SignedHeaders, method: str, request_path: str, body: bytes) -> bool:
    """Server side: whether the signature is the secret key's over this request (constant-time)."""
    expected = sign(secret_key, signed.timestamp, method, request_path, body)
    return hmac.compare_digest(expected.encode(), signed.signature.lower().encode("utf-8", "replace"))


# --- the snapshot as resync takes it (protocol.snapshot, named by the registry) ---------------------------


def wire_symbol(order: OrderUpdate) -> str:
    """The symbol Coinlocally writes for this order ("BTCUSDT"): what openOrders' `symbol` names."""
    return _wire_symbol(order)


def _snapshot_plan(given: SnapshotArguments, check_url: UrlCheck) -> SnapshotPlan | str:
    """Coinlocally's snapshots are signed with the api key's secret key and go to `snapshot_rest_url` (the
    stream document names no REST API, so there is no default): without either, none is taken."""
    api_key, secret_key, rest_url = given.api_key, given.secret_key, given.snapshot_rest_url
    if secret_key is not None and api_key is None:
        raise ConfigurationError(
            "a Coinlocally secret_key signs requests made with its api_key, and a token cannot sign: "
            "connect with the api_key instead of the token"
        )
    credentials = (
        None
        if api_key is None or secret_key is None
        else Credentials(api_key=api_key, secret_key=secret_key)  # validated now
    )
    if rest_url is not None:
        check_url(rest_url, ("https", "http"), "the Coinlocally snapshot REST URL")
    missing = [
        name
        for name, value in (("api_key", api_key), ("secret_key", secret_key), ("snapshot_rest_url", rest_url))
        if value is None
    ]
    if missing or credentials is None or rest_url is None:
        return (
            "Coinlocally snapshots need an api_key with its secret_key and a snapshot_rest_url "
            f"(missing: {', '.join(missing)}); events lost while disconnected stay lost"
        )
    return SnapshotPlan(credentials, rest_url)


def _parse_account(status: int, body: bytes, account: str, timestamp: int) -> tuple[BalanceUpdate, ...]:
    return parse_account_response(status, body, account=account, timestamp=timestamp)


def _open_orders_request(creds: Credentials, symbol: str, now_ms: int) -> HttpRequest:
    return open_orders_request(creds, symbol, now_ms=now_ms, limit=MAX_OPEN_ORDERS_LIMIT)


def _parse_open_orders(
    status: int, body: bytes, account: str, timestamp: int, quotes: tuple[str, ...]
) -> tuple[OrderUpdate, ...]:
    return parse_open_orders_response(
        status, body, account=account, timestamp=timestamp, quotes=quotes, limit=MAX_OPEN_ORDERS_LIMIT
    )


SNAPSHOT: Final = SnapshotWire(
    plan=_snapshot_plan,
    balances_request=lambda creds, now_ms: account_request(creds, now_ms=now_ms),
    parse_balances=_parse_account,
    open_orders_request=_open_orders_request,
    parse_open_orders=_parse_open_orders,
    wire_symbol=wire_symbol,
    configured_symbol=lambda symbol: symbol.replace("/", ""),  # "BTC/USDT" is written "BTCUSDT"
)
