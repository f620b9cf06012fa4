"""What the user has taken from a stream: the fills it reveals (`fills=True`) and the picture it makes.

This module owns the user's side of `UserStream.__anext__`, after an event leaves the queue:

- Fills in the stream. With `fills=True` every event taken is fed to a `FillTracker`; the fills an order
  update reveals are handed out next, before anything else is taken from the queue, so each `Fill` comes
  right after the update it comes from, in order. At most two fills wait at a time (an update yields one
  exact fill, preceded by one derived fill for growth it does not explain): the queue stays the one bound.
- The picture. Every event handed out (fills included) is folded into one `AccountState`, so
  `UserStream.balances()` and `open_orders()` show exactly what the user has been delivered, never what is
  still queued. It is the stream's only picture: resync (client/resync.py) diffs its snapshots against the
  same state (`state`), adding the corrections it queued that the user has not taken yet. It is kept with
  `resync=False` too: it depends on nothing but the events taken. It costs one `AccountState.apply` per
  event (docs/performance.md); `picture=False` with `resync=False` turns it off for a consumer that keeps
  its own, and `picture=False` alone keeps it for resync only (the accessors then raise
  `ConfigurationError` either way). Events a consumer already holds (`UserStream.assume`) are folded in
  before the stream starts, as delivered.
- When that picture is complete. A snapshot's corrections make the delivered picture the exchange's: once
  the events queued up to the end of the first snapshot's corrections have all been taken, the picture is
  complete (`complete_at`). Before that it holds only what the stream has said since it started.

Pure: no I/O, no asyncio.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

from userstream.errors import ConfigurationError
from userstream.events import BalanceUpdate, Event, Fill, OrderUpdate
from userstream.fills import FillTracker
from userstream.state import AccountState

__all__ = ["Delivered"]


class Delivered:
    """One stream's delivered events: the fills waiting to be handed out, and the picture they made."""

    __slots__ = ("_complete_at", "_picture", "_shown", "_taken", "_tracker", "pending", "state")

    def __init__(self, *, fills: bool, picture: bool = True, kept: bool = False) -> None:
        """`picture`: the user reads the picture; `kept`: something else needs it (resync) even if not."""
        self._tracker = FillTracker() if fills else None
        #: the one picture of what was delivered (None when neither the user nor resync needs one)
        self.state = AccountState() if picture or kept else None
        self._picture = self.state
        self._shown = picture
        #: fills revealed by the last order update taken, to be handed out before the queue's next event
        self.pending: deque[Fill] = deque()
        self._taken = 0  # events taken from the queue (fills not included)
        self._complete_at: int | None = None  # the picture is complete once this many were taken

    def took(self, event: Event) -> None:
        """`event` left the queue for the user: fold it in, and keep the fills it reveals for next."""
        self._taken += 1
        if self._picture is not None:
            self._picture.apply(event)
        if self._tracker is not None:
            self.pending.extend(self._tracker.feed(event))

    def assume(self, events: Iterable[Event]) -> None:
        """The consumer already holds `events`: fold them in as delivered (nothing is handed out)."""
        if self._picture is not None:
            for event in events:
                self._picture.apply(event)

    def handed(self, fill: Fill) -> None:
        """A pending fill went to the user."""
        if self._picture is not None:
            self._picture.apply(fill)

    def complete_after(self, queued: int) -> None:
        """A snapshot's corrections are queued, `queued` events now wait in the queue: once they are all
        taken, the delivered picture is the exchange's. The first snapshot sets it; later ones keep it."""
        if self._complete_at is None:
            self._complete_at = self._taken + queued

    @property
    def complete(self) -> bool:
        return self._complete_at is not None and self._taken >= self._complete_at

    @property
    def picture(self) -> AccountState | None:
        """The state every delivered event is folded into; None with `picture=False` (kept for resync alone
        or not at all, it is nobody else's to read)."""
        return self.state if self._shown else None

    def balances(self) -> Mapping[str, BalanceUpdate]:
        """The latest balance of each asset delivered, by asset: a read-only copy."""
        return self._kept().snapshot().balances

    def open_orders(self) -> Mapping[str, OrderUpdate]:
        """The orders delivered as open and not delivered as ended since, by id: a read-only copy."""
        return self._kept().snapshot().open_orders

    def _kept(self) -> AccountState:
        if self._picture is None or not self._shown:
            raise ConfigurationError("this stream keeps no picture (picture=False): connect without it")
        return self._picture
