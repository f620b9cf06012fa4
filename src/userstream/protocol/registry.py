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
from userstream.protocol import bitmusa_client, coinlocally_client
from userstream.protocol.client_wire import HeaderWire, ListenKeyWire

__all__ = ["REGISTRY", "ExchangeSpec", "spec"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeSpec:
    """What one exchange is, for every layer that is not its protocol module."""

    exchange: Exchange
    #: How the exchange is named to a user ("Bitmusa").
    title: str
    # --- client-sessions ---
    #: How its stream is opened (a listenKey from REST, or the credential in the handshake's header), with
    #: its parser and the client session of one connection: what the client runtime and doctor drive.
    client: ListenKeyWire | HeaderWire


_BITMUSA: Final = ExchangeSpec(
    exchange=Exchange.BITMUSA,
    title="Bitmusa",
    # --- client-sessions ---
    client=bitmusa_client.WIRE,
)

_COINLOCALLY: Final = ExchangeSpec(
    exchange=Exchange.COINLOCALLY,
    title="Coinlocally",
    # --- client-sessions ---
    client=coinlocally_client.WIRE,
)

REGISTRY: Final = MappingProxyType({entry.exchange: entry for entry in (_BITMUSA, _COINLOCALLY)})


def spec(exchange: Exchange) -> ExchangeSpec:
    """The registry's entry for `exchange`."""
    return REGISTRY[exchange]
