"""One client WebSocket on the exchange side: the runtime that drives its protocol session.

Every protocol decision of a stream (what to answer a frame with, when it goes live, when and how it
closes) is its session's (protocol/server_session.py, one per exchange, made from the registry). A
`Connection` feeds the session what happens (`receive` a client frame, `on_deadline` when its deadline
passes, `request_close` and `listen_key_ended` from the server) with the time, and performs the actions it
gets back: frames are queued, "go live" lets the hub push events, a close is queued behind what was sent.

Every frame the server sends on a connection goes through `Connection.send` into a bounded outbox, and one
writer task (started and awaited by the connection's handler, never fire-and-forget) sends them in order. A
close is an item of the same outbox, so frames queued before a close are sent before it (then the close's
last frame, Coinlocally's SYSTEM notice, then the close frame). The writer also sleeps until the session's
next deadline: one task per connection, no matter how many rules. An outbox that fills up (a client that
does not read) is reported to the session, which closes the stream, instead of growing memory. The stall,
drop and delay faults act here, on the runtime, and never reach the session. Deadlines are monotonic
seconds; pongs and server pings carry wall-clock milliseconds, read here and handed to the session.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from userstream.events import Exchange
from userstream.logs import log_event
from userstream.protocol.server_session import ServerSession
from userstream.protocol.session import Close, GoLive, Ignore, Send, ServerAction
from userstream.server.config import Account
from userstream.server.ledger import ConnectionRecord

__all__ = ["Connection", "Held", "Pong", "Tracked", "wall_ms"]

_log = logging.getLogger("userstream.server.connection")
_MAX_REASON_BYTES = 123  # RFC 6455: a close reason fits in a control frame with its 2-byte code


def wall_ms() -> int:
    """Wall-clock time in integer milliseconds: the clock of pongs and server pings."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to a WebSocket-protocol ping (RFC 6455 opcode 0xA), sent in order with the data frames."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Tracked:
    """A data frame carrying the published events `seqs` (the ledger records when it is written)."""

    frame: str | bytes
    seqs: range


@dataclass(frozen=True, slots=True)
class Held:
    """An item the writer must not send before `not_before` (monotonic): the delay fault."""

    item: str | bytes | Pong | Tracked
    not_before: float


_Item = str | bytes | Pong | Close | Tracked | Held


class _Signal:
    """asyncio.Event's set, clear, is_set and wait, with the same semantics, minus the deque of waiters an
    Event allocates up front: 624 bytes each, two per connection, of the ~20 KiB an idle connection may
    cost (docs/performance.md). The list of waiters exists only while someone waits."""

    __slots__ = ("_is_set", "_waiters")

    def __init__(self) -> None:
        self._is_set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._is_set

    def set(self) -> None:
        if not self._is_set:
            self._is_set = True
            for waiter in self._waiters or ():
                if not waiter.done():
                    waiter.set_result(None)

    def clear(self) -> None:
        self._is_set = False

    async def wait(self) -> bool:
        if self._is_set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            self._waiters.remove(waiter)
            if not self._waiters:
                self._waiters = None


class Connection:
    """One accepted WebSocket driving its `session`. `live` is True while events may be pushed (the session
    said so: Coinlocally after the sub, Bitmusa from the open), until it closes, stalls or ends."""

    def __init__(
        self,
        *,
        account: Account,
        exchange: Exchange,
        session: ServerSession,
        opened_at: float,
        max_outbox: int,
        close_timeout: float,
        listen_key: str | None = None,
        peer: str = "",
        on_live: Callable[[], None] | None = None,
    ) -> None:
        self.account = account
        self.exchange = exchange
        self.session = session
        self.listen_key = listen_key
        self.peer = peer
        self.opened_at = opened_at
        self.record: ConnectionRecord | None = None  # the ledger's record of this connection, if kept
        self._live = False
        self._on_live = on_live
        self.stalled = False
        self.frames_sent = 0
        self.close_sent: Close | None = None
        self.finished = _Signal()
        self.transport: asyncio.Transport | None = None
        self._max_outbox = max_outbox
        self._outbox: deque[_Item] = deque()
        self._wakeup = _Signal()
        self._closing: Close | None = None
        self._close_timeout = close_timeout
        self._watchdog: asyncio.TimerHandle | None = None
        self._reader_done = False
        self._frame_delay = 0.0  # the delay fault: hold each item this long ...
        self._delay_until = 0.0  # ... when it is queued before this (monotonic)

    def __repr__(self) -> str:
        return (
            f"Connection(account={self.account.name!r}, exchange={self.exchange.value!r}, "
            f"live={self.live}, closing={self._closing is not None})"
        )

    @property
    def closing(self) -> bool:
        return self._closing is not None

    @property
    def live(self) -> bool:
        return self._live

    @live.setter
    def live(self, value: bool) -> None:
        if value is not self._live:
            self._live = value
            if self.record is not None:
                self.record.live_changed(value, time.monotonic())

    @property
    def queued(self) -> int:
        """Items waiting in the outbox: at most `max_outbox` frames and pongs, plus a close."""
        return len(self._outbox)

    # --- what the rest of the server calls (all synchronous: they only queue and wake the writer) ----------

    def send(self, frame: str | bytes, seqs: range | None = None) -> bool:
        """Queue one frame (carrying the published events `seqs`, for the ledger); False if it was not
        queued (closing, stalled, or the outbox overflowed)."""
        if self._closing is not None or self.stalled:
            return False
        if len(self._outbox) >= self._max_outbox:
            self._overflow()
            return False
        if seqs is not None and self.record is not None:
            self.record.queued.add(seqs)
            self._outbox.append(self._held(Tracked(frame, seqs)))
        else:
            self._outbox.append(self._held(frame))
        self._wakeup.set()
        return True

    def send_pong(self, payload: bytes) -> None:
        if self._closing is None and not self.stalled:
            if len(self._outbox) >= self._max_outbox:
                self._overflow()  # a peer that pings without reading must not grow the outbox either
                return
            self._outbox.append(self._held(Pong(payload)))
            self._wakeup.set()

    def _overflow(self) -> None:
        self._outbox.clear()  # the client is this far behind: what it has not read is lost anyway
        self._perform(self.session.send_buffer_full())

    # --- driving the session -------------------------------------------------------------------------------

    def open(self) -> None:
        """The stream is accepted: what its session sends or does first ("connect success", go live)."""
        self._perform(self.session.open(self.opened_at, wall_ms()))

    def receive(self, frame: str | bytes) -> None:
        """A text or binary frame from the client (a stalled connection reads and drops them)."""
        if not self.stalled:
            self._perform(self.session.receive(frame, time.monotonic(), wall_ms()))

    def request_close(self, code: int, reason: str) -> bool:
        """Close the stream in its exchange's way (the session adds Coinlocally's SYSTEM notice), after what
        is already queued. The first close wins; a stalled connection ignores it. True if it was queued."""
        if self._closing is not None or self.stalled:
            return False
        return self._perform(self.session.close(code, reason))

    def listen_key_ended(self, *, expired: bool) -> bool:
        """The listenKey of this stream lapsed (`expired`) or was deleted: the session closes it with its
        code. True if a close was queued."""
        if self._closing is not None or self.stalled:
            return False
        return self._perform(self.session.listen_key_ended(expired=expired))

    def _perform(self, actions: list[ServerAction]) -> bool:
        """Carry out the session's actions in order; True if one of them queued a close."""
        closed = False
        for action in actions:
            if isinstance(action, Send):
                self.send(action.frame)
            elif isinstance(action, GoLive):
                if self._closing is None and not self.stalled:  # an overflow may have closed it meanwhile
                    self.live = True
                    if self._on_live is not None:
                        self._on_live()
            elif isinstance(action, Close):
                closed = self._queue_close(action) or closed
            elif isinstance(action, Ignore):
                log_event(
                    _log,
                    logging.DEBUG,
                    "client frame ignored",
                    account=self.account.name,
                    reason=action.reason,
                )
        return closed

    def _queue_close(self, close: Close) -> bool:
        if self._closing is not None or self.stalled:
            return False
        self._closing = close
        self.live = False
        self._outbox.append(close)
        self._wakeup.set()
        # A client that does not read can block the writer in a send forever, and one that never answers
        # the close frame keeps the socket: after close_timeout the TCP connection is aborted regardless.
        # A timer handle, not a task: nothing to own or await, cancelled by `finish`.
        loop = asyncio.get_running_loop()
        self._watchdog = loop.call_later(self._close_timeout, self._abort)
        return True

    # --- fault injection: the runtime, never the session ---------------------------------------------------

    def delay_frames(self, delay: float, until: float) -> None:
        """Fault injection: every frame and pong queued before `until` (monotonic) is sent `delay` seconds
        after it was queued, in order (a slow network path). `delay_frames(0, 0)` ends it for new items."""
        self._frame_delay = delay
        self._delay_until = until

    def _held(self, item: str | bytes | Pong | Tracked) -> _Item:
        if self._frame_delay > 0:
            now = time.monotonic()
            if now < self._delay_until:
                return Held(item, now + self._frame_delay)
        return item

    def stall(self) -> None:
        """Fault injection: send nothing more (not even pongs or closes) while keeping the TCP connection."""
        self.stalled = True
        self.live = False
        self._outbox.clear()
        self._wakeup.set()

    def drop(self) -> None:
        """Fault injection (and last resort at shutdown): abort the TCP connection without a close frame."""
        self.stalled = True
        self.live = False
        self._outbox.clear()
        self._wakeup.set()
        self._abort()

    def reader_done(self) -> None:
        """The socket is closed for reading: the writer sends a close it has started, nothing else."""
        self._reader_done = True
        self.live = False
        self._wakeup.set()

    def finish(self) -> None:
        """The handler is done with this connection: cancel the watchdog and tell whoever waits."""
        self.live = False
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self.finished.set()

    def _abort(self) -> None:
        if self.transport is not None and not self.finished.is_set():
            self.transport.abort()

    # --- the writer task ------------------------------------------------------------------------------------

    async def run_writer(self, ws: web.WebSocketResponse) -> None:
        """Send queued frames in order until a close has been sent, the peer is gone, or the stall."""
        try:
            await self._write_loop(ws)
        except (ConnectionError, RuntimeError) as exc:
            # the transport went away under us (aiohttp raises ClientConnectionResetError, a ConnectionError,
            # or RuntimeError on a closed response); the handler's reader sees the same and ends
            log_event(_log, logging.DEBUG, "send failed", **self._fields(), error=type(exc).__name__)

    async def _write_loop(self, ws: web.WebSocketResponse) -> None:
        while True:
            if self._writer_should_stop():
                return
            while self._outbox:
                item = self._outbox.popleft()
                if isinstance(item, Held):
                    await asyncio.sleep(max(0.0, item.not_before - time.monotonic()))
                    if self._writer_should_stop():
                        return
                    item = item.item
                if isinstance(item, str):  # the hot path of the fan-out: no helper call
                    await ws.send_str(item)
                    self.frames_sent += 1
                elif isinstance(item, bytes):
                    await ws.send_bytes(item)
                    self.frames_sent += 1
                elif isinstance(item, Tracked):
                    await (
                        ws.send_str(item.frame) if isinstance(item.frame, str) else ws.send_bytes(item.frame)
                    )
                    self.frames_sent += 1
                    if self.record is not None:
                        self.record.wrote(item.frame, item.seqs)
                elif isinstance(item, Pong):
                    await ws.pong(item.payload)
                else:
                    await self._close(ws, item)
                    return
                if self._writer_should_stop():
                    return
            self._wakeup.clear()
            deadline = self.session.next_deadline()
            try:
                async with asyncio.timeout(
                    None if deadline is None else max(0.0, deadline - time.monotonic())
                ):
                    await self._wakeup.wait()
            except TimeoutError:
                self._on_deadline(time.monotonic())

    def _writer_should_stop(self) -> bool:
        return self.stalled or self._reader_done

    def _on_deadline(self, now: float) -> None:
        self._perform(self.session.on_deadline(now, wall_ms()))

    async def _close(self, ws: web.WebSocketResponse, close: Close) -> None:
        if close.last_frame is not None:
            await _send(ws, close.last_frame)
        self.close_sent = close
        reason = close.reason.encode()[:_MAX_REASON_BYTES]
        await ws.close(code=close.code, message=reason)

    def _fields(self) -> dict[str, Any]:
        return {"account": self.account.name, "exchange": self.exchange.value, "peer": self.peer}


async def _send(ws: web.WebSocketResponse, frame: str | bytes) -> None:
    if isinstance(frame, str):
        await ws.send_str(frame)
    else:
        await ws.send_bytes(frame)
