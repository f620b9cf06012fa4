"""Fault injection in `userstream serve`: the faults a real exchange inflicts, on demand or at random.

A layer over the server, which knows nothing of it: this module owns the fault vocabulary (`FaultKind`,
`Fault`, checked once), `FaultController` (fires a fault at the connections of one account and exchange, or
of all, and keeps the timed windows: refused handshakes and delayed frames) and `RandomFaults` (a seeded
injector firing faults at random, for `serve --chaos` and the chaos tests; `chaos` runs it for the app).
Every fault is made of generic operations: on a connection (connection.py) abort it (`drop`), silence its
writer (`stall`), close it with a code (`request_close`), hold its frames (`delay_frames`); on the backend,
end a listenKey (its streams close as on expiry or deletion); the windows are asked at each new stream (app.py
asks `refusing`; `apply_delay` is a hook on every new connection). The admin routes are admin_routes.py's.
Each connection a fault hits has it noted in its ledger record (ledger.py, when kept), so an audit can say
which fault lost which event. Monotonic seconds for windows.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import msgspec

from userstream.errors import UserStreamError
from userstream.events import Exchange
from userstream.logs import log_event
from userstream.protocol.close import CloseCode
from userstream.protocol.registry import REGISTRY, spec
from userstream.server.backend.interface import Backend
from userstream.server.config import ServerConfig
from userstream.server.connection import Connection
from userstream.server.hub import Hub
from userstream.validation import failure

__all__ = [
    "ADMIN_FAULTS_PATH",
    "DEFAULT_CHAOS_FAULTS",
    "MAX_FAULT_BODY",
    "Fault",
    "FaultController",
    "FaultError",
    "FaultKind",
    "FaultReport",
    "RandomFaults",
    "chaos",
    "parse_fault",
]

ADMIN_FAULTS_PATH = "/admin/faults"
MAX_WINDOW_SECONDS = 3600.0  # a refusal or delay longer than an hour is a typo
MAX_DELAY_MS = 60_000.0
MAX_FAULT_BODY = 4096  # the most a POST /admin/faults body may hold
_HISTORY = 1000  # faults remembered for GET /admin/faults

_log = logging.getLogger("userstream.server.faults")
_JSON = "application/json"


class FaultKind(StrEnum):
    DROP = "drop"  # abort the TCP connection: no close frame, no SYSTEM notice
    STALL = "stall"  # keep the connection open and send nothing more: no frames, no pongs, no close
    EXPIRE_KEY = "expire_key"  # Bitmusa: the listenKey lapses now; its streams close with 4001
    DELETE_KEY = "delete_key"  # Bitmusa: the listenKey is deleted; its streams close with 4002
    SYSTEM_CLOSE = "system_close"  # Coinlocally's SYSTEM notice, then 1001 (Bitmusa: 1001)
    REFUSE = "refuse"  # refuse new stream handshakes (HTTP 503) for `seconds`
    DELAY = "delay"  # hold every frame `delay_ms` before sending it, for `seconds`
    CLEAR = "clear"  # end the refusal and delay windows of the target now

    @property
    def timed(self) -> bool:
        return self in (FaultKind.REFUSE, FaultKind.DELAY)

    @property
    def bitmusa_only(self) -> bool:
        """A fault on listenKeys: only exchanges with listenKeys (a registry `listen_key_path`) have one."""
        return self in (FaultKind.EXPIRE_KEY, FaultKind.DELETE_KEY)


#: The exchanges whose streams use listenKeys: the targets of `expire_key` and `delete_key`.
_KEY_EXCHANGES: tuple[Exchange, ...] = tuple(
    exchange for exchange in REGISTRY if spec(exchange).listen_key_path is not None
)

#: The faults `serve --chaos` fires unless told otherwise: every kind but `clear`.
DEFAULT_CHAOS_FAULTS: tuple[FaultKind, ...] = tuple(kind for kind in FaultKind if kind is not FaultKind.CLEAR)


class FaultError(UserStreamError, ValueError):
    """A fault that cannot be fired as asked. `status` is the admin route's HTTP status."""

    def __init__(self, message: str, *, status: int = 400, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": str(self)}
        if self.field is not None:
            body["field"] = self.field
        return body


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault: what, on whom (`account` None: every account; `exchange` None: both), and for timed
    faults how long (`seconds`) and, for `delay`, by how much (`delay_ms`)."""

    kind: FaultKind
    account: str | None = None
    exchange: Exchange | None = None
    seconds: float | None = None
    delay_ms: float | None = None

    def __post_init__(self) -> None:
        kind = FaultKind(self.kind)
        object.__setattr__(self, "kind", kind)
        if self.exchange is not None:
            object.__setattr__(self, "exchange", Exchange(self.exchange))
        if kind.timed:
            _check_number("seconds", self.seconds, MAX_WINDOW_SECONDS)
        elif self.seconds is not None:
            raise FaultError(f"'seconds' applies to refuse and delay, not {kind.value}", field="seconds")
        if kind is FaultKind.DELAY:
            _check_number("delay_ms", self.delay_ms, MAX_DELAY_MS)
        elif self.delay_ms is not None:
            raise FaultError(f"'delay_ms' applies to delay, not {kind.value}", field="delay_ms")
        if kind.bitmusa_only and self.exchange is not None and spec(self.exchange).listen_key_path is None:
            owners = " and ".join(f"{spec(exchange).title}'s" for exchange in _KEY_EXCHANGES)
            raise FaultError(
                f"{kind.value}: listenKeys are {owners}, {spec(self.exchange).title} has none",
                field="exchange",
            )

    def targets(self, account: str, exchange: Exchange) -> bool:
        return (self.account is None or self.account == account) and (
            self.exchange is None or self.exchange is exchange
        )

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "fault": self.kind.value,
            "account": self.account,
            "exchange": None if self.exchange is None else self.exchange.value,
        }
        if self.seconds is not None:
            body["seconds"] = self.seconds
        if self.delay_ms is not None:
            body["delay_ms"] = self.delay_ms
        return body


def _check_number(name: str, value: object, most: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= most:
        shown = (
            f"{value:g}" if isinstance(value, int | float) and not isinstance(value, bool) else repr(value)
        )
        raise FaultError(f"{name!r} must be a number in (0, {most:g}], not {shown}", field=name)


class _FaultBody(msgspec.Struct, forbid_unknown_fields=True):
    fault: str
    account: str | None = None
    exchange: str | None = None
    seconds: float | None = None
    delay_ms: float | None = None


def parse_fault(body: bytes) -> Fault:
    """The fault a `POST /admin/faults` body asks for; FaultError (400) naming the field at fault."""
    if len(body) > MAX_FAULT_BODY:
        raise FaultError(f"the body exceeds {MAX_FAULT_BODY} bytes", status=413)
    try:
        request = msgspec.json.decode(body, type=_FaultBody)
    except msgspec.ValidationError as exc:
        raise FaultError(f"invalid fault: {exc}", field=failure(exc).key) from None
    except msgspec.DecodeError:
        raise FaultError("the body must be a JSON object") from None
    try:
        kind = FaultKind(request.fault)
    except ValueError:
        known = ", ".join(kind.value for kind in FaultKind)
        raise FaultError(f"unknown fault {request.fault!r}; known: {known}", field="fault") from None
    try:
        exchange = None if request.exchange is None else Exchange(request.exchange)
    except ValueError:
        known = " or ".join(repr(known.value) for known in REGISTRY)
        raise FaultError(
            f"unknown exchange {request.exchange!r}: {known} (or leave it out for both)", field="exchange"
        ) from None
    return Fault(kind, request.account, exchange, request.seconds, request.delay_ms)


@dataclass(frozen=True, slots=True)
class FaultReport:
    """What a fault did: the connections it acted on, the listenKeys it ended, and when its window ends."""

    fault: Fault
    connections: int
    keys: int = 0
    seconds_left: float | None = None  # timed faults: how long the window runs from now

    def to_json(self) -> dict[str, Any]:
        body = self.fault.to_json() | {"connections": self.connections, "keys": self.keys}
        if self.seconds_left is not None:
            body["seconds_left"] = round(self.seconds_left, 3)
        return body


@dataclass(slots=True)
class _Window:
    fault: Fault
    until: float


class FaultController:
    """Fires faults at a server's connections and keeps the refusal and delay windows; counts what fired.

    It reaches the connections through the server's `hub` and the listenKeys through its `backend`;
    `accounts` are the names a fault may target."""

    def __init__(
        self,
        hub: Hub,
        backend: Backend,
        accounts: Sequence[str],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hub = hub
        self._backend = backend
        self._accounts = tuple(accounts)
        self._clock = clock
        self._windows: list[_Window] = []
        self.fired: Counter[FaultKind] = Counter()
        self.history: deque[tuple[float, FaultReport]] = deque(maxlen=_HISTORY)  # (wall-clock s, report)

    def __repr__(self) -> str:
        return f"FaultController(fired={dict(self.fired)!r}, windows={len(self.active())})"

    async def fire(self, fault: Fault) -> FaultReport:
        """Inflict `fault` now. FaultError (404) for an unknown account; nothing happens then."""
        if fault.account is not None and fault.account not in self._accounts:
            raise FaultError(f"unknown account {fault.account!r}", status=404, field="account")
        accounts = [fault.account] if fault.account is not None else list(self._accounts)
        kind = fault.kind
        hit = self._connections(fault)
        report: FaultReport
        if kind is FaultKind.DROP or kind is FaultKind.STALL or kind is FaultKind.SYSTEM_CLOSE:
            self._note(hit, kind)
            acted = 0
            for name in accounts:
                if kind is FaultKind.DROP:
                    acted += self.drop(name, fault.exchange)
                elif kind is FaultKind.STALL:
                    acted += self.stall(name, fault.exchange)
                else:
                    acted += len(self.system_close(name, fault.exchange))
            report = FaultReport(fault, acted)
        elif kind.bitmusa_only:
            self._note(hit, kind)
            keys = 0
            for name in accounts:
                if kind is FaultKind.EXPIRE_KEY:
                    ended = await self._backend.expire_listen_key(name)
                else:  # its streams close with 4002 (on every node, with Redis)
                    ended = await self._backend.delete_listen_key(name)
                keys += ended is not None
            report = FaultReport(fault, len(hit), keys=keys)
        elif kind.timed:
            assert fault.seconds is not None  # noqa: S101 - checked by Fault
            until = self._clock() + fault.seconds
            self._windows.append(_Window(fault, until))
            if kind is FaultKind.DELAY:
                self._note(hit, kind)
                for connection in hit:
                    self.apply_delay(connection)
            report = FaultReport(fault, len(hit), seconds_left=fault.seconds)
        else:  # CLEAR
            self._windows = [w for w in self._windows if not _covers(fault, w.fault)]
            for connection in hit:
                self.apply_delay(connection)
            report = FaultReport(fault, len(hit))
        self.fired[kind] += 1
        self.history.append((time.time(), report))
        log_event(_log, logging.WARNING, "fault injected", **report.to_json())
        return report

    # --- the connection-level faults (the test handle of run.py calls them too) ----------------------------

    def stall(self, account: str, exchange: Exchange | None = None) -> int:
        """Every open connection of `account` (on `exchange`) goes silent but stays open."""
        connections = self._hub.connections(account, exchange)
        for connection in connections:
            connection.stall()
        self._hub.notify()
        return len(connections)

    def drop(self, account: str, exchange: Exchange | None = None) -> int:
        """Abort every open connection of `account` (on `exchange`) at the TCP level, no close frame."""
        connections = self._hub.connections(account, exchange)
        for connection in connections:
            connection.drop()
        return len(connections)

    def system_close(self, account: str, exchange: Exchange | None = None) -> list[Connection]:
        """Close every open connection of `account` as the exchange would (SYSTEM notice, then 1001)."""
        return [
            connection
            for connection in self._hub.connections(account, exchange)
            if connection.request_close(CloseCode.GOING_AWAY, "closed by the exchange")
        ]

    # --- what the server asks while a window runs -----------------------------------------------------------

    def refusing(self, account: str, exchange: Exchange) -> float | None:
        """Seconds left of a refusal covering new streams of `account` on `exchange`, or None."""
        now = self._clock()
        left = [
            w.until - now
            for w in self._windows
            if w.fault.kind is FaultKind.REFUSE and w.until > now and w.fault.targets(account, exchange)
        ]
        return max(left) if left else None

    def apply_delay(self, connection: Connection) -> None:
        """Give `connection` the frame delay of the windows covering it now (none: no delay)."""
        now = self._clock()
        delay, until = 0.0, 0.0
        for window in self._windows:
            fault = window.fault
            if (
                fault.kind is FaultKind.DELAY
                and window.until > now
                and fault.targets(connection.account.name, connection.exchange)
            ):
                assert fault.delay_ms is not None  # noqa: S101 - checked by Fault
                delay, until = max(delay, fault.delay_ms / 1000), max(until, window.until)
        connection.delay_frames(delay, until)

    def active(self) -> list[dict[str, Any]]:
        """The refusal and delay windows still running, with the seconds they have left."""
        now = self._clock()
        self._windows = [w for w in self._windows if w.until > now]
        return [w.fault.to_json() | {"seconds_left": round(w.until - now, 3)} for w in self._windows]

    def to_json(self) -> dict[str, Any]:
        """GET /admin/faults: counts by kind, the running windows, and the latest faults fired."""
        return {
            "fired": {kind.value: self.fired[kind] for kind in FaultKind},
            "active": self.active(),
            "recent": [{"time": round(at, 3)} | report.to_json() for at, report in list(self.history)[-100:]],
        }

    def _connections(self, fault: Fault) -> list[Connection]:
        hub = self._hub
        return [
            c
            for c in hub.connections(fault.account, fault.exchange)
            if fault.targets(c.account.name, c.exchange) and (not fault.kind.bitmusa_only or c.listen_key)
        ]

    @staticmethod
    def _note(connections: Sequence[Connection], kind: FaultKind) -> None:
        for connection in connections:
            if connection.record is not None:
                connection.record.faults.append(kind.value)


def _covers(clear: Fault, fault: Fault) -> bool:
    """Whether `clear` ends `fault`'s window: its target is as wide (a window of a wider target stays)."""
    account_ok = clear.account is None or clear.account == fault.account
    exchange_ok = clear.exchange is None or clear.exchange is fault.exchange
    return account_ok and exchange_ok


class RandomFaults:
    """Faults at random, reproducibly: about `rate` per second (exponential gaps), each of a kind drawn from
    `kinds`, aimed at one random account on one exchange, or now and then (`everyone` of the time) at all.
    Timed faults last up to `max_seconds`; delays are up to `max_delay_ms`. The same seed gives the same
    faults in the same order (their effect depends on what is connected when they land)."""

    def __init__(
        self,
        controller: FaultController,
        accounts: Sequence[str],
        *,
        rate: float,
        seed: int | str | None = None,
        kinds: Sequence[FaultKind] = DEFAULT_CHAOS_FAULTS,
        max_seconds: float = 3.0,
        max_delay_ms: float = 300.0,
        everyone: float = 0.1,
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be positive")
        if not kinds or not accounts:
            raise ValueError("random faults need at least one kind and one account")
        self._controller = controller
        self._accounts = tuple(accounts)
        self._kinds = tuple(FaultKind(kind) for kind in kinds)
        self._rng = random.Random(seed)  # noqa: S311 - a test schedule, not cryptography
        self.rate = rate
        self.max_seconds = max_seconds
        self.max_delay_ms = max_delay_ms
        self.everyone = everyone
        self.fired: list[FaultReport] = []

    def next_fault(self) -> Fault:
        rng = self._rng
        kind = rng.choice(self._kinds)
        account = None if rng.random() < self.everyone else rng.choice(self._accounts)
        if kind.bitmusa_only:  # an exchange with listenKeys (no draw while there is one: seeds replay)
            exchange = _KEY_EXCHANGES[0] if len(_KEY_EXCHANGES) == 1 else rng.choice(_KEY_EXCHANGES)
        else:
            exchange = rng.choice((None, *Exchange))
        seconds = round(rng.uniform(0.1, self.max_seconds), 3) if kind.timed else None
        delay_ms = round(rng.uniform(1.0, self.max_delay_ms), 1) if kind is FaultKind.DELAY else None
        return Fault(kind, account, exchange, seconds, delay_ms)

    def next_interval(self) -> float:
        return self._rng.expovariate(self.rate)

    async def run(self) -> None:
        """Fire faults until cancelled."""
        while True:
            await asyncio.sleep(self.next_interval())
            fault = self.next_fault()
            try:
                self.fired.append(await self._controller.fire(fault))
            except Exception as exc:  # a fault that cannot land now (the backend is down) is not fatal
                log_event(_log, logging.ERROR, "fault not injected", **fault.to_json(), error=repr(exc))


async def chaos(controller: FaultController, config: ServerConfig) -> AsyncIterator[None]:
    """`serve --chaos RATE` for the app's lifetime (an aiohttp cleanup context, see app.py)."""
    if config.chaos_rate is None:
        yield
        return
    injector = RandomFaults(
        controller,
        [account.name for account in config.accounts],
        rate=config.chaos_rate,
        seed=None if config.seed is None else f"{config.seed}:chaos",
        kinds=[FaultKind(kind) for kind in config.chaos_faults] or DEFAULT_CHAOS_FAULTS,
    )
    task = asyncio.create_task(injector.run(), name="userstream-chaos")
    try:
        yield
    finally:
        task.cancel()
        (result,) = await asyncio.gather(task, return_exceptions=True)
        if isinstance(result, Exception):
            log_event(_log, logging.ERROR, "background task failed", task=task.get_name(), error=repr(result))
