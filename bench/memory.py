"""Section 4: memory and idle cost. Serve's RSS per idle connection at 10,000 connections, and a client
process's RSS per stream and CPU share with 1,000 idle, pinging Coinlocally streams.

This module owns both measurements.

- Serve: a fresh `userstream serve` process per run (serve_child.py); the receivers (fleet.py, this
  process) open idle connections of one dialect (`per_account` connections per account, sharing a Bitmusa
  listenKey as the exchange allows), and the server's RSS (/proc/<pid>/statm, resident now) is read before
  any, at `first` and at `total` connections. Per connection: the growth from `first` to `total` divided
  by the connections added (the marginal cost, free of start-up allocations), and the whole growth
  divided by `total`. Connections send nothing (the server's heartbeat timeout is raised for the run, so
  an idle Coinlocally connection is not closed after 40 s).
- Client: one child process runs `streams` userstream Coinlocally streams (default options: a ping every
  30 s, an idle timeout of 45 s) against a serve process with one account per stream. Its RSS is read
  before the first stream and once all are subscribed; its CPU share is its CPU seconds over a window of
  exactly one ping interval (30 s), so every stream pings exactly once inside each window whatever its
  phase; the median over `windows` consecutive windows.
"""

from __future__ import annotations

import asyncio
import time
from multiprocessing.connection import Connection
from typing import Any

import serve_child
from common import child, cpu_seconds, median, rss_bytes, serve_commands_async
from fleet import Fleet

KIB = 1024


async def _serve_run(exchange: str, total: int, first: int, per_account: int) -> dict[str, float]:
    accounts = -(-total // per_account)
    with child(serve_child.main, accounts=accounts, heartbeat_timeout=3600.0) as serve:
        ready = serve.ready  # type: ignore[attr-defined]
        await asyncio.sleep(0.5)
        warm = Fleet(exchange, ready["base_url"], ready["ws_url"], 8, per_account=per_account)
        await warm.open()  # the first connections build lazily-made things (routes, caches)
        await warm.close()
        await asyncio.sleep(0.5)
        before = rss_bytes(serve.pid)
        first_fleet = Fleet(exchange, ready["base_url"], ready["ws_url"], first, per_account=per_account)
        await first_fleet.open()
        await asyncio.sleep(1.0)
        at_first = rss_bytes(serve.pid)
        rest = Fleet(
            exchange,
            ready["base_url"],
            ready["ws_url"],
            total - first,
            per_account=per_account,
            first_account=first // per_account,
        )
        opened = await rest.open()
        await asyncio.sleep(1.0)
        at_total = rss_bytes(serve.pid)
        await rest.close()
        await first_fleet.close()
    return {
        "rss_before_mib": before / 2**20,
        "rss_at_first_mib": at_first / 2**20,
        "rss_at_total_mib": at_total / 2**20,
        "kib_per_connection_marginal": (at_total - at_first) / (total - first) / KIB,
        "kib_per_connection_total": (at_total - before) / total / KIB,
        "open_seconds": opened,
    }


def serve_idle(total: int, first: int, per_account: int, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {"connections": total, "first": first, "per_account": per_account, "runs": runs}
    for exchange in ("bitmusa", "coinlocally"):
        measured = [asyncio.run(_serve_run(exchange, total, first, per_account)) for _ in range(runs)]
        out[exchange] = {name: round(median([m[name] for m in measured]), 2) for name in measured[0]} | {
            "runs_kib_per_connection_marginal": [round(m["kib_per_connection_marginal"], 2) for m in measured]
        }
    return out


# --- the client side -------------------------------------------------------------------------------------


def client_child(pipe: Connection, ws_url: str, streams: int) -> None:
    """Child entry: open `streams` userstream Coinlocally streams, one per account, on command."""

    async def run() -> None:
        from userstream import client  # noqa: PLC0415 - measured from here on
        from userstream.client import State  # noqa: PLC0415

        subscribed = 0
        all_live = asyncio.Event()

        def on_status(status: Any) -> None:
            nonlocal subscribed
            if status.state is State.SUBSCRIBED:
                subscribed += 1
                if subscribed >= streams:
                    all_live.set()

        opened: list[Any] = []
        consumers: list[asyncio.Task[None]] = []

        async def consume(stream: Any) -> None:
            async for _event in stream:
                pass

        async def start() -> float:
            started = time.perf_counter()
            for index in range(streams):
                token = serve_child.credentials(index)["coinlocally_token"]
                stream = client.connect(
                    "coinlocally",
                    token=token,
                    ws_url=f"{ws_url}/spotws_user/userData/ws",
                    on_status=on_status,
                )
                await stream.__aenter__()
                opened.append(stream)
                consumers.append(asyncio.create_task(consume(stream)))
                if index % 50 == 49:
                    await asyncio.sleep(0.05)  # do not open a thousand handshakes at once
            async with asyncio.timeout(120):
                await all_live.wait()
            return time.perf_counter() - started

        async def close_streams() -> int:
            for task in consumers:
                task.cancel()
            for stream in opened:
                await stream.aclose()
            return len(opened)

        def stats() -> dict[str, int]:
            totals = {"pings_sent": 0, "frames": 0, "connections": 0}
            for stream in opened:
                s = stream.stats
                totals["pings_sent"] += s.pings_sent
                totals["frames"] += s.frames
                totals["connections"] += s.connections
            return totals

        pipe.send({"pid": None})
        await serve_commands_async(pipe, {"start": start, "close_streams": close_streams, "stats": stats})

    asyncio.run(run())


def client_idle(streams: int, window: float, windows: int) -> dict[str, Any]:
    with child(serve_child.main, accounts=streams) as serve:
        ws_url = serve.ready["ws_url"]  # type: ignore[attr-defined]
        with child(client_child, ws_url=ws_url, streams=streams) as client:
            time.sleep(0.5)
            before = rss_bytes(client.pid)
            opened_in = client.call("start", timeout=300)
            time.sleep(2.0)  # let the start-up settle
            after = rss_bytes(client.pid)
            shares = []
            pings_before = client.call("stats")["pings_sent"]
            for _ in range(windows):
                cpu0, wall0 = cpu_seconds(client.pid), time.perf_counter()
                time.sleep(window)
                shares.append((cpu_seconds(client.pid) - cpu0) / (time.perf_counter() - wall0))
            counters = client.call("stats")
            client.call("close_streams", timeout=300)
    return {
        "streams": streams,
        "window_seconds": window,
        "windows": windows,
        "open_seconds": round(opened_in, 2),
        "rss_before_mib": round(before / 2**20, 1),
        "rss_after_mib": round(after / 2**20, 1),
        "kib_per_stream": round((after - before) / streams / KIB, 1),
        "cpu_share_of_one_core_pct": round(median(shares) * 100, 2),
        "runs_cpu_share_pct": [round(share * 100, 2) for share in shares],
        "pings_sent_in_windows": counters["pings_sent"] - pings_before,
        "connections_opened": counters["connections"],
    }
