"""POST /admin/events and the handle's ingest: whole batches, in order, to one account's streams only."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from typing import Any

import pytest

from userstream.events import BalanceUpdate, Exchange
from userstream.server import IngestError
from userstream.server.ingest import coerce_events

Kit = Any  # the `kit` fixture of conftest.py
Start = Callable[..., AbstractAsyncContextManager[Any]]

ALICE_TOKEN = {"token": "alice-coinlocally-token"}
BOB_TOKEN = {"token": "bob-coinlocally-token"}


async def test_admin_route_requires_the_admin_token(kit: Kit) -> None:
    expected = {"error": "admin token required: send 'Authorization: Bearer <token>'"}
    assert await kit.ingest("alice", [], token="wrong") == (401, expected)
    async with kit.http.post(kit.server.base_url + "/admin/events", json={}) as reply:
        assert (reply.status, await reply.json()) == (401, expected)
    assert await kit.ingest("alice", []) == (200, {"accepted": 0})


async def test_two_accounts_never_see_each_others_events_in_either_dialect(kit: Kit) -> None:
    alice_key = await kit.create_listen_key(kit.alice)
    bob_key = await kit.create_listen_key(kit.bob)
    async with (
        kit.bitmusa_stream(alice_key) as alice_b,
        kit.bitmusa_stream(bob_key) as bob_b,
        kit.coinlocally_stream(ALICE_TOKEN) as alice_c,
        kit.coinlocally_stream(BOB_TOKEN) as bob_c,
    ):
        await kit.subscribe(alice_c, ALICE_TOKEN["token"])
        await kit.subscribe(bob_c, BOB_TOKEN["token"])
        await kit.ingest("alice", [kit.balance("ALICE1"), kit.order("alice-order")])
        await kit.ingest("bob", [kit.balance("BOB1")])
        await kit.ingest("alice", [kit.balance("ALICE2")])
        await kit.ingest("bob", [kit.balance("BOB2")])
        # Each account's streams get exactly its own events; had any of the other's arrived, they would
        # have come before the second event (ingest order), and the sequence would differ.
        assert [await kit.recv_json(alice_b) for _ in range(3)] == [
            wallet("ALICE1"),
            {**json.loads(_bitmusa_order("alice-order"), parse_float=Decimal)},
            wallet("ALICE2"),
        ]
        assert [await kit.recv_json(bob_b) for _ in range(2)] == [wallet("BOB1"), wallet("BOB2")]
        alice_frames = [await kit.recv_json(alice_c) for _ in range(3)]
        assert [frame["e"] for frame in alice_frames] == [
            "outboundAccountPosition",
            "executionReport",
            "outboundAccountPosition",
        ]
        assert [alice_frames[0]["B"][0]["a"], alice_frames[1]["i"], alice_frames[2]["B"][0]["a"]] == [
            "ALICE1",
            "alice-order",
            "ALICE2",
        ]
        assert [(await kit.recv_json(bob_c))["B"][0]["a"] for _ in range(2)] == ["BOB1", "BOB2"]


async def test_ingest_order_is_kept_across_many_events_and_batches(kit: Kit) -> None:
    key = await kit.create_listen_key()
    async with kit.bitmusa_stream(key) as bitmusa, kit.coinlocally_stream(ALICE_TOKEN) as coinlocally:
        await kit.subscribe(coinlocally, ALICE_TOKEN["token"])
        ids = [str(n) for n in range(1500)]
        for start in range(0, len(ids), 500):
            status, body = await kit.ingest("alice", [kit.order(i) for i in ids[start : start + 500]])
            assert (status, body) == (200, {"accepted": 500})
        assert [(await kit.recv_json(bitmusa))["data"]["orderId"] for _ in ids] == ids
        assert [(await kit.recv_json(coinlocally))["i"] for _ in ids] == ids


async def test_every_stream_of_the_account_gets_every_event(kit: Kit) -> None:
    key = await kit.create_listen_key()
    async with kit.bitmusa_stream(key) as first, kit.bitmusa_stream(key) as second:
        await kit.server.wait_for_streams("alice", 2)
        await kit.ingest("alice", [kit.balance("X")])
        assert await kit.recv_json(first) == await kit.recv_json(second) == wallet("X")


async def test_an_unknown_account_is_404_naming_it(kit: Kit) -> None:
    assert await kit.ingest("zed", [kit.balance("X")]) == (
        404,
        {"error": "unknown account 'zed'", "account": "zed"},
    )


@pytest.mark.parametrize(
    ("bad_event", "field", "message"),
    [
        (
            {"kind": "balance", "asset": "X", "free": "abc", "locked": "0"},
            "$.free",
            "invalid event: Invalid decimal string - at `$.free`",
        ),
        (
            {"kind": "balance", "asset": "X", "free": "1"},
            "$.locked",
            "invalid event: Object missing required field `locked`",
        ),
        ({"kind": "trade", "asset": "X"}, "$.kind", "invalid event: Invalid value 'trade' - at `$.kind`"),
        (
            {"kind": "balance", "asset": "X", "free": "1", "locked": "0", "colour": 1},
            "$.colour",
            "invalid event: Object contains unknown field `colour`",
        ),
        (
            {"kind": "balance", "asset": "X", "free": "1", "locked": "0", "timestamp": -1},
            "$.timestamp",
            "$.timestamp: expected integer milliseconds",
        ),
        ("not an object", None, "expected a balance or order event, not str"),
    ],
)
async def test_a_malformed_event_is_422_naming_index_and_field_and_nothing_is_delivered(
    kit: Kit, bad_event: Any, field: str | None, message: str
) -> None:
    key = await kit.create_listen_key()
    async with kit.bitmusa_stream(key) as ws:
        await kit.server.wait_for_streams("alice")
        status, body = await kit.ingest("alice", [kit.balance("A"), kit.balance("B"), bad_event])
        assert status == 422
        expected = {"error": f"event 2: {message}", "account": "alice", "index": 2, "field": field}
        assert body == {key: value for key, value in expected.items() if value is not None}
        await kit.ingest("alice", [kit.balance("MARKER")])
        assert await kit.recv_json(ws) == wallet("MARKER")  # A and B were never sent


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"not json", {"error": "the body must be a JSON object"}),
        (b"[]", {"error": "the body must be a JSON object"}),
        (b'{"events": []}', {"error": "'account' must be an account name (a string)", "field": "$.account"}),
        (b'{"account": "alice"}', {"error": "'events' must be a list of events", "field": "$.events"}),
        (
            b'{"account": "alice", "events": {}}',
            {"error": "'events' must be a list of events", "field": "$.events"},
        ),
        (
            b'{"account": "alice", "events": [], "extra": 1}',
            {"error": "unknown key 'extra' in the body", "field": "$.extra"},
        ),
    ],
)
async def test_a_malformed_body_is_400(kit: Kit, body: bytes, expected: dict[str, Any]) -> None:
    async with kit.http.post(
        kit.server.base_url + "/admin/events",
        data=body,
        headers={"Authorization": "Bearer test-admin-token", "Content-Type": "application/json"},
    ) as reply:
        assert (reply.status, await reply.json()) == (400, expected)


async def test_the_handle_ingests_through_the_same_validation(kit: Kit) -> None:
    key = await kit.create_listen_key()
    async with kit.bitmusa_stream(key) as ws:
        await kit.server.wait_for_streams("alice")
        with pytest.raises(IngestError) as caught:
            await kit.server.ingest("alice", [kit.balance("A"), {"kind": "balance"}])
        assert (caught.value.status, caught.value.index, caught.value.account) == (422, 1, "alice")
        with pytest.raises(IngestError) as unknown:
            await kit.server.ingest("zed", [])
        assert (unknown.value.status, unknown.value.account) == (404, "zed")
        event = BalanceUpdate(
            exchange=Exchange.COINLOCALLY,
            account="someone-else",
            timestamp=1,
            asset="OBJ",
            free=Decimal("1.50"),
            locked=Decimal(0),
        )
        assert await kit.server.ingest("alice", [event]) == 1
        assert await kit.recv_json(ws) == {
            "data": {"asset": "OBJ", "free": "1.50", "locked": "0"},
            "stream": "spot_wallet",
            "eventTime": 1,
        }


def test_events_are_stamped_with_the_accounts_name_and_a_missing_timestamp_with_now() -> None:
    (from_json, from_object) = coerce_events(
        [
            {"kind": "balance", "asset": "X", "free": "1", "locked": "0", "account": "mallory"},
            BalanceUpdate(
                exchange=Exchange.BITMUSA,
                account="mallory",
                timestamp=5,
                asset="Y",
                free=Decimal(1),
                locked=Decimal(0),
            ),
        ],
        account="alice",
        now_ms=1234,
    )
    assert (from_json.account, from_json.timestamp) == ("alice", 1234)
    assert (from_object.account, from_object.timestamp) == ("alice", 5)


async def test_a_slow_consumer_is_closed_with_4005_instead_of_growing_memory(start: Start) -> None:
    async with start(max_send_queue=10) as kit:
        key = await kit.create_listen_key()
        async with kit.bitmusa_stream(key) as ws:
            await kit.server.wait_for_streams("alice")
            # one batch of 11 is queued at once, before the writer can send any: the 11th overflows
            await kit.ingest("alice", [kit.balance(str(n)) for n in range(11)])
            assert await kit.drain_until_closed(ws) == []
            assert await kit.closed_with(ws) == (4005, "send buffer full: the client is not reading")


def wallet(asset: str) -> dict[str, Any]:
    return {
        "data": {"asset": asset, "free": "1", "locked": "0"},
        "stream": "spot_wallet",
        "eventTime": 1700703548846,
    }


def _bitmusa_order(order_id: str) -> str:
    return json.dumps(
        {
            "data": {
                "orderId": order_id,
                "symbol": "BTC/USDT",
                "direction": "BUY",
                "type": "LIMIT_PRICE",
                "price": 100,
                "amount": 1,
                "tradedAmount": 0,
                "value": 0,
                "status": "TRADING",
                "createdTime": None,
                "canceledTime": None,
                "completedTime": None,
            },
            "stream": "spot_order",
            "eventTime": 1700703548846,
        }
    )


async def test_a_body_over_the_limit_is_413(start: Start) -> None:
    async with start(max_ingest_body=1000) as kit:
        status, body = await kit.ingest("alice", [kit.balance(str(n)) for n in range(50)])
    assert (status, body) == (413, {"error": "the body exceeds 1000 bytes"})
