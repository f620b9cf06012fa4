"""Coinlocally on the emulator: handshake, sub, gzip frames, ping/pong, heartbeat and the SYSTEM notice."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from support.examples import (
    COINLOCALLY_ACCOUNT_POSITION,
    COINLOCALLY_BALANCE_JSON,
    COINLOCALLY_EXECUTION_REPORT,
    COINLOCALLY_ORDER_JSON,
    COINLOCALLY_PING,
    COINLOCALLY_SYSTEM_CLOSE,
)

Kit = Any  # the `kit` fixture of conftest.py (test modules cannot import conftest's types)
Start = Callable[..., AbstractAsyncContextManager[Any]]

TOKEN = {"token": "alice-coinlocally-token"}
API_KEY = {"api-key": "alice-coinlocally-api"}
SYSTEM_NOTICE = json.loads(COINLOCALLY_SYSTEM_CLOSE)  # the document's, for alice

# The document's two events in the JSON form of docs/events.md, as an operator ingests them: without what
# ingest stamps or defaults (exchange, account, source) or derives (total, remaining).
IMPLIED = {"exchange", "account", "source", "total", "remaining"}
BALANCE_EVENT = {key: value for key, value in COINLOCALLY_BALANCE_JSON.items() if key not in IMPLIED}
ORDER_EVENT = {key: value for key, value in COINLOCALLY_ORDER_JSON.items() if key not in IMPLIED}
# What the normalized event does not carry, and so the server cannot reproduce (docs/server.md): an
# account update's u (update time) is rendered as its E; an execution report's T (transaction time) as
# its E, x (execution type) as TRADE when the update has a fill, Q (quote order quantity) as "0".
NOT_CARRIED = {"T": 1745389508472, "x": "TRADE", "Q": "0"}


def exact(text: str | bytes) -> Any:
    return json.loads(text, parse_float=Decimal)


async def test_connect_success_then_sub_success_as_text_frames(kit: Kit) -> None:
    async with kit.coinlocally_stream(TOKEN) as ws:
        assert await kit.recv(ws) == "connect success"
        await ws.send('{"event":"sub","token":"alice-coinlocally-token"}')
        assert await kit.recv(ws) == "sub success"


async def test_events_are_gzip_binary_frames_in_the_documents_shape(kit: Kit) -> None:
    async with kit.coinlocally_stream(TOKEN) as ws:
        await kit.subscribe(ws, TOKEN["token"])
        assert await kit.ingest("alice", [BALANCE_EVENT, ORDER_EVENT]) == (200, {"accepted": 2})
        position, report = await kit.recv(ws), await kit.recv(ws)
    assert isinstance(position, bytes)
    assert isinstance(report, bytes)
    assert position[:2] == b"\x1f\x8b"  # gzip
    position_json, report_json = exact(gzip.decompress(position)), exact(gzip.decompress(report))
    assert position_json == {**exact(COINLOCALLY_ACCOUNT_POSITION), "u": 1564034571105}
    expected_report = exact(COINLOCALLY_EXECUTION_REPORT)
    assert list(report_json) == list(expected_report)  # every key, in the document's order
    carried = {key: value for key, value in expected_report.items() if key not in NOT_CARRIED}
    assert {key: report_json[key] for key in carried} == carried
    assert {key: report_json[key] for key in NOT_CARRIED} == NOT_CARRIED


async def test_balances_of_one_moment_share_one_frame(kit: Kit) -> None:
    async with kit.coinlocally_stream(TOKEN) as ws:
        await kit.subscribe(ws, TOKEN["token"])
        batch = [kit.balance("BTC", "1", timestamp=5), kit.balance("USDT", "2", timestamp=5)]
        await kit.ingest("alice", [*batch, kit.balance("BTC", "3", timestamp=6)])
        assert await kit.recv_json(ws) == {
            "e": "outboundAccountPosition",
            "E": 5,
            "u": 5,
            "B": [{"a": "BTC", "f": "1", "l": "0"}, {"a": "USDT", "f": "2", "l": "0"}],
        }
        assert await kit.recv_json(ws) == {
            "e": "outboundAccountPosition",
            "E": 6,
            "u": 6,
            "B": [{"a": "BTC", "f": "3", "l": "0"}],
        }


async def test_the_api_key_header_works_with_the_api_key_as_sub_token(kit: Kit) -> None:
    async with kit.coinlocally_stream(API_KEY) as ws:
        await kit.subscribe(ws, API_KEY["api-key"])
        await kit.ingest("alice", [BALANCE_EVENT])
        assert (await kit.recv_json(ws))["B"] == [{"a": "ETH", "f": "10000.000000", "l": "0.000000"}]


async def test_nothing_is_pushed_before_the_sub(kit: Kit) -> None:
    async with kit.coinlocally_stream(TOKEN) as ws:
        assert await kit.recv(ws) == "connect success"
        await kit.ingest("alice", [kit.balance("BEFORE")])
        await ws.send(json.dumps({"event": "sub", "token": TOKEN["token"]}))
        assert await kit.recv(ws) == "sub success"  # the event ingested before the sub never came
        await kit.ingest("alice", [kit.balance("AFTER")])
        assert (await kit.recv_json(ws))["B"][0]["a"] == "AFTER"


async def test_a_wrong_sub_token_gets_an_error_then_close_4004_without_system_notice(kit: Kit) -> None:
    async with kit.coinlocally_stream(TOKEN) as ws:
        assert await kit.recv(ws) == "connect success"
        await ws.send(json.dumps({"event": "sub", "token": "bob-coinlocally-token"}))
        assert await kit.drain_until_closed(ws) == [
            {
                "event": "error",
                "code": 401002,
                "message": "sub rejected: the token does not match this connection's credential",
            }
        ]
        assert await kit.closed_with(ws) == (4004, "sub rejected")


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing credentials: send exactly one of the 'token' or 'api-key' headers"),
        (
            {"token": "alice-coinlocally-token", "api-key": "alice-coinlocally-api"},
            "missing credentials: send exactly one of the 'token' or 'api-key' headers",
        ),
        ({"token": "nobody"}, "invalid token"),
        ({"api-key": "nobody"}, "invalid api-key"),
        ({"token": "alice-coinlocally-api"}, "invalid token"),  # an api key is not a token
    ],
)
async def test_bad_handshake_credentials_are_refused_with_401(
    kit: Kit, headers: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidStatus) as caught:
        async with kit.coinlocally_stream(headers):
            pass
    assert caught.value.response.status_code == 401
    assert exact(caught.value.response.body) == {"event": "error", "code": 401001, "message": message}


async def test_ping_gets_pong_with_the_servers_time(kit: Kit) -> None:
    async with kit.coinlocally_stream(TOKEN) as ws:
        assert await kit.recv(ws) == "connect success"
        before = time.time_ns() // 1_000_000
        await ws.send(COINLOCALLY_PING)
        reply = await kit.recv(ws)
        after = time.time_ns() // 1_000_000
    assert isinstance(reply, str)
    pong = exact(reply)
    assert list(pong) == ["pong"]
    assert before <= pong["pong"] <= after


async def test_a_gzipped_client_frame_is_understood(kit: Kit) -> None:
    async with kit.coinlocally_stream(TOKEN) as ws:
        assert await kit.recv(ws) == "connect success"
        await ws.send(gzip.compress(b'{"event":"sub","token":"alice-coinlocally-token"}'))
        assert await kit.recv(ws) == "sub success"


async def test_unknown_client_frames_are_ignored(kit: Kit) -> None:
    async with kit.coinlocally_stream(TOKEN) as ws:
        await kit.subscribe(ws, TOKEN["token"])
        for frame in ("hello", '{"event":"unsub"}', "[1,2]", '{"ping":"soon"}', b"\x1f\x8b\x00"):
            await ws.send(frame)
        await kit.ingest("alice", [kit.balance("OK")])
        assert (await kit.recv_json(ws))["B"][0]["a"] == "OK"


async def test_no_ping_within_the_heartbeat_timeout_sends_the_system_notice_then_closes_4003(
    start: Start,
) -> None:
    async with start(heartbeat_timeout=0.3) as kit, kit.coinlocally_stream(TOKEN) as ws:
        await kit.subscribe(ws, TOKEN["token"])
        assert await kit.drain_until_closed(ws) == [SYSTEM_NOTICE]
        assert await kit.closed_with(ws) == (4003, "no ping within 0.3 s")


async def test_the_system_notice_is_a_gzip_binary_frame(start: Start) -> None:
    async with start(heartbeat_timeout=0.3) as kit, kit.coinlocally_stream(TOKEN) as ws:
        await kit.subscribe(ws, TOKEN["token"])
        notice = await kit.recv(ws)
    assert isinstance(notice, bytes)
    assert exact(gzip.decompress(notice)) == SYSTEM_NOTICE


async def test_pings_keep_the_connection_open_past_the_heartbeat_timeout(start: Start) -> None:
    async with start(heartbeat_timeout=0.3) as kit, kit.coinlocally_stream(TOKEN) as ws:
        await kit.subscribe(ws, TOKEN["token"])
        for n in range(7):  # 0.7 s of pings every 0.1 s
            await asyncio.sleep(0.1)
            await ws.send(json.dumps({"ping": n}))
            assert list(await kit.recv_json(ws)) == ["pong"]
        await kit.ingest("alice", [kit.balance("STILL")])
        assert (await kit.recv_json(ws))["B"][0]["a"] == "STILL"


async def test_max_connection_age_sends_the_system_notice_then_closes_4000(start: Start) -> None:
    async with start(max_connection_age=0.5) as kit, kit.coinlocally_stream(TOKEN) as ws:
        await kit.subscribe(ws, TOKEN["token"])
        assert await kit.drain_until_closed(ws) == [SYSTEM_NOTICE]
        assert await kit.closed_with(ws) == (4000, "connection reached its maximum age")


async def test_an_unsubscribed_connection_also_hears_the_heartbeat_close(start: Start) -> None:
    async with start(heartbeat_timeout=0.3) as kit, kit.coinlocally_stream(TOKEN) as ws:
        assert await kit.drain_until_closed(ws) == ["connect success", SYSTEM_NOTICE]
        assert await kit.closed_with(ws) == (4003, "no ping within 0.3 s")


async def test_an_oversized_client_frame_closes_with_1009(kit: Kit) -> None:
    async with kit.coinlocally_stream(TOKEN) as ws:
        assert await kit.recv(ws) == "connect success"
        await ws.send("x" * (64 * 1024 + 1))
        assert (await kit.closed_with(ws))[0] == 1009
