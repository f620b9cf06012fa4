"""The state of one running exchange emulator and every operation on it, independent of HTTP routing.

`ExchangeServer` owns the accounts (and their lookup by credential), the listenKey store, the rate limiter,
the hub of open connections, the listenKey sweeper and the simulator. The routes of app.py and the test
handle of run.py both call it, so the REST API, the admin ingest and the fault controls of tests act on the
very same state through the very same paths. Monotonic seconds for deadlines, wall-clock milliseconds for
event times.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

from aiohttp import WSMsgType, web

from userstream.events import Event, Exchange
from userstream.protocol import bitmusa, coinlocally
from userstream.protocol.close import CloseCode
from userstream.server.config import Account, ServerConfig
from userstream.server.connection import Connection
from userstream.server.hub import Hub, RenderError, render_batch
from userstream.server.ingest import IngestError, coerce_events
from userstream.server.keys import ListenKeyStore, redact
from userstream.server.logs import log_event
from userstream.server.ratelimit import RateLimiter, Window
from userstream.server.simulator import Simulator
from userstream.server.snapshots import TrueStates

__all__ = ["ExchangeServer", "FrameHandler", "now_ms"]

_log = logging.getLogger("userstream.server")

#: What a stream does with one text or binary frame from its client (synchronous: it may only queue replies).
FrameHandler = Callable[[str | bytes], None]


def now_ms() -> int:
    """Wall-clock time in integer milliseconds: the clock of event times and pongs."""
    return time.time_ns() // 1_000_000


class ExchangeServer:
    """Accounts, listenKeys, rate limits, open connections and the market simulator of one server."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.hub = Hub()
        self.keys = ListenKeyStore(config.listen_key_ttl)
        self.limiter = RateLimiter(
            (Window(config.rate_limit_per_second, 1.0), Window(config.rate_limit_per_minute, 60.0))
        )
        self.started_at = time.monotonic()
        self.shutting_down = False
        self.simulator = (
            None
            if config.simulate_rate is None
            else Simulator(
                [account.name for account in config.accounts],
                rate=config.simulate_rate,
                seed=config.seed,
            )
        )
        self._accounts = {account.name: account for account in config.accounts}
        self._by_bitmusa_key = {
            account.bitmusa_api_key: account
            for account in config.accounts
            if account.bitmusa_api_key is not None
        }
        self._by_coinlocally: dict[tuple[str, str], Account] = {}
        for account in config.accounts:
            if account.coinlocally_token is not None:
                self._by_coinlocally[("token", account.coinlocally_token)] = account
            if account.coinlocally_api_key is not None:
                self._by_coinlocally[("api-key", account.coinlocally_api_key)] = account
        self._keys_changed = asyncio.Event()
        # What every published event implies, per account: the REST snapshot endpoints answer from it.
        self.truth = TrueStates()

    # --- accounts -------------------------------------------------------------------------------------------

    def account(self, name: str) -> Account | None:
        return self._accounts.get(name)

    def require_account(self, name: str) -> Account:
        account = self._accounts.get(name)
        if account is None:
            raise IngestError(f"unknown account {name!r}", status=404, account=name)
        return account

    def bitmusa_account(self, creds: bitmusa.Credentials) -> Account | None:
        """The account whose Bitmusa api key and auth key both match, else None."""
        account = self._by_bitmusa_key.get(creds.api_key)
        if account is None or account.bitmusa_auth_key is None:
            return None
        if not hmac.compare_digest(account.bitmusa_auth_key.encode(), creds.auth_key.encode()):
            return None
        return account

    def coinlocally_account(self, creds: coinlocally.Credentials) -> Account | None:
        """The account whose Coinlocally credential of that kind (token or api-key) matches, else None."""
        return self._by_coinlocally.get((creds.header_name, creds.secret))

    # --- listenKeys -----------------------------------------------------------------------------------------

    def create_listen_key(self, account: Account) -> str:
        key, created = self.keys.create_or_get(account.name, time.monotonic())
        if created:
            self._keys_changed.set()
            log_event(_log, logging.INFO, "listenKey created", account=account.name, key=redact(key))
        return key

    def keepalive_listen_key(self, account: Account) -> bool:
        key = self.keys.extend(account.name, time.monotonic())
        if key is None:
            return False
        self._keys_changed.set()
        log_event(_log, logging.INFO, "listenKey extended", account=account.name, key=redact(key))
        return True

    def close_listen_key(self, account: Account) -> bool:
        key = self.keys.delete(account.name, time.monotonic())
        if key is None:
            return False
        self._keys_changed.set()
        closed = self._close_key_streams(account.name, key, CloseCode.LISTEN_KEY_DELETED, "listenKey deleted")
        log_event(
            _log, logging.INFO, "listenKey deleted", account=account.name, key=redact(key), closed=closed
        )
        return True

    def expire_listen_key(self, account_name: str) -> bool:
        """Fault injection: the account's key lapses now and its streams close as on expiry."""
        self.require_account(account_name)
        key = self.keys.expire_now(account_name)
        if key is None:
            return False
        self._keys_changed.set()
        self._on_expired(account_name, key)
        return True

    def _on_expired(self, account_name: str, key: str) -> None:
        closed = self._close_key_streams(account_name, key, CloseCode.LISTEN_KEY_EXPIRED, "listenKey expired")
        log_event(
            _log, logging.INFO, "listenKey expired", account=account_name, key=redact(key), closed=closed
        )

    def _close_key_streams(self, account_name: str, key: str, code: CloseCode, reason: str) -> int:
        closed = 0
        for connection in self.hub.connections(account_name, Exchange.BITMUSA):
            if connection.listen_key == key and connection.request_close(code, reason):
                closed += 1
        return closed

    async def _sweep_listen_keys(self) -> None:
        """Close the streams of every key as it lapses. One task for the whole server, owned by the app."""
        while True:
            self._keys_changed.clear()
            now = time.monotonic()
            for account_name, key in self.keys.expire_due(now):
                self._on_expired(account_name, key)
            next_expiry = self.keys.next_expiry()
            delay = None if next_expiry is None else max(0.0, next_expiry - now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._keys_changed.wait()

    # --- events ---------------------------------------------------------------------------------------------

    def ingest(self, account_name: str, items: Iterable[Event | Mapping[str, Any]]) -> int:
        """Validate a whole batch, then publish it; IngestError (nothing published) if any of it is bad."""
        self.require_account(account_name)
        events = coerce_events(items, account=account_name, now_ms=now_ms())
        self.publish(account_name, events)
        return len(events)

    def publish(self, account_name: str, events: Sequence[Event]) -> int:
        """Render the batch in both dialects, fold it into the account's true state, then queue it on the
        account's live streams (count returned)."""
        try:
            batch = render_batch(events)
        except RenderError as exc:
            raise IngestError(
                f"event {exc.index}: {exc}", status=422, account=account_name, index=exc.index
            ) from None
        self.truth.apply(account_name, events)
        return self.hub.deliver(account_name, batch)

    # --- connections ----------------------------------------------------------------------------------------

    def new_connection(
        self, account: Account, exchange: Exchange, *, listen_key: str | None, peer: str
    ) -> Connection:
        config = self.config
        return Connection(
            account=account,
            exchange=exchange,
            opened_at=time.monotonic(),
            max_age=config.max_connection_age,
            heartbeat_timeout=config.heartbeat_timeout if exchange is Exchange.COINLOCALLY else None,
            max_outbox=config.max_send_queue,
            close_timeout=config.close_timeout,
            listen_key=listen_key,
            peer=peer,
        )

    async def serve(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        connection: Connection,
        on_frame: FrameHandler,
    ) -> None:
        """Run one accepted WebSocket to its end: its writer task, and this task reading the client."""
        self.hub.add(connection)
        fields = {
            "account": connection.account.name,
            "exchange": connection.exchange.value,
            "peer": connection.peer,
        }
        try:
            await ws.prepare(request)
            connection.transport = request.transport
            log_event(_log, logging.INFO, "stream opened", **fields)
            writer = asyncio.create_task(connection.run_writer(ws), name="userstream-writer")
            try:
                await _read_client(ws, connection, on_frame)
            finally:
                await _stop_writer(writer, connection, self.config.close_timeout)
        finally:
            connection.finish()
            self.hub.remove(connection)
            close = connection.close_sent
            log_event(
                _log,
                logging.INFO,
                "stream closed",
                **fields,
                code=close.code.value if close is not None else ws.close_code,
                by="server" if close is not None else "client",
                frames=connection.frames_sent,
                seconds=round(time.monotonic() - connection.opened_at, 3),
            )

    # --- fault controls (tests of clients use these through run.py's handle) --------------------------------

    def stall(self, account_name: str) -> int:
        self.require_account(account_name)
        connections = self.hub.connections(account_name)
        for connection in connections:
            connection.stall()
        self.hub.notify()
        return len(connections)

    def drop(self, account_name: str) -> int:
        self.require_account(account_name)
        connections = self.hub.connections(account_name)
        for connection in connections:
            connection.drop()
        return len(connections)

    def system_close(self, account_name: str) -> list[Connection]:
        self.require_account(account_name)
        return [
            connection
            for connection in self.hub.connections(account_name)
            if connection.request_close(CloseCode.GOING_AWAY, "closed by the exchange")
        ]

    # --- lifecycle ------------------------------------------------------------------------------------------

    async def background(self, app: web.Application) -> AsyncIterator[None]:
        """The app's cleanup context: the listenKey sweeper and the simulator live as long as the app."""
        tasks = [asyncio.create_task(self._sweep_listen_keys(), name="userstream-key-sweeper")]
        if self.simulator is not None:
            tasks.append(asyncio.create_task(self.simulator.run(self.publish), name="userstream-simulator"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for task, result in zip(tasks, results, strict=True):
                if isinstance(result, Exception):
                    log_event(
                        _log,
                        logging.ERROR,
                        "background task failed",
                        task=task.get_name(),
                        error=repr(result),
                    )

    async def shutdown(self, app: web.Application | None = None) -> None:
        """Close every stream as the exchange would (SYSTEM notice on Coinlocally, then 1001), bounded."""
        self.shutting_down = True
        connections = self.hub.connections()
        for connection in connections:
            if connection.stalled:
                connection.drop()
            else:
                connection.request_close(CloseCode.GOING_AWAY, "server shutting down")
        if connections:
            waiters = [connection.finished.wait() for connection in connections]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.close_timeout):
                    await asyncio.gather(*waiters)
        for connection in connections:
            if not connection.finished.is_set():
                connection.drop()
        log_event(_log, logging.INFO, "streams closed for shutdown", streams=len(connections))

    def health(self) -> dict[str, Any]:
        counts = self.hub.counts()
        per_account = {
            name: counts.get(name, {"bitmusa": 0, "coinlocally": 0, "live": 0}) for name in self._accounts
        }
        return {
            "status": "stopping" if self.shutting_down else "ok",
            "accounts": list(self._accounts),
            "connections": {
                "bitmusa": sum(tally["bitmusa"] for tally in per_account.values()),
                "coinlocally": sum(tally["coinlocally"] for tally in per_account.values()),
                "by_account": per_account,
            },
            "listen_keys": len(self.keys),
            "simulating": self.simulator is not None,
            "uptime_seconds": round(time.monotonic() - self.started_at, 3),
        }


async def _read_client(ws: web.WebSocketResponse, connection: Connection, on_frame: FrameHandler) -> None:
    """Read the client until the socket closes. Pings are answered through the writer, in order."""
    while True:
        message = await ws.receive()
        kind = message.type
        if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
            if not connection.stalled:
                on_frame(message.data)
        elif kind is WSMsgType.PING:
            connection.send_pong(message.data)
        elif kind is WSMsgType.PONG:
            continue
        else:  # CLOSE, CLOSING, CLOSED or ERROR: the socket is done
            return


async def _stop_writer(writer: asyncio.Task[None], connection: Connection, grace: float) -> None:
    """The reader is done: let the writer finish a close it is sending, then make sure it has ended."""
    connection.reader_done()
    try:
        await asyncio.wait({writer}, timeout=grace)
    finally:
        if not writer.done():
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
    if not writer.cancelled():
        writer.result()  # a bug in the writer surfaces here instead of vanishing
