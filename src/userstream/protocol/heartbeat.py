"""Connection liveness as pure deadlines: when to ping next, and when a silent connection counts as dead.

This module owns the arithmetic of a heartbeat and nothing else: no clock, no sleeping, no sockets. The
client session (`protocol.client_session`) feeds it the times its runtime passes in (`now`, in seconds on any
monotonic clock) and folds `next_deadline` into its own; `poll` then says what is due. Keeping time out of
here makes keepalive and dead-connection rules testable exactly.

Two rules, both from the issue: a ping is sent every `ping_interval` whatever else arrives (Coinlocally's
server closes a connection that has not pinged for 40 s, even one busy with data), and a connection on
which no frame at all arrived for `idle_timeout` is dead even if TCP still looks open. Time the reader spends
waiting for the consumer (a full queue under the "block" policy) is not silence of the peer, so the idle
clock can be suspended and resumed around such waits.
"""

from __future__ import annotations

import math
from enum import Enum

__all__ = ["Due", "Heartbeat"]


class Due(Enum):
    """What `Heartbeat.poll` found due. `NOTHING` means: sleep until `next_deadline` and ask again."""

    NOTHING = "nothing"
    PING = "ping"
    DEAD = "dead"


class Heartbeat:
    """The ping and idle deadlines of one connection.

    `ping_interval=None` means this side never pings (the peer keeps the connection alive, or nobody needs
    to). Deadlines are absolute times on the caller's clock; `math.inf` stands for "never".
    """

    __slots__ = ("_idle_timeout", "_last_frame_at", "_next_ping_at", "_ping_interval", "_suspended")

    def __init__(self, *, ping_interval: float | None, idle_timeout: float, now: float) -> None:
        if ping_interval is not None and not ping_interval > 0:
            raise ValueError(f"ping_interval must be positive, not {ping_interval}")
        if not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be positive, not {idle_timeout}")
        self._ping_interval = ping_interval
        self._idle_timeout = idle_timeout
        self._last_frame_at = now
        self._next_ping_at = math.inf if ping_interval is None else now + ping_interval
        self._suspended = 0

    @property
    def idle_deadline(self) -> float:
        """When the connection counts as dead if nothing arrives first; `inf` while suspended."""
        if self._suspended:
            return math.inf
        return self._last_frame_at + self._idle_timeout

    @property
    def next_ping_at(self) -> float:
        return self._next_ping_at

    @property
    def suspended(self) -> bool:
        """Whether silence is not being counted now (`suspend` without its `resume`)."""
        return self._suspended > 0

    @property
    def next_deadline(self) -> float:
        """The earliest time at which `poll` can return something other than NOTHING."""
        return min(self.idle_deadline, self._next_ping_at)

    def frame_received(self, now: float) -> None:
        """Any frame at all (data, pong, control, a protocol-level ping) proves the peer alive."""
        if now > self._last_frame_at:  # noqa: PLR1730 - not max(): a call less, once per frame
            self._last_frame_at = now

    def ping_sent(self, now: float) -> None:
        if self._ping_interval is not None:
            self._next_ping_at = now + self._ping_interval

    def suspend(self) -> None:
        """The reader stops reading for a while (the consumer is behind): stop counting silence."""
        self._suspended += 1

    def resume(self, now: float) -> None:
        """The reader reads again: silence is counted from now, not from the last frame before the wait."""
        if self._suspended == 0:
            raise ValueError("resume() without a matching suspend()")
        self._suspended -= 1
        if self._suspended == 0:
            self._last_frame_at = max(self._last_frame_at, now)

    def poll(self, now: float) -> Due:
        """What is due at `now`. Death wins over a ping: pinging a dead connection helps nobody."""
        if now >= self.idle_deadline:
            return Due.DEAD
        if now >= self._next_ping_at:
            return Due.PING
        return Due.NOTHING
