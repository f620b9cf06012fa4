"""Issue 13 §1, before and after: a client's and a gateway's memory under a hostile Coinlocally flood.

This script owns one measurement, run side by side on two trees of userstream's code: `--before` (a git
ref, main by default, exported with `git archive`) and this tree. The peer (aiohttp's WebSocket server, in
this process) is the issue's: once the client subscribes it sends valid execution reports padded with an
unknown field, each a ~1 KB gzip frame inflating to `--pad` characters (1,000,000 by default), each with
its own order id and status NEW. Three scenarios per tree, the trees taking turns:

- client, block: `connect()` with default options and a consumer that never reads; flood for `--seconds`;
- client, drop_oldest: the same with overflow="drop_oldest";
- gateway: `userstream gateway` with one account and no sink, sent `--orders` reports, each an order that
  stays open; measured once all are taken in (or `--seconds` passed), and again `--settle` seconds later
  (memory a process keeps, not a transient peak).

Each figure: the process's peak RSS (VmHWM) and RSS at the end (VmRSS), from /proc/<pid>/status, and the
events it took in. A flood stops early when the process passes `--cap` MiB (so the old code does not eat
the shared machine): its row then says so. Not part of the test suite; tests/security/test_memory_flood.py
asserts the bound on smaller floods.

Run: .venv/bin/python bench/memory_flood.py  (about a minute; --before REF, --seconds S, --pad N,
--orders N, --cap MIB; --json FILE to keep the figures)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20
WS_PATH = "/spotws_user/userData/ws"
SUB_SUCCESS = "sub success"

# An execution report as the Coinlocally document prints it, status NEW (the order stays open).
REPORT = {
    "e": "executionReport",
    "E": 1745389508472,
    "T": 1745389508418,
    "S": "SELL",
    "s": "BTCUSDT",
    "X": "NEW",
    "x": "NEW",
    "i": "{id}",
    "l": "0",
    "z": "0",
    "L": "0",
    "Z": "0",
    "n": "0",
    "o": "LIMIT",
    "q": "1",
    "p": "13000",
    "Q": "0",
    "O": 1745389507000,
    "P": "0",
}

# The client: default options but the overflow policy, a consumer that never reads; it prints its stats
# when a line arrives on stdin, then leaves.
CLIENT = """
import asyncio, dataclasses, json, sys
from userstream import connect

async def main() -> None:
    url, overflow = sys.argv[1], sys.argv[2]
    async with connect("coinlocally", token="flood-token", ws_url=url, overflow=overflow) as stream:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        print(json.dumps(dataclasses.asdict(stream.stats)), flush=True)

asyncio.run(main())
"""


class Reports:
    """The n-th padded report, gzip'd; the padding is compressed once (zlib's compressor copy)."""

    def __init__(self, pad: int) -> None:
        tail = json.dumps(REPORT, separators=(",", ":"))
        self._tail = "," + tail[1:]
        self._compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
        self._head = self._compressor.compress(('{"pad":"' + "x" * pad + '"').encode())

    def __call__(self, n: int) -> bytes:
        compressor = self._compressor.copy()
        return (
            self._head
            + compressor.compress(self._tail.replace("{id}", f"{n:019d}").encode())
            + compressor.flush()
        )


class Peer:
    """Floods every connection with `frames` until `count` are sent or `stop` is set."""

    def __init__(self, frames: Reports, count: int) -> None:
        self.frames = frames
        self.count = count
        self.sent = 0
        self.stop = asyncio.Event()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        subscribed = asyncio.Event()

        async def read() -> None:
            async for message in ws:
                if isinstance(message.data, str) and '"sub"' in message.data:
                    subscribed.set()
                elif isinstance(message.data, str) and '"ping"' in message.data:
                    await ws.send_str(message.data.replace("ping", "pong"))

        async def flood() -> None:
            await subscribed.wait()
            await ws.send_str(SUB_SUCCESS)
            while self.sent < self.count and not self.stop.is_set():
                await ws.send_bytes(self.frames(self.sent))
                self.sent += 1

        reader = asyncio.create_task(read())
        flooder = asyncio.create_task(flood())
        await self.stop.wait()
        flooder.cancel()
        reader.cancel()
        await asyncio.gather(reader, flooder, return_exceptions=True)
        return ws


@asynccontextmanager
async def peer(frames: Reports, count: int) -> AsyncIterator[tuple[Peer, str]]:
    flood = Peer(frames, count)
    app = web.Application()
    app.router.add_get(WS_PATH, flood.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield flood, f"ws://127.0.0.1:{runner.addresses[0][1]}{WS_PATH}"
    finally:
        flood.stop.set()
        await runner.cleanup()


def memory(pid: int) -> tuple[int, int]:
    """(VmHWM, VmRSS) of a process, in bytes."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            found[key] = int(value.split()[0]) * 1024
    return found["VmHWM"], found["VmRSS"]


async def watch(pid: int, seconds: float, cap: int, done: Any = None) -> tuple[float, bool]:
    """Wait `seconds`, until `done()` or until the process passes `cap` bytes; (seconds waited, capped)."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if memory(pid)[1] > cap:
            return time.monotonic() - started, True
        if done is not None and await done():
            break
        await asyncio.sleep(0.1)
    return time.monotonic() - started, False


async def client_run(src: Path, overflow: str, args: argparse.Namespace) -> dict[str, Any]:
    async with peer(Reports(args.pad), 10**9) as (flood, url):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CLIENT,
            url,
            overflow,
            env={**os.environ, "PYTHONPATH": str(src)},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            await process.stdout.readline()
            seconds, capped = await watch(process.pid, args.seconds, args.cap * MIB)
            flood.stop.set()
            peak, rss = memory(process.pid)
            process.stdin.write(b"\n")
            stats = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()
    return {
        "peak_mib": peak / MIB,
        "rss_mib": rss / MIB,
        "seconds": round(seconds, 1),
        "capped": capped,
        "frames_sent": flood.sent,
        "events_received": stats["events_received"],
        "queued": stats.get("queued", stats["events_received"] - stats["dropped"]),
        "dropped": stats["dropped"],
    }


async def gateway_run(src: Path, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    config = workdir / "gateway.toml"
    async with peer(Reports(args.pad), args.orders) as (flood, url):
        config.write_text(
            "[gateway]\nhttp_port = 0\n[defaults]\nrotate_after = 0\nresync = false\n[[accounts]]\n"
            f'name = "flooded"\nexchange = "coinlocally"\ntoken_env = "FLOOD_TOKEN"\nws_url = "{url}"\n'
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "userstream",
            "gateway",
            "--config",
            str(config),
            env={**os.environ, "PYTHONPATH": str(src), "FLOOD_TOKEN": "flood-token"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert process.stdout is not None
        try:
            api = (await process.stdout.readline()).decode().rsplit(" ", 1)[1].strip()
            async with aiohttp.ClientSession() as http:

                async def account() -> dict[str, Any]:
                    async with http.get(f"{api}/accounts/flooded") as response:
                        body: dict[str, Any] = await response.json()
                    return body

                async def all_taken() -> bool:
                    return int((await account())["events"].get("order", 0)) >= args.orders

                seconds, capped = await watch(process.pid, args.seconds * 3, args.cap * MIB, all_taken)
                flood.stop.set()
                peak, rss = memory(process.pid)
                await asyncio.sleep(args.settle)
                _, settled = memory(process.pid)
                taken = await account()
        finally:
            process.terminate()
            await process.wait()
    return {
        "peak_mib": peak / MIB,
        "rss_mib": rss / MIB,
        "settled_rss_mib": settled / MIB,
        "seconds": round(seconds, 1),
        "capped": capped,
        "frames_sent": flood.sent,
        "events_received": taken["events"].get("order", 0),
        "open_orders": taken["open_orders"],
    }


def export(ref: str, into: Path) -> Path:
    """`ref`'s src/ tree, exported into `into`."""
    archive = subprocess.run(  # noqa: S603 - fixed argument list
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "src"],  # noqa: S607
        check=True,
        capture_output=True,
    ).stdout
    archive_path = into / "src.tar"
    archive_path.write_bytes(archive)
    with tarfile.open(archive_path) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="memory-flood-") as temp:
        workdir = Path(temp)
        trees = {f"before ({args.before})": export(args.before, workdir), "after (this tree)": ROOT / "src"}
        results: dict[str, dict[str, Any]] = {}
        for scenario in ("client, block", "client, drop_oldest", "gateway"):
            for name, src in trees.items():
                if scenario == "gateway":
                    figures = await gateway_run(src, args, workdir)
                else:
                    figures = await client_run(src, scenario.split(", ")[1], args)
                results.setdefault(scenario, {})[name] = figures
                print(f"{scenario:20} {name:22} {json.dumps(figures)}", flush=True)
    return results


def report(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| scenario | code | peak RSS (MiB) | RSS at the end (MiB) | events taken | queued / open | s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for scenario, by_tree in results.items():
        for name, figures in by_tree.items():
            held = figures.get("open_orders", figures.get("queued"))
            end = figures.get("settled_rss_mib", figures["rss_mib"])
            cap = " (capped)" if figures["capped"] else ""
            lines.append(
                f"| {scenario} | {name} | {figures['peak_mib']:.0f}{cap} | {end:.0f} | "
                f"{figures['events_received']:,} | {held:,} | {figures['seconds']} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="main", help="the git ref to compare with (default: main)")
    parser.add_argument("--seconds", type=float, default=10.0, help="a client flood's length")
    parser.add_argument("--pad", type=int, default=1_000_000, help="characters of padding per report")
    parser.add_argument("--orders", type=int, default=2_000, help="reports sent to the gateway")
    parser.add_argument(
        "--settle", type=float, default=2.0, help="seconds before the gateway's RSS is read again"
    )
    parser.add_argument("--cap", type=int, default=3072, help="MiB at which a flood is stopped early")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    arguments = parser.parse_args()
    figures = asyncio.run(main(arguments))
    print(report(figures))
    if arguments.json:
        arguments.json.write_text(json.dumps(figures, indent=2) + "\n")
