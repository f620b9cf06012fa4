"""Section 1: client throughput per exchange, userstream vs the limit vs the hand-written client.

This module owns the measurement: the push server (bench/pusher.py, its own process and so its own core)
floods one stream with its pool in an endless cycle; the client under test, in this process, counts
`events` events after the first one. The clock and the CPU clock start at the first event, so connection
set-up (and Bitmusa's listenKey call) is not counted, and stop at the last: events/s, and this process's CPU
seconds per event. Runs go round-robin over (exchange, client), so drift on a shared machine slows every
candidate alike; each figure is the median of `runs`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from common import Child, median
from consumers import CLIENTS, Target


class _Counter:
    """Counts events; times the span from the first event to the (events + 1)-th."""

    def __init__(self, events: int) -> None:
        self.events = events
        self.seen = 0
        self.wall0 = self.cpu0 = self.wall = self.cpu = 0.0

    def __call__(self, _timestamp: int) -> bool:
        self.seen += 1
        if self.seen == 1:
            self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        elif self.seen > self.events:
            self.wall = time.perf_counter() - self.wall0
            self.cpu = time.process_time() - self.cpu0
            return True
        return False


def targets(pusher: Child, mode: str = "flood") -> dict[str, Target]:
    ports = pusher.ready  # type: ignore[attr-defined]
    rest = f"http://127.0.0.1:{ports['rest']}"
    return {
        exchange: Target(exchange, f"ws://127.0.0.1:{ports['ws']}/{mode}/{exchange}", rest)
        for exchange in ("bitmusa", "coinlocally")
    }


async def _once(client: str, target: Target, events: int) -> tuple[float, float]:
    counter = _Counter(events)
    async with asyncio.timeout(300):
        await CLIENTS[client](target, counter)
    return counter.wall, counter.cpu


async def measure(pusher: Child, events: int, runs: int, clients: list[str]) -> dict[str, Any]:
    by_exchange = targets(pusher)
    for target in by_exchange.values():  # warm-up: imports, first connections, allocator
        for client in clients:
            await _once(client, target, min(events, 5000))
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(runs):
        for exchange, target in by_exchange.items():
            for client in clients:
                samples.setdefault((exchange, client), []).append(await _once(client, target, events))
    out: dict[str, Any] = {"events_per_run": events, "runs": runs, "exchanges": {}}
    for (exchange, client), measured in samples.items():
        rates = [events / wall for wall, _ in measured]
        out["exchanges"].setdefault(exchange, {})[client] = {
            "events_per_s": round(median(rates)),
            "cpu_us_per_event": round(median([cpu / events * 1e6 for _, cpu in measured]), 2),
            "runs_events_per_s": [round(rate) for rate in rates],
        }
    for figures in out["exchanges"].values():
        if {"userstream", "limit", "hand-written"} <= figures.keys():
            # Ratios within each round (the clients of one round ran back to back), then their median.
            ours = figures["userstream"]["runs_events_per_s"]
            figures["ratios"] = {
                f"userstream/{other}": round(
                    median([a / b for a, b in zip(ours, figures[other]["runs_events_per_s"], strict=True)]),
                    2,
                )
                for other in ("hand-written", "limit")
            }
    return out


def run(pusher: Child, events: int, runs: int, clients: list[str] | None = None) -> dict[str, Any]:
    return asyncio.run(measure(pusher, events, runs, clients or list(CLIENTS)))
