"""Restart tolerance: `userstream gateway` killed with SIGKILL mid-stream, then started again on its database.

The emulator (in-process) trades on three accounts; the gateway runs as a real subprocess streaming all six
account-exchange pairs into a SQLite sink, watched over its own `/events` (Server-Sent Events). It is killed
with SIGKILL while events flow, the market trades on without it, and it is started again on the same
database. What must hold, and how it is checked:

- **Nothing committed is lost or doubled.** The first run's rows are a prefix of what it processed (per
  account, in order; the events it had accepted but not yet committed when killed are the only ones the
  kill loses, and they are counted); no key appears twice; the server's ledger finds no stream event stored
  twice and none it never published, across both runs.
- **It resumes and resyncs.** The second run goes live on every stream and takes its start-up snapshot,
  whose corrections cover what the exchange sent while no gateway ran (and what the kill lost).
- **No gap beyond what the exchange never delivered.** Once the market holds still, the second run's
  pictures (over HTTP) and the sink's `balances` and `orders` tables equal the simulator's true state
  exactly; every event the second run processed is in the sink once, and it exits 0 on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from support.processes import api_url, first_line, gateway, reaped, stop
from userstream.eventjson import from_json
from userstream.events import BalanceUpdate, Event, Exchange, Fill, OrderUpdate
from userstream.server import running_server
from userstream.server.ledger import LossReason
from userstream.sinks.base import event_key

Chaos = Any  # conftest.Chaos
WAIT = 20.0


@asynccontextmanager
async def gateway_process(config: Path, environ: dict[str, str]) -> AsyncIterator[tuple[Any, str]]:
    """`userstream gateway` as a subprocess: (process, its HTTP API's URL). Killed if still running."""
    async with reaped(await gateway(config, environ=environ)) as process:
        first = await first_line(process, WAIT)
        assert first.startswith("userstream gateway: 6 accounts; HTTP API on http://127.0.0.1:"), first
        yield process, api_url(first)


async def watch(url: str, into: list[Event]) -> None:
    """Every event of the gateway's `/events`, in order, until the gateway ends the stream or dies."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http,
            http.get(f"{url}/events") as response,
        ):
            async for line in response.content:
                if line.startswith(b"data: "):
                    into.append(from_json(line[6:].rstrip(b"\n")))
    except aiohttp.ClientError:
        return  # killed: the stream breaks


def rows_of(database: Path) -> list[tuple[int, str, str, str, str]]:
    """(seq, key, account, source, json) of every stored event, in write order (readable while written)."""
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return connection.execute(
            "SELECT seq, key, account, source, json FROM events ORDER BY seq"
        ).fetchall()
    except sqlite3.OperationalError:  # the sink has not created its tables yet
        return []
    finally:
        connection.close()


def tables_of(database: Path) -> dict[str, tuple[list[Any], list[Any]]]:
    connection = sqlite3.connect(database)
    try:
        accounts = [row[0] for row in connection.execute("SELECT DISTINCT account FROM balances")]
        return {
            account: (
                connection.execute(
                    "SELECT asset, free, locked FROM balances WHERE account = ?", (account,)
                ).fetchall(),
                connection.execute(
                    "SELECT id, symbol, side, status, price, amount, filled, remaining FROM orders"
                    " WHERE account = ?",
                    (account,),
                ).fetchall(),
            )
            for account in accounts
        }
    finally:
        connection.close()


async def http_picture(url: str, account: str) -> Any:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/accounts/{account}/balances") as response:
            balances = (await response.json())["balances"]
        async with http.get(f"{url}/accounts/{account}/orders") as response:
            orders = (await response.json())["orders"]
    return (
        {b["asset"]: (Decimal(b["free"]), Decimal(b["locked"])) for b in balances},
        {
            o["id"]: (
                o["symbol"],
                o["side"],
                o["status"],
                Decimal(o["price"]),
                Decimal(o["amount"]),
                Decimal(o["filled"]),
                Decimal(o["remaining"]),
            )
            for o in orders
        },
    )


async def accounts_info(url: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/accounts") as response:
        body: dict[str, Any] = await response.json()
    accounts: list[dict[str, Any]] = body["accounts"]
    return accounts


async def poll(check: Any, within: float = WAIT) -> None:
    """Await `check()` (a coroutine function returning bool) until it is true; TimeoutError after `within`."""
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 - another process's state has no signal to await
            await asyncio.sleep(0.05)


def keys_by_account(events: list[Event]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for event in events:
        grouped.setdefault(event.account, []).append(event_key(event))
    return grouped


async def test_a_gateway_killed_mid_stream_resumes_on_the_same_database(chaos: Chaos, tmp_path: Path) -> None:
    database = tmp_path / "events.db"
    config = tmp_path / "gateway.toml"
    environ = chaos.environment()
    seen_first: list[Event] = []
    seen_second: list[Event] = []
    async with running_server(chaos.server_config(chaos.seed, simulate_rate=100.0)) as server:
        config.write_text(chaos.to_toml(chaos.gateway_document(server, database)))

        async with gateway_process(config, environ) as (first, url), asyncio.TaskGroup() as tasks:
            tasks.create_task(watch(url, seen_first))

            async def flowing() -> bool:
                return len(rows_of(database)) > 300

            await poll(flowing)
            first.kill()  # SIGKILL, mid-stream: no flush, no close frame, no goodbye
            await first.wait()
        assert first.returncode == -signal.SIGKILL
        rows_first = rows_of(database)
        await asyncio.sleep(0.5)  # the market trades on while no gateway runs

        async with gateway_process(config, environ) as (second, url), asyncio.TaskGroup() as tasks:
            tasks.create_task(watch(url, seen_second))

            async def resumed() -> bool:
                accounts = await accounts_info(url)
                return all(a["state"] == "live" and a["resyncs"] >= 1 for a in accounts)

            await poll(resumed)
            await asyncio.sleep(1.0)  # streaming again
            server.pause_simulation()
            paused_at = time.monotonic()
            truth = {owner: chaos.truth_picture(server.ledger(owner)) for owner in chaos.owners}

            async def converged() -> bool:
                for account in await accounts_info(url):
                    if await http_picture(url, account["name"]) != truth[chaos.owner_of(account["name"])]:
                        return False
                return True

            await poll(converged)
            converged_after = time.monotonic() - paused_at
            _, stderr = await stop(second, within=WAIT)
        assert second.returncode == 0, stderr.decode()[-2000:]

        rows = rows_of(database)
        audits = {
            (owner, exchange): server.sent.audit(
                owner,
                Exchange(exchange),
                [
                    event
                    for event in (from_json(row[4]) for row in rows)
                    if event.account == f"{owner}-{exchange}"
                    and isinstance(event, BalanceUpdate | OrderUpdate)
                ],
                now=time.monotonic(),
            )
            for owner in chaos.owners
            for exchange in chaos.exchanges
        }

    # --- the first run's committed rows are a prefix of what it processed; the kill lost only its tail ---
    stored_first = keys_by_account([from_json(row[4]) for row in rows_first])
    uncommitted = 0
    for account, seen in keys_by_account(seen_first).items():
        stored = stored_first.get(account, [])
        start = stored.index(seen[0]) if seen[0] in stored else len(stored)  # /events may start late
        common = min(len(stored) - start, len(seen))
        assert stored[start : start + common] == seen[:common], account
        uncommitted += max(0, len(seen) - common)
    # --- no key twice; no stream event stored twice, none the server never published -----------------------
    keys = [row[1] for row in rows]
    assert len(keys) == len(set(keys))
    assert rows[: len(rows_first)] == rows_first
    for audit in audits.values():
        assert audit.duplicates == (), (audit.account, audit.exchange)
        assert audit.unmatched == (), (audit.account, audit.exchange)
        assert [loss for loss in audit.lost if loss.reason is LossReason.UNEXPLAINED] == []
    # --- the second run: every event it processed is in the sink once, after the first run's rows ---------
    stored_second = keys_by_account([from_json(row[4]) for row in rows[len(rows_first) :]])
    for account, seen in keys_by_account(seen_second).items():
        assert stored_second[account][-len(seen) :] == seen, account  # /events may have missed the start
    assert {row[3] for row in rows[len(rows_first) :]} >= {"snapshot", "stream"}
    # --- no gap left in the picture: the sink's tables equal the truth; no fill counted twice -----------
    tables = tables_of(database)
    assert sorted(tables) == sorted(f"{o}-{e}" for o in chaos.owners for e in chaos.exchanges)
    for account, (balances, orders) in tables.items():
        assert chaos.table_picture(balances, orders) == truth[chaos.owner_of(account)], account
    fills: dict[tuple[str, str], list[Fill]] = {}
    for event in (from_json(row[4]) for row in rows):
        if isinstance(event, Fill):
            fills.setdefault((event.account, event.order_id), []).append(event)
    unfilled = Decimal(0)  # fill pieces missing (see docs/reliability.md): gaps, never overlaps
    for (account, order_id), pieces in fills.items():
        reached = Decimal(0)
        for piece in sorted(pieces, key=lambda fill: fill.order_filled):
            start = piece.order_filled - piece.amount
            assert start >= reached, (account, order_id, pieces)  # no part of an order filled twice
            unfilled += start - reached
            reached = piece.order_filled
    lost: dict[str, int] = {}
    for audit in audits.values():
        for reason, count in audit.lost_by_reason().items():
            lost[reason] = lost.get(reason, 0) + count
    print(
        f"restart run: seed {chaos.seed}; first run committed {len(rows_first)} rows, processed "
        f"{len(seen_first)} seen on /events, {uncommitted} processed but not committed when killed; "
        f"second run added {len(rows) - len(rows_first)} rows; stream events lost across both runs by reason "
        f"{lost}; fill amounts missing (an order update committed, its fill not) {unfilled}; "
        f"pictures equal to the truth {converged_after:.2f} s after the market held still"
    )
