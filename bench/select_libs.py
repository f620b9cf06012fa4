"""Choose the JSON decoder, the gunzip call and the WebSocket client library by measurement.

This script owns the evidence behind the "Dependencies" section of docs/architecture.md (issue 2).
It builds pools of distinct, realistic messages of both exchanges (Bitmusa text JSON, Coinlocally gzip
JSON) and measures in one run: JSON decoders on the messages (ns per message), gunzip calls on the gzip
frames (ns per frame), and the receive throughput of each WebSocket client library against one local
server in its own process (frames/s). Every figure is a median of several interleaved runs. It prints
markdown tables and writes bench/results/select_libs.json. It compares libraries, not userstream's
own code, so it imports nothing from userstream; it never runs under pytest.

Run: .venv/bin/python bench/select_libs.py   (under a minute on 2 cores; --quick for a smoke run)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import gzip
import importlib
import itertools
import json
import multiprocessing
import os
import platform
import random
import statistics
import sys
import time
import zlib
from collections.abc import Callable, Coroutine, Iterator, Mapping
from decimal import Decimal
from importlib import metadata
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import orjson
import picows
import websockets.asyncio.client
from aiohttp import web

from wire import (
    ASSETS,
    BITMUSA_STATUSES,
    BITMUSA_SYMBOLS,
    COINLOCALLY_STATUSES,
    COINLOCALLY_SYMBOLS,
    GZIP_WBITS,
    compact,
    gzip_member,
)

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "select_libs.json"
POOL_SIZE = 2048  # distinct messages per kind, so no decoder or socket sees the same bytes in a row
SEED = 20240521
MAX_FRAME = 1 << 20

# ----------------------------------------------------------------------------------------------------
# Realistic frames. Shapes follow the two documents exactly; values vary.
# ----------------------------------------------------------------------------------------------------

# The vocabularies and the encoders are bench/wire.py's; the value distributions below are this study's own.


def _amount(rng: random.Random, places: int) -> float:
    return round(rng.uniform(0.0001, 5000), rng.randint(0, places))


def _padded(value: float, places: int = 16) -> str:
    return f"{value:.{places}f}"


def bitmusa_order(rng: random.Random, index: int) -> bytes:
    status = rng.choice(BITMUSA_STATUSES)
    amount = _amount(rng, 4)
    traded = 0 if status == "TRADING" else round(amount * rng.random(), 4)
    price = _amount(rng, 6)
    created = 1715581995021 + index * 137
    return compact(
        {
            "data": {
                "orderId": f"C{171558199502193 + index * 7919}",
                "symbol": rng.choice(BITMUSA_SYMBOLS),
                "direction": rng.choice(["BUY", "SELL"]),
                "type": rng.choice(["LIMIT_PRICE", "MARKET_PRICE"]),
                "price": price,
                "amount": amount,
                "tradedAmount": traded,
                "value": round(traded * price, 6),
                "status": status,
                "createdTime": created,
                "canceledTime": created + 900 if status == "CANCELED" else None,
                "completedTime": created + 400 if status == "COMPLETED" else None,
            },
            "stream": "spot_order",
            "eventTime": created + rng.randint(1, 5000),
        }
    )


def bitmusa_wallet(rng: random.Random, index: int) -> bytes:
    return compact(
        {
            "data": {
                "asset": rng.choice(ASSETS),
                "free": f"{rng.uniform(0, 2_000_000):.{rng.randint(0, 8)}f}",
                "locked": f"{rng.uniform(0, 100_000):.{rng.randint(0, 8)}f}",
            },
            "stream": "spot_wallet",
            "eventTime": 1700703548846 + index * 211,
        }
    )


def coinlocally_execution(rng: random.Random, index: int) -> bytes:
    amount = _amount(rng, 8)
    filled = round(amount * rng.random(), 8)
    price = _amount(rng, 4)
    last = round(filled * rng.random(), 8)
    event_time = 1745389508472 + index * 173
    return compact(
        {
            "e": "executionReport",
            "E": event_time,
            "T": event_time - 54,
            "S": rng.choice(["BUY", "SELL"]),
            "s": rng.choice(COINLOCALLY_SYMBOLS),
            "X": rng.choice(COINLOCALLY_STATUSES),
            "x": "STATUS",
            "i": str(2690536306533246156 + index * 104729),
            "l": _padded(last),
            "z": f"{filled:.8f}",
            "L": _padded(price),
            "Z": f"{filled * price:.5f}",
            "n": _padded(filled * price * 0.001),
            "o": rng.choice(["LIMIT", "MARKET"]),
            "q": f"{amount:g}",
            "p": f"{price:g}",
            "Q": f"{filled:.8f}",
            "O": event_time - 1472,
            "P": "0",
        }
    )


def coinlocally_position(rng: random.Random, index: int) -> bytes:
    assets = rng.sample(ASSETS, rng.randint(1, 3))
    event_time = 1564034571105 + index * 97
    return compact(
        {
            "e": "outboundAccountPosition",
            "E": event_time,
            "u": event_time - 32,
            "B": [
                {"a": a, "f": f"{rng.uniform(0, 50_000):.6f}", "l": f"{rng.uniform(0, 900):.6f}"}
                for a in assets
            ],
        }
    )


MESSAGE_MAKERS: dict[str, Callable[[random.Random, int], bytes]] = {
    "bitmusa spot_order": bitmusa_order,
    "bitmusa spot_wallet": bitmusa_wallet,
    "coinlocally executionReport": coinlocally_execution,
    "coinlocally outboundAccountPosition": coinlocally_position,
}


def message_pools() -> dict[str, list[bytes]]:
    """kind -> POOL_SIZE distinct decoded messages (the bytes a decoder sees after any gunzip)."""
    rng = random.Random(SEED)
    return {kind: [make(rng, index) for index in range(POOL_SIZE)] for kind, make in MESSAGE_MAKERS.items()}


def wire_pools() -> dict[str, list[bytes]]:
    """What a server sends: Bitmusa text frames (mostly orders) and Coinlocally gzip binary frames."""
    pools = message_pools()
    rng = random.Random(SEED + 1)
    text = pools["bitmusa spot_order"] + pools["bitmusa spot_wallet"][: POOL_SIZE // 3]
    binary = [
        gzip_member(message)
        for message in pools["coinlocally executionReport"]
        + pools["coinlocally outboundAccountPosition"][: POOL_SIZE // 3]
    ]
    rng.shuffle(text)
    rng.shuffle(binary)
    return {"text": text, "gzip": binary}


# ----------------------------------------------------------------------------------------------------
# Typed msgspec decoding: the shapes of the documents, Decimal money, one pass per frame.
# ----------------------------------------------------------------------------------------------------


class BitmusaOrderData(msgspec.Struct, rename="camel"):
    order_id: str
    symbol: str
    direction: str
    type: str
    price: Decimal
    amount: Decimal
    traded_amount: Decimal
    value: Decimal
    status: str
    created_time: int
    canceled_time: int | None = None
    completed_time: int | None = None


class BitmusaWalletData(msgspec.Struct):
    asset: str
    free: Decimal
    locked: Decimal


class BitmusaOrderFrame(msgspec.Struct, tag_field="stream", tag="spot_order", rename="camel"):
    data: BitmusaOrderData
    event_time: int


class BitmusaWalletFrame(msgspec.Struct, tag_field="stream", tag="spot_wallet", rename="camel"):
    data: BitmusaWalletData
    event_time: int


class ExecutionReport(msgspec.Struct, tag_field="e", tag="executionReport"):
    event_time: int = msgspec.field(name="E")
    side: str = msgspec.field(name="S")
    symbol: str = msgspec.field(name="s")
    status: str = msgspec.field(name="X")
    order_id: str = msgspec.field(name="i")
    order_type: str = msgspec.field(name="o")
    price: Decimal = msgspec.field(name="p")
    amount: Decimal = msgspec.field(name="q")
    filled: Decimal = msgspec.field(name="z")
    cost: Decimal = msgspec.field(name="Z")
    last_fill_amount: Decimal = msgspec.field(name="l")
    last_fill_price: Decimal = msgspec.field(name="L")
    fee: Decimal = msgspec.field(name="n")
    created_at: int = msgspec.field(name="O")


class AssetBalance(msgspec.Struct):
    asset: str = msgspec.field(name="a")
    free: Decimal = msgspec.field(name="f")
    locked: Decimal = msgspec.field(name="l")


class AccountPosition(msgspec.Struct, tag_field="e", tag="outboundAccountPosition"):
    event_time: int = msgspec.field(name="E")
    balances: list[AssetBalance] = msgspec.field(name="B")


BITMUSA_TYPED = msgspec.json.Decoder(BitmusaOrderFrame | BitmusaWalletFrame)
COINLOCALLY_TYPED = msgspec.json.Decoder(ExecutionReport | AccountPosition)
MSGSPEC_UNTYPED = msgspec.json.Decoder()
MSGSPEC_UNTYPED_DECIMAL = msgspec.json.Decoder(float_hook=Decimal)

# The money fields a normalizer reads, per message kind (for the "loads, then Decimal() per field" row).
MONEY_FIELDS = {
    "spot_order": ("price", "amount", "tradedAmount", "value"),
    "spot_wallet": ("free", "locked"),
    "executionReport": ("p", "q", "z", "Z", "l", "L", "n"),
}


def orjson_then_decimals(message: bytes) -> list[Decimal]:
    """What a hand-written normalizer does with the fastest untyped decoder: Decimal(str(x)) per field."""
    obj = orjson.loads(message)
    if "stream" in obj:
        data = obj["data"]
        return [Decimal(str(data[name])) for name in MONEY_FIELDS[obj["stream"]]]
    if obj["e"] == "executionReport":
        return [Decimal(obj[name]) for name in MONEY_FIELDS["executionReport"]]
    return [Decimal(value) for entry in obj["B"] for value in (entry["f"], entry["l"])]


def typed_decode(message: bytes) -> object:
    # A Bitmusa frame starts with {"data"; a Coinlocally one with {"e". The real parsers know their exchange.
    if message[2] == ord("d"):
        return BITMUSA_TYPED.decode(message)
    return COINLOCALLY_TYPED.decode(message)


JSON_DECODERS: dict[str, Callable[[bytes], object]] = {
    "json.loads": json.loads,
    "json.loads(parse_float=Decimal)": lambda message: json.loads(message, parse_float=Decimal),
    "orjson.loads": orjson.loads,
    "orjson.loads + Decimal(str(x)) per money field": orjson_then_decimals,
    "msgspec.json.decode (untyped)": MSGSPEC_UNTYPED.decode,
    "msgspec untyped, float_hook=Decimal": MSGSPEC_UNTYPED_DECIMAL.decode,
    "msgspec typed Structs, Decimal fields": typed_decode,
}

# A Bitmusa order whose JSON numbers a float cannot hold: 21 significant digits and an exponent form.
EXACTNESS_PROBE = (
    b'{"data":{"orderId":"C1","symbol":"XRP/USDT","direction":"BUY","type":"LIMIT_PRICE",'
    b'"price":0.51550000000000000001,"amount":2.0E-5,"tradedAmount":0,"value":0,"status":"TRADING",'
    b'"createdTime":1715581995021,"canceledTime":null,"completedTime":null},'
    b'"stream":"spot_order","eventTime":1700703548846}'
)


def gives_exact_decimal(decode: Callable[[bytes], object]) -> bool:
    """True when the probe's price and amount come out as Decimals equal to the wire text, digit for digit."""
    result = decode(EXACTNESS_PROBE)
    if isinstance(result, list):
        price, amount = result[0], result[1]
    elif isinstance(result, dict):
        price, amount = result["data"]["price"], result["data"]["amount"]
    else:
        assert isinstance(result, BitmusaOrderFrame)
        price, amount = result.data.price, result.data.amount
    return (
        isinstance(price, Decimal)
        and isinstance(amount, Decimal)
        and price.as_tuple() == Decimal("0.51550000000000000001").as_tuple()
        and amount.as_tuple() == Decimal("2.0E-5").as_tuple()
    )


# ----------------------------------------------------------------------------------------------------
# Micro-timing
# ----------------------------------------------------------------------------------------------------


def _pass_ns(function: Callable[[bytes], object], inputs: list[bytes]) -> float:
    """Mean ns per call over one pass of `inputs`; the loop's own overhead is included."""
    started = time.perf_counter_ns()
    for item in inputs:
        function(item)
    return (time.perf_counter_ns() - started) / len(inputs)


def interleaved_ns(
    functions: Mapping[str, Callable[[bytes], object]], inputs: dict[str, list[bytes]], runs: int
) -> dict[str, dict[str, float]]:
    """function -> input kind -> median ns per call. Runs go round-robin over every (function, kind)
    pair, so a noisy neighbour or a clock change slows all candidates alike instead of one of them."""
    samples: dict[tuple[str, str], list[float]] = {}
    for function in functions.values():  # warm-up: first calls build caches and type info
        for items in inputs.values():
            _pass_ns(function, items[:64])
    for _ in range(runs):
        for name, function in functions.items():
            for kind, items in inputs.items():
                samples.setdefault((name, kind), []).append(_pass_ns(function, items))
    out: dict[str, dict[str, float]] = {}
    for (name, kind), values in samples.items():
        out.setdefault(name, {})[kind] = round(statistics.median(values), 1)
    return out


def bench_json(runs: int) -> dict[str, Any]:
    pools = message_pools()
    overhead = interleaved_ns({"len": len}, pools, runs)["len"]
    return {
        "message_bytes_median": {k: statistics.median(map(len, v)) for k, v in pools.items()},
        "loop_overhead_ns": round(statistics.median(overhead.values()), 1),
        "exact_decimal": {name: gives_exact_decimal(f) for name, f in JSON_DECODERS.items()},
        "ns_per_message": interleaved_ns(JSON_DECODERS, pools, runs),
    }


def bounded_decompressobj(data: bytes) -> bytes:
    """The safe form: refuse output past MAX_FRAME, as userstream.protocol.codec.gunzip does."""
    inflater = zlib.decompressobj(GZIP_WBITS)
    out = inflater.decompress(data, MAX_FRAME + 1)
    if len(out) > MAX_FRAME or inflater.unconsumed_tail or not inflater.eof:
        raise ValueError("oversized or truncated gzip frame")
    return out


GUNZIPS: dict[str, Callable[[bytes], bytes]] = {
    "gzip.decompress": gzip.decompress,
    "zlib.decompress(data, 31)": lambda data: zlib.decompress(data, GZIP_WBITS),
    "zlib.decompressobj(31), bounded": bounded_decompressobj,
}


def bench_gunzip(runs: int) -> dict[str, Any]:
    frames = wire_pools()["gzip"]
    for gunzip in GUNZIPS.values():  # all three must agree before any is timed
        assert [gunzip(f) for f in frames[:64]] == [gzip.decompress(f) for f in frames[:64]]
    timed = interleaved_ns(GUNZIPS, {"gzip": frames}, runs)
    return {
        "frame_bytes_median": statistics.median(map(len, frames)),
        "ns_per_frame": {name: by_kind["gzip"] for name, by_kind in timed.items()},
    }


# ----------------------------------------------------------------------------------------------------
# WebSocket receive throughput. The server runs in its own process so the client's CPU is its own.
# Protocol: the client sends "push <text|gzip> <count> <send|raw>" and the server sends `count` frames
# from its pool as fast as the socket takes them; the client times from its request to the last frame.
# "send" calls the library's send per frame; "raw" (picows only) writes frames pre-encoded once into
# wire bytes, so the server costs little more than a memcpy and the client is what gets measured.
# ----------------------------------------------------------------------------------------------------

OPCODES = {"text": 0x1, "gzip": 0x2}


def _parse_push(command: str) -> tuple[str, int, str]:
    _, payload, count, mode = command.split()
    return payload, int(count), mode


def _cycle(pool: list[bytes]) -> Iterator[bytes]:
    while True:
        yield from pool


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


class PreFramed:
    """A pool's frames encoded once into one blob; `chunks(count)` yields the first `count` frames of
    the endless cycle of the pool as slices of it."""

    def __init__(self, opcode: int, pool: list[bytes]) -> None:
        frames = [server_frame(opcode, payload) for payload in pool]
        self.blob = memoryview(b"".join(frames))
        self.ends = list(itertools.accumulate(map(len, frames)))

    def chunks(self, count: int) -> Iterator[memoryview]:
        whole, rest = divmod(count, len(self.ends))
        for _ in range(whole):
            yield self.blob
        if rest:
            yield self.blob[: self.ends[rest - 1]]


class PicowsPusher(picows.WSListener):
    """Server side: writes while the socket's write buffer has room and resumes when it drains."""

    def __init__(self, pools: dict[str, list[bytes]], preframed: dict[str, PreFramed]) -> None:
        self.pools = pools
        self.preframed = preframed
        self.transport: picows.WSTransport | None = None
        self.pending: Iterator[Callable[[], None]] = iter(())
        self.paused = False

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport
        transport.underlying_transport.set_write_buffer_limits(high=1 << 20)

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type == picows.WSMsgType.TEXT:
            payload, count, mode = _parse_push(frame.get_payload_as_ascii_text())
            if mode == "raw":
                write = transport.underlying_transport.write
                chunks = self.preframed[payload].chunks(count)
                self.pending = (functools.partial(write, chunk) for chunk in chunks)
            else:
                msg_type = picows.WSMsgType.TEXT if payload == "text" else picows.WSMsgType.BINARY
                frames = itertools.islice(_cycle(self.pools[payload]), count)
                send = transport.send
                self.pending = (functools.partial(send, msg_type, data) for data in frames)
            self._pump()
        elif frame.msg_type == picows.WSMsgType.CLOSE:
            if not transport.is_close_frame_sent:
                transport.send_close(frame.get_close_code())
            transport.disconnect()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._pump()

    def _pump(self) -> None:
        for write in self.pending:
            write()
            if self.paused:
                return


async def _serve_picows(pools: dict[str, list[bytes]]) -> int:
    preframed = {payload: PreFramed(OPCODES[payload], pool) for payload, pool in pools.items()}
    server = await picows.ws_create_server(lambda _request: PicowsPusher(pools, preframed), "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    return port


async def _serve_aiohttp(pools: dict[str, list[bytes]]) -> int:
    async def push(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, max_msg_size=MAX_FRAME)
        await ws.prepare(request)
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                payload, count, _mode = _parse_push(message.data)
                frames = itertools.islice(_cycle(pools[payload]), count)
                if payload == "text":
                    for data in frames:
                        await ws.send_str(data.decode())
                else:
                    for data in frames:
                        await ws.send_bytes(data)
        return ws

    app = web.Application()
    app.router.add_get("/", push)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port: int = runner.addresses[0][1]
    return port


def serve_forever(kind: str, reply: Connection) -> None:
    """Child process entry: start the `kind` server, report its port, run until the parent says stop."""

    async def main() -> None:
        pools = wire_pools()
        port = await (_serve_picows(pools) if kind == "picows" else _serve_aiohttp(pools))
        reply.send(port)
        await asyncio.get_running_loop().run_in_executor(None, reply.recv)

    asyncio.run(main())


@contextlib.contextmanager
def server_process(kind: str) -> Iterator[str]:
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe()
    process = context.Process(target=serve_forever, args=(kind, child_end), daemon=True)
    process.start()
    try:
        if not parent_end.poll(30):
            raise RuntimeError(f"{kind} server did not start")
        yield f"ws://127.0.0.1:{parent_end.recv()}/"
    finally:
        parent_end.send("stop")
        process.join(5)
        if process.is_alive():
            process.terminate()
            process.join()


# The clients. Each one takes every data frame's payload as the library hands it over (str for text,
# bytes for binary) and counts it; nothing else, so the figures are the libraries' own cost.


async def receive_websockets(url: str, command: str, count: int) -> None:
    async with websockets.asyncio.client.connect(url, max_size=MAX_FRAME) as ws:
        await ws.send(command)
        received = 0
        async for _message in ws:
            received += 1
            if received == count:
                break


async def receive_aiohttp(url: str, command: str, count: int) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, max_msg_size=MAX_FRAME) as ws,
    ):
        await ws.send_str(command)
        received = 0
        async for message in ws:
            if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                received += 1
                if received == count:
                    break


class PicowsCounter(picows.WSListener):
    def __init__(self, count: int, done: asyncio.Future[None]) -> None:
        self.count = count
        self.received = 0
        self.done = done

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type == picows.WSMsgType.TEXT:
            frame.get_payload_as_utf8_text()
        elif frame.msg_type == picows.WSMsgType.BINARY:
            frame.get_payload_as_bytes()
        else:
            return
        self.received += 1
        if self.received == self.count:
            self.done.set_result(None)


async def receive_picows(url: str, command: str, count: int) -> None:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    transport, _ = await picows.ws_connect(lambda: PicowsCounter(count, done), url, max_frame_size=MAX_FRAME)
    try:
        transport.send(picows.WSMsgType.TEXT, command.encode())
        await done
    finally:
        transport.send_close(picows.WSCloseCode.OK)
        transport.disconnect()
        await transport.wait_disconnected()


CLIENTS: dict[str, Callable[[str, str, int], Coroutine[Any, Any, None]]] = {
    "websockets (asyncio client)": receive_websockets,
    "aiohttp ws_connect": receive_aiohttp,
    "picows ws_connect": receive_picows,
}

#: server label -> (server process kind, push mode)
SERVERS = {
    "aiohttp, send_str/send_bytes per frame": ("aiohttp", "send"),
    "picows, send() per frame": ("picows", "send"),
    "picows, frames pre-encoded once": ("picows", "raw"),
}
PROBE_CLIENT = "picows ws_connect"  # the client with the least CPU per frame needs the fastest server


async def measure_clients(
    urls: dict[str, str], pairs: list[tuple[str, str]], count: int, runs: int
) -> dict[str, dict[str, dict[str, Any]]]:
    """server -> client -> payload -> figures. Runs go round-robin over every pair and payload, so drift
    on a shared machine slows every candidate alike."""
    samples: dict[tuple[str, str, str], list[tuple[float, float]]] = {}

    async def once(server: str, client: str, payload: str, frames: int) -> tuple[float, float]:
        kind, mode = SERVERS[server]
        command = f"push {payload} {frames} {mode}"
        wall, cpu = time.perf_counter(), time.process_time()
        await CLIENTS[client](urls[kind], command, frames)
        return time.perf_counter() - wall, time.process_time() - cpu

    for server, client in pairs:  # warm-up: imports, first connection, allocator
        for payload in OPCODES:
            await once(server, client, payload, min(count, 2000))
    for _ in range(runs):
        for server, client in pairs:
            for payload in OPCODES:
                sample = await once(server, client, payload, count)
                samples.setdefault((server, client, payload), []).append(sample)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (server, client, payload), measured in samples.items():
        out.setdefault(server, {}).setdefault(client, {})[payload] = {
            "frames_per_s": round(statistics.median(count / wall for wall, _ in measured)),
            "client_cpu_us_per_frame": round(statistics.median(cpu / count * 1e6 for _, cpu in measured), 3),
            "runs_frames_per_s": [round(count / wall) for wall, _ in measured],
        }
    return out


def bench_websocket(count: int, selection_runs: int, runs: int) -> dict[str, Any]:
    pools = wire_pools()
    with server_process("picows") as picows_url, server_process("aiohttp") as aiohttp_url:
        urls = {"picows": picows_url, "aiohttp": aiohttp_url}
        probe = [(server, PROBE_CLIENT) for server in SERVERS]
        selection = asyncio.run(measure_clients(urls, probe, count, selection_runs))
        speed = {
            server: statistics.mean(r["frames_per_s"] for r in by_client[PROBE_CLIENT].values())
            for server, by_client in selection.items()
        }
        chosen = max(speed, key=lambda server: speed[server])
        pairs = [(chosen, client) for client in CLIENTS]
        by_client = asyncio.run(measure_clients(urls, pairs, count, runs))[chosen]
    return {
        "frames": count,
        "runs": runs,
        "frame_bytes_median": {k: statistics.median(map(len, v)) for k, v in pools.items()},
        "server_selection": {
            "client": PROBE_CLIENT,
            "runs": selection_runs,
            "frames_per_s": {
                server: {payload: r["frames_per_s"] for payload, r in by[PROBE_CLIENT].items()}
                for server, by in selection.items()
            },
            "chosen": chosen,
        },
        "server": chosen,
        "clients": by_client,
    }


# ----------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------


def _event_loop_name() -> str:
    loop = asyncio.new_event_loop()
    try:
        return f"{type(loop).__module__}.{type(loop).__name__}"
    finally:
        loop.close()


def _aiohttp_reader() -> str:
    try:
        reader = importlib.import_module("aiohttp._websocket.reader")  # private; may move
    except ImportError:
        return "unknown"
    return str(reader.WebSocketReader.__module__)


def machine() -> dict[str, Any]:
    names = ["aiohttp", "msgspec", "orjson", "picows", "aiofastnet", "websockets"]
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "cpu_count": os.cpu_count(),
        "event_loop": _event_loop_name(),
        # The comparison is only fair if each library runs its compiled frame parser, not a fallback.
        "aiohttp_websocket_reader": _aiohttp_reader(),
        "versions": versions,
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [f"Run {results['machine']['date']}: medians of one run on a shared machine.\n"]
    js = results["json"]
    kinds = list(MESSAGE_MAKERS)
    lines.append(
        "JSON decode, ns per message (median of "
        f"{js['runs']} interleaved passes over {POOL_SIZE} distinct messages per kind; "
        f"~{js['loop_overhead_ns']:.0f} ns of loop overhead included)\n"
    )
    lines.append("| decoder | " + " | ".join(kinds) + " | exact Decimal |")
    lines.append("|---|" + "---:|" * len(kinds) + ":---:|")
    for name, by_kind in js["ns_per_message"].items():
        exact = "yes" if js["exact_decimal"][name] else "no"
        cells = " | ".join(f"{by_kind[kind]:,.0f}" for kind in kinds)
        lines.append(f"| {name} | {cells} | {exact} |")
    sizes = ", ".join(f"{k} {v:.0f} B" for k, v in js["message_bytes_median"].items())
    lines.append(f"\nMessage sizes (median): {sizes}.\n")

    gz = results["gunzip"]
    lines.append(f"Gunzip, ns per frame (median frame {gz['frame_bytes_median']:.0f} B)\n")
    lines.append("| call | ns/frame |")
    lines.append("|---|---:|")
    lines.extend(f"| {name} | {ns:,.0f} |" for name, ns in gz["ns_per_frame"].items())

    ws = results["websocket"]
    selection = ws["server_selection"]
    lines.append(
        f"\nServer selection: {selection['client']} receiving {ws['frames']:,} frames, frames/s "
        f"(median of {selection['runs']})\n"
    )
    lines.append("| server | text | gzip |")
    lines.append("|---|---:|---:|")
    for server, by_payload in selection["frames_per_s"].items():
        mark = " (chosen)" if server == selection["chosen"] else ""
        lines.append(f"| {server}{mark} | {by_payload['text']:,} | {by_payload['gzip']:,} |")

    sizes_ws = ws["frame_bytes_median"]
    lines.append(
        f"\nWebSocket client receive, {ws['frames']:,} frames on one connection over 127.0.0.1 "
        f"(median of {ws['runs']}; server: {ws['server']}, in its own process)\n"
    )
    lines.append(
        f"| client | text frames/s (~{sizes_ws['text']:.0f} B) | gzip frames/s "
        f"(~{sizes_ws['gzip']:.0f} B) | client CPU us/frame, text | gzip |"
    )
    lines.append("|---|---:|---:|---:|---:|")
    for client, by_payload in ws["clients"].items():
        text, binary = by_payload["text"], by_payload["gzip"]
        lines.append(
            f"| {client} | {text['frames_per_s']:,} | {binary['frames_per_s']:,} | "
            f"{text['client_cpu_us_per_frame']:.2f} | {binary['client_cpu_us_per_frame']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script runs")
    parser.add_argument("--frames", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=15, help="passes per decoder and message kind")
    parser.add_argument("--ws-runs", type=int, default=5, help="runs per WebSocket client")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    args = parser.parse_args()
    frames, runs, ws_runs, selection_runs = args.frames, args.runs, args.ws_runs, 3
    if args.quick:
        frames, runs, ws_runs, selection_runs = 3000, 3, 3, 3

    started = time.perf_counter()
    results: dict[str, Any] = {"machine": machine()}
    results["json"] = {"runs": runs, **bench_json(runs)}
    results["gunzip"] = {"runs": runs, **bench_gunzip(runs)}
    results["websocket"] = bench_websocket(frames, selection_runs, ws_runs)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["note"] = "medians from one run on a shared machine; compare rows, not machines"

    print(markdown(results))
    print(f"\n({results['seconds']} s)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
