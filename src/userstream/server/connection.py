"""One client WebSocket on the exchange side: its bounded outbox, its single writer task and its deadlines.

Every frame the server sends on a connection goes through `Connection.send` into a bounded outbox, and one
writer task (started and awaited by the connection's handler, never fire-and-forget) sends them in order. A
close is an item of the same outbox, so frames queued before a close are sent before it. The writer also owns
the connection's timers (the maximum age, and Coinlocally's heartbeat), sleeping until the earliest deadline:
one task per connection, no matter how many rules. An outbox that fills up (a client that does not read)
closes the connection with CloseCode.SLOW_CONSUMER instead of growing memory.

Coinlocally connections hear the SYSTEM notice before every server-initiated close, except the rejection of a
bad sub, which is answered with an error frame instead (the notice would invite a reconnect that cannot
succeed). Deadlines are monotonic seconds.
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
from userstream.protocol import coinlocally
from userstream.protocol.close import CloseCode
from userstream.server.config import Account
from userstream.server.ledger import ConnectionRecord

__all__ = ["Close", "Connection", "Held", "Pong", "Tracked"]

_log = logging.getLogger("userstream.server.connection")
_MAX_REASON_BYTES = 123  # RFC 6455: a close reason fits in a control frame with its 2-byte code


@dataclass(frozen=True, slots=True)
class Close:
    """A close request queued behind the frames sent before it."""

    code: int  # a CloseCode, or a variant's own code (variants.py)
    reason: str
    notify: bool  # Coinlocally: send the SYSTEM notice first


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
    """One accepted WebSocket. `live` is True once events may be pushed (Coinlocally: after the sub)."""

    def __init__(
        self,
        *,
        account: Account,
        exchange: Exchange,
        opened_at: float,
        max_age: float,
        heartbeat_timeout: float | None,
        max_outbox: int,
        close_timeout: float,
        listen_key: str | None = None,
        peer: str = "",
    ) -> None:
        self.account = account
        self.exchange = exchange
        self.listen_key = listen_key
        self.peer = peer
        self.opened_at = opened_at
        self.record: ConnectionRecord | None = None  # the ledger's record of this connection, if kept
        self._live = False
        self.stalled = False
        self.subscribed = False
        self.frames_sent = 0
        self.close_sent: Close | None = None
        self.finished = _Signal()
        self.transport: asyncio.Transport | None = None
        self._max_age_deadline = opened_at + max_age
        self._heartbeat_timeout = heartbeat_timeout
        self._heartbeat_deadline = None if heartbeat_timeout is None else opened_at + heartbeat_timeout
        self._max_outbox = max_outbox
        self._outbox: deque[_Item] = deque()
        self._wakeup = _Signal()
        self._closing: Close | None = None
        self._close_timeout = close_timeout
        self._watchdog: asyncio.TimerHandle | None = None
        self._reader_done = False
        self._frame_delay = 0.0  # the delay fault: hold each item this long ...
        self._delay_until = 0.0  # ... when it is queued before this (monotonic)
        self._ping_deadline: float | None = None  # the coinlocally-server-ping variant (ping_every)
        self._ping_interval = 0.0
        self._ping_frame: Callable[[int], str | bytes] = coinlocally.ping_frame

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
        self.request_close(CloseCode.SLOW_CONSUMER, "send buffer full: the client is not reading")

    def request_close(self, code: int, reason: str, *, notify: bool = True) -> bool:
        """Queue a close after what is already queued. The first request wins; a stalled one is ignored."""
        if self._closing is not None or self.stalled:
            return False
        self._closing = Close(code, reason, notify)
        self.live = False
        self._outbox.append(self._closing)
        self._wakeup.set()
        # A client that does not read can block the writer in a send forever, and one that never answers
        # the close frame keeps the socket: after close_timeout the TCP connection is aborted regardless.
        # A timer handle, not a task: nothing to own or await, cancelled by `finish`.
        loop = asyncio.get_running_loop()
        self._watchdog = loop.call_later(self._close_timeout, self._abort)
        return True

    def ping_every(self, interval: float, frame: Callable[[int], str | bytes], since: float) -> None:
        """Send `frame(now_ms)` every `interval` seconds from `since` (coinlocally-server-ping variant)."""
        self._ping_interval = interval
        self._ping_frame = frame
        self._ping_deadline = since + interval

    def heard_ping(self, now: float) -> None:
        """A Coinlocally {"ping": n} arrived: the heartbeat deadline moves."""
        if self._heartbeat_timeout is not None:
            self._heartbeat_deadline = now + self._heartbeat_timeout

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
                if isinstance(item, str):
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
            deadline = self._next_deadline()
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await self._wakeup.wait()
            except TimeoutError:
                self._on_deadline(time.monotonic())

    def _writer_should_stop(self) -> bool:
        return self.stalled or self._reader_done

    def _next_deadline(self) -> float:
        deadline = self._max_age_deadline
        if self._heartbeat_deadline is not None:
            deadline = min(deadline, self._heartbeat_deadline)
        if self._ping_deadline is not None:
            deadline = min(deadline, self._ping_deadline)
        return deadline

    def _on_deadline(self, now: float) -> None:
        if self._ping_deadline is not None and now >= self._ping_deadline:
            self._ping_deadline = now + self._ping_interval
            self.send(self._ping_frame(time.time_ns() // 1_000_000))
        if self._heartbeat_deadline is not None and now >= self._heartbeat_deadline:
            timeout = self._heartbeat_timeout
            self.request_close(CloseCode.HEARTBEAT_TIMEOUT, f"no ping within {timeout:g} s")
        elif now >= self._max_age_deadline:
            self.request_close(CloseCode.MAX_AGE, "connection reached its maximum age")

    async def _close(self, ws: web.WebSocketResponse, close: Close) -> None:
        if close.notify and self.exchange is Exchange.COINLOCALLY:
            await ws.send_bytes(coinlocally.render_system_close(self.account.uid))
        self.close_sent = close
        reason = close.reason.encode()[:_MAX_REASON_BYTES]
        await ws.close(code=close.code, message=reason)

    def _fields(self) -> dict[str, Any]:
        return {"account": self.account.name, "exchange": self.exchange.value, "peer": self.peer}
