"""Section 3: `userstream serve` fan-out: ingest -> delivery throughput, and latency at 1,000 events/s.

This module owns the measurement. The server is the real application in its own process (serve_child.py);
the receivers (fleet.py) and the ingest client run in this process. Events are order updates posted to
`POST /admin/events`, each to one account, round-robin over the accounts; each account has one subscribed
connection of the dialect under test, so 1,000 events/s "spread over" N connections means each connection
gets 1,000/N events/s, and every event is delivered once.

- Throughput: batches of `batch` events are posted as fast as the server takes them (at most `window`
  events posted but not yet received, so no connection's bounded send queue can overflow); events/s is
  the total delivered over the time from the first post to the last frame received. The server's CPU
  seconds over the same span, per event, are reported too.
- Latency: one event per POST, at `rate` events/s (each POST its own task, started on schedule); latency is
  from just before the POST to the receiver's callback for that event's frame, both on this process's
  CLOCK_MONOTONIC. Percentiles are nearest-rank over every event of a run.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from common import Child, cpu_seconds, median, percentile
from fleet import Fleet, sequence_of
from serve_child import ADMIN_TOKEN, account_name

_ENCODE = msgspec.json.Encoder().encode


def order_event(sequence: int) -> dict[str, Any]:
    """A realistic open order update whose id carries the event's sequence number."""
    filled = sequence % 7
    return {
        "kind": "order",
        "id": f"L{sequence}",
        "symbol": "BTC/USDT",
        "side": "buy" if sequence % 2 else "sell",
        "type": "limit",
        "status": "open",
        "price": f"65{sequence % 1000:03d}.25",
        "amount": "7.5",
        "filled": f"{filled}.125",
        "cost": f"{filled * 65000}.5",
        "timestamp": 1_750_000_000_000 + sequence,
    }


class _HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that sends a prepared request and reads the status line and
    body of its reply: a few microseconds per request, where aiohttp's client spends ~0.4 ms on this
    machine, so the bench process stays out of the server's way."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.reply: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(self.buffer[:head_end]).lower()
        length = int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        if len(self.buffer) < head_end + 4 + length:
            return
        status = int(head[9:12])
        del self.buffer[: head_end + 4 + length]
        if self.reply is not None and not self.reply.done():
            self.reply.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.reply is not None and not self.reply.done():
            self.reply.set_exception(ConnectionError("ingest connection lost"))

    async def request(self, data: bytes) -> int:
        assert self.transport is not None
        self.reply = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.reply


class _Ingest:
    """POST /admin/events over a pool of keep-alive connections."""

    def __init__(self, base_url: str, connections: int = 32) -> None:
        host_port = base_url.split("://", 1)[1]
        self.host, port = host_port.rsplit(":", 1)
        self.port = int(port)
        self.size = connections
        self.idle: asyncio.Queue[_HttpConnection] = asyncio.Queue()

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(self.size):
            _, protocol = await loop.create_connection(_HttpConnection, self.host, self.port)
            self.idle.put_nowait(protocol)

    def close(self) -> None:
        while not self.idle.empty():
            transport = self.idle.get_nowait().transport
            if transport is not None:
                transport.close()

    def prepare(self, account: str, first: int, count: int) -> bytes:
        events = [order_event(sequence) for sequence in range(first, first + count)]
        body = _ENCODE({"account": account, "events": events})
        head = (
            f"POST /admin/events HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def send(self, request: bytes) -> None:
        connection = await self.idle.get()
        try:
            status = await connection.request(request)
        finally:
            self.idle.put_nowait(connection)
        if status != 200:
            raise RuntimeError(f"ingest refused with HTTP {status}")

    async def post(self, account: str, first: int, count: int) -> None:
        await self.send(self.prepare(account, first, count))


async def _throughput(
    ingest: _Ingest, fleet: Fleet, serve: Child, *, events: int, batch: int, window: int, concurrency: int
) -> dict[str, float]:
    start_total = fleet.total
    slots = asyncio.Semaphore(concurrency)
    wall0, cpu0 = time.perf_counter(), cpu_seconds(serve.pid)

    async def post(account: str, first: int, count: int) -> None:
        try:
            await ingest.post(account, first, count)
        finally:
            slots.release()

    async with asyncio.TaskGroup() as group:
        sent = 0
        turn = 0
        while sent < events:
            count = min(batch, events - sent)
            if sent + count - (fleet.total - start_total) > window:
                await fleet.wait_total(start_total + sent + count - window)
            await slots.acquire()
            group.create_task(post(fleet.account_of(turn % fleet.size), sent, count))
            sent += count
            turn += 1
    await fleet.wait_total(start_total + events)
    wall, cpu = time.perf_counter() - wall0, cpu_seconds(serve.pid) - cpu0
    return {"events_per_s": events / wall, "server_cpu_us_per_event": cpu / events * 1e6}


async def _latency(ingest: _Ingest, fleet: Fleet, rate: float, seconds: float, offset: int) -> list[float]:
    count = round(rate * seconds)
    sent = [0] * count
    arrived = [0] * count

    def on_order(order_id: str) -> None:
        index = sequence_of(order_id) - offset
        if 0 <= index < count and not arrived[index]:
            arrived[index] = time.monotonic_ns()

    fleet.on_order = on_order
    start_total = fleet.total
    interval = 1e9 / rate
    try:
        async with asyncio.TaskGroup() as group:
            started = time.monotonic_ns()
            for index in range(count):
                delay = started + index * interval - time.monotonic_ns()
                if delay > 0:
                    await asyncio.sleep(delay / 1e9)
                request = ingest.prepare(fleet.account_of(index % fleet.size), offset + index, 1)
                sent[index] = time.monotonic_ns()
                group.create_task(ingest.send(request))
        async with asyncio.timeout(60):
            await fleet.wait_total(start_total + count)
    finally:
        fleet.on_order = None
    return sorted((a - s) / 1000 for a, s in zip(arrived, sent, strict=True))


async def measure(
    serve: Child,
    *,
    sizes: list[int],
    events: int,
    runs: int,
    rate: float,
    seconds: float,
    batch: int = 100,
    window: int = 2000,
    concurrency: int = 8,
) -> dict[str, Any]:
    base_url, ws_url = serve.ready["base_url"], serve.ready["ws_url"]  # type: ignore[attr-defined]
    out: dict[str, Any] = {
        "events_per_throughput_run": events,
        "batch": batch,
        "latency_events_per_s": rate,
        "latency_seconds_per_run": seconds,
        "runs": runs,
        "exchanges": {},
    }
    offset = 10_000_000
    flow = {"events": events, "batch": batch, "window": window, "concurrency": concurrency}
    ingest = _Ingest(base_url)
    await ingest.open()
    try:
        for exchange in ("bitmusa", "coinlocally"):
            for size in sizes:
                fleet = Fleet(exchange, base_url, ws_url, size)
                opened_in = await fleet.open()
                await _throughput(ingest, fleet, serve, **(flow | {"events": min(events, 2000)}))  # warm-up
                throughputs, latencies = [], []
                for _ in range(runs):
                    throughputs.append(await _throughput(ingest, fleet, serve, **flow))
                    latencies.append(await _latency(ingest, fleet, rate, seconds, offset))
                    offset += 1_000_000
                await fleet.close()
                out["exchanges"].setdefault(exchange, {})[str(size)] = {
                    "connections": size,
                    "open_seconds": round(opened_in, 2),
                    "events_per_s": round(median([t["events_per_s"] for t in throughputs])),
                    "server_cpu_us_per_event": round(
                        median([t["server_cpu_us_per_event"] for t in throughputs]), 1
                    ),
                    "runs_events_per_s": [round(t["events_per_s"]) for t in throughputs],
                    "p50_ms": round(median([percentile(run, 0.50) for run in latencies]) / 1000, 3),
                    "p99_ms": round(median([percentile(run, 0.99) for run in latencies]) / 1000, 3),
                    "p999_ms": round(median([percentile(run, 0.999) for run in latencies]) / 1000, 3),
                }
    finally:
        ingest.close()
    return out


def run(serve: Child, **sizes: Any) -> dict[str, Any]:
    """`sizes`: sizes (connection counts), events, runs, rate, seconds (see `measure`)."""
    return asyncio.run(measure(serve, **sizes))


__all__ = ["account_name", "measure", "order_event", "run"]
