"""The peers: ccxt pro and python-binance beside userstream, on the same order events (issue 15).

Users choose between userstream and the general libraries on exchanges those support. Their current
releases take Binance's spot user data through the WebSocket API: the client sends
`userDataStream.subscribe.signature` on `/ws-api/v3`, the server answers `{"id":...,"status":200,
"result":{"subscriptionId":0}}` and then pushes each event wrapped as `{"subscriptionId":0,"event":{...}}`.
This module owns a local mock of just that (a picows WebSocket server, in its own process), the REST calls
the peers make on the way (ccxt loads its markets from a minimal `exchangeInfo`), the consumers, and the
measurement. userstream reads the same content from the same server in its own two dialects: Coinlocally
(the same execution reports, gzip-compressed binary frames, `sub` handshake) and Bitmusa (the same orders
as text `spot_order` frames, after the listenKey REST call, which the mock's REST app also serves).

The content: `wire.coinlocally_execution`'s execution reports (order updates only; a balance update is not
an order event), numbered so that event k of a latency run has event time LATENCY_EPOCH_MS + k. For
Binance each report gets the fields Binance's executionReport has and Coinlocally's lacks (client order
id, time in force, commission asset, trade id, ...), and `PART_FILLED` is spelled `PARTIALLY_FILLED`.
A library that is not installed (the peers are the `peers` extra, which `make bench` installs) is
reported as not measured.

Each consumer runs in a fresh process of its own (`python bench/peers.py --consume LIB ...`), so its
imports, RSS and CPU are its own:

- throughput: the server pushes N events as fast as the socket takes them; the consumer counts events from
  the first to the N-th and reports events/s and CPU µs per event over that span (`time.process_time`, so
  imports and market loading are outside it), and its peak RSS (VmHWM);
- latency: the server pushes numbered events at 1,000 events/s, recording CLOCK_MONOTONIC just before each
  write; the consumer records the same clock when the event reaches its code (shared by every process of
  the machine). The first WARMUP events are left out of the percentiles.

Libraries are measured round-robin, each figure a median over the runs.

Run alone: python bench/peers.py [--events N] [--runs R] [--seconds S]   (as a section of bench/run.py: peers)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from functools import cache
from importlib import metadata
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import picows
from aiohttp import web

import wire
from common import RESULTS_DIR, child, machine, median, percentile, serve_commands_async
from pusher import rest_app, server_frame

LIBRARIES = ("userstream-coinlocally", "userstream-bitmusa", "ccxt", "python-binance")
#: the distribution each consumer needs (versions go in the report)
DISTRIBUTIONS = {
    "userstream-coinlocally": "userstream",
    "userstream-bitmusa": "userstream",
    "ccxt": "ccxt",
    "python-binance": "python-binance",
}
#: the figure the others are compared with
BASELINE = "userstream-coinlocally"
ENDPOINTS = {
    "userstream-coinlocally": "spotws_user/userData/ws",
    "userstream-bitmusa": "bitmusa",  # userstream adds /ws/spot/<listenKey>
    "ccxt": "ws-api/v3",
    "python-binance": "ws-api/v3",
}
BITMUSA_STATUSES = {
    "NEW": "TRADING",
    "PART_FILLED": "TRADING",
    "PENDING_CANCEL": "TRADING",
    "FILLED": "COMPLETED",
    "CANCELED": "CANCELED",
}
SUBSCRIPTION_ID = 0
TOKEN = "bench-token"
API_KEY = "bench-api-key"
API_SECRET = "bench-api-secret"
WARMUP = 200
IDLE_SECONDS = 5.0
#: exchangeInfo lists the symbols of the content, nothing else
SYMBOLS = {
    "BTCUSDT": ("BTC", "USDT"),
    "ETHUSDT": ("ETH", "USDT"),
    "XRPUSDT": ("XRP", "USDT"),
    "SOLUSDC": ("SOL", "USDC"),
    "ETHBTC": ("ETH", "BTC"),
    "BNBFDUSD": ("BNB", "FDUSD"),
}

# --- the content ----------------------------------------------------------------------------------------


def _reports(seed: str, count: int, event_time: Callable[[int], int]) -> list[dict[str, Any]]:
    import random  # noqa: PLC0415 - only the server builds content

    rng = random.Random(f"{wire.SEED}-peers-{seed}")
    return [json.loads(wire.coinlocally_execution(rng, index, event_time(index))) for index in range(count)]


def binance_event(report: dict[str, Any], index: int) -> dict[str, Any]:
    """A Coinlocally execution report as Binance's executionReport (the fields Binance adds, and its
    spelling of a partial fill)."""
    status = "PARTIALLY_FILLED" if report["X"] == "PART_FILLED" else report["X"]
    traded = report["x"] == "TRADE"
    quote = SYMBOLS[report["s"]][1]
    return {
        "e": "executionReport",
        "E": report["E"],
        "s": report["s"],
        "c": f"bench-{index}",
        "S": report["S"],
        "o": report["o"],
        "f": "GTC",
        "q": report["q"],
        "p": report["p"],
        "P": "0.00000000",
        "F": "0.00000000",
        "g": -1,
        "C": "",
        "x": report["x"],
        "X": status,
        "r": "NONE",
        "i": int(report["i"]),
        "l": report["l"],
        "z": report["z"],
        "L": report["L"],
        "n": report["n"],
        "N": quote if traded else None,
        "T": report["T"],
        "t": 7_000_000 + index if traded else -1,
        "I": 90_000_000 + index,
        "w": status in ("NEW", "PARTIALLY_FILLED"),
        "m": False,
        "M": traded,
        "O": report["O"],
        "Z": report["Z"],
        "Y": "0",
        "Q": report["Q"],
        "W": report["O"],
        "V": "EXPIRE_MAKER",
    }


def bitmusa_order(report: dict[str, Any]) -> dict[str, Any]:
    """A Coinlocally execution report as Bitmusa's spot_order (numbers as JSON numbers, as Bitmusa
    sends them; its statuses and order types)."""
    base, quote = SYMBOLS[report["s"]]
    status = BITMUSA_STATUSES[report["X"]]
    price = float(report["p"]) or float(report["L"])
    traded = float(report["z"])
    return {
        "data": {
            "orderId": f"C{report['i']}",
            "symbol": f"{base}/{quote}",
            "direction": report["S"],
            "type": "LIMIT_PRICE" if report["o"] == "LIMIT" else "MARKET_PRICE",
            "price": price,
            "amount": float(report["q"]),
            "tradedAmount": traded,
            "value": round(traded * price, 6),
            "status": status,
            "createdTime": report["O"],
            "canceledTime": report["E"] if status == "CANCELED" else None,
            "completedTime": report["E"] if status == "COMPLETED" else None,
        },
        "stream": "spot_order",
        "eventTime": report["E"],
    }


def frames(dialect: str, reports: list[dict[str, Any]]) -> list[bytes]:
    """The reports as wire frames: Binance text JSON in the WebSocket API's wrapper, Bitmusa text JSON,
    or Coinlocally's gzip-compressed binary JSON."""
    if dialect == "bitmusa":
        return [server_frame(0x1, wire.compact(bitmusa_order(report))) for report in reports]
    if dialect == "binance":
        return [
            server_frame(
                0x1,
                wire.compact({"subscriptionId": SUBSCRIPTION_ID, "event": binance_event(report, index)}),
            )
            for index, report in enumerate(reports)
        ]
    return [server_frame(0x2, wire.gzip_member(wire.compact(report))) for report in reports]


@cache
def flood_pool(dialect: str) -> list[bytes]:
    return frames(dialect, _reports("flood", wire.POOL_SIZE, lambda index: 1_745_389_508_472 + index * 173))


@cache
def paced_frames(dialect: str, count: int) -> list[bytes]:
    return frames(dialect, _reports("paced", count, lambda index: wire.LATENCY_EPOCH_MS + index))


def exchange_info() -> dict[str, Any]:
    """A minimal spot exchangeInfo: the content's symbols, with the fields ccxt's market parser reads."""
    symbols = [
        {
            "symbol": symbol,
            "status": "TRADING",
            "baseAsset": base,
            "baseAssetPrecision": 8,
            "quoteAsset": quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True,
            "ocoAllowed": True,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True,
            "cancelReplaceAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": "0.00000001",
                    "maxPrice": "1000000.00000000",
                    "tickSize": "0.00000001",
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": "0.00000001",
                    "maxQty": "9000000.00000000",
                    "stepSize": "0.00000001",
                },
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }
        for symbol, (base, quote) in SYMBOLS.items()
    ]
    return {
        "timezone": "UTC",
        "serverTime": int(time.time() * 1000),
        "rateLimits": [],
        "exchangeFilters": [],
        "symbols": symbols,
    }


# --- the server -----------------------------------------------------------------------------------------


class Plan:
    """What one connection receives, from its path: `/<flood|paced>/<count>/<rate>/<token>/<endpoint>`,
    the endpoint `ws-api/v3` (Binance's WebSocket API), `bitmusa/ws/spot/<listenKey>` (Bitmusa) or
    `spotws_user/userData/ws` (Coinlocally)."""

    def __init__(self, path: str) -> None:
        mode, count, rate, token, *endpoint = [part for part in path.split("/") if part]
        if mode not in ("flood", "paced"):
            raise ValueError(f"unknown mode in {path!r}")
        self.mode, self.count, self.rate, self.token = mode, int(count), float(rate), token
        where = "/".join(endpoint)
        self.dialect = (
            "binance"
            if where.startswith("ws-api")
            else "bitmusa"
            if where.startswith("bitmusa")
            else "coinlocally"
        )


class MockServer(picows.WSListener):
    def __init__(self, plan: Plan, send_times: dict[str, list[int]], requests: list[str]) -> None:
        self.plan = plan
        self.send_times = send_times
        self.requests = requests
        self.transport: picows.WSTransport | None = None
        self.paused = False
        self.started = False
        self.chunks: itertools.chain[bytes] = itertools.chain()
        self.paced: asyncio.Task[None] | None = None

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport
        transport.underlying_transport.set_write_buffer_limits(high=1 << 20)
        if self.plan.dialect == "coinlocally":
            transport.send(picows.WSMsgType.TEXT, b"connect success")
        elif self.plan.dialect == "bitmusa":  # Bitmusa's stream starts on the upgrade
            self.start()

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        kind = frame.msg_type
        if kind == picows.WSMsgType.TEXT:
            text = frame.get_payload_as_utf8_text()
            if self.plan.dialect == "binance":
                self.api_request(transport, text)
            elif '"sub"' in text:
                transport.send(picows.WSMsgType.TEXT, b"sub success")
                self.start()
            elif '"ping"' in text:
                transport.send(picows.WSMsgType.TEXT, text.replace("ping", "pong").encode())
        elif kind == picows.WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
        elif kind == picows.WSMsgType.CLOSE:
            self.chunks = itertools.chain()
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def api_request(self, transport: picows.WSTransport, text: str) -> None:
        """Binance's WebSocket API, the part the peers use: a request is `{"id","method","params"}`; the
        answer echoes the id with status 200 and a result."""
        request = json.loads(text)
        method = request.get("method")
        self.requests.append(method)
        subscribe = method in ("userDataStream.subscribe.signature", "userDataStream.subscribe")
        if subscribe:
            params = request.get("params", {})
            if not {"apiKey", "timestamp", "signature"} <= params.keys() and method.endswith(".signature"):
                reply: dict[str, Any] = {
                    "id": request.get("id"),
                    "status": 400,
                    "error": {"code": -1102, "msg": "Mandatory parameter was not sent."},
                }
            else:
                reply = {
                    "id": request.get("id"),
                    "status": 200,
                    "result": {"subscriptionId": SUBSCRIPTION_ID},
                }
        elif method in ("userDataStream.unsubscribe", "session.logon", "session.logout", "ping"):
            reply = {"id": request.get("id"), "status": 200, "result": {}}
        else:
            reply = {
                "id": request.get("id"),
                "status": 400,
                "error": {"code": -1100, "msg": f"the mock does not serve {method}"},
            }
        transport.send(picows.WSMsgType.TEXT, wire.compact(reply))
        if subscribe and reply["status"] == 200:
            self.start()

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        if self.paced is not None:
            self.paced.cancel()

    def start(self) -> None:
        if self.started:
            return
        self.started = True
        if self.plan.mode == "flood":
            pool = flood_pool(self.plan.dialect)
            whole, rest = divmod(self.plan.count, len(pool))
            blob = b"".join(pool)
            self.chunks = itertools.chain(itertools.repeat(blob, whole), [b"".join(pool[:rest])])
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
        for chunk in self.chunks:
            if self.transport.is_disconnected or self.transport.is_close_frame_sent:
                return
            write(chunk)
            if self.paused:
                return

    async def pace(self) -> None:
        assert self.transport is not None
        plan = self.plan
        paced = paced_frames(plan.dialect, plan.count)
        times = self.send_times.setdefault(plan.token, [0] * plan.count)
        write = self.transport.underlying_transport.write
        interval_ns = round(1e9 / plan.rate)
        started = time.monotonic_ns()
        index = 0
        while index < plan.count:
            due = min(plan.count, (time.monotonic_ns() - started) // interval_ns + 1)
            while index < due:
                times[index] = time.monotonic_ns()
                write(paced[index])
                index += 1
            wake = started + index * interval_ns
            await asyncio.sleep(max(0, wake - time.monotonic_ns()) / 1e9)


async def _rest_app() -> tuple[web.AppRunner, int]:
    """The REST the peers call: exchangeInfo (ccxt's market load), time and ping, beside the listenKey calls
    of userstream's Bitmusa client (pusher.rest_app)."""

    async def info(_request: web.Request) -> web.Response:
        return web.json_response(exchange_info())

    async def server_time(_request: web.Request) -> web.Response:
        return web.json_response({"serverTime": int(time.time() * 1000)})

    async def ping(_request: web.Request) -> web.Response:
        return web.json_response({})

    return await rest_app({"/api/v3/exchangeInfo": info, "/api/v3/time": server_time, "/api/v3/ping": ping})


def server_main(pipe: Connection) -> None:
    """Child entry: serve until told to stop. Ready report: {"ws": port, "rest": port}."""

    async def run() -> None:
        send_times: dict[str, list[int]] = {}
        requests: list[str] = []

        def listener(request: picows.WSUpgradeRequest) -> MockServer:
            return MockServer(Plan(request.path.decode()), send_times, requests)

        server = await picows.ws_create_server(listener, "127.0.0.1", 0)  # type: ignore[arg-type]
        runner, rest_port = await _rest_app()
        pipe.send({"ws": server.sockets[0].getsockname()[1], "rest": rest_port})

        def take_send_times(token: str) -> list[int]:
            return send_times.pop(token, [])

        def prepare(count: int) -> int:
            for dialect in ("binance", "bitmusa", "coinlocally"):
                flood_pool(dialect)
                paced_frames(dialect, count)
            return count

        def take_requests() -> list[str]:
            taken = list(requests)
            requests.clear()
            return taken

        handlers: dict[str, Any] = {
            "send_times": take_send_times,
            "prepare": prepare,
            "requests": take_requests,
        }
        try:
            await serve_commands_async(pipe, handlers)
        finally:
            server.close()
            await runner.cleanup()

    asyncio.run(run())


# --- the consumers (each in its own process) ------------------------------------------------------------


class Counter:
    """Counts events up to `target`, timing (wall and CPU) from the first to the last, and keeps each
    numbered event's arrival time (CLOCK_MONOTONIC, ns) when asked."""

    def __init__(self, target: int, numbered: bool) -> None:
        self.target = target
        self.count = 0
        self.first_wall = self.last_wall = 0
        self.first_cpu = self.last_cpu = 0.0
        self.arrivals: list[int] | None = [0] * target if numbered else None
        self.done = asyncio.Event()

    def __call__(self, event_time: int) -> None:
        now = time.monotonic_ns()
        if self.count == 0:
            self.first_wall, self.first_cpu = now, time.process_time()
        self.count += 1
        if self.arrivals is not None:
            index = event_time - wire.LATENCY_EPOCH_MS
            if 0 <= index < self.target and not self.arrivals[index]:
                self.arrivals[index] = now
        if self.count >= self.target:
            self.last_wall, self.last_cpu = now, time.process_time()
            self.done.set()


async def consume_userstream(ws_url: str, _rest_url: str, on_event: Counter) -> None:
    from userstream import client  # noqa: PLC0415 - each consumer imports only its own library

    stream = client.connect("coinlocally", token=TOKEN, ws_url=ws_url)
    async with stream:
        async for event in stream:
            on_event(event.timestamp)


async def consume_userstream_bitmusa(ws_url: str, rest_url: str, on_event: Counter) -> None:
    from userstream import client  # noqa: PLC0415

    stream = client.connect(
        "bitmusa", api_key=API_KEY, auth_key="bench-auth-key", rest_url=rest_url, ws_url=ws_url
    )
    async with stream:
        async for event in stream:
            on_event(event.timestamp)


async def consume_ccxt(ws_url: str, rest_url: str, on_event: Counter) -> None:
    import ccxt.pro  # noqa: PLC0415

    exchange = ccxt.pro.binance(
        {
            "apiKey": API_KEY,
            "secret": API_SECRET,
            # the market load reads exchangeInfo only: no currencies (a private call), no margin pairs,
            # no futures markets
            "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False},
        }
    )
    exchange.urls["api"]["public"] = f"{rest_url}/api/v3"
    exchange.urls["api"]["ws"]["ws-api"]["spot"] = ws_url
    try:
        await exchange.load_markets()
        while True:
            for order in await exchange.watch_orders():
                on_event(int(order["info"]["E"]))
    finally:
        await exchange.close()


async def consume_python_binance(ws_url: str, _rest_url: str, on_event: Counter) -> None:
    from binance import AsyncClient, BinanceSocketManager  # noqa: PLC0415

    AsyncClient.WS_API_URL = ws_url  # the WebSocket API's address ({} is the tld; ours has none)
    api = AsyncClient(API_KEY, API_SECRET)
    try:
        socket = BinanceSocketManager(api).user_socket()
        async with socket:
            while True:
                message = await socket.recv()
                if message.get("e") == "executionReport":
                    on_event(message["E"])
    finally:
        await api.close_connection()


CONSUMERS = {
    "userstream-coinlocally": consume_userstream,
    "userstream-bitmusa": consume_userstream_bitmusa,
    "ccxt": consume_ccxt,
    "python-binance": consume_python_binance,
}


def _vm_hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def consume(library: str, ws_url: str, rest_url: str, count: int, numbered: bool) -> dict[str, Any]:
    """Run one consumer until it has `count` events or has been idle for IDLE_SECONDS after connecting."""
    counter = Counter(count, numbered)
    task = asyncio.create_task(CONSUMERS[library](ws_url, rest_url, counter))
    seen = -1
    while not counter.done.is_set() and not task.done():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(counter.done.wait(), IDLE_SECONDS)
        if counter.count == seen:
            break  # idle: report what arrived
        seen = counter.count
    if not counter.done.is_set():
        counter.last_wall, counter.last_cpu = time.monotonic_ns(), time.process_time()
    task.cancel()
    error = None
    with contextlib.suppress(asyncio.CancelledError):
        try:
            await task
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
    return {
        "events": counter.count,
        "wall_ns": counter.last_wall - counter.first_wall,
        "cpu_s": counter.last_cpu - counter.first_cpu,
        "vm_hwm_kib": _vm_hwm_kib(),
        "arrivals": counter.arrivals,
        "error": error,
    }


# --- the measurement (parent) ---------------------------------------------------------------------------


def _run_consumer(
    ready: dict[str, int], library: str, *, mode: str, count: int, rate: float, token: str
) -> dict[str, Any]:
    ws_url = f"ws://127.0.0.1:{ready['ws']}/{mode}/{count}/{rate:.3f}/{token}/{ENDPOINTS[library]}"
    rest_url = f"http://127.0.0.1:{ready['rest']}"
    command = [sys.executable, __file__, "--consume", library, "--ws", ws_url, "--rest", rest_url]
    command += ["--events", str(count)] + (["--numbered"] if mode == "paced" else [])
    timeout = 120 + (count / rate if mode == "paced" else count / 2000)
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603
    if done.returncode != 0 or not done.stdout.strip():
        return {"events": 0, "error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def available() -> dict[str, str | None]:
    """Each library's installed version (None: not installed, so not measured)."""
    versions: dict[str, str | None] = {}
    for library, distribution in DISTRIBUTIONS.items():
        try:
            versions[library] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[library] = None
    if versions[BASELINE] is None:  # run from a source tree (PYTHONPATH=src), not installed
        import userstream  # noqa: PLC0415

        versions["userstream-coinlocally"] = versions["userstream-bitmusa"] = (
            f"{userstream.__version__} (source)"
        )
    return versions


def run(events: int = 30_000, runs: int = 5, seconds: float = 3.0, rate: float = 1000.0) -> dict[str, Any]:
    versions = available()
    libraries = [library for library in LIBRARIES if versions[library]]
    tokens = itertools.count(1)
    paced_count = WARMUP + round(rate * seconds)
    samples: dict[str, dict[str, list[Any]]] = {library: {"flood": [], "paced": []} for library in libraries}
    errors: dict[str, list[str]] = {}
    with child(server_main) as server:
        ready: dict[str, int] = server.ready  # type: ignore[attr-defined]
        server.call("prepare", paced_count)
        for library in libraries:  # warm the server's caches and the disk cache of each library's imports
            _run_consumer(ready, library, mode="flood", count=500, rate=rate, token=f"w{next(tokens)}")
        requests = server.call("requests")
        for _ in range(runs):
            for library in libraries:
                flood = _run_consumer(
                    ready, library, mode="flood", count=events, rate=rate, token=f"f{next(tokens)}"
                )
                samples[library]["flood"].append(flood)
                token = f"p{next(tokens)}"
                paced = _run_consumer(ready, library, mode="paced", count=paced_count, rate=rate, token=token)
                sent = server.call("send_times", token)
                paced["latencies_us"] = sorted(
                    (arrived - at) / 1000
                    for arrived, at in list(zip(paced.get("arrivals") or [], sent, strict=False))[WARMUP:]
                    if arrived and at
                )
                paced.pop("arrivals", None)
                samples[library]["paced"].append(paced)
                for result in (flood, paced):
                    if result.get("error"):
                        errors.setdefault(library, []).append(result["error"])
    out: dict[str, Any] = {
        "versions": versions,
        "events_per_run": events,
        "runs": runs,
        "latency_events_per_s": rate,
        "latency_seconds": seconds,
        "warmup_events": WARMUP,
        "requests_seen": sorted(set(requests)),
        "libraries": {},
        "errors": errors,
    }
    for library in libraries:
        floods = [s for s in samples[library]["flood"] if s.get("events", 0) >= events]
        paceds = [s for s in samples[library]["paced"] if s.get("latencies_us")]
        figures: dict[str, Any] = {
            "complete_runs": len(floods),
            "events_seen": [s.get("events", 0) for s in samples[library]["flood"]],
        }
        if floods:
            figures["events_per_s"] = round(median([(events - 1) / (s["wall_ns"] / 1e9) for s in floods]))
            figures["cpu_us_per_event"] = round(median([s["cpu_s"] * 1e6 / (events - 1) for s in floods]), 2)
            figures["rss_mib"] = round(median([s["vm_hwm_kib"] / 1024 for s in floods]), 1)
        if paceds:
            for name, fraction in (("p50_us", 0.5), ("p99_us", 0.99)):
                figures[name] = round(median([percentile(s["latencies_us"], fraction) for s in paceds]), 1)
            figures["latency_received"] = [len(s["latencies_us"]) for s in paceds]
        out["libraries"][library] = figures
    # CPU against userstream's, as the median of the ratios within each round (libraries alternate, so
    # the machine's drift moves both sides of a ratio alike)
    baseline = samples.get(BASELINE, {}).get("flood", [])
    for library, figures in out["libraries"].items():
        ratios = [
            own["cpu_s"] / base["cpu_s"]
            for own, base in zip(samples[library]["flood"], baseline, strict=False)
            if own.get("events", 0) >= events and base.get("events", 0) >= events and base["cpu_s"] > 0
        ]
        if ratios:
            figures["cpu_vs_userstream"] = round(median(ratios), 2)
    return out


def markdown(result: dict[str, Any]) -> str:
    by_distribution = {DISTRIBUTIONS[name]: version for name, version in result["versions"].items()}
    versions = ", ".join(f"{name} {version}" for name, version in by_distribution.items() if version)
    missing = [name for name, version in by_distribution.items() if not version]
    lines = [
        f"## The peers: the same order events through Binance's WebSocket API (ccxt, python-binance) and "
        f"userstream's own dialects (median of {result['runs']} runs; "
        f"{result['events_per_run']:,} events at full speed, "
        f"latency at {result['latency_events_per_s']:,.0f} events/s for "
        f"{result['latency_seconds']:g} s)",
        "",
        f"Versions: {versions}."
        + (f" Not installed, not measured: {', '.join(missing)}." if missing else ""),
        "",
        "| library | events/s | CPU µs/event | CPU vs userstream | p50 µs | p99 µs | RSS MiB (VmHWM) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for library, f in result["libraries"].items():
        if "events_per_s" not in f:
            lines.append(f"| {library} | (no complete run: {f['events_seen']}) | | | | | |")
            continue
        lines.append(
            f"| {library} | {f['events_per_s']:,} | {f['cpu_us_per_event']:.1f} | "
            f"{f.get('cpu_vs_userstream', float('nan')):.2f} | {f.get('p50_us', float('nan')):,.0f} | "
            f"{f.get('p99_us', float('nan')):,.0f} | {f['rss_mib']:.1f} |"
        )
    for library, messages in result["errors"].items():
        lines.append(f"\n{library}: {len(messages)} run(s) ended with an error, last: {messages[-1]}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000, help="events per full-speed run")
    parser.add_argument("--runs", type=int, default=5, help="runs per library (the figure is the median)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds of each 1,000 events/s run")
    parser.add_argument("--consume", choices=LIBRARIES, help=argparse.SUPPRESS)
    parser.add_argument("--ws", help=argparse.SUPPRESS)
    parser.add_argument("--rest", help=argparse.SUPPRESS)
    parser.add_argument("--numbered", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.consume:
        result = asyncio.run(consume(args.consume, args.ws, args.rest, args.events, args.numbered))
        sys.stdout.write(json.dumps(result))
        return
    result = run(args.events, args.runs, args.seconds)
    print(markdown(result))
    output = RESULTS_DIR / "peers.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"machine": machine(), "peers": result}, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
