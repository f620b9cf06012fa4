"""Accounts are isolated under concurrency: many accounts and connections, both dialects, concurrent ingests.

20 accounts, each with 3 Bitmusa and 3 Coinlocally connections (120 WebSockets, third-party clients), take
50 events each through concurrent `POST /admin/events` requests. Every event names its account in its
content (the asset `X07` belongs to account 7), because the wire itself carries no account: each connection
must then receive exactly its own account's 50 events, in order, and nothing else, and after them its own
sentinel and nothing in between. The REST snapshot of each account lists its own balance only.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection, connect

from userstream.events import BalanceUpdate
from userstream.protocol import bitmusa, coinlocally
from userstream.protocol.messages import ControlReply, DataEvents
from userstream.server import Account, running_server

Setup = Any  # conftest.Setup

ACCOUNTS = 20
PER_DIALECT = 3
EVENTS = 50
BATCH = 10
BASE_TIME = 1_700_703_548_000


def account(index: int) -> Account:
    return Account(
        name=f"acct{index:02d}",
        uid=1000 + index,
        bitmusa_api_key=f"bitmusa-api-{index:02d}-SECRET",
        bitmusa_auth_key=f"bitmusa-auth-{index:02d}-SECRET",
        coinlocally_token=f"coinlocally-token-{index:02d}-SECRET",
    )


def event(index: int, n: int) -> dict[str, Any]:
    return {
        "kind": "balance",
        "asset": f"X{index:02d}",
        "free": str(n),
        "locked": "0",
        "timestamp": BASE_TIME + n,
    }


class Reader:
    """One WebSocket of one account, and every balance event it received, as (asset, free)."""

    def __init__(self, ws: ClientConnection, parser: Any) -> None:
        self.ws = ws
        self.parser = parser
        self.received: list[tuple[str, str]] = []

    async def take(self, count: int) -> list[tuple[str, str]]:
        while len(self.received) < count:
            incoming = self.parser(await self.ws.recv())
            if isinstance(incoming, ControlReply):
                continue
            assert isinstance(incoming, DataEvents), incoming
            for item in incoming.events:
                assert isinstance(item, BalanceUpdate)
                self.received.append((item.asset, str(item.free)))
        return self.received[:count]


async def test_events_never_cross_accounts_under_concurrent_connections_and_ingests(sec: Setup) -> None:
    accounts = [account(index) for index in range(ACCOUNTS)]
    config = sec.config(accounts=tuple(accounts), max_connections_per_ip=ACCOUNTS * PER_DIALECT * 2)
    readers: dict[str, list[Reader]] = {acct.name: [] for acct in accounts}
    async with running_server(config) as server, aiohttp.ClientSession() as http:

        async def open_all(acct: Account) -> None:
            headers = {
                "Authorization": f"Bearer {acct.bitmusa_auth_key}",
                "x-api-key": str(acct.bitmusa_api_key),
            }
            async with http.post(server.base_url + bitmusa.LISTEN_KEY_PATH, headers=headers) as reply:
                key = (await reply.json())["data"]["listenKey"]
            for _ in range(PER_DIALECT):
                ws = await connect(f"{server.ws_url}/ws/spot/{key}", ping_interval=None, max_queue=None)
                readers[acct.name].append(Reader(ws, bitmusa.Parser(account=acct.name)))
                ws = await connect(
                    server.ws_url + sec.coinlocally_path,
                    additional_headers={"token": str(acct.coinlocally_token)},
                    ping_interval=None,
                    max_queue=None,
                )
                await ws.send(json.dumps({"event": "sub", "token": acct.coinlocally_token}))
                readers[acct.name].append(Reader(ws, coinlocally.Parser(account=acct.name)))

        async def ingest(acct: Account, index: int, first: int, count: int) -> None:
            body = {"account": acct.name, "events": [event(index, n) for n in range(first, first + count)]}
            headers = {"Authorization": f"Bearer {sec.admin_token}"}
            async with http.post(server.base_url + "/admin/events", json=body, headers=headers) as reply:
                assert (reply.status, await reply.json()) == (200, {"accepted": count})

        async def feed(acct: Account, index: int) -> None:
            # One account's batches in order (its events must arrive in order); accounts race each other.
            for first in range(1, EVENTS + 1, BATCH):
                await ingest(acct, index, first, BATCH)

        async with asyncio.timeout(60):
            await asyncio.gather(*(open_all(acct) for acct in accounts))
            for acct in accounts:
                await server.wait_for_streams(acct.name, 2 * PER_DIALECT)
            await asyncio.gather(*(feed(acct, index) for index, acct in enumerate(accounts)))
            received = {
                name: await asyncio.gather(*(reader.take(EVENTS) for reader in group))
                for name, group in readers.items()
            }
            # Then one sentinel each: the very next event of every connection must be its own sentinel.
            await asyncio.gather(*(ingest(acct, index, 10_000, 1) for index, acct in enumerate(accounts)))
            sentinels = {
                name: await asyncio.gather(*(reader.take(EVENTS + 1) for reader in group))
                for name, group in readers.items()
            }
            wallets = {}
            for acct in accounts:
                headers = {
                    "Authorization": f"Bearer {acct.bitmusa_auth_key}",
                    "x-api-key": str(acct.bitmusa_api_key),
                }
                async with http.get(server.base_url + "/spot/wallet", headers=headers) as reply:
                    wallets[acct.name] = (await reply.json())["data"]
        health = server.server.health()
        for group in readers.values():
            for reader in group:
                await reader.ws.close()

    assert sum(len(group) for group in readers.values()) == ACCOUNTS * PER_DIALECT * 2
    for index, acct in enumerate(accounts):
        asset = f"X{index:02d}"
        expected = [(asset, str(n)) for n in range(1, EVENTS + 1)]
        assert received[acct.name] == [expected] * (2 * PER_DIALECT), acct.name
        assert [got[-1] for got in sentinels[acct.name]] == [(asset, "10000")] * (2 * PER_DIALECT)
        assert wallets[acct.name] == [{"asset": asset, "free": "10000", "locked": "0"}]
        assert health["connections"]["by_account"][acct.name] == {
            "bitmusa": PER_DIALECT,
            "coinlocally": PER_DIALECT,
            "live": 2 * PER_DIALECT,
        }
