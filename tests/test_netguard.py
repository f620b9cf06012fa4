"""The connection guard on a real aiohttp server and real sockets: deadlines, caps, eviction, the reserve.

A small app stands in for serve and the gateway (both are tested with it in tests/security and
tests/gateway): `/slow` holds its request until the test releases it (a busy connection, as a WebSocket or
an SSE stream is), `/healthz` answers at once. Timings are shortened and passed in.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from userstream.netguard import (
    ConnectionGuard,
    ConnectionLimits,
    is_loopback_address,
    limit_accept_error_log,
)

WAIT = 10.0
HEALTH = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"


class App:
    def __init__(self, guard: ConnectionGuard, port: int) -> None:
        self.guard = guard
        self.port = port
        self.release = asyncio.Event()
        self.slow_started = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers.append(writer)
        return reader, writer

    async def until(self, condition: Any) -> None:
        async with asyncio.timeout(WAIT):
            while not condition():  # noqa: ASYNC110 - counters without a signal
                await asyncio.sleep(0.005)


@asynccontextmanager
async def guarded(limits: ConnectionLimits) -> AsyncIterator[App]:
    guard = ConnectionGuard(limits, name="test")
    holder: dict[str, App] = {}

    async def slow(request: web.Request) -> web.Response:
        holder["app"].slow_started += 1
        await holder["app"].release.wait()
        return web.Response(text="slow done")

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application(middlewares=[guard.middleware])
    app.router.add_get("/slow", slow)
    app.router.add_get("/healthz", health)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=limits.idle_timeout)
    await runner.setup()
    listener = await guard.serve(runner, "127.0.0.1", 0)
    try:
        holder["app"] = App(guard, listener.sockets[0].getsockname()[1])
        yield holder["app"]
    finally:
        holder["app"].release.set()
        for writer in holder["app"].writers:
            writer.close()
        listener.close()
        await runner.cleanup()


async def closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the peer sends until it closes (a reset counts as closed)."""
    try:
        async with asyncio.timeout(WAIT):
            return await reader.read()
    except ConnectionResetError:
        return b""


async def test_silent_half_sent_and_trickling_connections_are_closed_at_the_header_deadline() -> None:
    async with guarded(ConnectionLimits(header_timeout=0.3, idle_timeout=30)) as app:
        peers = [await app.connect() for _ in range(6)]
        for _, writer in peers[2:4]:
            writer.write(b"GET /healthz HT")  # half a request line
        trickler = peers[4][1]
        peers[5][1].write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")  # the head without its last CRLF

        async def trickle() -> None:
            for byte in b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: 1":
                trickler.write(bytes([byte]))
                await asyncio.sleep(0.02)

        trickling = asyncio.create_task(trickle())
        replies = [await closed(reader) for reader, _ in peers]
        trickling.cancel()
        assert replies == [b""] * 6  # closed without an answer
        assert (app.guard.stats.timed_out, app.guard.open_connections) == (6, 0)


async def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout_a_busy_one_is_not() -> None:
    async with guarded(ConnectionLimits(header_timeout=0.2, idle_timeout=0.3)) as app:
        reader, writer = await app.connect()
        writer.write(HEALTH)
        reply = await closed(reader)  # the answer, then the close once idle
        assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
        assert reply.endswith(b'{"status": "ok"}')
        busy_reader, busy_writer = await app.connect()
        busy_writer.write(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        await app.until(lambda: app.slow_started == 1)
        await asyncio.sleep(0.6)  # twice past both deadlines: a request in progress has none
        app.release.set()
        busy_reply = await closed(busy_reader)
        assert busy_reply.startswith(b"HTTP/1.1 200 OK\r\n")
        assert busy_reply.endswith(b"slow done")
        assert app.guard.stats.timed_out == 2


async def test_at_the_cap_the_oldest_idle_connection_makes_room() -> None:
    async with guarded(ConnectionLimits(max_connections=3, header_timeout=30)) as app:
        peers = []
        for count in range(1, 6):
            peers.append(await app.connect())
            await app.until(lambda count=count: app.guard.stats.accepted == count)
        assert [await closed(reader) for reader, _ in peers[:2]] == [b"", b""]  # the two oldest
        assert (app.guard.stats.evicted, app.guard.open_connections) == (2, 3)
        reader, writer = peers[4]
        writer.write(HEALTH)
        assert (await reader.readline()) == b"HTTP/1.1 200 OK\r\n"


async def test_at_a_cap_of_busy_connections_health_uses_the_reserve_and_the_rest_is_refused() -> None:
    limits = ConnectionLimits(max_connections=2, reserve=1, header_timeout=30)
    async with guarded(limits) as app:
        for _ in range(2):
            _, writer = await app.connect()
            writer.write(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        await app.until(lambda: app.slow_started == 2)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{app.port}/healthz") as reply:
                assert (reply.status, await reply.json()) == (200, {"status": "ok"})
                assert reply.headers["Connection"] == "close"  # a reserve place serves one check
            async with http.get(f"http://127.0.0.1:{app.port}/slow") as reply:
                assert reply.status == 503
                assert await reply.json() == {
                    "error": "the server is at its connection limit (2): only health checks are answered "
                    "now; retry shortly"
                }
        assert app.guard.stats.reserve_refused_requests == 1
    # No reserve: beyond the cap of busy connections, a new one is answered at once and closed.
    async with guarded(ConnectionLimits(max_connections=1, reserve=0, header_timeout=30)) as app:
        _, writer = await app.connect()
        writer.write(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        await app.until(lambda: app.slow_started == 1)
        reader, _ = await app.connect()
        body = b'{"error":"the server is at its connection limit (1): retry shortly"}'
        assert await closed(reader) == (
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        assert dict(app.guard.stats.refused) == {"server": 1}


async def test_the_per_address_limit_refuses_with_429_unless_the_address_is_exempt_loopback() -> None:
    limits = ConnectionLimits(max_per_address=2, exempt_loopback=False, header_timeout=30)
    async with guarded(limits) as app:
        for _ in range(2):
            _, writer = await app.connect()
            writer.write(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        await app.until(lambda: app.slow_started == 2)
        reader, _ = await app.connect()
        body = b'{"error":"too many connections from this address: at most 2 at once"}'
        assert await closed(reader) == (
            b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        assert (dict(app.guard.stats.refused), app.guard.connections_from("127.0.0.1")) == ({"address": 1}, 2)
    async with guarded(ConnectionLimits(max_per_address=2, header_timeout=30)) as app:  # exempt by default
        peers = [await app.connect() for _ in range(5)]
        await app.until(lambda: app.guard.stats.accepted == 5)
        assert (app.guard.connections_from("127.0.0.1"), app.guard.stats.evicted) == (5, 0)
        del peers


def test_loopback_addresses_are_this_machine_only() -> None:
    loopback = ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"]
    beyond = ["192.0.2.7", "10.0.0.1", "::ffff:192.0.2.7", "2001:db8::1", "", "localhost", "fe80::1%eth0"]
    assert [a for a in loopback if is_loopback_address(a)] == loopback
    assert [a for a in beyond if is_loopback_address(a)] == []
    limits = ConnectionLimits(max_per_address=7)
    assert (limits.per_address_limit("127.0.0.1"), limits.per_address_limit("192.0.2.7")) == (None, 7)


async def test_accept_errors_are_logged_once_then_summarized_and_the_rest_reaches_the_old_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context["message"]))
    try:
        undo = limit_accept_error_log(loop)
        undo_too = limit_accept_error_log(loop)  # a second server on the loop shares the limiter
        with caplog.at_level(logging.WARNING, logger="userstream.netguard"):
            for _ in range(500):
                loop.call_exception_handler(
                    {
                        "message": "socket.accept() out of system resource",
                        "exception": OSError(errno.EMFILE, "Too many open files"),
                    }
                )
            loop.call_exception_handler({"message": "something else"})
        records = [r for r in caplog.records if r.name == "userstream.netguard"]
        assert [(r.levelname, r.getMessage()) for r in records] == [
            (
                "WARNING",
                "cannot accept connections: out of system resources (descriptors or memory); retrying "
                "every second",
            )
        ]
        assert records[0].userstream_fields == {"error": "EMFILE", "count": 1, "per_seconds": 60.0}
        assert seen == ["something else"]
        undo()
        assert loop.get_exception_handler() is not None
        assert seen == ["something else"]
        undo_too()
        loop.call_exception_handler({"message": "socket.accept() out of system resource"})
        assert seen == ["something else", "socket.accept() out of system resource"]  # restored
    finally:
        loop.set_exception_handler(previous)


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one() -> None:
    code = (
        "import resource\n"
        "from userstream.netguard import raise_descriptor_limit, descriptor_budget\n"
        "print(raise_descriptor_limit(), resource.getrlimit(resource.RLIMIT_NOFILE), descriptor_budget())\n"
    )

    def limit() -> None:
        import resource  # noqa: PLC0415 - in the child, before exec

        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096))

    done = subprocess.run(  # noqa: S603 - our own module, fixed code
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        preexec_fn=limit,
    )
    assert done.stdout == "(256, 4096) (4096, 4096) 3840\n"  # 4096 - 4096/16 spare descriptors


async def test_an_address_at_its_limit_replaces_its_own_oldest_idle_connection() -> None:
    limits = ConnectionLimits(max_per_address=2, exempt_loopback=False, header_timeout=30)
    async with guarded(limits) as app:
        peers = []
        for count in range(1, 4):
            peers.append(await app.connect())
            await app.until(lambda count=count: app.guard.stats.accepted == count)
        assert await closed(peers[0][0]) == b""
        assert (app.guard.stats.evicted, app.guard.connections_from("127.0.0.1")) == (1, 2)
        reader, writer = peers[2]
        writer.write(HEALTH)
        assert (await reader.readline()) == b"HTTP/1.1 200 OK\r\n"


async def test_idle_reserve_places_make_room_for_the_next_health_check() -> None:
    limits = ConnectionLimits(max_connections=1, reserve=1, header_timeout=30)
    async with guarded(limits) as app:
        _, busy = await app.connect()
        busy.write(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        await app.until(lambda: app.slow_started == 1)
        idle_reader, _ = await app.connect()  # takes the reserve place and sends nothing
        await app.until(lambda: app.guard.stats.reserve_accepted == 1)
        reader, writer = await app.connect()  # the idle reserve connection makes room
        assert await closed(idle_reader) == b""
        writer.write(HEALTH)
        reply = await closed(reader)  # answered, then closed: a reserve place serves one check
        assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Connection: close\r\n" in reply
        assert (app.guard.stats.reserve_accepted, app.guard.stats.evicted) == (2, 1)


async def test_pipelined_requests_are_all_answered_then_the_idle_deadline_applies() -> None:
    async with guarded(ConnectionLimits(header_timeout=5, idle_timeout=0.3)) as app:
        reader, writer = await app.connect()
        writer.write(HEALTH * 3)
        reply = await closed(reader)
        assert reply.count(b"HTTP/1.1 200 OK\r\n") == 3
        assert (app.guard.stats.timed_out, app.guard.open_connections) == (1, 0)
