"""One entry per exchange: what the layers above protocol/ need to know about it, in one place. Sans-I/O.

A third exchange is one protocol module (with its REST module) and one `ExchangeSpec` here; no code outside
protocol/ and this registry branches on `Exchange.X` or imports an exchange's module by name. Each layer
reads the fields it needs from `spec(exchange)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from userstream.events import BalanceUpdate, Event, Exchange
from userstream.protocol import bitmusa, coinlocally

__all__ = ["REGISTRY", "ExchangeSpec", "spec"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeSpec:
    """What one exchange is, for every layer that is not its protocol module."""

    exchange: Exchange
    #: How the exchange is named to a user ("Bitmusa").
    title: str
    # --- server-house ---
    #: The WebSocket path prefix followed by a credential (Bitmusa's listenKey), which logs cut; None: none.
    secret_path_prefix: str | None
    #: One event as the exchange's data frame (serve's fan-out renders every published event with it).
    render_event: Callable[[Event], str | bytes]
    #: Balance updates of one moment as one frame (Coinlocally's outboundAccountPosition); None: the
    #: exchange sends one frame per balance event.
    render_balances: Callable[[Iterable[BalanceUpdate]], str | bytes] | None
    #: Whether the client must ping to keep its stream (Coinlocally): a server closes a silent one.
    client_heartbeat: bool


_BITMUSA: Final = ExchangeSpec(
    exchange=Exchange.BITMUSA,
    title="Bitmusa",
    # --- server-house ---
    secret_path_prefix=bitmusa.WS_PATH_PREFIX,
    render_event=bitmusa.render_event,
    render_balances=None,
    client_heartbeat=False,
)

_COINLOCALLY: Final = ExchangeSpec(
    exchange=Exchange.COINLOCALLY,
    title="Coinlocally",
    # --- server-house ---
    secret_path_prefix=None,
    render_event=coinlocally.render_event,
    render_balances=coinlocally.render_balances,
    client_heartbeat=True,
)

REGISTRY: Final = MappingProxyType({entry.exchange: entry for entry in (_BITMUSA, _COINLOCALLY)})


def spec(exchange: Exchange) -> ExchangeSpec:
    """The registry's entry for `exchange`."""
    return REGISTRY[exchange]
