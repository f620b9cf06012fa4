"""`userstream serve` in a child process, for the benchmarks of the server itself and of reconnects.

This module owns the accounts the benchmarks use and the child's entry point. The child runs the real
application (`userstream.server.running_server` and the gc.freeze() after start-up, what the `serve`
command runs, minus its stderr logging)
with `accounts` accounts, each with credentials on both exchanges, and answers a few commands over its
pipe: the fault `drop_and_publish` (reconnect section), `wait_streams`, and `stop`. Everything else
(ingest, listenKeys, WebSockets) goes through its HTTP port like any client's.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from multiprocessing.connection import Connection
from typing import Any

from common import serve_commands_async

ADMIN_TOKEN = "bench-admin-token"


def account_name(index: int) -> str:
    return f"acct{index}"


def credentials(index: int) -> dict[str, str]:
    return {
        "bitmusa_api_key": f"bench-bitmusa-api-{index}",
        "bitmusa_auth_key": f"bench-bitmusa-auth-{index}",
        "coinlocally_token": f"bench-coinlocally-token-{index}",
    }


def main(pipe: Connection, accounts: int, *, freeze: bool = True, **overrides: Any) -> None:
    """Child entry. Ready report: {"base_url", "ws_url"}. `freeze`: gc.freeze() once serving, as the
    serve command does."""
    from userstream.server import Account, ServerConfig, running_server  # noqa: PLC0415 - in the child

    config = ServerConfig(
        accounts=tuple(
            Account(name=account_name(index), uid=100_000 + index, **credentials(index))
            for index in range(accounts)
        ),
        port=0,
        admin_token=ADMIN_TOKEN,
        rate_limit_per_second=1_000_000,  # the documented limits are the server tests' subject
        rate_limit_per_minute=1_000_000_000,
        max_connections_per_ip=1_000_000,  # every bench connection comes from 127.0.0.1
        **overrides,
    )

    async def run() -> None:
        async with running_server(config) as server:

            async def drop_and_publish(account: str, event: dict[str, Any], exchange: str) -> int:
                """Abort the account's connections; once a stream of it is live again, publish `event`.
                Returns the monotonic time (ns) of the drop."""
                from userstream.events import Exchange  # noqa: PLC0415

                dropped_at = time.monotonic_ns()
                await server.drop(account)
                async with asyncio.timeout(60):
                    await server.wait_for_streams(account, 1, Exchange(exchange))
                await server.ingest(account, [event])
                return dropped_at

            async def wait_streams(account: str, count: int) -> int:
                async with asyncio.timeout(120):
                    await server.wait_for_streams(account, count)
                return server.streams(account)

            traced: list[Any] = []

            def trace_start() -> None:
                """Start tracing allocations (for `trace_top`; not used by the timed sections)."""
                tracemalloc.start(12)
                traced.append(tracemalloc.take_snapshot())

            def trace_top(per: int, limit: int) -> list[tuple[float, float, str]]:
                """What was allocated since `trace_start`, per `per` (connections), by the innermost line
                of userstream or aiohttp that asked for it: (bytes, objects, where)."""
                snapshot = tracemalloc.take_snapshot()
                rows = []
                for stat in snapshot.compare_to(traced[0], "traceback")[:limit]:
                    frames = [
                        f for f in stat.traceback if "userstream" in f.filename or "aiohttp" in f.filename
                    ]
                    where = frames[-1] if frames else stat.traceback[-1]
                    name = where.filename.rsplit("site-packages/", 1)[-1].rsplit("src/", 1)[-1]
                    rows.append((stat.size_diff / per, stat.count_diff / per, f"{name}:{where.lineno}"))
                return rows

            pauses: list[tuple[int, float]] = []
            started: list[float] = []

            def on_gc(phase: str, info: dict[str, int]) -> None:
                if phase == "start":
                    started.append(time.perf_counter())
                elif started:
                    pauses.append((info["generation"], time.perf_counter() - started.pop()))

            def gc_start() -> None:
                """Record the collector's pauses from now (for `gc_report`; not used by timed sections)."""
                pauses.clear()
                if on_gc not in gc.callbacks:
                    gc.callbacks.append(on_gc)

            def gc_report() -> dict[str, Any]:
                """Per generation: how many collections since `gc_start`, and the longest pause (ms)."""
                report: dict[str, Any] = {"tracked_objects": len(gc.get_objects())}
                for generation in (0, 1, 2):
                    times = [seconds for gen, seconds in pauses if gen == generation]
                    report[f"gen{generation}"] = {
                        "collections": len(times),
                        "max_ms": round(max(times, default=0.0) * 1000, 2),
                        "total_ms": round(sum(times) * 1000, 2),
                    }
                return report

            if freeze:
                gc.collect()
                gc.freeze()
            pipe.send({"base_url": server.base_url, "ws_url": server.ws_url})
            await serve_commands_async(
                pipe,
                {
                    "drop_and_publish": drop_and_publish,
                    "wait_streams": wait_streams,
                    "trace_start": trace_start,
                    "trace_top": trace_top,
                    "gc_start": gc_start,
                    "gc_report": gc_report,
                },
            )

    asyncio.run(run())
