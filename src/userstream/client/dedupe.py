"""De-duplication of the two connections of a planned rotation, by content, during the overlap only.

This module owns `OverlapDeduper`, a pure state machine (no I/O, no clock). While a rotation is under way
the same event can arrive on both the old connection and the new one; this decides which copies reach the
user. Outside a rotation it is a pass-through: two genuinely repeated events both reach the user.

The rules, in the order a rotation goes through them:

1. `begin(old)` when the supervisor starts opening the new connection. From here on the old connection's
   events are counted by content (an event's equality key: exchange, kind, account, order id or asset,
   timestamp and every state field; `raw` excluded). Counting starts *before* the new connection can be
   registered by the server, so every event the new one will receive that the old one also received is
   counted on the old side, even if the old side processed it before the new one went live.
2. `add_new(new)` when the new connection's reader starts. Its events are *held*, not delivered: the old
   connection is still ahead in the stream, and delivering the new one's events first would reorder them.
3. `end()` when the old connection has finished (drained and closed, or died). The held events are
   released in their order, applying multiset matching: the k-th copy of a key on the new connection is
   delivered only if the old connection saw that key fewer than k times. So an event seen once on each
   side is delivered once, and a genuine repeat (two copies on each side) is delivered twice.
4. `cancel()` abandons a rotation whose new connection never went live; nothing held is released (the old
   connection is still delivering everything).

The one ambiguity content matching cannot resolve: two identical events (same order, same timestamp, same
state), one delivered only to the old connection before the new one was registered and one delivered to
both, are indistinguishable from one event seen twice; the client delivers them once. Real exchanges stamp
events in milliseconds, so identical twins inside a rotation's few-millisecond window are not expected.
"""

from __future__ import annotations

from collections import Counter

from userstream.events import Event

__all__ = ["OverlapDeduper"]


class OverlapDeduper:
    """Which copies of the events of a rotation's two connections reach the user (see the module doc).

    Connections are named by any hashable id (the supervisor uses their serial numbers).
    """

    __slots__ = ("_held", "_new", "_old", "_old_seen", "_suppressed")

    def __init__(self) -> None:
        self._old: int | None = None
        self._new: int | None = None
        self._old_seen: Counter[Event] = Counter()
        self._held: list[Event] = []
        self._suppressed = 0

    @property
    def active(self) -> bool:
        return self._old is not None

    @property
    def suppressed(self) -> int:
        """How many duplicate copies were withheld, over the deduper's lifetime."""
        return self._suppressed

    @property
    def held(self) -> int:
        return len(self._held)

    @property
    def caught_up(self) -> bool:
        """The old connection has seen the first event the new one holds: it has reached the point where
        the new connection's stream begins, so everything before that point is in hand."""
        return bool(self._held) and self._old_seen[self._held[0]] > 0

    def begin(self, old: int) -> None:
        if self._old is not None:
            raise ValueError("a rotation is already under way")
        self._old = old
        self._new = None
        self._old_seen.clear()
        self._held.clear()

    def add_new(self, new: int) -> None:
        if self._old is None:
            raise ValueError("add_new() outside a rotation")
        if new == self._old:
            raise ValueError("the new connection must differ from the old one")
        self._new = new
        self._held.clear()

    def offer(self, connection: int, event: Event) -> bool:
        """Take one event from `connection`; True if it is to be delivered now."""
        if connection == self._old:
            self._old_seen[event] += 1
            return True
        if self._new is not None and connection == self._new:
            self._held.append(event)
            return False
        return True

    def end(self) -> list[Event]:
        """The old connection has finished: release the new connection's held events that it did not
        already deliver, in order, and leave the overlap (pass-through from here on)."""
        if self._old is None:
            raise ValueError("end() outside a rotation")
        released: list[Event] = []
        new_seen: Counter[Event] = Counter()
        for event in self._held:
            new_seen[event] += 1
            if new_seen[event] > self._old_seen[event]:
                released.append(event)
            else:
                self._suppressed += 1
        self._reset()
        return released

    def cancel(self) -> None:
        """Abandon the rotation (the new connection never went live); the old one keeps delivering."""
        self._reset()

    def _reset(self) -> None:
        self._old = None
        self._new = None
        self._old_seen.clear()
        self._held.clear()
