"""Three `serve --redis` nodes as separate processes behave as one server (docs/scaling.md).

Every client is the `websockets` library or aiohttp, talking to one node or another on purpose: a listenKey
made on node A, kept alive on B and streamed on C; events ingested on any node reach every live stream of
their account, on every node, exactly once and in ingest order, and never another account's; a DELETE on
one node closes the key's streams on all of them; a node killed with SIGKILL mid-stream leaves the others
delivering.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from websockets.asyncio.client import ClientConnection

KEY_TTL = 2.0  # seconds: short enough to watch a key lapse, long enough for the steps before it


async def test_a_listen_key_made_on_one_node_is_kept_alive_on_another_and_streamed_on_a_third(
    cluster: Any, streams: Any
) -> None:
    a, b, c = await asyncio.gather(
        *(cluster.serve(node, "--listen-key-ttl", str(KEY_TTL)) for node in ("node-a", "node-b", "node-c"))
    )
    created_at = time.monotonic()
    key = await cluster.create_listen_key(a, "alice")
    assert await cluster.create_listen_key(b, "alice") == key  # the account's active key, on any node
    assert await cluster.create_listen_key(c, "bob") != key

    await asyncio.sleep(max(0.0, created_at + KEY_TTL * 0.6 - time.monotonic()))
    assert await cluster.rest(b, "PUT", "alice") == (200, {"code": 0, "message": "success"})
    # Past the key's first TTL: only B's PUT keeps it valid, for C and A alike.
    await asyncio.sleep(max(0.0, created_at + KEY_TTL * 1.2 - time.monotonic()))
    async with streams.bitmusa(c, key) as on_c, streams.bitmusa(a, key) as on_a:
        await cluster.ingest(b, "alice", [streams.balance(1)])
        assert [await streams.next_free(on_c), await streams.next_free(on_a)] == ["1", "1"]
        # No more PUTs: the key lapses, and every node closes its streams of it with 4001.
        assert await streams.closed_with(on_c) == (4001, "listenKey expired")
        assert await streams.closed_with(on_a) == (4001, "listenKey expired")
    assert await cluster.rest(c, "PUT", "alice") == (
        404,
        {"code": 404001, "message": "no active listenKey for this account: create one with POST"},
    )
    assert await cluster.create_listen_key(c, "alice") != key


async def test_events_reach_every_live_stream_of_their_account_once_in_order_on_every_node(
    cluster: Any, streams: Any
) -> None:
    a, b, c = await asyncio.gather(*(cluster.serve(node) for node in ("node-a", "node-b", "node-c")))
    alice_key = await cluster.create_listen_key(b, "alice")
    bob_key = await cluster.create_listen_key(c, "bob")
    async with (
        streams.bitmusa(a, alice_key) as alice_on_a,
        streams.bitmusa(c, alice_key) as alice_on_c,
        streams.coinlocally(b, "alice") as alice_on_b,
        streams.bitmusa(a, bob_key) as bob_on_a,
        streams.coinlocally(c, "bob") as bob_on_c,
    ):
        await streams.subscribe(alice_on_b, "alice")
        await streams.subscribe(bob_on_c, "bob")
        await cluster.within(live_everywhere(cluster, (a, b, c), {"alice": 3, "bob": 2}), "streams live")

        # Ingest, one batch at a time, round-robin over the nodes, the two accounts interleaved.
        nodes = (a, b, c)
        alice_values: list[str] = []
        bob_values: list[str] = []
        for step in range(30):
            account, values = ("alice", alice_values) if step % 2 else ("bob", bob_values)
            values.append(str(step))
            event = streams.balance(step, timestamp=1_700_000_000_000 + step)
            await cluster.ingest(nodes[step % 3], account, [event])
        # a last marker per account: whatever arrives before it is all the stream got
        await cluster.ingest(c, "alice", [streams.balance("999")])
        await cluster.ingest(a, "bob", [streams.balance("999")])

        for ws in (alice_on_a, alice_on_c, alice_on_b):
            assert await read_until(ws, "999", streams) == alice_values
        for ws in (bob_on_a, bob_on_c):
            assert await read_until(ws, "999", streams) == bob_values

        # DELETE on B closes alice's Bitmusa streams on A and C (4002); her Coinlocally stream goes on.
        assert await cluster.rest(b, "DELETE", "alice") == (200, {"code": 0, "message": "success"})
        assert await streams.closed_with(alice_on_a) == (4002, "listenKey deleted")
        assert await streams.closed_with(alice_on_c) == (4002, "listenKey deleted")
        await cluster.ingest(a, "alice", [streams.balance(1000)])
        assert await streams.next_free(alice_on_b) == "1000"
        assert await cluster.rest(c, "DELETE", "alice") == (
            404,
            {"code": 404001, "message": "no active listenKey for this account: create one with POST"},
        )

        # SIGKILL node A mid-stream: its clients lose their connection; B and C go on delivering, in order.
        ingesting = asyncio.create_task(
            ingest_steadily(cluster, (b, c), "bob", streams, first=2000, count=40)
        )
        assert await streams.next_free(bob_on_c) == "2000"
        a.kill()
        assert await streams.closed_with(bob_on_a) == (None, None)
        await ingesting
        assert [await streams.next_free(bob_on_c) for _ in range(39)] == [str(2001 + i) for i in range(39)]
        # bob's key still works on the survivors
        async with streams.bitmusa(b, bob_key) as bob_on_b:
            await cluster.within(live_everywhere(cluster, (b,), {"bob": 1}), "bob live on B")
            await cluster.ingest(c, "bob", [streams.balance(3000)])
            assert await streams.next_free(bob_on_b) == "3000"
            assert await streams.next_free(bob_on_c) == "3000"


async def read_until(ws: ClientConnection, marker: str, streams: Any) -> list[str]:
    values: list[str] = []
    while (value := await streams.next_free(ws)) != marker:
        values.append(value)
    return values


async def ingest_steadily(
    cluster: Any, nodes: tuple[Any, ...], account: str, streams: Any, *, first: int, count: int
) -> None:
    for index in range(count):
        await cluster.ingest(nodes[index % len(nodes)], account, [streams.balance(first + index)])
        await asyncio.sleep(0.01)


async def live_everywhere(cluster: Any, nodes: tuple[Any, ...], wanted: dict[str, int]) -> None:
    """Until the nodes together count `wanted[account]` live streams of each account."""
    while True:
        totals = dict.fromkeys(wanted, 0)
        for node in nodes:
            _, body = await cluster.health(node)
            for account in wanted:
                totals[account] += body["connections"]["by_account"][account]["live"]
        if totals == wanted:
            return
        await asyncio.sleep(0.02)
