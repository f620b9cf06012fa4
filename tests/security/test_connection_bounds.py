"""serve under connections that are not WebSockets, guessed credentials, unmasked frames (issue 13 sections 3
and 5), and the loopback exemption of the per-address WebSocket limit (issue 12 section 6).

Everything from the outside, with raw sockets and third-party clients: connections that send nothing, half a
request line or a trickle are closed at the header deadline; an idle keep-alive one at the idle deadline; at
the cap the oldest idle connection makes room, and /healthz is answered from a reserve when every place holds
a busy stream; failed authentications beyond the burst get 429 in the route's dialect before any credential
is read; a weak admin token beyond loopback refuses the start; an unmasked client frame is answered with a
1002 close and nothing of it is processed; hundreds of loopback WebSockets of both dialects are accepted by
default and each gets its own account's events. The 1,024-descriptor attack runs against a real `userstream
serve` subprocess held to that limit.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import resource
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from userstream.cli import build_parser
from userstream.errors import ConfigurationError
from userstream.events import BalanceUpdate
from userstream.protocol import bitmusa, coinlocally
from userstream.protocol.messages import ControlReply, DataEvents
from userstream.server import Account, running_server
from userstream.server import limits as limits_module
from userstream.server.command import build_config
from userstream.server.config import token_bits
from userstream.server.limits import AuthThrottle, connection_limits, websocket_limit
from userstream.server.wsmask import MaskScanner

Setup = Any  # conftest.Setup
WAIT = 10.0
STRONG_TOKEN = "3f9c1a7be20d48c6a51f0e9d7b2c4a86"  # 32 hex digits: 128 bits


class Peers:
    """Raw TCP connections to a server, all closed at the end."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.writers: list[asyncio.StreamWriter] = []

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.writers.append(writer)
        return reader, writer

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


@contextlib.asynccontextmanager
async def peers_of(port: int, host: str = "127.0.0.1") -> AsyncIterator[Peers]:
    peers = Peers(port, host)
    try:
        yield peers
    finally:
        peers.close()


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    """What the server sends until it closes the connection (a reset counts as closed)."""
    try:
        async with asyncio.timeout(WAIT):
            return await reader.read()
    except ConnectionResetError:
        return b""


async def until(condition: Any) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110 - counters without a signal
            await asyncio.sleep(0.005)


async def coinlocally_stream(server: Any, sec: Setup, **kwargs: Any) -> ClientConnection:
    ws = await connect(
        server.ws_url + sec.coinlocally_path,
        additional_headers={"token": sec.alice.coinlocally_token},
        ping_interval=None,
        **kwargs,
    )
    assert await ws.recv() == "connect success"
    await ws.send(json.dumps({"event": "sub", "token": sec.alice.coinlocally_token}))
    assert await ws.recv() == "sub success"
    return ws


async def receives_an_event(server: Any, sec: Setup, ws: ClientConnection, n: int) -> None:
    await server.ingest("alice", [sec.balance(n)])
    incoming = coinlocally.Parser(account="alice")(await ws.recv())
    assert isinstance(incoming, DataEvents)
    assert [str(e.free) for e in incoming.events if isinstance(e, BalanceUpdate)] == [f"{n}.5"]


# --- deadlines ------------------------------------------------------------------------------------------


async def test_connections_sending_nothing_half_a_request_line_or_a_trickle_are_closed_at_the_deadline(
    sec: Setup,
) -> None:
    async with (
        running_server(sec.config(header_timeout=0.3, idle_timeout=30)) as server,
        peers_of(server.port) as peers,
    ):
        opened = [await peers.open() for _ in range(12)]
        for _, writer in opened[4:8]:
            writer.write(b"GET /healthz HT")  # half a request line
        for _, writer in opened[8:11]:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # a head without its end
        trickler = opened[11][1]

        async def trickle() -> None:  # busy all the time, never done: the deadline is from the accept
            for byte in b"POST /spot/userDataStream HTTP/1.1\r\nHost: x\r\nX-Slow: 1234567890":
                trickler.write(bytes([byte]))
                await asyncio.sleep(0.02)

        trickling = asyncio.create_task(trickle())
        replies = [await until_closed(reader) for reader, _ in opened]
        trickling.cancel()
        assert replies == [b""] * 12
        assert server.guard is not None
        assert (server.guard.stats.timed_out, server.guard.open_connections) == (12, 0)
        # A stream is a request in progress: neither deadline applies to it.
        ws = await coinlocally_stream(server, sec)
        await asyncio.sleep(0.7)  # past both deadlines
        await receives_an_event(server, sec, ws, 1)
        await ws.close()


async def test_a_tls_handshake_that_never_comes_is_cut_at_the_header_deadline(
    sec: Setup, certificate: Any
) -> None:
    config = sec.config(header_timeout=0.3, tls_cert=str(certificate.cert), tls_key=str(certificate.key))
    async with running_server(config) as server, peers_of(server.port) as peers:
        silent = [await peers.open() for _ in range(3)]
        _, writer = silent[0]
        writer.write(b"\x16\x03\x01\x00")  # the start of a ClientHello, and nothing more
        assert [await until_closed(reader) for reader, _ in silent] == [b""] * 3
        async with aiohttp.ClientSession() as http:
            ssl_context = ssl.create_default_context(cafile=str(certificate.cert))
            async with http.get(server.base_url + "/healthz", ssl=ssl_context) as reply:
                assert reply.status == 200


async def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(sec: Setup) -> None:
    async with (
        running_server(sec.config(header_timeout=5, idle_timeout=0.3)) as server,
        peers_of(server.port) as peers,
    ):
        reader, writer = await peers.open()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = await until_closed(reader)  # the answer, then the close once idle
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert json.loads(body)["status"] == "ok"
        assert server.guard is not None
        assert server.guard.stats.timed_out == 1


# --- caps -----------------------------------------------------------------------------------------------


async def test_over_the_cap_the_oldest_idle_connections_make_room_and_healthz_and_streams_work(
    sec: Setup,
) -> None:
    async with (
        running_server(sec.config(max_tcp_connections=20, header_timeout=30)) as server,
        peers_of(server.port) as peers,
        aiohttp.ClientSession() as http,
    ):
        guard = server.guard
        assert guard is not None
        opened = []
        for count in range(1, 41):
            opened.append(await peers.open())
            await until(lambda count=count: guard.stats.accepted == count)
        assert [await until_closed(reader) for reader, _ in opened[:20]] == [b""] * 20  # the 20 oldest
        assert (guard.stats.evicted, guard.open_connections, dict(guard.stats.refused)) == (20, 20, {})
        async with http.get(server.base_url + "/healthz") as reply:
            assert reply.status == 200
        ws = await coinlocally_stream(server, sec)
        await receives_an_event(server, sec, ws, 1)
        await ws.close()
        assert guard.stats.evicted == 22  # one for the health check, one for the stream


async def test_when_every_place_holds_a_stream_healthz_is_answered_from_the_reserve_and_nothing_else(
    sec: Setup,
) -> None:
    async with (
        running_server(sec.config(max_tcp_connections=3)) as server,
        aiohttp.ClientSession() as http,
    ):
        streams = [await coinlocally_stream(server, sec) for _ in range(3)]
        async with http.get(server.base_url + "/healthz") as reply:
            assert (reply.status, reply.headers["Connection"]) == (200, "close")
            assert (await reply.json())["connections"]["coinlocally"] == 3
        async with http.post(server.base_url + bitmusa.LISTEN_KEY_PATH) as reply:
            assert (reply.status, await reply.json()) == (
                503,
                {
                    "error": "the server is at its connection limit (3): only health checks are answered "
                    "now; retry shortly"
                },
            )
        with pytest.raises(InvalidStatus) as refused:
            await coinlocally_stream(server, sec)
        assert refused.value.response.status_code == 503
        await receives_an_event(server, sec, streams[0], 1)  # the streams go on
        await streams[2].close()
        await until(lambda: server.guard is not None and server.guard.open_connections == 2)
        streams[2] = await coinlocally_stream(server, sec)  # a place is free again
        await receives_an_event(server, sec, streams[2], 2)
        for ws in streams:
            await ws.close()


async def test_an_explicit_per_address_limit_applies_to_loopback_and_refuses_with_429(sec: Setup) -> None:
    async with (
        running_server(sec.config(max_tcp_connections_per_ip=2, header_timeout=30)) as server,
        peers_of(server.port) as peers,
    ):
        streams = [await coinlocally_stream(server, sec) for _ in range(2)]
        reader, _ = await peers.open()
        body = b'{"error":"too many connections from this address: at most 2 at once"}'
        assert await until_closed(reader) == (
            b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        assert server.guard is not None
        assert dict(server.guard.stats.refused) == {"address": 1}
        for ws in streams:
            await ws.close()


def test_the_default_figures_exempt_loopback_and_bound_every_other_address(sec: Setup) -> None:
    config = sec.config()
    assert [websocket_limit(config, peer) for peer in ("127.0.0.1", "::1", "192.0.2.7")] == [None, None, 100]
    limits = connection_limits(config)
    assert (limits.header_timeout, limits.idle_timeout, limits.reserve) == (10.0, 60.0, 8)
    assert [limits.per_address_limit(p) for p in ("127.0.0.1", "192.0.2.7")] == [None, 200]
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert limits.max_connections == min(50_000, soft - max(64, soft // 16))
    explicit = sec.config(max_connections_per_ip=7, max_tcp_connections=99, max_tcp_connections_per_ip=9)
    assert [websocket_limit(explicit, peer) for peer in ("127.0.0.1", "192.0.2.7")] == [7, 7]
    limits = connection_limits(explicit)
    assert (limits.max_connections, limits.per_address_limit("127.0.0.1")) == (99, 9)
    assert connection_limits(sec.config(max_connections_per_ip=300)).per_address_limit("192.0.2.7") == 400


def non_loopback_address() -> str | None:
    """An address of this machine beyond loopback (connections to it come from it), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET: nothing is sent, the route picks the address
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


async def test_from_an_address_beyond_loopback_the_default_websocket_limit_of_100_holds(sec: Setup) -> None:
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no address beyond loopback")
    config = sec.config(host=address, admin_token=STRONG_TOKEN)
    async with running_server(config) as server:
        url = server.ws_url + sec.coinlocally_path
        headers = {"token": sec.alice.coinlocally_token}
        streams = [await connect(url, additional_headers=headers, ping_interval=None) for _ in range(100)]
        with pytest.raises(InvalidStatus) as refused:
            await connect(url, additional_headers=headers, ping_interval=None)
        response = refused.value.response
        assert (response.status_code, json.loads(response.body)) == (
            429,
            {
                "event": "error",
                "code": 429002,
                "message": "too many connections from this address: at most 100 at once",
            },
        )
        for ws in streams:
            await ws.close()


# --- issue 12 section 6: hundreds of loopback streams ---------------------------------------------------

ACCOUNTS = 60
PER_DIALECT = 2  # 60 accounts x 2 dialects x 2 = 240 WebSockets from 127.0.0.1


def load_account(index: int) -> Account:
    return Account(
        name=f"load{index:02d}",
        uid=5000 + index,
        bitmusa_api_key=f"load-bitmusa-api-{index:02d}-SECRET",
        bitmusa_auth_key=f"load-bitmusa-auth-{index:02d}-SECRET",
        coinlocally_token=f"load-coinlocally-token-{index:02d}-SECRET",
    )


async def test_loopback_is_exempt_by_default_240_streams_each_get_their_own_accounts_events(
    sec: Setup,
) -> None:
    accounts = [load_account(index) for index in range(ACCOUNTS)]
    streams: list[tuple[int, ClientConnection, Any]] = []
    async with (
        running_server(sec.config(accounts=tuple(accounts))) as server,
        aiohttp.ClientSession() as http,
    ):

        async def open_all(index: int, account: Account) -> None:
            headers = {
                "Authorization": f"Bearer {account.bitmusa_auth_key}",
                "x-api-key": account.bitmusa_api_key,
            }
            async with http.post(server.base_url + bitmusa.LISTEN_KEY_PATH, headers=headers) as reply:
                key = (await reply.json())["data"]["listenKey"]
            for _ in range(PER_DIALECT):
                ws = await connect(f"{server.ws_url}/ws/spot/{key}", ping_interval=None)
                streams.append((index, ws, bitmusa.Parser(account=account.name)))
                ws = await connect(
                    server.ws_url + sec.coinlocally_path,
                    additional_headers={"token": account.coinlocally_token},
                    ping_interval=None,
                )
                await ws.send(json.dumps({"event": "sub", "token": account.coinlocally_token}))
                streams.append((index, ws, coinlocally.Parser(account=account.name)))

        async def take(ws: ClientConnection, parser: Any, count: int) -> list[tuple[str, str]]:
            received: list[tuple[str, str]] = []
            while len(received) < count:
                incoming = parser(await ws.recv())
                if isinstance(incoming, ControlReply):
                    continue
                assert isinstance(incoming, DataEvents), incoming
                received += [(e.asset, str(e.free)) for e in incoming.events if isinstance(e, BalanceUpdate)]
            return received

        async with asyncio.timeout(60):
            await asyncio.gather(*(open_all(index, account) for index, account in enumerate(accounts)))
            for account in accounts:
                await server.wait_for_streams(account.name, 2 * PER_DIALECT)
            for index, account in enumerate(accounts):
                events = [sec.balance(n, asset=f"X{index:02d}") for n in (1, 2)]
                await server.ingest(account.name, events)
            received = await asyncio.gather(*(take(ws, parser, 2) for _, ws, parser in streams))
        health = server.server.health()
        for _, ws, _ in streams:
            await ws.close()
    assert len(streams) == ACCOUNTS * PER_DIALECT * 2 == 240
    assert health["connections"]["bitmusa"] == health["connections"]["coinlocally"] == 120
    for (index, _, _), got in zip(streams, received, strict=True):
        assert got == [(f"X{index:02d}", "1.5"), (f"X{index:02d}", "2.5")]


# --- failed authentications -----------------------------------------------------------------------------


def test_the_throttle_counts_failures_in_a_bucket_refilled_at_its_rate() -> None:
    now = [100.0]
    throttle = AuthThrottle(rate=2.0, burst=3, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.wait("192.0.2.7") == 0
        throttle.failed("192.0.2.7")
    assert throttle.wait("192.0.2.7") == 0.5  # one token comes back in 1/rate seconds
    assert throttle.wait("192.0.2.8") == 0  # another address has its own bucket
    now[0] += 0.25
    assert throttle.wait("192.0.2.7") == 0.25
    now[0] += 0.25
    assert throttle.wait("192.0.2.7") == 0
    throttle.failed("192.0.2.7")
    now[0] += 10
    assert throttle._tokens("192.0.2.7", now[0]) == 3.0  # never more than the burst
    assert throttle.failures == 4


def test_the_throttle_keeps_a_bounded_number_of_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits_module, "_MAX_TRACKED_ADDRESSES", 3)
    now = [0.0]
    throttle = AuthThrottle(rate=1.0, burst=1, clock=lambda: now[0])
    for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.1", "192.0.2.4"):
        throttle.failed(address)
    # .2 was charged longest ago: forgotten (a full bucket again); the others are still empty.
    waits = [throttle.wait(f"192.0.2.{n}") for n in (1, 2, 3, 4)]
    assert waits == [1.0, 0.0, 1.0, 1.0]


async def test_failed_authentications_beyond_the_burst_are_answered_429_before_any_credential_is_read(
    sec: Setup,
) -> None:
    alice = sec.alice
    good = {"Authorization": f"Bearer {alice.bitmusa_auth_key}", "x-api-key": alice.bitmusa_api_key}
    bad = {"Authorization": "Bearer guess", "x-api-key": alice.bitmusa_api_key}
    config = sec.config(auth_failure_burst=3, auth_failures_per_second=0.1)  # a token back every 10 s
    async with running_server(config) as server, aiohttp.ClientSession() as http:
        for _ in range(5):  # successes are not counted
            async with http.post(server.base_url + bitmusa.LISTEN_KEY_PATH, headers=good) as reply:
                assert reply.status == 200
        for _ in range(3):
            async with http.post(server.base_url + bitmusa.LISTEN_KEY_PATH, headers=bad) as reply:
                assert reply.status == 401
        message = (
            "too many failed authentications from this address: at most 3 at once, then 0.1 per second; "
            "retry in 10 s"
        )
        async with http.post(server.base_url + bitmusa.LISTEN_KEY_PATH, headers=good) as reply:
            assert (reply.status, reply.headers["Retry-After"]) == (429, "10")
            assert await reply.json() == {"code": 429001, "message": message}
        with pytest.raises(InvalidStatus) as refused:
            await connect(
                server.ws_url + sec.coinlocally_path,
                additional_headers={"token": alice.coinlocally_token},
                ping_interval=None,
            )
        assert (refused.value.response.status_code, json.loads(refused.value.response.body)) == (
            429,
            {"event": "error", "code": 429003, "message": message},
        )
        admin = {"Authorization": f"Bearer {sec.admin_token}"}
        async with http.post(server.base_url + "/admin/events", headers=admin, json={}) as reply:
            assert (reply.status, await reply.json()) == (429, {"error": message})
        async with http.get(server.base_url + "/healthz") as reply:
            assert reply.status == 200  # health is never throttled


async def test_guessed_listen_keys_count_as_failed_authentications(sec: Setup) -> None:
    config = sec.config(auth_failure_burst=2, auth_failures_per_second=0.1)
    async with running_server(config) as server:
        for guess in ("guess-one", "guess-two"):
            with pytest.raises(InvalidStatus) as refused:
                await connect(f"{server.ws_url}/ws/spot/{guess}", ping_interval=None)
            assert refused.value.response.status_code == 404
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"{server.ws_url}/ws/spot/guess-three", ping_interval=None)
        assert refused.value.response.status_code == 429
        assert json.loads(refused.value.response.body)["code"] == 429001


async def test_a_credential_refused_after_the_upgrade_counts_too(sec: Setup) -> None:
    """With a variant where Coinlocally upgrades an unknown token and refuses it at the sub, no 401 is sent:
    the refusal is still a failed authentication."""
    config = sec.config(
        auth_failure_burst=2, auth_failures_per_second=0.1, variants=("coinlocally-refusal-close",)
    )
    async with running_server(config) as server:
        url = server.ws_url + sec.coinlocally_path
        for _ in range(2):
            ws = await connect(url, additional_headers={"token": "guess"}, ping_interval=None)
            await ws.close()
        with pytest.raises(InvalidStatus) as refused:
            await connect(url, additional_headers={"token": "guess"}, ping_interval=None)
        assert refused.value.response.status_code == 429
        assert json.loads(refused.value.response.body)["code"] == 429003


# --- the admin token beyond loopback --------------------------------------------------------------------


def test_the_entropy_estimate_of_a_token() -> None:
    assert token_bits(STRONG_TOKEN) == 128.0  # 32 hex digits
    assert token_bits("s3cret") == pytest.approx(6 * 2.585, abs=0.01)  # 6 distinct: log2(6) bits each
    assert token_bits("a" * 100) == 0.0  # one character repeated carries nothing
    assert token_bits("changeme" * 8) == 104.0  # a word repeated: bounded by its compressed size (13 B)
    assert token_bits("Zq8_xR2-mT5vN1kLp4Hs7Wd") > 128  # 23 characters of 95: about 151 bits
    assert token_bits("") == 0.0


@pytest.mark.parametrize(
    "token", ["s3cret", "changeme-changeme", "0123456789abcdef0123456789abcde", "x" * 64]
)
def test_a_weak_admin_token_beyond_loopback_refuses_the_start(token: str) -> None:
    environment = {k: v for k, v in os.environ.items() if k != "USERSTREAM_ADMIN_TOKEN"}
    done = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [
            sys.executable,
            "-m",
            "userstream",
            "serve",
            "--port",
            "0",
            "--host",
            "0.0.0.0",  # noqa: S104 - refused before anything listens
            "--admin-token",
            token,
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    bits = int(token_bits(token))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "userstream serve: --host 0.0.0.0 makes the admin API reachable beyond this machine, and the admin "
        f"token is too weak for that: about {bits} bits of entropy, at least 128 needed (for example 32 "
        "hex digits or 22 random URL-safe characters: `python -c 'import secrets; "
        "print(secrets.token_urlsafe(32))'`)\n"
    )
    assert token not in done.stderr


def test_a_weak_admin_token_is_fine_on_loopback_and_a_strong_one_anywhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("USERSTREAM_ADMIN_TOKEN", raising=False)
    parser = build_parser()
    config, _ = build_config(parser.parse_args(["serve", "--admin-token", "s3cret"]))
    assert (config.host, config.admin_token) == ("127.0.0.1", "s3cret")
    config, _ = build_config(parser.parse_args(["serve", "--host", "::", "--admin-token", STRONG_TOKEN]))
    assert config.admin_token == STRONG_TOKEN
    with pytest.raises(ConfigurationError, match="too weak"):
        build_config(parser.parse_args(["serve", "--host", "192.0.2.7", "--admin-token", "s3cret"]))


# --- unmasked client frames -----------------------------------------------------------------------------


def frame(payload: bytes, *, opcode: int = 0x1, mask: bytes | None = b"\x01\x02\x03\x04") -> bytes:
    """One final WebSocket frame, masked with `mask` (None: unmasked)."""
    head = bytes([0x80 | opcode])
    size = len(payload)
    bit = 0x80 if mask is not None else 0
    if size < 126:
        head += bytes([bit | size])
    elif size < 65536:
        head += bytes([bit | 126]) + size.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + size.to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_the_scanner_finds_the_first_unmasked_frame_across_any_split() -> None:
    masked = [frame(b""), frame(b"x" * 125), frame(b"y" * 126, opcode=0x2), frame(b"z" * 70_000)]
    stream = b"".join(masked)
    unmasked_at = len(stream)
    stream += frame(b'{"ping":1}', mask=None) + frame(b"after")
    for split in (1, 2, 3, 7, 13, 4096):
        scanner = MaskScanner()
        found = None
        for start in range(0, len(stream), split):
            offset = scanner.feed(stream[start : start + split])
            if offset is not None:
                found = start + offset
                break
        # Seen in the chunk holding the header's mask bit (its 2nd byte); before it in that chunk go on.
        chunk = (unmasked_at + 1) // split * split
        assert found == max(unmasked_at, chunk), split
        assert scanner.violation_at == unmasked_at, split
    assert MaskScanner().feed(b"".join(masked)) is None


async def handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: str, then: bytes
) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /spotws_user/userData/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"token: {token}\r\n\r\n"
        ).encode()
        + then
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")


async def read_frames(reader: asyncio.StreamReader) -> list[tuple[int, bytes]]:
    """Every (opcode, payload) the server sends until it closes the connection."""
    frames = []
    async with asyncio.timeout(WAIT):
        while True:
            try:
                first = await reader.readexactly(2)
            except (asyncio.IncompleteReadError, ConnectionResetError):
                return frames
            size = first[1] & 0x7F
            if size == 126:
                size = int.from_bytes(await reader.readexactly(2), "big")
            elif size == 127:
                size = int.from_bytes(await reader.readexactly(8), "big")
            frames.append((first[0] & 0x0F, await reader.readexactly(size)))


@pytest.mark.parametrize("pipelined", [False, True], ids=["after-the-handshake", "with-the-handshake"])
async def test_an_unmasked_client_frame_is_answered_with_a_1002_close_and_not_processed(
    sec: Setup, pipelined: bool
) -> None:
    token = sec.alice.coinlocally_token
    unmasked = frame(json.dumps({"event": "sub", "token": token}).encode(), mask=None)
    async with running_server(sec.config()) as server, peers_of(server.port) as peers:
        reader, writer = await peers.open()
        if pipelined:
            await handshake(reader, writer, token, then=unmasked)
        else:
            await handshake(reader, writer, token, then=b"")
            writer.write(frame(b'{"ping":1}'))  # a masked frame is read as usual
            assert (await reader.readexactly(17)) == b"\x81\x0fconnect success"
            pong = await reader.readexactly(2)
            assert pong[0] == 0x81
            assert json.loads(await reader.readexactly(pong[1]))["pong"] > 0
            writer.write(unmasked)
        frames = await read_frames(reader)
        assert frames[-1] == (0x8, (1002).to_bytes(2, "big"))  # close, protocol error
        assert [f for f in frames[:-1] if f != (0x1, b"connect success")] == []  # no "sub success"
        assert server.streams("alice") == 0


# --- the attack of issue 13: 1,100 idle connections against 1,024 descriptors ---------------------------


def serve_limited(tmp_path: Path, sec: Setup, *arguments: str) -> subprocess.Popen[str]:
    accounts = tmp_path / "accounts.toml"
    alice = sec.alice
    accounts.write_text(
        f'[[accounts]]\nname = "alice"\nuid = 1\ncoinlocally_token = "{alice.coinlocally_token}"\n'
    )

    def limit() -> None:
        import resource as limits  # noqa: PLC0415 - in the child, before exec

        limits.setrlimit(limits.RLIMIT_NOFILE, (1024, 1024))

    return subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
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
            sec.admin_token,
            *arguments,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit,  # noqa: PLW1509 - sets one limit, nothing thread-unsafe
    )


async def test_1100_idle_connections_leave_a_1024_descriptor_serve_answering_health_and_streams(
    tmp_path: Path, sec: Setup
) -> None:
    process = serve_limited(tmp_path, sec, "--header-timeout", "60")
    try:
        assert process.stdout is not None
        first = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), WAIT)
        base_url = first.split("listening on ")[1].strip()
        port = int(base_url.rsplit(":", 1)[1])
        async with peers_of(port) as peers, aiohttp.ClientSession() as http:
            for _ in range(1100):
                await peers.open()
            descriptors = len(os.listdir(f"/proc/{process.pid}/fd"))
            assert descriptors <= 1024
            async with asyncio.timeout(WAIT), http.get(base_url + "/healthz") as reply:
                assert reply.status == 200
            ws = await connect(
                f"ws://127.0.0.1:{port}{sec.coinlocally_path}",
                additional_headers={"token": sec.alice.coinlocally_token},
                ping_interval=None,
            )
            assert await ws.recv() == "connect success"
            await ws.send(json.dumps({"event": "sub", "token": sec.alice.coinlocally_token}))
            assert await ws.recv() == "sub success"
            admin = {"Authorization": f"Bearer {sec.admin_token}"}
            body = {"account": "alice", "events": [sec.balance(1)]}
            async with http.post(base_url + "/admin/events", headers=admin, json=body) as reply:
                assert (reply.status, await reply.json()) == (200, {"accepted": 1})
            incoming = coinlocally.Parser(account="alice")(await asyncio.wait_for(ws.recv(), WAIT))
            assert isinstance(incoming, DataEvents)
            await ws.close()
    finally:
        process.terminate()
        _, stderr = await asyncio.to_thread(process.communicate, timeout=30)
    assert process.returncode == 0, stderr[-3000:]
    assert "out of system resource" not in stderr
    assert "Traceback" not in stderr, stderr[-3000:]
