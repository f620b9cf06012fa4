"""userstream.testing: every method of the bot developer's handle, against the real in-process serve and the
real client (what reaches the client, what the server wrote, what the faults do to a connection)."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

import userstream
from userstream.client import State, StatusEvent, UserStream
from userstream.errors import ConfigurationError
from userstream.events import BalanceUpdate, Event, Exchange, OrderStatus, OrderUpdate, Side
from userstream.server import IngestError
from userstream.server.faults import FaultError
from userstream.testing import UserstreamExchange, balance, fill, order

WAIT = 10.0
T0 = 1_700_000_000_000
# Quick to recover, slow to declare a connection dead unless a test says otherwise; no resync statuses.
CALM: dict[str, Any] = {
    "ping_interval": 1.0,
    "idle_timeout": 5.0,
    "backoff_base": 0.01,
    "backoff_cap": 0.05,
    "rotate_after": None,
    "resync": False,
}


class Statuses:
    def __init__(self) -> None:
        self.seen: list[StatusEvent] = []

    def __call__(self, status: StatusEvent) -> None:
        self.seen.append(status)

    def of(self, state: State) -> list[StatusEvent]:
        return [status for status in self.seen if status.state is state]

    async def wait_for(self, state: State, count: int = 1) -> StatusEvent:
        async with asyncio.timeout(WAIT):
            while len(self.of(state)) < count:  # noqa: ASYNC110 - a plain list has no change signal
                await asyncio.sleep(0.01)
        return self.of(state)[count - 1]


@pytest.fixture
def ex() -> Iterator[UserstreamExchange]:
    with UserstreamExchange.start(accounts=["alice", "bob"]) as exchange:
        yield exchange


def kwargs(ex: UserstreamExchange, exchange: str, account: str = "alice", **overrides: Any) -> dict[str, Any]:
    settings = getattr(ex.account(account), exchange).connect_kwargs()
    return {**settings, **CALM, **overrides}


@asynccontextmanager
async def client(ex: UserstreamExchange, exchange: str, **overrides: Any) -> AsyncIterator[UserStream]:
    async with userstream.connect(exchange, **kwargs(ex, exchange, **overrides)) as stream:
        await ex.wait_for_streams(exchange=exchange)
        yield stream


async def take(stream: UserStream, count: int) -> list[Event]:
    async with asyncio.timeout(WAIT):
        return [await anext(stream) for _ in range(count)]


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110 - the ledger is read by polling
            await asyncio.sleep(0.01)


def order_fields(event: Event) -> tuple[object, ...]:
    assert isinstance(event, OrderUpdate)
    return (
        event.exchange, event.account, event.timestamp, event.id, event.symbol, event.side, event.status,
        event.price, event.amount, event.filled, event.remaining, event.cost, event.created_at,
    )  # fmt: skip


# --- settings and push --------------------------------------------------------------------------------------


async def test_push_reaches_both_exchanges_clients_as_the_exact_events(ex: UserstreamExchange) -> None:
    async with client(ex, "bitmusa") as bitmusa, client(ex, "coinlocally") as coinlocally:
        await ex.wait_for_streams(count=2)
        pushed = ex.push(
            balance("USDT", "1000.25", "10", timestamp=T0),
            order("A1", "BTC/USDT", "buy", amount="0.5", price="60000", timestamp=T0 + 1),
            fill("A1", "BTC/USDT", "buy", amount="0.5", price="60000", fill_amount="0.1", fee="0.0001",
                 timestamp=T0 + 2),
        )  # fmt: skip
        assert pushed == 3
        for stream, exchange in ((bitmusa, Exchange.BITMUSA), (coinlocally, Exchange.COINLOCALLY)):
            got = await take(stream, 3)
            assert got[0] == BalanceUpdate(
                exchange=exchange, account="alice", timestamp=T0, asset="USDT",
                free=Decimal("1000.25"), locked=Decimal("10"),
            )  # fmt: skip
            assert order_fields(got[1]) == (
                exchange, "alice", T0 + 1, "A1", "BTC/USDT", Side.BUY, OrderStatus.OPEN,
                Decimal("60000"), Decimal("0.5"), Decimal("0"), Decimal("0.5"), Decimal("0"), T0 + 1,
            )  # fmt: skip
            assert order_fields(got[2]) == (
                exchange, "alice", T0 + 2, "A1", "BTC/USDT", Side.BUY, OrderStatus.OPEN,
                Decimal("60000"), Decimal("0.5"), Decimal("0.1"), Decimal("0.4"), Decimal("6000.0"), T0 + 2,
            )  # fmt: skip
        last = got[2]
        assert isinstance(last, OrderUpdate)  # Coinlocally's executionReport carries the execution itself
        assert (last.last_fill_amount, last.last_fill_price, last.fee) == (
            Decimal("0.1"), Decimal("60000"), Decimal("0.0001"),
        )  # fmt: skip


async def test_fill_reaching_the_amount_closes_the_order(ex: UserstreamExchange) -> None:
    async with client(ex, "coinlocally") as stream:
        ex.push(fill("B1", "ETH/USDT", "sell", amount="2", price="3000", fill_amount="0.5", filled="2",
                     timestamp=T0))  # fmt: skip
        (event,) = await take(stream, 1)
    assert order_fields(event)[6:] == (
        OrderStatus.CLOSED, Decimal("3000"), Decimal("2"), Decimal("2"), Decimal("0"), Decimal("6000"), T0,
    )  # fmt: skip
    assert isinstance(event, OrderUpdate)
    assert (event.last_fill_amount, event.fee) == (Decimal("0.5"), Decimal("0"))


async def test_push_of_typed_events_and_to_another_account_only(ex: UserstreamExchange) -> None:
    typed = BalanceUpdate(
        exchange=Exchange.BITMUSA, account="ignored", timestamp=T0, asset="BTC",
        free=Decimal("0.00000001"), locked=Decimal("0"),
    )  # fmt: skip
    async with (
        userstream.connect("bitmusa", **kwargs(ex, "bitmusa", "bob")) as bob,
        client(ex, "bitmusa") as alice,
    ):
        await ex.wait_for_streams("bob", exchange="bitmusa")
        assert ex.push(typed, account="bob") == 1
        (event,) = await take(bob, 1)
        assert event == BalanceUpdate(
            exchange=Exchange.BITMUSA, account="bob", timestamp=T0, asset="BTC",
            free=Decimal("0.00000001"), locked=Decimal("0"),
        )  # fmt: skip
        assert ex.streams("alice", "bitmusa") == 1
    assert alice is not bob
    assert [c.events for c in ex.sent("alice")] == [()]  # alice's connection got nothing
    assert [len(c.events) for c in ex.sent("bob")] == [1]


# --- sent ---------------------------------------------------------------------------------------------------


async def test_sent_gives_the_exact_frames_and_events_of_each_connection(ex: UserstreamExchange) -> None:
    async with client(ex, "bitmusa") as bitmusa, client(ex, "coinlocally") as coinlocally:
        await ex.wait_for_streams(count=2)
        ex.push(balance("USDT", "10.5", timestamp=T0), balance("BTC", "1", "0.5", timestamp=T0))
        await take(bitmusa, 2)
        await take(coinlocally, 2)
        await until(lambda: all(len(c.events) == 2 for c in ex.sent()))
    (bitmusa_sent,) = ex.sent(exchange="bitmusa")
    (coinlocally_sent,) = ex.sent(exchange=Exchange.COINLOCALLY)
    assert bitmusa_sent.frames == (
        '{"data":{"asset":"USDT","free":"10.5","locked":"0"},"stream":"spot_wallet","eventTime":1700000000000}',
        '{"data":{"asset":"BTC","free":"1","locked":"0.5"},"stream":"spot_wallet","eventTime":1700000000000}',
    )
    # Coinlocally: one gzip binary frame; balances of one moment share one outboundAccountPosition
    (frame,) = coinlocally_sent.frames
    assert isinstance(frame, bytes)
    assert json.loads(gzip.decompress(frame)) == {
        "e": "outboundAccountPosition", "E": T0, "u": T0,
        "B": [{"a": "USDT", "f": "10.5", "l": "0"}, {"a": "BTC", "f": "1", "l": "0.5"}],
    }  # fmt: skip
    assert coinlocally_sent.messages() == [json.loads(gzip.decompress(frame))]
    for sent, exchange in ((bitmusa_sent, Exchange.BITMUSA), (coinlocally_sent, Exchange.COINLOCALLY)):
        assert sent.events == (
            BalanceUpdate(exchange=exchange, account="alice", timestamp=T0, asset="USDT",
                          free=Decimal("10.5"), locked=Decimal("0")),
            BalanceUpdate(exchange=exchange, account="alice", timestamp=T0, asset="BTC",
                          free=Decimal("1"), locked=Decimal("0.5")),
        )  # fmt: skip
        assert (sent.account, sent.exchange, sent.faults) == ("alice", exchange, ())
    await until(lambda: all(c.ending == "client_close" for c in ex.sent()))
    assert [c.close_code for c in ex.sent()] == [1000, 1000]


# --- faults -------------------------------------------------------------------------------------------------


async def test_fault_drop_makes_the_client_reconnect(ex: UserstreamExchange) -> None:
    statuses = Statuses()
    async with client(ex, "bitmusa", on_status=statuses) as stream:
        report = ex.fault("drop", account="alice", exchange="bitmusa")
        assert (report.connections, report.keys) == (1, 0)
        await statuses.wait_for(State.DISCONNECTED)
        await statuses.wait_for(State.CONNECTED, 2)
        await ex.wait_for_streams(exchange="bitmusa")
        ex.push(balance("USDT", "7", timestamp=T0))
        (event,) = await take(stream, 1)
    assert isinstance(event, BalanceUpdate)
    assert event.free == Decimal("7")
    first, second = ex.sent(exchange="bitmusa")
    assert (first.faults, first.ending, first.events) == (("drop",), "aborted", ())
    assert [e.timestamp for e in second.events] == [T0]
    assert ex.sent(account="bob") == []


async def test_fault_stall_silences_the_connection_until_the_client_gives_up(ex: UserstreamExchange) -> None:
    statuses = Statuses()
    async with client(ex, "coinlocally", on_status=statuses, ping_interval=0.1, idle_timeout=0.5):
        assert ex.fault("stall", exchange="coinlocally").connections == 1
        disconnected = await statuses.wait_for(State.DISCONNECTED)
        await statuses.wait_for(State.SUBSCRIBED, 2)
    assert disconnected.reason is not None
    assert "no frame for 0.5s; connection presumed dead" in disconnected.reason
    first, _second = ex.sent(exchange="coinlocally")
    assert first.faults == ("stall",)


async def test_fault_system_close_sends_the_system_notice(ex: UserstreamExchange) -> None:
    statuses = Statuses()
    async with client(ex, "coinlocally", on_status=statuses):
        assert ex.fault("system_close", account="alice").connections == 1
        disconnected = await statuses.wait_for(State.DISCONNECTED)
        await statuses.wait_for(State.SUBSCRIBED, 2)
    assert disconnected.reason is not None
    assert "SYSTEM notice" in disconnected.reason
    await until(lambda: ex.sent()[0].ending is not None)
    first = ex.sent()[0]
    assert (first.faults, first.ending, first.close_code) == (("system_close",), "server_close", 1001)


async def test_fault_expire_key_renews_the_listen_key(ex: UserstreamExchange) -> None:
    statuses = Statuses()
    async with client(ex, "bitmusa", on_status=statuses):
        report = ex.fault("expire_key", exchange="bitmusa")
        assert (report.connections, report.keys) == (1, 1)
        renewed = await statuses.wait_for(State.KEY_RENEWED)
        await ex.wait_for_streams(exchange="bitmusa")
    assert renewed.listen_key is not None
    assert renewed.listen_key.endswith("...")
    await until(lambda: ex.sent()[0].ending is not None)
    first = ex.sent()[0]
    assert (first.faults, first.close_code) == (("expire_key",), 4001)


async def test_fault_delete_key_closes_with_4002_and_a_new_key_is_taken(ex: UserstreamExchange) -> None:
    statuses = Statuses()
    async with client(ex, "bitmusa", on_status=statuses) as stream:
        report = ex.fault("delete_key", account="alice")
        assert (report.connections, report.keys) == (1, 1)
        await statuses.wait_for(State.KEY_RENEWED)
        await ex.wait_for_streams(exchange="bitmusa")
        ex.push(balance("ETH", "3", timestamp=T0))
        (event,) = await take(stream, 1)
    assert isinstance(event, BalanceUpdate)
    assert (event.asset, event.free) == ("ETH", Decimal("3"))
    await until(lambda: ex.sent()[0].ending is not None)
    first, second = ex.sent()
    assert (first.faults, first.close_code, first.events) == (("delete_key",), 4002, ())
    assert [e.asset for e in second.events if isinstance(e, BalanceUpdate)] == ["ETH"]


async def test_fault_delay_holds_frames_but_loses_none(ex: UserstreamExchange) -> None:
    async with client(ex, "coinlocally") as stream:
        report = ex.fault("delay", exchange="coinlocally", seconds=30, delay_ms=50)
        assert (report.connections, report.seconds_left) == (1, 30)
        ex.push(balance("USDT", "1", timestamp=T0), balance("USDT", "2", timestamp=T0 + 1))
        got = await take(stream, 2)
        assert ex.fault("clear").connections == 1
    assert [(e.timestamp, e.free) for e in got if isinstance(e, BalanceUpdate)] == [
        (T0, Decimal("1")), (T0 + 1, Decimal("2")),
    ]  # fmt: skip
    (sent,) = ex.sent()
    assert sent.faults == ("delay",)  # clear ends the window; it is not a fault on the connection
    assert [m["B"][0]["f"] for m in sent.messages()] == ["1", "2"]


async def test_fault_refuse_and_clear_are_timed_windows(ex: UserstreamExchange) -> None:
    report = ex.fault("refuse", account="alice", exchange="coinlocally", seconds=30)
    assert (report.connections, report.seconds_left) == (0, 30)
    statuses = Statuses()
    stream = userstream.connect("coinlocally", on_status=statuses, **kwargs(ex, "coinlocally"))
    async with stream:
        await statuses.wait_for(State.RECONNECTING)  # the 503 refusal is retried
        ex.fault("clear")
        await ex.wait_for_streams(exchange="coinlocally")
    assert ex.sent() != []


def test_fault_refused_fires_nothing(ex: UserstreamExchange) -> None:
    with pytest.raises(FaultError, match="unknown fault 'explode'"):
        ex.fault("explode")
    with pytest.raises(FaultError, match="Coinlocally has none"):
        ex.fault("expire_key", exchange="coinlocally")
    with pytest.raises(FaultError, match="seconds"):
        ex.fault("refuse")
    with pytest.raises(KeyError, match="unknown account 'zed'"):
        ex.fault("drop", account="zed")


# --- variants -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variants", "price_text"), [((), '"price":3000.5'), (("numbers-as-strings",), '"price":"3000.5"')]
)
async def test_a_variant_changes_the_wire_shape_not_the_event(
    variants: tuple[str, ...], price_text: str
) -> None:
    with UserstreamExchange.start(variants=variants) as ex:
        assert ex.variants == variants
        async with client(ex, "bitmusa") as stream:
            ex.push(order("A2", "ETH/USDT", "sell", amount="2", price="3000.5", timestamp=T0))
            (event,) = await take(stream, 1)
        (sent,) = ex.sent()
    assert isinstance(event, OrderUpdate)
    assert (event.price, event.amount) == (Decimal("3000.5"), Decimal("2"))
    (frame,) = sent.frames
    assert isinstance(frame, str)
    assert price_text in frame


# --- errors, reprs, lifecycle -------------------------------------------------------------------------------


def test_push_refuses_a_bad_event_or_account(ex: UserstreamExchange) -> None:
    with pytest.raises(IngestError, match=r"event 1: .*\$\.free") as caught:
        ex.push(balance("USDT", "1"), {"kind": "balance", "asset": "USDT", "free": "lots", "locked": "0"})
    assert caught.value.index == 1
    with pytest.raises(KeyError, match="unknown account 'zed' \\(known: alice, bob\\)"):
        ex.push(balance("USDT", "1"), account="zed")
    with pytest.raises(KeyError, match="zed"):
        ex.sent("zed")
    assert ex.sent() == []  # nothing was published, nothing connected


def test_settings_give_the_urls_and_every_credential(ex: UserstreamExchange) -> None:
    assert ex.base_url.startswith("http://127.0.0.1:")
    assert ex.ws_url == "ws" + ex.base_url.removeprefix("http")
    alice, bob = ex.account("alice"), ex.account("bob")
    assert ex.account() is alice
    assert (alice.uid, bob.uid) == (24005174, 24005175)
    assert ex.bitmusa.connect_kwargs() == {
        "account": "alice", "api_key": alice.bitmusa.api_key, "auth_key": alice.bitmusa.auth_key,
        "rest_url": ex.base_url, "ws_url": ex.ws_url,
    }  # fmt: skip
    assert ex.coinlocally.connect_kwargs() == {
        "account": "alice", "api_key": alice.coinlocally.api_key, "secret_key": alice.coinlocally.secret_key,
        "ws_url": ex.ws_url + "/spotws_user/userData/ws", "snapshot_rest_url": ex.base_url,
    }  # fmt: skip
    assert ex.coinlocally.connect_kwargs(credential="token") == {
        "account": "alice",
        "token": alice.coinlocally.token,
        "ws_url": ex.ws_url + "/spotws_user/userData/ws",
    }
    secrets = {
        alice.bitmusa.api_key, alice.bitmusa.auth_key, alice.coinlocally.api_key,
        alice.coinlocally.secret_key, alice.coinlocally.token, bob.bitmusa.api_key, ex.admin_token,
    }  # fmt: skip
    assert len(secrets) == 7  # every credential is its own
    assert all(len(secret) == 43 for secret in secrets)  # 256 random bits, URL-safe
    shown = repr(ex) + repr(alice) + repr(ex.bitmusa) + repr(ex.coinlocally) + repr(ex.accounts)
    assert "alice" in shown
    assert not [secret for secret in secrets if secret in shown]


async def test_admin_token_opens_the_admin_routes(ex: UserstreamExchange) -> None:
    async with aiohttp.ClientSession() as session:
        body = {"account": "bob", "events": [balance("USDT", "9", timestamp=T0)]}
        async with session.post(
            ex.base_url + "/admin/events", json=body, headers={"Authorization": f"Bearer {ex.admin_token}"}
        ) as reply:
            assert (reply.status, await reply.json()) == (200, {"accepted": 1})
        async with session.post(ex.base_url + "/admin/events", json=body) as refused:
            assert refused.status == 401


async def test_coinlocally_token_credential_streams_too(ex: UserstreamExchange) -> None:
    settings = {**ex.coinlocally.connect_kwargs(credential="token"), **CALM}
    async with userstream.connect("coinlocally", **settings) as stream:
        await ex.wait_for_streams(exchange="coinlocally")
        ex.push(balance("XRP", "5", timestamp=T0))
        (event,) = await take(stream, 1)
    assert isinstance(event, BalanceUpdate)
    assert (event.exchange, event.asset, event.free) == (Exchange.COINLOCALLY, "XRP", Decimal("5"))


def test_start_refuses_bad_settings_and_leaves_no_thread() -> None:
    before = {thread for thread in threading.enumerate() if thread.name == "userstream-exchange"}
    with pytest.raises(ConfigurationError, match="unknown variant"):
        UserstreamExchange.start(variants=["numbers-as-roman"])
    with pytest.raises(ConfigurationError, match="listen_key_ttl"):
        UserstreamExchange.start(listen_key_ttl=0)
    with pytest.raises(ValueError, match="distinct"):
        UserstreamExchange.start(accounts=["a", "a"])
    with pytest.raises(TypeError, match="a list of names, not the string 'alice'"):
        UserstreamExchange.start(accounts="alice")
    assert {thread for thread in threading.enumerate() if thread.name == "userstream-exchange"} == before


def test_start_fails_cleanly_when_the_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=r"(?i)address already in use"):
            UserstreamExchange.start(port=port)
    assert not [thread for thread in threading.enumerate() if thread.name == "userstream-exchange"]


async def test_close_stops_the_server_and_its_thread_and_is_idempotent() -> None:
    ex = UserstreamExchange.start()
    (thread,) = [thread for thread in threading.enumerate() if thread.name == "userstream-exchange"]
    port = int(ex.base_url.rsplit(":", 1)[1])
    statuses = Statuses()
    async with client(ex, "coinlocally", on_status=statuses):
        await ex.aclose()  # the bot's loop keeps running while serve shuts down
        disconnected = await statuses.wait_for(State.DISCONNECTED)
    assert disconnected.reason is not None
    assert "SYSTEM notice" in disconnected.reason  # shutdown closes as the exchange does
    ex.close()
    assert not thread.is_alive()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
