"""Testing a bot against the exchange emulator: `UserstreamExchange`, the handle the pytest fixture yields.

`UserstreamExchange.start(...)` runs `userstream serve` (server/run.py's `running_server`) in this process, on
a thread of its own with its own event loop, on a free port of 127.0.0.1, with generated accounts; `close()`
(or leaving the `with` block) shuts it down as SIGTERM would. Its own thread makes it work the same from a
synchronous test, an asyncio test of any loop scope, or a bot on another thread (`userstream.sync`), and
makes every method below a plain call that returns once the server has done it: nothing here waits for the
bot, so a call from the bot's own event loop cannot deadlock it.

- `ex.bitmusa` / `ex.coinlocally` (and `ex.account(name).bitmusa`): the URLs and credentials to hand the bot;
  `connect_kwargs()` gives them as keyword arguments of `userstream.connect`.
- `ex.push(*events, account=...)`: publish events (typed `userstream` events, or the JSON form of
  docs/events.md, for which `balance`, `order` and `fill` below are builders) to the account's live streams.
- `ex.fault(kind, ...)`: fire one of serve's faults (drop, stall, system_close, expire_key, delete_key,
  refuse, delay, clear: docs/server.md, "Fault injection"). Variants (the exchange answering an open point
  of its document another way) are chosen at start: `start(variants=[...])`.
- `ex.sent(account=..., exchange=...)`: what reached each connection: the events written to it, typed, and
  the exact data frames (`SentConnection`).
- `await ex.wait_for_streams(...)`: until the bot's streams receive events (Coinlocally: subscribed).

docs/testing.md is the guide; userstream/pytest_plugin.py is the fixture. Credentials never appear in a repr.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
import json
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar

import msgspec

from userstream.events import Event, Exchange

if TYPE_CHECKING:
    from userstream.server.config import Account, ServerConfig
    from userstream.server.faults import FaultReport
    from userstream.server.run import ServerHandle

__all__ = [
    "BitmusaSettings",
    "CoinlocallySettings",
    "ExchangeAccount",
    "SentConnection",
    "UserstreamExchange",
    "balance",
    "fill",
    "order",
]

#: The path of Coinlocally's user stream on serve (the full WebSocket URL is the server's ws URL + this).
COINLOCALLY_PATH = "/spotws_user/userData/ws"
#: The first uid of generated accounts (the Coinlocally SYSTEM notice carries it); then +1 per account.
FIRST_UID = 24005174
#: The bound on every wait of this module for the server's own thread (start, a call, shutdown).
CALL_TIMEOUT = 30.0

Number = Decimal | str | int
_T = TypeVar("_T")
FaultName = Literal["drop", "stall", "system_close", "expire_key", "delete_key", "refuse", "delay", "clear"]


# --- what to hand the bot --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BitmusaSettings:
    """One account's Bitmusa endpoints and credentials on the emulator."""

    account: str
    rest_url: str
    ws_url: str
    api_key: str = field(repr=False)
    auth_key: str = field(repr=False)

    def connect_kwargs(self) -> dict[str, Any]:
        """`userstream.connect("bitmusa", **settings.connect_kwargs())`."""
        return {
            "account": self.account,
            "api_key": self.api_key,
            "auth_key": self.auth_key,
            "rest_url": self.rest_url,
            "ws_url": self.ws_url,
        }


@dataclass(frozen=True, slots=True)
class CoinlocallySettings:
    """One account's Coinlocally endpoints and credentials on the emulator. `ws_url` is the full stream URL
    (as Coinlocally's is); `rest_url` is the base of the signed snapshot routes a resync uses."""

    account: str
    rest_url: str
    ws_url: str
    api_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    token: str = field(repr=False)

    def connect_kwargs(self, *, credential: Literal["api_key", "token"] = "api_key") -> dict[str, Any]:
        """`userstream.connect("coinlocally", **settings.connect_kwargs())`: by default the api key with its
        secret key and the snapshot URL, so that a resync after a reconnect works; `credential="token"`
        gives the token instead (a stream that cannot resync: `resync_skipped`)."""
        if credential == "token":
            return {"account": self.account, "token": self.token, "ws_url": self.ws_url}
        if credential != "api_key":
            raise ValueError(f"credential must be 'api_key' or 'token', not {credential!r}")
        return {
            "account": self.account,
            "api_key": self.api_key,
            "secret_key": self.secret_key,
            "ws_url": self.ws_url,
            "snapshot_rest_url": self.rest_url,
        }


@dataclass(frozen=True, slots=True)
class ExchangeAccount:
    """A generated account: its name (the label of its events), its uid, and its settings per exchange."""

    name: str
    uid: int
    bitmusa: BitmusaSettings
    coinlocally: CoinlocallySettings


# --- what reached a connection ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SentConnection:
    """One WebSocket of an account, as the server saw it: the events written to it (typed, in order, as
    published, with the connection's `exchange`), the exact data frames that carried them
    (text for Bitmusa, gzip bytes for Coinlocally; control frames such as `connect success` or pongs are
    not data frames), the faults that hit it, and how it ended (None: still open)."""

    serial: int
    account: str
    exchange: Exchange
    events: tuple[Event, ...]
    frames: tuple[str | bytes, ...]
    faults: tuple[str, ...]
    ending: str | None
    close_code: int | None

    def messages(self) -> list[Any]:
        """The data frames as JSON values (Coinlocally's gzip inflated): the wire shape, for assertions."""
        return [
            json.loads(gzip.decompress(frame) if isinstance(frame, bytes) else frame) for frame in self.frames
        ]


# --- event builders: the JSON form of docs/events.md -----------------------------------------------------


def balance(
    asset: str, free: Number, locked: Number = "0", *, timestamp: int | None = None
) -> dict[str, Any]:
    """A balance update of `asset` (money as exact decimal text). `timestamp` None: the server's time."""
    event: dict[str, Any] = {"kind": "balance", "asset": asset, "free": str(free), "locked": str(locked)}
    return _stamped(event, timestamp)


def order(
    order_id: str,
    symbol: str,
    side: Literal["buy", "sell"],
    amount: Number,
    price: Number | None,
    *,
    status: Literal["open", "closed", "canceled", "expired", "rejected"] = "open",
    filled: Number = "0",
    cost: Number | None = None,
    type: Literal["limit", "market"] = "limit",
    created_at: int | None = None,
    timestamp: int | None = None,
) -> dict[str, Any]:
    """An order update (`symbol` as `BASE/QUOTE`). `cost` None: `filled * price` (0 for a market order
    without a price); `created_at` None: the same as `timestamp`."""
    event: dict[str, Any] = {
        "kind": "order",
        "id": order_id,
        "symbol": symbol,
        "side": side,
        "type": type,
        "status": status,
        "price": None if price is None else str(price),
        "amount": str(amount),
        "filled": str(filled),
        "cost": str(_cost(filled, price) if cost is None else cost),
    }
    if created_at is not None:
        event["created_at"] = created_at
    elif timestamp is not None:
        event["created_at"] = timestamp
    return _stamped(event, timestamp)


def fill(
    order_id: str,
    symbol: str,
    side: Literal["buy", "sell"],
    amount: Number,
    price: Number,
    *,
    fill_amount: Number,
    fill_price: Number | None = None,
    filled: Number | None = None,
    fee: Number = "0",
    cost: Number | None = None,
    created_at: int | None = None,
    timestamp: int | None = None,
) -> dict[str, Any]:
    """The order update of one execution: `fill_amount` at `fill_price` (default: the order's price) with
    its commission `fee`. `filled` (the order's total so far) defaults to `fill_amount` (a first fill); the
    status is `closed` once `filled` reaches `amount`, else `open`. Coinlocally streams the execution
    (`l`, `L`, `n`); Bitmusa's wire carries only the totals, from which a Bitmusa client derives the fill."""
    total = Decimal(str(fill_amount if filled is None else filled))
    status: Literal["open", "closed"] = "closed" if total >= Decimal(str(amount)) else "open"
    event = order(
        order_id, symbol, side, amount, price, status=status, filled=str(total), cost=cost,
        created_at=created_at, timestamp=timestamp,
    )  # fmt: skip
    event["last_fill_amount"] = str(fill_amount)
    event["last_fill_price"] = str(price if fill_price is None else fill_price)
    event["fee"] = str(fee)
    return event


def _cost(filled: Number, price: Number | None) -> Decimal:
    if price is None:
        return Decimal(0)
    return Decimal(str(filled)) * Decimal(str(price))


def _stamped(event: dict[str, Any], timestamp: int | None) -> dict[str, Any]:
    if timestamp is not None:
        event["timestamp"] = timestamp
    return event


# --- the handle ------------------------------------------------------------------------------------------


class UserstreamExchange:
    """A running emulator of both exchanges and what a test does with it. Build it with `start(...)`."""

    def __init__(
        self, handle: ServerHandle, loop: asyncio.AbstractEventLoop, stop: Callable[[], None]
    ) -> None:
        self._handle = handle
        self._loop = loop
        self._stop = stop
        self.base_url: str = handle.base_url
        self.ws_url: str = handle.ws_url
        self.variants: tuple[str, ...] = handle.config.variants
        self.accounts: dict[str, ExchangeAccount] = {
            account.name: _settings(account, handle.base_url, handle.ws_url)
            for account in handle.config.accounts
        }
        self._default = handle.config.accounts[0].name

    def __repr__(self) -> str:
        return f"UserstreamExchange(base_url={self.base_url!r}, accounts={list(self.accounts)!r})"

    # --- starting and stopping ---------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        accounts: Sequence[str] = ("alice",),
        *,
        variants: Iterable[str] = (),
        **config: Any,
    ) -> UserstreamExchange:
        """Serve `accounts` (names; credentials generated) on a free port of 127.0.0.1, on a thread of its
        own. `variants` are serve's `--variant` specs (docs/server.md, "Variants"); `config` any other
        `ServerConfig` field (`listen_key_ttl=1.0`, `heartbeat_timeout=0.5`, ...). ConfigurationError if
        the settings are refused."""
        from userstream.server.config import ServerConfig, demo_account  # noqa: PLC0415 - lazy: serve's imports

        if isinstance(accounts, str):
            raise TypeError(f"accounts is a list of names, not the string {accounts!r}")
        names = list(accounts)
        if not names:
            raise ValueError("at least one account is needed")
        if len(set(names)) != len(names):
            raise ValueError(f"account names must be distinct, not {names!r}")
        settings: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "ledger": True}  # for sent()
        settings.update(config)
        settings["accounts"] = tuple(
            demo_account(name, FIRST_UID + index) for index, name in enumerate(names)
        )
        settings["variants"] = tuple(variants)
        server_config = ServerConfig(**settings)
        return _ServerThread(server_config).start(cls)

    def close(self) -> None:
        """Shut the emulator down (SYSTEM notices, close frames) and end its thread. Idempotent."""
        self._stop()

    async def aclose(self) -> None:
        """`close()` from the bot's event loop without blocking it: a bot still connected answers the
        server's close frames while the emulator shuts down (else each waits `close_timeout`, 5 s)."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- what to hand the bot ----------------------------------------------------------------------------

    def account(self, name: str | None = None) -> ExchangeAccount:
        """The account `name` (None: the first one). KeyError naming the known ones otherwise."""
        key = self._default if name is None else name
        try:
            return self.accounts[key]
        except KeyError:
            raise KeyError(f"unknown account {key!r} (known: {', '.join(self.accounts)})") from None

    @property
    def bitmusa(self) -> BitmusaSettings:
        """The first account's Bitmusa settings."""
        return self.account().bitmusa

    @property
    def coinlocally(self) -> CoinlocallySettings:
        """The first account's Coinlocally settings."""
        return self.account().coinlocally

    @property
    def admin_token(self) -> str:
        """The Bearer token of serve's admin routes (`POST /admin/events`, `/admin/faults`)."""
        return self._handle.admin_token

    # --- acting on the exchange --------------------------------------------------------------------------

    def push(self, *events: Event | Mapping[str, Any], account: str | None = None) -> int:
        """Publish `events` to `account`'s live streams (None: the first account), on both exchanges, each in
        its own wire shape, exactly as `POST /admin/events` does; returns how many. Events are
        `userstream` events or their JSON form (`balance(...)`, `order(...)`, `fill(...)`). IngestError
        (nothing published) for an unknown account or a bad event. A stream not yet live misses them:
        `await wait_for_streams()` first."""
        name = self.account(account).name
        return self._call(self._handle.ingest(name, events))

    def fault(
        self,
        kind: FaultName | str,
        *,
        account: str | None = None,
        exchange: Exchange | str | None = None,
        seconds: float | None = None,
        delay_ms: float | None = None,
    ) -> FaultReport:
        """Fire one fault now, exactly as `POST /admin/faults` does (docs/server.md, "Fault injection"),
        on `account` (None: every account) and `exchange` (None: both); `seconds` for refuse and delay,
        `delay_ms` for delay. Returns what it did (`connections` acted on, `keys` ended). FaultError if
        it cannot be fired (unknown kind, a missing duration, a listenKey fault on Coinlocally); KeyError
        for an unknown account, as everywhere in this handle.
        It returns at once: the bot sees the fault when its own loop runs."""
        from userstream.server.faults import FaultKind  # noqa: PLC0415 - lazy, as everything of serve

        if account is not None:
            self.account(account)
        try:
            fault_kind = FaultKind(kind)
        except ValueError:
            from userstream.server.faults import FaultError  # noqa: PLC0415

            known = ", ".join(k.value for k in FaultKind)
            raise FaultError(f"unknown fault {kind!r} (known: {known})", field="fault") from None
        return self._call(
            self._handle.inject(
                fault_kind, account=account, exchange=exchange, seconds=seconds, delay_ms=delay_ms
            )
        )

    # --- what the exchange saw ---------------------------------------------------------------------------

    def sent(
        self, account: str | None = None, exchange: Exchange | str | None = None
    ) -> list[SentConnection]:
        """Every connection of `account` (None: the first account) on `exchange` (None: both), oldest first,
        with what was written to it (`SentConnection`)."""
        name = self.account(account).name
        target = None if exchange is None else Exchange(exchange)

        async def read() -> list[SentConnection]:
            ledger = self._handle.sent
            published = {item.seq: item.event for item in ledger.events(name)}
            return [
                SentConnection(
                    serial=record.serial,
                    account=record.account,
                    exchange=record.exchange,
                    events=tuple(
                        msgspec.structs.replace(published[seq], exchange=record.exchange)
                        for first, last in record.written.runs()
                        for seq in range(first, last + 1)
                        if seq in published
                    ),
                    frames=tuple(record.frames or ()),
                    faults=tuple(record.faults),
                    ending=None if record.ending is None else record.ending.value,
                    close_code=record.close_code,
                )
                for record in ledger.connections(name, target)
            ]  # fmt: skip

        return self._call(read())

    def streams(self, account: str | None = None, exchange: Exchange | str | None = None) -> int:
        """How many of `account`'s connections receive events now (Coinlocally: subscribed)."""
        name = self.account(account).name
        target = None if exchange is None else Exchange(exchange)

        async def count() -> int:
            return self._handle.streams(name, target)

        return self._call(count())

    async def wait_for_streams(
        self,
        account: str | None = None,
        *,
        count: int = 1,
        exchange: Exchange | str | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 - the wait runs on the server's loop, not the caller's
    ) -> None:
        """Return once `account` (None: the first) has at least `count` streams receiving events on
        `exchange` (None: either); TimeoutError after `timeout` seconds. Awaits without blocking the
        caller's loop, where the bot runs."""
        name = self.account(account).name
        target = None if exchange is None else Exchange(exchange)

        async def wait() -> None:
            async with asyncio.timeout(timeout):
                await self._handle.wait_for_streams(name, count, target)

        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(wait(), self._loop))

    def _call(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run `coroutine` on the server's loop and return its result (its exception raised here)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CALL_TIMEOUT)


def _settings(account: Account, base_url: str, ws_url: str) -> ExchangeAccount:
    return ExchangeAccount(
        name=account.name,
        uid=account.uid,
        bitmusa=BitmusaSettings(
            account=account.name,
            rest_url=base_url,
            ws_url=ws_url,
            api_key=_generated(account.bitmusa_api_key),
            auth_key=_generated(account.bitmusa_auth_key),
        ),
        coinlocally=CoinlocallySettings(
            account=account.name,
            rest_url=base_url,
            ws_url=ws_url + COINLOCALLY_PATH,
            api_key=_generated(account.coinlocally_api_key),
            secret_key=_generated(account.coinlocally_secret_key),
            token=_generated(account.coinlocally_token),
        ),
    )


def _generated(credential: str | None) -> str:
    if credential is None:  # start() generates every credential of every account
        raise AssertionError("a generated account lacks a credential")
    return credential


class _ServerThread:
    """The emulator's own thread and event loop: `running_server` entered and left there, nowhere else."""

    def __init__(self, config: ServerConfig) -> None:
        self._config = config
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="userstream-exchange", daemon=True)
        self._started: concurrent.futures.Future[ServerHandle] = concurrent.futures.Future()
        self._stopping: asyncio.Event | None = None
        self._served: concurrent.futures.Future[None] | None = None
        self._closed = False
        self._lock = threading.Lock()

    def start(self, cls: type[UserstreamExchange]) -> UserstreamExchange:
        self._thread.start()
        self._served = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        try:
            handle = self._started.result(CALL_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return cls(handle, self._loop, self.stop)

    def _run(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:  # what the server left (nothing, normally) is cancelled and awaited, then the loop closed
            leftover = asyncio.all_tasks(loop)
            for task in leftover:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            asyncio.set_event_loop(None)
            loop.close()

    async def _serve(self) -> None:
        from userstream.server.run import running_server  # noqa: PLC0415 - lazy: aiohttp and serve

        self._stopping = asyncio.Event()
        try:
            async with running_server(self._config) as handle:
                handle.sent.record_frames = True  # the test reads the exact frames back (sent())
                self._started.set_result(handle)
                await self._stopping.wait()
        except BaseException as exc:
            if not self._started.done():
                self._started.set_exception(exc)
                return
            raise

    def stop(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            if self._stopping is not None:
                self._loop.call_soon_threadsafe(self._stopping.set)
            if self._served is not None:
                self._served.result(CALL_TIMEOUT)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CALL_TIMEOUT)
