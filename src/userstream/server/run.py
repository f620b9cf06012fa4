"""Running the exchange emulator inside a program or a test: `running_server(config)` and its handle.

`async with running_server(config) as server:` starts the app on `config.host:config.port` (port 0 picks a
free port), and on exit shuts it down as SIGTERM would (SYSTEM notices, close frames, tasks ended). The
`ServerHandle` gives the URLs (https/wss when `config.tls_cert` is set), the admin token, the same
validated ingest path as `POST /admin/events`, the simulator's ledger, and a few fault controls for the tests
of clients: stall, drop, system_close and expire_listen_key act on every open connection of one account
(through the fault layer, faults.py); `inject` fires any fault exactly as `POST /admin/faults` does, and
`sent` is the ledger of what was published and sent on each connection (ledger.py, kept when
`config.ledger` asks for it), which audits what a client delivered.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from userstream.errors import ConfigurationError
from userstream.events import Event, Exchange
from userstream.logs import RedactingAccessLogger, quiet_bad_requests
from userstream.netguard import ConnectionGuard, bound_port, limit_accept_error_log
from userstream.server.app import FAULTS_KEY, SERVER_KEY, create_app
from userstream.server.config import Account, ServerConfig
from userstream.server.exchange import ExchangeServer
from userstream.server.faults import Fault, FaultController, FaultKind, FaultReport
from userstream.server.ledger import SentLedger
from userstream.server.limits import connection_limits
from userstream.server.simulator import Ledger, Simulator

__all__ = ["LedgerNotKeptError", "ServerHandle", "running_server", "server_ssl_context"]


class LedgerNotKeptError(ConfigurationError, RuntimeError):
    """`ServerHandle.sent` was read on a server that keeps no ledger: it is kept only when its config asks
    (`ServerConfig(ledger=True)`; userstream.testing asks). Also a RuntimeError, as it was before it had a
    type of its own."""


class ServerHandle:
    """A running server: where it listens, and what a test may do to it."""

    def __init__(
        self, app: web.Application, host: str, port: int, guard: ConnectionGuard | None = None
    ) -> None:
        self.app = app
        #: The bounds of every TCP connection (userstream.netguard): counts of what it refused or closed.
        self.guard = guard
        self.server: ExchangeServer = app[SERVER_KEY]
        #: The fault controller: `fired` counts by kind, `active()` the running refusal and delay windows.
        self.faults: FaultController = app[FAULTS_KEY]
        self.config: ServerConfig = self.server.config
        self.host = host
        self.port = port
        secure = "s" if self.config.uses_tls else ""
        self.base_url = f"http{secure}://{host}:{port}"
        self.ws_url = f"ws{secure}://{host}:{port}"

    def __repr__(self) -> str:
        return f"ServerHandle(base_url={self.base_url!r})"

    @property
    def admin_token(self) -> str:
        return self.config.admin_token

    def account(self, name: str) -> Account:
        """The configured account `name` (its credentials, for a client under test)."""
        account = self.server.account(name)
        if account is None:
            raise KeyError(name)
        return account

    async def ingest(self, account: str, events: Iterable[Event | Mapping[str, Any]]) -> int:
        """Publish events (Event objects or their JSON form) to `account`'s streams, exactly as
        `POST /admin/events` does; IngestError (nothing published) on an unknown account or a bad event."""
        return await self.server.ingest(account, events)

    def streams(self, account: str, exchange: Exchange | None = None) -> int:
        """How many of `account`'s connections receive events now (Coinlocally: subscribed)."""
        return sum(1 for c in self.server.hub.connections(account, exchange) if c.live)

    async def wait_for_streams(self, account: str, count: int = 1, exchange: Exchange | None = None) -> None:
        """Return once `account` has at least `count` streams receiving events (Coinlocally: subscribed).
        Bound it with `asyncio.timeout`."""
        await self.server.hub.wait_until(lambda: self.streams(account, exchange) >= count)

    async def stall(self, account: str) -> int:
        """Every open connection of `account` goes silent (no frames, no pongs, no closes) but stays open."""
        self.server.require_account(account)
        return self.faults.stall(account)

    async def drop(self, account: str) -> int:
        """Abort every open connection of `account` at the TCP level, without a close frame."""
        self.server.require_account(account)
        return self.faults.drop(account)

    async def system_close(self, account: str) -> int:
        """Close every open connection of `account` as the exchange would (Coinlocally: SYSTEM notice first,
        then 1001 GOING_AWAY); returns once they are closed (at most `config.close_timeout` later, when
        a client that does not answer is cut off)."""
        self.server.require_account(account)
        closing = self.faults.system_close(account)
        await asyncio.gather(*(connection.finished.wait() for connection in closing))
        return len(closing)

    def expire_listen_key(self, account: str) -> bool:
        """Let `account`'s listenKey lapse now; its streams close with 4001. False if it had no key."""
        return self.server.expire_listen_key(account)

    async def inject(
        self,
        kind: FaultKind | str,
        *,
        account: str | None = None,
        exchange: Exchange | str | None = None,
        seconds: float | None = None,
        delay_ms: float | None = None,
    ) -> FaultReport:
        """Fire one fault (docs/server.md, "Fault injection") exactly as `POST /admin/faults` does: on
        `account` (None: every account) and `exchange` (None: both). FaultError if it cannot be fired."""
        target = None if exchange is None else Exchange(exchange)
        return await self.faults.fire(Fault(FaultKind(kind), account, target, seconds, delay_ms))

    @property
    def sent(self) -> SentLedger:
        """What was published to each account and queued and written on each connection; `audit(...)`.
        Kept only when `config.ledger` is True (LedgerNotKeptError otherwise)."""
        if self.server.sent is None:
            raise LedgerNotKeptError(
                "the server keeps no ledger (ServerConfig.ledger is False): "
                "start it with ServerConfig(ledger=True) to read what it sent"
            )
        return self.server.sent

    def active_listen_key(self, account: str) -> str | None:
        return self.server.keys.active_key(account, time.monotonic())

    def ledger(self, account: str) -> Ledger:
        """The simulator's true state of `account` (balances, open orders). Needs `simulate_rate`."""
        return self._simulator().ledger(account)

    def pause_simulation(self) -> int:
        """Hold the simulated markets still (so a client can catch up and be compared with the ledger);
        returns how many simulated events have been published so far."""
        simulator = self._simulator()
        simulator.pause()
        return simulator.events_published

    def resume_simulation(self) -> None:
        self._simulator().resume()

    async def publish_snapshot(self, account: str) -> int:
        """Publish `account`'s whole simulated state (every balance, every open order) to its streams,
        through the ingest path, so a stream that joined late holds the ledger's state. Returns the count."""
        events = self._simulator().market(account).snapshot(time.time_ns() // 1_000_000)
        self.server.publish(account, events)
        return len(events)

    def _simulator(self) -> Simulator:
        if self.server.simulator is None:
            raise RuntimeError("the server runs without a simulator (simulate_rate is None)")
        return self.server.simulator


@asynccontextmanager
async def running_server(config: ServerConfig) -> AsyncIterator[ServerHandle]:
    """Serve `config` until the block ends, then shut down gracefully.

    Every TCP connection is bounded (userstream.netguard, with the figures of limits.py): a request head
    within `header_timeout`, the next one within `idle_timeout`, capped in all and per address, a reserve
    kept for /healthz; asyncio's accept-error log is summarized while the server runs."""
    app = create_app(config)
    guard = ConnectionGuard(connection_limits(config), name="serve")
    app.middlewares.insert(0, guard.middleware)  # outermost: it must see every request first
    runner = web.AppRunner(
        app,
        access_log_class=RedactingAccessLogger,
        shutdown_timeout=config.close_timeout,
        handle_signals=False,
        keepalive_timeout=config.idle_timeout,
    )
    ssl_context = server_ssl_context(config)
    quiet_bad_requests()
    await runner.setup()
    restore_log = limit_accept_error_log(asyncio.get_running_loop())
    try:
        listener = await guard.serve(runner, config.host, config.port, ssl_context=ssl_context)
        try:
            port = bound_port(listener, config.port)
            host = "127.0.0.1" if config.host in ("0.0.0.0", "") else config.host  # noqa: S104
            yield ServerHandle(app, host, port, guard)
        finally:
            listener.close()  # stop accepting; the runner's cleanup closes what is open
    finally:
        await runner.cleanup()
        restore_log()


def server_ssl_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The TLS context of `config.tls_cert`/`tls_key` (None: plain HTTP); ConfigurationError if unusable."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except OSError as exc:  # ssl.SSLError included: not PEM, or the key does not match the certificate
        detail = exc.strerror or type(exc).__name__
        raise ConfigurationError(
            f"cannot load the TLS certificate {config.tls_cert!r} and key {config.tls_key!r}: {detail}"
        ) from None
    return context
