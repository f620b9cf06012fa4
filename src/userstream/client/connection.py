"""One WebSocket connection at runtime: its reader, its heartbeat, and the reason it ended.

This module owns `Connection`, which runs one open `WebSocket` for one exchange `Dialect` until the
connection ends, and returns why it ended as a value (an error of ours, or None when we closed it
ourselves), never by raising: the supervisor decides what an ending means. It owns two tasks, in its own
`asyncio.TaskGroup`, so neither can outlive the connection:

- the reader: receives frames, classifies them with the dialect's parser, hands data events to the sink,
  answers the server's pings, notices "sub success" (the moment the connection is live), and turns close
  frames, error replies and the SYSTEM notice into the ending reason;
- the heartbeat: sends the dialect's ping every `ping_interval` and declares the connection dead when no
  frame at all arrived for `idle_timeout` (`protocol.heartbeat` does the arithmetic). The idle clock is
  suspended while the reader waits for the consumer, so backpressure is never mistaken for a dead peer.
  It also wakes when a count of unusable frames is due to be reported (`frame_warnings`).

A frame the parser cannot use (undecodable, malformed or unknown) is counted, never fatal, and reported:
at DEBUG each time, at WARNING rate-limited per kind (`client.frame_warnings.FrameWarnings`).

Closing is graceful where it can be: on a SYSTEM notice, and when the supervisor retires a connection after
a rotation, the connection sends its close frame and keeps reading until the server answers (bounded by
`close_timeout`), so frames the server sent before it saw our close are still delivered.
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
from userstream.errors import ConnectionLostError, TransportError, UserStreamError
from userstream.events import Event, Exchange
from userstream.protocol.heartbeat import Due, Heartbeat
from userstream.protocol.messages import (
    ControlReply,
    DataEvents,
    ErrorReply,
    Incoming,
    Ping,
    Pong,
    SystemClose,
    Unknown,
    UnknownKind,
)

__all__ = ["Connection", "ConnectionCounters", "Dialect", "FrameHook", "Sink"]

_log = logging.getLogger("userstream.client")


class Dialect(Protocol):
    """What differs between exchanges once a WebSocket is open. Implemented in `client.bitmusa` and
    `client.coinlocally`."""

    @property
    def exchange(self) -> Exchange: ...

    @property
    def live_on_connect(self) -> bool:
        """True when the connection carries events as soon as the handshake is done (no subscription)."""
        ...

    def parse(self, frame: str | bytes) -> Incoming: ...

    def opening_frames(self) -> Sequence[str]:
        """Frames to send right after the handshake (Coinlocally's sub)."""
        ...

    def is_live_reply(self, reply: ControlReply) -> bool:
        """Whether this control reply makes the connection live ("sub success")."""
        ...

    def ping_frame(self, now_ms: int) -> str | None:
        """The application-level ping to send, or None to send a protocol-level WebSocket ping."""
        ...

    def pong_frame(self, timestamp: int) -> str | None:
        """The answer to the server's own {"ping": n} (None: nothing to answer)."""
        ...

    def error_for_reply(self, reply: ErrorReply) -> UserStreamError:
        """What an error reply from the server means (Coinlocally: a refused sub)."""
        ...

    def error_for_close(self, closed: PeerClosedError) -> UserStreamError:
        """What a close by the server means (a lapsed listenKey, a refused sub, a plain disconnect)."""
        ...


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


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Connection:
    """Runs one open WebSocket until it ends. Call `run()` once, in a task the caller owns."""

    def __init__(
        self,
        *,
        serial: int,
        ws: WebSocket,
        dialect: Dialect,
        sink: Sink,
        ping_interval: float,
        idle_timeout: float,
        close_timeout: float,
        counters: ConnectionCounters,
        on_live: Callable[[Connection], None] | None = None,
        on_frame: FrameHook | None = None,
        sink_now: SinkNow | None = None,
        clock: Callable[[], float] | None = None,
        wall_clock_ms: Callable[[], int] = _wall_clock_ms,
        name: str | None = None,
        warning_interval: float = DEFAULT_WARNING_INTERVAL,
    ) -> None:
        """`name` starts this connection's warnings ("bitmusa/alice"; the WebSocket's label if None);
        `warning_interval` is the seconds between two WARNINGs about unusable frames of one kind."""
        self.serial = serial
        self._ws = ws
        self._dialect = dialect
        self._sink = sink
        self._sink_now = sink_now
        self._clock = clock if clock is not None else asyncio.get_running_loop().time
        self._wall_clock_ms = wall_clock_ms
        self._close_timeout = close_timeout
        self._idle_timeout = idle_timeout
        self._counters = counters
        self._on_live = on_live
        self._on_frame = on_frame
        self._heartbeat = Heartbeat(ping_interval=ping_interval, idle_timeout=idle_timeout, now=self._clock())
        self._warnings = FrameWarnings(
            f"{name if name is not None else ws.label} connection={serial}", warning_interval
        )
        self._ending: UserStreamError | None = None
        self._closing = False
        self._close_deadline = math.inf
        self._wake = asyncio.Event()
        #: Resolved when the connection carries events (Bitmusa: at once; Coinlocally: "sub success").
        self.went_live: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.live_at: float | None = None
        #: True while the reader waits for room in the queue (the consumer is behind), not for the server.
        self.waiting_for_consumer = False
        self._handling = False  # the reader is inside `_handle` (which may await)

    @property
    def label(self) -> str:
        return self._ws.label

    async def run(self) -> UserStreamError | None:
        """Read until the connection ends; return why (None: we closed it and the server agreed)."""
        try:
            async with asyncio.TaskGroup() as tasks:
                beat = tasks.create_task(self._beat(), name=f"userstream-client:heartbeat-{self.serial}")
                try:
                    ending = await self._read()
                finally:
                    beat.cancel()
        finally:
            self._warnings.close(self._clock())
            await self._ws.abort()
        return ending

    async def close_gracefully(self) -> None:
        """Send our close frame; `run()` returns once the server answers, or after `close_timeout`."""
        await self._begin_close()

    async def abort(self, reason: UserStreamError) -> None:
        """End the connection now, with `reason` as its ending (unless it already has one)."""
        if self._ending is None:
            self._ending = reason
        await self._ws.abort()

    # --- the reader -------------------------------------------------------------------------------

    async def _read(self) -> UserStreamError | None:
        # A send that fails (the sub, a pong) means the connection is going away, but the server may have
        # sent frames and its close first (found by tests/fuzz): keep reading them, and let its close say
        # what the ending means (a 4004 is a rejected credential, not a retry).
        send_failed: UserStreamError | None = None
        try:
            for opening in self._dialect.opening_frames():
                await self._ws.send_text(opening)
        except UserStreamError as exc:
            send_failed = exc
        if self._dialect.live_on_connect:
            self._go_live()
        if self._sink_now is not None and self._on_frame is None:
            self._ws.set_express(self._express)
        try:
            return await self._read_frames(send_failed)
        finally:
            self._ws.set_express(None)

    def _express(self, frame: str | bytes) -> bool:
        """The loop below for a data frame whose events the sink takes without waiting, done by the
        WebSocket in its frame callback when nothing is queued ahead of the frame: the usual case, with no
        queueing and no task switch per frame. False (nothing done) for anything else, which the loop then
        receives and handles itself (a control frame or an Unknown is parsed twice: they are rare)."""
        if self._handling:  # the loop is awaiting in the middle of an earlier frame (say, for the queue)
            return False
        if not self._sink_at_once(self._dialect.parse(frame)):
            return False
        self._heartbeat.frame_received(self._clock())
        self._counters.frames += 1
        return True

    def _sink_at_once(self, incoming: Incoming) -> bool:
        """Hand a data frame's events to the sink's no-wait door and count them; False when it is not data
        or the door refuses (then `_handle` awaits the sink, with the idle clock suspended)."""
        if type(incoming) is not DataEvents or self._sink_now is None:
            return False
        events = incoming.events
        if not self._sink_now(self, events):
            return False
        self._counters.events += len(events)
        return True

    async def _read_frames(self, send_failed: UserStreamError | None) -> UserStreamError | None:
        while True:
            try:
                # Frames one socket read brought are taken without an await each; `receive()` waits.
                frame = self._ws.receive_nowait()
                if frame is None:
                    frame = await self._ws.receive()
            except PeerClosedError as closed:
                return self._ending_after_close(closed)
            except UserStreamError as exc:
                return self._ending or send_failed or exc
            self._heartbeat.frame_received(self._clock())
            self._counters.frames += 1
            if isinstance(frame, SignOfLife):
                continue
            if self._on_frame is not None:
                self._report_frame(frame)
            incoming = self._dialect.parse(frame)
            if self._sink_at_once(incoming):  # the common case: the queue has room, nothing waits
                continue
            self._handling = True  # while this frame is handled, a later one must not overtake it
            try:
                await self._handle(incoming)
            except UserStreamError as exc:  # a pong could not be sent: see send_failed above
                send_failed = send_failed or exc
            finally:
                self._handling = False

    def _report_frame(self, frame: bytes | str) -> None:
        assert self._on_frame is not None  # noqa: S101 - checked by the caller
        try:
            self._on_frame(time.time(), frame, self.serial)
        except Exception:  # a broken hook must not stop the stream; say so loudly
            _log.exception("the on_frame callback raised; the stream goes on")

    async def _handle(self, incoming: Incoming) -> None:
        if isinstance(incoming, DataEvents):
            self._counters.events += len(incoming.events)
            self._heartbeat.suspend()
            self.waiting_for_consumer = True
            try:
                await self._sink(self, incoming.events)
            finally:
                self.waiting_for_consumer = False
                self._heartbeat.resume(self._clock())
        elif isinstance(incoming, Ping):
            pong = self._dialect.pong_frame(incoming.timestamp)
            if pong is not None:
                await self._ws.send_text(pong)
                self._counters.pings_answered += 1
        elif isinstance(incoming, Pong):
            pass  # its arrival already counted as a sign of life
        elif isinstance(incoming, ControlReply):
            if self._dialect.is_live_reply(incoming):
                self._go_live()
        elif isinstance(incoming, ErrorReply):
            if self._ending is None:
                # The server's words reach the error scrubbed (it may echo the token it refused).
                code = self._ws.scrub(incoming.code) if isinstance(incoming.code, str) else incoming.code
                scrubbed = ErrorReply(code, self._ws.scrub(incoming.message), incoming.transient)
                self._ending = self._dialect.error_for_reply(scrubbed)
            await self._ws.abort()
        elif isinstance(incoming, SystemClose):
            if self._ending is None:
                self._ending = ConnectionLostError(
                    f"{self.label}: the server announced a close (SYSTEM notice)"
                )
            # Keep reading until the server closes, so nothing it sends before its close is lost.
            await self._begin_close()
        elif isinstance(incoming, Unknown):
            reason = self._ws.scrub(incoming.reason)  # may quote the frame, which may echo a secret
            if reason != incoming.reason:
                incoming = Unknown(raw="", reason=reason, kind=incoming.kind)
            counters = self._counters
            counters.unknown_frames += 1
            if incoming.kind is not UnknownKind.UNKNOWN:
                counters.malformed_frames += 1
            counters.last_unknown_reason = reason
            if self._warnings.frame(incoming, self._clock()):
                self._wake.set()  # a count is due before the heartbeat's next deadline

    @property
    def is_live(self) -> bool:
        return self.went_live.done()

    def _go_live(self) -> None:
        if not self.went_live.done():
            self.live_at = self._clock()
            self.went_live.set_result(None)
            if self._on_live is not None:
                self._on_live(self)  # before any event of this connection is handed on

    def _ending_after_close(self, closed: PeerClosedError) -> UserStreamError | None:
        if self._ending is not None:
            return self._ending
        if self._closing:
            return None  # the answer to our own close: a clean end
        return self._dialect.error_for_close(closed)

    # --- the heartbeat ----------------------------------------------------------------------------

    async def _beat(self) -> None:
        while True:
            now = self._clock()
            self._warnings.poll(now)
            if now >= self._close_deadline:
                _log.debug("%s: no answer to our close; aborting", self.label)
                # Not a clean end: whatever the server still had for us on this connection is lost.
                await self.abort(
                    ConnectionLostError(
                        f"{self.label}: no answer to our close within {self._close_timeout:g}s"
                    )
                )
                return
            due = Due.NOTHING if self._closing else self._heartbeat.poll(now)
            if due is Due.DEAD:
                await self.abort(
                    ConnectionLostError(
                        f"{self.label}: no frame for {self._idle_timeout:g}s; connection presumed dead"
                    )
                )
                return
            if due is Due.PING:
                await self._send_ping()
                self._heartbeat.ping_sent(now)
            deadline = self._close_deadline if self._closing else self._heartbeat.next_deadline
            deadline = min(deadline, self._warnings.next_report_at)
            self._wake.clear()
            wait = None if math.isinf(deadline) else max(0.0, deadline - self._clock())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def _send_ping(self) -> None:
        frame = self._dialect.ping_frame(self._wall_clock_ms())
        try:
            if frame is None:
                await self._ws.ping()
            else:
                await self._ws.send_text(frame)
        except TransportError as exc:
            _log.debug("%s: ping not sent: %s", self.label, exc)  # the reader will see the end
        else:
            self._counters.pings_sent += 1

    async def _begin_close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._close_deadline = self._clock() + self._close_timeout
        self._wake.set()
        await self._ws.begin_close()
