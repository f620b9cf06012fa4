"""The live fan-out: every subscriber its own bounded buffer; a slow one is dropped, never waited for."""

from __future__ import annotations

from decimal import Decimal

from userstream.eventjson import to_json
from userstream.events import BalanceUpdate, Exchange
from userstream.gateway.sse import EventHub, Message


def balance(account: str, n: int) -> BalanceUpdate:
    return BalanceUpdate(
        exchange=Exchange.BITMUSA,
        account=account,
        timestamp=1_700_703_548_000 + n,
        asset="USDT",
        free=Decimal(f"{n}.50"),
        locked=Decimal(0),
    )


def test_the_frame_is_the_contract_json_as_one_sse_message() -> None:
    assert Message(balance("alice", 1)).sse == (
        b"event: balance\n"
        b'data: {"kind":"balance","exchange":"bitmusa","account":"alice","timestamp":1700703548001,'
        b'"source":"stream","asset":"USDT","free":"1.50","locked":"0","total":"1.50"}\n\n'
    )


async def test_each_subscriber_gets_what_it_asked_for_in_order() -> None:
    hub = EventHub(capacity=10)
    everything = hub.subscribe()
    only_bob = hub.subscribe("bob")
    for n, account in enumerate(("alice", "bob", "alice", "bob")):
        hub.publish(balance(account, n))
    assert hub.buffered == 6
    batch = await everything.next_batch()
    assert batch is not None
    assert [message.event for message in batch] == [balance(a, n) for n, a in enumerate(("alice", "bob") * 2)]
    bob = await only_bob.next_batch()
    assert bob is not None
    assert [message.event for message in bob] == [balance("bob", 1), balance("bob", 3)]
    assert bob[0] is batch[1]  # one message (and one encoding) shared by every subscriber
    assert await everything.next_batch(0.01) == []  # nothing more: an empty batch after the wait
    assert (hub.published, hub.subscribers, hub.buffered) == (4, 2, 0)


async def test_a_subscriber_that_falls_behind_is_dropped_and_counted() -> None:
    hub = EventHub(capacity=2)
    slow = hub.subscribe()
    fast = hub.subscribe()
    for n in range(2):
        hub.publish(balance("alice", n))
    assert await fast.next_batch() is not None
    hub.publish(balance("alice", 2))  # slow holds 2 already: it is cut off
    assert (hub.dropped_subscribers, hub.subscribers) == (1, 1)
    assert slow.dropped_reason == "slow consumer: more than 2 events behind"
    assert await slow.next_batch() is None  # what it missed is not delivered out of order
    batch = await fast.next_batch()
    assert batch is not None
    assert [message.event for message in batch] == [balance("alice", 2)]


async def test_close_ends_every_subscription_after_what_it_buffered() -> None:
    hub = EventHub(capacity=5)
    subscription = hub.subscribe()
    hub.publish(balance("alice", 1))
    hub.close()
    batch = await subscription.next_batch()
    assert batch is not None
    assert [message.json for message in batch] == [to_json(balance("alice", 1))]
    assert await subscription.next_batch() is None
    assert hub.subscribe().closed  # a subscriber arriving after the end gets the end
