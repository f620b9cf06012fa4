"""The idle-connection attack of issue 13 against a `userstream serve` held to 1,024 descriptors.

    python bench/idle_attack.py [--src DIR] [--connections 1100] [--hold SECONDS]

Starts `userstream serve` (the code under `--src`, default this checkout's src/) with RLIMIT_NOFILE soft and
hard at 1,024 (so raising the soft limit cannot help), opens N plain TCP connections that send nothing, and
reports:
serve's open descriptors, whether GET /healthz answers within 5 s, whether a Coinlocally stream connects,
subscribes and receives an ingested event, and how much serve wrote to stderr (the accept-error flood),
then the same once `--hold` seconds have passed (past serve's header timeout, 10 s by default). Run it once
with `--src` pointing at an older checkout to compare. Not a test: figures for docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from websockets.asyncio.client import connect

TOKEN = "bench-coinlocally-token"
ADMIN = "bench-admin-token"


def start(src: Path, accounts: Path, stderr: Path) -> subprocess.Popen[str]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.Popen(  # noqa: S603 - our own CLI
        [
            sys.executable,
            "-m",
            "userstream",
            "serve",
            "--port",
            "0",
            "--accounts",
            str(accounts),
            "--admin-token",
            ADMIN,
        ],
        stdout=subprocess.PIPE,
        stderr=stderr.open("w"),
        text=True,
        env=env,
        preexec_fn=limit,  # noqa: PLW1509
    )


async def probe(base: str, port: int) -> dict[str, object]:
    result: dict[str, object] = {}
    started = time.monotonic()
    try:
        async with (
            aiohttp.ClientSession() as http,
            asyncio.timeout(5),
            http.get(base + "/healthz") as reply,
        ):
            result["healthz"] = reply.status
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        result["healthz"] = f"failed: {type(exc).__name__}"
    result["healthz_seconds"] = round(time.monotonic() - started, 2)
    try:
        async with asyncio.timeout(5):
            ws = await connect(
                f"ws://127.0.0.1:{port}/spotws_user/userData/ws",
                additional_headers={"token": TOKEN},
                ping_interval=None,
            )
            await ws.recv()
            await ws.send(json.dumps({"event": "sub", "token": TOKEN}))
            await ws.recv()
            async with aiohttp.ClientSession() as http:
                body = {
                    "account": "bench",
                    "events": [{"kind": "balance", "asset": "USDT", "free": "1", "locked": "0"}],
                }
                headers = {"Authorization": f"Bearer {ADMIN}"}
                async with http.post(base + "/admin/events", json=body, headers=headers) as reply:
                    await reply.read()
            await ws.recv()
            await ws.close()
            result["stream"] = "ok"
    except Exception as exc:  # a figure, whatever failed
        result["stream"] = f"failed: {type(exc).__name__}"
    return result


HERE = Path(__file__).resolve().parent


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--src", type=Path, default=HERE.parent / "src")
    parser.add_argument("--connections", type=int, default=1100)
    parser.add_argument("--hold", type=float, default=12.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        accounts = Path(directory) / "accounts.toml"
        accounts.write_text(f'[[accounts]]\nname = "bench"\nuid = 1\ncoinlocally_token = "{TOKEN}"\n')
        stderr = Path(directory) / "stderr"
        process = start(args.src, accounts, stderr)
        try:
            assert process.stdout is not None
            base = process.stdout.readline().split("listening on ")[1].strip()
            port = int(base.rsplit(":", 1)[1])
            idle_fds = len(os.listdir(f"/proc/{process.pid}/fd"))
            writers = []
            opened = failed = 0
            for _ in range(args.connections):
                try:
                    _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
                except (OSError, TimeoutError):
                    failed += 1
                    continue
                writers.append(writer)
                opened += 1
            await asyncio.sleep(1.0)
            report: dict[str, object] = {
                "src": str(args.src),
                "descriptors_before": idle_fds,
                "connections_opened": opened,
                "connections_failed": failed,
                "descriptors_under_attack": len(os.listdir(f"/proc/{process.pid}/fd")),
            }
            report.update({f"{k}_under_attack": v for k, v in (await probe(base, port)).items()})
            report["stderr_bytes_under_attack"] = stderr.stat().st_size
            await asyncio.sleep(max(0.0, args.hold - 1.0))
            report["descriptors_after_hold"] = len(os.listdir(f"/proc/{process.pid}/fd"))
            report.update({f"{k}_after_hold": v for k, v in (await probe(base, port)).items()})
            report["stderr_bytes_after_hold"] = stderr.stat().st_size
            text = stderr.read_text(errors="replace")
            report["accept_error_lines"] = text.count("out of system resource")
            for writer in writers:
                writer.close()
            print(json.dumps(report, indent=1))
        finally:
            process.terminate()
            process.wait(30)


if __name__ == "__main__":
    asyncio.run(main())
