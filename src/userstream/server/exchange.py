"""The state of one running exchange emulator and every operation on it, independent of HTTP routing.

`ExchangeServer` owns the accounts (and their lookup by credential, `account_for`, driven by the registry's
`account_keys`: no exchange is named here), the rate limiter, the hub of open
connections, the simulator and the true state (truth.py); its `backend` (backend/) owns the listenKey store
and the fan-out of published events: in memory by default, shared with other nodes through Redis with
`redis_url`. The ledger of what was sent (ledger.py) is kept only when `config.ledger` asks for it. The
routes (app.py, bitmusa_routes.py, coinlocally_routes.py, admin_routes.py), the fault layer (faults.py) and
the test handle of run.py all call it, so the REST API, the admin ingest and the fault controls act on the
very same state through the very same paths; it imports none of them. Whatever must happen to every new
connection besides the server's own bookkeeping (the fault layer's frame delay) is an `on_open` hook.
Monotonic seconds for deadlines, wall-clock milliseconds for event times.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

from aiohttp import WSMsgType, web

from userstream.errors import LocalProtocolError
from userstream.events import Event, Exchange
from userstream.logs import log_event, redact
from userstream.protocol.close import CloseCode
from userstream.protocol.registry import REGISTRY, spec
from userstream.protocol.server_session import ServerSession
from userstream.server.backend.factory import make_backend
from userstream.server.backend.interface import Backend
from userstream.server.backend.memory import MemoryBackend
from userstream.server.config import Account, ServerConfig
from userstream.server.connection import Connection
from userstream.server.hub import Hub
from userstream.server.ingest import IngestError, coerce_events
from userstream.server.keys import ListenKeyStore
from userstream.server.ledger import Ending, SentLedger
from userstream.server.ratelimit import RateLimiter, Window
from userstream.server.render import RenderedBatch, RenderError, render_batch
from userstream.server.simulator import Simulator
from userstream.server.truth import TrueStates
from userstream.server.variants import Variants, parse_variants

__all__ = ["ExchangeServer", "now_ms"]

_log = logging.getLogger("userstream.server")


def now_ms() -> int:
    """Wall-clock time in integer milliseconds: the clock of event times and pongs."""
    return time.time_ns() // 1_000_000


class ExchangeServer:
    """Accounts, listenKeys, rate limits, open connections and the market simulator of one server."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.variants: Variants = parse_variants(config.variants)
        self.hub = Hub()
        self.backend: Backend = make_backend(config, self)
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
        # (exchange, credential kind, value) -> its account: the first credential a request presents finds
        # the account, every one presented must then match (the registry's `account_keys` name them).
        self._by_credential: dict[tuple[Exchange, str, str], Account] = {}
        for account in config.accounts:
            for exchange, entry in REGISTRY.items():
                for kind, key in entry.account_keys.items():
                    value = getattr(account, key)
                    if value is not None:
                        self._by_credential.setdefault((exchange, kind, value), account)
        # What every published event implies, per account: the REST snapshot endpoints answer from it.
        self.truth = TrueStates()
        # Open WebSockets per peer address: the per-IP limit is checked against it at every handshake.
        self._per_peer: Counter[str] = Counter()
        # What was published to each account and sent on each connection (ledger.py), when asked for.
        self.sent = SentLedger(max_events=config.ledger_events) if config.ledger else None
        # Called with every new connection before its first frame is queued (the fault layer's delay).
        self.on_open: list[Callable[[Connection], None]] = []

    # --- accounts -------------------------------------------------------------------------------------------

    def account(self, name: str) -> Account | None:
        return self._accounts.get(name)

    def require_account(self, name: str) -> Account:
        account = self._accounts.get(name)
        if account is None:
            raise IngestError(f"unknown account {name!r}", status=404, account=name)
        return account

    def account_for(self, exchange: Exchange, presented: Mapping[str, str]) -> Account | None:
        """The account whose `exchange` credentials match every one `presented` (kind -> value, the kinds
        of the registry's `account_keys`), else None. The first presented finds the account; each is then
        compared in constant time."""
        if not presented:
            return None
        keys = spec(exchange).account_keys
        first_kind, first_value = next(iter(presented.items()))
        account = self._by_credential.get((exchange, first_kind, first_value))
        if account is None:
            return None
        for kind, value in presented.items():
            held = getattr(account, keys[kind])
            if held is None or not hmac.compare_digest(held.encode(), value.encode()):
                return None
        return account

    # --- listenKeys (the backend holds them; each method may raise BackendUnavailableError) ---------------

    @property
    def keys(self) -> ListenKeyStore:
        """The in-memory listenKey store (the default backend); with Redis, keys are not held here."""
        if not isinstance(self.backend, MemoryBackend):
            raise LocalProtocolError("listenKeys live in Redis: use the backend's async methods")
        return self.backend.keys

    async def create_listen_key(self, account: Account) -> str:
        key, created = await self.backend.create_listen_key(account.name)
        if created:
            log_event(_log, logging.INFO, "listenKey created", account=account.name, key=redact(key))
        elif self.variants.post_extends:  # the bitmusa-post-extends variant: POST is a keep-alive too
            await self.keepalive_listen_key(account)
        return key

    async def keepalive_listen_key(self, account: Account) -> bool:
        key = await self.backend.extend_listen_key(account.name)
        if key is None:
            return False
        log_event(_log, logging.INFO, "listenKey extended", account=account.name, key=redact(key))
        return True

    async def close_listen_key(self, account: Account) -> bool:
        """Invalidate the account's key; its streams close with 4002 (on every node, with Redis)."""
        return await self.backend.delete_listen_key(account.name) is not None

    async def lookup_listen_key(self, key: str) -> Account | None:
        """The account owning `key` while it is active, else None (unknown, lapsed or deleted)."""
        account_name = await self.backend.lookup_listen_key(key)
        return None if account_name is None else self.account(account_name)

    def expire_listen_key(self, account_name: str) -> bool:
        """Fault injection: the account's key lapses now and its streams close as on expiry. Immediate, so
        in-memory only; with Redis, `await backend.expire_listen_key(name)`."""
        self.require_account(account_name)
        if not isinstance(self.backend, MemoryBackend):
            raise LocalProtocolError("with Redis, use `await server.backend.expire_listen_key(name)`")
        return self.backend.expire_now(account_name) is not None

    def listen_key_closed(self, account: str, key: str, code: CloseCode) -> int:
        """The backend says `key` was deleted or lapsed: close this node's streams that use it."""
        expired = code is not CloseCode.LISTEN_KEY_DELETED
        what = "expired" if expired else "deleted"
        closed = 0
        for connection in self.hub.connections(account):
            if connection.listen_key == key and connection.listen_key_ended(expired=expired):
                closed += 1  # the stream's session chooses the close code (a variant's for expiry)
        log_event(_log, logging.INFO, f"listenKey {what}", account=account, key=redact(key), closed=closed)
        return closed

    def listen_keys_in_use(self) -> set[str]:
        return {
            connection.listen_key
            for connection in self.hub.connections()
            if connection.listen_key is not None
        }

    def close_all_streams(self, reason: str) -> int:
        """Close every stream as on a server-side cut (SYSTEM notice, 1001): clients reconnect and resync."""
        closed = sum(
            connection.request_close(CloseCode.GOING_AWAY, reason) for connection in self.hub.connections()
        )
        log_event(_log, logging.WARNING, "every stream closed", reason=reason, closed=closed)
        return closed

    def unavailable(self) -> str | None:
        """Why a new stream is refused now (HTTP 503), or None: shutting down, or the backend is down."""
        if self.shutting_down:
            return "the server is shutting down"
        return self.backend.problem()

    # --- events ---------------------------------------------------------------------------------------------

    async def ingest(self, account_name: str, items: Iterable[Event | Mapping[str, Any]]) -> int:
        """Validate a whole batch, then publish it; IngestError (nothing published) if any of it is bad.
        Returns once the batch is certain to reach every live stream of the account (with Redis: stored)."""
        self.require_account(account_name)
        events = coerce_events(items, account=account_name, now_ms=now_ms())
        batch = _render(account_name, events)
        await self.backend.publish(account_name, events, batch)
        return len(events)

    def publish(self, account_name: str, events: Sequence[Event]) -> int:
        """Render the batch in both dialects (IngestError if it cannot be), then publish it: in memory it is
        folded into the true state and queued on the account's live streams at once (count returned);
        with Redis it is queued for Redis in order with every other publish of this node (0 returned)."""
        return self.backend.publish_nowait(account_name, events, _render(account_name, events))

    def deliver(self, account: str, events: Sequence[Event], batch: RenderedBatch) -> int:
        """A published batch reaches this node: fold it into the true state, queue it on the live streams."""
        self.truth.apply(account, events)
        first_seq = None if self.sent is None else self.sent.published(account, events, time.monotonic())
        if self.variants.rewrites_numbers:
            batch = _with_variant_numbers(batch, self.variants)
        return self.hub.deliver(account, batch, first_seq)

    # --- connections ----------------------------------------------------------------------------------------

    def connections_from(self, peer: str) -> int:
        """WebSockets open now from address `peer` (accepted or being accepted)."""
        return self._per_peer[peer]

    def new_connection(
        self,
        account: Account,
        exchange: Exchange,
        session: ServerSession,
        *,
        listen_key: str | None,
        peer: str,
    ) -> Connection:
        """A connection of `account` driving `session` (not yet opened: `connection.open()`)."""
        config = self.config
        connection = Connection(
            account=account,
            exchange=exchange,
            session=session,
            opened_at=time.monotonic(),
            max_outbox=config.max_send_queue,
            close_timeout=config.close_timeout,
            listen_key=listen_key,
            peer=peer,
            on_live=self.hub.notify,  # whoever waits for a stream to go live (wait_for_streams)
        )
        if self.sent is not None:
            connection.record = self.sent.open(account.name, exchange, connection.opened_at)
        for hook in self.on_open:
            hook(connection)
        return connection

    async def serve(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        connection: Connection,
    ) -> None:
        """Run one accepted WebSocket to its end: its writer task, and this task reading the client."""
        self.hub.add(connection)
        self._per_peer[connection.peer] += 1
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
                await _read_client(ws, connection)
            finally:
                await _stop_writer(writer, connection, self.config.close_timeout)
        finally:
            connection.finish()
            self.hub.remove(connection)
            self._per_peer[connection.peer] -= 1
            if not self._per_peer[connection.peer]:
                del self._per_peer[connection.peer]
            close = connection.close_sent
            if self.sent is not None and connection.record is not None:
                self.sent.ended(connection.record, *_ending(connection, ws), time.monotonic())
            log_event(
                _log,
                logging.INFO,
                "stream closed",
                **fields,
                code=int(close.code) if close is not None else ws.close_code,
                by="server" if close is not None else "client",
                frames=connection.frames_sent,
                seconds=round(time.monotonic() - connection.opened_at, 3),
            )

    # --- lifecycle ------------------------------------------------------------------------------------------

    async def background(self, app: web.Application) -> AsyncIterator[None]:
        """The app's cleanup context: the backend's work (in memory: the listenKey sweeper) and the simulator
        live as long as the app."""
        tasks = [asyncio.create_task(self.backend.run(), name=f"userstream-{self.backend.kind}-backend")]
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
        """/healthz's body. With Redis, `backend` says how this node sees it, and while Redis cannot be
        used `status` is "unavailable" with the `reason` (the route answers 503)."""
        counts = self.hub.counts()
        empty = dict.fromkeys([exchange.value for exchange in Exchange], 0) | {"live": 0}
        per_account = {name: counts.get(name, dict(empty)) for name in self._accounts}
        problem = self.backend.problem()
        status = "stopping" if self.shutting_down else "ok" if problem is None else "unavailable"
        body: dict[str, Any] = {"status": status}
        if problem is not None:
            body["reason"] = problem
        backend = self.backend.describe()
        if backend is not None:
            body["backend"] = backend
        return body | {
            "accounts": list(self._accounts),
            "connections": {
                **{
                    exchange.value: sum(tally[exchange.value] for tally in per_account.values())
                    for exchange in Exchange
                },
                "by_account": per_account,
            },
            "listen_keys": self.backend.listen_key_count(),
            "simulating": self.simulator is not None,
            **({"variants": self.variants.names} if self.variants else {}),
            "uptime_seconds": round(time.monotonic() - self.started_at, 3),
        }


def _ending(connection: Connection, ws: web.WebSocketResponse) -> tuple[Ending, int | None]:
    """How a finished connection ended, for the ledger: whose close frame, or which kind of break."""
    code = ws.close_code  # after our close: the client's answer; 1005/1006: no close frame came
    answered = code is not None and code < 1005
    if connection.close_sent is not None:
        ending = Ending.SERVER_CLOSE if answered else Ending.SERVER_CLOSE_UNANSWERED
        return ending, int(connection.close_sent.code)
    if connection.stalled:  # the drop or stall fault (or a last-resort abort at shutdown)
        return Ending.ABORTED, None
    return (Ending.CLIENT_CLOSE if answered else Ending.LOST), code


def _with_variant_numbers(batch: RenderedBatch, variants: Variants) -> RenderedBatch:
    """The batch with its decimals written as the run's numbers variants say (variants.py)."""
    frames = {
        exchange: tuple(variants.rewrite_frame(exchange, frame) for frame in frames)
        for exchange, frames in batch.frames.items()
    }
    return RenderedBatch(events=batch.events, frames=frames, spans=batch.spans)


def _render(account_name: str, events: Sequence[Event]) -> RenderedBatch:
    """The batch in both dialects, or the IngestError (422) naming the first event that cannot be rendered."""
    try:
        return render_batch(events)
    except RenderError as exc:
        raise IngestError(
            f"event {exc.index}: {exc}", status=422, account=account_name, index=exc.index
        ) from None


async def _read_client(ws: web.WebSocketResponse, connection: Connection) -> None:
    """Read the client into its connection's session until the socket closes. Pings are answered through
    the writer, in order."""
    while True:
        message = await ws.receive()
        kind = message.type
        if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
            connection.receive(message.data)
        elif kind is WSMsgType.PING:
            connection.send_pong(message.data)
        elif kind is WSMsgType.PONG:
            continue
        else:  # CLOSE, CLOSING, CLOSED or ERROR: the socket is done
            if kind is WSMsgType.CLOSE:
                if connection.stalled:
                    await _until_gone(connection)
                else:
                    await ws.close(drain=False)  # answer the client's close frame
            return


async def _until_gone(connection: Connection) -> None:
    """Hold a stalled connection open after the client's close frame until the client gives up (or the
    server drops it at shutdown): a black hole answers no close either, and an answer would tell the client
    the connection was healthy to the end. Polled: a stalled connection is a fault, not a hot path."""
    transport = connection.transport
    while transport is not None and not transport.is_closing():  # noqa: ASYNC110 - no close signal
        await asyncio.sleep(0.05)


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
