"""The gateway's picture converges to the exchange's: an initial snapshot, and resyncs after lost events.

Events the streams never carried (published before the gateway connected, or while its connections were
cut) reach the gateway through the client's REST snapshot resync as `source: snapshot` corrections, which go
through the same pipeline as stream events: the state, the fill tracker, the sinks.
"""

from __future__ import annotations

import asyncio
import sqlite3
from decimal import Decimal
from typing import Any

from userstream.eventjson import from_json
from userstream.events import Fill, Source
from userstream.gateway import Gateway, parse_config

BASE_TIME = 1_700_703_548_000


def alice_events() -> list[dict[str, Any]]:
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
        {**order, "status": "open", "filled": "0.4", "cost": "5200", "timestamp": BASE_TIME + 3},
        {"kind": "balance", "asset": "BTC", "free": "0.3996", "locked": "0", "timestamp": BASE_TIME + 3},
        {"kind": "balance", "asset": "USDT", "free": "1000.5", "locked": "7800", "timestamp": BASE_TIME + 3},
    ]


async def test_a_gateway_started_after_the_events_learns_them_from_its_initial_snapshot(lab: Any) -> None:
    async with lab() as env:
        await env.ingest("alice", alice_events())  # no stream is open: only a snapshot can tell
        database = str(env.tmp_path / "events.db")
        document = env.document(
            accounts=("alice",), resync=True, sinks=[{"type": "sqlite", "path": database}]
        )
        for table in document["accounts"]:
            table["snapshot_symbols"] = ["BTC/USDT"]  # open orders are listed per symbol
        async with env.gateway(parse_config(document)) as gateway:
            await env.until(lambda: all(account.resyncs == 1 for account in gateway.accounts))
            # balances: 2, the open order: 1, the fill its filled amount implies: 1
            await env.until(lambda: all(sink.runner.written == 8 for sink in gateway.sinks))
            pictures = {}
            for account in gateway.accounts:
                _, balances = await env.get(gateway, f"/accounts/{account.name}/balances")
                _, orders = await env.get(gateway, f"/accounts/{account.name}/orders")
                pictures[account.name] = (balances["balances"], orders["orders"])
        rows = sqlite3.connect(database).execute("SELECT json FROM events ORDER BY seq").fetchall()
    for name, (balances, orders) in pictures.items():
        assert [(b["asset"], b["free"], b["locked"], b["source"]) for b in balances] == [
            ("BTC", "0.3996", "0", "snapshot"),
            ("USDT", "1000.5", "7800", "snapshot"),
        ], name
        assert [(o["id"], o["status"], o["filled"], o["cost"], o["source"]) for o in orders] == [
            ("A1", "open", "0.4", "5200", "snapshot")
        ], name
    stored = [from_json(line) for (line,) in rows]
    assert all(event.source is Source.SNAPSHOT for event in stored)
    for name in ("alice-bitmusa", "alice-coinlocally"):
        mine = [event for event in stored if event.account == name]
        assert sorted(type(event).__name__ for event in mine) == [
            "BalanceUpdate",
            "BalanceUpdate",
            "Fill",
            "OrderUpdate",
        ]
        (fill,) = (event for event in mine if isinstance(event, Fill))
        assert (fill.order_id, fill.amount, fill.cost, fill.derived) == (
            "A1",
            Decimal("0.4"),
            Decimal("5200"),
            True,
        )


def _picture(gateway: Gateway, name: str) -> tuple[dict[str, tuple[Decimal, Decimal]], dict[str, Decimal]]:
    account = gateway.account(name)
    assert account is not None
    snapshot = account.state.snapshot()
    balances = {asset: (b.free, b.locked) for asset, b in snapshot.balances.items()}
    return balances, {order_id: order.filled for order_id, order in snapshot.open_orders.items()}


async def test_the_picture_equals_the_simulated_ledger_after_connections_are_cut(lab: Any) -> None:
    """A simulated market keeps trading while every connection is cut twice; once it holds still, each of the
    four streams' picture is the ledger's (balances and open orders), gaps included."""
    async with lab(simulate_rate=400.0, seed=11) as env:
        symbols = ["BTC/USDT", "ETH/USDT", "XRP/USDT"]
        document = env.document(resync=True)
        for table in document["accounts"]:
            table["snapshot_symbols"] = symbols
        async with env.gateway(parse_config(document)) as gateway:
            for cut in (1, 2):
                await env.until(lambda c=cut: all(sum(a.events.values()) > 40 * c for a in gateway.accounts))
                for owner in ("alice", "bob"):
                    await env.server.drop(owner)
                await env.until(lambda c=cut: all(a.resyncs >= c + 1 for a in gateway.accounts))
            env.server.pause_simulation()
            ledgers = {owner: env.server.ledger(owner) for owner in ("alice", "bob")}
            expected = {
                owner: (
                    dict(ledger.balances),
                    {order_id: order.filled for order_id, order in ledger.open_orders.items()},
                )
                for owner, ledger in ledgers.items()
            }
            # The streams catch up with what was published before the pause (nothing is lost for good).
            async with asyncio.timeout(10):
                while any(  # noqa: ASYNC110 - the pictures have no change signal to await
                    _picture(gateway, a.name) != expected[a.name.split("-")[0]] for a in gateway.accounts
                ):
                    await asyncio.sleep(0.02)
            for account in gateway.accounts:
                assert _picture(gateway, account.name) == expected[account.name.split("-")[0]]
                assert account.disconnects == 2
                assert account.snapshot_events > 0  # the opening balances came by snapshot, if nothing else


async def test_a_gateway_restarted_on_its_database_corrects_what_changed_while_it_was_down(lab: Any) -> None:
    """The second run starts from the picture the SQLite sink kept: its first snapshot closes the order that
    ended while no gateway ran (the sink's `orders` table would otherwise keep it open forever) and fills
    only what was filled meanwhile (not the whole filled amount again)."""

    def order(order_id: str, status: str, filled: str, cost: str, t: int) -> dict[str, Any]:
        return {
            "kind": "order",
            "id": order_id,
            "symbol": "BTC/USDT",
            "side": "buy",
            "type": "limit",
            "status": status,
            "price": "14000",
            "amount": "1",
            "filled": filled,
            "cost": cost,
            "created_at": BASE_TIME,
            "timestamp": BASE_TIME + t,
        }

    def usdt(free: str, t: int) -> dict[str, Any]:
        return {"kind": "balance", "asset": "USDT", "free": free, "locked": "0", "timestamp": BASE_TIME + t}

    async with lab() as env:
        database = env.tmp_path / "events.db"
        document = env.document(
            accounts=("alice",), resync=True, sinks=[{"type": "sqlite", "path": str(database)}]
        )
        for table in document["accounts"]:
            table["snapshot_symbols"] = ["BTC/USDT"]
        config = parse_config(document)
        first_run = [usdt("100", 1), order("A1", "open", "0", "0", 2), order("A2", "open", "0.4", "5600", 3)]
        async with env.gateway(config) as gateway:
            # The initial snapshot (of an empty account) first: the first run's events must come over the
            # stream. Ingested while that snapshot is under way, they may reach it before the stream (then
            # they are stored as `source: snapshot`, the 0.4 fill among them), or only some of them may:
            # stamped in 2023, before the snapshot's request time, the others are then "corrected" by it.
            await env.until(lambda: all(a.resyncs == 1 for a in gateway.accounts))
            await env.ingest("alice", first_run)
            await env.until(lambda: all(sum(a.events.values()) >= 4 for a in gateway.accounts))
        # while no gateway runs: A1 is canceled, A2 fills further, USDT moves
        await env.ingest(
            "alice", [order("A1", "canceled", "0", "0", 10), order("A2", "open", "0.6", "8400", 11)]
        )
        await env.ingest("alice", [usdt("50", 12)])
        async with env.gateway(config) as gateway:
            await env.until(lambda: all(a.resyncs == 1 for a in gateway.accounts))
            # `resyncs` counts a snapshot once its corrections are queued in the client, not once the gateway
            # has taken them: wait until each account absorbed them (USDT, the end of A1, A2's new filled
            # amount, and the fill it implies), so the sinks have them too before `pending` is read.
            await env.until(lambda: all(a.snapshot_events == 4 for a in gateway.accounts))
            await env.until(lambda: all(sink.runner.pending == 0 for sink in gateway.sinks))
            pictures = {a.name: sorted(a.state.snapshot().open_orders) for a in gateway.accounts}
        connection = sqlite3.connect(database)
        try:
            open_orders = connection.execute(
                "SELECT account, id, filled FROM orders ORDER BY account"
            ).fetchall()
            finished = connection.execute(
                "SELECT account, id, raw_status FROM finished_orders ORDER BY account"
            ).fetchall()
            fills = connection.execute(
                "SELECT account, json FROM events WHERE kind = 'fill' ORDER BY account, seq"
            ).fetchall()
        finally:
            connection.close()
    names = ("alice-bitmusa", "alice-coinlocally")
    assert pictures == {name: ["A2"] for name in names}
    assert open_orders == [(name, "A2", "0.6") for name in names]
    assert finished == [(name, "A1", "NOT_IN_SNAPSHOT") for name in names]
    stored_fills = [(account, from_json(body)) for account, body in fills]
    amounts = [
        (account, fill.amount, fill.source) for account, fill in stored_fills if isinstance(fill, Fill)
    ]
    assert amounts == [
        (name, amount, source)
        for name in names
        for amount, source in ((Decimal("0.4"), Source.STREAM), (Decimal("0.2"), Source.SNAPSHOT))
    ]


async def test_the_stream_queue_depth_counts_the_snapshot_corrections_still_waiting(
    lab: Any, redis_server: Any
) -> None:
    """A Redis sink that is down, with room for one event, holds the account's task: of the initial
    snapshot's three corrections, one is in the sink, one in the task's hands, one still in the client's
    queue, where two stream events join it. `stream_queue_depth` says 3 (it said 0: the corrections were
    delivered but never received, and the difference of those counters hid as many waiting events)."""

    def usdt(free: str, t: int) -> dict[str, Any]:
        return {"kind": "balance", "asset": "USDT", "free": free, "locked": "0", "timestamp": BASE_TIME + t}

    async with lab() as env:
        await env.ingest(
            "alice",
            [
                usdt("1", 1),
                {"kind": "balance", "asset": "BTC", "free": "2", "locked": "0", "timestamp": BASE_TIME + 1},
                {"kind": "balance", "asset": "ETH", "free": "3", "locked": "0", "timestamp": BASE_TIME + 1},
            ],
        )
        redis_server.stop()
        sink = {"type": "redis", "url": redis_server.url, "capacity": 1}
        config = parse_config(
            env.document(accounts=("alice",), exchanges=("bitmusa",), resync=True, sinks=[sink])
        )
        async with env.gateway(config) as gateway:
            (account,) = gateway.accounts
            await env.until(lambda: account.resyncs == 1 and account.events["balance"] == 2)
            await env.ingest("alice", [usdt("4", 2), usdt("5", 3)])
            await env.until(lambda: account.stats is not None and account.stats.events_received == 2)
            _, metrics = await env.text(gateway, "/metrics")
            depth = account.backlog
            redis_server.start()
            await env.until(lambda: gateway.sinks[0].runner.written == 5)
    line = 'userstream_gateway_stream_queue_depth{account="alice-bitmusa",exchange="bitmusa"} '
    assert depth == 3
    assert [row.removeprefix(line) for row in metrics.splitlines() if row.startswith(line)] == ["3"]
