"""The gateway service: many accounts' streams, their state, their fills, every sink and the live fan-out.

This module owns `Gateway` (start, the supervisor, stop) and `AccountRuntime` (one account inside it: its
`UserStream`, `AccountState`, `FillTracker`, connection state and counters). The supervisor is one task
holding one `asyncio.TaskGroup`, with one task per account; each account task is the only reader of its
stream and runs the pipeline for every event:

    stream event -> AccountState (and FillTracker -> fills -> AccountState) -> the live hub -> every sink

An account whose stream stops with an error (rejected credentials, after the client's bounded attempts) is
marked failed and its task ends; the others go on. A sink's `put` may wait (backpressure): the account's
task then stops reading, its client queue fills, and the stream slows instead of dropping. A sink whose
writes keep failing (its runner's `health`: past its thresholds, or unwritable) is down, and so is the
gateway's health, until a write succeeds again. A sink that fails for good is marked failed and every event
it can no longer take is counted as lost. The HTTP server (`http.py`) only reads what this module keeps.
Stopping ends the streams, then lets the sinks write what they hold (bounded by `shutdown_timeout`), then
closes the live subscribers and the HTTP server.

Sharded (`config.cluster`), the supervisor runs the lease task (leases.py) instead of every account: it
starts an account's task when this instance takes the account's lease and cancels it when the lease is lost
or handed over; the other accounts wait on standby (docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING, Any

from userstream.client.entry import connect
from userstream.client.status import State, StatusEvent, StreamStats
from userstream.client.supervisor import UserStream
from userstream.errors import ConfigurationError, UserStreamError
from userstream.events import Event, Exchange, Source
from userstream.fills import FillTracker
from userstream.gateway.config import AccountConfig, GatewayConfig, resolve_credentials, sink_in_data_dir
from userstream.gateway.sse import EventHub
from userstream.server.logs import log_event
from userstream.sinks.config import JsonlSpec, SinkSpec, SqliteSpec, build_runner
from userstream.sinks.runner import SinkHealth, SinkRunner
from userstream.sinks.sqlite import SqliteSink
from userstream.state import AccountState, bare

if TYPE_CHECKING:
    from userstream.gateway.cluster import ClusterConfig
    from userstream.gateway.http import HttpServer
    from userstream.gateway.leases import LeaseCoordinator

__all__ = ["AccountRuntime", "ConnectionState", "Gateway", "SinkHandle"]

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

    # --- what the stream reports -----------------------------------------------------------------------

    def on_status(self, status: StatusEvent) -> None:
        """The stream's `on_status` callback: keep the connection state and the counters."""
        state = status.state
        went_live = state is State.SUBSCRIBED or (
            state is State.CONNECTED and self.exchange is Exchange.BITMUSA  # live at the handshake
        )
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
        """Fold a stream event into the picture; return it and the fills it revealed (also folded in).

        The event is taken without its `raw` text: no sink stores it and the JSON has none, so nothing the
        gateway holds (state, sink buffers) carries a wire message (docs/reliability.md, "Memory")."""
        event = bare(event)
        produced: list[Event] = [event]
        self.state.apply(event)
        for fill in self.fills.feed(event):
            self.state.apply(fill)
            produced.append(fill)
        for item in produced:
            self.events[item.kind] += 1
            if item.source is Source.SNAPSHOT:
                self.snapshot_events += 1
        self.last_event_at = self._clock()
        self.lag = max(0.0, (wall_ms - event.timestamp) / 1000)
        return produced

    def restore(self, picture: Sequence[Event]) -> None:
        """Start from the picture a sink kept (a restart): the state holds it, the fill tracker knows how
        much of each open order was already filled (so a snapshot fills only the growth since), and the
        stream counts it as delivered (so its first snapshot corrects it, closing what ended meanwhile)."""
        for event in picture:
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

    def leased(self) -> None:
        """Sharded: this instance now holds the account's lease and starts its stream. The picture starts
        afresh (the stream's first snapshot rebuilds it: what this instance knew may be stale); the fills'
        memory is kept, so an order it saw fill is not filled again."""
        self.state = AccountState()
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


class SinkHandle:
    """One configured sink behind its runner, and the events it could not take after it failed."""

    def __init__(self, spec: SinkSpec, runner: SinkRunner) -> None:
        self.spec = spec
        self.runner = runner
        self.lost = 0  # events offered after the sink failed for good

    @property
    def name(self) -> str:
        return self.runner.sink.name

    @property
    def failure(self) -> BaseException | None:
        return self.runner.failure

    @property
    def health(self) -> SinkHealth:
        """Up, retrying, down (failing past its thresholds, or unwritable) or failed for good."""
        return self.runner.health

    @property
    def healthy(self) -> bool:
        return self.runner.health.up

    async def put(self, event: Event) -> None:
        """Hand one event to the runner (waits while it is full: backpressure); count it if it cannot."""
        if self.runner.failure is None:
            try:
                await self.runner.put(event)
            except Exception:  # the runner stopped (it logged why); from here on every event is lost
                _log.error("sink %s failed; events for it are now counted as lost", self.name)
            else:
                return
        self.lost += 1

    async def close(self, within: float) -> None:
        """Write what is pending (for at most `within` seconds), then close; what is left is abandoned."""
        try:
            async with asyncio.timeout(within):
                await self.runner.close()
        except TimeoutError:
            _log.error("sink %s: not flushed within %gs", self.name, within)
        except Exception as exc:  # the error that stopped the runner, already logged by it
            _log.error("sink %s: closed after failing: %s", self.name, exc)


class Gateway:
    """Many accounts, both exchanges, one process: `async with Gateway(config) as gateway: ...`.

    `environ` is where the credentials' variables are read (default: the process environment). Leaving
    the block (or `await gateway.stop()`) stops the streams, flushes the sinks and closes the HTTP server.
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.config = config
        self.hub = EventHub(config.sse_queue)
        self._environ = os.environ if environ is None else environ
        self._clock = clock
        self._accounts = {account.name: AccountRuntime(account, clock=clock) for account in config.accounts}
        self._sinks: list[SinkHandle] = []
        self._supervisor: asyncio.Task[None] | None = None
        self._account_tasks: dict[str, asyncio.Task[None]] = {}
        self._stop_requested = asyncio.Event()
        self._http: HttpServer | None = None  # imported when started: http.py reads this module
        # sharded (config.cluster): the leases decide which accounts this instance streams
        self.leases: LeaseCoordinator | None = None
        self._group: asyncio.TaskGroup | None = None  # the supervisor's, while it runs
        self._started = False
        self._stopped = False
        self.started_at = clock()

    def __repr__(self) -> str:
        return f"Gateway(accounts={list(self._accounts)!r}, sinks={[s.name for s in self._sinks]!r})"

    # --- what the gateway shows ------------------------------------------------------------------------

    @property
    def accounts(self) -> Sequence[AccountRuntime]:
        return tuple(self._accounts.values())

    def account(self, name: str) -> AccountRuntime | None:
        return self._accounts.get(name)

    @property
    def sinks(self) -> Sequence[SinkHandle]:
        return tuple(self._sinks)

    @property
    def http_url(self) -> str | None:
        """The HTTP API's base URL (`http://host:port`), None when it does not run."""
        return None if self._http is None else self._http.url

    @property
    def healthy(self) -> bool:
        grace = self.config.health_grace
        leases_ok = self.leases is None or self.leases.problem is None
        return (
            leases_ok
            and all(account.healthy(grace) for account in self._accounts.values())
            and all(sink.healthy for sink in self._sinks)
        )

    @property
    def stopping(self) -> bool:
        return self._stop_requested.is_set()

    @property
    def lost_events(self) -> int:
        """Events a sink never wrote against the user's wishes: offered after it failed for good, or
        abandoned (by its failure or a shutdown that timed out). Drops the user allowed
        (overflow="drop_oldest") are not among them; they are counted by each runner."""
        return sum(sink.lost + sink.runner.abandoned for sink in self._sinks)

    # --- life ------------------------------------------------------------------------------------------

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Check every account's credentials, open the sinks, start the streams and the HTTP server.

        Anything wrong with the configuration (a missing variable, an argument `connect()` refuses, a sink
        that cannot be opened, a port in use) raises before any stream starts, and nothing is left running.
        """
        if self._started:
            raise RuntimeError("a Gateway starts once")
        self._started = True
        try:
            if self.config.cluster is None:
                for runtime in self._accounts.values():
                    runtime.stream = self._open_stream(runtime)
            else:
                self.leases = await self._make_leases(self.config.cluster)
            for configured in self.config.sinks:
                spec = sink_in_data_dir(configured, self.config.data_dir)
                if spec is not configured and isinstance(spec, JsonlSpec | SqliteSpec):
                    _make_directories(self.config.data_dir, spec.path)
                runner = build_runner(spec)
                await runner.start()
                self._sinks.append(SinkHandle(spec, runner))
            await self._restore()
            self._supervisor = asyncio.create_task(self._supervise(), name="userstream-gateway")
            if self.config.http_port is not None:
                from userstream.gateway.http import HttpServer  # noqa: PLC0415 - http.py imports this module

                self._http = HttpServer(self)
                await self._http.start(self.config.http_host, self.config.http_port)
        except BaseException:
            await self.stop()
            raise
        log_event(
            _log,
            logging.INFO,
            "gateway started",
            accounts=list(self._accounts),
            sinks=[sink.name for sink in self._sinks],
            http=self.http_url,
        )

    async def stop(self) -> None:
        """Stop the streams, flush and close the sinks, end the live subscribers, stop HTTP. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._stop_requested.set()
        if self._supervisor is not None:
            await asyncio.wait({self._supervisor})
        else:  # start failed before the supervisor: close the streams that were made
            for runtime in self._accounts.values():
                if runtime.stream is not None:
                    await runtime.stream.aclose()
        for runtime in self._accounts.values():
            runtime.stop()
        timeout = self.config.shutdown_timeout
        await asyncio.gather(*(sink.close(timeout) for sink in self._sinks))
        self.hub.close()
        if self._http is not None:
            await self._http.stop()
        log_event(_log, logging.INFO, "gateway stopped", lost_events=self.lost_events)

    async def _restore(self) -> None:
        """A restart on a sink that keeps a picture (SQLite): every account starts from what it holds."""
        keeper = next((s.runner.sink for s in self._sinks if isinstance(s.runner.sink, SqliteSink)), None)
        if keeper is None:
            return
        for runtime in self._accounts.values():
            if runtime.stream is not None:
                runtime.restore(await keeper.read_picture(runtime.exchange, runtime.name))

    # --- the supervisor ----------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        leases: asyncio.Task[None] | None = None
        async with asyncio.TaskGroup() as group:
            self._group = group
            if self.leases is None:
                for runtime in self._accounts.values():
                    self._account_tasks[runtime.name] = group.create_task(
                        self._run_account(runtime), name=f"userstream-gateway:{runtime.name}"
                    )
            else:  # the leases start and stop the account tasks, in this group
                leases = group.create_task(self.leases.run(), name="userstream-gateway-leases")
            await self._stop_requested.wait()
            if leases is not None:
                leases.cancel()
            for task in self._account_tasks.values():
                task.cancel()
        self._group = None
        if self.leases is not None:  # the streams have stopped: hand the accounts over now, not at TTL
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.shutdown_timeout):
                    await self.leases.release_all()

    # --- sharding (config.cluster) -----------------------------------------------------------------------

    async def _make_leases(self, cluster: ClusterConfig) -> LeaseCoordinator:
        """Check every account as an unsharded start would (credentials, `connect()` arguments), then
        leave them on standby until their lease is taken."""
        try:
            from userstream.gateway.leases import LeaseCoordinator  # noqa: PLC0415 - needs redis-py
        except ModuleNotFoundError as exc:
            if exc.name != "redis":
                raise
            raise ConfigurationError("[cluster] needs redis-py: pip install 'userstream[redis]'") from None

        for runtime in self._accounts.values():
            await self._open_stream(runtime).aclose()  # made and dropped: the checks are the point
            runtime.standby()
        return LeaseCoordinator(
            cluster,
            list(self._accounts),
            start=self._start_account,
            stop=self._stop_account,
            clock=self._clock,
        )

    def _start_account(self, name: str) -> None:
        """The lease of `name` is ours: start its stream (which begins with a snapshot resync)."""
        group = self._group
        if group is None or self.stopping:
            return
        runtime = self._accounts[name]
        runtime.leased()
        runtime.stream = self._open_stream(runtime)
        self._account_tasks[name] = group.create_task(
            self._run_account(runtime), name=f"userstream-gateway:{name}"
        )
        log_event(_log, logging.INFO, "account leased: streaming", account=name)

    async def _stop_account(self, name: str, reason: str) -> None:
        """The lease of `name` is lost or handed over: stop its stream now; nothing more reaches the sinks."""
        task = self._account_tasks.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        self._accounts[name].standby()
        log_event(_log, logging.INFO, "account on standby", account=name, reason=reason)

    async def _run_account(self, runtime: AccountRuntime) -> None:
        stream = runtime.stream
        assert stream is not None  # noqa: S101 - made by start() before the supervisor runs
        try:
            async with stream:
                async for event in stream:
                    await self._dispatch(runtime, event)
        except UserStreamError as exc:  # what the `fatal` status said already; in case it did not
            runtime.fail(str(exc))
        except Exception as exc:  # a bug in our pipeline: this account stops, loudly; the others go on
            _log.exception("account %s stopped by an unexpected error", runtime.name)
            runtime.fail(f"internal error: {type(exc).__name__}: {exc}")

    async def _dispatch(self, runtime: AccountRuntime, event: Event) -> None:
        for item in runtime.absorb(event, wall_ms=time.time_ns() // 1_000_000):
            self.hub.publish(item)
            for sink in self._sinks:
                await sink.put(item)

    def _open_stream(self, runtime: AccountRuntime) -> UserStream:
        """The account's `UserStream` (not started), its credentials read from the environment now."""
        account = runtime.config
        arguments: dict[str, Any] = dict(account.options)
        credentials = resolve_credentials(account, self._environ)
        secret_key = credentials.pop("secret_key", None)  # signs snapshot requests only
        arguments.update(credentials)
        if account.rest_url is not None:
            arguments["rest_url"] = account.rest_url
        if account.ws_url is not None:
            arguments["ws_url"] = account.ws_url
        arguments.update(_resync_arguments(account, secret_key))
        try:
            return connect(account.exchange, account=account.name, on_status=runtime.on_status, **arguments)
        except ConfigurationError as exc:
            raise ConfigurationError(f"account {account.name!r}: {exc}") from None


def _resync_arguments(account: AccountConfig, secret_key: str | None) -> dict[str, Any]:
    """`connect()`'s snapshot-resync arguments: resync after unplanned reconnects as the account says, and
    once at the start too, when the exchange can give a snapshot (Coinlocally needs the secret key)."""
    resync: dict[str, Any] = {"resync": account.resync}
    if account.resync:
        if secret_key is not None:
            resync["secret_key"] = secret_key
        if account.snapshot_rest_url is not None:
            resync["snapshot_rest_url"] = account.snapshot_rest_url
        if account.snapshot_symbols is not None:
            resync["snapshot_symbols"] = list(account.snapshot_symbols)
        if account.exchange is Exchange.BITMUSA or secret_key is not None:
            resync["initial_snapshot"] = True
    return resync


def _make_directories(data_dir: str, path: str) -> None:
    """The data directory and the one a sink's file is in, created owner-only (the files hold balances and
    orders) when missing."""
    os.makedirs(os.path.expanduser(data_dir), mode=0o700, exist_ok=True)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
