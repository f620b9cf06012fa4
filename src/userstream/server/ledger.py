"""What `userstream serve` published to each account and sent on each connection, and the audit of a client.

This module owns `SentLedger`: every event published to an account gets the account's next sequence
number (publish order), and every connection gets a `ConnectionRecord` saying which of those sequence
numbers were queued on it, which were written to its socket, when it was live, which faults hit it and how
it ended. `SentLedger.audit(account, exchange, delivered)` then holds what a client delivered against it:
which published events it received once, twice or never, why each missing one is missing (the exchange
never sent it, sent it into a connection that broke, or lost it for no reason the ledger knows), and
whether every planned rotation (the client closing a connection while its successor was live) lost or
duplicated anything. Memory is bounded: the latest `max_events` events and `max_connections` connection
records per account are kept. Times are monotonic seconds. Nothing here does I/O.

Matching a delivered event to a published one is by content (`fact`): the exchange-neutral part of the
event (kind, asset or order id, timestamp, amounts, status), in publish order. The client delivers a
stream's events in publish order, so each delivered event is matched to the first unmatched published
event with the same fact at or after the previous match; a delivered event whose fact only matches earlier
ones is a duplicate. Two published events with the same fact in the same millisecond cannot be told apart
by content (the client's own rotation de-duplication has the same limit, docs/client.md).
"""

from __future__ import annotations

import bisect
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import msgspec

from userstream.events import BalanceUpdate, Event, Exchange, OrderUpdate, Source

__all__ = [
    "ConnectionRecord",
    "Ending",
    "Loss",
    "LossReason",
    "Published",
    "RotationAudit",
    "Runs",
    "SentLedger",
    "StreamAudit",
    "fact",
]

Fact = tuple[object, ...]


def fact(event: Event) -> Fact:
    """The exchange-neutral content of an event: equal for the event published and the one a client parsed
    from either dialect's frame (labels, raw fields and dialect-only fields left out)."""
    if isinstance(event, BalanceUpdate):
        return ("balance", event.asset, event.timestamp, event.free, event.locked)
    if isinstance(event, OrderUpdate):
        status = None if event.status is None else event.status.value
        return ("order", event.id, event.timestamp, status, event.filled, event.amount, event.price)
    return (event.kind, event.timestamp)


class Runs:
    """A set of sequence numbers as sorted, disjoint, inclusive [first, last] runs: an unbroken stretch of
    a connection's stream costs one run however long it is."""

    __slots__ = ("_firsts", "_lasts", "count")

    def __init__(self) -> None:
        self._firsts: list[int] = []
        self._lasts: list[int] = []
        self.count = 0

    def __repr__(self) -> str:
        runs = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in self.runs())
        return f"Runs({runs})"

    def add(self, seqs: range) -> None:
        """Add consecutive sequence numbers (normally after every number already held)."""
        if not seqs:
            return
        first, last = seqs[0], seqs[-1]
        if self._lasts and first > self._lasts[-1]:
            if first == self._lasts[-1] + 1:
                self._lasts[-1] = last
            else:
                self._firsts.append(first)
                self._lasts.append(last)
            self.count += last - first + 1
            return
        merged = sorted([*self.runs(), (first, last)])  # out of order: rare, rebuild
        self._firsts, self._lasts, self.count = [], [], 0
        for run_first, run_last in merged:
            if self._lasts and run_first <= self._lasts[-1] + 1:
                if run_last > self._lasts[-1]:
                    self.count += run_last - self._lasts[-1]
                    self._lasts[-1] = run_last
            else:
                self._firsts.append(run_first)
                self._lasts.append(run_last)
                self.count += run_last - run_first + 1

    def __contains__(self, seq: object) -> bool:
        if not isinstance(seq, int):
            return False
        index = bisect.bisect_right(self._firsts, seq) - 1
        return index >= 0 and seq <= self._lasts[index]

    def __bool__(self) -> bool:
        return bool(self._firsts)

    def runs(self) -> list[tuple[int, int]]:
        return list(zip(self._firsts, self._lasts, strict=True))

    @property
    def first(self) -> int | None:
        return self._firsts[0] if self._firsts else None

    @property
    def last(self) -> int | None:
        return self._lasts[-1] if self._lasts else None


class Ending(StrEnum):
    """How a connection ended, as the server saw it."""

    CLIENT_CLOSE = "client_close"  # the client sent a close frame (a rotation, or it stopped)
    SERVER_CLOSE = "server_close"  # the server sent a close frame (key lapsed or deleted, ...), answered
    SERVER_CLOSE_UNANSWERED = "server_close_unanswered"  # ... and the client went away without answering
    ABORTED = "aborted"  # the server cut it or went silent on it (the drop or stall fault)
    LOST = "lost"  # the peer went away without a close frame (the client aborted it, or died)

    @property
    def clean(self) -> bool:
        """A close handshake: everything written before it reached the peer."""
        return self in (Ending.CLIENT_CLOSE, Ending.SERVER_CLOSE)


@dataclass(eq=False)
class ConnectionRecord:
    """One connection: what was queued on it and written to it (sequence numbers), when it was live, which
    faults hit it, and how it ended."""

    serial: int
    account: str
    exchange: Exchange
    opened_at: float
    queued: Runs = field(default_factory=Runs)
    written: Runs = field(default_factory=Runs)
    live_periods: list[list[float]] = field(default_factory=list)  # [start, end]; end inf while live
    faults: list[str] = field(default_factory=list)
    ended_at: float | None = None
    ending: Ending | None = None
    close_code: int | None = None
    live_peers_at_end: tuple[int, ...] = ()  # serials of the same stream's connections live when it ended
    frames: list[str | bytes] | None = field(default=None, repr=False)  # the data frames written, if recorded

    def wrote(self, frame: str | bytes, seqs: range) -> None:
        """The data frame carrying `seqs` was written to the socket."""
        self.written.add(seqs)
        if self.frames is not None:
            self.frames.append(frame)

    def __repr__(self) -> str:
        return (
            f"ConnectionRecord(#{self.serial} {self.account}/{self.exchange.value}, "
            f"written={self.written!r}, ending={self.describe_ending()!r})"
        )

    @property
    def live(self) -> bool:
        return bool(self.live_periods) and self.live_periods[-1][1] == float("inf")

    def live_changed(self, live: bool, now: float) -> None:
        if live and not self.live:
            self.live_periods.append([now, float("inf")])
        elif not live and self.live:
            self.live_periods[-1][1] = now

    def describe_ending(self) -> str:
        if self.ending is None:
            return "still open"
        how = self.ending.value
        if self.close_code is not None:
            how += f" {self.close_code}"
        if self.faults:
            how += f" after fault {self.faults[-1]}"
        return how


class Published(msgspec.Struct, frozen=True, gc=False):
    """One published event, numbered. Untracked by the garbage collector (it holds an int, a float and
    an event, which are untracked too): up to `max_events` of them per account stay alive, and tracked
    objects make every full collection longer (a 47 ms pause at 130,000 of them, docs/performance.md)."""

    seq: int
    at: float
    event: Event


class LossReason(StrEnum):
    """Why a published event never reached the client (see `SentLedger.audit`)."""

    NO_LIVE_CONNECTION = "no_live_connection"  # published while no connection of the stream was live
    DISCARDED = "discarded"  # queued on a connection that ended (a fault, an overflow) before writing it
    IN_FLIGHT = "in_flight"  # written to a connection that then broke (aborted, cut) before it was read
    UNEXPLAINED = "unexplained"  # written to a connection that ended with a close handshake: a bug somewhere


@dataclass(frozen=True, slots=True)
class Loss:
    seq: int
    reason: LossReason
    connection: int | None  # the connection it was queued on or written to, if any
    ending: str | None  # how that connection ended


@dataclass(frozen=True, slots=True)
class RotationAudit:
    """One planned rotation: the client closed connection `old` while its successor `new` was live.

    `seqs` are the events at stake: those published from just before `new` opened until just after `old`
    ended (the last one `old` carried before, the first one `new` carried after). Each must be delivered
    exactly once. `lost` leaves out those a broken connection explains (a fault that hits the successor
    right after the hand-over makes a gap of its own, which a resync covers, not the rotation)."""

    old: int
    new: int
    seqs: tuple[int, ...]
    lost: tuple[int, ...]
    duplicated: tuple[int, ...]

    @property
    def clean(self) -> bool:
        return not self.lost and not self.duplicated


@dataclass(frozen=True, slots=True)
class StreamAudit:
    """What one stream (an account on one exchange) delivered, held against what the server published."""

    account: str
    exchange: Exchange
    audited: range  # the sequence numbers audited: published from the stream's first connection on
    delivered: int  # stream events offered to the audit (snapshot corrections are not deliveries)
    matched: int  # published events delivered at least once
    duplicates: tuple[int, ...]  # one entry per extra copy of a published event
    unmatched: tuple[Event, ...]  # delivered events the server never published (or in a wrong order)
    lost: tuple[Loss, ...]
    rotations: tuple[RotationAudit, ...]
    connections: int
    longest_outage: float  # seconds: the longest time without a live connection since the first one
    longest_lost_run: int  # the most consecutive audited events lost

    def lost_by_reason(self) -> dict[str, int]:
        return dict(Counter(loss.reason.value for loss in self.lost))


class SentLedger:
    """Per account: the published events (by sequence number) and the connections' records."""

    def __init__(self, *, max_events: int = 10_000, max_connections: int = 1_000) -> None:
        if max_events < 1 or max_connections < 1:
            raise ValueError("the ledger's bounds must be positive")
        self.max_events = max_events
        self.max_connections = max_connections
        self._events: dict[str, deque[Published]] = {}
        self._next_seq: dict[str, int] = {}
        self._records: dict[str, deque[ConnectionRecord]] = {}
        self._serials = 0
        # Keep each connection's data frames too (userstream.testing turns it on: a test reads back the exact
        # frames; serve itself keeps sequence numbers only, whose runs cost nothing per event).
        self.record_frames = False

    def __repr__(self) -> str:
        return f"SentLedger(accounts={sorted(self._events)!r}, max_events={self.max_events})"

    # --- recording -----------------------------------------------------------------------------------------

    def published(self, account: str, events: Sequence[Event], now: float) -> int:
        """Record a published batch; return the sequence number of its first event."""
        first = self._next_seq.get(account, 1)
        kept = self._events.get(account)
        if kept is None:
            kept = self._events[account] = deque(maxlen=self.max_events)
        for offset, event in enumerate(events):
            kept.append(Published(first + offset, now, event))
        self._next_seq[account] = first + len(events)
        return first

    def open(self, account: str, exchange: Exchange, now: float) -> ConnectionRecord:
        self._serials += 1
        record = ConnectionRecord(self._serials, account, exchange, now)
        if self.record_frames:
            record.frames = []
        records = self._records.get(account)
        if records is None:
            records = self._records[account] = deque(maxlen=self.max_connections)
        records.append(record)
        return record

    def ended(self, record: ConnectionRecord, ending: Ending, code: int | None, now: float) -> None:
        record.live_changed(False, now)
        record.ended_at = now
        record.ending = ending
        record.close_code = code
        record.live_peers_at_end = tuple(
            other.serial
            for other in self._records.get(record.account, ())
            if other is not record and other.exchange is record.exchange and other.live
        )

    # --- reading -------------------------------------------------------------------------------------------

    def events(self, account: str) -> list[Published]:
        """The published events still kept, oldest first."""
        return list(self._events.get(account, ()))

    def published_count(self, account: str) -> int:
        return self._next_seq.get(account, 1) - 1

    def connections(self, account: str, exchange: Exchange | None = None) -> list[ConnectionRecord]:
        return [r for r in self._records.get(account, ()) if exchange is None or r.exchange is exchange]

    # --- the audit -----------------------------------------------------------------------------------------

    def audit(
        self, account: str, exchange: Exchange, delivered: Iterable[Event], *, now: float
    ) -> StreamAudit:
        """Hold what a client delivered for `account` on `exchange` (its events in delivery order; those
        marked `source=snapshot` are skipped) against what was published since the stream's first
        connection opened, up to now. `now` (monotonic) ends the last outage of a stream that is down."""
        records = self.connections(account, exchange)
        published = self.events(account)
        start_at = records[0].opened_at if records else float("inf")
        audited = [item for item in published if item.at >= start_at]
        first_seq = audited[0].seq if audited else self._next_seq.get(account, 1)
        span = range(first_seq, first_seq + len(audited))

        index: dict[Fact, list[int]] = {}
        for item in published:
            index.setdefault(fact(item.event), []).append(item.seq)
        copies: Counter[int] = Counter()
        unmatched: list[Event] = []
        offered = 0
        position = 0  # the next sequence number a delivery in order may match
        for event in delivered:
            if event.source is Source.SNAPSHOT:
                continue
            offered += 1
            candidates = index.get(fact(event), [])
            at = bisect.bisect_left(candidates, position)
            if at < len(candidates):
                seq = candidates[at]
                copies[seq] += 1
                position = seq + 1
            elif candidates:
                copies[candidates[-1]] += 1  # only earlier ones match: a copy of one already delivered
            else:
                unmatched.append(event)

        lost = tuple(self._classify(seq, records) for seq in span if copies[seq] == 0)
        by_serial = {record.serial: record for record in records}
        broke = {  # lost events a broken connection explains: gaps, for a resync, not a rotation's doing
            loss.seq
            for loss in lost
            if loss.connection is not None and not _ended_cleanly(by_serial[loss.connection])
        }
        duplicates = tuple(seq for seq in sorted(copies) for _ in range(copies[seq] - 1))
        return StreamAudit(
            account=account,
            exchange=exchange,
            audited=span,
            delivered=offered,
            matched=sum(1 for seq in span if copies[seq] > 0),
            duplicates=duplicates,
            unmatched=tuple(unmatched),
            lost=lost,
            rotations=tuple(self._rotations(records, published, copies, broke)),
            connections=len(records),
            longest_outage=_longest_outage(records, now),
            longest_lost_run=_longest_run(loss.seq for loss in lost),
        )

    def _classify(self, seq: int, records: Sequence[ConnectionRecord]) -> Loss:
        """Where the ledger last saw a lost event; a connection that broke explains it before one that did
        not (an event of a rotation's overlap is queued on both connections)."""
        written = [record for record in records if seq in record.written]
        queued = [record for record in records if seq in record.queued]
        # (where it was seen, the reason if a connection there broke, the reason if none did)
        tiers = (
            (written, LossReason.IN_FLIGHT, LossReason.UNEXPLAINED),
            (queued, LossReason.DISCARDED, LossReason.DISCARDED),
        )
        for candidates, if_broken, if_clean in tiers:
            broken = [record for record in candidates if not _ended_cleanly(record)]
            if broken:
                return Loss(seq, if_broken, broken[0].serial, broken[0].describe_ending())
            if candidates:
                return Loss(seq, if_clean, candidates[0].serial, candidates[0].describe_ending())
        return Loss(seq, LossReason.NO_LIVE_CONNECTION, None, None)

    def _rotations(
        self,
        records: Sequence[ConnectionRecord],
        published: Sequence[Published],
        copies: Counter[int],
        broke: set[int],
    ) -> list[RotationAudit]:
        by_serial = {record.serial: record for record in records}
        times = [item.at for item in published]
        rotations: list[RotationAudit] = []
        for old in records:
            if old.ending is not Ending.CLIENT_CLOSE or old.ended_at is None:
                continue
            successors = [
                by_serial[serial]
                for serial in old.live_peers_at_end
                if serial in by_serial and by_serial[serial].opened_at > old.opened_at
            ]
            if not successors:
                continue  # the client closed its last connection: it stopped, it did not rotate
            new = min(successors, key=lambda record: record.opened_at)
            low = bisect.bisect_left(times, new.opened_at)
            high = bisect.bisect_right(times, old.ended_at)
            seqs = [item.seq for item in published[low:high]]
            if low > 0 and published[low - 1].seq in old.queued:
                seqs.insert(0, published[low - 1].seq)
            if high < len(published) and published[high].seq in new.queued:
                seqs.append(published[high].seq)
            rotations.append(
                RotationAudit(
                    old=old.serial,
                    new=new.serial,
                    seqs=tuple(seqs),
                    lost=tuple(seq for seq in seqs if copies[seq] == 0 and seq not in broke),
                    duplicated=tuple(seq for seq in seqs if copies[seq] > 1),
                )
            )
        return rotations


def _ended_cleanly(record: ConnectionRecord) -> bool:
    """Still open, or ended with a close handshake: it did not break."""
    return record.ending is None or record.ending.clean


def _longest_outage(records: Sequence[ConnectionRecord], now: float) -> float:
    periods = sorted((start, min(end, now)) for record in records for start, end in record.live_periods)
    if not periods:
        return 0.0
    longest = 0.0
    covered_until = periods[0][1]
    for start, end in periods[1:]:
        longest = max(longest, start - covered_until)
        covered_until = max(covered_until, end)
    return max(longest, now - covered_until)


def _longest_run(seqs: Iterable[int]) -> int:
    longest = run = 0
    previous: int | None = None
    for seq in seqs:
        run = run + 1 if previous is not None and seq == previous + 1 else 1
        longest = max(longest, run)
        previous = seq
    return longest
