"""Chaos with a ledger: a gateway streams a simulated market through random faults; nothing is unaccounted.

`userstream serve` (in-process) runs a simulated market on three accounts, each streamed on both exchanges
(six streams) by an in-process gateway with the SQLite sink and shortened timings: pings every 0.25 s, a
connection presumed dead after 1 s of silence, a planned rotation every 2 s, Bitmusa keepalives every 1 s
against a 4 s listenKey. A seeded injector fires random faults at random streams (drop, stall, listenKey
expiry and deletion, SYSTEM close, refused handshakes, delayed frames) for `USERSTREAM_CHAOS_SECONDS`; then
the faults stop, the market holds still, and the run is judged against the server's ledger (ledger.py):

- every planned rotation (the client closing a connection while its successor was live, as the server saw
  it) delivered each event published around it (from just before the successor opened to just after the old
  one closed) exactly once: zero lost, zero duplicated;
- no stream event was delivered twice, none that was never published, none out of order, and no event was
  lost without a reason the ledger knows (a fault's broken connection, or no connection at all);
- once quiet, every stream's `AccountState` equals the simulator's true state exactly (balances and open
  orders), as do the SQLite sink's `balances` and `orders` tables;
- the sink holds each event the gateway processed exactly once (its keys are exactly the processed events'
  keys), the fills of each order add up to its filled amount (none counted twice), and a gateway restarted
  on the same database starts from the sink's picture: its start-up snapshot finds nothing to correct, and
  it writes nothing.

The figures (events, losses by reason, faults by kind, longest outage, time to converge) are printed; run
with `-s` (as `make soak` does) to see them on success.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from userstream.eventjson import to_json
from userstream.events import BalanceUpdate, Event, Exchange, Fill, OrderUpdate
from userstream.gateway import Gateway, parse_config
from userstream.gateway.sse import Subscription
from userstream.server import running_server
from userstream.server.faults import RandomFaults
from userstream.server.ledger import LossReason, StreamAudit
from userstream.sinks.base import event_key

Chaos = Any  # conftest.Chaos
FAULT_RATE = 0.8  # faults per second, on average, over all six streams
CONVERGE_WITHIN = 30.0  # seconds; the bound on the quiet period, never reached when all is well


async def drain(subscription: Subscription, into: list[Event]) -> None:
    """Everything the gateway processes, in order, until it stops."""
    while (batch := await subscription.next_batch()) is not None:
        into.extend(message.event for message in batch)


def pictures_equal_truth(gateway: Gateway, server: Any, chaos: Chaos) -> bool:
    return all(
        chaos.state_picture(runtime.state.snapshot())
        == chaos.truth_picture(server.ledger(chaos.owner_of(runtime.name)))
        for runtime in gateway.accounts
    )


def divergence(gateway: Gateway, server: Any, chaos: Chaos) -> str:
    """Where each stream's picture differs from the truth: the held event (time, source) and the truth."""
    lines: list[str] = []
    for runtime in gateway.accounts:
        snapshot = runtime.state.snapshot()
        held_balances, held_orders = chaos.state_picture(snapshot)
        balances, orders = chaos.truth_picture(server.ledger(chaos.owner_of(runtime.name)))
        for asset in sorted(set(held_balances) | set(balances)):
            if held_balances.get(asset) != balances.get(asset):
                event = snapshot.balances.get(asset)
                when = None if event is None else (event.timestamp, event.source.value)
                lines.append(
                    f"{runtime.name} {asset}: held {held_balances.get(asset)} at {when}, "
                    f"truth {balances.get(asset)}"
                )
        for order_id in sorted(set(held_orders) | set(orders)):
            if held_orders.get(order_id) != orders.get(order_id):
                event = snapshot.open_orders.get(order_id)
                when = None if event is None else (event.timestamp, event.source.value)
                lines.append(
                    f"{runtime.name} order {order_id}: held {held_orders.get(order_id)} at {when}, "
                    f"truth {orders.get(order_id)}"
                )
        lines.append(
            f"{runtime.name}: {runtime.connection.value}, resyncs {runtime.resyncs}, "
            f"failures {runtime.resync_failures}, disconnects {runtime.disconnects}"
        )
    return "\n".join(lines)


def read_database(path: Path) -> tuple[list[tuple[int, str, str, str, str]], dict[str, Any]]:
    """(events rows (seq, key, account, kind, source), the state tables' rows by gateway account)."""
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute(
            "SELECT seq, key, account, kind, source FROM events ORDER BY seq"
        ).fetchall()
        tables: dict[str, Any] = {}
        for (account,) in connection.execute("SELECT DISTINCT account FROM balances"):
            balances = connection.execute(
                "SELECT asset, free, locked FROM balances WHERE account = ?", (account,)
            ).fetchall()
            orders = connection.execute(
                "SELECT id, symbol, side, status, price, amount, filled, remaining FROM orders"
                " WHERE account = ?",
                (account,),
            ).fetchall()
            tables[account] = (balances, orders)
    finally:
        connection.close()
    return rows, tables


async def test_chaos_loses_nothing_it_could_keep_and_converges_to_the_truth(
    chaos: Chaos, tmp_path: Path
) -> None:
    seed, seconds = chaos.seed, chaos.seconds
    database = tmp_path / "events.db"
    processed: list[Event] = []
    figures: dict[str, Any] = {"seed": seed, "seconds": seconds}
    async with running_server(chaos.server_config(seed)) as server:
        config = parse_config(chaos.gateway_document(server, database), source="chaos")
        gateway = Gateway(config, environ=chaos.environment())
        subscription = gateway.hub.subscribe(capacity=10**9)  # never dropped: the test keeps everything
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(drain(subscription, processed))
            async with gateway:
                await chaos.until(lambda: all(a.connection.value == "live" for a in gateway.accounts), 10.0)
                injector = RandomFaults(
                    server.faults,
                    chaos.owners,
                    rate=FAULT_RATE,
                    seed=f"{seed}:faults",
                    max_seconds=2.0,
                    max_delay_ms=300.0,
                )
                faults = tasks.create_task(injector.run())
                await asyncio.sleep(seconds)
                faults.cancel()
                await server.inject("clear")  # end every refusal and delay window
                quiet_at = time.monotonic()
                figures["published"] = server.pause_simulation()
                try:
                    await chaos.until(lambda: pictures_equal_truth(gateway, server, chaos), CONVERGE_WITHIN)
                except TimeoutError:
                    pytest.fail(f"seed {seed}: no convergence\n{divergence(gateway, server, chaos)}")
                figures["converged_after"] = time.monotonic() - quiet_at
                resyncs = {runtime.name: runtime.resyncs for runtime in gateway.accounts}
                snapshot_events = sum(runtime.snapshot_events for runtime in gateway.accounts)
            # the gateway stopped: its sink is flushed and closed, the subscription drained
        audits = {
            (owner, exchange): server.sent.audit(
                owner,
                Exchange(exchange),
                [
                    event
                    for event in processed
                    if event.account == f"{owner}-{exchange}"
                    and isinstance(event, BalanceUpdate | OrderUpdate)
                ],
                now=quiet_at,
            )
            for owner in chaos.owners
            for exchange in chaos.exchanges
        }
        records = [record for owner in chaos.owners for record in server.sent.connections(owner)]
        figures["written"] = sum(record.written.count for record in records)
        figures["connections"] = len(records)
        fired = Counter(report.fault.kind.value for report in injector.fired)  # the final `clear` is ours
        figures["faults"] = dict(sorted(fired.items()))
        figures["faults_hit_connections"] = sum(report.connections for report in injector.fired)
        truth = {owner: chaos.truth_picture(server.ledger(owner)) for owner in chaos.owners}

        rows_before, tables = read_database(database)
        # A gateway restarted on the same database while the market holds still starts from the picture the
        # sink keeps; its start-up snapshot must find nothing to correct.
        restarted: list[Event] = []
        again = Gateway(config, environ=chaos.environment())
        second = again.hub.subscribe(capacity=10**9)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(drain(second, restarted))
            async with again:
                await chaos.until(lambda: all(runtime.resyncs >= 1 for runtime in again.accounts), 10.0)
                await chaos.until(lambda: pictures_equal_truth(again, server, chaos), 10.0)
        rows_after, tables_after = read_database(database)

    report = _report(
        figures,
        audits=audits,
        resyncs=resyncs,
        snapshot_events=snapshot_events,
        processed=processed,
        rows=rows_before,
    )
    print(report)

    # --- every planned rotation: zero lost, zero duplicated ---------------------------------------------
    rotations = [rotation for audit in audits.values() for rotation in audit.rotations]
    assert len(rotations) >= len(audits), report  # rotations really happened (about one per 2 s per stream)
    assert [r for r in rotations if not r.clean] == [], report
    # --- overall: no duplicate, no stranger, every loss explained ----------------------------------------
    for audit in audits.values():
        assert audit.duplicates == (), (audit.account, audit.exchange, report)
        assert audit.unmatched == (), (audit.account, audit.exchange, report)
        unexplained = [loss for loss in audit.lost if loss.reason is LossReason.UNEXPLAINED]
        assert unexplained == [], (audit.account, audit.exchange, report)
        assert audit.matched + len(audit.lost) == len(audit.audited)
    # --- the pictures converged to the truth: the gateway's (above) and the sink's tables ----------------
    for name, (balances, orders) in tables.items():
        assert chaos.table_picture(balances, orders) == truth[chaos.owner_of(name)], (name, report)
    assert sorted(tables) == sorted(runtime.name for runtime in gateway.accounts)
    # --- the sink: each processed event exactly once, and a restart adds no duplicate --------------------
    processed_keys = [event_key(event) for event in processed]
    stored_keys = [row[1] for row in rows_before]
    times = Counter(processed_keys)
    # named in the report, in processing order
    twice = [
        to_json(event).decode()
        for event, key in zip(processed, processed_keys, strict=True)
        if times[key] > 1
    ]
    assert twice == [], report  # the gateway processed nothing twice
    assert sorted(stored_keys) == sorted(processed_keys), report
    filled: dict[tuple[str, str], list[Fill]] = {}
    for event in processed:
        if isinstance(event, Fill):
            filled.setdefault((event.account, event.order_id), []).append(event)
    for (account, order_id), fills in filled.items():
        total = sum((fill.amount for fill in fills), Decimal(0))
        assert total == max(fill.order_filled for fill in fills), (account, order_id, fills)
    # the restarted gateway starts from the sink's picture, already the truth: its snapshot corrects nothing
    assert restarted == []
    assert rows_after == rows_before
    for name, (balances, orders) in tables_after.items():
        assert chaos.table_picture(balances, orders) == truth[chaos.owner_of(name)], (name, report)


def _report(
    figures: dict[str, Any],
    *,
    audits: dict[tuple[str, str], StreamAudit],
    resyncs: dict[str, int],
    snapshot_events: int,
    processed: list[Event],
    rows: list[Any],
) -> str:
    lost: Counter[str] = Counter()
    for audit in audits.values():
        lost.update(audit.lost_by_reason())
    rotations = [rotation for audit in audits.values() for rotation in audit.rotations]
    audited = sum(len(audit.audited) for audit in audits.values())
    delivered = sum(audit.matched for audit in audits.values())
    lines = [
        f"chaos run: seed {figures['seed']}, {figures['seconds']:g} s of faults, 3 accounts x 2 exchanges",
        f"  events published by the market:        {figures['published']} (each to both exchanges' streams)",
        f"  events audited (6 streams):            {audited}",
        f"  events written to sockets:             {figures['written']} "
        f"(rotation overlaps twice), {figures['connections']} connections",
        f"  stream events delivered (once each):   {delivered} ({100 * delivered / max(1, audited):.2f} %)",
        f"  duplicates delivered:                  {sum(len(a.duplicates) for a in audits.values())}",
        f"  lost, by reason:                       {dict(sorted(lost.items())) or 0}",
        f"  planned rotations:                     {len(rotations)}, "
        f"lost {sum(len(r.lost) for r in rotations)}, duplicated {sum(len(r.duplicated) for r in rotations)}",
        f"  faults fired:                          {figures['faults']} "
        f"(hitting {figures['faults_hit_connections']} connections)",
        f"  longest outage of a stream:            {max(a.longest_outage for a in audits.values()):.2f} s",
        f"  longest run of lost events:            {max(a.longest_lost_run for a in audits.values())}",
        f"  resyncs (snapshots taken):             {sum(resyncs.values())}, "
        f"correction events {snapshot_events}",
        f"  time to converge once quiet:           {figures['converged_after']:.2f} s",
        f"  events processed by the gateway:       {len(processed)} (fills included), "
        f"rows in SQLite {len(rows)}",
    ]
    for (owner, exchange), audit in sorted(audits.items()):
        lines.append(
            f"    {owner}-{exchange}: audited {len(audit.audited)}, delivered {audit.matched}, "
            f"lost {audit.lost_by_reason() or 0}, connections {audit.connections}, "
            f"rotations {len(audit.rotations)}, longest outage {audit.longest_outage:.2f} s"
        )
    return "\n".join(lines)
