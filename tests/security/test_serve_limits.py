"""serve's limits: the admin API beyond loopback, TLS files, connections per address, sizes, slow consumers.

Each limit is shown from the outside, with third-party clients (websockets, aiohttp): what the peer sees
(the status, the error body, the close code) and what the server keeps (bounded queues, no error logged).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from userstream.cli import build_parser
from userstream.client import State, StatusEvent
from userstream.client import connect as stream_connect
from userstream.protocol import bitmusa, coinlocally, coinlocally_control
from userstream.protocol.messages import DataEvents, SystemClose
from userstream.server import running_server
from userstream.server.command import build_config
from userstream.server.config import is_loopback

Setup = Any  # conftest.Setup
Certificate = Any  # conftest.Certificate
LogCatcher = Any  # conftest.LogCatcher


def serve(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`userstream serve ...` as a subprocess that is expected to refuse at once."""
    environment = {k: v for k, v in os.environ.items() if k != "USERSTREAM_ADMIN_TOKEN"}
    environment.update(env or {})
    return subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "userstream", "serve", "--port", "0", *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


# --- the admin API beyond loopback ----------------------------------------------------------------------


def test_loopback_is_only_what_this_machine_alone_can_reach() -> None:
    loopback = ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"]
    beyond = ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.com", "", "localhost.example.com"]  # noqa: S104
    assert [host for host in loopback if is_loopback(host)] == loopback
    assert [host for host in beyond if is_loopback(host)] == []


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10"])  # noqa: S104
def test_serve_beyond_loopback_without_an_admin_token_refuses_to_start(host: str) -> None:
    done = serve("--host", host)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        f"userstream serve: --host {host} makes the admin API (/admin/events) reachable beyond this "
        "machine: set --admin-token or $USERSTREAM_ADMIN_TOKEN (a generated token is only used on "
        "loopback)\n"
    )


def test_an_explicit_admin_token_allows_any_host_and_a_generated_one_stays_on_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("USERSTREAM_ADMIN_TOKEN", raising=False)
    parser = build_parser()
    # Beyond loopback the token must be strong (issue 13: at least 128 bits), so these are random-looking.
    token, from_env = "3f9c1a7be20d48c6a51f0e9d7b2c4a86", "Zq8_xR2-mT5vN1kLp4Hs7Wd0Yc3Fb6Ju9Ae"
    config, notices = build_config(parser.parse_args(["serve", "--host", "0.0.0.0", "--admin-token", token]))  # noqa: S104
    assert (config.host, config.admin_token) == ("0.0.0.0", token)  # noqa: S104
    assert not any("generated admin token" in line for line in notices)
    monkeypatch.setenv("USERSTREAM_ADMIN_TOKEN", from_env)
    config, _ = build_config(parser.parse_args(["serve", "--host", "0.0.0.0"]))  # noqa: S104
    assert config.admin_token == from_env
    monkeypatch.delenv("USERSTREAM_ADMIN_TOKEN")
    config, notices = build_config(parser.parse_args(["serve", "--host", "127.0.0.1"]))
    assert any(line.startswith("no --admin-token or $USERSTREAM_ADMIN_TOKEN: generated") for line in notices)


def test_tls_files_that_cannot_be_used_refuse_the_start(tmp_path: Any, certificate: Certificate) -> None:
    done = serve("--tls-cert", str(certificate.cert))
    assert done.returncode == 2
    assert "TLS needs both a certificate (--tls-cert) and its key (--tls-key)" in done.stderr
    missing = tmp_path / "missing.pem"
    done = serve("--tls-cert", str(missing), "--tls-key", str(certificate.key))
    assert done.returncode == 2
    assert f"cannot load the TLS certificate {str(missing)!r}" in done.stderr
    done = serve("--tls-cert", str(certificate.key), "--tls-key", str(certificate.key))  # a key, no cert
    assert done.returncode == 2
    assert "cannot load the TLS certificate" in done.stderr


# --- connections per address ----------------------------------------------------------------------------


async def test_over_the_per_address_limit_a_handshake_is_refused_with_429_and_a_clear_body(
    sec: Setup, logs: LogCatcher
) -> None:
    alice = sec.alice
    async with running_server(sec.config(max_connections_per_ip=3)) as server:
        coinlocally_url = server.ws_url + sec.coinlocally_path
        headers = {"token": alice.coinlocally_token}
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                server.base_url + bitmusa.LISTEN_KEY_PATH,
                headers={
                    "Authorization": f"Bearer {alice.bitmusa_auth_key}",
                    "x-api-key": alice.bitmusa_api_key,
                },
            ) as reply,
        ):
            key = (await reply.json())["data"]["listenKey"]
        bitmusa_url = f"{server.ws_url}/ws/spot/{key}"
        # The limit counts both dialects together: 2 Coinlocally + 1 Bitmusa fill it.
        first = await connect(coinlocally_url, additional_headers=headers, ping_interval=None)
        second = await connect(coinlocally_url, additional_headers=headers, ping_interval=None)
        third = await connect(bitmusa_url, ping_interval=None)
        for url, extra, body in (
            (
                coinlocally_url,
                headers,
                {
                    "event": "error",
                    "code": 429002,
                    "message": "too many connections from this address: at most 3 at once",
                },
            ),
            (
                bitmusa_url,
                {},
                {"code": 429001, "message": "too many connections from this address: at most 3 at once"},
            ),
        ):
            with pytest.raises(InvalidStatus) as refused:
                await connect(url, additional_headers=extra, ping_interval=None)
            response = refused.value.response
            assert response.status_code == 429
            assert response.headers["Retry-After"] == "1"
            assert json.loads(response.body) == body
        # Credentials are not even looked at: a bad token over the limit is told 429, not 401.
        with pytest.raises(InvalidStatus) as refused:
            await connect(coinlocally_url, additional_headers={"token": "wrong"}, ping_interval=None)
        assert refused.value.response.status_code == 429
        await first.close()
        async with asyncio.timeout(sec.wait):
            await server.server.hub.wait_until(lambda: server.server.connections_from("127.0.0.1") == 2)
        fourth = await connect(coinlocally_url, additional_headers=headers, ping_interval=None)
        assert server.server.connections_from("127.0.0.1") == 3
        for ws in (second, third, fourth):
            await ws.close()
    refusals = [r for r in logs.records if r.getMessage() == "stream refused"]
    assert [getattr(r, "userstream_fields", {}).get("reason") for r in refusals] == [
        "too many connections"
    ] * 3


async def test_the_client_takes_a_429_handshake_as_a_retry_and_connects_once_a_slot_frees(sec: Setup) -> None:
    statuses: list[StatusEvent] = []
    async with running_server(sec.config(max_connections_per_ip=1)) as server:
        url = server.ws_url + sec.coinlocally_path
        holder = await connect(
            url, additional_headers={"token": sec.alice.coinlocally_token}, ping_interval=None
        )
        settings = {**sec.calm, "backoff_base": 0.05, "backoff_cap": 0.1}
        async with stream_connect(
            "coinlocally",
            token=sec.alice.coinlocally_token,
            ws_url=url,
            on_status=statuses.append,
            **settings,
        ):
            async with asyncio.timeout(sec.wait):
                while sum(1 for s in statuses if s.state is State.RECONNECTING) < 2:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            await holder.close()
            async with asyncio.timeout(sec.wait):
                while State.SUBSCRIBED not in [s.state for s in statuses]:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
    reasons = {s.reason for s in statuses if s.state is State.RECONNECTING}
    assert reasons >= {f"{url}: WebSocket handshake refused with HTTP 429"}
    assert State.FATAL not in [s.state for s in statuses[:-1]]
    assert State.SUBSCRIBED in [s.state for s in statuses]


# --- sizes ----------------------------------------------------------------------------------------------


async def test_request_and_frame_size_limits_give_the_peer_a_clear_answer(
    sec: Setup, logs: LogCatcher
) -> None:
    config = sec.config(max_ingest_body=64 * 1024, max_client_frame=1024)
    async with running_server(config) as server, aiohttp.ClientSession() as http:
        admin = {"Authorization": f"Bearer {sec.admin_token}"}
        big = json.dumps({"account": "alice", "events": [sec.balance(n) for n in range(2000)]}).encode()
        assert len(big) > 64 * 1024
        async with http.post(server.base_url + "/admin/events", data=big, headers=admin) as reply:
            assert reply.status == 413
            assert await reply.json() == {"error": "the body exceeds 65536 bytes"}
        # A header line over aiohttp's 8190-byte bound: 400 before any handler runs.
        async with http.get(server.base_url + "/healthz", headers={"x-api-key": "k" * 9000}) as reply:
            assert reply.status == 400
        # A body nobody asked for on a listenKey route is not read, and changes nothing.
        bitmusa_headers = {"x-api-key": "nobody", "Authorization": "Bearer nobody"}
        async with http.post(
            server.base_url + bitmusa.LISTEN_KEY_PATH, data=b"x" * 100_000, headers=bitmusa_headers
        ) as reply:
            assert reply.status == 401
        # A WebSocket frame over max_client_frame: close 1009 (message too big), the stream ends.
        async with connect(
            server.ws_url + sec.coinlocally_path,
            additional_headers={"token": sec.alice.coinlocally_token},
            ping_interval=None,
        ) as ws:
            assert await ws.recv() == "connect success"
            await ws.send("x" * 2000)
            _, closed = await read_until_closed(ws, sec.wait)
            assert closed.rcvd is not None
            assert closed.rcvd.code == 1009
        async with http.get(server.base_url + "/healthz") as reply:
            assert reply.status == 200
    assert not [r for r in logs.records if r.levelname in ("ERROR", "CRITICAL")]
    bad = [r for r in logs.records if r.getMessage() == "bad request refused"]
    assert [getattr(r, "userstream_fields", None) for r in bad] == [
        {"peer": "127.0.0.1", "status": 400, "reason": "LineTooLong"}
    ]
    assert "kkkkkkkk" not in logs.text  # the offending bytes (a credential, maybe) are never quoted


async def read_until_closed(ws: ClientConnection, wait: float) -> tuple[list[str | bytes], ConnectionClosed]:
    """Every frame until the connection closes, and the close (bounded by `wait`)."""
    frames: list[str | bytes] = []
    async with asyncio.timeout(wait):
        while True:
            try:
                frames.append(await ws.recv())
            except ConnectionClosed as closed:
                return frames, closed


# --- a slow consumer ------------------------------------------------------------------------------------


async def _slow_client(url: str, headers: dict[str, str]) -> ClientConnection:
    """A websockets client that reads (almost) nothing: a tiny receive buffer and a one-frame queue, so the
    server's frames pile up on the server's side."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    return await connect(url, sock=sock, additional_headers=headers, ping_interval=None, max_queue=1)


@pytest.mark.parametrize("exchange", ["bitmusa", "coinlocally"])
async def test_a_client_that_stops_reading_is_closed_with_4005_and_the_server_queue_stays_bounded(
    sec: Setup, logs: LogCatcher, exchange: str
) -> None:
    alice = sec.alice
    limit = 64
    async with running_server(sec.config(max_send_queue=limit, close_timeout=5.0)) as server:
        if exchange == "bitmusa":
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    server.base_url + bitmusa.LISTEN_KEY_PATH,
                    headers={
                        "Authorization": f"Bearer {alice.bitmusa_auth_key}",
                        "x-api-key": alice.bitmusa_api_key,
                    },
                ) as reply,
            ):
                key = (await reply.json())["data"]["listenKey"]
            ws = await _slow_client(f"{server.ws_url}/ws/spot/{key}", {})
            parser: Any = bitmusa.Parser(account="alice")
        else:
            ws = await _slow_client(
                server.ws_url + sec.coinlocally_path, {"token": str(alice.coinlocally_token)}
            )
            await ws.send(
                coinlocally_control.sub_frame(coinlocally_control.Credentials(token=alice.coinlocally_token))
            )
            parser = coinlocally.Parser(account="alice")
        async with asyncio.timeout(sec.wait):
            await server.wait_for_streams("alice")
        (connection,) = server.server.hub.connections("alice")
        # A congested path: the server's kernel buffer is small too, so the backlog builds in the server
        # process (where the limit applies) after a few hundred frames rather than tens of thousands.
        assert connection.transport is not None
        connection.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        published = 0
        largest_queue = 0
        async with asyncio.timeout(30):
            while not connection.closing:
                await server.ingest("alice", [sec.balance(published + n + 1) for n in range(20)])
                published += 20
                largest_queue = max(largest_queue, connection.queued)
                await asyncio.sleep(0)  # let the writer push what it can into the socket
        assert largest_queue <= limit + 1  # the frames, and at most the close behind them
        # Now the client reads again: what it gets is a prefix of what was published, then the close.
        frames, closed = await read_until_closed(ws, sec.wait)
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (
        4005,
        "send buffer full: the client is not reading",
    )
    parsed = [parser(frame) for frame in frames if frame not in ("connect success", "sub success")]
    if exchange == "coinlocally":
        assert parsed[-1] == SystemClose(uid=alice.uid)
        parsed = parsed[:-1]
    assert all(isinstance(item, DataEvents) for item in parsed)
    received = [str(event.free) for item in parsed for event in item.events]  # type: ignore[union-attr]
    assert received == [f"{n}.5" for n in range(1, len(received) + 1)]  # in order, nothing skipped...
    assert len(received) < published  # ...and the tail the client did not read was dropped, not kept
    closes = [r for r in logs.records if r.getMessage() == "stream closed"]
    assert [getattr(r, "userstream_fields", {}).get("code") for r in closes] == [4005]
    assert not [r for r in logs.records if r.levelname in ("ERROR", "CRITICAL")]
