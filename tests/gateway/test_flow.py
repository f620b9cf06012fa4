"""A known flow through the real gateway: two accounts on both exchanges, every output checked exactly.

The emulator publishes a known sequence of events to alice and bob; the gateway streams both accounts on
Bitmusa and on Coinlocally (four streams) into a SQLite sink. Then every output must hold exactly what the
sequence implies: the sink's rows (each event once), /accounts/.../balances, /orders and /fills, the lines
of /events, the counters of /metrics, and /healthz. No secret may appear in any of them, nor in the logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from decimal import Decimal
from typing import Any

from support.examples import COINLOCALLY_EXECUTION_REPORT
from userstream.eventjson import from_json, to_dict, to_json
from userstream.events import BalanceUpdate, Event, Exchange, Fill, OrderStatus, OrderType, OrderUpdate, Side
from userstream.gateway import AccountRuntime, ConnectionState, Gateway, parse_config
from userstream.protocol import coinlocally
from userstream.server import Account, ServerConfig, running_server

BASE_TIME = 1_700_703_548_000


def alice_events() -> list[dict[str, Any]]:
    """USDT is locked for a buy of 1 BTC at 13000; 0.4 of it fills (fee 0.0004 BTC)."""
    order = {
        "kind": "order",
        "id": "A1",
        "symbol": "BTC/USDT",
        "side": "buy",
        "type": "limit",
        "price": "13000",
        "amount": "1",
        "created_at": BASE_TIME,
    }
    return [
        {"kind": "balance", "asset": "USDT", "free": "1000.5", "locked": "13000", "timestamp": BASE_TIME + 1},
        {**order, "status": "open", "filled": "0", "cost": "0", "timestamp": BASE_TIME + 2},
        {
            **order,
            "status": "open",
            "filled": "0.4",
            "cost": "5200",
            "last_fill_amount": "0.4",
            "last_fill_price": "13000",
            "fee": "0.0004",
            "timestamp": BASE_TIME + 3,
        },
        {"kind": "balance", "asset": "BTC", "free": "0.3996", "locked": "0", "timestamp": BASE_TIME + 3},
        {"kind": "balance", "asset": "USDT", "free": "1000.5", "locked": "7800", "timestamp": BASE_TIME + 3},
    ]


def bob_events() -> list[dict[str, Any]]:
    """An order first seen already filled and closed, and the balance it left."""
    return [
        {"kind": "balance", "asset": "ETH", "free": "2", "locked": "0", "timestamp": BASE_TIME + 1},
        {
            "kind": "order",
            "id": "B1",
            "symbol": "ETH/USDT",
            "side": "sell",
            "type": "limit",
            "status": "closed",
            "price": "3500",
            "amount": "1",
            "filled": "1",
            "cost": "3500",
            "created_at": BASE_TIME,
            "timestamp": BASE_TIME + 2,
        },
    ]


def _balance(exchange: str, account: str, at: int, asset: str, *, free: str, locked: str) -> BalanceUpdate:
    return BalanceUpdate(
        exchange=Exchange(exchange),
        account=account,
        timestamp=BASE_TIME + at,
        asset=asset,
        free=Decimal(free),
        locked=Decimal(locked),
    )


def _order(exchange: str, account: str, at: int, **values: Any) -> OrderUpdate:
    coinlocally = exchange == "coinlocally"
    symbol = values.pop("symbol")
    status = values.pop("status")
    raw_status = values.pop("raw_status")
    fills = values.pop("fill", ("0", "0", "0") if coinlocally else (None, None, None))
    return OrderUpdate(
        exchange=Exchange(exchange),
        account=account,
        timestamp=BASE_TIME + at,
        symbol=symbol,
        raw_symbol=symbol.replace("/", "") if coinlocally else symbol,
        type=OrderType.LIMIT,
        raw_type="LIMIT" if coinlocally else "LIMIT_PRICE",
        status=status,
        raw_status=raw_status,
        last_fill_amount=None if fills[0] is None else Decimal(fills[0]),
        last_fill_price=None if fills[1] is None else Decimal(fills[1]),
        fee=None if fills[2] is None else Decimal(fills[2]),
        created_at=BASE_TIME,
        **values,
    )


def expected_alice(exchange: str) -> list[Event]:
    """What the gateway makes of alice's events on `exchange`: each event, and the fill it reveals."""
    coinlocally = exchange == "coinlocally"
    name = f"alice-{exchange}"
    common = {
        "id": "A1",
        "symbol": "BTC/USDT",
        "side": Side.BUY,
        "price": Decimal("13000"),
        "amount": Decimal("1"),
    }
    fill = Fill(
        exchange=Exchange(exchange),
        account=name,
        timestamp=BASE_TIME + 3,
        order_id="A1",
        symbol="BTC/USDT",
        side=Side.BUY,
        amount=Decimal("0.4"),
        # Coinlocally reports the execution (l, L, n); Bitmusa's fill is derived from the growth of
        # tradedAmount and value, with its average price and no fee.
        price=Decimal("13000"),
        cost=Decimal("5200.0") if coinlocally else Decimal("5200"),
        fee=Decimal("0.0004") if coinlocally else None,
        fee_asset="BTC" if coinlocally else None,  # a buy pays its fee in the base asset
        order_filled=Decimal("0.4"),
        derived=not coinlocally,
    )
    return [
        _balance(exchange, name, 1, "USDT", free="1000.5", locked="13000"),
        _order(
            exchange,
            name,
            2,
            **common,
            status=OrderStatus.OPEN,
            raw_status="NEW" if coinlocally else "TRADING",
            filled=Decimal("0"),
            remaining=Decimal("1"),
            cost=Decimal("0"),
        ),
        _order(
            exchange,
            name,
            3,
            **common,
            status=OrderStatus.OPEN,
            raw_status="PART_FILLED" if coinlocally else "TRADING",
            filled=Decimal("0.4"),
            remaining=Decimal("0.6"),
            cost=Decimal("5200"),
            fill=("0.4", "13000", "0.0004") if coinlocally else (None, None, None),
        ),
        fill,
        _balance(exchange, name, 3, "BTC", free="0.3996", locked="0"),
        _balance(exchange, name, 3, "USDT", free="1000.5", locked="7800"),
    ]


def expected_bob(exchange: str) -> list[Event]:
    coinlocally = exchange == "coinlocally"
    name = f"bob-{exchange}"
    return [
        _balance(exchange, name, 1, "ETH", free="2", locked="0"),
        _order(
            exchange,
            name,
            2,
            id="B1",
            symbol="ETH/USDT",
            side=Side.SELL,
            price=Decimal("3500"),
            amount=Decimal("1"),
            status=OrderStatus.CLOSED,
            raw_status="FILLED" if coinlocally else "COMPLETED",
            filled=Decimal("1"),
            remaining=Decimal("0"),
            cost=Decimal("3500"),
        ),
        Fill(
            exchange=Exchange(exchange),
            account=name,
            timestamp=BASE_TIME + 2,
            order_id="B1",
            symbol="ETH/USDT",
            side=Side.SELL,
            amount=Decimal("1"),
            price=Decimal("3500"),
            cost=Decimal("3500"),
            fee=None,
            order_filled=Decimal("1"),
            derived=True,
        ),
    ]


EXPECTED: dict[str, list[Event]] = {
    f"{owner}-{exchange}": (expected_alice if owner == "alice" else expected_bob)(exchange)
    for owner in ("alice", "bob")
    for exchange in ("bitmusa", "coinlocally")
}
TOTAL = sum(len(events) for events in EXPECTED.values())  # 18


async def _run_flow(lab: Any, gateway: Gateway) -> None:
    """Publish both accounts' events, then wait until the gateway has taken and written all of them."""
    await lab.ingest("alice", alice_events())
    await lab.ingest("bob", bob_events())
    await lab.until(lambda: sum(sum(a.events.values()) for a in gateway.accounts) == TOTAL)
    await lab.until(lambda: all(sink.runner.written == TOTAL for sink in gateway.sinks))


def _sqlite_rows(path: str) -> list[tuple[str, str, str]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("SELECT key, account, json FROM events ORDER BY seq").fetchall()
    finally:
        connection.close()


async def test_every_event_reaches_the_sqlite_sink_exactly_once(lab: Any) -> None:
    async with lab() as env:
        database = str(env.tmp_path / "events.db")
        config = env.config(sinks=[{"type": "sqlite", "path": database}])
        async with env.gateway(config) as gateway:
            await _run_flow(env, gateway)
        rows = _sqlite_rows(database)
    assert len(rows) == TOTAL
    assert len({key for key, _, _ in rows}) == TOTAL
    for name, expected in EXPECTED.items():
        stored = [from_json(line) for _, account, line in rows if account == name]
        assert stored == expected, name
        assert [line for _, account, line in rows if account == name] == [
            to_json(event).decode() for event in expected
        ]


async def test_accounts_balances_orders_and_fills_are_the_exact_picture(lab: Any) -> None:
    async with lab() as env, env.gateway() as gateway:
        await _run_flow(env, gateway)
        status, balances = await env.get(gateway, "/accounts/alice-coinlocally/balances")
        assert status == 200
        assert balances == {
            "account": "alice-coinlocally",
            "exchange": "coinlocally",
            "balances": [
                {
                    "kind": "balance",
                    "exchange": "coinlocally",
                    "account": "alice-coinlocally",
                    "timestamp": BASE_TIME + 3,
                    "source": "stream",
                    "asset": "BTC",
                    "free": "0.3996",
                    "locked": "0",
                    "total": "0.3996",
                },
                {
                    "kind": "balance",
                    "exchange": "coinlocally",
                    "account": "alice-coinlocally",
                    "timestamp": BASE_TIME + 3,
                    "source": "stream",
                    "asset": "USDT",
                    "free": "1000.5",
                    "locked": "7800",
                    "total": "8800.5",
                },
            ],
        }
        status, orders = await env.get(gateway, "/accounts/alice-bitmusa/orders")
        assert status == 200
        assert orders == {
            "account": "alice-bitmusa",
            "exchange": "bitmusa",
            "orders": [
                {
                    "kind": "order",
                    "exchange": "bitmusa",
                    "account": "alice-bitmusa",
                    "timestamp": BASE_TIME + 3,
                    "source": "stream",
                    "id": "A1",
                    "symbol": "BTC/USDT",
                    "raw_symbol": "BTC/USDT",
                    "side": "buy",
                    "type": "limit",
                    "raw_type": "LIMIT_PRICE",
                    "status": "open",
                    "raw_status": "TRADING",
                    "price": "13000",
                    "amount": "1",
                    "filled": "0.4",
                    "remaining": "0.6",
                    "cost": "5200",
                    "last_fill_amount": None,
                    "last_fill_price": None,
                    "fee": None,
                    "created_at": BASE_TIME,
                }
            ],
        }
        # bob's only order closed: no open orders; its fill is there.
        assert await env.get(gateway, "/accounts/bob-bitmusa/orders") == (
            200,
            {"account": "bob-bitmusa", "exchange": "bitmusa", "orders": []},
        )
        status, fills = await env.get(gateway, "/accounts/bob-coinlocally/fills")
        assert (status, fills["fill_count"]) == (200, 1)
        assert fills["fills"] == [to_dict(EXPECTED["bob-coinlocally"][2])]
        # Each account's picture, for all four: exactly what its events imply.
        for name, expected in EXPECTED.items():
            status, body = await env.get(gateway, f"/accounts/{name}/balances")
            latest: dict[str, Any] = {}
            for event in expected:
                if isinstance(event, BalanceUpdate):
                    latest[event.asset] = to_dict(event)
            assert body["balances"] == [latest[asset] for asset in sorted(latest)], name
        assert await env.get(gateway, "/accounts/nobody/balances") == (
            404,
            {"error": "unknown account 'nobody'"},
        )


async def test_accounts_summary(lab: Any) -> None:
    async with lab() as env, env.gateway() as gateway:
        await _run_flow(env, gateway)
        status, body = await env.get(gateway, "/accounts/alice-bitmusa")
    assert status == 200
    dynamic = ("seconds_in_state", "seconds_since_last_event", "lag_seconds")
    assert all(isinstance(body.pop(key), float) for key in dynamic)
    assert body == {
        "name": "alice-bitmusa",
        "exchange": "bitmusa",
        "state": "live",
        "healthy": True,
        "error": None,
        "events": {"balance": 3, "order": 2, "fill": 1},
        "snapshot_events": 0,
        "reconnects": 0,
        "disconnects": 0,
        "keepalive_failures": 0,
        "resyncs": 0,
        "resync_failures": 0,
        "balances": 2,
        "open_orders": 1,
        "fills": 1,
    }


async def test_events_stream_the_exact_sse_lines_filtered_by_account(lab: Any) -> None:
    async with lab() as env, env.gateway() as gateway:
        url = f"{gateway.http_url}/events?account=alice-coinlocally"
        everything = f"{gateway.http_url}/events"
        async with env.http.get(url) as only_alice, env.http.get(everything) as every_account:
            assert only_alice.status == 200
            assert only_alice.headers["Content-Type"] == "text/event-stream; charset=utf-8"
            for response in (only_alice, every_account):  # subscribed from here on
                assert await response.content.readline() == b": subscribed\n"
                assert await response.content.readline() == b"\n"
            await _run_flow(env, gateway)
            expected = b"".join(
                b"event: " + event.kind.encode() + b"\ndata: " + to_json(event) + b"\n\n"
                for event in EXPECTED["alice-coinlocally"]
            )
            async with asyncio.timeout(10):
                received = await only_alice.content.readexactly(len(expected))
                everything_lines = [await every_account.content.readline() for _ in range(TOTAL * 3)]
        assert received == expected
        data = [line[len(b"data: ") : -1] for line in everything_lines if line.startswith(b"data: ")]
        assert sorted(data) == sorted(to_json(e) for events in EXPECTED.values() for e in events)
        assert gateway.hub.dropped_subscribers == 0


async def test_a_slow_events_subscriber_is_dropped_and_counted(lab: Any) -> None:
    async with lab() as env:
        config = env.config(accounts=("alice",), exchanges=("coinlocally",), sse_queue=1)
        async with env.gateway(config) as gateway:
            async with env.http.get(f"{gateway.http_url}/events") as response:
                assert await response.content.readline() == b": subscribed\n"
                assert await response.content.readline() == b"\n"
                # Three balances of one moment come in one Coinlocally frame: the gateway publishes them back
                # to back, and a subscriber whose buffer holds one cannot keep up.
                await env.ingest(
                    "alice",
                    [
                        {
                            "kind": "balance",
                            "asset": asset,
                            "free": "1",
                            "locked": "0",
                            "timestamp": BASE_TIME,
                        }
                        for asset in ("BTC", "ETH", "USDT")
                    ],
                )
                async with asyncio.timeout(10):
                    rest = await response.content.read()
            assert rest == (
                b'event: dropped\ndata: {"reason":"slow consumer: more than 1 events behind"}\n\n'
            )
            assert gateway.hub.dropped_subscribers == 1
            _, metrics = await env.text(gateway, "/metrics")
            assert "userstream_gateway_sse_dropped_subscribers_total 1\n" in metrics
            assert "userstream_gateway_sse_subscribers 0\n" in metrics


async def test_metrics_count_the_flow_exactly(lab: Any) -> None:
    async with lab() as env:
        database = str(env.tmp_path / "events.db")
        config = env.config(sinks=[{"type": "sqlite", "path": database}])
        async with env.gateway(config) as gateway:
            await _run_flow(env, gateway)
            status, text = await env.text(gateway, "/metrics")
            async with env.http.get(f"{gateway.http_url}/metrics") as response:
                content_type = response.headers["Content-Type"]
    assert status == 200
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    lines = text.splitlines()
    prefix = "userstream_gateway_events_total"
    events = [line.removeprefix(prefix) for line in lines if line.startswith(prefix + "{")]
    assert events == [
        '{account="alice-bitmusa",exchange="bitmusa",kind="balance"} 3',
        '{account="alice-bitmusa",exchange="bitmusa",kind="order"} 2',
        '{account="alice-bitmusa",exchange="bitmusa",kind="fill"} 1',
        '{account="alice-coinlocally",exchange="coinlocally",kind="balance"} 3',
        '{account="alice-coinlocally",exchange="coinlocally",kind="order"} 2',
        '{account="alice-coinlocally",exchange="coinlocally",kind="fill"} 1',
        '{account="bob-bitmusa",exchange="bitmusa",kind="balance"} 1',
        '{account="bob-bitmusa",exchange="bitmusa",kind="order"} 1',
        '{account="bob-bitmusa",exchange="bitmusa",kind="fill"} 1',
        '{account="bob-coinlocally",exchange="coinlocally",kind="balance"} 1',
        '{account="bob-coinlocally",exchange="coinlocally",kind="order"} 1',
        '{account="bob-coinlocally",exchange="coinlocally",kind="fill"} 1',
    ]
    sink = f'sink="sqlite:{database}"'
    for line in (
        "# TYPE userstream_gateway_events_total counter",
        'userstream_gateway_account_up{account="alice-bitmusa",exchange="bitmusa"} 1',
        'userstream_gateway_account_failed{account="bob-coinlocally",exchange="coinlocally"} 0',
        'userstream_gateway_connections_total{account="alice-bitmusa",exchange="bitmusa"} 1',
        'userstream_gateway_reconnects_total{account="alice-coinlocally",exchange="coinlocally"} 0',
        'userstream_gateway_keepalive_failures_total{account="alice-bitmusa",exchange="bitmusa"} 0',
        'userstream_gateway_snapshot_resyncs_total{account="alice-bitmusa",exchange="bitmusa"} 0',
        'userstream_gateway_stream_queue_depth{account="bob-bitmusa",exchange="bitmusa"} 0',
        'userstream_gateway_stream_queue_bytes{account="bob-bitmusa",exchange="bitmusa"} 0',
        f"userstream_gateway_sink_up{{{sink}}} 1",
        f"userstream_gateway_sink_written_total{{{sink}}} {TOTAL}",
        f"userstream_gateway_sink_queue_depth{{{sink}}} 0",
        f"userstream_gateway_sink_dropped_total{{{sink}}} 0",
        f"userstream_gateway_sink_retries_total{{{sink}}} 0",
        "userstream_gateway_sse_subscribers 0",
        "userstream_gateway_healthy 1",
    ):
        assert line in lines, line
    for family in ("seconds_since_last_event", "event_lag_seconds"):
        samples = [line for line in lines if line.startswith(f"userstream_gateway_{family}{{")]
        assert len(samples) == 4
        assert all(float(line.rsplit(" ", 1)[1]) >= 0 for line in samples)
    # Every sample line belongs to a family announced just before it.
    families = {line.split()[2] for line in lines if line.startswith("# TYPE ")}
    for line in lines:
        if not line.startswith("#"):
            assert line.split("{")[0].split(" ")[0] in families, line


async def test_no_secret_in_healthz_metrics_accounts_or_logs(lab: Any, all_logs: list[str]) -> None:
    async with lab() as env, env.gateway() as gateway:
        await _run_flow(env, gateway)
        bodies = [
            (await env.text(gateway, path))[1]
            for path in ("/healthz", "/metrics", "/accounts", "/accounts/alice-bitmusa")
        ]
        await env.server.drop("alice")  # a reconnect: more logs, statuses and counters
        await env.until(
            lambda: all(a.disconnects >= 1 for a in gateway.accounts if a.name.startswith("alice"))
        )
        await env.until_streaming(gateway)
        bodies.append((await env.text(gateway, "/healthz"))[1])
    assert all_logs  # the check below saw the logs
    for secret in env.secrets:
        for text in (*bodies, *all_logs, repr(gateway), repr(gateway.config)):
            assert secret not in text


async def test_healthz_is_200_while_streaming_and_503_once_an_account_is_rejected(lab: Any) -> None:
    """carol's exchange restarts with new credentials for her: carol fails, alice keeps streaming."""

    def carol_exchange(token: str, port: int) -> ServerConfig:
        carol = Account(name="carol", uid=7, coinlocally_token=token)
        return ServerConfig(accounts=(carol,), port=port, close_timeout=1.0)

    async with lab() as env, contextlib.AsyncExitStack() as stack:
        first = running_server(carol_exchange("carol-old-token-SECRET", 0))
        exchange = await first.__aenter__()
        document = env.document(accounts=("alice",))
        document["accounts"].append(
            {
                "name": "carol-coinlocally",
                "exchange": "coinlocally",
                "token_env": "CAROL_TOKEN",
                "ws_url": exchange.ws_url + "/spotws_user/userData/ws",
                "auth_attempts": 1,
            }
        )
        env.environ["CAROL_TOKEN"] = "carol-old-token-SECRET"
        gateway = Gateway(parse_config(document), environ=env.environ)
        await gateway.start()
        stack.push_async_callback(gateway.stop)
        await env.until(lambda: all(a.connection is ConnectionState.LIVE for a in gateway.accounts))
        status, health = await env.get(gateway, "/healthz")
        assert (status, health["status"]) == (200, "ok")
        assert {name: entry["state"] for name, entry in health["accounts"].items()} == {
            "alice-bitmusa": "live",
            "alice-coinlocally": "live",
            "carol-coinlocally": "live",
        }

        # carol's exchange goes away and comes back on the same port, where her old token is now refused.
        await first.__aexit__(None, None, None)
        async with running_server(carol_exchange("carol-new-token", exchange.port)):
            carol = gateway.account("carol-coinlocally")
            assert carol is not None
            await env.until(lambda: carol.connection is ConnectionState.FAILED)
            status, health = await env.get(gateway, "/healthz")
        assert (status, health["status"]) == (503, "down")
        assert health["accounts"]["carol-coinlocally"] == {
            "exchange": "coinlocally",
            "state": "failed",
            "healthy": False,
            "seconds_in_state": health["accounts"]["carol-coinlocally"]["seconds_in_state"],
            "error": carol.error,
        }
        assert carol.error == (  # issue 12: the URL tried is named
            f"{exchange.ws_url}/spotws_user/userData/ws: Coinlocally refused the 'token' header (HTTP 401)"
        )
        assert [entry["state"] for entry in health["accounts"].values()] == ["live", "live", "failed"]

        # alice keeps streaming.
        await env.ingest("alice", alice_events()[:1])
        alices = [a for a in gateway.accounts if a.name.startswith("alice")]
        await env.until(lambda: all(a.events["balance"] == 1 for a in alices))
        status, metrics = await env.text(gateway, "/metrics")
        assert (
            'userstream_gateway_account_failed{account="carol-coinlocally",exchange="coinlocally"} 1'
            in metrics
        )
        assert 'userstream_gateway_account_up{account="alice-bitmusa",exchange="bitmusa"} 1' in metrics
        assert "userstream_gateway_healthy 0" in metrics
        for text in (str(health), metrics):
            assert "carol-old-token-SECRET" not in text


async def test_an_unknown_account_in_the_events_filter_is_404(lab: Any) -> None:
    async with (
        lab() as env,
        env.gateway() as gateway,
        env.http.get(f"{gateway.http_url}/events?account=nobody") as response,
    ):
        assert response.status == 404
        assert await response.json() == {"error": "unknown account 'nobody'"}


async def test_stop_flushes_what_the_sinks_hold(lab: Any) -> None:
    """A sink behind (here: a JSONL file) is written out before the gateway reports it stopped."""
    async with lab() as env:
        path = env.tmp_path / "events.jsonl"
        config = env.config(sinks=[{"type": "jsonl", "path": str(path)}])
        async with env.gateway(config) as gateway:
            await env.ingest("alice", alice_events())
            await env.ingest("bob", bob_events())
            await env.until(lambda: sum(sum(a.events.values()) for a in gateway.accounts) == TOTAL)
        assert gateway.lost_events == 0
    lines = path.read_bytes().splitlines()
    assert sorted(lines) == sorted(to_json(e) for events in EXPECTED.values() for e in events)


async def test_the_gateway_takes_events_without_their_raw_text(lab: Any) -> None:
    # Nothing the gateway holds (state, fill tracker, every sink's buffer) keeps a wire message, which a
    # hostile peer pads to a mebibyte (issue 13): `absorb`, the pipeline's first step, drops it.
    async with lab() as env:
        config = env.config(accounts=("alice",), exchanges=("coinlocally",))
    runtime = AccountRuntime(config.accounts[0])
    (report,) = coinlocally.Parser(account="alice-coinlocally")(COINLOCALLY_EXECUTION_REPORT).events  # type: ignore[union-attr]
    assert report.raw == COINLOCALLY_EXECUTION_REPORT
    produced = runtime.absorb(report, wall_ms=report.timestamp)
    assert [(item.kind, item.raw) for item in produced] == [("order", ""), ("fill", ""), ("fill", "")]
    assert produced[0] == report
    assert [order.raw for order in runtime.state.snapshot().open_orders.values()] == [""]
