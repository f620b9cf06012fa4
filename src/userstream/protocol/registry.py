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
from userstream.protocol import bitmusa_rest, coinlocally_rest
from userstream.protocol.snapshot import SnapshotWire

__all__ = ["REGISTRY", "ExchangeSpec", "spec"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeSpec:
    """What one exchange is, for every layer that is not its protocol module."""

    exchange: Exchange
    #: How the exchange is named to a user ("Bitmusa").
    title: str
    # --- gateway-house ---
    #: A connection delivers events from its handshake on (Bitmusa: the listenKey in the URL is the
    #: subscription), rather than from the subscription's acknowledgement (Coinlocally's "sub success").
    live_at_handshake: bool
    #: A REST snapshot of the account must be signed with the API key's secret key (Coinlocally), so a
    #: stream given none cannot resync; else the stream's own credentials take it (Bitmusa).
    snapshot_needs_secret_key: bool
    # --- client-house ---
    #: Its REST snapshot of an account, as client/resync.py takes it (its REST module's `SNAPSHOT`).
    snapshot: SnapshotWire


_BITMUSA: Final = ExchangeSpec(
    exchange=Exchange.BITMUSA,
    title="Bitmusa",
    # --- gateway-house ---
    live_at_handshake=True,
    snapshot_needs_secret_key=False,
    # --- client-house ---
    snapshot=bitmusa_rest.SNAPSHOT,
)

_COINLOCALLY: Final = ExchangeSpec(
    exchange=Exchange.COINLOCALLY,
    title="Coinlocally",
    # --- gateway-house ---
    live_at_handshake=False,
    snapshot_needs_secret_key=True,
    # --- client-house ---
    snapshot=coinlocally_rest.SNAPSHOT,
)

REGISTRY: Final = MappingProxyType({entry.exchange: entry for entry in (_BITMUSA, _COINLOCALLY)})


def spec(exchange: Exchange) -> ExchangeSpec:
    """The registry's entry for `exchange`."""
    return REGISTRY[exchange]
