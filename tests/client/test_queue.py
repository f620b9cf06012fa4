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
