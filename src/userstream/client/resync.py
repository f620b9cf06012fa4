"""Resync after a gap: take a REST snapshot and queue the events that make the delivered picture true again.

Neither exchange replays a private stream, so what it sent while no connection was open is gone. This
module owns what the client does about it: `Resync` reads the stream's one picture of what it delivered
(the `AccountState` that client/delivered.py folds every event the user takes into), and, when the
supervisor reports a gap (a connection that ended unplanned, then a new one live; or the
start, with `initial_snapshot`), takes a snapshot of the account over REST and queues
`AccountState.diff(truth, timestamp=<the snapshot's request time>)`: events marked `source=snapshot` that
turn the delivered picture into the exchange's (docs/state.md says why each rule is what it is). The
corrections a resync queued that the user has not taken yet (`ahead`) count as delivered: a snapshot is
diffed against the picture with them applied (on a copy), so a second gap before the user read them does
not emit them again.

The snapshot taker (`Snapshots`) performs the requests each exchange's REST module describes (its
`SnapshotWire`, which `protocol.registry` names: no exchange is named here), through the stream's
`Transport`:

- Bitmusa: GET /spot/wallet, then GET /spot/order/history?status=TRADING&symbol=S for every symbol of the
  open orders the delivered state holds plus the configured `snapshot_symbols` (Bitmusa lists open orders
  per symbol, so an order opened during the gap on any other symbol cannot be seen);
- Coinlocally: GET /sapi/v1/account, then GET /sapi/v1/openOrders?symbol=S for the same symbols, each
  request signed with the api key's secret key.

A resync runs beside the connections (in the supervisor's TaskGroup) and never stops the stream: a failed
snapshot is reported (`resync_failed`, with attempt and delay) and retried with backoff; a rejected
credential or a configuration error is reported once and not retried (retrying cannot help). A new gap
replaces a resync still running, since only a snapshot taken after the latest gap covers it. A stream that
cannot take snapshots (Coinlocally without a secret key or a REST base) says so once, as a
`resync_skipped` status and a warning in the log, and otherwise goes on as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from userstream.client.backoff import Action, Backoff, RetryPolicy
from userstream.client.rest import HttpReply, RequestLike, carrying_retry_after, check_url
from userstream.client.status import State
from userstream.client.transport import Transport
from userstream.errors import MessageShapeError, UserStreamError
from userstream.events import BalanceUpdate, Event, Exchange, OrderUpdate, Source
from userstream.protocol.registry import spec
from userstream.protocol.snapshot import SnapshotArguments, SnapshotPlan
from userstream.protocol.symbols import DEFAULT_QUOTES
from userstream.state import AccountSnapshot, AccountState

__all__ = [
    "Resync",
    "ResyncHost",
    "SnapshotTaker",
    "Snapshots",
    "TakenSnapshot",
    "snapshot_taker",
]

_log = logging.getLogger("userstream.client")


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class TakenSnapshot:
    """An account's complete balances and open orders, and when (wall clock, ms) the first request left."""

    truth: AccountSnapshot
    requested_at: int


class SnapshotTaker(Protocol):
    """Takes one exchange's REST snapshot of one account."""

    @property
    def exchange(self) -> Exchange: ...

    def symbol_of(self, order: OrderUpdate) -> str:
        """How the exchange's open-orders request names this order's symbol."""
        ...

    def configured_symbol(self, symbol: str) -> str:
        """How it names a symbol of `snapshot_symbols` ("BTC/USDT")."""
        ...

    async def take(self, symbols: Sequence[str]) -> TakenSnapshot:
        """Every balance, and the open orders of these symbols. Raises errors of ours only."""
        ...

    def scrub(self, text: str) -> str:
        """`text` with every secret of the stream hidden, in case a server echoed one (client/scrub.py)."""
        ...


class ResyncHost(Protocol):
    """What a resync needs from its stream (implemented by `stream.UserStream`)."""

    def emit(
        self,
        state: State,
        *,
        reason: str | None = None,
        attempt: int | None = None,
        delay: float | None = None,
        corrections: int | None = None,
    ) -> None: ...

    async def deliver_corrections(self, events: Sequence[Event], queued: Callable[[Event], object]) -> None:
        """Queue the snapshot's events for the user (waiting when the queue is full, as stream events do),
        calling `queued(event)` as each one enters the queue."""
        ...


#: A snapshot is several requests, and the exchanges limit requests per second (Bitmusa counts the listenKey
#: calls too): a 429 within a snapshot waits its Retry-After and asks again, this many times per request,
#: rather than fail the snapshot and start over, which with more symbols than the limit would never end.
RATE_LIMIT_RETRIES = 5
_MAX_RETRY_AFTER = 30.0  # seconds; a longer wait is the resync's own backoff's business


async def _send(transport: Transport, base_url: str, make_request: Callable[[], RequestLike]) -> HttpReply:
    """One request, repeated after the server's Retry-After while it answers 429 (at most
    RATE_LIMIT_RETRIES times). `make_request` builds it afresh each time (a signature carries its time)."""
    for attempt in range(RATE_LIMIT_RETRIES + 1):
        request = make_request()
        label = f"{request.method} {base_url}{request.path}"  # no secret: paths carry symbols only
        reply = await transport.request(base_url, request, label=label)
        if reply.status != 429 or attempt == RATE_LIMIT_RETRIES:
            break
        hint = reply.retry_after
        await asyncio.sleep(min(hint if hint is not None else 1.0, _MAX_RETRY_AFTER))
    return reply


def _truth(balances: Iterable[BalanceUpdate], orders: Iterable[OrderUpdate]) -> AccountSnapshot:
    try:
        return AccountSnapshot.of(balances, orders)
    except ValueError as exc:  # an asset or an order listed twice: not a picture of one moment
        raise MessageShapeError(f"the snapshot is inconsistent: {exc}") from None


class Snapshots:
    """One stream's snapshot taker: every balance, then the open orders per symbol, each request made (and
    signed, where the exchange signs) as the exchange's `SnapshotWire` says (`protocol.registry`)."""

    def __init__(
        self,
        exchange: Exchange,
        *,
        transport: Transport,
        plan: SnapshotPlan,
        account: str,
        quotes: Iterable[str] = DEFAULT_QUOTES,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.exchange = exchange
        self._wire = spec(exchange).snapshot
        self._transport = transport
        self._credentials = plan.credentials
        self._rest_url = plan.base_url.rstrip("/")
        self._account = account
        self._quotes = tuple(quotes)
        self._clock_ms = clock_ms

    def __repr__(self) -> str:
        return f"Snapshots({self.exchange.value}, rest_url={self._rest_url!r}, account={self._account!r})"

    def symbol_of(self, order: OrderUpdate) -> str:
        return self._wire.wire_symbol(order)

    def configured_symbol(self, symbol: str) -> str:
        return self._wire.configured_symbol(symbol)

    def scrub(self, text: str) -> str:
        return self._transport.scrubber(text)  # the stream's: its credentials (and listenKeys)

    async def take(self, symbols: Sequence[str]) -> TakenSnapshot:
        wire, credentials, account = self._wire, self._credentials, self._account
        requested_at = self._clock_ms()
        reply = await _send(
            self._transport, self._rest_url, lambda: wire.balances_request(credentials, self._clock_ms())
        )
        with carrying_retry_after(reply):
            balances = wire.parse_balances(reply.status, reply.body, account, requested_at)
        orders: list[OrderUpdate] = []
        for symbol in symbols:
            make = partial(self._open_orders_request, symbol)
            reply = await _send(self._transport, self._rest_url, make)
            with carrying_retry_after(reply):
                orders += wire.parse_open_orders(
                    reply.status, reply.body, account, requested_at, self._quotes
                )
        return TakenSnapshot(_truth(balances, orders), requested_at)

    def _open_orders_request(self, symbol: str) -> RequestLike:
        """Made afresh for each attempt: a signature carries its time."""
        return self._wire.open_orders_request(self._credentials, symbol, self._clock_ms())


def snapshot_taker(
    exchange: Exchange,
    *,
    transport: Transport,
    account: str,
    api_key: str | None,
    auth_key: str | None,
    token: str | None,
    secret_key: str | None,
    rest_url: str | None,
    snapshot_rest_url: str | None,
    quotes: Sequence[str] | None,
) -> SnapshotTaker | str:
    """The stream's snapshot taker, or why it cannot have one (the `resync_skipped` reason).

    Contradictory arguments are a `ConfigurationError`. The credentials were checked by the session already.
    `rest_url` is the one given to `connect()` (None: the exchange's default).
    """
    given = SnapshotArguments(
        api_key=api_key,
        auth_key=auth_key,
        token=token,
        secret_key=secret_key,
        rest_url=rest_url,
        snapshot_rest_url=snapshot_rest_url,
    )
    plan = spec(exchange).snapshot.plan(given, check_url)
    if isinstance(plan, str):
        return plan
    return Snapshots(
        exchange,
        transport=transport,
        plan=plan,
        account=account,
        quotes=DEFAULT_QUOTES if quotes is None else quotes,
    )


class Resync:
    """One stream's resyncs: the picture it delivered, and the snapshot task a gap starts.

    `taker` None means resync is off (`resync=False`): nothing is tracked, nothing reported. A string is
    why this stream cannot take snapshots: reported once, at the first gap.
    """

    def __init__(
        self,
        taker: SnapshotTaker | str | None,
        *,
        host: ResyncHost,
        symbols: Sequence[str] = (),
        make_backoff: Callable[[], Backoff],
        state: AccountState | None = None,
    ) -> None:
        """`state` is the picture of what the user was delivered, folded in by the stream as each event is
        taken (`client.delivered`); a resync of its own (a test's) makes one if it is None."""
        self._taker = taker
        self._host = host
        self._symbols = tuple(symbols)
        self._make_backoff = make_backoff
        tracking = taker is not None and not isinstance(taker, str)
        self._state = (state if state is not None else AccountState()) if tracking else None
        #: corrections queued and not yet taken by the user, oldest first
        self.ahead: deque[Event] = deque()
        self._task: asyncio.Task[None] | None = None
        self._skip_reported = False
        self.resyncs = 0  # snapshots taken and their corrections queued
        self.failures = 0  # snapshot attempts that failed

    def taken(self, event: Event) -> None:
        """The user took `event`: if it is a correction still counted ahead, it (and any before it, which
        left the queue dropped) is now in the picture."""
        ahead = self.ahead
        if event.source is Source.SNAPSHOT and any(queued is event for queued in ahead):
            while ahead.popleft() is not event:
                pass

    @property
    def enabled(self) -> bool:
        return self._state is not None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def request(self, tasks: asyncio.TaskGroup) -> None:
        """A gap was closed (a connection is live again): start a resync, replacing one still running."""
        taker = self._taker
        if taker is None:
            return
        if isinstance(taker, str):
            if not self._skip_reported:
                self._skip_reported = True
                _log.warning("resync skipped: %s", taker)
                self._host.emit(State.RESYNC_SKIPPED, reason=taker)
            return
        self.cancel()
        self._task = tasks.create_task(self._run(taker), name="userstream-client:resync")

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None

    async def _run(self, taker: SnapshotTaker) -> None:
        state = self._state
        assert state is not None  # noqa: S101 - a taker always comes with a state
        # The one retry policy (client/backoff.py); a rejected credential is not retried (auth_attempts=1).
        retry = RetryPolicy(self._make_backoff(), auth_attempts=1)
        while True:
            symbols = self._symbols_now(taker, self._basis(state))
            try:
                taken = await taker.take(symbols)
            except UserStreamError as exc:
                self.failures += 1
                reason = taker.scrub(f"snapshot failed: {exc}")
                if retry.judge(exc) is Action.FATAL:
                    _log.error("resync failed and will not be retried: %s", reason)
                    self._host.emit(State.RESYNC_FAILED, reason=reason, attempt=retry.attempts + 1)
                    return
                delay = retry.delay(exc)  # at least the peer's Retry-After
                _log.warning(
                    "resync failed (attempt %d), retrying in %.3fs: %s", retry.attempts, delay, reason
                )
                self._host.emit(State.RESYNC_FAILED, reason=reason, attempt=retry.attempts, delay=delay)
                await asyncio.sleep(delay)
                continue
            # Against the picture as the user will have it once the corrections still queued are taken: a
            # resync that follows before the user has read them (two gaps in a row) must not emit them again.
            # Queued means delivered (or reported as dropped).
            corrections = self._basis(state).diff(taken.truth, timestamp=taken.requested_at)
            await self._host.deliver_corrections(corrections, self.ahead.append)
            self.resyncs += 1
            truth = taken.truth
            self._host.emit(
                State.RESYNCED,
                corrections=len(corrections),
                reason=(
                    f"snapshot of {len(truth.balances)} balances and {len(truth.open_orders)} open orders "
                    f"({len(symbols)} symbols)"
                ),
            )
            return

    def _basis(self, state: AccountState) -> AccountState:
        """The picture with the corrections still queued applied: `state` itself when none are."""
        if not self.ahead:
            return state
        basis = state.copy()
        for event in self.ahead:
            basis.apply(event)
        return basis

    def _symbols_now(self, taker: SnapshotTaker, state: AccountState) -> list[str]:
        held = {taker.symbol_of(order) for order in state.snapshot().open_orders.values()}
        return sorted(held | {taker.configured_symbol(symbol) for symbol in self._symbols})
