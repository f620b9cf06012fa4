"""What every exchange's REST snapshot of an account is made of, for resync: one `SnapshotWire` per exchange.

This module owns the shape only: `SnapshotWire` holds the functions an exchange's REST module
(`bitmusa_rest`, `coinlocally_rest`) provides to ask for one account's balances and open orders and to read
the replies, and `SnapshotPlan`, what a stream's arguments settle (the credentials that sign the requests,
the REST base they go to). The registry (`protocol.registry`) names each exchange's wire; client/resync.py
drives any of them the same way, so it branches on no exchange. Sans-I/O: requests are values, replies come
in as status and body, and times as arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from userstream.events import BalanceUpdate, OrderUpdate

__all__ = ["RequestLike", "SnapshotArguments", "SnapshotPlan", "SnapshotWire", "UrlCheck"]


class RequestLike(Protocol):
    """A protocol module's `HttpRequest`, structurally (what the client's REST calls send: this one
    definition serves the snapshot requests and the listenKey ones alike)."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def body(self) -> bytes: ...


#: The runtime's check of a configured URL (scheme and host): (url, schemes, what) -> None, or it raises
#: a ConfigurationError naming `what`. Passed in, so the checks keep their order with the others.
UrlCheck = Callable[[str, tuple[str, ...], str], object]


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotArguments:
    """What a stream was given that bears on its snapshots (`connect()`'s arguments of those names)."""

    api_key: str | None
    auth_key: str | None
    token: str | None
    secret_key: str | None
    rest_url: str | None
    snapshot_rest_url: str | None


@dataclass(frozen=True, slots=True)
class SnapshotPlan:
    """How one stream takes its snapshots: the credentials that make its requests, and the REST base."""

    credentials: Any
    base_url: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotWire:
    """One exchange's REST snapshot, as functions of its REST module (see the module docstring)."""

    #: The stream's plan from its arguments, or why it cannot take snapshots (the `resync_skipped` reason);
    #: a ConfigurationError for contradictory arguments.
    plan: Callable[[SnapshotArguments, UrlCheck], SnapshotPlan | str]
    #: (credentials, now_ms) -> the request for every balance.
    balances_request: Callable[[Any, int], RequestLike]
    #: (status, body, account, timestamp) -> the balances, marked `source=snapshot`; a typed error otherwise.
    parse_balances: Callable[[int, bytes, str, int], Sequence[BalanceUpdate]]
    #: (credentials, symbol as the exchange writes it, now_ms) -> the request for its open orders.
    open_orders_request: Callable[[Any, str, int], RequestLike]
    #: (status, body, account, timestamp, quote assets) -> the open orders; a typed error otherwise.
    parse_open_orders: Callable[[int, bytes, str, int, tuple[str, ...]], Sequence[OrderUpdate]]
    #: How the open-orders request names an order's symbol.
    wire_symbol: Callable[[OrderUpdate], str]
    #: How it names a configured symbol ("BTC/USDT").
    configured_symbol: Callable[[str], str]
