"""`serve --variant NAME`: plausible alternatives for what the two exchange documents leave open.

The documents are silent on error shapes, close codes, how control replies and pongs travel, whether the
server pings, whether POST extends an active listenKey, and they write numbers both as JSON numbers and as
strings. `userstream serve` answers each open point one way by default (ours, docs/server.md); a variant makes
it answer another plausible way for one run, so that a client (ours, or a user's bot) can be tested against
the exchange we cannot see. docs/server.md, "Variants", lists each with why it is plausible.

This module owns the registry of variants (`VARIANTS`), their parsing and validation (`parse_variants`, which
`ServerConfig` calls), and every wire difference they make, as pure functions of a `Variants` value: the
Coinlocally control, pong and ping frames and refusals, the Bitmusa error bodies (an aiohttp middleware), the
numbers of data frames (a rewrite of a rendered batch); the stream sessions of protocol/ render with these
choices (server/sessions.py hands them over). The rest of the server asks a `Variants` what to send and
never tests a variant name. The wire facts a variant rewrites (decimal keys of data frames and snapshots, an
exchange's paths) come from the registry (protocol/registry.py); the variants of Coinlocally's conversation
(control replies, pings, pongs, refusals) speak `protocol.coinlocally` itself, as the conversation does
(protocol/coinlocally_server.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation
from http import HTTPStatus
from typing import Any, Final

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from userstream.errors import ConfigurationError
from userstream.events import Exchange
from userstream.protocol import coinlocally, registry
from userstream.protocol.codec import DEFAULT_MAX_FRAME, decode_frame, gzip_bytes

__all__ = [
    "DEFAULT_VARIANTS",
    "VARIANTS",
    "Refusal",
    "VariantInfo",
    "Variants",
    "bitmusa_error_middleware",
    "merge_variants",
    "parse_variants",
    "snapshot_numbers_middleware",
    "variant_middlewares",
]


@dataclass(frozen=True, slots=True)
class VariantInfo:
    """One variant: its `group` (at most one variant per group per run), the exchange it concerns (None:
    both), the value it takes (`value_name`, `default`, None: none) and what it does."""

    name: str
    group: str
    exchange: Exchange | None
    summary: str
    value_name: str | None = None
    default: float | None = None


_CL = Exchange.COINLOCALLY
_BM = Exchange.BITMUSA

#: Every variant, by name. docs/server.md has the same list with the reasons (a test keeps them equal).
VARIANTS: Final[Mapping[str, VariantInfo]] = {
    info.name: info
    for info in (
        VariantInfo(
            "coinlocally-refusal-code-msg",
            "coinlocally-refusal",
            _CL,
            'an unknown credential is upgraded; its sub gets {"code":"10002","msg":"token invalid"}, '
            "then a close with CODE (default 4401); a mismatched sub token too",
            value_name="CODE",
            default=4401,
        ),
        VariantInfo(
            "coinlocally-refusal-text",
            "coinlocally-refusal",
            _CL,
            "an unknown credential is upgraded; its sub gets the plain text frame 'token invalid', then a "
            "1000 close; a mismatched sub token too",
        ),
        VariantInfo(
            "coinlocally-refusal-close",
            "coinlocally-refusal",
            _CL,
            "an unknown credential is upgraded; its sub gets no reply, only a close with CODE "
            "(default 1008) and no reason; a mismatched sub token too",
            value_name="CODE",
            default=1008,
        ),
        VariantInfo(
            "coinlocally-control-quoted",
            "coinlocally-control",
            _CL,
            "'connect success' and 'sub success' are JSON strings (\"connect success\"), as the document "
            "prints them",
        ),
        VariantInfo(
            "coinlocally-control-gzip",
            "coinlocally-control",
            _CL,
            "'connect success', 'sub success' and refusal replies are gzip binary frames, like the data",
        ),
        VariantInfo(
            "coinlocally-pong-gzip",
            "coinlocally-pong",
            _CL,
            '{"pong":m} (and the server\'s own pings) are gzip binary frames, like the data',
        ),
        VariantInfo(
            "coinlocally-server-ping",
            "coinlocally-server-ping",
            _CL,
            'the server sends {"ping":now_ms} every SECONDS (default 5); the client\'s {"pong":n} counts '
            "as a heartbeat as well as its own pings",
            value_name="SECONDS",
            default=5.0,
        ),
        VariantInfo(
            "bitmusa-errors-code-msg",
            "bitmusa-errors",
            _BM,
            'error bodies are {"code":<int>,"msg":<text>} (Binance\'s keys) instead of code/message',
        ),
        VariantInfo(
            "bitmusa-errors-html",
            "bitmusa-errors",
            _BM,
            "error bodies are an HTML page saying only the HTTP status, as a proxy in front would send",
        ),
        VariantInfo(
            "bitmusa-post-extends",
            "bitmusa-post",
            _BM,
            "POST on an account with an active listenKey returns it and extends it (as Binance does)",
        ),
        VariantInfo(
            "bitmusa-expired-close",
            "bitmusa-expired-close",
            _BM,
            "a stream whose listenKey lapsed is closed with CODE (default 4401) and reason "
            "'listenKey expired' instead of our 4001",
            value_name="CODE",
            default=4401,
        ),
        VariantInfo(
            "numbers-as-strings",
            "numbers",
            None,
            "every decimal of a data frame is a JSON string (Bitmusa's order price, amount, tradedAmount, "
            "value included)",
        ),
        VariantInfo(
            "numbers-as-numbers",
            "numbers",
            None,
            "every decimal of a data frame is a JSON number (Bitmusa's free/locked and all of Coinlocally's "
            "included)",
        ),
        VariantInfo(
            "numbers-exponent",
            "numbers-exponent",
            None,
            "decimals are written as Java's Double.toString writes them: 2.0E-5 below 0.001 and "
            "1.2345678E7 from 10^7, 13000.0 between (exact digits; strings stay strings, numbers numbers)",
        ),
    )
}

#: The variant set of a default run: none (our own answers everywhere).
DEFAULT_VARIANTS: Final[tuple[str, ...]] = ()

_CLOSE_CODES_ALLOWED = "1000, 1001, 1008, 1011, 1013 or 3000-4999"


def _valid_close_code(code: float) -> bool:
    return code == int(code) and (int(code) in (1000, 1001, 1008, 1011, 1013) or 3000 <= code <= 4999)


@dataclass(frozen=True, slots=True)
class Refusal:
    """How a Coinlocally sub is refused: the reply frame (None: none), then the close code and reason."""

    reply: str | bytes | None
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Variants:
    """The variants of one run, parsed: `values` maps each chosen variant's name to its value (None when
    it takes none). Everything the server sends differently is asked of this object."""

    values: Mapping[str, float | None]

    @property
    def names(self) -> list[str]:
        """The chosen variants as `NAME` or `NAME=VALUE`, sorted: what /healthz and the logs show."""
        return sorted(
            name if value is None else f"{name}={_number_text(value)}" for name, value in self.values.items()
        )

    def __bool__(self) -> bool:
        return bool(self.values)

    def _value(self, name: str) -> float | None:
        return self.values.get(name)

    # --- Coinlocally --------------------------------------------------------------------------------

    @property
    def refuses_after_upgrade(self) -> bool:
        """Whether an unknown Coinlocally credential is upgraded and refused at its sub (else: HTTP 401)."""
        return any(name.startswith("coinlocally-refusal-") for name in self.values)

    def control(self, text: str) -> str | bytes:
        """A control reply ("connect success", "sub success") as this run sends it."""
        if "coinlocally-control-quoted" in self.values:
            return msgspec.json.encode(text).decode()
        if "coinlocally-control-gzip" in self.values:
            return gzip_bytes(text.encode())
        return text

    def pong(self, timestamp: int) -> str | bytes:
        return self._heartbeat(coinlocally.render_pong(timestamp))

    def ping(self, timestamp: int) -> str | bytes:
        return self._heartbeat(coinlocally.ping_frame(timestamp))

    def _heartbeat(self, frame: str) -> str | bytes:
        return gzip_bytes(frame.encode()) if "coinlocally-pong-gzip" in self.values else frame

    @property
    def server_ping_interval(self) -> float | None:
        """Seconds between the server's own {"ping": n} on Coinlocally streams; None: it sends none."""
        return self._value("coinlocally-server-ping")

    def sub_refusal(self, ours: Refusal) -> Refusal:
        """How a refused sub is answered: `ours` unless a refusal variant is chosen."""
        if "coinlocally-refusal-code-msg" in self.values:
            code = int(self._value("coinlocally-refusal-code-msg") or 4401)
            reply = msgspec.json.encode({"code": "10002", "msg": "token invalid"}).decode()
            return Refusal(self._reply(reply), code, "token invalid")
        if "coinlocally-refusal-text" in self.values:
            return Refusal(self._reply("token invalid"), 1000, "")
        if "coinlocally-refusal-close" in self.values:
            return Refusal(None, int(self._value("coinlocally-refusal-close") or 1008), "")
        return Refusal(
            self._reply(ours.reply) if isinstance(ours.reply, str) else ours.reply, ours.code, ours.reason
        )

    def _reply(self, text: str) -> str | bytes:
        return gzip_bytes(text.encode()) if "coinlocally-control-gzip" in self.values else text

    # --- Bitmusa ------------------------------------------------------------------------------------

    @property
    def post_extends(self) -> bool:
        return "bitmusa-post-extends" in self.values

    def expired_close_code(self, ours: int) -> int:
        value = self._value("bitmusa-expired-close")
        return ours if value is None else int(value)

    @property
    def bitmusa_errors(self) -> str:
        """ "ours", "code-msg" or "html"."""
        for shape in ("code-msg", "html"):
            if f"bitmusa-errors-{shape}" in self.values:
                return shape
        return "ours"

    # --- numbers --------------------------------------------------------------------------------------

    @property
    def rewrites_numbers(self) -> bool:
        return any(name.startswith("numbers-") for name in self.values)

    def rewrite_frame(self, exchange: Exchange, frame: str | bytes) -> str | bytes:
        """A rendered data frame with its decimals written as this run writes them (unchanged by default)."""
        if not self.rewrites_numbers:
            return frame
        keys = registry.spec(exchange).data_decimal_keys
        if isinstance(frame, bytes):  # a binary data frame is gzip (Coinlocally's), a text frame plain JSON
            return gzip_bytes(self.rewrite_json(decode_frame(frame, DEFAULT_MAX_FRAME), keys))
        return self.rewrite_json(frame.encode(), keys).decode()

    def rewrite_json(self, message: bytes, keys: frozenset[str]) -> bytes:
        """A JSON document with the values of `keys` (at any depth) written as this run's numbers."""
        document = _DECODER.decode(message)
        style = (
            "strings"
            if "numbers-as-strings" in self.values
            else "numbers"
            if "numbers-as-numbers" in self.values
            else "kept"
        )
        exponent = "numbers-exponent" in self.values
        return _ENCODER.encode(_rewrite(document, keys, style, exponent))


# --- parsing ------------------------------------------------------------------------------------------


def parse_variants(specs: Iterable[str]) -> Variants:
    """`NAME` or `NAME=VALUE` specs into `Variants`; ConfigurationError naming the spec at fault (unknown
    name, a value where none is taken or a bad one, two variants of one group)."""
    values: dict[str, float | None] = {}
    groups: dict[str, str] = {}
    for spec in specs:
        name, has_value, text = spec.strip().partition("=")
        info = VARIANTS.get(name.strip())
        if info is None:
            raise ConfigurationError(
                f"unknown variant {name.strip()!r} (known: {', '.join(sorted(VARIANTS))})"
            )
        value = info.default
        if has_value:
            if info.value_name is None:
                raise ConfigurationError(f"variant {info.name!r} takes no value")
            value = _parse_value(info, text.strip())
        other = groups.get(info.group)
        if other is not None and other != info.name:
            raise ConfigurationError(
                f"variants {other!r} and {info.name!r} answer the same question: choose one"
            )
        groups[info.group] = info.name
        values[info.name] = value
    return Variants(values=dict(sorted(values.items())))


def merge_variants(base: Iterable[str], override: Iterable[str]) -> tuple[str, ...]:
    """`base` (an accounts file's) with `override` (the command line's) replacing any variant of the same
    group; each list must be consistent on its own (ConfigurationError otherwise)."""
    base_list, override_list = list(base), list(override)
    parse_variants(base_list)
    parse_variants(override_list)
    overridden = {VARIANTS[_name_of(spec)].group for spec in override_list}
    kept = [spec for spec in base_list if VARIANTS[_name_of(spec)].group not in overridden]
    return tuple(kept + override_list)


def _name_of(spec: str) -> str:
    return spec.strip().partition("=")[0].strip()


def _parse_value(info: VariantInfo, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if info.value_name == "CODE":
        if math.isnan(value) or not _valid_close_code(value):
            raise ConfigurationError(
                f"variant {info.name!r}: CODE must be a close code ({_CLOSE_CODES_ALLOWED}), not {text!r}"
            )
        return float(int(value))
    if not (0 < value <= 3600):
        raise ConfigurationError(f"variant {info.name!r}: SECONDS must be in (0, 3600], not {text!r}")
    return value


def _number_text(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


# --- numbers --------------------------------------------------------------------------------------------

_DECODER: Final = msgspec.json.Decoder(float_hook=Decimal)
_ENCODER: Final = msgspec.json.Encoder()
_EXACT: Final = Context(prec=200)
_JAVA_PLAIN_LOW: Final = Decimal("0.001")
_JAVA_PLAIN_HIGH: Final = Decimal("1E7")


def _rewrite(node: Any, keys: frozenset[str], style: str, exponent: bool) -> Any:
    if isinstance(node, dict):
        return {
            key: _decimal_out(value, style, exponent)
            if key in keys and not isinstance(value, (dict, list))
            else _rewrite(value, keys, style, exponent)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite(value, keys, style, exponent) for value in node]
    return node


def _decimal_out(value: Any, style: str, exponent: bool) -> Any:
    if value is None or isinstance(value, bool):
        return value
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        return value  # not a decimal after all: left as it is
    text = java_decimal(number) if exponent else format(number, "f")
    as_string = style == "strings" or (style == "kept" and isinstance(value, str))
    return text if as_string else msgspec.Raw(text.encode())


def java_decimal(value: Decimal) -> str:
    """`value` as Java's Double.toString writes a double, but with `value`'s exact digits: plain with at
    least one fractional digit in [10^-3, 10^7) ("13000.0", "0.5155"), else "d.dddE[-]n" ("2.0E-5")."""
    if value == 0:
        return "-0.0" if value.is_signed() else "0.0"
    normal = value.normalize(_EXACT)
    if _JAVA_PLAIN_LOW <= abs(normal) < _JAVA_PLAIN_HIGH:
        text = format(normal, "f")
        return text if "." in text else f"{text}.0"
    adjusted = normal.adjusted()
    mantissa = format(normal.scaleb(-adjusted, _EXACT), "f")
    if "." not in mantissa:
        mantissa += ".0"
    return f"{mantissa}E{adjusted}"


# --- the HTTP side: one middleware per variant that changes replies -----------------------------------------


def variant_middlewares(variants: Variants) -> list[Middleware]:
    """The aiohttp middlewares the run's variants need (none by default): Bitmusa's error bodies, and the
    numbers of the REST snapshots, written as the stream writes them."""
    middlewares: list[Middleware] = []
    if variants.bitmusa_errors != "ours":
        middlewares.append(bitmusa_error_middleware(variants))
    if variants.rewrites_numbers:
        middlewares.append(snapshot_numbers_middleware(variants))
    return middlewares


#: The decimal keys of each snapshot route's reply (protocol.bitmusa_rest, protocol.coinlocally_rest).
_SNAPSHOT_DECIMALS: Final[Mapping[str, frozenset[str]]] = {
    path: keys for entry in registry.REGISTRY.values() for path, keys in entry.rest_decimal_keys.items()
}


def snapshot_numbers_middleware(variants: Variants) -> Middleware:
    """An aiohttp middleware writing the decimals of every successful REST snapshot reply as the run's
    numbers variants say, as the streams write theirs."""

    @web.middleware
    async def rewrite_snapshot_numbers(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        keys = _SNAPSHOT_DECIMALS.get(request.path)
        if (
            keys is None
            or not isinstance(response, web.Response)
            or response.status != 200
            or not isinstance(response.body, bytes)
        ):
            return response
        response.body = variants.rewrite_json(response.body, keys)
        return response

    return rewrite_snapshot_numbers


# --- Bitmusa error bodies -------------------------------------------------------------------------------

_BITMUSA_PATHS: Final = registry.spec(_BM).rest_paths
_OUR_ERROR: Final = msgspec.json.Decoder(dict[str, Any])


def bitmusa_error_middleware(variants: Variants) -> Middleware:
    """An aiohttp middleware writing every Bitmusa error reply (REST and the stream's handshake refusals) in
    the run's error shape; headers such as Retry-After are kept."""
    shape = variants.bitmusa_errors

    @web.middleware
    async def rewrite_bitmusa_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        path = request.path
        if (
            not isinstance(response, web.Response)
            or response.status < 400
            or not (path in _BITMUSA_PATHS or path.startswith(registry.spec(_BM).ws_path))
            or not isinstance(response.body, bytes)
        ):
            return response
        try:
            ours = _OUR_ERROR.decode(response.body)
        except msgspec.DecodeError:
            return response
        headers = {
            name: value
            for name, value in response.headers.items()
            if name.lower() not in ("content-type", "content-length")
        }
        if shape == "html":
            return web.Response(
                status=response.status,
                text=_html_status(response.status),
                content_type="text/html",
                headers=headers,
            )
        body = msgspec.json.encode({"code": ours.get("code"), "msg": ours.get("message")})
        return web.Response(
            status=response.status, body=body, content_type="application/json", headers=headers
        )

    return rewrite_bitmusa_errors


def _html_status(status: int) -> str:
    """The page nginx sends for an error status: the status line and nothing else."""
    try:
        line = f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        line = str(status)
    return (
        f"<html>\r\n<head><title>{line}</title></head>\r\n<body>\r\n<center><h1>{line}</h1></center>\r\n"
        "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
