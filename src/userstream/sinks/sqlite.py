"""The SQLite sink: the embedded durable store. Every event once by key, plus current balances and orders.

This module owns the database file: its schema, one connection on one dedicated thread, and the rule that
keeps the state tables current. It knows nothing of buffering or retries (the runner's) and never parses
the wire.

One transaction per batch: `INSERT OR IGNORE` into the append-only `events` table (a `key` already there is
a replay and changes nothing), and the same transaction updates `balances` and `orders` from the batch's new
balance and order events. State never moves backwards in time: a balance older than the one held is ignored;
an order update is ordered by (timestamp, filled, final-after-open) and an older one is ignored. Of several
updates of one balance or order in a batch only the last of the latest can decide that state, so it alone
is applied (the same tables as applying each in turn; tests/sinks/test_sqlite_batches.py). An order
leaves `orders` when an update ends it (`OrderUpdate.is_final`: closed, canceled, expired, rejected, or a
snapshot's "not open any more") and is kept in `finished_orders`, so a late, older update cannot bring it
back. Fills are stored in `events` only. Decimals are stored as TEXT exactly as the JSON contract writes
them. WAL mode lets readers (dashboards, `sqlite3` in a shell) read while the sink writes;
`synchronous=FULL` by default makes a batch durable before `write` returns.

A database it cannot write is found as early as it can be. `open` refuses (`ConfigurationError`) a file
SQLite opens read-only (permissions, an immutable file, a read-only file system: it tries a write and rolls
it back), a directory, a path under a file. Mid-run, once before each batch, the database, its `-wal` and
its `-shm` must be writable (before each read, the `-shm`; `os.access`, which root passes too except for an
immutable file or a read-only mount); when one is not, or SQLite fails with a read-only, permission,
cannot-open or I/O error, the write raises `SinkUnwritableError` (the runner reports the sink down at once,
and retries). The check on `-shm` is what keeps the process alive: SQLite maps that file into memory, and
a store into a page the kernel can no longer write (an immutable `-shm`) kills the process with SIGBUS. The
database itself is not memory-mapped (`mmap_size = 0`, whatever the build's default).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import msgspec

from userstream import eventjson
from userstream.errors import ConfigurationError, LocalProtocolError, TransportError
from userstream.events import BalanceUpdate, Event, Exchange, OrderUpdate
from userstream.sinks.base import SinkUnwritableError, key_of_json
from userstream.sinks.thread import WorkerThread

__all__ = ["SCHEMA_VERSION", "SqliteSink", "StoredEvent"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    exchange TEXT NOT NULL,
    account TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    source TEXT,
    json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_account ON events (exchange, account, timestamp);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'events is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'events is append-only'); END;
CREATE TABLE IF NOT EXISTS balances (
    exchange TEXT NOT NULL,
    account TEXT NOT NULL,
    asset TEXT NOT NULL,
    free TEXT NOT NULL,
    locked TEXT NOT NULL,
    total TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    PRIMARY KEY (exchange, account, asset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS orders (
    exchange TEXT NOT NULL,
    account TEXT NOT NULL,
    id TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    type TEXT,
    status TEXT,
    raw_status TEXT NOT NULL,
    price TEXT,
    amount TEXT NOT NULL,
    filled TEXT NOT NULL,
    remaining TEXT NOT NULL,
    cost TEXT,
    created_at INTEGER,
    timestamp INTEGER NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (exchange, account, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS finished_orders (
    exchange TEXT NOT NULL,
    account TEXT NOT NULL,
    id TEXT NOT NULL,
    status TEXT,
    raw_status TEXT NOT NULL,
    filled TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    PRIMARY KEY (exchange, account, id)
) WITHOUT ROWID;
"""

# `eventjson.to_json` is this encoder over `eventjson.to_dict`; the sink needs the dict too, so it encodes it.
_ENCODER = msgspec.json.Encoder()

#: An order update's place in time: (timestamp, filled, 1 if it ends the order); state never moves back.
_Rank = tuple[int, Decimal, int]

_INSERT_EVENT = (
    "INSERT OR IGNORE INTO events (key, kind, exchange, account, timestamp, source, json)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_BALANCE = """
INSERT INTO balances (exchange, account, asset, free, locked, total, timestamp) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (exchange, account, asset) DO UPDATE SET
    free = excluded.free, locked = excluded.locked, total = excluded.total, timestamp = excluded.timestamp
WHERE excluded.timestamp >= balances.timestamp
"""
_HELD_ORDER = """
SELECT timestamp, filled, 0 FROM orders WHERE exchange = ? AND account = ? AND id = ?
UNION ALL
SELECT timestamp, filled, 1 FROM finished_orders WHERE exchange = ? AND account = ? AND id = ?
"""
_PUT_OPEN_ORDER = """
INSERT OR REPLACE INTO orders (exchange, account, id, symbol, side, type, status, raw_status, price, amount,
    filled, remaining, cost, created_at, timestamp, json)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_PUT_FINISHED_ORDER = """
INSERT OR REPLACE INTO finished_orders (exchange, account, id, status, raw_status, filled, timestamp)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""


class StoredEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One row of `events`. `json` is the event's contract JSON, exactly as `eventjson.to_json` wrote it."""

    seq: int
    key: str
    kind: str
    exchange: str
    account: str
    timestamp: int
    source: str | None
    json: str

    def event(self) -> Event:
        """The event back, through the same contract parser every consumer uses."""
        return eventjson.from_json(self.json)


class SqliteSink:
    """Events, balances and open orders in one SQLite file, written on one dedicated thread."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["full", "normal"] = "full",
        busy_timeout: float = 5.0,
    ) -> None:
        """`synchronous="normal"` trades durability on power loss (not on a crash) for fewer fsyncs."""
        if synchronous not in ("full", "normal"):
            raise ConfigurationError(f"synchronous must be 'full' or 'normal', not {synchronous!r}")
        if str(path) in ("", ":memory:"):
            raise ConfigurationError("the sqlite sink needs a file path (WAL needs a file)")
        self._path = Path(path)
        self._shm = self._path.with_name(self._path.name + "-shm")
        # checked before each batch (made once: a Path costs more than the check)
        self._files = (self._path, self._path.with_name(self._path.name + "-wal"), self._shm)
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        # One thread owns the one connection: sqlite3 objects stay on the thread that made them, and
        # batches are applied strictly in the order they were written.
        self._thread = WorkerThread(f"userstream-sqlite[{self._path.name}]")
        self._connection: sqlite3.Connection | None = None

    @property
    def name(self) -> str:
        return f"sqlite:{self._path}"

    @property
    def path(self) -> Path:
        return self._path

    # --- lifecycle ----------------------------------------------------------------------------------------

    async def open(self) -> None:
        self._thread.start()
        try:
            await self._thread.run(self._connect)
        except BaseException:
            self._thread.stop()
            raise

    async def write(self, batch: Sequence[Event]) -> None:
        await self._thread.run(self._write_batch, tuple(batch))

    async def close(self) -> None:
        if not self._thread.running:
            return
        try:
            await self._thread.run(self._disconnect)
        finally:
            self._thread.stop()

    # --- reading back (tests, restarts, tools) ------------------------------------------------------------

    async def read_events(self, *, after_seq: int = 0, limit: int | None = None) -> list[StoredEvent]:
        """Rows of `events` with `seq > after_seq`, in write order."""
        return await self._thread.run(self._select_events, after_seq, limit)

    async def last_keys(self, count: int) -> list[str]:
        """The keys of the last `count` events written, oldest first (to seed a dedupe after a restart)."""
        return await self._thread.run(self._select_last_keys, count)

    async def read_picture(self, exchange: Exchange, account: str) -> list[Event]:
        """The account's current picture as the state tables hold it: each balance (by asset) and each open
        order's latest update (by id), as events. A restarted gateway starts from it, so that its first
        snapshot corrects what changed while it was down instead of rebuilding from nothing."""
        return await self._thread.run(self._select_picture, exchange, account)

    # --- in the sink's thread -----------------------------------------------------------------------------

    def _connect(self) -> None:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self._path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError(f"cannot open sqlite database {self._path}: {exc}") from None
        try:
            self._check_writable()  # first: SQLite maps the -shm as soon as it reads
            self._prepare(connection)
            self._probe_write(connection)
        except SinkUnwritableError as exc:
            connection.close()
            raise ConfigurationError(str(exc)) from None
        except sqlite3.Error as exc:
            connection.close()
            raise ConfigurationError(f"cannot use sqlite database {self._path}: {exc}") from None
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    def _prepare(self, connection: sqlite3.Connection) -> None:
        """Pragmas, then the schema (created once; a database from another schema version is refused)."""
        connection.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        connection.execute("PRAGMA mmap_size = 0")  # no memory-mapped database: an I/O error stays an error
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise ConfigurationError(f"sqlite database {self._path} refused WAL mode (got {mode!r})")
        connection.execute(f"PRAGMA synchronous = {self._synchronous.upper()}")
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise ConfigurationError(
                f"sqlite database {self._path} has schema version {version}; this userstream writes "
                f"version {SCHEMA_VERSION}"
            )
        if version == 0:  # a new file: create the schema (the only step that needs the write lock)
            connection.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")

    def _probe_write(self, connection: sqlite3.Connection) -> None:
        """Refuse a database SQLite opened read-only (it falls back silently): write one page, roll back."""
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.OperationalError as exc:
            if _errorname(exc).startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
                return  # another writer holds the lock now: writes will wait for it (and be retried)
            raise ConfigurationError(
                f"sqlite database {self._path} cannot be written ({exc}): is it read-only, or on a "
                "read-only file system?"
            ) from None
        finally:
            if connection.in_transaction:
                connection.execute("ROLLBACK")

    def _check_writable(self) -> None:
        """`SinkUnwritableError` when the database, its -wal or its -shm (if present) cannot be written."""
        for path in self._files:
            if not os.access(path, os.W_OK) and path.exists():
                raise SinkUnwritableError(f"{self.name}: {path} is not writable (read-only or immutable)")

    def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _open_connection(self) -> sqlite3.Connection:
        if self._connection is None:
            raise LocalProtocolError(f"{self.name} is not open")
        return self._connection

    def _live(self) -> sqlite3.Connection:
        """The connection, for a read: its -shm checked first (mapped: a store into it would SIGBUS)."""
        connection = self._open_connection()
        if not os.access(self._shm, os.W_OK) and self._shm.exists():
            raise SinkUnwritableError(f"{self.name}: {self._shm} is not writable (read-only or immutable)")
        return connection

    def _write_batch(self, batch: tuple[Event, ...]) -> None:
        connection = self._open_connection()
        self._check_writable()  # the database, its -wal and its -shm, once per batch
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                self._apply_batch(connection, batch)
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:  # some errors (disk full) have rolled it back already
                    connection.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            # Busy, locked, disk full: the database may work again; the batch is retried. Read-only,
            # permission denied, an I/O error: retried too, but the sink is reported down at once.
            if _errorname(exc).startswith(_UNWRITABLE):
                raise SinkUnwritableError(f"writing to {self.name} failed: {exc}") from None
            raise TransportError(f"writing to {self.name} failed: {exc}") from None
        except sqlite3.Error as exc:
            raise ConfigurationError(f"{self.name} cannot store events: {exc}") from None

    def _apply_batch(self, connection: sqlite3.Connection, batch: tuple[Event, ...]) -> None:
        """Every event into `events`, then each balance's and each order's last state of the batch.

        Of several new updates of one balance (or order) in a batch, only the one applied last when applied
        one by one can decide the state tables: the last of those with the greatest timestamp (order rank),
        applied if it is not older than what is held. So that one alone is applied, which gives the same
        tables as applying each in turn, with one statement per balance and order instead of per event.
        """
        balances: dict[tuple[str, str, str], tuple[Any, ...]] = {}
        orders: dict[tuple[str, str, str], tuple[_Rank, dict[str, Any], str]] = {}
        execute = connection.execute
        for event in batch:
            fields = eventjson.to_dict(event)
            body = _ENCODER.encode(fields)  # eventjson.to_json(event), without building the dict twice
            text = body.decode()
            inserted = execute(
                _INSERT_EVENT,
                (
                    key_of_json(body),
                    fields["kind"],
                    fields["exchange"],
                    fields["account"],
                    fields["timestamp"],
                    fields["source"],
                    text,
                ),
            ).rowcount
            if not inserted:
                continue  # a replay: its effect on the state tables was applied when it was first written
            if isinstance(event, BalanceUpdate):
                ident = (fields["exchange"], fields["account"], event.asset)
                last = balances.get(ident)
                if last is None or event.timestamp >= last[-1]:
                    balances[ident] = (
                        *ident,
                        fields["free"],
                        fields["locked"],
                        fields["total"],
                        event.timestamp,
                    )
            elif isinstance(event, OrderUpdate):
                ident = (fields["exchange"], fields["account"], event.id)
                rank = (event.timestamp, event.filled, int(event.is_final))
                held = orders.get(ident)
                if held is None or rank >= held[0]:
                    orders[ident] = (rank, fields, text)
        if balances:
            connection.executemany(_UPSERT_BALANCE, balances.values())
        for ident, (rank, fields, text) in orders.items():
            self._apply_order(connection, ident, rank, fields, text)

    def _apply_order(
        self,
        connection: sqlite3.Connection,
        ident: tuple[str, str, str],
        rank: _Rank,
        fields: dict[str, Any],
        text: str,
    ) -> None:
        """The order's update, unless older than what `orders` or `finished_orders` holds for it."""
        held = connection.execute(_HELD_ORDER, ident + ident).fetchone()
        if held is not None and rank < (held[0], Decimal(held[1]), held[2]):
            return  # older than what is held: state never moves backwards
        timestamp, _, terminal = rank
        if terminal:
            connection.execute("DELETE FROM orders WHERE exchange = ? AND account = ? AND id = ?", ident)
            connection.execute(
                _PUT_FINISHED_ORDER,
                (*ident, fields["status"], fields["raw_status"], fields["filled"], timestamp),
            )
            return
        connection.execute("DELETE FROM finished_orders WHERE exchange = ? AND account = ? AND id = ?", ident)
        connection.execute(
            _PUT_OPEN_ORDER,
            (
                *ident,
                fields["symbol"],
                fields["side"],
                fields["type"],
                fields["status"],
                fields["raw_status"],
                fields["price"],
                fields["amount"],
                fields["filled"],
                fields["remaining"],
                fields["cost"],
                fields["created_at"],
                timestamp,
                text,
            ),
        )

    def _select_events(self, after_seq: int, limit: int | None) -> list[StoredEvent]:
        rows = self._live().execute(
            "SELECT seq, key, kind, exchange, account, timestamp, source, json FROM events"
            " WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, -1 if limit is None else limit),
        )
        return [
            StoredEvent(
                seq=seq,
                key=key,
                kind=kind,
                exchange=exchange,
                account=account,
                timestamp=timestamp,
                source=source,
                json=body,
            )
            for seq, key, kind, exchange, account, timestamp, source, body in rows
        ]

    def _select_picture(self, exchange: Exchange, account: str) -> list[Event]:
        connection = self._live()
        balances = connection.execute(
            "SELECT asset, free, locked, timestamp FROM balances WHERE exchange = ? AND account = ?"
            " ORDER BY asset",
            (exchange.value, account),
        ).fetchall()
        orders = connection.execute(
            "SELECT json FROM orders WHERE exchange = ? AND account = ? ORDER BY id",
            (exchange.value, account),
        ).fetchall()
        picture: list[Event] = [
            BalanceUpdate(
                exchange=exchange,
                account=account,
                timestamp=timestamp,
                asset=asset,
                free=Decimal(free),
                locked=Decimal(locked),
            )
            for asset, free, locked, timestamp in balances
        ]
        picture.extend(eventjson.from_json(body) for (body,) in orders)
        return picture

    def _select_last_keys(self, count: int) -> list[str]:
        rows = self._live().execute("SELECT key FROM events ORDER BY seq DESC LIMIT ?", (count,)).fetchall()
        return [key for (key,) in reversed(rows)]


# SQLite's result codes (with their extended forms) that need an operator rather than time.
_UNWRITABLE = ("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_AUTH")


def _errorname(exc: sqlite3.Error) -> str:
    return str(getattr(exc, "sqlite_errorname", ""))
