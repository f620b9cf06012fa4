"""JsonlSink: exact lines, a replay written once, restarts, size-based rotation, and write failures."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from userstream import eventjson
from userstream.errors import ConfigurationError, LocalProtocolError, TransportError
from userstream.events import BalanceUpdate, Exchange, Fill, Side, Source
from userstream.sinks import JsonlSink, Sink, SinkRunner, SinkUnwritableError, event_key, key_of_json

BalanceFactory = Callable[..., BalanceUpdate]

BALANCE = BalanceUpdate(
    exchange=Exchange.BITMUSA,
    account="alice",
    timestamp=1_700_703_548_000,
    asset="USDT",
    free=Decimal("100.50"),
    locked=Decimal("0.25"),
)
FILL = Fill(
    exchange=Exchange.COINLOCALLY,
    account="alice",
    timestamp=1_700_703_548_001,
    order_id="77",
    symbol="XRP/USDT",
    side=Side.SELL,
    amount=Decimal("1.5"),
    price=Decimal("0.5"),
    cost=Decimal("0.75"),
    fee=Decimal("0.001"),
    fee_asset="USDT",
    order_filled=Decimal("1.5"),
)
BALANCE_LINE = (
    b'{"kind":"balance","exchange":"bitmusa","account":"alice","timestamp":1700703548000,"source":"stream",'
    b'"asset":"USDT","free":"100.50","locked":"0.25","total":"100.75"}\n'
)
FILL_LINE = (
    b'{"kind":"fill","exchange":"coinlocally","account":"alice","timestamp":1700703548001,"source":"stream",'
    b'"order_id":"77","symbol":"XRP/USDT","side":"sell","amount":"1.5","price":"0.5","cost":"0.75",'
    b'"fee":"0.001","fee_asset":"USDT","order_filled":"1.5","derived":false}\n'
)


@pytest.fixture
def same_length(balance: BalanceFactory) -> list[BalanceUpdate]:
    """Nine balances whose lines all have the same length, so rotation points are easy to state."""
    return [balance("USDT", str(index), timestamp=1_700_000_000_000 + index) for index in range(1, 10)]


DEV_FULL_EXISTS = Path("/dev/full").exists()


def names_in(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def line_of(event: BalanceUpdate) -> bytes:
    return eventjson.to_json(event) + b"\n"


def test_the_jsonl_sink_is_a_sink(tmp_path: Path) -> None:
    assert isinstance(JsonlSink(tmp_path / "x.jsonl"), Sink)


async def test_a_stream_gets_one_exact_contract_line_per_event_and_a_replay_is_written_once() -> None:
    out = io.BytesIO()
    sink = JsonlSink(stream=out)
    await sink.open()
    await sink.write([BALANCE, FILL, BALANCE])  # the same event twice in one batch
    await sink.write([FILL, BALANCE])  # a retried batch
    await sink.close()
    assert out.getvalue() == BALANCE_LINE + FILL_LINE
    assert not out.closed  # the caller's stream is not ours to close
    assert sink.name == "jsonl:-"


def test_a_line_names_its_event_key() -> None:
    assert key_of_json(BALANCE_LINE.rstrip(b"\n")) == event_key(BALANCE)
    assert key_of_json(FILL_LINE.rstrip(b"\n")) == event_key(FILL)


async def test_a_file_is_appended_to_across_restarts(
    tmp_path: Path, same_length: list[BalanceUpdate]
) -> None:
    path = tmp_path / "events.jsonl"
    first = JsonlSink(path)
    await first.open()
    await first.write(same_length[:2])
    await first.close()
    second = JsonlSink(path)
    await second.open()
    # A new process has no memory of what the file holds: a replay across a restart is written again
    # (at least once), and a reader dedupes by key_of_json(line).
    await second.write(same_length[1:3])
    await second.close()
    lines = [line_of(event) for event in (same_length[0], same_length[1], same_length[1], same_length[2])]
    assert path.read_bytes() == b"".join(lines)
    assert second.name == f"jsonl:{path}"


async def test_rotation_moves_file_to_file_1_and_so_on_keeping_backups(
    tmp_path: Path, same_length: list[BalanceUpdate]
) -> None:
    path = tmp_path / "events.jsonl"
    size = len(line_of(same_length[0]))
    sink = JsonlSink(path, max_bytes=2 * size, backups=2)
    await sink.open()
    await sink.write(same_length[:3])  # rotates between lines, inside one batch
    await sink.write(same_length[3:7])
    await sink.close()
    lines = [line_of(event) for event in same_length]
    assert path.read_bytes() == lines[6]
    assert (tmp_path / "events.jsonl.1").read_bytes() == lines[4] + lines[5]
    assert (tmp_path / "events.jsonl.2").read_bytes() == lines[2] + lines[3]
    assert names_in(tmp_path) == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]


async def test_rotation_counts_what_the_file_held_before_a_restart(
    tmp_path: Path, same_length: list[BalanceUpdate]
) -> None:
    path = tmp_path / "events.jsonl"
    size = len(line_of(same_length[0]))
    path.write_bytes(line_of(same_length[0]))
    sink = JsonlSink(path, max_bytes=size + 1, backups=1)
    await sink.open()
    await sink.write([same_length[1]])
    await sink.close()
    assert path.read_bytes() == line_of(same_length[1])
    assert (tmp_path / "events.jsonl.1").read_bytes() == line_of(same_length[0])


async def test_with_no_backups_rotation_starts_the_file_afresh(
    tmp_path: Path, same_length: list[BalanceUpdate]
) -> None:
    path = tmp_path / "events.jsonl"
    sink = JsonlSink(path, max_bytes=len(line_of(same_length[0])), backups=0)
    await sink.open()
    await sink.write(same_length[:3])
    await sink.close()
    assert path.read_bytes() == line_of(same_length[2])
    assert names_in(tmp_path) == ["events.jsonl"]


async def test_a_line_longer_than_max_bytes_gets_a_file_to_itself_and_is_never_split(
    tmp_path: Path, same_length: list[BalanceUpdate]
) -> None:
    path = tmp_path / "events.jsonl"
    sink = JsonlSink(path, max_bytes=10, backups=5)
    await sink.open()
    await sink.write(same_length[:3])
    await sink.close()
    assert path.read_bytes() == line_of(same_length[2])
    assert (tmp_path / "events.jsonl.1").read_bytes() == line_of(same_length[1])
    assert (tmp_path / "events.jsonl.2").read_bytes() == line_of(same_length[0])


async def test_a_full_disk_is_transport_trouble_and_the_runner_would_retry(balance: BalanceFactory) -> None:
    if not DEV_FULL_EXISTS:
        pytest.fail("this test needs Linux's /dev/full (a file whose every write fails with ENOSPC)")
    sink = JsonlSink("/dev/full")
    await sink.open()
    with pytest.raises(TransportError, match=r"^writing to jsonl:/dev/full failed: No space left on device$"):
        await sink.write([balance()])
    with pytest.raises(TransportError, match="No space left on device") as caught:
        await sink.write([balance()])  # still failing, still retryable
    assert not isinstance(caught.value, SinkUnwritableError)  # space may be freed: the thresholds decide
    await sink.close()


class BrokenPipe(io.BytesIO):
    def write(self, data: object) -> int:
        raise BrokenPipeError(32, "Broken pipe")


async def test_a_broken_stdout_pipe_is_transport_trouble(balance: BalanceFactory) -> None:
    sink = JsonlSink(stream=BrokenPipe())
    await sink.open()
    with pytest.raises(SinkUnwritableError, match=r"^writing to jsonl:- failed: Broken pipe$"):
        await sink.write([balance()])  # the reader went away: retried, but down at once


async def test_a_file_made_immutable_mid_run_is_down_at_once_and_written_once_released(
    tmp_path: Path, same_length: list[BalanceUpdate], immutable: Any
) -> None:
    """`chattr +i` (the tests run as root, whom chmod does not stop): every append fails with EPERM."""
    path = tmp_path / "events.jsonl"
    failed = asyncio.Event()
    runner = SinkRunner(JsonlSink(path), retry_base=0.01, retry_cap=0.02, on_retry=lambda *_: failed.set())
    async with runner:
        await runner.put(same_length[0])
        await runner.flush()
        immutable.set(path)
        await runner.put(same_length[1])
        async with asyncio.timeout(10):
            await failed.wait()
        health = runner.health
        assert (health.state, health.error) == (
            "down",
            f"SinkUnwritableError: writing to jsonl:{path} failed: Operation not permitted",
        )
        immutable.clear(path)
        async with asyncio.timeout(10):
            await runner.flush()
        assert runner.health.state == "ok"
    assert path.read_bytes() == line_of(same_length[0]) + line_of(same_length[1])


async def test_behind_a_runner_every_event_reaches_the_file(
    tmp_path: Path, same_length: list[BalanceUpdate]
) -> None:
    path = tmp_path / "events.jsonl"
    async with SinkRunner(JsonlSink(path, fsync=True), capacity=4, batch_size=2) as runner:
        for event in same_length:
            await runner.put(event)
    assert path.read_bytes() == b"".join(line_of(event) for event in same_length)


async def test_a_snapshot_event_is_a_different_line_from_its_stream_twin(balance: BalanceFactory) -> None:
    out = io.BytesIO()
    sink = JsonlSink(stream=out)
    await sink.open()
    stream_event = balance()
    snapshot_event = BalanceUpdate(
        exchange=stream_event.exchange,
        account=stream_event.account,
        timestamp=stream_event.timestamp,
        asset=stream_event.asset,
        free=stream_event.free,
        locked=stream_event.locked,
        source=Source.SNAPSHOT,
    )
    await sink.write([stream_event, snapshot_event])
    assert out.getvalue().splitlines() == [eventjson.to_json(stream_event), eventjson.to_json(snapshot_event)]


async def test_misuse_and_bad_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LocalProtocolError, match="is not open"):
        await JsonlSink(tmp_path / "x.jsonl").write([BALANCE])
    with pytest.raises(ConfigurationError, match=r"cannot open .* for appending: Is a directory"):
        await JsonlSink(tmp_path).open()
    with pytest.raises(ConfigurationError, match="not both"):
        JsonlSink(tmp_path / "x.jsonl", stream=io.BytesIO())
    with pytest.raises(ConfigurationError, match="max_bytes must be a positive integer and needs a path"):
        JsonlSink(max_bytes=100)
    with pytest.raises(ConfigurationError, match="max_bytes must be a positive integer"):
        JsonlSink(tmp_path / "x.jsonl", max_bytes=0)
    with pytest.raises(ConfigurationError, match="backups must be a non-negative integer"):
        JsonlSink(tmp_path / "x.jsonl", backups=-1)
