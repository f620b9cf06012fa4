"""Fixtures of the multi-node tests: `serve` nodes and `gateway` instances as real processes on one Redis.

Nothing is mocked and nothing runs in the test's process but the clients: each node is `python -m userstream
serve --redis URL --node-id ID` and each gateway `python -m userstream gateway --redis URL --instance ID`,
started on free loopback ports (the first stdout line says where), logging to files of the test's temporary
directory (shown when a wait fails), and killed with SIGKILL when a test wants one dead. `cluster` yields a
`Cluster` that starts them and stops whatever is left at the end. `RoundRobin` is a tiny TCP proxy that
hands each new connection to the next backend that accepts it: clients given its address reconnect to a
surviving node when one dies, as they would behind a load balancer. Test modules cannot import each other
(pytest's importlib mode), so the helpers come as fixtures.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect

WAIT = 20.0  # the bound on every wait for something that must happen; never reached when all is well
ADMIN_TOKEN = "scale-admin-token"
ACCOUNT_NAMES = ("alice", "bob", "carol")
LISTEN_KEY_PATH = "/spot/userDataStream"
COINLOCALLY_PATH = "/spotws_user/userData/ws"
CLIENT_OPTIONS: dict[str, Any] = {"ping_interval": None, "max_queue": None}


def credentials(name: str) -> dict[str, str]:
    """The emulator-side credentials of account `name` (the values the gateways' variables hold)."""
    return {
        "bitmusa_api_key": f"{name}-bitmusa-api",
        "bitmusa_auth_key": f"{name}-bitmusa-auth",
        "coinlocally_api_key": f"{name}-coinlocally-api",
        "coinlocally_token": f"{name}-coinlocally-token",
        "coinlocally_secret_key": f"{name}-coinlocally-secret",
    }


def bitmusa_headers(name: str) -> dict[str, str]:
    creds = credentials(name)
    return {"Authorization": f"Bearer {creds['bitmusa_auth_key']}", "x-api-key": creds["bitmusa_api_key"]}


def write_accounts(path: Path) -> Path:
    lines: list[str] = []
    for uid, name in enumerate(ACCOUNT_NAMES, start=24005174):
        lines += ["[[accounts]]", f'name = "{name}"', f"uid = {uid}"]
        lines += [f'{key} = "{value}"' for key, value in credentials(name).items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class Process:
    """One `python -m userstream ...` child: where it serves, its log, and how to stop it."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.name = name
        self.popen = popen
        self.log = log
        self.url = ""

    def __repr__(self) -> str:
        return f"Process({self.name!r}, {self.url!r})"

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye; its sockets are closed by the kernel."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=WAIT)
        self._close_pipe()

    def stop(self) -> int:
        """SIGTERM, then the exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait(timeout=WAIT)
        finally:
            self._close_pipe()

    def _close_pipe(self) -> None:
        if self.popen.stdout is not None and not self.popen.stdout.closed:
            self.popen.stdout.close()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _spawn(argv: Sequence[str], log: Path, env: dict[str, str] | None) -> subprocess.Popen[bytes]:
    """`python -m userstream ARGV`, stdout piped (its first line says where it listens), stderr to `log`."""
    with log.open("wb") as stderr:
        return subprocess.Popen(  # noqa: S603 - a fixed argument list, no shell
            [sys.executable, "-m", "userstream", *argv],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, **(env or {})},
        )


class Cluster:
    """Starts nodes and gateways as processes of one test, knows their logs, and stops them at the end."""

    def __init__(self, workdir: Path, redis_url: str) -> None:
        self.workdir = workdir
        self.redis_url = redis_url
        self.accounts_file = write_accounts(workdir / "accounts.toml")
        self.processes: list[Process] = []
        self.http = aiohttp.ClientSession()

    async def start(self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None) -> Process:
        log = self.workdir / f"{name}.log"
        popen = _spawn(argv, log, env)
        process = Process(name, popen, log)
        self.processes.append(process)
        assert popen.stdout is not None
        try:
            async with asyncio.timeout(WAIT):
                first = await asyncio.to_thread(popen.stdout.readline)
        except TimeoutError:
            process.kill()
            pytest.fail(f"{name} printed nothing within {WAIT}s:\n{process.log_tail()}")
        words = first.decode().split()
        urls = [word for word in words if word.startswith("http")]
        if not urls:
            pytest.fail(f"{name} did not start: {first!r}\n{process.log_tail()}")
        process.url = urls[0].rstrip("/")
        return process

    async def serve(self, node_id: str, *flags: str) -> Process:
        """A `serve` node on this cluster's Redis, ready (its /healthz is 200)."""
        argv = ["serve", "--port", "0", "--accounts", str(self.accounts_file), "--admin-token", ADMIN_TOKEN]
        argv += ["--redis", self.redis_url, "--node-id", node_id, *flags]
        node = await self.start(node_id, argv)
        await self.wait_healthy(node)
        return node

    async def gateway(self, instance: str, config: Path, *flags: str, env: dict[str, str]) -> Process:
        argv = ["gateway", "--config", str(config), "--http-port", "0", "--redis", self.redis_url]
        argv += ["--instance", instance, *flags]
        return await self.start(instance, argv, env=env)

    async def health(self, process: Process) -> tuple[int, Any]:
        async with self.http.get(process.url + "/healthz") as reply:
            return reply.status, await reply.json()

    async def wait_healthy(self, process: Process) -> Any:
        async def healthy() -> Any:
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    status, body = await self.health(process)
                    if status == 200:
                        return body
                await asyncio.sleep(0.05)

        return await self.within(healthy(), f"{process.name} healthy", process)

    async def within(self, waiting: Any, what: str, *processes: Process) -> Any:
        """Await `waiting` for at most WAIT seconds; on timeout fail with the logs of `processes`."""
        try:
            async with asyncio.timeout(WAIT):
                return await waiting
        except TimeoutError:
            logs = "\n".join(f"--- {p.name}:\n{p.log_tail()}" for p in processes or self.processes)
            pytest.fail(f"not within {WAIT}s: {what}\n{logs}")

    async def ingest(self, node: Process, account: str, events: list[dict[str, Any]]) -> None:
        body = {"account": account, "events": events}
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with self.http.post(node.url + "/admin/events", json=body, headers=headers) as reply:
            assert reply.status == 200, await reply.text()
            assert await reply.json() == {"accepted": len(events)}

    async def rest(self, node: Process, method: str, account: str) -> tuple[int, Any]:
        """A Bitmusa listenKey request (POST, PUT, DELETE) of `account` to `node`."""
        url = node.url + LISTEN_KEY_PATH
        async with self.http.request(method, url, headers=bitmusa_headers(account)) as reply:
            return reply.status, await reply.json()

    async def create_listen_key(self, node: Process, account: str) -> str:
        status, body = await self.rest(node, "POST", account)
        assert status == 200, body
        key: str = body["data"]["listenKey"]
        return key

    async def close(self) -> None:
        for process in self.processes:
            process.kill()
        await self.http.close()


@pytest.fixture
async def cluster(redis_server: Any, tmp_path: Path) -> AsyncIterator[Cluster]:
    made = Cluster(tmp_path, redis_server.url)
    try:
        yield made
    finally:
        await made.close()


# --- stream clients (the websockets library, never our own client) ------------------------------------


def bitmusa_stream(node: Process, listen_key: str) -> Any:
    return connect(f"{node.ws_url}/ws/spot/{listen_key}", **CLIENT_OPTIONS)


def coinlocally_stream(node: Process, account: str) -> Any:
    headers = {"token": credentials(account)["coinlocally_token"]}
    return connect(node.ws_url + COINLOCALLY_PATH, additional_headers=headers, **CLIENT_OPTIONS)


async def subscribe(ws: ClientConnection, account: str) -> None:
    async with asyncio.timeout(WAIT):
        assert await ws.recv() == "connect success"
        await ws.send(json.dumps({"event": "sub", "token": credentials(account)["coinlocally_token"]}))
        assert await ws.recv() == "sub success"


async def next_free(ws: ClientConnection) -> str:
    """The `free` of the next wallet frame, in either dialect (a single-asset balance event)."""
    async with asyncio.timeout(WAIT):
        frame = await ws.recv()
    if isinstance(frame, bytes):  # Coinlocally: gzip outboundAccountPosition
        message = json.loads(gzip.decompress(frame), parse_float=Decimal)
        (balance,) = message["B"]
        return str(balance["f"])
    message = json.loads(frame, parse_float=Decimal)
    assert message["stream"] == "spot_wallet", message
    return str(message["data"]["free"])


async def closed_with(ws: ClientConnection) -> tuple[int | None, str | None]:
    """Wait for the end of the connection: the server's close (code, reason), or (None, None) if it
    vanished without one."""
    async with asyncio.timeout(WAIT):
        await ws.wait_closed()
    exc = ws.close_exc
    if exc is None or exc.rcvd is None:
        return None, None
    return exc.rcvd.code, exc.rcvd.reason


def balance(free: int | str, *, asset: str = "USDT", timestamp: int | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"kind": "balance", "asset": asset, "free": str(free), "locked": "0"}
    if timestamp is not None:
        event["timestamp"] = timestamp
    return event


@pytest.fixture
def streams() -> Any:
    """The stream helpers, as one namespace: `streams.bitmusa(node, key)`, `streams.next_free(ws)`, ..."""

    class Streams:
        bitmusa = staticmethod(bitmusa_stream)
        coinlocally = staticmethod(coinlocally_stream)
        subscribe = staticmethod(subscribe)
        next_free = staticmethod(next_free)
        closed_with = staticmethod(closed_with)
        balance = staticmethod(balance)
        credentials = staticmethod(credentials)

    return Streams


# --- a load balancer in miniature -------------------------------------------------------------------------


class RoundRobin:
    """A TCP proxy on 127.0.0.1: each connection goes to the next backend that accepts it."""

    def __init__(self, backends: Sequence[int]) -> None:
        self.backends = list(backends)
        self._next = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()  # both ends of every open connection
        self._handlers: set[asyncio.Task[None]] = set()  # one per connection (asyncio.start_server's)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()  # each connection's pipes then end by themselves
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*self._handlers)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(len(self.backends)):
            port = self.backends[self._next % len(self.backends)]
            self._next += 1
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue  # that node is gone: try the next one
            break
        else:
            writer.close()
            return
        ends = {writer, upstream_writer}
        self._writers |= ends
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            await asyncio.gather(
                _pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True
            )
        finally:
            self._writers -= ends
            self._handlers.discard(handler)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy until either side ends; then close the other side, as a load balancer would."""
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        sink.close()


@pytest.fixture
async def round_robin() -> AsyncIterator[Any]:
    """`await round_robin([port, ...])`: a started `RoundRobin`, closed at the end."""
    made: list[RoundRobin] = []

    async def start(backends: Sequence[int]) -> RoundRobin:
        proxy = RoundRobin(backends)
        await proxy.start()
        made.append(proxy)
        return proxy

    try:
        yield start
    finally:
        for proxy in made:
            await proxy.close()
