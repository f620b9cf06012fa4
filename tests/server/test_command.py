"""`userstream serve` as a process: it starts, answers, logs JSON without secrets, and stops on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import signal
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import connect

from support.processes import finish, reaped, userstream
from userstream.cli import build_parser
from userstream.server.command import build_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "accounts.toml"
ADMIN = "command-test-admin-token"


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


def test_flags_become_the_config() -> None:
    config, notices = build_config(
        parse(
            "--host", "localhost", "--port", "0", "--accounts", str(EXAMPLE), "--admin-token", "tok",
            "--listen-key-ttl", "10", "--heartbeat-timeout", "2.5", "--max-connection-age", "60",
            "--simulate", "50", "--seed", "3",
        )
    )  # fmt: skip
    assert notices == []
    assert (config.host, config.port, config.admin_token) == ("localhost", 0, "tok")
    assert (config.listen_key_ttl, config.heartbeat_timeout, config.max_connection_age) == (10, 2.5, 60)
    assert (config.simulate_rate, config.seed) == (50.0, 3)
    assert [account.name for account in config.accounts] == ["alice", "bob", "carol-coinlocally-only"]


def test_defaults_are_the_documents(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USERSTREAM_ADMIN_TOKEN", "from-env")
    config, notices = build_config(parse())
    assert (config.host, config.port, config.admin_token) == ("127.0.0.1", 8765, "from-env")
    assert (config.listen_key_ttl, config.heartbeat_timeout, config.max_connection_age) == (3600, 40, 86400)
    assert (config.rate_limit_per_second, config.rate_limit_per_minute) == (8, 200)
    assert config.simulate_rate is None
    (demo,) = config.accounts
    assert notices[0] == "no --accounts file: generated one demo account (as an accounts-file entry):"
    for value in demo.credentials().values():
        assert value in notices[1]  # printed, so a user can connect


def test_without_a_token_one_is_generated_and_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("USERSTREAM_ADMIN_TOKEN", raising=False)
    config, notices = build_config(parse("--accounts", str(EXAMPLE)))
    assert len(config.admin_token) == 43
    assert notices == [
        f"no --admin-token or $USERSTREAM_ADMIN_TOKEN: generated admin token {config.admin_token}"
    ]


async def test_a_bad_accounts_file_exits_2_naming_account_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "accounts.toml"
    bad.write_text('[[accounts]]\nname = "alice"\nuid = "x"\ncoinlocally_token = "t"\n')
    process = await userstream("serve", "--accounts", str(bad))
    out, err = await finish(process, 30)
    assert process.returncode == 2
    assert out == b""
    assert err.decode() == (
        f"userstream serve: {bad}: account 'alice': key 'uid' must be a non-negative integer\n"
    )


async def test_serve_starts_answers_and_exits_0_on_sigterm_after_closing_streams() -> None:
    serve = await userstream(
        "serve", "--port", "0", "--accounts", str(EXAMPLE), "--admin-token", ADMIN, "--log-level", "debug",
        environ={"PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    async with reaped(serve) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        async with asyncio.timeout(30):
            first = (await process.stdout.readline()).decode()
        assert first.startswith("userstream serve: listening on http://127.0.0.1:")
        base_url = first.rsplit(" ", 1)[1].strip()
        async with aiohttp.ClientSession() as http:
            async with http.get(base_url + "/healthz") as reply:
                assert reply.status == 200
                health = await reply.json()
            assert health["status"] == "ok"
            assert health["accounts"] == ["alice", "bob", "carol-coinlocally-only"]
            ws_url = base_url.replace("http://", "ws://")
            async with connect(
                ws_url + "/spotws_user/userData/ws",
                additional_headers={"token": "alice-coinlocally-token-example"},
                ping_interval=None,
            ) as ws:
                assert await ws.recv() == "connect success"
                await ws.send('{"event":"sub","token":"alice-coinlocally-token-example"}')
                assert await ws.recv() == "sub success"
                process.send_signal(signal.SIGTERM)
                async with asyncio.timeout(10):
                    notice = await ws.recv()
                    await ws.wait_closed()
            assert isinstance(notice, bytes)
            assert json.loads(gzip.decompress(notice)) == {
                "uid": 24005174,
                "channel": "SYSTEM",
                "et": "close",
            }
            assert ws.close_exc.rcvd is not None
            assert (ws.close_exc.rcvd.code, ws.close_exc.rcvd.reason) == (1001, "server shutting down")
        async with asyncio.timeout(30):
            rest_of_stdout, stderr = await asyncio.gather(process.stdout.read(), process.stderr.read())
            assert await process.wait() == 0
    assert b"generated" not in rest_of_stdout  # nothing needed generating: no secret printed
    logs = [json.loads(line) for line in stderr.decode().splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in logs)
    messages = [entry["message"] for entry in logs]
    for expected in ("serving", "stream opened", "shutting down", "stream closed", "stopped"):
        assert expected in messages
    assert ADMIN not in stderr.decode()
    assert "alice-coinlocally-token-example" not in stderr.decode()
