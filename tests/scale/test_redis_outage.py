"""A `serve --redis` node whose Redis goes away: it refuses what needs Redis (503), says why on /healthz,
keeps its open streams, and recovers by itself when the real redis-server is started again (empty: the
test's Redis keeps nothing on disk, so the node closes the streams that may have missed events)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus


async def test_a_node_without_redis_refuses_new_work_and_recovers_when_redis_returns(
    cluster: Any, redis_server: Any, streams: Any
) -> None:
    node = await cluster.serve("node-a", "--log-level", "DEBUG")
    async with streams.coinlocally(node, "alice") as before:
        await streams.subscribe(before, "alice")
        await cluster.ingest(node, "alice", [streams.balance(1)])
        assert await streams.next_free(before) == "1"

        redis_server.stop()
        status, body = await cluster.within(unhealthy(cluster, node), "node-a reports Redis down", node)
        assert status == 503
        assert body["status"] == "unavailable"
        assert body["reason"].startswith("Redis unreachable: "), body
        assert body["backend"]["node"] == "node-a"
        assert body["connections"]["by_account"]["alice"]["live"] == 1  # open streams stay open

        with pytest.raises(InvalidStatus) as refused:
            async with streams.coinlocally(node, "bob"):
                pass
        assert refused.value.response.status_code == 503
        status, reply = await cluster.rest(node, "POST", "bob")
        assert status == 503
        assert reply["code"] == 503001
        assert reply["message"].startswith("service unavailable: Redis unreachable: ")
        headers = {"Authorization": "Bearer scale-admin-token"}
        body_sent = {"account": "bob", "events": [streams.balance(2)]}
        async with cluster.http.post(node.url + "/admin/events", json=body_sent, headers=headers) as answer:
            assert answer.status == 503
            assert (await answer.json())["error"].startswith("service unavailable: Redis unreachable: ")

        redis_server.start()  # same port, no data: the fan-out starts over
        await cluster.wait_healthy(node)
        # The node cannot know what the stream missed while it could not read: it closes it (1001, after
        # Coinlocally's SYSTEM notice) so the client reconnects and resyncs.
        assert await streams.closed_with(before) == (1001, "the event fan-out restarted: reconnect")

    async with streams.coinlocally(node, "alice") as after:
        await streams.subscribe(after, "alice")
        key = await cluster.create_listen_key(node, "bob")
        async with streams.bitmusa(node, key) as bob:
            await cluster.ingest(node, "alice", [streams.balance(3)])
            await cluster.ingest(node, "bob", [streams.balance(4)])
            assert await streams.next_free(after) == "3"
            assert await streams.next_free(bob) == "4"


async def unhealthy(cluster: Any, node: Any) -> tuple[int, Any]:
    while True:
        status, body = await cluster.health(node)
        if status != 200:
            return status, body
        await asyncio.sleep(0.05)
