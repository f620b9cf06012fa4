"""Fault injection: `POST /admin/faults` and `GET /admin/faults`, `ServerHandle.inject`, the random injector.

Each fault is fired at real streams held by a third-party client (websockets) and its effect checked as the
client sees it: the close frame (or none), the silence, the refused handshake, the held frame; and each is
aimed precisely (one account, one exchange) without touching the other streams.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.protocol import State

from userstream.cli import build_parser
from userstream.errors import ConfigurationError
from userstream.events import Exchange
from userstream.server import Account, ServerConfig
from userstream.server.command import build_config
from userstream.server.config import _FAULT_KINDS
from userstream.server.faults import (
    DEFAULT_CHAOS_FAULTS,
    Fault,
    FaultError,
    FaultKind,
    RandomFaults,
    parse_fault,
)

Kit = Any  # the `kit` fixture of conftest.py
Start = Callable[..., AbstractAsyncContextManager[Any]]


@pytest.fixture
async def kit(start: Any) -> AsyncIterator[Any]:
    """conftest's `kit`, with the ledger of what was sent kept (`ServerConfig.ledger`, off by default)."""
    async with start(ledger=True) as kit:
        yield kit


ALICE_TOKEN = {"token": "alice-coinlocally-token"}
BOB_TOKEN = {"token": "bob-coinlocally-token"}
SYSTEM_NOTICE = {"uid": 24005174, "channel": "SYSTEM", "et": "close"}
FAULTS = "/admin/faults"
ADMIN_TOKEN = "test-admin-token"
ACCOUNTS = (Account(name="solo", uid=1, coinlocally_token="solo-token"),)


async def fault(kit: Kit, body: Any, token: str = ADMIN_TOKEN) -> tuple[int, Any]:
    """POST /admin/faults: (status, JSON reply)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with kit.http.post(
        kit.server.base_url + FAULTS, data=data, headers={"Authorization": f"Bearer {token}"}
    ) as reply:
        return reply.status, await reply.json()


async def faults_state(kit: Kit) -> Any:
    async with kit.http.get(
        kit.server.base_url + FAULTS, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as reply:
        assert reply.status == 200
        return await reply.json()


async def open_streams(kit: Kit) -> dict[str, Any]:
    """alice on both exchanges and bob on Coinlocally, all receiving events (the caller closes them)."""
    key = await kit.create_listen_key()
    streams = {
        "alice-bitmusa": await kit.bitmusa_stream(key),
        "alice-coinlocally": await kit.coinlocally_stream(ALICE_TOKEN),
        "bob-coinlocally": await kit.coinlocally_stream(BOB_TOKEN),
    }
    await kit.subscribe(streams["alice-coinlocally"], ALICE_TOKEN["token"])
    await kit.subscribe(streams["bob-coinlocally"], BOB_TOKEN["token"])
    await kit.server.wait_for_streams("alice", 2)
    await kit.server.wait_for_streams("bob", 1)
    return streams


async def close_all(streams: dict[str, Any]) -> None:
    for ws in streams.values():
        ws.close_timeout = 0.2  # a stalled connection never answers the close
        await ws.close()


# --- the route's contract ---------------------------------------------------------------------------------


async def test_the_fault_routes_need_the_admin_token(kit: Kit) -> None:
    assert await fault(kit, {"fault": "drop"}, token="wrong") == (
        401,
        {"error": "admin token required: send 'Authorization: Bearer <token>'"},
    )
    async with kit.http.get(kit.server.base_url + FAULTS) as reply:
        assert reply.status == 401
    assert kit.server.faults.fired == {}


@pytest.mark.parametrize(
    ("body", "status", "reply"),
    [
        (b"[1]", 400, {"error": "invalid fault: Expected `object`, got `array`"}),
        (b"{", 400, {"error": "the body must be a JSON object"}),
        (b" " * 5000, 413, {"error": "the body exceeds 4096 bytes"}),
        (
            {"fault": "explode"},
            400,
            {
                "error": "unknown fault 'explode'; known: drop, stall, expire_key, delete_key, system_close, "
                "refuse, delay, clear",
                "field": "fault",
            },
        ),
        (
            {"fault": "drop", "colour": "red"},
            400,
            {"error": "invalid fault: Object contains unknown field `colour`"},
        ),
        (
            {"fault": "drop", "exchange": "binance"},
            400,
            {
                "error": "unknown exchange 'binance': 'bitmusa' or 'coinlocally' (or leave it out for both)",
                "field": "exchange",
            },
        ),
        (
            {"fault": "refuse"},
            400,
            {"error": "'seconds' must be a number in (0, 3600], not None", "field": "seconds"},
        ),
        (
            {"fault": "delay", "seconds": 1},
            400,
            {"error": "'delay_ms' must be a number in (0, 60000], not None", "field": "delay_ms"},
        ),
        (
            {"fault": "drop", "seconds": 1},
            400,
            {"error": "'seconds' applies to refuse and delay, not drop", "field": "seconds"},
        ),
        (
            {"fault": "refuse", "seconds": 1, "delay_ms": 5},
            400,
            {"error": "'delay_ms' applies to delay, not refuse", "field": "delay_ms"},
        ),
        (
            {"fault": "expire_key", "exchange": "coinlocally"},
            400,
            {"error": "expire_key: listenKeys are Bitmusa's, Coinlocally has none", "field": "exchange"},
        ),
        (
            {"fault": "stall", "account": "zed"},
            404,
            {"error": "unknown account 'zed'", "field": "account"},
        ),
        (
            {"fault": "refuse", "seconds": 3601},
            400,
            {"error": "'seconds' must be a number in (0, 3600], not 3601", "field": "seconds"},
        ),
    ],
)
async def test_a_bad_fault_is_refused_naming_what_is_wrong(
    kit: Kit, body: Any, status: int, reply: dict[str, Any]
) -> None:
    assert await fault(kit, body) == (status, reply)
    assert kit.server.faults.fired == {}


def test_parse_fault_reads_every_field() -> None:
    body = b'{"fault":"delay","account":"alice","exchange":"coinlocally","seconds":2.5,"delay_ms":150}'
    assert parse_fault(body) == Fault(FaultKind.DELAY, "alice", Exchange.COINLOCALLY, 2.5, 150)
    with pytest.raises(FaultError) as caught:
        parse_fault(b'{"fault":"drop","account":7}')
    assert (caught.value.status, caught.value.field) == (400, "account")


# --- each fault, aimed -------------------------------------------------------------------------------------


async def test_drop_aims_at_one_account_on_one_exchange(kit: Kit) -> None:
    streams = await open_streams(kit)
    status, reply = await fault(kit, {"fault": "drop", "account": "alice", "exchange": "bitmusa"})
    assert (status, reply) == (
        200,
        {"fault": "drop", "account": "alice", "exchange": "bitmusa", "connections": 1, "keys": 0},
    )
    assert await kit.closed_with(streams["alice-bitmusa"]) == (None, None)  # no close frame: an abort
    assert streams["alice-coinlocally"].state is State.OPEN
    assert streams["bob-coinlocally"].state is State.OPEN
    (record,) = kit.server.sent.connections("alice", Exchange.BITMUSA)
    await kit.server.server.hub.wait_until(lambda: record.ending is not None)
    assert (record.ending.value, record.faults) == ("aborted", ["drop"])
    await close_all(streams)


async def test_stall_without_an_account_silences_every_stream_of_the_exchange(kit: Kit) -> None:
    streams = await open_streams(kit)
    status, reply = await fault(kit, {"fault": "stall", "exchange": "coinlocally"})
    assert (status, reply["connections"]) == (200, 2)
    await kit.ingest("alice", [kit.balance("USDT")])
    await kit.ingest("bob", [kit.balance("USDT")])
    assert (await kit.recv_json(streams["alice-bitmusa"]))["data"]["asset"] == "USDT"  # not aimed at
    await streams["bob-coinlocally"].send('{"ping": 1}')
    with pytest.raises(TimeoutError):  # silence cannot be observed without a (short, bounded) wait
        async with asyncio.timeout(0.3):
            await streams["bob-coinlocally"].recv()
    assert streams["alice-coinlocally"].state is State.OPEN
    assert kit.server.streams("alice") == 1
    await close_all(streams)


@pytest.mark.parametrize("stream", ["alice-bitmusa", "alice-coinlocally"])
async def test_a_stalled_connection_does_not_answer_a_close_frame_either(kit: Kit, stream: str) -> None:
    """A stall is a black hole: the client's close frame gets no answer (the client gives up, as it would
    with a dead peer), so a client cannot mistake a stalled connection for one that closed cleanly."""
    streams = await open_streams(kit)
    await kit.server.inject("stall", account="alice")
    ws = streams[stream]
    ws.close_timeout = 0.2
    await ws.close()
    assert ws.close_exc.rcvd is None  # no close frame came back
    await close_all(streams)


async def test_system_close_on_coinlocally_sends_the_notice_and_leaves_bitmusa_open(kit: Kit) -> None:
    streams = await open_streams(kit)
    status, reply = await fault(kit, {"fault": "system_close", "account": "alice", "exchange": "coinlocally"})
    assert (status, reply["connections"]) == (200, 1)
    assert await kit.drain_until_closed(streams["alice-coinlocally"]) == [SYSTEM_NOTICE]
    assert await kit.closed_with(streams["alice-coinlocally"]) == (1001, "closed by the exchange")
    assert streams["alice-bitmusa"].state is State.OPEN
    await close_all(streams)


@pytest.mark.parametrize(
    ("kind", "code", "reason"),
    [("expire_key", 4001, "listenKey expired"), ("delete_key", 4002, "listenKey deleted")],
)
async def test_key_faults_close_the_bitmusa_streams_and_end_the_key(
    kit: Kit, kind: str, code: int, reason: str
) -> None:
    streams = await open_streams(kit)
    status, reply = await fault(kit, {"fault": kind, "account": "alice"})
    assert (status, reply) == (
        200,
        {"fault": kind, "account": "alice", "exchange": None, "connections": 1, "keys": 1},
    )
    assert await kit.closed_with(streams["alice-bitmusa"]) == (code, reason)
    assert kit.server.active_listen_key("alice") is None
    (record,) = kit.server.sent.connections("alice", Exchange.BITMUSA)
    await kit.server.server.hub.wait_until(lambda: record.ending is not None)
    assert (record.ending.value, record.close_code, record.faults) == ("server_close", code, [kind])
    assert streams["alice-coinlocally"].state is State.OPEN
    assert (await fault(kit, {"fault": kind, "account": "alice"}))[1]["keys"] == 0  # no key left to end
    await close_all(streams)


async def test_refuse_answers_503_to_new_streams_of_the_target_until_cleared(kit: Kit) -> None:
    status, reply = await fault(
        kit, {"fault": "refuse", "account": "alice", "exchange": "coinlocally", "seconds": 60}
    )
    assert (status, reply["seconds_left"], reply["connections"]) == (200, 60, 0)
    with pytest.raises(InvalidStatus) as refused:
        await kit.coinlocally_stream(ALICE_TOKEN)
    response = refused.value.response
    assert response.status_code == 503
    assert response.headers["Retry-After"] in ("59", "60")
    assert json.loads(response.body) == {
        "event": "error",
        "code": 503001,
        "message": "service unavailable: new streams are refused for now (fault injection)",
    }
    bob = await kit.coinlocally_stream(BOB_TOKEN)  # another account: served
    bitmusa = await kit.bitmusa_stream(await kit.create_listen_key())  # another exchange: served
    assert (await fault(kit, {"fault": "clear", "account": "alice"}))[0] == 200
    alice = await kit.coinlocally_stream(ALICE_TOKEN)
    assert await kit.recv(alice) == "connect success"
    for ws in (bob, bitmusa, alice):
        await ws.close()


async def test_refuse_on_bitmusa_answers_in_bitmusa_s_error_shape(kit: Kit) -> None:
    key = await kit.create_listen_key()
    await kit.server.inject("refuse", exchange="bitmusa", seconds=30)
    with pytest.raises(InvalidStatus) as refused:
        await kit.bitmusa_stream(key)
    assert refused.value.response.status_code == 503
    assert json.loads(refused.value.response.body) == {
        "code": 503001,
        "message": "service unavailable: new streams are refused for now (fault injection)",
    }


async def test_delay_holds_every_frame_of_the_target_and_of_its_new_streams(kit: Kit) -> None:
    streams = await open_streams(kit)
    status, reply = await fault(
        kit, {"fault": "delay", "account": "alice", "exchange": "bitmusa", "seconds": 60, "delay_ms": 250}
    )
    assert (status, reply["connections"], reply["delay_ms"]) == (200, 1, 250)
    sent_at = time.monotonic()
    await kit.ingest("alice", [kit.balance("USDT")])
    assert (await kit.recv_json(streams["alice-bitmusa"]))["data"]["asset"] == "USDT"
    # a lower bound the server guarantees by construction (no upper bound is asserted: timing is not the
    # subject), and the other exchange's stream of the same account is not held at all
    assert time.monotonic() - sent_at >= 0.25
    frame = await kit.recv(streams["alice-coinlocally"])
    assert json.loads(gzip.decompress(frame))["B"][0]["a"] == "USDT"
    newcomer = await kit.bitmusa_stream(await kit.create_listen_key())
    await kit.server.wait_for_streams("alice", 3)
    sent_at = time.monotonic()
    await kit.ingest("alice", [kit.balance("BTC")])
    assert (await kit.recv_json(newcomer))["data"]["asset"] == "BTC"
    assert time.monotonic() - sent_at >= 0.25
    state = await faults_state(kit)
    (window,) = state["active"]
    assert (window["fault"], window["account"], window["exchange"], window["delay_ms"]) == (
        "delay",
        "alice",
        "bitmusa",
        250,
    )
    assert 0 < window["seconds_left"] <= 60
    await newcomer.close()
    await close_all(streams)


async def test_get_faults_counts_what_fired_and_keeps_the_latest(kit: Kit) -> None:
    await kit.server.inject("drop", account="bob")
    await kit.server.inject(FaultKind.STALL)
    await kit.server.inject("refuse", account="alice", exchange=Exchange.BITMUSA, seconds=5)
    state = await faults_state(kit)
    assert state["fired"] == {
        "drop": 1,
        "stall": 1,
        "expire_key": 0,
        "delete_key": 0,
        "system_close": 0,
        "refuse": 1,
        "delay": 0,
        "clear": 0,
    }
    assert [entry["fault"] for entry in state["recent"]] == ["drop", "stall", "refuse"]
    assert [(entry["account"], entry["exchange"]) for entry in state["recent"]] == [
        ("bob", None),
        (None, None),
        ("alice", "bitmusa"),
    ]
    assert [window["fault"] for window in state["active"]] == ["refuse"]


# --- random faults -----------------------------------------------------------------------------------------


def test_random_faults_are_reproducible_from_the_seed_and_aimed_sensibly(kit_free_controller: Any) -> None:
    def schedule(seed: int) -> list[tuple[Fault, float]]:
        chaos = RandomFaults(kit_free_controller, ["alice", "bob"], rate=2.0, seed=seed, max_seconds=2.0)
        return [(chaos.next_fault(), chaos.next_interval()) for _ in range(300)]

    first, again, other = schedule(7), schedule(7), schedule(8)
    assert first == again
    assert first != other
    faults = [item for item, _ in first]
    assert {item.kind for item in faults} == set(DEFAULT_CHAOS_FAULTS)
    assert all(item.exchange is Exchange.BITMUSA for item in faults if item.kind.bitmusa_only)
    assert all(0 < (item.seconds or 0) <= 2.0 for item in faults if item.kind.timed)
    assert all(0 < (item.delay_ms or 0) <= 300 for item in faults if item.kind is FaultKind.DELAY)
    assert {item.account for item in faults} == {"alice", "bob", None}


@pytest.fixture
def kit_free_controller() -> Any:
    return object()  # next_fault never touches the controller


async def test_chaos_rate_fires_random_faults_while_the_server_runs(start: Start) -> None:
    async with start(chaos_rate=200.0, chaos_faults=("refuse",), seed=3) as kit:
        async with asyncio.timeout(5):
            while kit.server.faults.fired[FaultKind.REFUSE] < 5:  # noqa: ASYNC110 - a plain counter
                await asyncio.sleep(0.01)
        assert set(kit.server.faults.fired) == {FaultKind.REFUSE}


def test_the_config_knows_exactly_the_fault_kinds() -> None:
    assert {kind.value for kind in FaultKind} == _FAULT_KINDS
    with pytest.raises(ConfigurationError, match="unknown fault 'explode'"):
        ServerConfig(accounts=ACCOUNTS, chaos_faults=("explode",))
    with pytest.raises(ConfigurationError, match="chaos rate must be positive"):
        ServerConfig(accounts=ACCOUNTS, chaos_rate=0)


def test_serve_flags_turn_on_random_faults() -> None:
    def parse(*argv: str) -> Any:
        return build_parser().parse_args(["serve", "--admin-token", "t", *argv])

    config, _ = build_config(parse("--chaos", "0.5", "--chaos-faults", "drop, stall", "--seed", "4"))
    assert (config.chaos_rate, config.chaos_faults, config.seed) == (0.5, ("drop", "stall"), 4)
    config, _ = build_config(parse())
    assert (config.chaos_rate, config.chaos_faults) == (None, ())
    with pytest.raises(ConfigurationError, match="unknown fault 'explode'"):
        build_config(parse("--chaos", "1", "--chaos-faults", "explode"))
