"""`userstream gateway` as a subprocess: SIGTERM flushes the sinks and exits 0; a bad config exits 2."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp

from support.processes import api_url, first_line, gateway, reaped, stop, to_toml, userstream

BASE_TIME = 1_700_703_548_000
WAIT = 20.0


async def test_sigterm_stops_the_streams_flushes_the_sinks_and_exits_0(lab: Any) -> None:
    async with lab() as env:
        database = env.tmp_path / "events.db"
        document = env.document(accounts=("alice",), sinks=[{"type": "sqlite", "path": str(database)}])
        config = env.tmp_path / "gateway.toml"
        config.write_text(to_toml(document))
        async with reaped(await gateway(config, environ=env.environ)) as process:
            first = await first_line(process, WAIT)
            assert first.startswith("userstream gateway: 2 accounts; HTTP API on http://127.0.0.1:")
            url = api_url(first)
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
            stdout, stderr = await stop(process, within=WAIT)
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
    process = await gateway(config)
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
    process = await userstream("gateway", "--config", str(config), env=environ)
    _, stderr = await process.communicate()
    assert process.returncode == 2
    assert stderr.decode().splitlines()[-1] == (
        "userstream gateway: account 'alice': environment variable USERSTREAM_TEST_UNSET_TOKEN (token_env) "
        "is not set"
    )


async def test_a_bad_flag_exits_2_naming_the_flag_s_key_and_not_the_file(tmp_path: Path) -> None:
    # The flags are laid over the file's [gateway] table and held to GatewayConfig's own declarations; the
    # refusal is about the flag, so it names no file.
    config = tmp_path / "gateway.toml"
    table = {"name": "alice", "exchange": "coinlocally", "token_env": "USERSTREAM_TEST_TOKEN"}
    config.write_text(to_toml({"accounts": [table]}))
    for flags, message in (
        (("--http-port", "70000"), "userstream gateway: http_port must be in 0..65535, not 70000\n"),
        (("--data-dir", ""), "userstream gateway: data_dir must be a directory's path, not ''\n"),
    ):
        process = await gateway(config, *flags, http_port=None)
        _, stderr = await process.communicate()
        assert process.returncode == 2
        assert stderr.decode() == message
