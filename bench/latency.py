"""Section 2: latency at 1,000 events/s, from the server's write to the consumer's hands.

This module owns the measurement. The push server (its own process) writes numbered frames at a steady
rate and records CLOCK_MONOTONIC just before each frame's write; the client under test, in this process,
records the same clock when an event of that frame reaches the consumer (the body of `async for`, or the
callback of the limit). Frame k carries the event time LATENCY_EPOCH_MS + k, so nothing the client keeps
is invented for the bench. The frame rate is set so that events (not frames) arrive at the target rate.
Percentiles are nearest-rank over every frame of a run; each figure is the median over `runs` runs.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import wire
from common import Child, median, percentile
from consumers import CLIENTS, Target
from throughput import targets

_tokens = itertools.count(1)


class _Recorder:
    """The arrival time of the first event of each numbered frame; done when every frame has one."""

    def __init__(self, frames: int) -> None:
        self.arrived = [0] * frames
        self.missing = frames

    def __call__(self, timestamp: int) -> bool:
        index = timestamp - wire.LATENCY_EPOCH_MS
        if not self.arrived[index]:
            self.arrived[index] = time.monotonic_ns()
            self.missing -= 1
        return self.missing == 0


async def _once(pusher: Child, client: str, target: Target, frames: int, frame_rate: float) -> list[float]:
    token = f"t{next(_tokens)}"
    paced = Target(
        target.exchange,
        f"{target.ws_base.rsplit('/flood/', 1)[0]}/paced/{target.exchange}/{frames}/{frame_rate:.3f}/{token}",
        target.rest_url,
    )
    recorder = _Recorder(frames)
    async with asyncio.timeout(frames / frame_rate + 60):
        await CLIENTS[client](paced, recorder)
    sent = await pusher.acall("send_times", token)
    return sorted((arrived - at) / 1000 for arrived, at in zip(recorder.arrived, sent, strict=True))


async def measure(
    pusher: Child,
    *,
    event_rate: float,
    seconds: float,
    runs: int,
    clients: list[str],
    events_per_frame: dict[str, float],
) -> dict[str, Any]:
    by_exchange = targets(pusher)
    plans = {
        exchange: (
            round(event_rate * seconds / events_per_frame[exchange]),
            event_rate / events_per_frame[exchange],
        )
        for exchange in by_exchange
    }
    for exchange, (frames, _rate) in plans.items():
        await pusher.acall("prepare", exchange, frames)
        for client in clients:  # warm-up
            await _once(pusher, client, by_exchange[exchange], 200, 1000.0)
    samples: dict[tuple[str, str], list[list[float]]] = {}
    for _ in range(runs):
        for exchange, target in by_exchange.items():
            frames, rate = plans[exchange]
            for client in clients:
                latencies = await _once(pusher, client, target, frames, rate)
                samples.setdefault((exchange, client), []).append(latencies)
    out: dict[str, Any] = {
        "events_per_s": event_rate,
        "seconds_per_run": seconds,
        "runs": runs,
        "frames_per_run": {exchange: frames for exchange, (frames, _) in plans.items()},
        "exchanges": {},
    }
    for (exchange, client), runs_latencies in samples.items():
        figures = {
            name: round(median([percentile(latencies, fraction) for latencies in runs_latencies]), 1)
            for name, fraction in (("p50_us", 0.50), ("p99_us", 0.99), ("p999_us", 0.999))
        }
        figures["max_us"] = round(median([latencies[-1] for latencies in runs_latencies]), 1)
        out["exchanges"].setdefault(exchange, {})[client] = figures
    return out


def run(
    pusher: Child,
    *,
    events_per_frame: dict[str, float],
    event_rate: float = 1000.0,
    seconds: float = 4.0,
    runs: int = 3,
    clients: list[str] | None = None,
) -> dict[str, Any]:
    return asyncio.run(
        measure(
            pusher,
            event_rate=event_rate,
            seconds=seconds,
            runs=runs,
            clients=clients or list(CLIENTS),
            events_per_frame=events_per_frame,
        )
    )
