"""The current picture: `stream.balances()` and `stream.open_orders()` show what the user has taken from the
iterator (not what is still queued), as read-only copies; with `initial_snapshot=True` it is complete once
the snapshot's corrections have been taken (`picture_complete`). Against `userstream serve`."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from typing import Any

import pytest

from support.accounts import ALICE_WITH_SECRET_KEY
from userstream import ConfigurationError, OrderStatus, Source, connect
from userstream.events import BalanceUpdate, Exchange, OrderUpdate

Lab = Callable[..., AbstractAsyncContextManager[Any]]
EXCHANGES = pytest.mark.parametrize("exchange", ["bitmusa", "coinlocally"])
ALICE = ALICE_WITH_SECRET_KEY


@EXCHANGES
async def test_the_picture_is_what_was_taken_not_what_is_queued(lab: Lab, exchange: str) -> None:
    async with lab() as env, connect(exchange, **env.options(exchange)) as stream:  # resync=False
        await env.until_streaming()
        await env.ingest([env.balance(1), env.order(2), env.order(3)])
        await env.until(lambda: stream.stats.events_received == 3)
        assert (dict(stream.balances()), dict(stream.open_orders())) == ({}, {})  # all three still queued
        assert stream.picture_complete is False  # no snapshot: only what the stream said
        await env.take(stream, 1)
        assert dict(stream.balances()) == {"USDT": env.expected_balance(1, exchange)}
        assert dict(stream.open_orders()) == {}
        await env.take(stream, 2)
        held = stream.open_orders()
        assert dict(held) == {"C2": env.expected_order(2, exchange), "C3": env.expected_order(3, exchange)}

        closed = {**env.order(2), "status": "canceled", "timestamp": env.order(2)["timestamp"] + 10}
        await env.ingest([closed])
        (update,) = await env.take(stream, 1)
        assert update.status is OrderStatus.CANCELED
        assert sorted(stream.open_orders()) == ["C3"]  # the canceled order left the picture
        assert sorted(held) == ["C2", "C3"]  # ... and a picture taken before is a copy: it did not change
        with pytest.raises(TypeError):
            held["C9"] = update  # type: ignore[index]  # read-only


@EXCHANGES
async def test_with_an_initial_snapshot_the_picture_is_complete_once_its_corrections_are_taken(
    lab: Lab, exchange: str
) -> None:
    async with lab(accounts=(ALICE,)) as env:
        await env.ingest([env.balance(1), env.balance(2, asset="BTC"), env.order(3)])  # before any stream
        settings = env.options(exchange, resync=True, initial_snapshot=True, snapshot_symbols=["BTC/USDT"])
        if exchange == "coinlocally":
            settings.update(
                token=None,
                api_key=ALICE.coinlocally_api_key,
                secret_key=ALICE.coinlocally_secret_key,
                snapshot_rest_url=env.server.base_url,
            )
        async with connect(exchange, **settings) as stream:
            assert stream.picture_complete is False
            corrections = await env.take(stream, 2)  # the two balances, by asset
            assert stream.picture_complete is False  # the order is still to be taken
            (order,) = await env.take(stream, 1)
            assert stream.picture_complete is True
            balances, orders = dict(stream.balances()), dict(stream.open_orders())
    assert [(event.source, event.asset) for event in corrections if isinstance(event, BalanceUpdate)] == [
        (Source.SNAPSHOT, "BTC"),
        (Source.SNAPSHOT, "USDT"),
    ]
    assert {asset: (str(b.free), str(b.locked)) for asset, b in balances.items()} == {
        "BTC": ("2.5", "0.25"),
        "USDT": ("1.5", "0.25"),
    }
    assert balances["USDT"].exchange is Exchange(exchange)
    assert list(orders) == ["C3"]
    assert orders["C3"] == order
    assert (order.source, order.amount, order.price) == (Source.SNAPSHOT, Decimal(1), Decimal(13000))


async def test_picture_false_keeps_none_and_says_so(lab: Lab) -> None:
    async with lab() as env, connect("coinlocally", **env.options("coinlocally"), picture=False) as stream:
        await env.until_streaming()
        await env.ingest([env.balance(1)])
        assert await env.take(stream, 1) == [env.expected_balance(1, "coinlocally")]
        for accessor in (stream.balances, stream.open_orders):
            with pytest.raises(ConfigurationError) as info:
                accessor()
            assert str(info.value) == "this stream keeps no picture (picture=False): connect without it"


@EXCHANGES
async def test_the_picture_is_the_one_resync_corrects_and_assumed_events_are_in_it(
    lab: Lab, exchange: str
) -> None:
    # One AccountState per stream: what assume() folded in shows in the picture before the stream starts, and
    # the first snapshot's corrections are computed against it (the order assumed open, gone on the exchange,
    # comes back ended; the balance the exchange agrees with is not corrected).
    async with lab(accounts=(ALICE,)) as env:
        await env.ingest([env.balance(1)])  # the exchange's truth: USDT as balance 1 says, no open order
        settings = env.options(exchange, resync=True, initial_snapshot=True, snapshot_symbols=[])
        if exchange == "coinlocally":
            settings.update(
                token=None,
                api_key=ALICE.coinlocally_api_key,
                secret_key=ALICE.coinlocally_secret_key,
                snapshot_rest_url=env.server.base_url,
            )
        stream = connect(exchange, **settings)
        held_balance, held_order = env.expected_balance(1, exchange), env.expected_order(2, exchange)
        stream.assume([held_balance, held_order])
        assumed = (dict(stream.balances()), dict(stream.open_orders()))
        async with stream:
            (correction,) = await env.take(stream, 1)
            after = (dict(stream.balances()), dict(stream.open_orders()), stream.picture_complete)
    assert assumed == ({"USDT": held_balance}, {"C2": held_order})
    assert isinstance(correction, OrderUpdate)
    assert (correction.source, correction.id, correction.status) == (Source.SNAPSHOT, "C2", None)
    assert after == ({"USDT": held_balance}, {}, True)


async def test_picture_false_with_resync_on_still_says_it_keeps_none(lab: Lab) -> None:
    # The state resync needs is kept, but it is not the user's picture: the accessors refuse as without it.
    async with lab(accounts=(ALICE,)) as env:
        settings = env.options("bitmusa", resync=True, picture=False)
        async with connect("bitmusa", **settings) as stream:
            await env.until_streaming()
            await env.ingest([env.balance(1)])
            assert await env.take(stream, 1) == [env.expected_balance(1, "bitmusa")]
            assert stream.picture is None
            with pytest.raises(ConfigurationError) as info:
                stream.balances()
    assert str(info.value) == "this stream keeps no picture (picture=False): connect without it"
