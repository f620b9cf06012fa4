"""A SQLite database the sink cannot write: refused at open, reported down at once mid-run, never a SIGBUS.

The tests run as root, whom `chmod` does not stop, so "read-only" here is the `immutable` fixture
(tests/conftest.py: `chattr +i`, which stops root too, as a read-only mount would). A file SQLite opens
read-only makes it fall back silently to a read-only connection, so the sink's open writes a page and rolls
it back to find out; mid-run, the sink checks the database, its -wal and its -shm before each batch.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from userstream.errors import ConfigurationError
from userstream.events import BalanceUpdate
from userstream.sinks import SinkHealth, SinkRunner, SinkUnwritableError, SqliteSink

BalanceFactory = Callable[..., BalanceUpdate]
T0 = 1_700_703_548_000
WAIT = 10.0


async def create(path: Path, balance: BalanceFactory) -> None:
    """A database with one event, closed again (its -wal and -shm are gone after a clean close)."""
    sink = SqliteSink(path)
    await sink.open()
    await sink.write([balance(timestamp=T0)])
    await sink.close()


def free_values(path: Path) -> list[str]:
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute("SELECT json FROM events ORDER BY seq").fetchall()
    finally:
        connection.close()
    return [json.loads(body)["free"] for (body,) in rows]


async def test_an_immutable_database_is_refused_at_open(
    tmp_path: Path, balance: BalanceFactory, immutable: Any
) -> None:
    path = tmp_path / "events.db"
    await create(path, balance)
    immutable.set(path)
    assert sqlite3.connect(path).execute("SELECT count(*) FROM events").fetchone() == (1,)  # readable
    with pytest.raises(ConfigurationError) as caught:
        await SqliteSink(path).open()
    assert str(caught.value) == f"sqlite:{path}: {path} is not writable (read-only or immutable)"

    # SQLite itself would open it read-only without a word; the sink's write probe (one page, rolled back)
    # is the second line of defence, for what `os.access` cannot see (seen here with the check bypassed).
    sink = SqliteSink(path)
    sink._check_writable = lambda: None  # type: ignore[method-assign]
    with pytest.raises(ConfigurationError) as caught:
        await sink.open()
    assert str(caught.value) == (
        f"sqlite database {path} cannot be written (attempt to write a readonly database): is it read-only, "
        "or on a read-only file system?"
    )


async def test_an_immutable_directory_for_a_new_database_is_refused_at_open(
    tmp_path: Path, immutable: Any
) -> None:
    directory = tmp_path / "data"
    directory.mkdir()
    immutable.set(directory)
    with pytest.raises(ConfigurationError) as caught:
        await SqliteSink(directory / "events.db").open()
    assert str(caught.value) == (
        f"cannot open sqlite database {directory / 'events.db'}: unable to open database file"
    )


async def test_an_immutable_shm_left_beside_the_database_is_refused_at_open(
    tmp_path: Path, balance: BalanceFactory, immutable: Any
) -> None:
    path = tmp_path / "events.db"
    await create(path, balance)
    shm = tmp_path / "events.db-shm"
    shm.write_bytes(b"")
    immutable.set(shm)
    with pytest.raises(ConfigurationError) as caught:
        await SqliteSink(path).open()
    assert str(caught.value) == f"sqlite:{path}: {shm} is not writable (read-only or immutable)"


async def test_paths_of_the_wrong_kind_are_refused_at_open(tmp_path: Path) -> None:
    directory = tmp_path / "events.db"
    directory.mkdir()  # a directory where the file should be
    with pytest.raises(ConfigurationError) as caught:
        await SqliteSink(directory).open()
    assert str(caught.value) == f"cannot open sqlite database {directory}: unable to open database file"

    a_file = tmp_path / "notes.txt"
    a_file.write_text("a file where a directory should be\n")
    under_a_file = a_file / "events.db"
    with pytest.raises(ConfigurationError) as caught:
        await SqliteSink(under_a_file).open()
    assert str(caught.value).startswith(f"cannot open sqlite database {under_a_file}: [Errno 17] File exists")


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
async def test_a_file_made_immutable_mid_run_is_down_at_once_then_written_in_order_once_released(
    tmp_path: Path, balance: BalanceFactory, immutable: Any, suffix: str
) -> None:
    """The database, its WAL or its shared-memory file turns immutable while the sink runs. Each batch is
    refused before SQLite touches it (for -shm, which SQLite maps into memory, a store would be a SIGBUS:
    this test process would die), the sink is down at the first failure, and once the file is writable
    again the waiting events are written, in order, once."""
    path = tmp_path / "events.db"
    retries: list[int] = []
    failed = asyncio.Event()

    def on_retry(attempt: int, error: Exception, delay: float) -> None:
        retries.append(attempt)
        failed.set()

    runner = SinkRunner(SqliteSink(path), capacity=10, retry_base=0.01, retry_cap=0.02, on_retry=on_retry)
    async with runner:
        await runner.put(balance(free="1", timestamp=T0 + 1))
        await runner.flush()
        target = tmp_path / f"events.db{suffix}"
        assert target.exists()
        immutable.set(target)
        for value in ("2", "3", "4"):
            await runner.put(balance(free=value, timestamp=T0 + int(value)))
        async with asyncio.timeout(WAIT):
            await failed.wait()
        health = runner.health
        assert (health.state, health.error, health.up) == (
            "down",
            f"SinkUnwritableError: sqlite:{path}: {target} is not writable (read-only or immutable)",
            False,
        )
        assert retries[0] == 1  # down at the first failure, not after a threshold
        immutable.clear(target)
        async with asyncio.timeout(WAIT):
            await runner.flush()
        assert runner.health == SinkHealth("ok")
    assert free_values(path) == ["1", "2", "3", "4"]
    assert (runner.written, runner.abandoned) == (4, 0)


async def test_sqlites_own_read_only_and_io_errors_are_unwritable(
    tmp_path: Path, balance: BalanceFactory, immutable: Any
) -> None:
    """Below the sink's own checks: a database that turns immutable after the sink's check and before
    SQLite writes it (simulated: the -wal made immutable and the check bypassed) fails in SQLite with an
    I/O error, which is unwritable too, not a mere retry."""
    path = tmp_path / "events.db"
    sink = SqliteSink(path)
    await sink.open()
    await sink.write([balance(timestamp=T0)])
    sink._check_writable = lambda: None  # type: ignore[method-assign]
    immutable.set(tmp_path / "events.db-wal")
    with pytest.raises(SinkUnwritableError) as caught:
        await sink.write([balance(free="2", timestamp=T0 + 1)])
    assert str(caught.value) == f"writing to sqlite:{path} failed: disk I/O error"
    immutable.clear(tmp_path / "events.db-wal")
    await sink.close()


async def test_the_database_is_not_memory_mapped(tmp_path: Path) -> None:
    sink = SqliteSink(tmp_path / "events.db")
    await sink.open()
    try:
        mapped = await sink._thread.run(lambda: sink._live().execute("PRAGMA mmap_size").fetchone()[0])
    finally:
        await sink.close()
    assert mapped == 0
