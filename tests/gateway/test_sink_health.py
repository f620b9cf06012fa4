"""A sink that cannot write is never "healthy": /healthz, sink_up and the dashboard say so, and say why.

Real parts: the emulator streams to a real gateway; the Redis sink writes to a real redis-server that the
test stops and starts again; the SQLite sink's files are made immutable with `chattr +i` (the `immutable`
fixture, tests/conftest.py: the tests run as root, whom chmod does not stop). Thresholds are shortened in the
sink's config (`down_after_attempts`, `down_after_seconds`), as an operator may.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio

from support.processes import api_url, finish, first_line, gateway, reaped, stop, to_toml
from userstream.gateway.dashboard import snapshot_of
from userstream.gateway.dashboard_layout import render

BASE_TIME = 1_700_703_548_000
WAIT = 10.0


def balances(start: int, count: int) -> list[dict[str, Any]]:
    return [
        {"kind": "balance", "asset": "USDT", "free": str(n), "locked": "0", "timestamp": BASE_TIME + n}
        for n in range(start, start + count)
    ]


def stored(database: Path) -> list[tuple[str]]:
    """The JSON of every event the SQLite sink wrote, in order."""
    connection = sqlite3.connect(database)
    try:
        return connection.execute("SELECT json FROM events ORDER BY seq").fetchall()
    finally:
        connection.close()


async def health_until(env: Any, gateway: Any, status: int) -> dict[str, Any]:
    """Poll /healthz until it answers `status` (bounded by WAIT); its body."""
    async with asyncio.timeout(WAIT):
        while True:
            code, body = await env.get(gateway, "/healthz")
            if code == status:
                return dict(body)
            await asyncio.sleep(0.01)


async def sink_up(env: Any, gateway: Any, name: str) -> str:
    _, text = await env.text(gateway, "/metrics")
    prefix = f'userstream_gateway_sink_up{{sink="{name}"}} '
    return next(line.removeprefix(prefix) for line in text.splitlines() if line.startswith(prefix))


async def test_a_stopped_redis_turns_healthz_red_naming_the_sink_and_green_again_with_nothing_lost(
    lab: Any, redis_server: Any
) -> None:
    async with lab() as env:
        sink_table = {"type": "redis", "url": redis_server.url, "down_after_attempts": 3}
        config = env.config(accounts=("alice",), exchanges=("bitmusa",), sinks=[sink_table])
        async with env.gateway(config) as gateway:
            (sink,) = gateway.sinks
            name = f"redis:{redis_server.url}"
            assert sink.name == name
            await env.ingest("alice", balances(0, 2))
            await env.until(lambda: sink.runner.written == 2)
            assert (await health_until(env, gateway, 200))["sinks"][name]["state"] == "ok"

            redis_server.stop()
            try:
                await env.ingest("alice", balances(2, 3))
                await health_until(env, gateway, 503)
                await env.until(lambda: sink.runner.pending == 3)  # all three reached the sink's buffer
                body = await health_until(env, gateway, 503)
                metric = await sink_up(env, gateway, name)
                frame_sinks = snapshot_of(gateway.snapshot(), title="t", rates={}, now_ms=0)
            finally:
                redis_server.start()  # empty: persistence is off
            assert body["status"] == "down"
            assert body["accounts"]["alice-bitmusa"]["healthy"] is True  # the stream is fine; the sink is not
            report = body["sinks"][name]
            port = redis_server.port
            refused = (
                f"TransportError: {name}: Error 111 connecting to 127.0.0.1:{port}. "
                f"Connect call failed ('127.0.0.1', {port})."
            )
            assert (report["healthy"], report["state"], report["error"], report["pending"]) == (
                False,
                "down",
                refused,
                3,
            )
            assert report["attempts"] >= 3
            assert metric == "0"
            assert frame_sinks.sinks[0].startswith(f"{name} DOWN for ")
            assert frame_sinks.sinks[0].endswith(" attempts), 3 pending")
            assert frame_sinks.sink_errors == (f"{name}: {refused}",)
            assert f"  sink {name}: {refused}" in render(frame_sinks, width=300).splitlines()

            body = await health_until(env, gateway, 200)
            assert body["sinks"][name] == {
                "healthy": True,
                "state": "ok",
                "pending": 0,
                "error": None,
                "failing_seconds": None,
                "attempts": 0,
            }
            assert await sink_up(env, gateway, name) == "1"
            client = redis.asyncio.Redis.from_url(redis_server.url)
            try:
                entries = await client.xrange("userstream:alice-bitmusa:events")
            finally:
                await client.aclose()
    # the events that waited while Redis was down, written in order once it came back
    assert [json.loads(fields[b"event"])["free"] for _, fields in entries] == ["2", "3", "4"]
    assert (sink.runner.written, gateway.lost_events) == (5, 0)


async def test_an_immutable_sqlite_wal_turns_healthz_red_at_once_and_green_once_released(
    lab: Any, immutable: Any
) -> None:
    async with lab() as env:
        database = env.tmp_path / "events.db"
        # thresholds far away: only the unwritable file itself can make it red this fast
        sink_table = {"type": "sqlite", "path": str(database), "down_after_attempts": 1000}
        config = env.config(accounts=("alice",), exchanges=("bitmusa",), sinks=[sink_table])
        async with env.gateway(config) as gateway:
            (sink,) = gateway.sinks
            name = f"sqlite:{database}"
            await env.ingest("alice", balances(0, 1))
            await env.until(lambda: sink.runner.written == 1)
            wal = Path(f"{database}-wal")
            immutable.set(wal)
            await env.ingest("alice", balances(1, 2))
            await health_until(env, gateway, 503)
            await env.until(lambda: sink.runner.pending == 2)  # both reached the sink's buffer
            body = await health_until(env, gateway, 503)
            report = body["sinks"][name]
            assert (report["state"], report["error"], report["pending"]) == (
                "down",
                f"SinkUnwritableError: {name}: {wal} is not writable (read-only or immutable)",
                2,
            )
            assert await sink_up(env, gateway, name) == "0"
            immutable.clear(wal)
            body = await health_until(env, gateway, 200)
            assert body["sinks"][name]["state"] == "ok"
            assert await sink_up(env, gateway, name) == "1"
    rows = stored(database)
    assert [json.loads(body)["free"] for (body,) in rows] == ["0", "1", "2"]
    assert gateway.lost_events == 0


# --- `userstream gateway` as a subprocess: what only a real process can show -------------------------------


async def http_get(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.json()


async def written(url: str, count: int) -> bool:
    """Whether the gateway's (only) sink has written `count` events, by its /metrics."""
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
        text = await response.text()
    return any(
        line.startswith("userstream_gateway_sink_written_total{") and line.endswith(f"}} {count}")
        for line in text.splitlines()
    )


async def test_an_immutable_shm_mid_run_is_reported_not_a_sigbus_and_the_gateway_recovers(
    lab: Any, immutable: Any
) -> None:
    """SQLite maps `-shm` into memory; a store into it once the file is immutable is a SIGBUS that killed
    the gateway without a word. Now the sink sees the file is not writable before SQLite touches it: the
    process lives, /healthz is 503 naming the file, and once it is writable again every event is written."""
    async with lab() as env:
        database = env.tmp_path / "events.db"
        shm = Path(f"{database}-shm")
        document = env.document(
            accounts=("alice",), exchanges=("bitmusa",), sinks=[{"type": "sqlite", "path": str(database)}]
        )
        config = env.tmp_path / "gateway.toml"
        config.write_text(to_toml(document))
        async with reaped(await gateway(config, environ=env.environ)) as process:
            url = api_url(await first_line(process, WAIT))
            async with asyncio.timeout(WAIT):
                await env.server.wait_for_streams("alice", 1)
            await env.ingest("alice", balances(0, 1))
            async with asyncio.timeout(WAIT):
                while not await written(url, 1):  # noqa: ASYNC110 - polling another process
                    await asyncio.sleep(0.01)
            immutable.set(shm)  # there since the sink opened the database (WAL mode)
            await env.ingest("alice", balances(1, 2))
            async with asyncio.timeout(WAIT):
                while (status := await http_get(f"{url}/healthz"))[0] != 503:
                    assert process.returncode is None
                    await asyncio.sleep(0.01)
            report = status[1]["sinks"][f"sqlite:{database}"]
            assert (report["state"], report["error"]) == (
                "down",
                f"SinkUnwritableError: sqlite:{database}: {shm} is not writable (read-only or immutable)",
            )
            immutable.clear(shm)
            async with asyncio.timeout(WAIT):
                while (await http_get(f"{url}/healthz"))[0] != 200:  # noqa: ASYNC110 - polling the process
                    await asyncio.sleep(0.01)
            _, stderr = await stop(process, within=WAIT)
    assert process.returncode == 0, stderr.decode()[-2000:]
    rows = stored(database)
    assert [json.loads(body)["free"] for (body,) in rows] == ["0", "1", "2"]
    messages = [json.loads(line)["message"] for line in stderr.decode().splitlines()]
    assert any(
        message.startswith(f"sink sqlite:{database} is DOWN (1 failed attempts") for message in messages
    )


async def test_a_read_only_sqlite_database_at_start_exits_2_naming_it(tmp_path: Path, immutable: Any) -> None:
    database = tmp_path / "events.db"
    connection = sqlite3.connect(database)
    connection.execute("CREATE TABLE t (x)")
    connection.close()
    immutable.set(database)
    table = {"name": "alice", "exchange": "coinlocally", "token_env": "USERSTREAM_TEST_TOKEN"}
    config = tmp_path / "gateway.toml"
    config.write_text(to_toml({"accounts": [table], "sinks": [{"type": "sqlite", "path": str(database)}]}))
    process = await gateway(config, environ={"USERSTREAM_TEST_TOKEN": "token-SECRET"})
    stdout, stderr = await finish(process, WAIT)
    assert process.returncode == 2
    assert stdout == b""
    assert stderr.decode().splitlines()[-1] == (
        f"userstream gateway: sqlite:{database}: {database} is not writable (read-only or immutable)"
    )


async def test_a_fatal_signal_leaves_a_traceback_on_stderr(lab: Any) -> None:
    """Should a fatal signal reach the gateway anyway (a SIGBUS from a mapped file, a crash in C), it does
    not die without a word: faulthandler writes the signal and every thread's stack to stderr."""
    async with lab() as env:
        document = env.document(accounts=("alice",), exchanges=("bitmusa",))
        config = env.tmp_path / "gateway.toml"
        config.write_text(to_toml(document))
        async with reaped(await gateway(config, environ=env.environ)) as process:
            await first_line(process, WAIT)  # started
            _, stderr = await stop(process, signal.SIGBUS, WAIT)
    assert process.returncode == -signal.SIGBUS
    text = stderr.decode()
    assert "Fatal Python error: Bus error" in text
    assert "most recent call first" in text
