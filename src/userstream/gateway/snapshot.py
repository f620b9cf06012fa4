"""`GatewaySnapshot`: a running gateway read once, as immutable values, for everything that shows it.

This module owns the values a reader of the gateway sees: per account an `AccountView` (connection state,
health, counters, the stream's counters, and the account's picture as an `AccountSnapshot`), per sink a
`SinkView` (its health read once, its runner's counters), the live fan-out's `HubView`, and the gateway's
health computed from those same values. `/healthz`, `/accounts`, `/accounts/{name}...`, `/metrics`
(http.py, metrics.py) and the dashboard each take ONE snapshot per request, scrape or frame
(`Gateway.snapshot()`, app.py) and read nothing else of the gateway, so every figure of one answer is of one
moment and the readers depend on these values, not on the service's internals.

It reads the runtimes (account.py), the sink handles (sink_handles.py) and the hub (sse.py); it changes
nothing and does no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from userstream.client.status import StreamStats
from userstream.events import Exchange
from userstream.gateway.account import AccountRuntime, ConnectionState
from userstream.gateway.config import GatewayConfig
from userstream.gateway.sink_handles import SinkHandle
from userstream.gateway.sse import EventHub
from userstream.sinks.runner import SinkHealth
from userstream.state import AccountSnapshot

__all__ = ["AccountView", "GatewaySnapshot", "GatewaySource", "HubView", "SinkView"]


@dataclass(frozen=True, slots=True)
class AccountView:
    """One account at the moment of the snapshot."""

    name: str
    exchange: Exchange
    connection: ConnectionState
    healthy: bool  # within the health grace (see `AccountRuntime.healthy`)
    seconds_in_state: float
    error: str | None
    events: Mapping[str, int]  # by kind: balance, order, fill
    snapshot_events: int
    reconnects: int
    disconnects: int
    keepalive_failures: int
    seconds_since_last_event: float | None
    lag: float | None  # seconds between the latest event's time and its arrival
    stats: StreamStats | None  # the stream's counters (None before it has a stream)
    picture: AccountSnapshot  # the account's one picture: balances, open orders, recent fills

    @classmethod
    def of(cls, runtime: AccountRuntime, grace: float) -> AccountView:
        return cls(
            name=runtime.name,
            exchange=runtime.exchange,
            connection=runtime.connection,
            healthy=runtime.healthy(grace),
            seconds_in_state=runtime.seconds_in_state,
            error=runtime.error,
            events=MappingProxyType(dict(runtime.events)),
            snapshot_events=runtime.snapshot_events,
            reconnects=runtime.reconnects,
            disconnects=runtime.disconnects,
            keepalive_failures=runtime.keepalive_failures,
            seconds_since_last_event=runtime.seconds_since_last_event,
            lag=runtime.lag,
            stats=runtime.stats,
            picture=runtime.state.snapshot(),
        )

    @property
    def total_events(self) -> int:
        return sum(self.events.values())

    @property
    def resyncs(self) -> int:
        """REST snapshot resyncs the client took."""
        return 0 if self.stats is None else self.stats.resyncs

    @property
    def resync_failures(self) -> int:
        return 0 if self.stats is None else self.stats.resync_failures

    @property
    def backlog(self) -> int:
        """Events queued in the client for the gateway, snapshot corrections included."""
        return 0 if self.stats is None else self.stats.queued


@dataclass(frozen=True, slots=True)
class SinkView:
    """One sink at the moment of the snapshot: its health, read once, and its runner's counters."""

    name: str
    health: SinkHealth
    pending: int  # accepted, not yet written
    capacity: int
    written: int
    dropped: int  # overflow drop_oldest
    retries: int
    abandoned: int  # accepted but never written
    lost: int  # offered after the sink failed for good

    @classmethod
    def of(cls, handle: SinkHandle) -> SinkView:
        runner = handle.runner
        return cls(
            name=handle.name,
            health=runner.health,
            pending=runner.pending,
            capacity=runner.capacity,
            written=runner.written,
            dropped=runner.dropped,
            retries=runner.retries,
            abandoned=runner.abandoned,
            lost=handle.lost,
        )

    @property
    def healthy(self) -> bool:
        return self.health.up


@dataclass(frozen=True, slots=True)
class HubView:
    """The live `/events` fan-out's counters."""

    subscribers: int
    buffered: int
    dropped_subscribers: int
    stalled_subscribers: int
    refused_subscribers: int

    @classmethod
    def of(cls, hub: EventHub) -> HubView:
        return cls(
            subscribers=hub.subscribers,
            buffered=hub.buffered,
            dropped_subscribers=hub.dropped_subscribers,
            stalled_subscribers=hub.stalled_subscribers,
            refused_subscribers=hub.refused_subscribers,
        )


@dataclass(frozen=True, slots=True)
class GatewaySnapshot:
    """The whole gateway at one moment; `healthy` is what `/healthz` answers (200 or 503)."""

    accounts: tuple[AccountView, ...]
    sinks: tuple[SinkView, ...]
    hub: HubView
    stopping: bool
    #: sharded: this instance's leases, as `LeaseCoordinator.describe()` gives them (None unsharded)
    cluster: Mapping[str, Any] | None = None
    #: a problem of the leases that makes the gateway unhealthy (None: none, or unsharded)
    cluster_problem: str | None = None
    http_url: str | None = None  # the HTTP API's base URL, None when it does not run

    @classmethod
    def of(
        cls,
        runtimes: Iterable[AccountRuntime],
        handles: Iterable[SinkHandle],
        hub: EventHub,
        *,
        grace: float,
        stopping: bool,
        cluster: Mapping[str, Any] | None = None,
        cluster_problem: str | None = None,
    ) -> GatewaySnapshot:
        return cls(
            accounts=tuple(AccountView.of(runtime, grace) for runtime in runtimes),
            sinks=tuple(SinkView.of(handle) for handle in handles),
            hub=HubView.of(hub),
            stopping=stopping,
            cluster=cluster,
            cluster_problem=cluster_problem,
        )

    @property
    def healthy(self) -> bool:
        """Every account healthy (within the grace), every sink up, and the leases (sharded) in order."""
        return (
            self.cluster_problem is None
            and all(account.healthy for account in self.accounts)
            and all(sink.healthy for sink in self.sinks)
        )

    @property
    def lost_events(self) -> int:
        """Events a sink never wrote against the user's wishes: offered after it failed for good, or
        abandoned (by its failure or a shutdown that timed out). Drops the user allowed
        (overflow="drop_oldest") are not among them; each runner counts those."""
        return sum(sink.lost + sink.abandoned for sink in self.sinks)

    def account(self, name: str) -> AccountView | None:
        return next((account for account in self.accounts if account.name == name), None)


class GatewaySource(Protocol):
    """What a reader of a running gateway is given (the HTTP API, the dashboard): its config, the live hub
    to subscribe to, and `snapshot()`. `Gateway` (app.py) is one."""

    @property
    def config(self) -> GatewayConfig: ...

    @property
    def hub(self) -> EventHub: ...

    def snapshot(self) -> GatewaySnapshot: ...
