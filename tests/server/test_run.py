"""running_server's handle (fault controls, shutdown), /healthz and the logs: what clients' tests rely on."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from websockets.protocol import State

from userstream.events import Exchange

Kit = Any  # the `kit` fixture of conftest.py
Start = Callable[..., AbstractAsyncContextManager[Any]]

TOKEN = {"token": "alice-coinlocally-token"}
SYSTEM_NOTICE = {"uid": 24005174, "channel": "SYSTEM", "et": "close"}


async def open_both(kit: Kit) -> tuple[Any, Any]:
    """A Bitmusa and a subscribed Coinlocally stream of alice (the caller closes them)."""
    key = await kit.create_listen_key()
    bitmusa = await kit.bitmusa_stream(key)
    coinlocally = await kit.coinlocally_stream(TOKEN)
    await kit.subscribe(coinlocally, TOKEN["token"])
    await kit.server.wait_for_streams("alice", 2)
    return bitmusa, coinlocally


async def test_the_handle_describes_where_the_server_listens(kit: Kit) -> None:
    handle = kit.server
    assert handle.base_url == f"http://127.0.0.1:{handle.port}"
    assert handle.ws_url == f"ws://127.0.0.1:{handle.port}"
    assert handle.port > 0
    assert handle.admin_token == "test-admin-token"
    assert handle.account("alice").uid == 24005174
    assert handle.streams("alice") == 0
    with pytest.raises(KeyError):
        handle.account("zed")


async def test_system_close_sends_the_notice_on_coinlocally_and_1001_on_both(kit: Kit) -> None:
    bitmusa, coinlocally = await open_both(kit)
    assert await kit.server.system_close("alice") == 2
    assert await kit.drain_until_closed(coinlocally) == [SYSTEM_NOTICE]
    assert await kit.closed_with(coinlocally) == (1001, "closed by the exchange")
    assert await kit.closed_with(bitmusa) == (1001, "closed by the exchange")
    assert kit.server.streams("alice") == 0


async def test_drop_aborts_without_a_close_frame(kit: Kit) -> None:
    bitmusa, coinlocally = await open_both(kit)
    assert await kit.server.drop("alice") == 2
    assert await kit.closed_with(bitmusa) == (None, None)
    assert await kit.closed_with(coinlocally) == (None, None)


async def test_expire_listen_key_closes_with_4001(kit: Kit) -> None:
    assert kit.server.expire_listen_key("alice") is False  # no key yet
    bitmusa, coinlocally = await open_both(kit)
    assert kit.server.active_listen_key("alice") is not None
    assert kit.server.expire_listen_key("alice") is True
    assert await kit.closed_with(bitmusa) == (4001, "listenKey expired")
    assert kit.server.active_listen_key("alice") is None
    assert coinlocally.state is State.OPEN  # Coinlocally has no listenKey
    await coinlocally.close()


async def test_a_stalled_connection_stays_open_and_silent(kit: Kit) -> None:
    bitmusa, coinlocally = await open_both(kit)
    assert await kit.server.stall("alice") == 2
    await kit.ingest("alice", [kit.balance("LOST")])
    await coinlocally.send('{"ping": 1}')
    websocket_pong = await bitmusa.ping()
    # Silence cannot be observed without waiting: a short, bounded wait for what must not come.
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await coinlocally.recv()
    assert not websocket_pong.done()
    assert bitmusa.state is State.OPEN
    assert coinlocally.state is State.OPEN
    health = await kit.rest("GET", {}, path="/healthz")
    assert health[1]["connections"]["by_account"]["alice"] == {"bitmusa": 1, "coinlocally": 1, "live": 0}
    bitmusa.close_timeout = coinlocally.close_timeout = 0.2  # a stalled connection answers no close either
    await bitmusa.close()
    await coinlocally.close()


async def test_leaving_running_server_closes_every_stream_like_sigterm(start: Start) -> None:
    async with start() as kit:
        bitmusa, coinlocally = await open_both(kit)
    assert await kit.drain_until_closed(coinlocally) == [SYSTEM_NOTICE]
    assert await kit.closed_with(coinlocally) == (1001, "server shutting down")
    assert await kit.closed_with(bitmusa) == (1001, "server shutting down")


async def test_healthz_reports_accounts_and_connections_and_no_secret(kit: Kit) -> None:
    bitmusa, coinlocally = await open_both(kit)
    async with kit.http.get(kit.server.base_url + "/healthz") as reply:
        assert reply.status == 200
        text = await reply.text()
    health = json.loads(text)
    assert health["uptime_seconds"] >= 0
    del health["uptime_seconds"]
    assert health == {
        "status": "ok",
        "accounts": ["alice", "bob"],
        "connections": {
            "bitmusa": 1,
            "coinlocally": 1,
            "by_account": {
                "alice": {"bitmusa": 1, "coinlocally": 1, "live": 2},
                "bob": {"bitmusa": 0, "coinlocally": 0, "live": 0},
            },
        },
        "listen_keys": 1,
        "simulating": False,
    }
    for account in (kit.alice, kit.bob):
        for secret in account.credentials().values():
            assert secret not in text
    assert kit.server.active_listen_key("alice") not in text
    await bitmusa.close()
    await coinlocally.close()


async def test_wait_for_streams_counts_only_streams_that_receive_events(kit: Kit) -> None:
    async with kit.coinlocally_stream(TOKEN) as ws:
        assert await kit.recv(ws) == "connect success"
        assert kit.server.streams("alice", Exchange.COINLOCALLY) == 0  # not subscribed yet
        await ws.send(json.dumps({"event": "sub", "token": TOKEN["token"]}))
        async with asyncio.timeout(5):
            await kit.server.wait_for_streams("alice", 1, Exchange.COINLOCALLY)
        assert kit.server.streams("alice", Exchange.BITMUSA) == 0


async def test_logs_never_carry_a_listen_key_or_credential_in_full(
    kit: Kit, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = await kit.create_listen_key()
    async with kit.bitmusa_stream(key) as ws:
        await kit.server.wait_for_streams("alice")
        await kit.ingest("alice", [kit.balance("X")])
        await kit.recv(ws)
    await kit.rest("DELETE", kit.bitmusa_headers())
    async with asyncio.timeout(5):  # the handler logs "stream closed" as it leaves the hub
        await kit.server.server.hub.wait_until(lambda: not kit.server.server.hub.connections("alice"))
    ours = [r for r in caplog.records if r.name.startswith(("userstream", "aiohttp"))]
    assert "stream closed" in [record.getMessage() for record in ours]
    secrets = [key, *kit.alice.credentials().values(), "test-admin-token"]
    rendered = [
        json.dumps({"message": record.getMessage(), **getattr(record, "userstream_fields", {})})
        for record in ours
    ]
    assert all(secret not in line for secret in secrets for line in rendered)
    paths = [
        fields["path"]
        for record in ours
        if isinstance(fields := getattr(record, "userstream_fields", None), dict) and "path" in fields
    ]
    assert f"/ws/spot/{key[:6]}..." in paths
    created = [r for r in ours if r.getMessage() == "listenKey created"]
    assert [r.userstream_fields for r in created] == [{"account": "alice", "key": key[:6] + "..."}]
