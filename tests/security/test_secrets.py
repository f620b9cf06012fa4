"""Secrets never leave: not through `watch`, the gateway or serve, at DEBUG, through errors and reconnects.

The CLI runs as real subprocesses (`userstream watch`, `userstream gateway`, both at `--log-level DEBUG`)
against `userstream serve`'s app in this process, which goes through a listenKey expiry, dropped
connections, SYSTEM closes and rejected credentials. Then every byte anything produced is searched: the
subprocesses' stdout and stderr, the gateway's sink files (SQLite and JSONL), its `/healthz`, `/metrics`,
`/accounts` and picture bodies and its `/events` stream, and serve's own logs and `/healthz`. None may hold a
configured credential, the admin token, or any listenKey in full (its 6-character prefix is what
correlates).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from support.processes import USERSTREAM, LoggedProcess
from userstream.events import Exchange
from userstream.logs import JsonFormatter
from userstream.protocol import bitmusa
from userstream.server import running_server

Setup = Any  # conftest.Setup
LogCatcher = Any  # conftest.LogCatcher

WRONG = "wrong-credential-SECRET"
MALLORY_TOKEN = "mallory-token-SECRET"  # a credential the exchange refuses (the gateway's failing account)
FAST = ("--ping-interval", "1", "--idle-timeout", "5", "--backoff-base", "0.01", "--backoff-cap", "0.05")


def watch_environment(sec: Setup) -> dict[str, str]:
    alice = sec.alice
    return {
        "USERSTREAM_BITMUSA_API_KEY": alice.bitmusa_api_key,
        "USERSTREAM_BITMUSA_AUTH_KEY": alice.bitmusa_auth_key,
        "USERSTREAM_COINLOCALLY_TOKEN": alice.coinlocally_token,
    }


def gateway_toml(server: Any, directory: Path, coinlocally_path: str) -> str:
    timings = (
        "ping_interval = 1.0\nidle_timeout = 5.0\nbackoff_base = 0.01\nbackoff_cap = 0.05\n"
        "sub_timeout = 5.0\nclose_timeout = 2.0\nrequest_timeout = 5.0\nrotate_after = 0\n"
    )
    return f"""
[gateway]
http_host = "127.0.0.1"
http_port = 0
health_grace = 1.0

[defaults]
{timings}
snapshot_symbols = ["BTC/USDT"]

[[accounts]]
name = "alice-bitmusa"
exchange = "bitmusa"
api_key_env = "ALICE_BITMUSA_API_KEY"
auth_key_env = "ALICE_BITMUSA_AUTH_KEY"
rest_url = "{server.base_url}"
ws_url = "{server.ws_url}"

[[accounts]]
name = "alice-coinlocally"
exchange = "coinlocally"
api_key_env = "ALICE_COINLOCALLY_API_KEY"
secret_key_env = "ALICE_COINLOCALLY_SECRET_KEY"
ws_url = "{server.ws_url}{coinlocally_path}"
snapshot_rest_url = "{server.base_url}"

[[accounts]]
name = "mallory-coinlocally"
exchange = "coinlocally"
token_env = "MALLORY_COINLOCALLY_TOKEN"
ws_url = "{server.ws_url}{coinlocally_path}"

[[sinks]]
type = "sqlite"
path = "{directory / "events.db"}"

[[sinks]]
type = "jsonl"
path = "{directory / "events.jsonl"}"
"""


def order(n: int) -> dict[str, Any]:
    return {
        "kind": "order",
        "id": f"C{n}",
        "symbol": "BTC/USDT",
        "side": "buy",
        "type": "limit",
        "status": "open",
        "price": "13000",
        "amount": "1",
        "filled": "0",
        "cost": "0",
        "created_at": 1_700_703_548_000,
        "timestamp": 1_700_703_548_000 + n,
    }


async def test_watch_and_the_gateway_show_no_secret_at_debug_through_errors_and_reconnects(
    sec: Setup, logs: LogCatcher, tmp_path: Path
) -> None:
    alice = sec.alice
    keys: set[str] = set()
    outputs: list[str] = []
    config = sec.config(listen_key_ttl=3600.0)
    async with running_server(config) as server:

        def remember_key() -> None:
            key = server.active_listen_key("alice")
            if key is not None:
                keys.add(key)

        async def streams(exchange: Exchange, count: int) -> None:
            async with asyncio.timeout(sec.wait):
                await server.server.hub.wait_until(lambda: server.streams("alice", exchange) == count)

        async def faults(expected: tuple[int, int]) -> None:
            """A listenKey expiry, a dropped TCP connection, a SYSTEM close; after each, everyone back."""
            bitmusa_count, coinlocally_count = expected
            remember_key()
            server.expire_listen_key("alice")
            await streams(Exchange.BITMUSA, 0)
            await streams(Exchange.BITMUSA, bitmusa_count)
            remember_key()
            await server.drop("alice")
            await streams(Exchange.BITMUSA, bitmusa_count)
            await streams(Exchange.COINLOCALLY, coinlocally_count)
            await server.system_close("alice")
            await streams(Exchange.BITMUSA, bitmusa_count)
            await streams(Exchange.COINLOCALLY, coinlocally_count)
            remember_key()

        # --- userstream watch, both exchanges, at DEBUG ------------------------------------------------
        common = ["--log-level", "DEBUG", "--format", "jsonl", *FAST]
        watch_bitmusa_argv = [*USERSTREAM, "watch", "bitmusa", "--rest-url", server.base_url]
        watch_bitmusa_argv += ["--ws-url", server.ws_url, *common]
        watch_bitmusa = await LoggedProcess(
            tmp_path,
            watch_bitmusa_argv,
            watch_environment(sec),
            name="watch-bitmusa",
        ).start()
        watch_coinlocally = await LoggedProcess(
            tmp_path,
            [*USERSTREAM, "watch", "coinlocally", "--ws-url", server.ws_url + sec.coinlocally_path, *common],
            watch_environment(sec),
            name="watch-coinlocally",
        ).start()
        await streams(Exchange.BITMUSA, 1)
        await streams(Exchange.COINLOCALLY, 1)
        await server.ingest("alice", [sec.balance(1)])
        await faults((1, 1))
        await server.ingest("alice", [sec.balance(2), order(3)])
        for watcher in (watch_bitmusa, watch_coinlocally):
            await watcher.until(lambda w=watcher: w.stdout.count("\n") >= 3, "three events")  # type: ignore[misc]
            assert await watcher.stop(within=30) == 0
        assert "key_renewed" in watch_bitmusa.stderr  # the faults really happened, and were reported
        assert "SYSTEM notice" in watch_coinlocally.stderr
        # Rejected credentials: three attempts, then exit 2 with a message naming what, never the value.
        rejected = await LoggedProcess(
            tmp_path,
            watch_bitmusa_argv,
            {**watch_environment(sec), "USERSTREAM_BITMUSA_AUTH_KEY": WRONG},
            name="watch-rejected",
        ).start()
        async with asyncio.timeout(30):
            assert rejected.process is not None
            assert await rejected.process.wait() == 2
        assert "authentication failed (listenKey request rejected)" in rejected.stderr
        outputs += [p.stdout + p.stderr for p in (watch_bitmusa, watch_coinlocally, rejected)]

        # --- userstream gateway, at DEBUG --------------------------------------------------------------
        config_path = tmp_path / "gateway.toml"
        config_path.write_text(gateway_toml(server, tmp_path, sec.coinlocally_path))
        gateway = await LoggedProcess(
            tmp_path,
            [*USERSTREAM, "gateway", "--config", str(config_path), "--log-level", "DEBUG"],
            {
                "ALICE_BITMUSA_API_KEY": str(alice.bitmusa_api_key),
                "ALICE_BITMUSA_AUTH_KEY": str(alice.bitmusa_auth_key),
                "ALICE_COINLOCALLY_API_KEY": str(alice.coinlocally_api_key),
                "ALICE_COINLOCALLY_SECRET_KEY": str(alice.coinlocally_secret_key),
                "MALLORY_COINLOCALLY_TOKEN": MALLORY_TOKEN,
            },
            name="gateway",
        ).start()
        await gateway.until(lambda: "HTTP API on " in gateway.stdout, "the HTTP API")
        api = gateway.stdout.split("HTTP API on ", 1)[1].split()[0]
        await streams(Exchange.BITMUSA, 1)
        await streams(Exchange.COINLOCALLY, 1)
        bodies: list[str] = []
        async with aiohttp.ClientSession() as http:

            async def get(path: str) -> str:
                async with http.get(api + path) as reply:
                    return await reply.text()

            async with http.get(api + "/events") as sse:
                await server.ingest("alice", [sec.balance(4), order(5)])
                await faults((1, 1))
                await server.ingest("alice", [sec.balance(6)])
                seen = b""
                async with asyncio.timeout(sec.wait):
                    while seen.count(b"event: balance") < 4:  # 2 accounts x 2 balance events, at least
                        seen += await sse.content.readany()
                bodies.append(seen.decode())
            await gateway.until(
                lambda: "mallory-coinlocally" in gateway.stderr and "fatal" in gateway.stderr,
                "the rejected account",
            )
            for path in ("/healthz", "/metrics", "/accounts"):
                bodies.append(await get(path))
            for name in ("alice-bitmusa", "alice-coinlocally", "mallory-coinlocally"):
                for suffix in ("", "/balances", "/orders", "/fills"):
                    bodies.append(await get(f"/accounts/{name}{suffix}"))
        assert json.loads(bodies[1])["accounts"]["mallory-coinlocally"]["state"] == "failed"
        assert 'userstream_gateway_reconnects_total{account="alice-bitmusa"' in bodies[2]
        assert await gateway.stop(within=30) == 0
        outputs += [gateway.stdout, gateway.stderr, *bodies]
        assert "resynced" in gateway.stderr

        # --- serve itself: its /healthz, and a few more refusals worth logging -------------------------
        async with aiohttp.ClientSession() as http:
            async with http.get(server.base_url + "/healthz") as reply:
                outputs.append(await reply.text())
            bad_admin = {"Authorization": f"Bearer {WRONG}"}
            async with http.post(server.base_url + "/admin/events", json={}, headers=bad_admin) as reply:
                assert reply.status == 401
            stale = next(iter(keys - {server.active_listen_key("alice")}))
        with pytest.raises(InvalidStatus, match="HTTP 404"):
            await ws_connect(f"{server.ws_url}{bitmusa.WS_PATH_PREFIX}{stale}", ping_interval=None)
        remember_key()

    sink_files = [(tmp_path / name).read_bytes().decode("latin-1") for name in ("events.db", "events.jsonl")]
    assert '"asset":"USDT"' in sink_files[1]
    server_logs = "\n".join(
        JsonFormatter().format(record) for record in logs.records if not record.name.startswith("websockets")
    )
    everything = "\n".join([*outputs, *sink_files, server_logs])
    secrets = [*alice.credentials().values(), sec.admin_token, WRONG, MALLORY_TOKEN, *keys]
    assert len(keys) >= 3  # the first key, the one after the watch's expiry, the one after the gateway's
    for secret in secrets:
        assert secret not in everything, f"a secret leaked: {secret[:6]}..."
    for key in keys:
        assert key[:6] + "..." in everything  # masked, the keys still correlate across the logs


async def test_serve_logs_no_listen_key_in_full_and_no_credential_on_any_route(
    sec: Setup, logs: LogCatcher
) -> None:
    alice = sec.alice
    headers = {"Authorization": f"Bearer {alice.bitmusa_auth_key}", "x-api-key": str(alice.bitmusa_api_key)}
    keys: list[str] = []
    async with running_server(sec.config()) as server, aiohttp.ClientSession() as http:
        url = server.base_url + bitmusa.LISTEN_KEY_PATH
        for method in ("POST", "PUT", "DELETE", "POST"):
            async with http.request(method, url, headers=headers) as reply:
                assert reply.status == 200
                if method == "POST":
                    keys.append((await reply.json())["data"]["listenKey"])
        deleted, live = keys
        # The key in the path (the access log) and in a query string (dropped from the access log).
        async with ws_connect(f"{server.ws_url}{bitmusa.WS_PATH_PREFIX}{live}?listenKey={live}") as ws:
            await server.ingest("alice", [sec.balance(1)])
            assert json.loads(await ws.recv())["stream"] == "spot_wallet"
            server.expire_listen_key("alice")
            await ws.wait_closed()
        for stale in (deleted, live, "made-up-listen-key-SECRET"):
            with pytest.raises(InvalidStatus, match="HTTP 404"):
                await ws_connect(f"{server.ws_url}{bitmusa.WS_PATH_PREFIX}{stale}")
        async with http.get(server.base_url + f"/spot/wallet?listenKey={live}", headers=headers) as reply:
            assert reply.status == 200
        wrong = {**headers, "Authorization": f"Bearer {WRONG}"}
        async with http.post(url, headers=wrong) as reply:
            assert reply.status == 401
        async with http.get(server.base_url + "/healthz") as reply:
            health = await reply.text()
    text = "\n".join(
        JsonFormatter().format(record) for record in logs.records if not record.name.startswith("websockets")
    )
    assert f"/ws/spot/{live[:6]}..." in text  # the access log shows the path, with the key cut
    assert "listenKey expired" in text
    for secret in (*keys, "made-up-listen-key-SECRET", *alice.credentials().values(), WRONG, sec.admin_token):
        assert secret not in text
        assert secret not in health
