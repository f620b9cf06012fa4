"""The gateway's HTTP API under readers that do not read and connections that send nothing (issue 13, 3).

A real gateway streams from the real emulator; the peers are raw sockets and aiohttp's client. A stalled
/events reader (a socket with a tiny receive buffer that is never read) is disconnected once a write to it
has waited `sse_write_timeout`, even after the hub dropped it for being slow, and everything it held is
released; readers beyond `sse_max_subscribers` are refused with 503 and counted; silent connections are
closed at the header deadline and, at the connection cap, idle ones make room for /healthz.
"""

from __future__ import annotations

import asyncio
import socket
from decimal import Decimal
from typing import Any

from userstream.events import BalanceUpdate, Exchange

WAIT = 10.0


def balance(n: int) -> BalanceUpdate:
    return BalanceUpdate(
        exchange=Exchange.COINLOCALLY,
        account="alice-coinlocally",
        timestamp=1_700_703_548_000 + n,
        asset="USDT",
        free=Decimal(n),
        locked=Decimal(0),
    )


def stalled_reader(url: str, path: str) -> socket.socket:
    """A connection that asks for `path` and then never reads (its receive buffer as small as it gets)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    return sock


def api_side_sockets(port: int) -> int:
    """TCP sockets of this machine whose local port is `port`, the listener left out (Linux)."""
    with open("/proc/net/tcp") as table:
        next(table)
        return sum(
            1
            for line in table
            if int(line.split()[1].split(":")[1], 16) == port and line.split()[3] != "0A"  # 0A: LISTEN
        )


async def until(condition: Any) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110 - counters without a signal
            await asyncio.sleep(0.005)


async def test_a_stalled_events_reader_is_dropped_then_disconnected_and_everything_released(lab: Any) -> None:
    async with lab() as env:
        config = env.config(accounts=("alice",), exchanges=("coinlocally",), sse_write_timeout=0.3)
        async with env.gateway(config) as gateway:
            guard = gateway._http.guard
            assert gateway.http_url is not None
            sock = stalled_reader(gateway.http_url, "/events")
            try:
                await until(lambda: gateway.hub.subscribers == 1)
                hub = gateway.hub
                n = 0
                async with asyncio.timeout(WAIT):
                    # Published as the streams would, with room for the handler to write: its socket fills,
                    # its write waits, and its buffer overflows meanwhile (1000 events: dropped).
                    while hub.stalled_subscribers == 0:
                        for _ in range(200):
                            n += 1
                            hub.publish(balance(n))
                        await asyncio.sleep(0.001)
                assert (hub.dropped_subscribers, hub.stalled_subscribers, hub.subscribers) == (1, 1, 0)
                assert hub.buffered == 0
                await until(lambda: guard.open_connections == 0)  # its descriptor is gone too
                # ...and so is the kernel's socket with its megabytes of unsent bytes (reset, not closed).
                port = int(gateway.http_url.rsplit(":", 1)[1])
                await until(lambda: api_side_sockets(port) == 0)
                _, metrics = await env.text(gateway, "/metrics")
                assert "userstream_gateway_sse_stalled_subscribers_total 1\n" in metrics
                assert "userstream_gateway_sse_dropped_subscribers_total 1\n" in metrics
                assert "userstream_gateway_sse_subscribers 0\n" in metrics
            finally:
                sock.close()


async def test_events_readers_beyond_the_cap_are_refused_with_503_and_counted(lab: Any) -> None:
    async with lab() as env:
        config = env.config(accounts=("alice",), exchanges=("coinlocally",), sse_max_subscribers=2)
        async with env.gateway(config) as gateway:
            url = f"{gateway.http_url}/events"
            first = await env.http.get(url)
            second = await env.http.get(url)
            for response in (first, second):
                assert await response.content.readline() == b": subscribed\n"
            async with env.http.get(url) as refused:
                assert (refused.status, refused.headers["Retry-After"]) == (503, "1")
                assert await refused.json() == {"error": "too many /events subscribers: at most 2 at once"}
            _, metrics = await env.text(gateway, "/metrics")
            assert "userstream_gateway_sse_refused_subscribers_total 1\n" in metrics
            assert "userstream_gateway_sse_subscribers 2\n" in metrics
            first.close()
            await until(lambda: gateway.hub.subscribers == 1)
            async with env.http.get(url) as third:
                assert third.status == 200
                assert await third.content.readline() == b": subscribed\n"
            second.close()
            assert gateway.hub.refused_subscribers == 1


async def test_silent_connections_are_closed_and_an_idle_flood_leaves_healthz_answering(lab: Any) -> None:
    async with lab() as env:
        config = env.config(accounts=("alice",), exchanges=("coinlocally",), http_header_timeout=0.3)
        async with env.gateway(config) as gateway:
            assert gateway.http_url is not None
            host, port = gateway.http_url.removeprefix("http://").rsplit(":", 1)
            peers = [await asyncio.open_connection(host, int(port)) for _ in range(5)]
            peers[0][1].write(b"GET /healthz HT")
            try:
                async with asyncio.timeout(WAIT):
                    replies = [await reader.read() for reader, _ in peers]
            finally:
                for _, writer in peers:
                    writer.close()
            assert replies == [b""] * 5
            assert gateway._http.guard.stats.timed_out == 5
        config = env.config(accounts=("alice",), exchanges=("coinlocally",), http_max_connections=10)
        async with env.gateway(config) as gateway:
            guard = gateway._http.guard
            assert gateway.http_url is not None
            host, port = gateway.http_url.removeprefix("http://").rsplit(":", 1)
            peers = []
            try:
                for count in range(1, 31):
                    peers.append(await asyncio.open_connection(host, int(port)))
                    await until(lambda count=count: guard.stats.accepted == count)
                status, health = await env.get(gateway, "/healthz")
                assert (status, health["status"]) == (200, "ok")
                assert (guard.stats.evicted, guard.open_connections <= 10) == (21, True)
            finally:
                for _, writer in peers:
                    writer.close()
