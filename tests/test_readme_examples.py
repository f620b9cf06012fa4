"""The README's examples run against `userstream serve` as written: the library example and `watch`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from userstream.events import Exchange
from userstream.protocol.examples import BITMUSA_ORDER_EVENT, BITMUSA_WALLET_EVENT
from userstream.server.config import ServerConfig, load_accounts
from userstream.server.run import ServerHandle, running_server

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "stream_bitmusa.py"


def test_readme_shows_the_library_example_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    body = EXAMPLE.read_text().split('"""', 2)[2].strip()  # the code after the module docstring
    assert body in readme


async def _first_lines(*command: str, count: int, env: dict[str, str] | None = None) -> list[str]:
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            return [(await process.stdout.readline()).decode() for _ in range(count)]
    finally:
        process.terminate()
        await process.wait()


async def _ingest_once_streaming(server: ServerHandle, exchange: Exchange) -> None:
    async with asyncio.timeout(30):
        await server.wait_for_streams("alice", exchange=exchange)
    await server.ingest("alice", [BITMUSA_WALLET_EVENT, BITMUSA_ORDER_EVENT])


async def test_library_example_prints_the_contract_lines() -> None:
    config = ServerConfig(
        host="127.0.0.1", port=0, accounts=load_accounts(ROOT / "examples" / "accounts.toml")
    )
    async with running_server(config) as server:
        reader = asyncio.ensure_future(_first_lines(sys.executable, str(EXAMPLE), server.base_url, count=2))
        await _ingest_once_streaming(server, Exchange.BITMUSA)
        lines = await reader
    events = [json.loads(line) for line in lines]
    assert [(e["kind"], e["exchange"], e["account"], e["timestamp"]) for e in events] == [
        ("balance", "bitmusa", "alice", 1700703548846),
        ("order", "bitmusa", "alice", 1700703548846),
    ]
    assert (events[0]["free"], events[1]["price"], events[1]["status"]) == ("1132800.449", "0.5155", "open")


async def test_readme_watch_command_prints_the_contract_lines() -> None:
    config = ServerConfig(
        host="127.0.0.1", port=0, accounts=load_accounts(ROOT / "examples" / "accounts.toml")
    )
    async with running_server(config) as server:
        reader = asyncio.ensure_future(
            _first_lines(
                sys.executable, "-m", "userstream", "watch", "coinlocally",
                "--ws-url", server.ws_url + "/spotws_user/userData/ws", "--account", "alice",
                count=2,
                env={"USERSTREAM_COINLOCALLY_TOKEN": "alice-coinlocally-token-example"},
            )
        )  # fmt: skip
        await _ingest_once_streaming(server, Exchange.COINLOCALLY)
        lines = await reader
    events = [json.loads(line) for line in lines]
    assert [(e["kind"], e["exchange"], e["account"]) for e in events] == [
        ("balance", "coinlocally", "alice"),
        ("order", "coinlocally", "alice"),
    ]
    assert (events[0]["asset"], events[1]["symbol"], events[1]["raw_symbol"]) == (
        "USDT",
        "XRP/USDT",
        "XRPUSDT",
    )


SYNC_EXAMPLE = ROOT / "examples" / "stream_sync.py"


def test_readme_shows_the_sync_example_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    body = SYNC_EXAMPLE.read_text().split('"""', 2)[2].strip()
    assert body in readme


async def test_sync_example_prints_the_contract_lines() -> None:
    config = ServerConfig(
        host="127.0.0.1", port=0, accounts=load_accounts(ROOT / "examples" / "accounts.toml")
    )
    async with running_server(config) as server:
        url = server.ws_url + "/spotws_user/userData/ws"
        reader = asyncio.ensure_future(_first_lines(sys.executable, str(SYNC_EXAMPLE), url, count=2))
        await _ingest_once_streaming(server, Exchange.COINLOCALLY)
        lines = await reader
    events = [json.loads(line) for line in lines]
    assert [(e["kind"], e["exchange"], e["account"], e["timestamp"]) for e in events] == [
        ("balance", "coinlocally", "alice", 1700703548846),
        ("order", "coinlocally", "alice", 1700703548846),
    ]
