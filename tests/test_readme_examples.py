"""The README's examples run against `userstream serve` as written: the library example, `watch`, and the
gateway walkthrough (serve, the exports, the gateway on examples/gateway.toml, and its curls)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from support.examples import BITMUSA_ORDER_EVENT, BITMUSA_WALLET_EVENT
from userstream.events import Exchange
from userstream.gateway.http import ENDPOINTS
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


# --- The gateway walkthrough ------------------------------------------------------------------------------

WALKTHROUGH = "<!-- the gateway walkthrough: tests/test_readme_examples.py runs these commands as written -->"
#: An order of alice's, open before the gateway starts (ingested into serve between its two commands).
EARLIER_ORDER = {
    "kind": "order", "id": "7700001", "symbol": "XRP/USDT", "side": "buy", "type": "limit",
    "status": "open", "price": "0.4321", "amount": "150", "filled": "0", "cost": "0",
    "created_at": 1700703548000,
}  # fmt: skip


def _walkthrough_commands() -> list[list[str]]:
    """The walkthrough's commands, each as its words (comments and blank lines left out)."""
    block = (ROOT / "README.md").read_text().split(WALKTHROUGH, 1)[1]
    assert block.startswith("\n```sh\n")
    text = block.removeprefix("\n```sh\n").split("```", 1)[0]
    return [words for line in text.splitlines() if (words := shlex.split(line, comments=True))]


def _names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def _free_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port: int = listener.getsockname()[1]
        return port


async def _until_json(
    http: aiohttp.ClientSession, url: str, condition: Callable[[Any], bool], seconds: float = 30
) -> Any:
    """GET `url` until it answers 200 with a JSON body that meets `condition` (bounded)."""
    async with asyncio.timeout(seconds):
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as response:
                    if response.status == 200 and condition(body := await response.json()):
                        return body
            await asyncio.sleep(0.1)


async def test_readme_gateway_walkthrough_works_as_written_on_a_fresh_checkout(tmp_path: Path) -> None:
    """The README's serve / export / gateway / curl commands, run in order from a copy of examples/ (what a
    fresh clone has). Only the ports move: the README's 8765 and 8080 may be taken where tests run, so serve
    gets `--port` and the copy of examples/gateway.toml and the curl URLs the same free ports."""
    serve_port, http_port = _free_port(), _free_port()
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "accounts.toml", tmp_path / "examples")
    config = (ROOT / "examples" / "gateway.toml").read_text()
    assert "http_port = 8080" in config
    config = config.replace(":8765", f":{serve_port}").replace("http_port = 8080", f"http_port = {http_port}")
    (tmp_path / "examples" / "gateway.toml").write_text(config)

    environ = {**os.environ, "USERSTREAM_ADMIN_TOKEN": "walkthrough-admin-token"}
    processes: list[asyncio.subprocess.Process] = []
    urls: list[str] = []
    results: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession() as http:
            for words in _walkthrough_commands():
                if words[0] == "export":
                    environ.update(word.split("=", 1) for word in words[1:])  # type: ignore[misc]
                elif words[0] == ".venv/bin/userstream":
                    argv = [*words[1:], *(["--port", str(serve_port)] if words[1] == "serve" else [])]
                    processes.append(
                        await asyncio.create_subprocess_exec(
                            sys.executable, "-m", "userstream", *argv,
                            cwd=tmp_path, env=dict(environ),
                            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                        )
                    )  # fmt: skip
                    if words[1] == "serve":  # a person starts the gateway once serve is up: so does this
                        base = f"http://127.0.0.1:{serve_port}"
                        await _until_json(http, f"{base}/healthz", lambda body: True)
                        async with http.post(
                            f"{base}/admin/events",
                            json={"account": "alice", "events": [EARLIER_ORDER]},
                            headers={"Authorization": "Bearer walkthrough-admin-token"},
                        ) as response:
                            assert (response.status, await response.json()) == (200, {"accepted": 1})
                elif words[0] == "curl":
                    assert words[1] == "-s"
                    urls.append("http://" + words[2].replace("localhost:8080", f"127.0.0.1:{http_port}"))
                else:
                    raise AssertionError(f"the test does not know how to run {shlex.join(words)!r}")
            # A person waits until the gateway is up: every account live, and those with a snapshot (bob
            # streams with a token alone: none) through their start-up resync. Then every curl answers.
            await _until_json(
                http,
                f"http://127.0.0.1:{http_port}/accounts",
                lambda body: all(
                    a["state"] == "live" and (a["resyncs"] >= 1 or a["name"] == "bob-coinlocally")
                    for a in body["accounts"]
                ),
            )
            for url in urls:
                results[url.split(str(http_port), 1)[1]] = await _until_json(http, url, lambda body: True)
            alice_coinlocally = await _until_json(
                http, f"http://127.0.0.1:{http_port}/accounts/alice-coinlocally/orders", lambda body: True
            )
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        codes = [await process.wait() for process in processes]
    assert codes == [0, 0]  # both stop cleanly on SIGTERM
    assert [(w[0], w[1]) for w in _walkthrough_commands() if w[0] == ".venv/bin/userstream"] == [
        (".venv/bin/userstream", "serve"),
        (".venv/bin/userstream", "gateway"),
    ]
    assert list(results) == ["/", "/accounts", "/accounts/alice-bitmusa/orders"]
    assert results["/"] == {
        "service": "userstream gateway",
        "docs": "docs/gateway.md",
        "endpoints": ENDPOINTS,
        "accounts": ["alice-bitmusa", "alice-coinlocally", "bob-coinlocally"],
    }
    assert [(a["name"], a["exchange"], a["healthy"]) for a in results["/accounts"]["accounts"]] == [
        ("alice-bitmusa", "bitmusa", True),
        ("alice-coinlocally", "coinlocally", True),
        ("bob-coinlocally", "coinlocally", True),
    ]
    # The order open before the gateway started is in /orders on both of alice's exchanges: the start-up
    # snapshot asked for the symbols examples/gateway.toml lists.
    for body, exchange in (
        (results["/accounts/alice-bitmusa/orders"], "bitmusa"),
        (alice_coinlocally, "coinlocally"),
    ):
        [order] = [order for order in body["orders"] if order["id"] == EARLIER_ORDER["id"]]
        assert (order["exchange"], order["source"], order["symbol"], order["side"], order["status"]) == (
            exchange, "snapshot", "XRP/USDT", "buy", "open",
        )  # fmt: skip
        assert (order["price"], order["amount"], order["filled"]) == ("0.4321", "150", "0")
    # The sinks wrote into the data directory, nothing else beside examples/.
    assert _names(tmp_path) == ["data", "examples"]
    assert _names(tmp_path / "data") == [
        "gateway-events.db", "gateway-events.jsonl",
    ]  # fmt: skip


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
