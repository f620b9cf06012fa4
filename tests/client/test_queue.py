"""client/queue.py: a bounded queue whose overflow policy is explicit and never loses silently."""

from __future__ import annotations

import asyncio

import pytest

from userstream.client.queue import EventQueue, Overflow, QueueClosed
from userstream.errors import AuthenticationError, ConfigurationError


async def test_block_makes_the_producer_wait_and_loses_nothing() -> None:
    queue: EventQueue[int] = EventQueue(2, "block")
    await queue.put(1)
    await queue.put(2)
    producer = asyncio.create_task(queue.put(3))
    await asyncio.sleep(0)
    assert not producer.done()
    assert queue.put_nowait(4) is False
    assert await queue.get() == 1
    async with asyncio.timeout(5):
        await producer
    assert [await queue.get(), await queue.get()] == [2, 3]
    assert queue.dropped == 0


async def test_drop_oldest_reports_each_gap_once_before_the_next_item() -> None:
    reports: list[int] = []
    queue: EventQueue[int] = EventQueue(3, Overflow.DROP_OLDEST, report_dropped=reports.append)
    for n in range(1, 9):
        await queue.put(n)  # never waits
    assert queue.dropped == 5
    assert reports == []
    assert await queue.get() == 6
    assert reports == [5]
    assert [await queue.get(), await queue.get()] == [7, 8]
    assert reports == [5]
    for n in range(9, 14):
        queue.put_nowait(n)
    assert await queue.get() == 11
    assert reports == [5, 2]
    assert queue.dropped == 7


async def test_close_delivers_what_is_queued_then_the_error() -> None:
    queue: EventQueue[int] = EventQueue(4)
    await queue.put(1)
    error = AuthenticationError("rejected", rejected="api key")
    queue.close(error)
    queue.close(None)  # the first close wins
    await queue.put(2)  # discarded: nobody will read it
    assert await queue.get() == 1
    with pytest.raises(AuthenticationError) as raised:
        await queue.get()
    assert raised.value is error


async def test_close_releases_a_blocked_producer_and_a_waiting_consumer() -> None:
    queue: EventQueue[int] = EventQueue(1)
    await queue.put(1)
    producer = asyncio.create_task(queue.put(2))
    await asyncio.sleep(0)
    queue.close()
    async with asyncio.timeout(5):
        await producer
    assert await queue.get() == 1
    with pytest.raises(QueueClosed):
        await queue.get()

    empty: EventQueue[int] = EventQueue(1)
    consumer = asyncio.create_task(empty.get())
    await asyncio.sleep(0)
    empty.close()
    with pytest.raises(QueueClosed):
        async with asyncio.timeout(5):
            await consumer


@pytest.mark.parametrize(("size", "policy"), [(0, "block"), (-1, "block"), (1, "drop_newest")])
def test_bad_configuration_is_refused(size: int, policy: str) -> None:
    with pytest.raises(ConfigurationError):
        EventQueue(size, policy)


async def test_put_all_nowait_takes_all_or_none_and_a_slot_freed_in_a_full_queue_wakes_the_producer() -> None:
    queue: EventQueue[int] = EventQueue(3, "block")
    assert queue.put_all_nowait([1, 2]) is True
    assert queue.put_all_nowait([3, 4]) is False  # one slot left for two: none is taken
    assert len(queue) == 2
    assert queue.put_all_nowait([3]) is True
    producer = asyncio.create_task(queue.put(4))
    await asyncio.sleep(0)
    assert not producer.done()
    assert queue.get_nowait() == 1  # the queue was full: the producer is let in
    async with asyncio.timeout(5):
        await producer
    assert [queue.get_nowait(), queue.get_nowait(), queue.get_nowait(), queue.get_nowait()] == [2, 3, 4, None]


async def test_put_all_nowait_under_drop_oldest_drops_and_counts_and_after_close_discards() -> None:
    reports: list[int] = []
    queue: EventQueue[int] = EventQueue(3, Overflow.DROP_OLDEST, report_dropped=reports.append)
    assert queue.put_all_nowait([1, 2]) is True
    assert queue.put_all_nowait([3, 4, 5]) is True
    assert queue.dropped == 2
    assert [await queue.get(), await queue.get(), await queue.get()] == [3, 4, 5]
    assert reports == [2]
    queue.close()
    assert queue.put_all_nowait([6]) is True
    assert len(queue) == 0
    with pytest.raises(QueueClosed):
        await queue.get()


# --- the byte bound: items weigh what `sizeof` says (here: the int itself) --------------------------------


def _weighed(maxbytes: int, policy: str = "block", **kwargs: object) -> EventQueue[int]:
    return EventQueue(100, policy, maxbytes=maxbytes, sizeof=lambda item: item, **kwargs)  # type: ignore[arg-type]


async def test_block_waits_for_bytes_as_for_slots_and_loses_nothing() -> None:
    queue = _weighed(10)
    await queue.put(4)
    await queue.put(5)
    assert (len(queue), queue.bytes, queue.full()) == (2, 9, False)
    assert queue.put_nowait(2) is False  # 11 bytes would exceed 10, though 98 slots are free
    producer = asyncio.create_task(queue.put(3))
    await asyncio.sleep(0)
    assert not producer.done()
    assert await queue.get() == 4  # 5 bytes left: the producer's 3 fits now
    async with asyncio.timeout(5):
        await producer
    assert (queue.bytes, queue.get_nowait(), queue.get_nowait(), queue.bytes, queue.dropped) == (
        8,
        5,
        3,
        0,
        0,
    )


async def test_a_producer_waits_through_gets_that_free_too_little() -> None:
    queue = _weighed(10)
    for item in (3, 3, 3):
        queue.put_nowait(item)
    producer = asyncio.create_task(queue.put(7))
    await asyncio.sleep(0)
    assert queue.get_nowait() == 3  # 6 + 7 > 10: still waiting
    await asyncio.sleep(0)
    assert not producer.done()
    assert queue.get_nowait() == 3  # 3 + 7 = 10: fits
    async with asyncio.timeout(5):
        await producer
    assert [queue.get_nowait(), queue.get_nowait(), queue.get_nowait()] == [3, 7, None]


async def test_drop_oldest_drops_as_many_as_the_bytes_need_and_counts_each() -> None:
    reports: list[int] = []
    queue = _weighed(10, Overflow.DROP_OLDEST, report_dropped=reports.append)
    for item in (1, 2, 3, 4):
        assert queue.put_nowait(item) is True
    assert queue.put_nowait(9) is True  # 10 + 9: drops 1, 2, 3 and 4 (9 + 4 = 13 is still too much)
    assert (queue.dropped, len(queue), queue.bytes) == (4, 1, 9)
    assert queue.put_nowait(1) is True  # exactly 10
    assert queue.put_nowait(2) is True  # drops 9: 1 + 2
    assert [await queue.get(), await queue.get()] == [1, 2]
    assert reports == [5]
    assert (queue.dropped, queue.bytes) == (5, 0)


async def test_one_item_heavier_than_the_bound_fits_an_empty_queue_only() -> None:
    queue = _weighed(10)
    assert queue.put_nowait(50) is True  # nothing could ever make room for it: refusing would stall forever
    assert queue.full()
    assert queue.put_nowait(1) is False
    assert queue.get_nowait() == 50
    dropping = _weighed(10, Overflow.DROP_OLDEST)
    dropping.put_all_nowait([2, 3])
    assert dropping.put_nowait(50) is True
    assert (dropping.dropped, len(dropping), dropping.bytes) == (2, 1, 50)


async def test_put_all_nowait_weighs_the_whole_batch() -> None:
    queue = _weighed(10)
    assert queue.put_all_nowait([2, 3]) is True
    assert queue.put_all_nowait([3, 3]) is False  # 5 + 6 > 10: none is taken
    assert (len(queue), queue.bytes) == (2, 5)
    assert queue.put_all_nowait([2, 3]) is True  # exactly 10
    empty = _weighed(10)
    assert empty.put_all_nowait([6, 6]) is False  # a batch over the bound waits even in an empty queue
    assert empty.put_all_nowait([12]) is True  # one item over it does not
    dropping = _weighed(10, Overflow.DROP_OLDEST)
    dropping.put_all_nowait([4, 4])
    assert dropping.put_all_nowait([3, 5]) is True  # 3 drops the first 4, 5 the second
    assert (dropping.dropped, [await dropping.get(), await dropping.get()]) == (2, [3, 5])


@pytest.mark.parametrize("maxbytes", [0, -1, True, 1.5])
def test_a_bad_byte_bound_is_refused(maxbytes: object) -> None:
    with pytest.raises(ConfigurationError, match="queue_bytes must be a positive integer"):
        EventQueue(1, maxbytes=maxbytes, sizeof=len)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="needs a sizeof"):
        EventQueue(1, maxbytes=10)


def test_without_a_byte_bound_nothing_is_weighed() -> None:
    queue: EventQueue[str] = EventQueue(2)
    assert queue.put_nowait("x" * 10_000) is True
    assert (queue.maxbytes, queue.bytes) == (None, 0)
