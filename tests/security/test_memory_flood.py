"""Memory bounded in bytes against a hostile Coinlocally peer (issue 13 §1), in real processes.

The peer is a fake *exchange* (aiohttp's WebSocket server, in this process): it accepts the sub, then floods
valid execution reports padded with an unknown field, each a ~100-byte gzip frame inflating to 64 KiB (the
issue's peer sent ~1 KB frames inflating to ~1 MB: the same shape, smaller so the test takes seconds; the
bench, bench/memory_flood.py, runs the issue's sizes). Each report has its own order id and stays open.

The client, the gateway and the recorder run as subprocesses (`sys.executable`, this tree's code), and their
peak resident memory is read from /proc/<pid>/status (VmHWM) once the flood has been taken in. Before raw was
clipped, the queue bounded in bytes and the state kept without raw, the same floods took main's client and
gateway to ~430 MiB each (and more the longer the flood); now each stays under `BOUND` (measured 73, 73, 56
and 53 MiB on the development machine), and the counts (taken, queued, dropped) are exactly what the queue's
byte bound allows.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from support.examples import COINLOCALLY_EXECUTION_REPORT
from support.peers import served
from support.processes import api_url, finish, first_line, gateway, python, reaped, stop, userstream
from userstream.client.options import DEFAULT_QUEUE_BYTES
from userstream.events import RAW_LIMIT, event_size
from userstream.protocol import coinlocally
from userstream.protocol.messages import DataEvents

MIB = 1 << 20
#: The stated bound on a client's or a gateway's peak RSS under the flood (docs/reliability.md, "Memory").
BOUND = 256 * MIB
PAD = 64 * 1024  # characters of padding in each report
WS_PATH = "/spotws_user/userData/ws"
TOKEN = "flood-token"
WAIT = 60.0  # generous: two shared cores; never reached when all is well
DEFAULT_QUEUE_SIZE = 10_000

# The client under test: default options but the overflow policy; it never consumes an event. It prints its
# stats once it has taken `expect` events (and a moment more, so anything beyond shows), then waits for a line
# on stdin: the test reads its memory meanwhile.
CLIENT = """
import asyncio, dataclasses, json, sys
from userstream import connect

async def main() -> None:
    url, overflow, expect = sys.argv[1], sys.argv[2], int(sys.argv[3])
    async with connect("coinlocally", token="flood-token", ws_url=url, overflow=overflow) as stream:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while stream.stats.events_received < expect and loop.time() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        print(json.dumps(dataclasses.asdict(stream.stats)), flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)

asyncio.run(main())
"""


class PaddedReports:
    """The n-th report: order id n (19 digits), status NEW, an unknown field "pad" first. Every report
    shares the compressed padding: only its tail is compressed per report (zlib's compressor copy)."""

    def __init__(self, pad: int) -> None:
        fields = json.loads(COINLOCALLY_EXECUTION_REPORT)
        fields.update(X="NEW", x="NEW", z="0", Z="0", l="0", L="0", n="0", i="{id}")
        tail = json.dumps(fields, separators=(",", ":"))
        self._tail = "," + tail[1:]  # the fields after "pad"
        self._compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # 31: a gzip member
        self._head = self._compressor.compress(('{"pad":"' + "x" * pad + '"').encode())

    def __call__(self, n: int) -> bytes:
        compressor = self._compressor.copy()
        tail = self._tail.replace("{id}", f"{n:019d}").encode()
        return self._head + compressor.compress(tail) + compressor.flush()


class FloodPeer:
    """A Coinlocally exchange that sends `count` frames as soon as the client subscribes (waiting, as TCP
    makes it, while the client does not read), answers pings, and then stays open."""

    def __init__(self, frames: Callable[[int], bytes], count: int) -> None:
        self.frames = frames
        self.count = count
        self.sent = 0

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        subscribed = asyncio.Event()

        async def read() -> None:
            async for message in ws:
                if not isinstance(message.data, str):
                    continue
                if '"sub"' in message.data:
                    subscribed.set()
                elif '"ping"' in message.data:
                    await ws.send_str(message.data.replace("ping", "pong"))

        async with asyncio.TaskGroup() as tasks:
            reader = tasks.create_task(read())
            await subscribed.wait()
            await ws.send_str(coinlocally.SUB_SUCCESS)
            for n in range(self.count):
                await ws.send_bytes(self.frames(n))
                self.sent += 1
            await reader  # open until the client leaves
        return ws


@asynccontextmanager
async def flood_peer(frames: Callable[[int], bytes], count: int) -> AsyncIterator[tuple[FloodPeer, str]]:
    peer = FloodPeer(frames, count)
    app = web.Application()
    app.router.add_get(WS_PATH, peer.handle)
    async with served(app, shutdown_timeout=1.0) as address:
        yield peer, f"ws://{address}{WS_PATH}"


def peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def weight_of(frames: Callable[[int], bytes]) -> int:
    """What the client's queue counts each report as (all weigh the same: same lengths everywhere)."""
    incoming = coinlocally.Parser()(frames(0))
    assert isinstance(incoming, DataEvents), incoming
    (event,) = incoming.events
    assert event.raw_clipped
    assert len(event.raw) == RAW_LIMIT
    assert {event_size(next(iter(coinlocally.Parser()(frames(n)).events))) for n in (1, 10**9)} == {  # type: ignore[union-attr]
        event_size(event)
    }
    return event_size(event)


@pytest.mark.parametrize("overflow", ["drop_oldest", "block"])
async def test_a_client_whose_consumer_is_stalled_stays_bounded(overflow: str) -> None:
    frames = PaddedReports(PAD)
    weight = weight_of(frames)
    capacity = min(DEFAULT_QUEUE_SIZE, DEFAULT_QUEUE_BYTES // weight)  # the byte bound binds: ~5,600
    assert capacity < DEFAULT_QUEUE_SIZE
    count = capacity + 500
    expect = count if overflow == "drop_oldest" else capacity + 1  # block: the reader holds one, waiting
    async with flood_peer(frames, count) as (peer, url):
        client = await python("-c", CLIENT, url, overflow, str(expect), stdin=asyncio.subprocess.PIPE)
        async with reaped(client) as process:
            assert process.stdin is not None
            stats = json.loads(await first_line(process, WAIT) or "null")
            peak = peak_rss(process.pid)
            process.stdin.write(b"\n")
            _, stderr = await finish(process, WAIT)
    assert process.returncode == 0, stderr.decode()
    assert stats is not None
    if overflow == "drop_oldest":
        assert (stats["events_received"], stats["dropped"]) == (count, count - capacity)
        assert peer.sent == count
    else:
        assert (stats["events_received"], stats["dropped"]) == (capacity + 1, 0)
    assert (stats["queued"], stats["queued_bytes"], stats["events_delivered"]) == (
        capacity,
        capacity * weight,
        0,
    )
    assert stats["queued_bytes"] <= DEFAULT_QUEUE_BYTES
    assert peak < BOUND, f"peak RSS {peak / MIB:.0f} MiB"


def _gateway_config(path: Path, url: str) -> None:
    path.write_text(
        "\n".join(
            [
                "[gateway]",
                "http_port = 0",
                "[defaults]",
                "rotate_after = 0",
                "resync = false",
                "[[accounts]]",
                'name = "flooded"',
                'exchange = "coinlocally"',
                'token_env = "FLOOD_TOKEN"',
                f'ws_url = "{url}"',
                "",
            ]
        )
    )


async def _account(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/accounts/flooded") as response:
        body: dict[str, Any] = await response.json()
    return body


async def test_a_gateway_holding_every_flooded_order_open_stays_bounded(tmp_path: Path) -> None:
    count = 3_000  # 3,000 open orders of 128 KiB messages: ~400 MB when each kept its message
    config = tmp_path / "gateway.toml"
    async with flood_peer(PaddedReports(2 * PAD), count) as (peer, url):
        _gateway_config(config, url)
        async with reaped(await gateway(config, environ={"FLOOD_TOKEN": TOKEN}, http_port=None)) as process:
            first = await first_line(process, WAIT)
            assert first.startswith("userstream gateway: 1 accounts; HTTP API on http://127.0.0.1:"), first
            api = api_url(first)
            async with asyncio.timeout(WAIT):
                while (await _account(api))["events"]["order"] < count:  # noqa: ASYNC110 - another process
                    await asyncio.sleep(0.1)
            peak = peak_rss(process.pid)
            account = await _account(api)
            _, stderr = await stop(process, within=WAIT)
    assert process.returncode == 0, stderr.decode()
    assert peer.sent == count
    assert (account["events"], account["open_orders"], account["fills"]) == (
        {"balance": 0, "order": count, "fill": 0},
        count,
        0,
    )
    assert peak < BOUND, f"peak RSS {peak / MIB:.0f} MiB"


async def test_the_recorder_keeps_what_it_records_on_disk_not_in_memory(tmp_path: Path) -> None:
    count = 3_000  # 3,000 messages of 128 KiB: ~400 MB inflated, had it kept them
    out = tmp_path / "flood.jsonl"
    async with flood_peer(PaddedReports(2 * PAD), count) as (peer, url):
        recorder = await userstream(
            "record", "coinlocally", "--token", TOKEN, "--ws-url", url, "--out", str(out)
        )
        async with reaped(recorder) as process:
            async with asyncio.timeout(
                WAIT
            ):  # every frame is on disk: the header, the sub reply, the reports
                while not out.exists() or out.read_bytes().count(b"\n") < count + 2:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            peak = peak_rss(process.pid)
            _, stderr = await stop(process, within=WAIT)
    assert process.returncode == 0, stderr.decode()
    assert peer.sent == count
    records = [json.loads(line) for line in out.read_bytes().splitlines()[1:]]
    assert [record["type"] for record in records] == ["text"] + ["binary"] * count
    assert stderr.decode().splitlines()[-1] == f"userstream record: {count + 1} frames written to {out}"
    assert peak < BOUND, f"peak RSS {peak / MIB:.0f} MiB"
