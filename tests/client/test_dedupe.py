"""client/dedupe.py: the overlap of a rotation delivers each event once, in order; nothing else is touched."""

from __future__ import annotations

from decimal import Decimal

import pytest

from userstream.client.dedupe import OverlapDeduper
from userstream.events import BalanceUpdate, Event, Exchange

OLD, NEW = 1, 2


def balance(n: int, *, raw: str = "") -> BalanceUpdate:
    return BalanceUpdate(
        exchange=Exchange.BITMUSA,
        account="default",
        timestamp=1_700_000_000_000 + n,
        asset="USDT",
        free=Decimal(n),
        locked=Decimal(0),
        raw=raw,
    )


def feed(deduper: OverlapDeduper, connection: int, events: list[Event]) -> list[Event]:
    return [event for event in events if deduper.offer(connection, event)]


def test_outside_a_rotation_everything_passes_even_repeats() -> None:
    deduper = OverlapDeduper()
    events: list[Event] = [balance(1), balance(1), balance(2)]
    assert feed(deduper, OLD, events) == events
    assert deduper.suppressed == 0


def test_rotation_delivers_each_event_once_in_order() -> None:
    deduper = OverlapDeduper()
    deduper.begin(OLD)
    # The old connection sees 1..6; the new one was registered by the server from event 4 on.
    delivered = feed(deduper, OLD, [balance(n) for n in (1, 2, 3)])
    deduper.add_new(NEW)
    assert feed(deduper, NEW, [balance(n) for n in (4, 5, 6, 7, 8)]) == []
    assert deduper.caught_up is False
    delivered += feed(deduper, OLD, [balance(4)])
    assert deduper.caught_up is True
    delivered += feed(deduper, OLD, [balance(5), balance(6)])
    delivered += deduper.end()
    assert delivered == [balance(n) for n in range(1, 9)]
    assert deduper.suppressed == 3
    assert deduper.active is False
    # After the overlap the new connection passes straight through, repeats included.
    assert feed(deduper, NEW, [balance(8), balance(8)]) == [balance(8), balance(8)]


def test_equality_ignores_raw_so_two_dialects_of_one_event_match() -> None:
    deduper = OverlapDeduper()
    deduper.begin(OLD)
    deduper.add_new(NEW)
    assert feed(deduper, OLD, [balance(1, raw="old wire text")]) == [balance(1)]
    feed(deduper, NEW, [balance(1, raw="new wire text")])
    assert deduper.end() == []


def test_genuine_repeats_inside_the_overlap_survive_by_multiset_counting() -> None:
    deduper = OverlapDeduper()
    deduper.begin(OLD)
    deduper.add_new(NEW)
    # An event repeated twice while both are open: two copies on each side -> two deliveries.
    delivered = feed(deduper, OLD, [balance(1), balance(1)])
    feed(deduper, NEW, [balance(1), balance(1), balance(1)])  # and a third only the new one saw
    delivered += deduper.end()
    assert delivered == [balance(1), balance(1), balance(1)]
    assert deduper.suppressed == 2


def test_the_old_side_counts_from_begin_not_from_the_new_connection() -> None:
    deduper = OverlapDeduper()
    deduper.begin(OLD)
    # The server registered the new connection just before event 2; the old reader handled 2 before
    # the new connection was even known to be live.
    delivered = feed(deduper, OLD, [balance(1), balance(2)])
    deduper.add_new(NEW)
    feed(deduper, NEW, [balance(2), balance(3)])
    delivered += deduper.end()
    assert delivered == [balance(1), balance(2), balance(3)]


def test_cancel_releases_nothing_and_ends_the_overlap() -> None:
    deduper = OverlapDeduper()
    deduper.begin(OLD)
    deduper.add_new(NEW)
    feed(deduper, NEW, [balance(1)])
    deduper.cancel()
    assert deduper.active is False
    assert deduper.held == 0
    assert feed(deduper, OLD, [balance(1)]) == [balance(1)]


def test_misuse_is_refused() -> None:
    deduper = OverlapDeduper()
    with pytest.raises(ValueError, match="outside a rotation"):
        deduper.add_new(NEW)
    with pytest.raises(ValueError, match="outside a rotation"):
        deduper.end()
    deduper.begin(OLD)
    with pytest.raises(ValueError, match="already under way"):
        deduper.begin(OLD)
    with pytest.raises(ValueError, match="must differ"):
        deduper.add_new(OLD)
