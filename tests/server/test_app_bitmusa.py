"""Bitmusa on the emulator: the listenKey REST API and the /ws/spot/{listenKey} stream, per the document."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from support.examples import BITMUSA_LISTEN_KEY, BITMUSA_ORDER, BITMUSA_WALLET

Kit = Any  # the `kit` fixture of conftest.py
Start = Callable[..., AbstractAsyncContextManager[Any]]

# The document's two payloads (BITMUSA_WALLET, BITMUSA_ORDER) as events in the JSON form of docs/events.md,
# as an operator would ingest them.
WALLET_EVENT = {
    "kind": "balance",
    "asset": "USDT",
    "free": "1132800.449",
    "locked": "80669.91",
    "timestamp": 1700703548846,
}
ORDER_EVENT = {
    "kind": "order",
    "id": "C171558199502193",
    "symbol": "XRP/USDT",
    "side": "buy",
    "type": "limit",
    "raw_type": "LIMIT_PRICE",
    "status": "open",
    "raw_status": "TRADING",
    "price": "0.5155",
    "amount": "2",
    "filled": "0",
    "cost": "0",
    "created_at": 1715581995021,
    "timestamp": 1700703548846,
}


def exact(text: str | bytes) -> object:
    return json.loads(text, parse_float=Decimal)


# --- REST ------------------------------------------------------------------------------------------------


async def test_post_returns_the_documented_shape_and_the_same_key_while_active(kit: Kit) -> None:
    status, body, headers = await kit.rest("POST", kit.bitmusa_headers())
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert isinstance(body, dict)
    assert body == {"data": {"listenKey": body["data"]["listenKey"]}, "code": 0, "message": "success"}
    assert len(body["data"]["listenKey"]) == 43
    assert await kit.create_listen_key() == body["data"]["listenKey"]
    assert await kit.create_listen_key(kit.bob) != body["data"]["listenKey"]


async def test_put_and_delete_answer_the_documented_shape(kit: Kit) -> None:
    await kit.create_listen_key()
    for method in ("PUT", "DELETE"):
        status, body, _ = await kit.rest(method, kit.bitmusa_headers())
        assert (status, body) == (200, {"code": 0, "message": "success"})


async def test_put_or_delete_without_an_active_key_is_404(kit: Kit) -> None:
    for method in ("PUT", "DELETE"):
        status, body, _ = await kit.rest(method, kit.bitmusa_headers())
        assert status == 404
        assert body == {
            "code": 404001,
            "message": "no active listenKey for this account: create one with POST",
        }


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing credentials: send 'Authorization: Bearer <auth key>' and 'x-api-key'"),
        (
            {"x-api-key": "alice-bitmusa-api"},
            "missing credentials: send 'Authorization: Bearer <auth key>' and 'x-api-key'",
        ),
        (
            {"Authorization": "Bearer alice-bitmusa-auth"},
            "missing credentials: send 'Authorization: Bearer <auth key>' and 'x-api-key'",
        ),
        (
            {"Authorization": "Basic alice-bitmusa-auth", "x-api-key": "alice-bitmusa-api"},
            "missing credentials: send 'Authorization: Bearer <auth key>' and 'x-api-key'",
        ),
        (
            {"Authorization": "Bearer wrong", "x-api-key": "alice-bitmusa-api"},
            "invalid api key or auth key",
        ),
        (
            {"Authorization": "Bearer alice-bitmusa-auth", "x-api-key": "unknown"},
            "invalid api key or auth key",
        ),
        (  # another account's auth key does not open this account
            {"Authorization": "Bearer bob-bitmusa-auth", "x-api-key": "alice-bitmusa-api"},
            "invalid api key or auth key",
        ),
    ],
)
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_missing_or_unknown_credentials_are_401(
    kit: Kit,
    method: str,
    headers: dict[str, str],
    message: str,
) -> None:
    status, body, _ = await kit.rest(method, headers)
    assert (status, body) == (401, {"code": 401001, "message": message})


async def test_header_names_are_case_insensitive(kit: Kit) -> None:
    headers = {"AUTHORIZATION": "bearer alice-bitmusa-auth", "X-Api-Key": "alice-bitmusa-api"}
    status, _, _ = await kit.rest("POST", headers)
    assert status == 200


async def test_the_ninth_request_in_a_second_is_429_and_other_accounts_are_unaffected(kit: Kit) -> None:
    statuses = [(await kit.rest("POST", kit.bitmusa_headers()))[0] for _ in range(8)]
    assert statuses == [200] * 8
    status, body, headers = await kit.rest("PUT", kit.bitmusa_headers())
    assert status == 429
    assert body == {
        "code": 429001,
        "message": "too many requests: at most 8 per second and 200 per minute per account",
    }
    assert headers["Retry-After"] == "1"
    status, _, _ = await kit.rest("POST", kit.bitmusa_headers(kit.bob))
    assert status == 200


async def test_a_route_that_is_not_documented_is_a_plain_404(kit: Kit) -> None:
    async with kit.http.get(kit.server.base_url + "/spot/other") as reply:
        assert reply.status == 404


# --- the WebSocket ---------------------------------------------------------------------------------------


async def test_events_are_text_frames_in_the_documents_exact_shape(kit: Kit) -> None:
    key = await kit.create_listen_key()
    async with kit.bitmusa_stream(key) as ws:
        await kit.server.wait_for_streams("alice")
        status, body = await kit.ingest("alice", [WALLET_EVENT, ORDER_EVENT])
        assert (status, body) == (200, {"accepted": 2})
        wallet, order = await kit.recv(ws), await kit.recv(ws)
    assert isinstance(wallet, str)
    assert isinstance(order, str)
    assert exact(wallet) == exact(BITMUSA_WALLET)
    assert exact(order) == exact(BITMUSA_ORDER)
    # numbers where the document has numbers, strings where it has strings
    assert '"price":0.5155' in order
    assert '"amount":2' in order
    assert '"free":"1132800.449"' in wallet


async def test_an_unknown_key_is_refused_at_the_handshake(kit: Kit) -> None:
    with pytest.raises(InvalidStatus) as caught:
        async with kit.bitmusa_stream(BITMUSA_LISTEN_KEY):
            pass
    assert caught.value.response.status_code == 404
    assert exact(caught.value.response.body) == {
        "code": 404001,
        "message": "listenKey does not exist or has expired",
    }


async def test_delete_closes_the_keys_streams_with_4002_and_the_key_is_dead(kit: Kit) -> None:
    key = await kit.create_listen_key()
    async with kit.bitmusa_stream(key) as first, kit.bitmusa_stream(key) as second:
        await kit.server.wait_for_streams("alice", 2)
        status, _, _ = await kit.rest("DELETE", kit.bitmusa_headers())
        assert status == 200
        assert await kit.closed_with(first) == (4002, "listenKey deleted")
        assert await kit.closed_with(second) == (4002, "listenKey deleted")
    with pytest.raises(InvalidStatus) as caught:
        async with kit.bitmusa_stream(key):
            pass
    assert caught.value.response.status_code == 404
    assert await kit.create_listen_key() != key


async def test_an_expired_key_closes_its_streams_with_4001_and_is_refused_at_the_handshake(
    start: Start,
) -> None:
    async with start(listen_key_ttl=0.3) as kit:
        key = await kit.create_listen_key()
        async with kit.bitmusa_stream(key) as ws:
            assert await kit.closed_with(ws) == (4001, "listenKey expired")
        with pytest.raises(InvalidStatus) as caught:
            async with kit.bitmusa_stream(key):
                pass
        assert caught.value.response.status_code == 404
        assert exact(caught.value.response.body) == {
            "code": 404001,
            "message": "listenKey does not exist or has expired",
        }
        status, _, _ = await kit.rest("PUT", kit.bitmusa_headers())
        assert status == 404  # a lapsed key cannot be kept alive


async def test_put_keeps_a_key_and_its_stream_alive_past_the_ttl(start: Start) -> None:
    async with start(listen_key_ttl=0.3, rate_limit_per_second=100) as kit:
        key = await kit.create_listen_key()
        async with kit.bitmusa_stream(key) as ws:
            # keep-alives every 0.1 s for 0.7 s: well past the 0.3 s the key had at creation
            for _ in range(7):
                await asyncio.sleep(0.1)
                status, _, _ = await kit.rest("PUT", kit.bitmusa_headers())
                assert status == 200
            assert await kit.create_listen_key() == key  # still the active key
            await kit.ingest("alice", [WALLET_EVENT])
            assert exact(await kit.recv(ws)) == exact(BITMUSA_WALLET)  # and the stream is still open


async def test_max_connection_age_closes_with_4000(start: Start) -> None:
    async with start(max_connection_age=0.5) as kit:
        key = await kit.create_listen_key()
        async with kit.bitmusa_stream(key) as ws:
            assert await kit.closed_with(ws) == (4000, "connection reached its maximum age")


async def test_client_frames_are_ignored(kit: Kit) -> None:
    key = await kit.create_listen_key()
    async with kit.bitmusa_stream(key) as ws:
        await ws.send('{"method": "SUBSCRIBE"}')
        await ws.send(b"\x00binary")
        await kit.ingest("alice", [WALLET_EVENT])
        assert exact(await kit.recv(ws)) == exact(BITMUSA_WALLET)


async def test_a_websocket_ping_gets_a_pong(kit: Kit) -> None:
    key = await kit.create_listen_key()
    async with kit.bitmusa_stream(key) as ws:
        pong = await ws.ping(b"are you there")
        async with asyncio.timeout(5):
            await pong


async def test_a_plain_get_on_the_stream_path_is_400(kit: Kit) -> None:
    key = await kit.create_listen_key()
    async with kit.http.get(f"{kit.server.base_url}/ws/spot/{key}") as reply:
        assert reply.status == 400
        assert exact(await reply.read()) == {"code": 400001, "message": "expected a WebSocket upgrade"}
