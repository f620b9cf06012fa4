"""`UserStream`: the supervisor that keeps one account's user data stream flowing (made by `connect()`).

This module owns the stream's life: opening connections with backoff, noticing their end (closed, dead,
rejected), renewing what needs renewing, rotating before the exchange's 24-hour cut without losing or
duplicating an event, reporting every step as a status event, and stopping with a typed error when retrying
cannot help; and the user's side of the stream (`async for`, the picture, `stats`). Events reach the
bounded queue through the one entrance (`intake.Intake`): the connections' sink is its door, and resync's
corrections and a rotation's released events go in the same way. It owns every task it starts: one
runner task per stream, and inside it one `asyncio.TaskGroup` holding the exchange session's background
loop (Bitmusa's keepalive) and each connection's task. Leaving `async with` cancels the runner, and the
TaskGroup does not let any of them outlive it: no orphaned keepalive loop, no half-open socket.

What a stream does after each kind of ending (the one retry policy, `backoff.RetryPolicy`; a delay is never
shorter than a peer's `retry_after`):

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
begins (or `overlap_timeout` passes), then closed gracefully; the intake's `dedupe.OverlapDeduper` makes
sure each event of the overlap is delivered once, in order.

Resync: a connection that ended outside a rotation leaves a gap in which events were lost; once the next
connection is live, `resync.Resync` takes a REST snapshot beside the connections and queues the events
that correct what was delivered (the stream's one picture, `delivered.Delivered.state`). A rotation leaves
no gap and takes no snapshot.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from userstream.client.backoff import Action, RetryPolicy
from userstream.client.connection import Connection, ConnectionCounters
from userstream.client.delivered import Delivered
from userstream.client.intake import NO_CONNECTION, Intake
from userstream.client.options import StreamOptions
from userstream.client.queue import EventQueue, Overflow, QueueClosed
from userstream.client.resync import Resync, SnapshotTaker
from userstream.client.session import Session
from userstream.client.status import State, StatusEvent, StreamStats
from userstream.client.transport import Transport
from userstream.errors import ConfigurationError, ConnectionLostError, EndpointNotFoundError, UserStreamError
from userstream.events import BalanceUpdate, Event, Exchange, OrderUpdate, event_size
from userstream.state import AccountState

__all__ = ["UserStream"]

_log = logging.getLogger("userstream.client")

#: How many status events `UserStream.statuses()` keeps for a reader that is behind.
STATUS_BACKLOG = 1024


class _Live:
    """A connection and the task running it."""

    __slots__ = ("connection", "task")

    def __init__(self, connection: Connection, task: asyncio.Task[UserStreamError | None]) -> None:
        self.connection = connection
        self.task = task

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
        #: the one entrance to the queue: connections, corrections and a rotation's hand-over put through it
        self._intake = Intake(self._queue)
        self._statuses: EventQueue[StatusEvent] = EventQueue(STATUS_BACKLOG, Overflow.DROP_OLDEST)
        self._counters = ConnectionCounters()
        self._retry = RetryPolicy(options.make_backoff(), auth_attempts=options.auth_attempts)
        self._serials = itertools.count(1)
        self._connections_opened = 0
        self._events_delivered = 0
        self._attempts_since_live = 0
        self._ever_live = False
        self._not_found: tuple[str, int] | None = None  # (URL, how many 404s in a row) while never live
        self._retry_after: UserStreamError | None = None  # why the next attempt waits (None: it does not)
        self._live: dict[int, _Live] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self._fatal: asyncio.Future[UserStreamError] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._clock = asyncio.get_running_loop().time
        taker = snapshots if options.resync else None  # how to take REST snapshots, or why not (None: off)
        # The user's side: fills, and the one picture of what was delivered, which resync corrects too.
        self._delivered = Delivered(
            fills=options.fills,
            picture=options.picture,
            kept=taker is not None and not isinstance(taker, str),
        )
        self._resync = Resync(
            taker,
            host=self,
            symbols=options.snapshot_symbols,
            make_backoff=options.make_backoff,
            state=self._delivered.state,
        )
        self._gap = options.initial_snapshot  # events may be missing: resync once a connection is live

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
            duplicates_suppressed=self._intake.dedupe.suppressed,
            dropped=self._queue.dropped,
            unknown_frames=counters.unknown_frames,
            pings_sent=counters.pings_sent,
            pings_answered=counters.pings_answered,
            keepalives=self._session.keepalives,
            auth_failures=self._retry.auth_failures,
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
        self._delivered.assume(events)

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
        delivered.took(event)
        if self._resync.ahead:  # corrections wait in the queue: this may be one of them
            self._resync.taken(event)
        return event

    @property
    def picture(self) -> AccountState | None:
        """The `AccountState` every event handed out is folded into (None with `picture=False`): what
        `balances()` and `open_orders()` read. A consumer that derives events of its own from the stream's
        (the gateway's fills) or restores a picture it kept folds them in here: the account keeps one."""
        return self._delivered.picture

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
            if self._retry_after is not None:
                delay = self._retry.delay(self._retry_after)  # at least what the peer asked for
                self.emit(
                    State.RECONNECTING,
                    reason=str(self._retry_after),
                    attempt=self._retry.attempts,
                    delay=delay,
                )
                await self._sleep(delay)
            dedupe = self._intake.dedupe
            rotating = old is not None and not old.task.done()
            if rotating:
                assert old is not None  # noqa: S101 - narrowing for mypy
                dedupe.begin(old.serial)
            try:
                live = await self._attempt()
            except UserStreamError as exc:
                if dedupe.active:
                    dedupe.cancel()
                self._failed(exc)
                continue
            self._retry_after = None
            self._retry.accepted()
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
            new_session=self._session.new_client_session,
            sink=self._put,
            sink_now=self._intake.offer,  # the no-wait door, called once per frame: bound, no wrapper
            ping_interval=options.ping_interval,
            idle_timeout=options.idle_timeout,
            close_timeout=options.close_timeout,
            sub_timeout=options.sub_timeout,  # the session ends a connection whose sub is not answered
            counters=self._counters,
            on_live=self._went_live,
            on_frame=options.on_frame,
            name=f"{self.exchange.value}/{self.account}",
            warning_interval=options.warning_interval,
        )
        if self._intake.dedupe.active:
            self._intake.dedupe.add_new(serial)
        assert self._tasks is not None  # noqa: S101 - set before the first attempt
        live = _Live(
            connection, self._tasks.create_task(connection.run(), name=f"userstream-client:ws-{serial}")
        )
        self._live[serial] = live
        self._connections_opened += 1
        self.emit(State.CONNECTED, connection=serial, listen_key=self._session.listen_key_hint)
        await self._wait_any({live.task, connection.went_live}, None)
        if not connection.is_live:
            ending = await live.task  # the session judged it: a refused sub, its sub timeout, a close
            del self._live[serial]
            raise ending or ConnectionLostError(f"{connection.label}: closed before it was live")
        return live

    def _went_live(self, connection: Connection) -> None:
        if not self._session.live_on_connect:
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
            while not self._intake.dedupe.caught_up and not old.task.done():
                progressed = self._intake.progressed()
                await self._wait_any({old.task, progressed}, self._options.overlap_timeout)
                quiet = not progressed.done()
                if quiet and not old.connection.waiting_for_consumer:
                    break
            await old.connection.close_gracefully()
        ending = await old.task
        reported = old.serial not in self._live  # `_ended` already told the user
        self._live.pop(old.serial, None)
        caught_up = await self._intake.end_overlap()
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
            self._retry.reset_if_stable(self._clock() - live_at)
        self._failed(ending)

    def _failed(self, error: UserStreamError) -> None:
        """Judge an error by the retry policy; raise `_Stop` when it is fatal, else remember it as what the
        next attempt waits for (its reason, and the peer's `retry_after` if it gave one)."""
        self._count_not_found(error)
        action = self._retry.judge(error)  # a rejected credential: fatal at the `auth_attempts`-th in a row
        if action is Action.FATAL:
            raise _Stop(error)
        if action is Action.NEW_LISTEN_KEY:
            self._session.forget_listen_key(str(error))
        self._retry_after = error

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

    # --- the sinks: every producer puts through the one entrance (client/intake.py) ----------------------

    async def _put(self, connection: Connection, events: Sequence[Event]) -> None:
        """The connections' sink: in order, de-duplicated during a rotation, waiting for room if "block"."""
        await self._intake.put(connection.serial, events)

    async def deliver_corrections(self, events: Sequence[Event], queued: Callable[[Event], object]) -> None:
        """The resync's sink: snapshot events belong to no connection (a rotation's de-duplication does not
        apply); they go in as one piece with respect to the connections' events."""
        await self._intake.put(NO_CONNECTION, events, queued)
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
