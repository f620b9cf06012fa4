"""Resync after unplanned reconnects, end to end: the real client against the real emulator, whose REST
snapshot endpoints answer from the state its events imply. Events ingested while the client is down are lost
on the wire; the snapshot's corrections must make the client's delivered picture exactly the server's. A
planned rotation takes no snapshot; a stream that cannot take one says so once; a failing snapshot never
stops the stream."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web

from support.accounts import ALICE_WITH_SECRET_KEY
from support.peers import served
from userstream.client import State, UserStream, connect
from userstream.client.backoff import Backoff
from userstream.client.resync import Resync, TakenSnapshot
from userstream.errors import ConfigurationError
from userstream.events import NOT_IN_SNAPSHOT, BalanceUpdate, Event, Exchange, OrderUpdate, Source
from userstream.protocol import coinlocally_rest, coinlocally_rest_render
from userstream.state import AccountSnapshot, AccountState

Env = Any  # conftest.Env
Lab = Callable[..., AbstractAsyncContextManager[Any]]
Recorder = Any  # conftest.Recorder

EXCHANGES = pytest.mark.parametrize("exchange", ["bitmusa", "coinlocally"])
ALICE = ALICE_WITH_SECRET_KEY
SECRETS = tuple(ALICE.credentials().values())
T0 = 1_700_703_548_000
WAIT = 10.0


def options(env: Env, exchange: str, **overrides: Any) -> dict[str, Any]:
    """connect() arguments with resync on: Bitmusa as usual, Coinlocally by api key with its secret key."""
    settings = env.options(exchange, account=ALICE, resync=True, snapshot_symbols=["ETH/USDT"])
    if exchange == "coinlocally":
        settings.update(
            token=None,
            api_key=ALICE.coinlocally_api_key,
            secret_key=ALICE.coinlocally_secret_key,
            snapshot_rest_url=env.server.base_url,
        )
    settings.update(overrides)
    return settings


def balance(asset: str, free: str, locked: str, t: int) -> dict[str, Any]:
    return {"kind": "balance", "asset": asset, "free": free, "locked": locked, "timestamp": T0 + t}


def order(  # noqa: PLR0917 - a table row reads best positionally
    order_id: str,
    symbol: str,
    side: str,
    status: str,
    price: str,
    amount: str,
    filled: str,
    cost: str,
    t: int,
) -> dict[str, Any]:
    return {
        "kind": "order",
        "id": order_id,
        "symbol": symbol,
        "side": side,
        "type": "limit",
        "status": status,
        "price": price,
        "amount": amount,
        "filled": filled,
        "cost": cost,
        "created_at": T0,
        "timestamp": T0 + t,
    }


BEFORE = [
    balance("USDT", "100000", "0", 1),
    balance("BTC", "1", "0", 1),
    order("C1", "BTC/USDT", "buy", "open", "13000", "2", "0", "0", 2),
    order("C2", "BTC/USDT", "sell", "open", "14000", "1", "0", "0", 3),
]
# While the client is down: C1 half filled, C2 filled and gone, C3 and C4 opened, two balances moved.
LOST = [
    order("C1", "BTC/USDT", "buy", "open", "13000", "2", "0.5", "6500", 10),
    order("C2", "BTC/USDT", "sell", "closed", "14000", "1", "1", "14000", 11),
    order("C3", "ETH/USDT", "buy", "open", "3500", "3", "0", "0", 12),
    order("C4", "BTC/USDT", "buy", "open", "12000", "0.1", "0", "0", 13),
    balance("USDT", "49500", "50500", 14),
    balance("ETH", "0.5", "0", 14),
]


def picture(snapshot: AccountSnapshot) -> tuple[dict[str, Any], dict[str, Any]]:
    """Balances and open orders, every value as its exact text: what the exchange says, not how it said it."""
    balances = {asset: (str(b.free), str(b.locked)) for asset, b in snapshot.balances.items()}
    orders = {
        order_id: (
            o.symbol,
            o.side.value,
            None if o.type is None else o.type.value,
            None if o.status is None else o.status.value,
            str(o.price),
            str(o.amount),
            str(o.filled),
            str(o.remaining),
            str(o.cost),
            o.created_at,
        )
        for order_id, o in snapshot.open_orders.items()
    }
    return balances, orders


def delivered_picture(events: Iterable[Event]) -> tuple[dict[str, Any], dict[str, Any]]:
    state = AccountState()
    for event in events:
        state.apply(event)
    return picture(state.snapshot())


def truth(env: Env) -> tuple[dict[str, Any], dict[str, Any]]:
    return picture(env.server.server.truth.snapshot("alice"))


async def corrections(stream: UserStream, recorder: Recorder, count: int = 1) -> list[Event]:
    """The events of the `count`-th resync, once it reported them queued."""
    resynced = await recorder.wait_for(State.RESYNCED, count)
    assert resynced.corrections is not None
    async with asyncio.timeout(WAIT):
        return [await anext(stream) for _ in range(resynced.corrections)]


def described(event: Event) -> tuple[Any, ...]:
    if isinstance(event, BalanceUpdate):
        return ("balance", event.asset, str(event.free), str(event.locked))
    assert isinstance(event, OrderUpdate)
    status = event.raw_status if event.status is None else event.status.value
    return ("order", event.id, status, str(event.filled))


# --- convergence --------------------------------------------------------------------------------------------


@EXCHANGES
async def test_events_lost_while_down_are_corrected_from_the_snapshot(
    lab: Lab, recorder: Recorder, exchange: str
) -> None:
    async with (
        lab(accounts=(ALICE,)) as env,
        connect(exchange, **options(env, exchange), on_status=recorder) as stream,
    ):
        await env.until_streaming(account=ALICE)
        await env.ingest(BEFORE, account=ALICE)
        received = await env.take(stream, 4)
        assert delivered_picture(received) == truth(env) != ({}, {})

        # Abort the connection and publish at once (no await point between): nobody receives these.
        assert await env.server.drop("alice") == 1
        await env.ingest(LOST, account=ALICE)
        assert delivered_picture(received) != truth(env)

        fixes = await corrections(stream, recorder)
        received += fixes
        assert delivered_picture(received) == truth(env)

    assert [described(event) for event in fixes] == [
        ("balance", "ETH", "0.5", "0"),
        ("balance", "USDT", "49500", "50500"),
        ("order", "C1", "open", "0.5"),
        ("order", "C3", "open", "0"),
        ("order", "C4", "open", "0"),
        ("order", "C2", NOT_IN_SNAPSHOT, "0"),  # gone; how it ended is not in a list of open orders
    ]
    assert {event.source for event in fixes} == {Source.SNAPSHOT}
    assert {event.exchange for event in fixes} == {Exchange(exchange)}
    assert {event.account for event in fixes} == {"alice"}
    # One request time stamps them all, and it is after every event the stream had delivered.
    (requested_at,) = {event.timestamp for event in fixes}
    assert requested_at > T0 + 14
    assert stream.stats.resyncs == 1
    assert stream.stats.resync_failures == 0
    assert recorder.states().count("resynced") == 1
    assert recorder.of(State.RESYNCED)[0].reason == "snapshot of 3 balances and 3 open orders (2 symbols)"
    balances_path, orders_path = (
        ("/spot/wallet", "/spot/order/history")
        if exchange == "bitmusa"
        else ("/sapi/v1/account", "/sapi/v1/openOrders")
    )
    # Held orders are on BTC/USDT; ETH/USDT is configured: one wallet and two order lists.
    assert env.access.count("GET", balances_path, 200) == 1
    assert env.access.count("GET", orders_path, 200) == 2


@EXCHANGES
async def test_a_reconnect_that_lost_nothing_needs_no_correction(
    lab: Lab, recorder: Recorder, exchange: str
) -> None:
    # REST and stream read one order identically, so the snapshot agrees with what was delivered.
    async with (
        lab(accounts=(ALICE,)) as env,
        connect(exchange, **options(env, exchange), on_status=recorder) as stream,
    ):
        await env.until_streaming(account=ALICE)
        await env.ingest(BEFORE + LOST, account=ALICE)
        received = await env.take(stream, 10)
        await env.server.drop("alice")
        resynced = await recorder.wait_for(State.RESYNCED)
        assert delivered_picture(received) == truth(env)
    assert resynced.corrections == 0
    assert stream.stats.resyncs == 1


@EXCHANGES
async def test_an_initial_snapshot_brings_what_happened_before_the_stream(
    lab: Lab, recorder: Recorder, exchange: str
) -> None:
    async with lab(accounts=(ALICE,)) as env:
        await env.ingest(BEFORE + LOST, account=ALICE)  # no stream is open: only the REST API knows
        symbols = ["BTC/USDT", "ETH/USDT"]  # the state holds no order yet: only these are asked for
        settings = options(env, exchange, initial_snapshot=True, snapshot_symbols=symbols)
        async with connect(exchange, **settings, on_status=recorder) as stream:
            fixes = await corrections(stream, recorder)
            assert delivered_picture(fixes) == truth(env)
    assert [described(event) for event in fixes] == [
        ("balance", "BTC", "1", "0"),
        ("balance", "ETH", "0.5", "0"),
        ("balance", "USDT", "49500", "50500"),
        ("order", "C1", "open", "0.5"),
        ("order", "C3", "open", "0"),
        ("order", "C4", "open", "0"),
    ]
    states = recorder.states()
    assert states.index("resynced") > states.index("connected")


@EXCHANGES
async def test_queued_counts_the_snapshot_corrections_waiting_with_the_stream_events(
    lab: Lab, recorder: Recorder, exchange: str
) -> None:
    """`stats.queued` is the queue's depth, corrections included: they are delivered but were never
    received over a connection, so `events_received - events_delivered` would hide as many waiting events
    (a gateway's `stream_queue_depth` read 0 with events waiting)."""
    async with lab(accounts=(ALICE,)) as env:
        await env.ingest(BEFORE + LOST, account=ALICE)
        settings = options(env, exchange, initial_snapshot=True, snapshot_symbols=["BTC/USDT", "ETH/USDT"])
        async with connect(exchange, **settings, on_status=recorder) as stream:
            resynced = await recorder.wait_for(State.RESYNCED)
            assert (resynced.corrections, stream.stats.queued) == (6, 6)
            await env.until_streaming(account=ALICE)
            await env.ingest([balance("USDT", "1", "0", 20), balance("BTC", "2", "0", 20)], account=ALICE)
            await env.until(lambda: stream.stats.events_received == 2)
            assert stream.stats.queued == 8
            await env.take(stream, 7)
            stats = stream.stats
    assert (stats.events_received, stats.events_delivered, stats.queued) == (2, 7, 1)


@EXCHANGES
async def test_without_initial_snapshot_a_fresh_stream_takes_none(
    lab: Lab, recorder: Recorder, exchange: str
) -> None:
    async with (
        lab(accounts=(ALICE,)) as env,
        connect(exchange, **options(env, exchange), on_status=recorder) as stream,
    ):
        await env.until_streaming(account=ALICE)
        await env.ingest([balance("USDT", "1", "0", 1)], account=ALICE)
        await env.take(stream, 1)
    assert stream.stats.resyncs == 0
    assert not [state for state in recorder.states() if state.startswith("resync")]


@EXCHANGES
async def test_a_planned_rotation_takes_no_snapshot(lab: Lab, recorder: Recorder, exchange: str) -> None:
    async with (
        lab(accounts=(ALICE,)) as env,
        connect(
            exchange, **options(env, exchange, rotate_after=0.3, overlap_timeout=0.1), on_status=recorder
        ) as stream,
    ):
        await recorder.wait_for(State.ROTATED, 2)
        await env.until_streaming(account=ALICE)
        await env.ingest([balance("USDT", "1", "0", 1)], account=ALICE)
        await env.take(stream, 1)
    assert not [state for state in recorder.states() if state.startswith("resync")]
    assert "disconnected" not in recorder.states()
    assert stream.stats.resyncs == stream.stats.resync_failures == 0
    assert env.access.count("GET", "/spot/wallet") == env.access.count("GET", "/sapi/v1/account") == 0


@EXCHANGES
async def test_a_rotation_whose_old_connection_went_silent_is_a_gap_and_resyncs(
    lab: Lab, recorder: Recorder, exchange: str
) -> None:
    """The old connection of a rotation stalls before the new one is live: what was published meanwhile
    reached nobody, the old connection never answers our close, and the hand-over cannot vouch for the
    overlap. It is a gap like any other, and the snapshot's corrections restore the picture."""
    async with lab(accounts=(ALICE,)) as env:
        settings = options(env, exchange, rotate_after=0.5, overlap_timeout=0.2, close_timeout=0.3)
        async with connect(exchange, **settings, on_status=recorder) as stream:
            await env.until_streaming(account=ALICE)
            await env.ingest(BEFORE, account=ALICE)
            received = await env.take(stream, 4)
            assert await env.server.stall("alice") == 1  # before the rotation begins
            await env.ingest(LOST, account=ALICE)
            fixes = await corrections(stream, recorder)
            received += fixes
            assert delivered_picture(received) == truth(env)
    assert recorder.of(State.ROTATED)[0].reason == "replaced connection 1"
    (silent,) = [status for status in recorder.of(State.DISCONNECTED) if status.connection == 1]
    assert silent.reason is not None
    assert silent.reason.endswith("no answer to our close within 0.3s")
    assert [described(event) for event in fixes] == [
        ("balance", "ETH", "0.5", "0"),
        ("balance", "USDT", "49500", "50500"),
        ("order", "C1", "open", "0.5"),
        ("order", "C3", "open", "0"),
        ("order", "C4", "open", "0"),
        ("order", "C2", NOT_IN_SNAPSHOT, "0"),
    ]


# --- a stream that cannot resync, and one whose snapshot fails ----------------------------------------------


@pytest.mark.parametrize(
    ("credentials", "missing"),
    [
        ({"token": ALICE.coinlocally_token}, "api_key, secret_key, snapshot_rest_url"),
        ({"token": None, "api_key": ALICE.coinlocally_api_key}, "secret_key, snapshot_rest_url"),
        (
            {"token": None, "api_key": ALICE.coinlocally_api_key, "secret_key": ALICE.coinlocally_secret_key},
            "snapshot_rest_url",
        ),
    ],
)
async def test_without_what_a_snapshot_needs_resync_is_skipped_with_one_warning(
    lab: Lab, recorder: Recorder, caplog: pytest.LogCaptureFixture, credentials: dict[str, Any], missing: str
) -> None:
    caplog.set_level(logging.WARNING, logger="userstream.client")
    async with lab(accounts=(ALICE,)) as env:
        settings = env.options("coinlocally", account=ALICE, resync=True, **credentials)
        async with connect("coinlocally", **settings, on_status=recorder) as stream:
            for live in (2, 3):
                await env.until_streaming(account=ALICE)
                await env.server.drop("alice")
                await recorder.wait_for(State.SUBSCRIBED, live)
            await env.until_streaming(account=ALICE)
            await env.ingest([balance("USDT", "1", "0", 1)], account=ALICE)
            assert len(await env.take(stream, 1)) == 1  # the stream goes on
    reason = (
        "Coinlocally snapshots need an api_key with its secret_key and a snapshot_rest_url "
        f"(missing: {missing}); events lost while disconnected stay lost"
    )
    skipped = recorder.of(State.RESYNC_SKIPPED)
    assert [status.reason for status in skipped] == [reason]
    warnings = [record.getMessage() for record in caplog.records if "resync" in record.getMessage()]
    assert warnings == [f"resync skipped: {reason}"]
    assert [state for state in recorder.states() if state.startswith("resync")] == ["resync_skipped"]


async def test_resync_false_turns_it_off_without_a_word(lab: Lab, recorder: Recorder) -> None:
    async with lab(accounts=(ALICE,)) as env:
        settings = env.options("coinlocally", account=ALICE, resync=False)
        async with connect("coinlocally", **settings, on_status=recorder):
            await env.until_streaming(account=ALICE)
            await env.server.drop("alice")
            await recorder.wait_for(State.SUBSCRIBED, 2)
    assert not [state for state in recorder.states() if state.startswith("resync")]


async def test_a_rejected_signature_is_reported_once_and_the_stream_goes_on(
    lab: Lab, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="userstream.client")
    async with lab(accounts=(ALICE,)) as env:
        settings = options(env, "coinlocally", secret_key="a-wrong-secret-SECRET", initial_snapshot=True)
        async with connect("coinlocally", **settings, on_status=recorder) as stream:
            failed = await recorder.wait_for(State.RESYNC_FAILED)
            await env.until_streaming(account=ALICE)
            await env.ingest([balance("USDT", "1", "0", 1)], account=ALICE)
            assert len(await env.take(stream, 1)) == 1
            assert env.access.count("GET", "/sapi/v1/account") == 1  # not retried: retrying cannot help
    assert failed.reason == (
        "snapshot failed: Coinlocally refused the request signature (HTTP 401, code -1022): "
        "signature for this request is not valid"
    )
    assert (failed.attempt, failed.delay) == (1, None)
    assert (stream.stats.resyncs, stream.stats.resync_failures) == (0, 1)
    output = caplog.text + " ".join(status.to_json().decode() for status in recorder.statuses)
    for secret in (*SECRETS, "a-wrong-secret-SECRET"):
        assert secret not in output


@asynccontextmanager
async def flaky_coinlocally_rest(failures: int, limited: int = 0) -> AsyncIterator[tuple[str, list[str]]]:
    """A Coinlocally REST peer whose account endpoint answers 503 `failures` times, then a wallet holding
    7 BTC; whose openOrders answers 429 (Retry-After: 0) `limited` times, then no orders. Yields its base URL
    and the request targets it saw."""
    seen: list[str] = []

    async def account(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        if len([path for path in seen if path.startswith("/sapi/v1/account")]) <= failures:
            return web.Response(status=503, text="<html>down for maintenance</html>")
        body = b'{"balances":[{"asset":"BTC","free":"7","locked":"0"}]}'
        return web.Response(body=body, content_type="application/json")

    async def open_orders(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        if len([path for path in seen if path.startswith("/sapi/v1/openOrders")]) <= limited:
            body = coinlocally_rest_render.render_error(-1003, "too many requests")
            return web.Response(
                status=429, body=body, content_type="application/json", headers={"Retry-After": "0"}
            )
        return web.Response(body=b"[]", content_type="application/json")

    app = web.Application()
    app.router.add_get(coinlocally_rest.ACCOUNT_PATH, account)
    app.router.add_get(coinlocally_rest.OPEN_ORDERS_PATH, open_orders)
    async with served(app, handle_signals=False) as address:
        yield f"http://{address}", seen


async def test_a_failed_snapshot_is_retried_with_backoff_until_it_succeeds(
    lab: Lab, recorder: Recorder
) -> None:
    async with lab(accounts=(ALICE,)) as env, flaky_coinlocally_rest(failures=2) as (rest_url, seen):
        settings = options(env, "coinlocally", snapshot_rest_url=rest_url, initial_snapshot=True)
        async with connect("coinlocally", **settings, on_status=recorder) as stream:
            fixes = await corrections(stream, recorder)
    failed = recorder.of(State.RESYNC_FAILED)
    assert [(status.attempt, status.reason) for status in failed] == [
        (1, "snapshot failed: Coinlocally answered HTTP 503"),
        (2, "snapshot failed: Coinlocally answered HTTP 503"),
    ]
    assert all(status.delay is not None and 0 <= status.delay <= 0.05 for status in failed)
    assert [described(event) for event in fixes] == [("balance", "BTC", "7", "0")]
    assert (stream.stats.resyncs, stream.stats.resync_failures) == (1, 2)
    # configured ETH/USDT is asked for as Coinlocally writes it
    assert seen[-1] == "/sapi/v1/openOrders?symbol=ETHUSDT&limit=1000"
    assert seen.count("/sapi/v1/account") == 3


async def test_a_rate_limited_request_waits_and_asks_again_within_the_snapshot(
    lab: Lab, recorder: Recorder
) -> None:
    # A snapshot is several requests; one refused for the rate is asked again, not the whole snapshot.
    async with (
        lab(accounts=(ALICE,)) as env,
        flaky_coinlocally_rest(failures=0, limited=3) as (rest_url, seen),
    ):
        settings = options(env, "coinlocally", snapshot_rest_url=rest_url, initial_snapshot=True)
        async with connect("coinlocally", **settings, on_status=recorder) as stream:
            fixes = await corrections(stream, recorder)
    assert [described(event) for event in fixes] == [("balance", "BTC", "7", "0")]
    assert recorder.of(State.RESYNC_FAILED) == []
    assert seen == ["/sapi/v1/account"] + ["/sapi/v1/openOrders?symbol=ETHUSDT&limit=1000"] * 4
    assert (stream.stats.resyncs, stream.stats.resync_failures) == (1, 0)


async def test_a_rate_limit_that_does_not_lift_fails_the_attempt_and_is_retried(
    lab: Lab, recorder: Recorder
) -> None:
    async with (
        lab(accounts=(ALICE,)) as env,
        flaky_coinlocally_rest(failures=0, limited=6) as (rest_url, seen),
    ):
        settings = options(env, "coinlocally", snapshot_rest_url=rest_url, initial_snapshot=True)
        async with connect("coinlocally", **settings, on_status=recorder) as stream:
            await corrections(stream, recorder)
    (failed,) = recorder.of(State.RESYNC_FAILED)
    assert (
        failed.reason
        == "snapshot failed: Coinlocally limited the request (HTTP 429, code -1003): too many requests"
    )
    assert failed.attempt == 1
    # 1 + 5 asks in the first attempt, all limited; the second attempt's ask gets through.
    assert seen.count("/sapi/v1/openOrders?symbol=ETHUSDT&limit=1000") == 7
    assert (stream.stats.resyncs, stream.stats.resync_failures) == (1, 1)


async def test_a_snapshot_that_never_answers_never_stops_the_stream(lab: Lab, recorder: Recorder) -> None:
    async with lab(accounts=(ALICE,)) as env:
        settings = options(env, "coinlocally", snapshot_rest_url="http://127.0.0.1:9", initial_snapshot=True)
        async with connect("coinlocally", **settings, on_status=recorder) as stream:
            await recorder.wait_for(State.RESYNC_FAILED, 3)
            await env.until_streaming(account=ALICE)
            await env.ingest([balance("USDT", "1", "0", 1)], account=ALICE)
            assert len(await env.take(stream, 1)) == 1
            assert stream.running
    first = recorder.of(State.RESYNC_FAILED)[0]
    assert first.reason is not None
    assert first.reason.startswith("snapshot failed: GET http://127.0.0.1:9/sapi/v1/account: cannot connect")
    assert [status.attempt for status in recorder.of(State.RESYNC_FAILED)[:3]] == [1, 2, 3]


# --- arguments --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exchange", "arguments", "message"),
    [
        (
            "bitmusa",
            {"api_key": "k", "auth_key": "a", "secret_key": "s"},
            "Bitmusa takes no secret_key: its snapshots use the api_key and auth_key",
        ),
        (
            "bitmusa",
            {"api_key": "k", "auth_key": "a", "snapshot_rest_url": "https://x"},
            "Bitmusa's snapshots use rest_url; snapshot_rest_url is Coinlocally's",
        ),
        (
            "coinlocally",
            {"token": "t", "secret_key": "s"},
            "a Coinlocally secret_key signs requests made with its api_key, and a token cannot sign: connect "
            "with the api_key instead of the token",
        ),
        (
            "coinlocally",
            {"api_key": "k", "secret_key": "s", "snapshot_rest_url": "ftp://x"},
            "the Coinlocally snapshot REST URL must be an absolute https:// or http:// URL, not 'ftp://x'",
        ),
        (
            "coinlocally",
            {"api_key": "k", "secret_key": "s\n"},
            "the Coinlocally secret_key must be a non-empty printable string",
        ),
        (
            "coinlocally",
            {"token": "t", "snapshot_symbols": "BTC/USDT"},
            "snapshot_symbols must be a sequence of symbols such as ['BTC/USDT']",
        ),
        (
            "bitmusa",
            {"api_key": "k", "auth_key": "a", "snapshot_symbols": ["BTC/USDT", ""]},
            "snapshot_symbols must be a sequence of symbols such as ['BTC/USDT']",
        ),
    ],
)
async def test_contradictory_arguments_are_refused_at_connect(
    exchange: str, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        connect(exchange, **arguments)
    assert str(caught.value) == message


async def test_the_secret_key_never_shows_in_reprs() -> None:
    stream = connect(
        "coinlocally",
        api_key="k-SECRET",
        secret_key="s-SECRET",
        snapshot_rest_url="https://openapi.example",
        snapshot_symbols=["BTC/USDT"],
    )
    try:
        assert "SECRET" not in repr(stream) + repr(stream.options) + repr(stream.stats)
        assert stream.options.snapshot_symbols == ("BTC/USDT",)
        assert (stream.stats.resyncs, stream.stats.resync_failures) == (0, 0)
    finally:
        await stream.aclose()


def test_decimal_text_is_compared_exactly() -> None:
    # The picture compares text, so a correction that changed only the exponent would still show.
    one = AccountSnapshot.of(
        [
            BalanceUpdate(
                exchange=Exchange.BITMUSA,
                account="a",
                timestamp=1,
                asset="X",
                free=Decimal("1.0"),
                locked=Decimal(0),
            )
        ]
    )
    other = AccountSnapshot.of(
        [
            BalanceUpdate(
                exchange=Exchange.BITMUSA,
                account="a",
                timestamp=1,
                asset="X",
                free=Decimal("1"),
                locked=Decimal(0),
            )
        ]
    )
    assert picture(one) != picture(other)


@EXCHANGES
async def test_orders_on_symbols_neither_held_nor_configured_are_not_seen(
    lab: Lab, recorder: Recorder, exchange: str
) -> None:
    # The documented limit: open orders are listed per symbol, and a fresh state holds none.
    async with lab(accounts=(ALICE,)) as env:
        await env.ingest(BEFORE, account=ALICE)
        settings = options(env, exchange, initial_snapshot=True, snapshot_symbols=["ETH/USDT"])
        async with connect(exchange, **settings, on_status=recorder) as stream:
            fixes = await corrections(stream, recorder)
    assert [described(event) for event in fixes] == [
        ("balance", "BTC", "1", "0"),
        ("balance", "USDT", "100000", "0"),
    ]


# --- two gaps in a row: the first snapshot's corrections are not emitted again -------------------------


class _QueueingHost:
    """A stream whose user has not read anything yet: corrections are queued, never taken."""

    def __init__(self) -> None:
        self.queued: list[Event] = []
        self.statuses: list[State] = []

    def emit(self, state: State, **_details: object) -> None:
        self.statuses.append(state)

    async def deliver_corrections(self, events: Sequence[Event], queued: Callable[[Event], object]) -> None:
        for event in events:
            self.queued.append(event)
            queued(event)


class _FixedTaker:
    """Snapshots that always show the same truth; each is stamped with the next of `stamps`."""

    exchange = Exchange.BITMUSA

    def __init__(self, truth: AccountSnapshot, stamps: Iterable[int]) -> None:
        self._truth = truth
        self._stamps = iter(stamps)

    def symbol_of(self, order: OrderUpdate) -> str:
        return order.symbol

    def configured_symbol(self, symbol: str) -> str:
        return symbol

    async def take(self, symbols: Sequence[str]) -> TakenSnapshot:
        return TakenSnapshot(self._truth, next(self._stamps))

    def scrub(self, text: str) -> str:
        return text


@pytest.mark.parametrize("second_stamp", [1_000, 1_001], ids=["same millisecond", "a millisecond later"])
async def test_a_second_gap_before_the_user_read_the_first_corrections_does_not_emit_them_again(
    second_stamp: int,
) -> None:
    truth = AccountSnapshot.of(
        balances=[
            BalanceUpdate(Exchange.BITMUSA, "a", 1, "BTC", Decimal("5.00"), Decimal(0), Source.SNAPSHOT),
        ]
    )
    host = _QueueingHost()
    resync = Resync(
        _FixedTaker(truth, [1_000, second_stamp]),
        host=host,
        make_backoff=lambda: Backoff(base=0.01, cap=0.01, stable_after=1.0),
    )
    async with asyncio.TaskGroup() as tasks:
        resync.request(tasks)
    async with asyncio.TaskGroup() as tasks:  # the next gap, and nothing was taken from the queue
        resync.request(tasks)
    assert [(event.asset, event.free, event.timestamp) for event in host.queued] == [  # type: ignore[union-attr]
        ("BTC", Decimal("5.00"), 1_000)
    ]
    assert host.statuses == [State.RESYNCED, State.RESYNCED]
    assert resync.resyncs == 2


@EXCHANGES
async def test_a_snapshot_with_an_impossible_value_is_refused_whole_and_nothing_of_it_applied(
    lab: Lab, recorder: Recorder, exchange: str
) -> None:
    async with lab(accounts=(ALICE,)) as env:
        # Only the REST API knows these: BTC is fine, USDT's free is negative (docs/events.md).
        await env.ingest([balance("BTC", "1", "0", 1), balance("USDT", "-5", "0", 2)], account=ALICE)
        settings = options(env, exchange, initial_snapshot=True, snapshot_symbols=[])
        async with connect(exchange, **settings, on_status=recorder) as stream:
            failed = await recorder.wait_for(State.RESYNC_FAILED, 2)  # refused, and refused again
            await env.until_streaming(account=ALICE)
            await env.ingest([balance("ETH", "2", "0", 3)], account=ALICE)
            (event,) = await env.take(stream, 1)
            stats = stream.stats
    # the stream went on; the next event is the stream's own, no correction from the refused snapshot
    assert (event.source, event.asset) == (Source.STREAM, "ETH")  # type: ignore[union-attr]
    assert recorder.of(State.RESYNCED) == []
    assert stats.resyncs == 0
    assert stats.resync_failures >= 2
    where = "item 1: $.data.free" if exchange == "bitmusa" else "$.balances[1].free: $.free"
    assert failed.reason == f"snapshot failed: {where}: a balance cannot be negative, got -5"
    assert failed.delay is not None  # retried: the exchange may correct itself
