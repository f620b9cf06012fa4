"""`UserStream`: the supervisor that keeps one account's user data stream flowing, and `connect()` / `run()`.

This module owns the stream's life: opening connections with backoff, noticing their end (closed, dead,
rejected), renewing what needs renewing, rotating before the exchange's 24-hour cut without losing or
duplicating an event, moving events into the bounded queue, reporting every step as a status event, and
stopping with a typed error when retrying cannot help. It owns every task it starts: one runner task per
stream, and inside it one `asyncio.TaskGroup` holding the exchange session's background loop (Bitmusa's
keepalive) and each connection's task. Leaving `async with` cancels the runner, and the TaskGroup does not
let any of them outlive it: no orphaned keepalive loop, no half-open socket.

What a stream does after each kind of ending (`backoff.classify`):

- retryable (closed, dead, SYSTEM notice, broken frames, server errors): reconnect after a backoff delay;
- listenKey invalid (Bitmusa): forget the key, reconnect with a new one (`key_renewed`);
- rejected credentials (a refused handshake, REST call or sub, in any shape: docs/client.md "Refusals"):
  retried at most `auth_attempts` times in a row with no live connection between (a server hiccup is not
  worth a dead bot), then the iterator raises `AuthenticationError`; never a retry storm;
- HTTP 404 (`EndpointNotFoundError`) on a stream that has never been live: the same 404 `auth_attempts`
  times in a row is a wrong URL, and the iterator raises `ConfigurationError` naming the URL tried and the
  path expected; once a stream has been live, a 404 is retried (exchanges redeploy);
- anything else fatal (configuration, our own bug): the iterator raises it at once.

Rotation: `rotate_after` seconds after a connection went live, a new one is opened while the old keeps
delivering; once the new one is live, the old one is allowed to reach the point where the new one's stream
begins (or `overlap_timeout` passes), then closed gracefully; `dedupe.OverlapDeduper` makes sure each
event of the overlap is delivered once, in order.

Resync: a connection that ended outside a rotation leaves a gap in which events were lost; once the next
connection is live, `resync.Resync` takes a REST snapshot beside the connections and queues the events
that correct what was delivered. A rotation leaves no gap and takes no snapshot.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from userstream.client.backoff import Action, classify
from userstream.client.bitmusa import BitmusaSession
from userstream.client.coinlocally import CoinlocallySession
from userstream.client.connection import Connection, ConnectionCounters, FrameHook
from userstream.client.dedupe import OverlapDeduper
from userstream.client.delivered import Delivered
from userstream.client.frame_warnings import DEFAULT_WARNING_INTERVAL
from userstream.client.options import DEFAULT_QUEUE_BYTES, DEFAULTS, StreamOptions, unlikely_to_work
from userstream.client.queue import EventQueue, Overflow, QueueClosed
from userstream.client.rest import check_url
from userstream.client.resync import Resync, SnapshotTaker, snapshot_taker
from userstream.client.scrub import Scrubber
from userstream.client.session import Session
from userstream.client.status import State, StatusEvent
from userstream.client.transport import Transport
from userstream.errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectionLostError,
    EndpointNotFoundError,
    UserStreamError,
)
from userstream.events import BalanceUpdate, Event, Exchange, OrderUpdate, event_size
from userstream.protocol import bitmusa, coinlocally, endpoints
from userstream.protocol.codec import DEFAULT_MAX_FRAME

__all__ = ["StreamOptions", "StreamStats", "UserStream", "connect", "run"]

_log = logging.getLogger("userstream.client")

#: How many status events `UserStream.statuses()` keeps for a reader that is behind.
STATUS_BACKLOG = 1024


@dataclass(frozen=True, slots=True)
class StreamStats:
    """Counters of one stream, as a snapshot (`UserStream.stats`)."""

    connections: int  # WebSockets opened
    frames: int  # frames received, of any kind
    events_received: int  # events parsed from data frames, before de-duplication
    events_delivered: int  # events handed to the user
    duplicates_suppressed: int  # copies withheld during rotation overlaps
    dropped: int  # events discarded by overflow="drop_oldest"
    unknown_frames: int  # frames that were not understood (kept out of the event stream), malformed included
    pings_sent: int
    pings_answered: int  # server pings answered with a pong
    keepalives: int  # successful Bitmusa keepalives
    auth_failures: int  # rejected credentials, in a row
    resyncs: int = 0  # REST snapshots taken after a gap, their corrections queued
    resync_failures: int = 0  # snapshot attempts that failed (each retried or reported)
    #: the part of unknown_frames refused as broken: undecodable, or malformed (impossible values included);
    #: unknown_frames - malformed_frames were well-formed but not understood (an unknown event type, say)
    malformed_frames: int = 0
    queued: int = 0  # events waiting in the queue for the user: stream events and snapshot corrections
    queued_bytes: int = 0  # their weight, as the queue's byte bound counts it (`events.event_size`)


@dataclass(slots=True, eq=False)
class _Live:
    """A connection and the task running it."""

    connection: Connection
    task: asyncio.Task[UserStreamError | None]

    @property
    def serial(self) -> int:
        return self.connection.serial


class _Stop(Exception):  # noqa: N818 - control flow inside the supervisor, never escapes it
    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class UserStream:
    """One account's user data stream. Use `connect()` to make one, then `async with` and `async for`.

    Iterating yields `BalanceUpdate` and `OrderUpdate` events; it ends when the stream is closed, and
    raises the fatal error (an `AuthenticationError`, say) after the events received before it.
    """

    def __init__(
        self,
        *,
        session: Session,
        transport: Transport,
        options: StreamOptions,
        on_status: Callable[[StatusEvent], object] | None = None,
        snapshots: SnapshotTaker | str | None = None,
    ) -> None:
        self._session = session
        self._transport = transport
        self._options = options
        self._on_status = on_status
        self._queue: EventQueue[Event] = EventQueue(
            options.queue_size,
            options.overflow,
            report_dropped=self._report_dropped,
            maxbytes=options.queue_bytes,
            sizeof=event_size,
        )
        self._statuses: EventQueue[StatusEvent] = EventQueue(STATUS_BACKLOG, Overflow.DROP_OLDEST)
        self._dedupe = OverlapDeduper()
        self._deliver_lock = asyncio.Lock()
        self._progress: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._counters = ConnectionCounters()
        self._backoff = options.make_backoff()
        self._serials = itertools.count(1)
        self._connections_opened = 0
        self._events_delivered = 0
        self._auth_failures = 0
        self._attempts_since_live = 0
        self._ever_live = False
        self._not_found: tuple[str, int] | None = None  # (URL, how many 404s in a row) while never live
        self._retry_reason: str | None = None
        self._live: dict[int, _Live] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self._fatal: asyncio.Future[UserStreamError] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._clock = asyncio.get_running_loop().time
        # `snapshots`: how this stream takes REST snapshots, or why it cannot (None: resync off)
        self._resync = Resync(
            snapshots if options.resync else None,
            host=self,
            symbols=options.snapshot_symbols,
            make_backoff=options.make_backoff,
        )
        self._gap = options.initial_snapshot  # events may be missing: resync once a connection is live
        self._delivered = Delivered(
            fills=options.fills, picture=options.picture
        )  # the user's side: fills, the picture

    def __repr__(self) -> str:
        return (
            f"UserStream(exchange={self.exchange.value!r}, account={self.account!r}, running={self.running})"
        )

    @property
    def exchange(self) -> Exchange:
        return self._session.exchange

    @property
    def account(self) -> str:
        return self._options.account

    @property
    def options(self) -> StreamOptions:
        return self._options

    @property
    def running(self) -> bool:
        return self._runner is not None and not self._runner.done()

    @property
    def stats(self) -> StreamStats:
        counters = self._counters
        return StreamStats(
            connections=self._connections_opened,
            frames=counters.frames,
            events_received=counters.events,
            events_delivered=self._events_delivered,
            duplicates_suppressed=self._dedupe.suppressed,
            dropped=self._queue.dropped,
            unknown_frames=counters.unknown_frames,
            pings_sent=counters.pings_sent,
            pings_answered=counters.pings_answered,
            keepalives=self._session.keepalives,
            auth_failures=self._auth_failures,
            resyncs=self._resync.resyncs,
            resync_failures=self._resync.failures,
            malformed_frames=counters.malformed_frames,
            queued=len(self._queue),
            queued_bytes=self._queue.bytes,
        )

    # --- the user's side ---------------------------------------------------------------------------

    async def __aenter__(self) -> UserStream:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def assume(self, events: Iterable[Event]) -> None:
        """The consumer already holds `events` (its picture restored from its own store, say a restarted
        gateway's database): count them as delivered, so that a resync corrects that picture (an order
        it holds open that has ended since, a balance that moved) instead of one built from nothing. Call it
        before the stream starts; nothing is queued."""
        if self._runner is not None:
            raise RuntimeError("assume() before the stream starts")
        for event in events:
            self._resync.delivered(event)

    def start(self) -> None:
        """Start the supervisor (done by `async with`)."""
        if self._runner is not None:
            raise RuntimeError("a UserStream can be started once")
        self._transport.open()
        self._fatal = asyncio.get_running_loop().create_future()
        self._runner = asyncio.create_task(
            self._supervise(), name=f"userstream-client:{self.exchange.value}/{self.account}"
        )

    async def aclose(self) -> None:
        """Stop everything this stream started and release its resources. Idempotent."""
        runner = self._runner
        if runner is not None and not runner.done():
            runner.cancel()
            await asyncio.wait([runner])
        self._queue.close()
        self._statuses.close()
        try:
            await self._session.close()
        finally:
            await self._transport.close()

    def __aiter__(self) -> UserStream:
        return self

    async def __anext__(self) -> Event:
        delivered = self._delivered
        if delivered.pending:  # a fill the last order update revealed (fills=True) comes first
            fill = delivered.pending.popleft()
            self._events_delivered += 1
            delivered.handed(fill)
            return fill
        event = self._queue.get_nowait()  # no await when an event is waiting: the usual case under load
        if event is None:
            try:
                event = await self._queue.get()
            except QueueClosed:
                raise StopAsyncIteration from None
        self._events_delivered += 1
        self._resync.delivered(event)
        delivered.took(event)
        return event

    def balances(self) -> Mapping[str, BalanceUpdate]:
        """The account's balances as delivered so far (taken from the iterator, not still queued), by asset:
        a read-only copy. Complete once `picture_complete` (docs/client.md, "The current picture")."""
        return self._delivered.balances()

    def open_orders(self) -> Mapping[str, OrderUpdate]:
        """The orders delivered as open and not delivered as ended since, by id: a read-only copy."""
        return self._delivered.open_orders()

    @property
    def picture_complete(self) -> bool:
        """True once every event of the first REST snapshot's corrections has been taken: from then on
        `balances()` and `open_orders()` are the exchange's picture, kept current by the stream."""
        return self._delivered.complete

    async def statuses(self) -> AsyncIterator[StatusEvent]:
        """Status events as they happen (the latest `STATUS_BACKLOG` are kept for a reader behind)."""
        while True:
            try:
                yield await self._statuses.get()
            except QueueClosed:
                return

    # --- status ------------------------------------------------------------------------------------

    def emit(
        self,
        state: State,
        *,
        reason: str | None = None,
        attempt: int | None = None,
        delay: float | None = None,
        dropped: int | None = None,
        connection: int | None = None,
        listen_key: str | None = None,
        corrections: int | None = None,
    ) -> None:
        status = StatusEvent(
            state=state,
            exchange=self.exchange,
            account=self.account,
            reason=reason,
            attempt=attempt,
            delay=delay,
            dropped=dropped,
            connection=connection,
            listen_key=listen_key,
            corrections=corrections,
        )
        _log.debug("%s", status.describe())
        self._statuses.put_nowait(status)  # DROP_OLDEST: never refuses
        if self._on_status is not None:
            try:
                self._on_status(status)
            except Exception:  # a broken callback must not stop the stream; say so loudly
                _log.exception("the on_status callback raised; the stream goes on")

    def _report_dropped(self, count: int) -> None:
        self.emit(State.DROPPED, dropped=count, reason=f"{count} events dropped (queue full)")

    # --- hooks for the session (SessionHooks) ------------------------------------------------------

    async def listen_key_lost(self, error: UserStreamError) -> None:
        for live in list(self._live.values()):
            await live.connection.abort(error)

    def fatal(self, error: UserStreamError) -> None:
        if self._fatal is not None and not self._fatal.done():
            self._fatal.set_result(error)

    # --- the supervisor ----------------------------------------------------------------------------

    async def _supervise(self) -> None:
        error: BaseException
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                background = tasks.create_task(self._session.maintain(self), name="userstream-client:session")
                error = await self._connect_forever()
                background.cancel()
                self._resync.cancel()
                for live in self._live.values():
                    live.task.cancel()
        except Exception as exc:  # a bug in a child task: stop visibly rather than silently
            error = _first_leaf(exc)
            _log.error("userstream supervisor failed", exc_info=error)
        self._live.clear()
        self.emit(State.FATAL, reason=str(error))
        self._queue.close(error)
        self._statuses.close()

    async def _connect_forever(self) -> BaseException:
        """Keep a live connection until something fatal happens; return that."""
        try:
            current: _Live | None = None
            while True:
                if current is None:
                    current = await self._establish(old=None)
                if not await self._wait_for_rotation(current):
                    self._ended(current)
                    current = None
                    continue
                new = await self._establish(old=current)
                await self._hand_over(current, new)
                current = new
        except _Stop as stop:
            return stop.error

    async def _establish(self, old: _Live | None) -> _Live:
        """Open connections, with backoff, until one is live. During a rotation, `old` keeps delivering."""
        while True:
            if old is not None and old.task.done() and old.serial in self._live:
                self._ended(old)  # the old connection died while its successor was being opened
            if self._retry_reason is not None:
                delay = self._backoff.next_delay()
                self.emit(
                    State.RECONNECTING,
                    reason=self._retry_reason,
                    attempt=self._backoff.attempts,
                    delay=delay,
                )
                await self._sleep(delay)
            rotating = old is not None and not old.task.done()
            if rotating:
                assert old is not None  # noqa: S101 - narrowing for mypy
                self._dedupe.begin(old.serial)
            try:
                live = await self._attempt()
            except UserStreamError as exc:
                if self._dedupe.active:
                    self._dedupe.cancel()
                self._failed(exc)
                continue
            self._retry_reason = None
            self._auth_failures = 0
            self._attempts_since_live = 0
            self._ever_live = True
            self._not_found = None
            if self._gap:  # a connection ended unplanned (or the stream starts with a snapshot)
                self._gap = False
                assert self._tasks is not None  # noqa: S101 - set before the first attempt
                self._resync.request(self._tasks)
            return live

    async def _attempt(self) -> _Live:
        serial = next(self._serials)
        self._attempts_since_live += 1
        self.emit(State.CONNECTING, attempt=self._attempts_since_live, connection=serial)
        ws = await self._session.open_websocket()
        options = self._options
        connection = Connection(
            serial=serial,
            ws=ws,
            dialect=self._session.dialect,
            sink=self._deliver,
            sink_now=self._deliver_now,
            ping_interval=options.ping_interval,
            idle_timeout=options.idle_timeout,
            close_timeout=options.close_timeout,
            counters=self._counters,
            on_live=self._went_live,
            on_frame=options.on_frame,
            name=f"{self.exchange.value}/{self.account}",
            warning_interval=options.warning_interval,
        )
        if self._dedupe.active:
            self._dedupe.add_new(serial)
        assert self._tasks is not None  # noqa: S101 - set before the first attempt
        live = _Live(
            connection, self._tasks.create_task(connection.run(), name=f"userstream-client:ws-{serial}")
        )
        self._live[serial] = live
        self._connections_opened += 1
        self.emit(State.CONNECTED, connection=serial, listen_key=self._session.listen_key_hint)
        await self._wait_any({live.task, connection.went_live}, options.sub_timeout)
        if not connection.is_live:
            if not live.task.done():
                await connection.abort(
                    ConnectionLostError(
                        f"{connection.label}: no 'sub success' within {options.sub_timeout:g}s"
                    )
                )
            ending = await live.task
            del self._live[serial]
            raise self._session.ended_before_live(
                ending or ConnectionLostError(f"{connection.label}: closed before it was live")
            )
        return live

    def _went_live(self, connection: Connection) -> None:
        if not self._session.dialect.live_on_connect:
            self.emit(State.SUBSCRIBED, connection=connection.serial)

    async def _wait_for_rotation(self, current: _Live) -> bool:
        """Wait until the connection ends (False) or its rotation is due (True)."""
        rotate_after = self._options.rotate_after
        live_at = current.connection.live_at
        timeout = None
        if rotate_after is not None and live_at is not None:
            timeout = max(0.0, live_at + rotate_after - self._clock())
        await self._wait_any({current.task}, timeout)
        return not current.task.done()

    async def _hand_over(self, old: _Live, new: _Live) -> None:
        """The new connection is live: let the old one catch up, retire it, release the overlap."""
        retired = not old.task.done()
        if retired:
            # Wait until the old connection reaches the first event the new one holds. The overlap timeout
            # is a quiet-stream rule: it runs only while nothing arrives and the old reader is free to
            # read, so a consumer that is behind never makes us cut the old connection short.
            while not self._dedupe.caught_up and not old.task.done():
                if self._progress.done():
                    self._progress = asyncio.get_running_loop().create_future()
                await self._wait_any({old.task, self._progress}, self._options.overlap_timeout)
                quiet = not self._progress.done()
                if quiet and not old.connection.waiting_for_consumer:
                    break
            await old.connection.close_gracefully()
        ending = await old.task
        reported = old.serial not in self._live  # `_ended` already told the user
        self._live.pop(old.serial, None)
        async with self._deliver_lock:
            caught_up = self._dedupe.caught_up
            released = self._dedupe.end() if self._dedupe.active else []
            for event in released:
                await self._queue.put(event)
        if ending is not None and not reported:
            # The old connection died during the rotation; the new one is already live.
            self.emit(State.DISCONNECTED, connection=old.serial, reason=str(ending))
            if not caught_up:
                # ... before reaching the first event the new one holds: what only the old one carried
                # (published before the new one was live) may never have arrived. A gap: resync now.
                assert self._tasks is not None  # noqa: S101 - set before the first attempt
                self._resync.request(self._tasks)
        if retired:
            self.emit(State.ROTATED, connection=new.serial, reason=f"replaced connection {old.serial}")

    def _ended(self, live: _Live) -> None:
        """A connection ended outside a rotation: report it and decide what happens next."""
        self._live.pop(live.serial, None)
        self._gap = True  # nothing was receiving while no connection was live: events may be lost
        ending = live.task.result() or ConnectionLostError(f"{live.connection.label}: closed")
        self.emit(State.DISCONNECTED, connection=live.serial, reason=str(ending))
        live_at = live.connection.live_at
        if live_at is not None:
            self._backoff.reset_if_stable(self._clock() - live_at)
        self._failed(ending)

    def _failed(self, error: UserStreamError) -> None:
        """Classify an error; raise `_Stop` when it is fatal, else remember it as the retry reason."""
        action = classify(error)
        self._count_not_found(error)
        if isinstance(error, AuthenticationError):
            self._auth_failures += 1
            if self._auth_failures >= self._options.auth_attempts:
                raise _Stop(error)
        elif action is Action.FATAL:
            raise _Stop(error)
        elif action is Action.NEW_LISTEN_KEY:
            self._session.forget_listen_key(str(error))
        self._retry_reason = str(error)

    def _count_not_found(self, error: UserStreamError) -> None:
        """Raise `_Stop` with a ConfigurationError when a never-live stream met the same 404 `auth_attempts`
        times in a row: a wrong URL, which no retry fixes."""
        if self._ever_live or not isinstance(error, EndpointNotFoundError):
            self._not_found = None
            return
        count = self._not_found[1] + 1 if self._not_found and self._not_found[0] == error.url else 1
        self._not_found = (error.url, count)
        if count >= self._options.auth_attempts:
            raise _Stop(
                ConfigurationError(
                    f"{error.url} answered HTTP 404 {count} times in a row and the stream has never been "
                    f"live: check the URL (the path expected there is {error.expected})"
                )
            )

    def _deliver_now(self, connection: Connection, events: Sequence[Event]) -> bool:
        """The connections' sink when nothing has to wait (the common case, once per frame): no rotation
        under way (de-duplication lets everything through), nobody else delivering, room in the queue for
        every event. Queues them all and returns True, or queues none and returns False (`_deliver` then
        does it, waiting as it must)."""
        if self._dedupe.active or self._deliver_lock.locked() or not self._queue.put_all_nowait(events):
            return False
        if not self._progress.done():
            self._progress.set_result(None)
        return True

    async def _deliver(self, connection: Connection, events: Sequence[Event]) -> None:
        """The connections' sink: de-duplicate during a rotation, then queue (waiting if "block")."""
        async with self._deliver_lock:
            for event in events:
                if self._dedupe.offer(connection.serial, event):
                    await self._queue.put(event)
            if not self._progress.done():
                self._progress.set_result(None)

    async def deliver_corrections(self, events: Sequence[Event], queued: Callable[[Event], object]) -> None:
        """The resync's sink: snapshot events go straight to the queue (they belong to no connection, so a
        rotation's de-duplication does not apply), in one piece with respect to the connections' events."""
        async with self._deliver_lock:
            for event in events:
                await self._queue.put(event)
                queued(event)
            self._delivered.complete_after(len(self._queue))

    async def _sleep(self, delay: float) -> None:
        await self._wait_any(set(), delay)

    async def _wait_any(self, waitables: Iterable[asyncio.Future[Any]], limit: float | None) -> None:
        """Wait for any of `waitables`, at most `limit` seconds; a fatal report interrupts the wait."""
        assert self._fatal is not None  # noqa: S101 - set by start()
        await asyncio.wait({*waitables, self._fatal}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        if self._fatal.done():
            raise _Stop(self._fatal.result())


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


# --- the public entry points ------------------------------------------------------------------------


ExchangeName = Literal["bitmusa", "coinlocally"]


def connect(
    exchange: ExchangeName | Exchange | str,
    *,
    api_key: str | None = None,
    auth_key: str | None = None,
    token: str | None = None,
    account: str = "default",
    rest_url: str | None = None,
    ws_url: str | None = None,
    keepalive_interval: float | None = None,
    ping_interval: float | None = None,
    idle_timeout: float | None = None,
    rotate_after: float | None = DEFAULTS["rotate_after"],
    sub_timeout: float | None = None,
    queue_size: int = 10_000,
    queue_bytes: int = DEFAULT_QUEUE_BYTES,
    overflow: Overflow | Literal["block", "drop_oldest"] = Overflow.BLOCK,
    backoff_base: float | None = None,
    backoff_cap: float | None = None,
    stable_after: float | None = None,
    auth_attempts: int = 3,
    overlap_timeout: float | None = None,
    close_timeout: float | None = None,
    request_timeout: float | None = None,
    verify_tls: bool = True,
    ca_file: str | None = None,
    close_key_on_exit: bool = False,
    max_frame: int = DEFAULT_MAX_FRAME,
    quotes: Sequence[str] | None = None,
    on_status: Callable[[StatusEvent], object] | None = None,
    rng: Callable[[], float] | None = None,
    on_frame: FrameHook | None = None,
    secret_key: str | None = None,
    snapshot_rest_url: str | None = None,
    snapshot_symbols: Sequence[str] = (),
    initial_snapshot: bool = False,
    resync: bool = True,
    warning_interval: float = DEFAULT_WARNING_INTERVAL,
    fills: bool = False,
    picture: bool = True,
) -> UserStream:
    """A user data stream for one account; use it with `async with` and `async for`.

    Bitmusa needs `api_key` and `auth_key`; Coinlocally needs `token` or `api_key` (exactly one).
    `rest_url`/`ws_url` default to the documented production endpoints; either may be written as a base
    (`wss://host:port`) or as the full URL of the documented path (`.../ws/spot`, `.../spot/userDataStream`,
    `.../spotws_user/userData/ws`), with or without a trailing slash (`protocol.endpoints`). Must be called
    inside a running event loop. Every other argument is documented in docs/client.md. A timing left as None
    takes its default, or a value fitted to the timings given (`idle_timeout=30` alone pings every 20 s);
    each value so derived is logged at INFO, and only a contradiction between given timings is refused.
    """
    _require_running_loop()
    try:
        policy = Overflow(overflow)
    except ValueError:
        raise ConfigurationError(f"overflow must be 'block' or 'drop_oldest', not {overflow!r}") from None
    options = StreamOptions(
        account=account,
        keepalive_interval=keepalive_interval,
        ping_interval=ping_interval,
        idle_timeout=idle_timeout,
        rotate_after=rotate_after,
        sub_timeout=sub_timeout,
        queue_size=queue_size,
        queue_bytes=queue_bytes,
        overflow=policy,
        backoff_base=backoff_base,
        backoff_cap=backoff_cap,
        stable_after=stable_after,
        auth_attempts=auth_attempts,
        overlap_timeout=overlap_timeout,
        close_timeout=close_timeout,
        request_timeout=request_timeout,
        verify_tls=verify_tls,
        ca_file=ca_file,
        close_key_on_exit=close_key_on_exit,
        max_frame=max_frame,
        quotes=None if quotes is None else tuple(quotes),
        rng=rng,
        on_frame=on_frame,
        resync=resync,
        snapshot_symbols=_symbols(snapshot_symbols),
        initial_snapshot=initial_snapshot,
        warning_interval=warning_interval,
        fills=fills,
        picture=picture,
    )
    # Every credential of the stream (its listenKeys are added as the session gets them): what a server
    # says passes through this before anyone sees it (client/scrub.py).
    scrubber = Scrubber((api_key, auth_key, token, secret_key))
    transport = Transport(
        tls=options.tls_policy(),
        request_timeout=options.request_timeout,
        max_frame=options.max_frame,
        scrubber=scrubber,
    )
    session = _make_session(
        _exchange(exchange),
        transport=transport,
        options=options,
        api_key=api_key,
        auth_key=auth_key,
        token=token,
        rest_url=rest_url,
        ws_url=ws_url,
    )
    snapshots = snapshot_taker(
        _exchange(exchange),
        transport=transport,
        account=options.account,
        api_key=api_key,
        auth_key=auth_key,
        token=token,
        secret_key=secret_key,
        rest_url=endpoints.bitmusa_rest_base(rest_url if rest_url is not None else bitmusa.REST_BASE),
        snapshot_rest_url=snapshot_rest_url,
        quotes=options.quotes,
    )
    for line in options.derived:  # once every argument is accepted
        _log.info("%s/%s: %s", session.exchange.value, options.account, line)
    for line in unlikely_to_work(options, session.exchange):
        _log.warning("%s/%s: %s", session.exchange.value, options.account, line)
    return UserStream(
        session=session, transport=transport, options=options, on_status=on_status, snapshots=snapshots
    )


def _require_running_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise ConfigurationError(
            "userstream.connect() needs a running asyncio event loop: call it inside an `async def` run by "
            "asyncio.run(), as in `async with userstream.connect(...) as stream:`; without asyncio, use "
            "userstream.sync.connect() (docs/client.md)"
        ) from None


def _symbols(symbols: Sequence[str]) -> tuple[str, ...]:
    if isinstance(symbols, str):  # "BTC/USDT" would otherwise become eight one-letter symbols
        raise ConfigurationError("snapshot_symbols must be a sequence of symbols such as ['BTC/USDT']")
    return tuple(symbols)


async def run(
    exchange: ExchangeName | Exchange | str,
    *,
    on_event: Callable[[Event], object],
    **options: Any,
) -> None:
    """The callback form: call `on_event` (a function or a coroutine function) for every event.

    Runs until cancelled, or raises the stream's fatal error. `options` are `connect()`'s.
    """
    async with connect(exchange, **options) as stream:
        async for event in stream:
            result = on_event(event)
            if inspect.isawaitable(result):
                await result


def _exchange(name: ExchangeName | Exchange | str) -> Exchange:
    try:
        return Exchange(name)
    except ValueError:
        known = ", ".join(exchange.value for exchange in Exchange)
        raise ConfigurationError(f"unknown exchange {name!r}; known: {known}") from None


def _make_session(
    exchange: Exchange,
    *,
    transport: Transport,
    options: StreamOptions,
    api_key: str | None,
    auth_key: str | None,
    token: str | None,
    rest_url: str | None,
    ws_url: str | None,
) -> Session:
    if exchange is Exchange.BITMUSA:
        if token is not None:
            raise ConfigurationError("Bitmusa takes api_key and auth_key, not a token")
        if api_key is None or auth_key is None:
            missing = " and ".join(
                name for name, value in (("api_key", api_key), ("auth_key", auth_key)) if value is None
            )
            raise ConfigurationError(f"Bitmusa needs an api_key and an auth_key ({missing} missing)")
        rest = rest_url if rest_url is not None else bitmusa.REST_BASE
        wss = ws_url if ws_url is not None else bitmusa.WS_BASE
        check_url(rest, ("https", "http"), "the Bitmusa REST URL")
        check_url(wss, ("wss", "ws"), "the Bitmusa WebSocket URL")
        return BitmusaSession(
            transport=transport,
            credentials=bitmusa.Credentials(api_key=api_key, auth_key=auth_key),
            account=options.account,
            rest_url=rest,
            ws_url=wss,
            keepalive_interval=options.keepalive_interval,
            close_key_on_exit=options.close_key_on_exit,
            auth_attempts=options.auth_attempts,
            make_backoff=options.make_backoff,
            max_frame=options.max_frame,
            clock=asyncio.get_running_loop().time,
        )
    if auth_key is not None:
        raise ConfigurationError("Coinlocally takes a token or an api_key, not an auth_key")
    if rest_url is not None:
        raise ConfigurationError("Coinlocally's user stream has no REST endpoint; pass ws_url only")
    wss = ws_url if ws_url is not None else coinlocally.WS_URL
    check_url(wss, ("wss", "ws"), "the Coinlocally WebSocket URL")
    return CoinlocallySession(
        transport=transport,
        credentials=coinlocally.Credentials(token=token, api_key=api_key),
        account=options.account,
        ws_url=wss,
        quotes=options.quotes,
        max_frame=options.max_frame,
    )
