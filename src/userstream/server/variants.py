"""`serve --variant NAME`: plausible alternatives for what the two exchange documents leave open.

The documents are silent on error shapes, close codes, how control replies and pongs travel, whether the
server pings, whether POST extends an active listenKey, and they write numbers both as JSON numbers and as
strings. `userstream serve` answers each open point one way by default (ours, docs/server.md); a variant makes
it answer another plausible way for one run, so that a client (ours, or a user's bot) can be tested against
the exchange we cannot see. docs/server.md, "Variants", lists each with why it is plausible.

This module owns the catalogue of variants (`VARIANTS`: each exchange's own, listed by its protocol server
module and read through the registry, then the numbers variants, which concern both), their parsing and
validation (`parse_variants`, which `ServerConfig` calls) and the generic differences they make, as pure
functions of a `Variants` value: the sessions' style (`session_style`: each exchange's server module lays
its chosen variants over our own answers: Coinlocally's control, pong and ping frames and refusals,
Bitmusa's close code of a lapsed key), and the numbers of data frames and snapshots (a rewrite of a
rendered batch, and a middleware). What a variant changes on an exchange's HTTP side belongs to serve's
module of that exchange (Bitmusa's error bodies: server/bitmusa_routes.py, chosen through
serve_exchanges.py); POST's keep-alive is asked here (`post_extends`) by exchange.py. The wire facts a
variant rewrites (decimal keys of data frames and snapshots) come from the registry (protocol/registry.py).
No exchange module is imported here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation
from typing import Any, Final

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from userstream.errors import ConfigurationError
from userstream.events import Exchange
from userstream.protocol import registry
from userstream.protocol.codec import DEFAULT_MAX_FRAME, decode_frame, gzip_bytes
from userstream.protocol.registry import REGISTRY
from userstream.protocol.server_session import ServerStyle, VariantInfo

__all__ = [
    "DEFAULT_VARIANTS",
    "VARIANTS",
    "VariantInfo",
    "Variants",
    "merge_variants",
    "parse_variants",
    "snapshot_numbers_middleware",
]


#: Every variant, by name: each exchange's own (its server module's `VARIANTS`, through the registry), then
#: the numbers variants, which concern both. docs/server.md has the same list with the reasons (a test keeps
#: them equal).
VARIANTS: Final[Mapping[str, VariantInfo]] = {
    info.name: info
    for info in (
        *(info for entry in REGISTRY.values() for info in entry.server_variants),  # protocol/*_server.py
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

    # --- the sessions' style (each exchange's server module says what its variants change) ---------------

    def session_style(self, ours: ServerStyle | None = None) -> ServerStyle:
        """How this run's stream sessions write what the documents leave open: `ours` (by default our own
        answers everywhere) with every exchange's chosen variants laid over it."""
        style = ServerStyle() if ours is None else ours
        for entry in REGISTRY.values():
            style = entry.variant_style(self.values, style)
        return style

    @property
    def server_ping_interval(self) -> float | None:
        """Seconds between the server's own pings on a stream; None: it sends none."""
        return self.session_style().server_ping_interval

    def refuses_after_upgrade(self, exchange: Exchange) -> bool:
        """Whether an unknown credential of `exchange`'s handshake is upgraded and refused at its sub (else:
        HTTP 401): a refusal variant of that exchange is chosen (Coinlocally's only, so far)."""
        return any(
            VARIANTS[name].exchange is exchange and VARIANTS[name].group.endswith("-refusal")
            for name in self.values
        )

    # --- Bitmusa ------------------------------------------------------------------------------------

    @property
    def post_extends(self) -> bool:
        return "bitmusa-post-extends" in self.values

    def expired_close_code(self, ours: int) -> int:
        """The close code of a stream whose listenKey lapsed: `ours` unless a variant says otherwise."""
        return self.session_style(ServerStyle(expired_close_code=ours)).expired_close_code

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
