"""The push server of the client benchmarks: a picows WebSocket server that speaks just enough of both
exchanges' streams, in its own process, so that the client under test is what gets measured.

This module owns the server side of sections 1 and 2 (throughput and latency). It pre-encodes every frame
into wire bytes once and writes them straight to the socket, so a frame costs the server about a memcpy:
bench/select_libs.py measured this server at 720-860k frames/s, several times what any client here takes.
The WebSocket path says what to do, after an optional prefix that userstream's URL building adds:

- `/flood/<exchange>/...`: push the exchange's pool in an endless cycle, as fast as the socket takes it
  (writing pauses when the socket's buffer is full), until the client goes away;
- `/paced/<exchange>/<count>/<rate>/<token>/...`: push `count` numbered latency frames at `rate` frames/s,
  recording the monotonic time (ns) just before each frame's write; the parent fetches the times with the
  `send_times <token>` command (CLOCK_MONOTONIC is shared by every process of the machine).

Bitmusa streams start on the upgrade. Coinlocally streams answer `connect success` at once and start after
the client's `{"event":"sub",...}` with `sub success`; `{"ping":n}` gets `{"pong":n}`. A small aiohttp
app on a second port serves Bitmusa's listenKey REST calls (POST/PUT/DELETE /spot/userDataStream).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

import picows
from aiohttp import web

import wire
from common import serve_commands_async

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LISTEN_KEY = "bench-listen-key-0123456789abcdefghijklmnopqrstuvwxyz"
OPCODES = {"bitmusa": 0x1, "coinlocally": 0x2}  # text, binary


def server_frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked server-to-client frame (RFC 6455 section 5.2)."""
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, size))
    elif size < 1 << 16:
        header = bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 127)) + size.to_bytes(8, "big")
    return header + payload


class Plan:
    """What one connection is to receive, parsed from its path."""

    def __init__(self, path: str) -> None:
        parts = [part for part in path.split("/") if part]
        self.mode = parts[0]
        self.exchange = parts[1]
        if self.mode == "paced":
            self.count, self.rate, self.token = int(parts[2]), float(parts[3]), parts[4]
        elif self.mode != "flood":
            raise ValueError(f"unknown mode in {path!r}")


class Pusher(picows.WSListener):
    def __init__(self, plan: Plan, state: State) -> None:
        self.plan = plan
        self.state = state
        self.transport: picows.WSTransport | None = None
        self.paused = False
        self.started = False
        self.flood: Iterator[memoryview] = iter(())
        self.paced: asyncio.Task[None] | None = None

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport
        transport.underlying_transport.set_write_buffer_limits(high=1 << 20)
        if self.plan.exchange == "coinlocally":
            transport.send(picows.WSMsgType.TEXT, b"connect success")
        else:
            self.start()

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        kind = frame.msg_type
        if kind == picows.WSMsgType.TEXT:
            text = frame.get_payload_as_utf8_text()
            if '"sub"' in text:
                transport.send(picows.WSMsgType.TEXT, b"sub success")
                self.start()
            elif '"ping"' in text:
                transport.send(picows.WSMsgType.TEXT, text.replace("ping", "pong").encode())
        elif kind == picows.WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
        elif kind == picows.WSMsgType.CLOSE:
            # The client is done: stop flooding and answer its close. The close frame goes out after the
            # flood still buffered here (a client waiting for it reads on and discards; an abort instead
            # would make the websockets client wait its whole close timeout).
            self.flood = iter(())
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        if self.paced is not None:
            self.paced.cancel()

    def start(self) -> None:
        if self.started:
            return
        self.started = True
        if self.plan.mode == "flood":
            blob = self.state.floods[self.plan.exchange]
            self.flood = itertools.repeat(blob)
            self.pump()
        else:
            self.paced = asyncio.get_running_loop().create_task(self.pace())

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.pump()

    def pump(self) -> None:
        assert self.transport is not None
        write = self.transport.underlying_transport.write
        for chunk in self.flood:
            if self.transport.is_disconnected or self.transport.is_close_frame_sent:
                return
            write(chunk)
            if self.paused:
                return

    async def pace(self) -> None:
        assert self.transport is not None
        plan = self.plan
        frames = self.state.latency_frames(plan.exchange, plan.count)
        times = self.state.send_times.setdefault(plan.token, [0] * plan.count)
        write = self.transport.underlying_transport.write
        interval_ns = round(1e9 / plan.rate)
        started = time.monotonic_ns()
        index = 0
        while index < plan.count:
            due = min(plan.count, (time.monotonic_ns() - started) // interval_ns + 1)
            while index < due:
                times[index] = time.monotonic_ns()
                write(frames[index])
                index += 1
            wake = started + index * interval_ns
            await asyncio.sleep(max(0, wake - time.monotonic_ns()) / 1e9)


class State:
    """Everything the server pre-encodes once, and the send times of paced runs."""

    def __init__(self) -> None:
        self.floods = {
            exchange: memoryview(b"".join(server_frame(OPCODES[exchange], p) for p in wire.pool(exchange)))
            for exchange in OPCODES
        }
        self._latency: dict[tuple[str, int], list[bytes]] = {}
        self.send_times: dict[str, list[int]] = {}

    def latency_frames(self, exchange: str, count: int) -> list[bytes]:
        key = (exchange, count)
        if key not in self._latency:
            payloads = wire.latency_frames(exchange, count)
            self._latency[key] = [server_frame(OPCODES[exchange], p) for p in payloads]
        return self._latency[key]


async def rest_app(extra_gets: dict[str, Handler] | None = None) -> tuple[web.AppRunner, int]:
    """Bitmusa's listenKey calls (POST/PUT/DELETE /spot/userDataStream) on a free port, and `extra_gets`
    (path -> handler) beside them (bench/peers.py adds the Binance REST its peers call)."""

    async def create(_request: web.Request) -> web.Response:
        return web.json_response({"data": {"listenKey": LISTEN_KEY}, "code": 0, "message": "success"})

    async def ack(_request: web.Request) -> web.Response:
        return web.json_response({"code": 0, "message": "success"})

    app = web.Application()
    app.router.add_post("/spot/userDataStream", create)
    app.router.add_put("/spot/userDataStream", ack)
    app.router.add_delete("/spot/userDataStream", ack)
    for path, handler in (extra_gets or {}).items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port: int = runner.addresses[0][1]
    return runner, port


def main(pipe: Connection) -> None:
    """Child entry: serve until told to stop. Ready report: {"ws": port, "rest": port}."""

    async def run() -> None:
        state = State()

        def listener(request: picows.WSUpgradeRequest) -> Pusher:
            return Pusher(Plan(request.path.decode()), state)

        server = await picows.ws_create_server(listener, "127.0.0.1", 0)  # type: ignore[arg-type]
        runner, rest_port = await rest_app()
        pipe.send({"ws": server.sockets[0].getsockname()[1], "rest": rest_port})

        def send_times(token: str) -> list[int]:
            return state.send_times.pop(token, [])

        def prepare(exchange: str, count: int) -> int:
            return len(state.latency_frames(exchange, count))

        handlers: dict[str, Any] = {"send_times": send_times, "prepare": prepare}
        try:
            await serve_commands_async(pipe, handlers)
        finally:
            server.close()
            await runner.cleanup()

    asyncio.run(run())
