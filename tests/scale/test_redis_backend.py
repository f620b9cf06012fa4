"""The Redis backend's finer rules, with two nodes in this test's process (`running_server` with `redis_url`)
on a real redis-server: concurrent POSTs on different nodes agree on one key; the simulator on one node
feeds the streams and the REST snapshots of another; a gap in the fan-out (entries trimmed before a node
read them) closes that node's streams instead of skipping events silently; the in-memory fault control
refuses to pretend it is immediate; each node renders each published event once (the publishing node
keeps the frames it rendered to validate the batch)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import aiohttp
import pytest
import redis.asyncio

from userstream.errors import LocalProtocolError
from userstream.events import Event, Exchange
from userstream.protocol import registry
from userstream.server import Account, ServerConfig, ServerHandle, running_server

WAIT = 10.0
ADMIN = "backend-admin"


def account(name: str, uid: int) -> Account:
    return Account(
        name=name,
        uid=uid,
        bitmusa_api_key=f"{name}-api",
        bitmusa_auth_key=f"{name}-auth",
        coinlocally_token=f"{name}-token",
    )


ALICE, BOB = account("alice", 1), account("bob", 2)


def headers(who: Account) -> dict[str, str]:
    return {"Authorization": f"Bearer {who.bitmusa_auth_key}", "x-api-key": who.bitmusa_api_key or ""}


@pytest.fixture
async def nodes(redis_server: Any) -> AsyncIterator[Any]:
    """`await nodes(count, **config)`: that many in-process nodes on the Redis, each ready (/healthz 200)."""
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())

        async def start(count: int, **overrides: Any) -> list[ServerHandle]:
            handles = []
            for index in range(count):
                config = ServerConfig(
                    accounts=(ALICE, BOB),
                    port=0,
                    admin_token=ADMIN,
                    redis_url=redis_server.url,
                    node_id=f"node-{index}",
                    close_timeout=2.0,
                    redis_check_interval=0.2,
                    **(overrides if index == 0 else {}),
                )
                handle = await stack.enter_async_context(running_server(config))
                async with asyncio.timeout(WAIT):
                    while True:
                        async with http.get(handle.base_url + "/healthz") as reply:
                            if reply.status == 200:
                                break
                        await asyncio.sleep(0.02)
                handles.append(handle)
            return handles

        start.http = http  # type: ignore[attr-defined]
        yield start


async def test_posts_on_several_nodes_at_once_return_one_key(nodes: Any) -> None:
    handles = await nodes(3)

    async def post(handle: ServerHandle) -> str:
        async with nodes.http.post(handle.base_url + "/spot/userDataStream", headers=headers(ALICE)) as reply:
            assert reply.status == 200
            key: str = (await reply.json())["data"]["listenKey"]
            return key

    keys = await asyncio.gather(*(post(handle) for handle in handles for _ in range(4)))
    assert len(set(keys)) == 1
    assert await handles[2].server.backend.active_listen_key("alice") == keys[0]
    assert await handles[1].server.backend.lookup_listen_key(keys[0]) == "alice"
    assert await handles[0].server.backend.lookup_listen_key("no-such-key") is None


async def test_the_simulator_on_one_node_feeds_streams_and_snapshots_on_another(nodes: Any) -> None:
    simulating, other = await nodes(2, simulate_rate=200.0, seed=7)
    async with nodes.http.post(other.base_url + "/spot/userDataStream", headers=headers(BOB)) as reply:
        key = (await reply.json())["data"]["listenKey"]
    async with nodes.http.ws_connect(f"{other.ws_url}/ws/spot/{key}") as ws:
        async with asyncio.timeout(WAIT):
            frame = json.loads((await ws.receive()).data)
        assert frame["stream"] in ("spot_wallet", "spot_order")
    # Every node folds every published event into its truth: hold the market still, let the fan-out
    # catch up, and both nodes' REST wallets answer the simulator's ledger.
    simulating.pause_simulation()
    ledger = simulating.ledger("bob")

    async def wallet(handle: ServerHandle) -> dict[str, Decimal]:
        async with nodes.http.get(handle.base_url + "/spot/wallet", headers=headers(BOB)) as reply:
            body = json.loads(await reply.read(), parse_float=Decimal)
        return {entry["asset"]: Decimal(entry["free"]) for entry in body["data"]}

    expected = {asset: free for asset, (free, _locked) in ledger.balances.items()}
    async with asyncio.timeout(WAIT):
        while await wallet(other) != expected:  # noqa: ASYNC110 - the fan-out has no signal to await here
            await asyncio.sleep(0.05)
    assert await wallet(simulating) == expected


async def test_a_gap_in_the_fan_out_closes_the_nodes_streams(nodes: Any, redis_server: Any) -> None:
    (node,) = await nodes(1)
    async with nodes.http.ws_connect(
        node.ws_url + "/spotws_user/userData/ws", headers={"token": "alice-token"}
    ) as ws:
        assert (await ws.receive()).data == "connect success"
        await ws.send_str(json.dumps({"event": "sub", "token": "alice-token"}))
        assert (await ws.receive()).data == "sub success"
        await node.ingest("alice", [{"kind": "balance", "asset": "USDT", "free": "1", "locked": "0"}])
        assert (await ws.receive()).type is aiohttp.WSMsgType.BINARY
        # Another node published twice, and the first entry was trimmed before this node read it.
        client = redis.asyncio.Redis.from_url(redis_server.url)
        try:
            await client.incr("userstream:serve:fanout:seq")
            seq = await client.incr("userstream:serve:fanout:seq")
            await client.xadd(
                "userstream:serve:fanout",
                {"seq": seq, "type": "events", "account": "bob", "events": b"", "node": "elsewhere"},
            )
        finally:
            await client.aclose()
        async with asyncio.timeout(WAIT):
            notice = await ws.receive()  # Coinlocally's SYSTEM notice, then the close
            closing = await ws.receive()
        assert notice.type is aiohttp.WSMsgType.BINARY
        assert (closing.type, closing.data, closing.extra) == (
            aiohttp.WSMsgType.CLOSE,
            1001,
            "fan-out entries were trimmed before this node read them: reconnect",
        )
    async with nodes.http.get(node.base_url + "/healthz") as reply:
        backend = (await reply.json())["backend"]
    assert (backend["fanout_seq"], backend["fanout_gaps"]) == (3, 1)


async def test_the_in_memory_fault_control_is_refused_with_redis(nodes: Any) -> None:
    (node,) = await nodes(1)
    with pytest.raises(LocalProtocolError, match="with Redis"):
        node.expire_listen_key("alice")
    async with nodes.http.post(node.base_url + "/spot/userDataStream", headers=headers(ALICE)) as reply:
        key = (await reply.json())["data"]["listenKey"]
    assert await node.server.backend.expire_listen_key("alice") == key
    assert await node.server.backend.lookup_listen_key(key) is None


async def test_each_node_renders_each_published_event_once(
    nodes: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered: Counter[Exchange] = Counter()

    def counted(entry: registry.ExchangeSpec) -> registry.ExchangeSpec:
        def render_event(event: Event) -> str | bytes:
            rendered[entry.exchange] += 1
            return entry.render_event(event)

        return dataclasses.replace(entry, render_event=render_event)

    counting = MappingProxyType({exchange: counted(entry) for exchange, entry in registry.REGISTRY.items()})
    monkeypatch.setattr(registry, "REGISTRY", counting)
    publishing, other = await nodes(2)
    events = [
        {"kind": "balance", "asset": asset, "free": "1", "locked": "0", "timestamp": moment}
        for moment, asset in enumerate(("BTC", "ETH", "USDT"), start=1_700_000_000_000)
    ]
    assert await publishing.ingest("alice", events) == 3
    async with asyncio.timeout(WAIT):
        for handle in (publishing, other):  # both nodes have folded the batch in: the fan-out reached them
            while len(handle.server.truth.snapshot("alice").balances) < 3:  # noqa: ASYNC110 - no signal
                await asyncio.sleep(0.02)
    # 3 events, 2 nodes: each node rendered each event once per dialect (before: the publishing node
    # rendered the batch to validate it, threw the frames away, and rendered it again from the fan-out)
    assert rendered == {Exchange.BITMUSA: 6, Exchange.COINLOCALLY: 6}
