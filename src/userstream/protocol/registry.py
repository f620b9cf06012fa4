"""One entry per exchange: what the layers above protocol/ need to know about it, in one place. Sans-I/O.

A third exchange is one protocol module (with its REST module) and one `ExchangeSpec` here; no code outside
protocol/ and this registry branches on `Exchange.X` or imports an exchange's module by name. Each layer
reads the fields it needs from `spec(exchange)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from userstream.events import Exchange
from userstream.protocol import bitmusa, coinlocally

__all__ = ["REGISTRY", "ExchangeSpec", "spec"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeSpec:
    """What one exchange is, for every layer that is not its protocol module."""

    exchange: Exchange
    #: How the exchange is named to a user ("Bitmusa").
    title: str
    # --- config ---
    #: How long a listenKey lives after its creation or keep-alive, in ms; None: no listenKey.
    listen_key_validity_ms: int | None
    #: The age at which the exchange cuts every connection, in ms.
    max_connection_age_ms: int
    #: How long the exchange's document says it keeps a connection that has not pinged, in ms; None: no
    #: such limit is documented.
    ping_silence_ms: int | None
    #: The credentials (`connect()` arguments) a stream needs all of.
    credentials_required: tuple[str, ...]
    #: Credentials a stream needs exactly one of (empty: none such).
    credentials_one_of: tuple[str, ...]
    #: Credentials a stream may be given besides: (credential, the one it goes with).
    credentials_optional: tuple[tuple[str, str], ...]
    #: Options that only this exchange's client uses (a config refuses them on another exchange).
    only_options: frozenset[str]


_BITMUSA: Final = ExchangeSpec(
    exchange=Exchange.BITMUSA,
    title="Bitmusa",
    # --- config ---
    listen_key_validity_ms=bitmusa.LISTEN_KEY_VALIDITY_MS,
    max_connection_age_ms=bitmusa.MAX_CONNECTION_AGE_MS,
    ping_silence_ms=None,  # the document asks for no ping
    credentials_required=("api_key", "auth_key"),
    credentials_one_of=(),
    credentials_optional=(),
    only_options=frozenset({"rest_url", "keepalive_interval", "close_key_on_exit"}),
)

_COINLOCALLY: Final = ExchangeSpec(
    exchange=Exchange.COINLOCALLY,
    title="Coinlocally",
    # --- config ---
    listen_key_validity_ms=None,
    max_connection_age_ms=86_400_000,  # the same 24-hour cut as Bitmusa's (docs/client.md)
    ping_silence_ms=coinlocally.HEARTBEAT_TIMEOUT_MS,
    credentials_required=(),
    credentials_one_of=("token", "api_key"),
    credentials_optional=(("secret_key", "api_key"),),  # signs the api key's snapshot requests
    only_options=frozenset({"sub_timeout", "quotes"}),
)

REGISTRY: Final = MappingProxyType({entry.exchange: entry for entry in (_BITMUSA, _COINLOCALLY)})


def spec(exchange: Exchange) -> ExchangeSpec:
    """The registry's entry for `exchange`."""
    return REGISTRY[exchange]
