"""`userstream gateway` as a subprocess: SIGTERM flushes the sinks and exits 0; a bad config exits 2."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import aiohttp

BASE_TIME = 1_700_703_548_000
WAIT = 20.0


def to_toml(document: dict[str, Any]) -> str:
    """The few TOML forms a gateway config needs (tables, arrays of tables, strings, numbers, booleans)."""

    def value(item: Any) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, int | float):
            return repr(item)
        if isinstance(item, list):
            return "[" + ", ".join(value(element) for element in item) + "]"
        return json.dumps(item)  # a JSON string is a TOML basic string

    lines: list[str] = []
    for name, content in document.items():
        tables = content if isinstance(content, list) else [content]
        for table in tables:
            lines.append(f"[[{name}]]" if isinstance(content, list) else f"[{name}]")
            lines.extend(f"{key} = {value(item)}" for key, item in table.items())
            lines.append("")
    return "\n".join(lines)


async def _start(config: Path, environ: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "userstream",
        "gateway",
        "--config",
        str(config),
        "--http-port",
        "0",
        env={**os.environ, **environ},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_sigterm_stops_the_streams_flushes_the_sinks_and_exits_0(lab: Any) -> None:
    async with lab() as env:
        database = env.tmp_path / "events.db"
        document = env.document(accounts=("alice",), sinks=[{"type": "sqlite", "path": str(database)}])
        config = env.tmp_path / "gateway.toml"
        config.write_text(to_toml(document))
        process = await _start(config, env.environ)
        try:
            assert process.stdout is not None
            async with asyncio.timeout(WAIT):
                first = (await process.stdout.readline()).decode()
            assert first.startswith("userstream gateway: 2 accounts; HTTP API on http://127.0.0.1:")
            url = first.rsplit(" ", 1)[1].strip()
            async with asyncio.timeout(WAIT):
                await env.server.wait_for_streams("alice", 2)
            await env.ingest(
                "alice",
                [
                    {
                        "kind": "balance",
                        "asset": "USDT",
                        "free": "10.5",
                        "locked": "0",
                        "timestamp": BASE_TIME,
                    },
                    {
                        "kind": "balance",
                        "asset": "BTC",
                        "free": "0.25",
                        "locked": "0",
                        "timestamp": BASE_TIME,
                    },
                ],
            )

            async def processed() -> int:
                async with aiohttp.ClientSession() as http, http.get(f"{url}/accounts") as response:
                    body = await response.json()
                return sum(sum(account["events"].values()) for account in body["accounts"])

            async with asyncio.timeout(WAIT):
                while await processed() < 4:  # noqa: ASYNC110 - polling another process's counters
                    await asyncio.sleep(0.02)
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(WAIT):
                stdout, stderr = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 0, stderr.decode()
    connection = sqlite3.connect(database)
    try:
        rows = connection.execute("SELECT account, json FROM events ORDER BY account, seq").fetchall()
    finally:
        connection.close()
    assert [(account, json.loads(line)["asset"], json.loads(line)["free"]) for account, line in rows] == [
        ("alice-bitmusa", "USDT", "10.5"),
        ("alice-bitmusa", "BTC", "0.25"),
        ("alice-coinlocally", "USDT", "10.5"),
        ("alice-coinlocally", "BTC", "0.25"),
    ]
    logs = [json.loads(line) for line in stderr.decode().splitlines()]
    assert [entry["message"] for entry in logs][-2:] == ["stopping on a signal", "gateway stopped"]
    assert logs[-1]["lost_events"] == 0
    for secret in env.secrets:
        assert secret not in stdout.decode() + stderr.decode()


async def test_a_bad_config_exits_2_naming_the_account_and_key(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        to_toml({"accounts": [{"name": "alice", "exchange": "bitmusa", "api_key": "plain-SECRET"}]})
    )
    process = await _start(config, {})
    _, stderr = await process.communicate()
    assert process.returncode == 2
    assert stderr.decode() == (
        f"userstream gateway: {config}: account 'alice': key 'api_key' would hold a credential in plaintext; "
        "put the value in an environment variable and name it with api_key_env instead\n"
    )


async def test_a_missing_credential_variable_exits_2_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    table = {"name": "alice", "exchange": "coinlocally", "token_env": "USERSTREAM_TEST_UNSET_TOKEN"}
    config.write_text(to_toml({"accounts": [table]}))
    environ = {key: value for key, value in os.environ.items() if key != "USERSTREAM_TEST_UNSET_TOKEN"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "userstream",
        "gateway",
        "--config",
        str(config),
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    assert process.returncode == 2
    assert stderr.decode().splitlines()[-1] == (
        "userstream gateway: account 'alice': environment variable USERSTREAM_TEST_UNSET_TOKEN (token_env) "
        "is not set"
    )
