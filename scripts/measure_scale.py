"""Measure what `serve --redis` costs: fan-out throughput and CPU per event, one node vs two through Redis.

Not a test and not part of bench/ (issue 6's suite): a small, self-contained measurement behind the figures
of docs/scaling.md. It starts a throwaway redis-server on a free port and `userstream serve` nodes as
processes, opens one subscribed Coinlocally stream per account (websockets) on the delivering node, posts
batches of balance events round-robin over the accounts to the ingesting node as fast as the window allows,
and reports events/s delivered and each node's CPU microseconds per event (from /proc).

    .venv/bin/python scripts/measure_scale.py [--accounts 100] [--events 20000] [--batch 100]

Setups: `memory` (one node, in memory: ingest and delivery on it), `redis-1` (one node with --redis:
the same path plus the round trip through Redis), `redis-2` (ingest on node A, streams on node B).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection, connect

ADMIN = "measure-admin"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def write_accounts(path: Path, count: int) -> None:
    lines = []
    for index in range(count):
        lines += ["[[accounts]]", f'name = "acct{index}"', f"uid = {index}"]
        lines.append(f'coinlocally_token = "tok{index}"')
    path.write_text("\n".join(lines) + "\n")


def start_node(accounts: Path, *flags: str) -> tuple[subprocess.Popen[bytes], str]:
    argv = [sys.executable, "-m", "userstream", "serve", "--port", "0", "--accounts", str(accounts)]
    argv += ["--admin-token", ADMIN, "--log-level", "WARNING", *flags]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # noqa: S603
    if process.stdout is None:
        raise RuntimeError("no stdout")
    url = process.stdout.readline().decode().split()[-1]
    return process, url


async def wait_ready(http: aiohttp.ClientSession, url: str) -> None:
    for _ in range(400):
        try:
            async with http.get(url + "/healthz") as reply:
                if reply.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} never became healthy")


async def subscriber(ws: ClientConnection, received: list[int]) -> None:
    async for frame in ws:
        if isinstance(frame, bytes):
            received[0] += len(json.loads(gzip.decompress(frame))["B"])


async def run(ingest_url: str, deliver_url: str, accounts: int, events: int, batch: int) -> float:
    received = [0]
    async with aiohttp.ClientSession() as http:
        await wait_ready(http, ingest_url)
        await wait_ready(http, deliver_url)
        sockets = []
        for index in range(accounts):
            ws = await connect(
                deliver_url.replace("http", "ws") + "/spotws_user/userData/ws",
                additional_headers={"token": f"tok{index}"},
                ping_interval=None,
                max_queue=None,
            )
            greeting = await ws.recv()
            await ws.send(json.dumps({"event": "sub", "token": f"tok{index}"}))
            if (greeting, await ws.recv()) != ("connect success", "sub success"):
                raise RuntimeError(f"acct{index} could not subscribe")
            sockets.append(ws)
        readers = [asyncio.create_task(subscriber(ws, received)) for ws in sockets]
        await asyncio.sleep(0.5)
        started = time.perf_counter()
        posted = 0
        window = 20 * batch
        headers = {"Authorization": f"Bearer {ADMIN}"}
        while posted < events:
            while posted - received[0] > window:  # noqa: ASYNC110 - a counter, polled
                await asyncio.sleep(0.001)
            account = f"acct{(posted // batch) % accounts}"
            body = {
                "account": account,
                "events": [
                    {"kind": "balance", "asset": f"A{n}", "free": str(posted + n), "locked": "0"}
                    for n in range(batch)
                ],
            }
            async with http.post(ingest_url + "/admin/events", json=body, headers=headers) as reply:
                if reply.status != 200:
                    raise RuntimeError(await reply.text())
            posted += batch
        while received[0] < events:  # noqa: ASYNC110 - a counter, polled
            await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - started
        for task in readers:
            task.cancel()
        for ws in sockets:
            await ws.close()
    return elapsed


def measure(setup: str, args: argparse.Namespace, workdir: Path, redis_url: str) -> dict[str, Any]:
    accounts = workdir / "accounts.toml"
    write_accounts(accounts, args.accounts)
    flags = [] if setup == "memory" else ["--redis", redis_url, "--node-id"]
    nodes = [start_node(accounts, *([*flags, "node-a"] if flags else []))]
    if setup == "redis-2":
        nodes.append(start_node(accounts, *flags, "node-b"))
    try:
        before = [cpu_seconds(process.pid) for process, _ in nodes]
        elapsed = asyncio.run(run(nodes[0][1], nodes[-1][1], args.accounts, args.events, args.batch))
        cpu = [cpu_seconds(process.pid) - start for (process, _), start in zip(nodes, before, strict=True)]
    finally:
        for process, _ in nodes:
            process.terminate()
            process.wait()
    return {
        "setup": setup,
        "events_per_s": round(args.events / elapsed),
        "cpu_us_per_event": [round(seconds / args.events * 1e6, 1) for seconds in cpu],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("redis-server is not on PATH (scripts/ensure-redis.sh installs it)")
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        redis = subprocess.Popen(  # noqa: S603
            [executable, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.5)
            for setup in ("memory", "redis-1", "redis-2"):
                print(json.dumps(measure(setup, args, Path(tmp), f"redis://127.0.0.1:{port}/0")), flush=True)
        finally:
            redis.terminate()
            redis.wait()


if __name__ == "__main__":
    main()
