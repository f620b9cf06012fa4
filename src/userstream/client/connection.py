"""One WebSocket connection at runtime: it drives the exchange's client session, and says why it ended.

This module owns `Connection`, the I/O around one `protocol.client_session.ClientSession` (python-websockets'
`asyncio/connection.py` to its `protocol.py`). It makes no protocol decision: what a frame means, when the
connection is live, what to answer, when to ping, when it is dead and what an ending means are the
session's. The connection runs one open `WebSocket` until it ends and returns why it ended as a value (an
error of ours, or None when we closed it ourselves), never by raising: the supervisor decides what an
ending means. It owns two tasks, in its own `asyncio.TaskGroup`, so neither can outlive the connection:

- the reader: takes each frame, hands it to `session.receive(frame, now)` (its one parse), gives the data
  events to the sink, counts and reports the unusable ones, and performs what the session asks
  (`data_to_send()`: send the sub or a pong, go live, close, abort);
- the timer: sleeps until the session's `next_deadline()` (ping, idle, sub timeout, close timeout; the
  stream's one sub timeout is the session's, given as `sub_timeout`) or until a count of unusable frames
  is due to be reported (`frame_warnings`), then calls `session.wake(now, ...)` and performs what it asks.
  The idle clock is paused while the reader waits for the consumer, so backpressure is never mistaken for
  a dead peer.

The express path: a data frame that finds nothing queued ahead of it is received, parsed and handed to the
sink's no-wait door in the WebSocket's frame callback, with no queueing and no task switch. A frame the door
refuses (or that is not data) goes to the reader with its parse result (`_ahead`), so no frame is parsed
twice; while the reader awaits inside a frame (the sink, a send), the express path is switched off, so a
later frame cannot overtake it.

A frame the parser cannot use (undecodable, malformed or unknown) is counted, never fatal, and reported:
at DEBUG each time, at WARNING rate-limited per kind (`client.frame_warnings.FrameWarnings`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from userstream.client.frame_warnings import DEFAULT_WARNING_INTERVAL, FrameWarnings
from userstream.client.websocket import PeerClosedError, SignOfLife, WebSocket
from userstream.errors import TransportError, UserStreamError
from userstream.events import Event
from userstream.protocol.client_session import ClientSession, State, Timings
from userstream.protocol.messages import DataEvents, Incoming, Unknown, UnknownKind
from userstream.protocol.session import ClientAction, Close, End, GoLive, Send, SendPing, Sent

__all__ = ["Connection", "ConnectionCounters", "FrameHook", "NewSession", "Sink"]

_log = logging.getLogger("userstream.client")


class NewSession(Protocol):
    """Makes the client session of one connection (`client.session.Session.new_client_session`)."""

    def __call__(self, *, timings: Timings, label: str, scrub: Callable[[str], str]) -> ClientSession: ...


class Sink(Protocol):
    def __call__(self, connection: Connection, events: Sequence[Event]) -> Awaitable[None]: ...


#: The sink's no-wait door: takes every event of a frame and returns True, or takes none and returns False
#: (then the reader awaits the `Sink`, with the idle clock suspended). One frame's events at a time.
SinkNow = Callable[["Connection", Sequence[Event]], bool]


#: Called with (receive time in epoch seconds, the raw frame, the connection's serial) for every text or
#: binary frame, before it is parsed (`userstream record` writes them to a file).
FrameHook = Callable[[float, bytes | str, int], object]


@dataclass(slots=True)
class ConnectionCounters:
    """Counters shared by every connection of one stream (the supervisor owns the instance)."""

    frames: int = 0
    events: int = 0
    unknown_frames: int = 0  # every frame the parser returned as Unknown, whatever its kind
    malformed_frames: int = 0  # those refused as broken: undecodable or malformed (impossible values too)
    pings_sent: int = 0
    pings_answered: int = 0
    last_unknown_reason: str | None = field(default=None)


def _no_door(connection: Connection, events: Sequence[Event]) -> bool:
    """The sink has no no-wait door: every data frame waits for the sink."""
    return False


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Connection:
    """Runs one open WebSocket until it ends. Call `run()` once, in a task the caller owns."""

    def __init__(
        self,
        *,
        serial: int,
        ws: WebSocket,
        new_session: NewSession,
        sink: Sink,
        ping_interval: float,
        idle_timeout: float,
        close_timeout: float,
        counters: ConnectionCounters,
        sub_timeout: float | None = None,
        on_live: Callable[[Connection], None] | None = None,
        on_frame: FrameHook | None = None,
        sink_now: SinkNow | None = None,
        clock: Callable[[], float] | None = None,
        wall_clock_ms: Callable[[], int] = _wall_clock_ms,
        name: str | None = None,
        warning_interval: float = DEFAULT_WARNING_INTERVAL,
    ) -> None:
        """`sub_timeout`: the seconds a subscription may take before the session ends the connection
        (None: none). `name` starts this connection's warnings ("bitmusa/alice"; the WebSocket's label if
        None); `warning_interval` is the seconds between two WARNINGs about unusable frames of one kind."""
        self.serial = serial
        self._ws = ws
        self._sink = sink
        self._sink_now: SinkNow = sink_now if sink_now is not None else _no_door
        self._clock = clock if clock is not None else asyncio.get_running_loop().time
        self._wall_clock_ms = wall_clock_ms
        self._counters = counters
        self._on_live = on_live
        self._on_frame = on_frame
        timings = Timings(
            ping_interval=ping_interval,
            idle_timeout=idle_timeout,
            close_timeout=close_timeout,
            sub_timeout=sub_timeout,
        )
        self._session = new_session(timings=timings, label=ws.label, scrub=ws.scrub)
        self._warnings = FrameWarnings(
            f"{name if name is not None else ws.label} connection={serial}", warning_interval
        )
        #: The express path for data frames, when the sink has a no-wait door and no hook sees every frame.
        self._express_on = sink_now is not None and on_frame is None
        #: A frame the express path received but did not finish, and its parse result: the reader's next.
        self._ahead: tuple[str | bytes, Incoming] | None = None
        self._express_holds = 0  # awaits under way that a later frame must not overtake (see `_hold`)
        self._wake = asyncio.Event()
        #: Resolved when the session's `GoLive` is performed (Bitmusa: at once; Coinlocally: "sub success"):
        #: what the supervisor awaits. Whether and when it went live are the session's (`live_at`).
        self.went_live: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def label(self) -> str:
        return self._ws.label

    @property
    def session(self) -> ClientSession:
        """The conversation this connection drives (its state, for status and tests)."""
        return self._session

    async def run(self) -> UserStreamError | None:
        """Read until the connection ends; return why (None: we closed it and the server agreed)."""
        self._session.start(self._clock())
        try:
            async with asyncio.TaskGroup() as tasks:
                timer = tasks.create_task(self._timer(), name=f"userstream-client:heartbeat-{self.serial}")
                try:
                    ending = await self._read()
                finally:
                    timer.cancel()
        finally:
            self._warnings.close(self._clock())
            await self._ws.abort()
        return ending

    async def close_gracefully(self) -> None:
        """Send our close frame; `run()` returns once the server answers, or after `close_timeout`."""
        self._session.close(self._clock())
        await self._perform()

    async def abort(self, reason: UserStreamError) -> None:
        """End the connection now, with `reason` as its ending (unless it already has one)."""
        self._session.end(reason)
        await self._perform()
        await self._ws.abort()

    @property
    def is_live(self) -> bool:
        """Whether the session's `GoLive` was performed (the connection may be closing or ended since)."""
        return self.went_live.done()

    @property
    def live_at(self) -> float | None:
        """When the connection went live, on the runtime's clock (None: it has not)."""
        return self._session.live_at

    @property
    def waiting_for_consumer(self) -> bool:
        """True while the reader waits for room in the queue (the consumer is behind), not for the server:
        the session's idle clock is paused for exactly that."""
        return self._session.idle_paused

    # --- the reader -------------------------------------------------------------------------------

    async def _read(self) -> UserStreamError | None:
        self._express_holds += 1  # the express path starts with the reader, after the opening actions
        try:
            await self._perform()  # the opening frames; going live
        finally:
            self._release()
        try:
            return await self._read_frames()
        finally:
            self._ws.set_express(None)

    def _express(self, frame: str | bytes) -> bool:
        """The reader's work for a data frame whose events the sink takes without waiting, done by the
        WebSocket in its frame callback when nothing is queued ahead of the frame: the usual case. For
        anything else, the frame goes to the reader's queue and its parse result to `_ahead` (False)."""
        incoming = self._session.receive(frame, self._clock())
        if type(incoming) is DataEvents:
            events = incoming.events
            if self._sink_now(self, events):
                counters = self._counters
                counters.events += len(events)
                counters.frames += 1
                return True
        self._ahead = (frame, incoming)
        return False

    def _sink_at_once(self, incoming: DataEvents) -> bool:
        """Hand a data frame's events to the sink's no-wait door and count them; False when the door
        refuses (then `_handle_data` awaits the sink, with the idle clock paused)."""
        events = incoming.events
        if not self._sink_now(self, events):
            return False
        self._counters.events += len(events)
        return True

    async def _read_frames(self) -> UserStreamError | None:
        session = self._session
        ws = self._ws
        while True:
            try:
                # Frames one socket read brought are taken without an await each; `receive()` waits.
                frame = ws.receive_nowait()
                if frame is None:
                    frame = await ws.receive()
            except PeerClosedError as closed:
                return session.peer_closed(closed)
            except UserStreamError as exc:
                return session.connection_lost(exc)
            self._counters.frames += 1
            if isinstance(frame, SignOfLife):
                session.sign_of_life(self._clock())
                continue
            ahead = self._ahead
            if ahead is not None and ahead[0] is frame:
                self._ahead = None
                incoming = ahead[1]
            else:
                if self._on_frame is not None:
                    self._report_frame(frame)
                incoming = session.receive(frame, self._clock())
            if type(incoming) is DataEvents:
                if not self._sink_at_once(incoming):  # the common case: the queue has room, nothing waits
                    await self._handle_data(incoming)
                continue
            if type(incoming) is Unknown:
                self._count_unknown(incoming)
            if session.has_actions:
                await self._perform()

    def _report_frame(self, frame: bytes | str) -> None:
        assert self._on_frame is not None  # noqa: S101 - checked by the caller
        try:
            self._on_frame(time.time(), frame, self.serial)
        except Exception:  # a broken hook must not stop the stream; say so loudly
            _log.exception("the on_frame callback raised; the stream goes on")

    async def _handle_data(self, incoming: DataEvents) -> None:
        self._counters.events += len(incoming.events)
        self._session.pause_idle()
        self._hold()  # while this frame waits, a later one must not overtake it
        try:
            await self._sink(self, incoming.events)
        finally:
            self._release()
            self._session.resume_idle(self._clock())

    def _count_unknown(self, incoming: Unknown) -> None:
        reason = self._ws.scrub(incoming.reason)  # may quote the frame, which may echo a secret
        if reason != incoming.reason:
            incoming = Unknown(raw="", reason=reason, kind=incoming.kind)
        counters = self._counters
        counters.unknown_frames += 1
        if incoming.kind is not UnknownKind.UNKNOWN:
            counters.malformed_frames += 1
        counters.last_unknown_reason = reason
        if self._warnings.frame(incoming, self._clock()):
            self._wake.set()  # a count is due before the session's next deadline

    # --- what the session asks -----------------------------------------------------------------------

    async def _perform(self) -> None:
        """Do what the session asked, in order. Sends may await: the express path is off meanwhile."""
        actions = self._session.data_to_send()
        if not actions:
            return
        self._hold()
        try:
            for action in actions:
                await self._do(action)
        finally:
            self._release()

    def _hold(self) -> None:
        """The express path is off until the matching `_release`: an await is under way."""
        self._express_holds += 1
        self._ws.set_express(None)

    def _release(self) -> None:
        self._express_holds -= 1
        if self._express_holds == 0 and self._express_on:
            self._ws.set_express(self._express)

    async def _do(self, action: ClientAction) -> None:
        ws = self._ws
        if type(action) is Send:
            try:
                await ws.send(action.frame)
            except UserStreamError as exc:
                _log.debug("%s: %s not sent: %s", self.label, action.why.value, exc)
                self._session.send_failed(exc, action.why)  # the reader will see the end
                return
            if action.why is Sent.PING:
                self._counters.pings_sent += 1
            elif action.why is Sent.PONG:
                self._counters.pings_answered += 1
        elif type(action) is SendPing:
            try:
                await ws.ping()
            except TransportError as exc:
                _log.debug("%s: ping not sent: %s", self.label, exc)
                self._session.send_failed(exc, Sent.PING)
            else:
                self._counters.pings_sent += 1
        elif type(action) is GoLive:
            if not self.went_live.done():
                self.went_live.set_result(None)
                if self._on_live is not None:
                    self._on_live(self)  # before any event of this connection is handed on
        elif type(action) is Close:
            self._wake.set()  # the close timeout is the timer's next deadline
            if action.last_frame is not None:
                try:
                    await ws.send(action.last_frame)
                except UserStreamError as exc:
                    self._session.send_failed(exc)
            await ws.begin_close(action.code, action.reason)
        elif type(action) is End:
            await ws.abort()

    # --- the timer ------------------------------------------------------------------------------------

    async def _timer(self) -> None:
        session = self._session
        while True:
            now = self._clock()
            self._warnings.poll(now)
            session.wake(now, self._wall_clock_ms())
            if session.has_actions:
                await self._perform()
            if session.state is State.ENDED:
                return
            deadline = min(session.next_deadline(), self._warnings.next_report_at)
            self._wake.clear()
            wait = None if math.isinf(deadline) else max(0.0, deadline - self._clock())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
