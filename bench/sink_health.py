"""Issue 13 section 4: seconds from a sink failure until the gateway's /healthz turns non-200, with defaults.

This module owns the measurement (docs/reliability.md, "Sinks that cannot write", quotes its figures).
`userstream serve` runs in this process with its simulated market (`--simulate 50`, one account), a gateway
streams that account from Bitmusa into one sink with the default thresholds (8 failed attempts in a row, or
10 s of failing) and serves /healthz, which is polled every 10 ms. Once events flow and the sink has
written, the failure is made and its monotonic time taken; the first non-200 answer ends the wait. Then the
cause is undone and the time until /healthz is 200 again is taken too, and the events lost are counted.

Failures: `redis` stops the redis-server the Redis sink writes to (connection refused; started again to
recover); `sqlite` makes the SQLite database file immutable (`chattr +i`, needs root and a file system with
attributes: the tests' way of making a file read-only for root); `sqlite-shm` does the same to its `-shm`.

    PYTHONPATH=src python bench/sink_health.py [redis|sqlite|sqlite-shm ...] [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from userstream.gateway import Gateway, parse_config
from userstream.server import Account, ServerConfig, running_server

ACCOUNT = Account(
    name="alice", uid=1, bitmusa_api_key="bench-api-SECRET", bitmusa_auth_key="bench-auth-SECRET"
)
POLL = 0.01
WAIT = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Redis:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise SystemExit("redis-server is not on PATH: scripts/ensure-redis.sh installs it")
        arguments = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(  # noqa: S603 - a fixed argument list
            [executable, *arguments, "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                    connection.sendall(b"PING\r\n")
                    if connection.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.01)
        raise SystemExit("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def chattr(flag: str, path: Path) -> None:
    subprocess.run(["chattr", flag, str(path)], check=True)  # noqa: S603, S607 - a fixed argument list


async def status(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(f"{url}/healthz") as response:
        await response.read()
        return response.status


async def until_status(http: aiohttp.ClientSession, url: str, wanted: int, since: float) -> float | None:
    """Seconds from `since` until /healthz answers `wanted`; None if it has not after WAIT seconds (as
    before issue 13, when a sink that could not write never turned /healthz red)."""
    try:
        async with asyncio.timeout(WAIT):
            while await status(http, url) != wanted:  # noqa: ASYNC110 - polling /healthz is the measurement
                await asyncio.sleep(POLL)
    except TimeoutError:
        return None
    return time.monotonic() - since


async def one_run(kind: str, workdir: Path) -> tuple[float | None, float | None, int]:
    redis = Redis(workdir) if kind == "redis" else None
    database = workdir / "events.db"
    target = database if kind == "sqlite" else Path(f"{database}-shm")
    if redis is not None:
        redis.start()
        sink: dict[str, Any] = {"type": "redis", "url": redis.url}
    else:
        sink = {"type": "sqlite", "path": str(database)}
    server_config = ServerConfig(
        accounts=(ACCOUNT,), port=0, admin_token="bench-admin-SECRET", simulate_rate=50.0, seed=1
    )
    try:
        async with running_server(server_config) as server, aiohttp.ClientSession() as http:
            document = {
                "gateway": {"http_port": 0},
                "defaults": {"resync": False},
                "accounts": [
                    {
                        "name": "alice",
                        "exchange": "bitmusa",
                        "api_key_env": "BENCH_API_KEY",
                        "auth_key_env": "BENCH_AUTH_KEY",
                        "rest_url": server.base_url,
                        "ws_url": server.ws_url,
                    }
                ],
                "sinks": [sink],
            }
            environ = {"BENCH_API_KEY": "bench-api-SECRET", "BENCH_AUTH_KEY": "bench-auth-SECRET"}
            async with Gateway(parse_config(document, source="bench"), environ=environ) as gateway:
                url = gateway.http_url
                assert url is not None
                (handle,) = gateway.sinks
                async with asyncio.timeout(WAIT):
                    while handle.runner.written < 20 or await status(http, url) != 200:  # noqa: ASYNC110
                        await asyncio.sleep(POLL)
                failed_at = time.monotonic()
                if redis is not None:
                    redis.stop()
                else:
                    chattr("+i", target)
                try:
                    to_red = await until_status(http, url, 503, failed_at)
                finally:
                    recovered_at = time.monotonic()
                    if redis is not None:
                        redis.start()
                    else:
                        chattr("-i", target)
                to_green = await until_status(http, url, 200, recovered_at)
            lost = gateway.lost_events
    finally:
        if redis is not None:
            redis.stop()
    return to_red, to_green, lost


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kinds", nargs="*", default=["redis", "sqlite", "sqlite-shm"])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    for kind in args.kinds:
        reds: list[float] = []
        greens: list[float] = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as workdir:
                to_red, to_green, lost = await one_run(kind, Path(workdir))
            if to_red is None or to_green is None:
                print(f"{kind}: /healthz still 200 {WAIT:.0f}s after the failure; lost {lost}")
                continue
            reds.append(to_red)
            greens.append(to_green)
            print(
                f"{kind}: non-200 after {to_red:.3f}s; 200 again {to_green:.3f}s after the fix; lost {lost}"
            )
        if len(reds) > 1:
            print(
                f"{kind}: to red median {statistics.median(reds):.3f}s (min {min(reds):.3f}, "
                f"max {max(reds):.3f}); to green median {statistics.median(greens):.3f}s"
            )


if __name__ == "__main__":
    asyncio.run(main())
