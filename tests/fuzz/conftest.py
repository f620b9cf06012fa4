"""Shared set-up of the fuzz tests: bounded hypothesis profiles, and a real server in a background thread.

Example counts are bounded so the suite stays fast; `USERSTREAM_FUZZ_EXAMPLES=2000 make unit` (or pytest
tests/fuzz) goes deeper. Two profiles, fetched by name in the test modules (`settings.get_profile`):

- `userstream-fuzz`: pure functions (decoders, parsers), `USERSTREAM_FUZZ_EXAMPLES` examples (default 100);
- `userstream-fuzz-io`: each example talks to a socket (serve's handlers, the client against an adversarial
  peer), a fifth of that (default 20), at least 5.

Hypothesis drives plain (synchronous) test functions, so the server under test runs in its own thread with
its own event loop (`ThreadedServer`), started once per module, and the examples talk to it with
synchronous third-party clients (`http.client`, `websockets.sync`). A log handler on the root logger
collects every record of the server's loggers, so a test can assert that nothing was logged as an error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from userstream.server import Account, ServerConfig, ServerHandle, running_server

EXAMPLES = int(os.environ.get("USERSTREAM_FUZZ_EXAMPLES", "100"))
settings.register_profile(
    "userstream-fuzz",
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "userstream-fuzz-io",
    max_examples=max(5, EXAMPLES // 5),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ALICE = Account(
    name="alice",
    uid=24005174,
    bitmusa_api_key="alice-bitmusa-api",
    bitmusa_auth_key="alice-bitmusa-auth",
    coinlocally_api_key="alice-coinlocally-api",
    coinlocally_token="alice-coinlocally-token",
    coinlocally_secret_key="alice-coinlocally-secret",
)
BOB = Account(name="bob", uid=24005175, coinlocally_token="bob-coinlocally-token")
ADMIN_TOKEN = "fuzz-admin-token"
# Loggers of the code under test; third-party *clients* the tests drive (websockets, urllib3) are not.
SERVER_LOGGERS = ("userstream", "aiohttp", "asyncio")


class ServerLog(logging.Handler):
    """Every record of the server's loggers (thread-safe: `logging` locks around `emit`)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] in SERVER_LOGGERS:
            self.records.append(record)

    def errors(self) -> list[str]:
        """Records at ERROR or above: a peer's bad input must never produce one."""
        return [
            f"{record.name}: {record.getMessage()}"
            + (f" ({record.exc_info[1]!r})" if record.exc_info else "")
            for record in self.records
            if record.levelno >= logging.ERROR
        ]


class ThreadedServer:
    """`running_server(config)` on its own event loop in a daemon thread; `call(coro)` runs one there."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._loop = asyncio.new_event_loop()
        self._ready: Future[ServerHandle] = Future()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="fuzz-server", daemon=True)

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        self.handle = self._ready.result(timeout=10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the server thread did not stop"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            async with running_server(self.config) as handle:
                self._ready.set_result(handle)
                await self._stop.wait()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise

    def call(self, coroutine: Any, timeout: float = 10.0) -> Any:
        """Run `coroutine` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    @property
    def base_url(self) -> str:
        return self.handle.base_url

    @property
    def ws_url(self) -> str:
        return self.handle.ws_url


class Fuzz:
    """What the fuzz tests share (a fixture: test modules cannot import each other)."""

    alice = ALICE
    bob = BOB
    admin_token = ADMIN_TOKEN

    @staticmethod
    def config(**overrides: Any) -> ServerConfig:
        settings_: dict[str, Any] = {
            "accounts": (ALICE, BOB),
            "port": 0,
            "admin_token": ADMIN_TOKEN,
            "close_timeout": 1.0,
            "max_client_frame": 4096,
            "max_ingest_body": 256 * 1024,
            "rate_limit_per_second": 1_000_000,
            "rate_limit_per_minute": 1_000_000,
            # Failed credentials are what fuzzing sends, as fast as it can (deep runs far beyond the
            # documented throttle); the throttle itself is tested in tests/security/test_connection_bounds.py.
            "auth_failure_burst": 1_000_000,
            "auth_failures_per_second": 1_000_000.0,
        }
        settings_.update(overrides)
        return ServerConfig(**settings_)


@pytest.fixture(scope="module")
def fuzz() -> Fuzz:
    return Fuzz()


@pytest.fixture(scope="module")
def server_log() -> Iterator[ServerLog]:
    handler = ServerLog()
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


@pytest.fixture(scope="module")
def threaded_server(fuzz: Fuzz, server_log: ServerLog) -> Iterator[ThreadedServer]:
    with ThreadedServer(fuzz.config()) as server:
        yield server
    assert server_log.errors() == []
