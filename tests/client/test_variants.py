"""The client's key scenarios against `userstream serve` in every variant (issue 12, section 7).

Each test here is run by conftest.py's `pytest_generate_tests` once per variant set (ours, then each variant
of `userstream.server.variants.VARIANTS` alone) and per exchange the set concerns, so a client that
understands only our own shapes cannot pass. `KNOWN_GAPS` lists the combinations today's client does not
handle: they are xfail(strict=True), so each must fail until the client learns it (then the entry must go).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from typing import Any

import pytest

from userstream.client import State, connect
from userstream.errors import AuthenticationError
from userstream.events import BalanceUpdate, Event, Exchange, OrderStatus
from userstream.server import Account
from userstream.state import AccountSnapshot, AccountState

Env = Any  # conftest.Env
Lab = Callable[..., AbstractAsyncContextManager[Any]]
Recorder = Any  # conftest.Recorder

#: (scenario, variant or "ours", exchange) -> why today's client fails it. xfail(strict=True). Empty since
#: branch refusals (issue 12 section 2): the Coinlocally refusal shapes and Bitmusa's own expiry close code
#: are understood.
KNOWN_GAPS: dict[tuple[str, str, str], str] = {}

# Values that make every number variant show: exponent notation below 0.001 and from 10^7.
_TINY_BALANCE = {
    "kind": "balance",
    "asset": "BTC",
    "free": "0.00002",
    "locked": "12345678.9",
    "timestamp": 1_700_703_548_100,
}


def tiny_balance(exchange: str) -> BalanceUpdate:
    return BalanceUpdate(
        exchange=Exchange(exchange),
        account="alice",
        timestamp=1_700_703_548_100,
        asset="BTC",
        free=Decimal("0.00002"),
        locked=Decimal("12345678.9"),
    )


async def deliver_after(env: Env, stream: Any, exchange: str, first: int) -> list[Event]:
    """Ingest a numbered balance, an order and the tiny balance once the stream is live again; return what
    the client delivered for them."""
    await env.until_streaming()
    await env.ingest([env.balance(first), env.order(first + 1), _TINY_BALANCE])
    return list(await env.take(stream, 3))


def expected_after(env: Env, exchange: str, first: int) -> list[Event]:
    return [
        env.expected_balance(first, exchange),
        env.expected_order(first + 1, exchange),
        tiny_balance(exchange),
    ]


@pytest.mark.variant_scenario("live")
async def test_live(variant_lab: Lab, exchange: str, recorder: Recorder) -> None:
    async with variant_lab() as env, connect(exchange, **env.options(exchange), on_status=recorder) as stream:
        events = await deliver_after(env, stream, exchange, 1)
        # a few hundred ms more: a server's own pings (if the variant sends them) are answered meanwhile
        await asyncio.sleep(0.5)
        await env.ingest([env.balance(9)])
        events += await env.take(stream, 1)
    assert events == [*expected_after(env, exchange, 1), env.expected_balance(9, exchange)]
    assert recorder.of(State.DISCONNECTED) == []
    expected_states = ["connecting", "connected", "subscribed"] if exchange == "coinlocally" else None
    assert recorder.states() == (expected_states or ["connecting", "connected"])


@pytest.mark.variant_scenario("refused credential")
async def test_refused_credential(
    variant_lab: Lab, exchange: str, recorder: Recorder, request: pytest.FixtureRequest
) -> None:
    wrong = "wrong-credential-SECRET"
    async with variant_lab() as env:
        options = (
            env.options(exchange, token=wrong)
            if exchange == "coinlocally"
            else env.options(exchange, auth_key=wrong)
        )
        async with connect(exchange, **options, on_status=recorder) as stream:
            with pytest.raises(AuthenticationError) as raised:
                async with asyncio.timeout(5):
                    await anext(stream)
            assert stream.running is False
    assert wrong not in str(raised.value)
    variant_set: tuple[str, ...] = request.node.callspec.params["variant_lab"]
    refused_at_sub = any(spec.startswith("coinlocally-refusal-") for spec in variant_set)
    expected = "sub token" if refused_at_sub else "token header"  # the handshake's 401, or the sub's refusal
    assert raised.value.rejected == (expected if exchange == "coinlocally" else "listenKey request")
    assert recorder.states()[-1] == "fatal"
    assert len(recorder.of(State.CONNECTING)) == 3  # auth_attempts, then stop


@pytest.mark.variant_scenario("expiry", exchanges=("bitmusa",))
async def test_expiry(variant_lab: Lab, exchange: str, recorder: Recorder) -> None:
    async with variant_lab() as env, connect(exchange, **env.options(exchange), on_status=recorder) as stream:
        await env.until_streaming()
        old_key = env.server.active_listen_key("alice")
        assert env.server.expire_listen_key("alice") is True
        await recorder.wait_for(State.CONNECTED, 2)
        events = await deliver_after(env, stream, exchange, 1)
        new_key = env.server.active_listen_key("alice")
    assert events == expected_after(env, exchange, 1)
    assert new_key is not None
    assert new_key != old_key
    # The closed key is not tried again: the reconnect asks for a fresh key first.
    assert env.access.count("GET", "/ws/spot/", 404) == 0
    assert State.FATAL not in [status.state for status in recorder.statuses]


@pytest.mark.variant_scenario("SYSTEM")
async def test_system_close(variant_lab: Lab, exchange: str, recorder: Recorder) -> None:
    async with variant_lab() as env, connect(exchange, **env.options(exchange), on_status=recorder) as stream:
        await env.until_streaming()
        assert await env.server.system_close("alice") == 1
        await recorder.wait_for(State.CONNECTED, 2)
        events = await deliver_after(env, stream, exchange, 1)
    assert events == expected_after(env, exchange, 1)
    assert len(recorder.of(State.DISCONNECTED)) == 1


@pytest.mark.variant_scenario("stall")
async def test_stall(variant_lab: Lab, exchange: str, recorder: Recorder) -> None:
    options = {"ping_interval": 0.1, "idle_timeout": 0.5}
    async with (
        variant_lab() as env,
        connect(exchange, **env.options(exchange, **options), on_status=recorder) as stream,
    ):
        await env.until_streaming()
        assert await env.server.stall("alice") == 1
        disconnected = await recorder.wait_for(State.DISCONNECTED)
        await recorder.wait_for(State.CONNECTED, 2)
        events = await deliver_after(env, stream, exchange, 1)
    assert disconnected.reason.endswith("no frame for 0.5s; connection presumed dead")
    assert events == expected_after(env, exchange, 1)


@pytest.mark.variant_scenario("rotation")
async def test_rotation(variant_lab: Lab, exchange: str, recorder: Recorder) -> None:
    sent: list[int] = []
    received: list[Event] = []
    async with (
        variant_lab() as env,
        connect(exchange, **env.options(exchange, rotate_after=0.3), on_status=recorder) as stream,
    ):
        await env.until_streaming()

        async def consume() -> None:
            async for event in stream:
                received.append(event)

        async with asyncio.timeout(20), asyncio.TaskGroup() as tasks:
            consumer = tasks.create_task(consume())
            while len(recorder.of(State.ROTATED)) < 2:
                await env.ingest([env.balance(len(sent))])
                sent.append(len(sent))
                await asyncio.sleep(0.005)
            await env.ingest([env.balance(len(sent))])  # after the last rotation: the new connection alone
            sent.append(len(sent))
            await env.until(lambda: len(received) >= len(sent))
            consumer.cancel()
    assert received == [env.expected_balance(n, exchange) for n in sent]
    assert recorder.of(State.DISCONNECTED) == []


# --- resync: the REST snapshots write their numbers as the stream does --------------------------------------

SIGNED = Account(
    name="alice",
    uid=24005174,
    bitmusa_api_key="alice-bitmusa-api-SECRET",
    bitmusa_auth_key="alice-bitmusa-auth-SECRET",
    coinlocally_api_key="alice-coinlocally-api-SECRET",
    coinlocally_secret_key="alice-coinlocally-secret-key-SECRET",
)


def _order(order_id: str, status: str, price: str, filled: str, cost: str, t: int) -> dict[str, Any]:  # noqa: PLR0917
    return {
        "kind": "order",
        "id": order_id,
        "symbol": "BTC/USDT",
        "side": "buy",
        "status": status,
        "price": price,
        "amount": "2",
        "filled": filled,
        "cost": cost,
        "created_at": 1_700_703_548_000,
        "timestamp": 1_700_703_548_000 + t,
    }


BEFORE = [
    {**_TINY_BALANCE, "timestamp": 1_700_703_548_001},
    _order("C1", "open", "0.00012", "0", "0", 2),
    _order("C2", "open", "13000", "0", "0", 3),
]
LOST = [  # while the client is down
    _order("C1", "open", "0.00012", "0.5", "0.00006", 10),
    _order("C2", "closed", "13000", "2", "26000", 11),
    {**_TINY_BALANCE, "free": "0.00003", "timestamp": 1_700_703_548_012},
]


def picture(snapshot: AccountSnapshot) -> tuple[dict[str, Any], dict[str, Any]]:
    """Balances and open orders by value (Decimal equality: 2.0E-5 is 0.00002)."""
    balances = {asset: (b.free, b.locked) for asset, b in snapshot.balances.items()}
    orders = {key: (o.status, o.price, o.amount, o.filled, o.cost) for key, o in snapshot.open_orders.items()}
    return balances, orders


def delivered(events: list[Event]) -> tuple[dict[str, Any], dict[str, Any]]:
    state = AccountState()
    for event in events:
        state.apply(event)
    return picture(state.snapshot())


@pytest.mark.variant_scenario("resync")
async def test_resync(variant_lab: Lab, exchange: str, recorder: Recorder) -> None:
    async with variant_lab(accounts=(SIGNED,)) as env:
        options = env.options(exchange, account=SIGNED, resync=True)
        if exchange == "coinlocally":
            options.update(
                token=None,
                api_key=SIGNED.coinlocally_api_key,
                secret_key=SIGNED.coinlocally_secret_key,
                snapshot_rest_url=env.server.base_url,
            )
        async with connect(exchange, **options, on_status=recorder) as stream:
            await env.until_streaming(account=SIGNED)
            await env.ingest(BEFORE, account=SIGNED)
            received = list(await env.take(stream, len(BEFORE)))
            assert await env.server.drop("alice") == 1
            await env.ingest(LOST, account=SIGNED)  # nobody receives these
            resynced = await recorder.wait_for(State.RESYNCED)
            received += await env.take(stream, resynced.corrections)
            truth = picture(env.server.server.truth.snapshot("alice"))
    assert delivered(received) == truth
    assert truth == (
        {"BTC": (Decimal("0.00003"), Decimal("12345678.9"))},
        {"C1": (OrderStatus.OPEN, Decimal("0.00012"), Decimal(2), Decimal("0.5"), Decimal("0.00006"))},
    )
    assert resynced.corrections == 3  # the balance, C1 grown, C2 gone
    assert stream.stats.resync_failures == 0
