"""One account inside the gateway: its stream, its one picture, its fills, its connection state and counters.

This module owns `AccountRuntime` and `ConnectionState`. The runtime is what the supervisor (service.py)
runs one task for and what a `GatewaySnapshot` (snapshot.py) reads; it does no I/O of its own and starts
nothing: the supervisor opens the account's stream (streams.py) and hands it over with `attach`.

One picture per account. The account's balances, open orders and recent fills are one `AccountState`: the
stream's own picture (`UserStream.picture`), which the stream folds every event it hands out into. The
gateway folds in only what the stream does not know: the fills its `FillTracker` derives from those events,
and the picture a sink kept across a restart. A runtime with no stream yet (standby, or fed by hand) holds a
picture of its own, which the first attached stream's replaces.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from enum import StrEnum

from userstream.client.status import State, StatusEvent, StreamStats
from userstream.client.supervisor import UserStream
from userstream.events import Event, Exchange, Source
from userstream.fills import FillTracker
from userstream.gateway.config import AccountConfig
from userstream.logs import log_event
from userstream.protocol.registry import spec
from userstream.state import AccountState, bare

__all__ = ["EVENT_KINDS", "AccountRuntime", "Clock", "ConnectionState"]

_log = logging.getLogger("userstream.gateway")

Clock = Callable[[], float]
EVENT_KINDS = ("balance", "order", "fill")
# Status states logged as warnings: something was lost, or may have been.
_WARNING_STATES = frozenset(
    {State.DISCONNECTED, State.KEEPALIVE_FAILED, State.DROPPED, State.RESYNC_FAILED, State.RESYNC_SKIPPED}
)


class ConnectionState(StrEnum):
    STARTING = "starting"  # no connection has been live yet
    LIVE = "live"  # a connection is delivering events
    RECONNECTING = "reconnecting"  # between connections (events sent meanwhile are lost to the stream)
    FAILED = "failed"  # the stream stopped for good (rejected credentials, say); `error` says why
    STOPPED = "stopped"  # the gateway is stopping
    STANDBY = "standby"  # sharded: another instance holds the account's lease (docs/scaling.md)


class AccountRuntime:
    """One account in the gateway: its stream, the picture its events imply, and what happened to it."""

    def __init__(self, config: AccountConfig, *, clock: Clock = time.monotonic) -> None:
        self.config = config
        #: the account's one picture: the attached stream's (see the module's docstring)
        self.state = AccountState()
        self.fills = FillTracker()
        self.stream: UserStream | None = None
        self.connection = ConnectionState.STARTING
        self.error: str | None = None
        self.events: dict[str, int] = dict.fromkeys(EVENT_KINDS, 0)
        self.snapshot_events = 0  # events marked source=snapshot (resync corrections and their fills)
        self.reconnects = 0  # `reconnecting` statuses: attempts after a connection ended or failed
        self.disconnects = 0  # connections that ended unexpectedly
        self.keepalive_failures = 0
        self.last_event_at: float | None = None  # clock() when the latest event arrived
        self.lag: float | None = None  # seconds between the latest event's time and its arrival
        self._clock = clock
        self._since = clock()
        self._live_connections: set[int] = set()
        self._live_at_handshake = spec(config.exchange).client.live_on_connect

    def __repr__(self) -> str:
        return (
            f"AccountRuntime(name={self.name!r}, exchange={self.exchange.value!r}, {self.connection.value})"
        )

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def exchange(self) -> Exchange:
        return self.config.exchange

    @property
    def seconds_in_state(self) -> float:
        return self._clock() - self._since

    @property
    def stats(self) -> StreamStats | None:
        return None if self.stream is None else self.stream.stats

    @property
    def resyncs(self) -> int:
        """REST snapshot resyncs the client took."""
        stats = self.stats
        return 0 if stats is None else stats.resyncs

    @property
    def resync_failures(self) -> int:
        stats = self.stats
        return 0 if stats is None else stats.resync_failures

    @property
    def backlog(self) -> int:
        """Events the client queued and has not handed to the gateway yet (its queue depth), snapshot
        corrections included: they were never among the stream's received events, so a difference of
        those counters would hide as many waiting events as a resync had corrected."""
        stats = self.stats
        return 0 if stats is None else stats.queued

    @property
    def seconds_since_last_event(self) -> float | None:
        return None if self.last_event_at is None else self._clock() - self.last_event_at

    def healthy(self, grace: float) -> bool:
        """Live; or starting or reconnecting for at most `grace` seconds. Failed or stopped: never."""
        if self.connection in (ConnectionState.LIVE, ConnectionState.STANDBY):
            return True
        if self.connection in (ConnectionState.FAILED, ConnectionState.STOPPED):
            return False
        return self.seconds_in_state <= grace

    def attach(self, stream: UserStream) -> None:
        """`stream` (not started) is the account's from now on, and its picture the account's picture."""
        picture = stream.picture
        if picture is None:
            raise ValueError("the gateway's streams keep their picture (picture=True)")
        self.stream = stream
        self.state = picture

    # --- what the stream reports -----------------------------------------------------------------------

    def on_status(self, status: StatusEvent) -> None:
        """The stream's `on_status` callback: keep the connection state and the counters."""
        state = status.state
        went_live = state is State.SUBSCRIBED or (state is State.CONNECTED and self._live_at_handshake)
        if went_live and status.connection is not None:
            self._live_connections.add(status.connection)
            self._enter(ConnectionState.LIVE)
        elif state is State.ROTATED and status.connection is not None:
            self._live_connections = {status.connection}
        elif state is State.DISCONNECTED:
            self.disconnects += 1
            self._live_connections.discard(status.connection or 0)
            if not self._live_connections:
                self._enter(ConnectionState.RECONNECTING)
        elif state is State.RECONNECTING:
            self.reconnects += 1
        elif state is State.KEEPALIVE_FAILED:
            self.keepalive_failures += 1
        elif state is State.FATAL:
            self.fail(status.reason or "the stream stopped")
        level = logging.INFO
        if state in _WARNING_STATES:
            level = logging.WARNING
        elif state is State.FATAL:
            level = logging.ERROR
        log_event(_log, level, status.describe(), account=self.name, exchange=self.exchange.value)

    def absorb(self, event: Event, *, wall_ms: int) -> list[Event]:
        """Take a stream event; return it and the fills it revealed, folded into the picture.

        The stream folded `event` into the picture as it handed it out; a runtime with no stream (fed by
        hand) folds it itself. The event is taken without its `raw` text: no sink stores it and the JSON
        has none, so nothing the gateway holds (picture, sink buffers) carries a wire message
        (docs/reliability.md, "Memory")."""
        event = bare(event)
        produced: list[Event] = [event]
        picture = self.state
        if self.stream is None:
            picture.apply(event)
        for fill in self.fills.feed(event):
            picture.apply(fill)
            produced.append(fill)
        for item in produced:
            self.events[item.kind] += 1
            if item.source is Source.SNAPSHOT:
                self.snapshot_events += 1
        self.last_event_at = self._clock()
        self.lag = max(0.0, (wall_ms - event.timestamp) / 1000)
        return produced

    def restore(self, picture: Sequence[Event]) -> None:
        """Start from the picture a sink kept (a restart): the picture holds it, the fill tracker knows how
        much of each open order was already filled (so a snapshot fills only the growth since), and the
        stream counts it as delivered (so its first snapshot corrects it, closing what ended meanwhile)."""
        for event in picture:
            if self.stream is None:  # else `assume` folds it into the stream's picture, which is this one
                self.state.apply(event)
            self.fills.feed(event)  # learns the filled amounts; those fills were written before the restart
        if self.stream is not None:
            self.stream.assume(picture)

    def fail(self, reason: str) -> None:
        """The stream stopped for good, for `reason` (the first one given: the `fatal` status's)."""
        if self.connection is not ConnectionState.FAILED:
            self.error = reason
            self._live_connections.clear()
            self._enter(ConnectionState.FAILED)

    def stop(self) -> None:
        if self.connection is not ConnectionState.FAILED:
            self._live_connections.clear()
            self._enter(ConnectionState.STOPPED)

    def leased(self, stream: UserStream) -> None:
        """Sharded: this instance now holds the account's lease and streams it with `stream`. The picture
        starts afresh, the new stream's (its first snapshot rebuilds it: what this instance knew may be
        stale); the fills' memory is kept, so an order it saw fill is not filled again."""
        self.attach(stream)
        self.error = None
        self._live_connections.clear()
        self._enter(ConnectionState.STARTING)

    def standby(self) -> None:
        """Sharded: another instance streams the account (or will); this one does not."""
        self._live_connections.clear()
        self._enter(ConnectionState.STANDBY)

    def _enter(self, state: ConnectionState) -> None:
        if state is not self.connection:
            self.connection = state
            self._since = self._clock()
