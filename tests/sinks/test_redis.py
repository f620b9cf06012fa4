"""RedisSink against a real redis-server (the `redis_server` fixture): exact stream entries, every key once
(replays, a second writer, a consumer group), approximate MAXLEN trimming, a restart mid-run retried by the
runner, and Redis's errors sorted into ours without leaking a password."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
import redis.exceptions

from userstream import eventjson
from userstream.errors import RemoteProtocolError, TransportError
from userstream.events import BalanceUpdate, Event, OrderUpdate
from userstream.sinks import Sink, SinkRunner, event_key
from userstream.sinks.redis import RedisSink, _translate

BalanceFactory = Callable[..., BalanceUpdate]
OrderFactory = Callable[..., OrderUpdate]
T0 = 1_700_703_548_000


@pytest.fixture
async def client(redis_server: Any) -> AsyncIterator[redis.asyncio.Redis]:
    connection = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        yield connection
    finally:
        await connection.aclose()


async def entries(client: redis.asyncio.Redis, stream: str) -> list[dict[bytes, bytes]]:
    """The fields of every entry of a stream, oldest first (ids are the server's, not checked)."""
    return [fields for _, fields in await client.xrange(stream)]


def entry(event: Event) -> dict[bytes, bytes]:
    return {b"key": event_key(event).encode(), b"event": eventjson.to_json(event)}


async def write_batches(url: str, *batches: list[Event], **options: Any) -> RedisSink:
    sink = RedisSink(url, **options)
    await sink.open()
    try:
        for batch in batches:
            await sink.write(batch)
    finally:
        await sink.close()
    return sink


def test_the_redis_sink_is_a_sink() -> None:
    assert isinstance(RedisSink(), Sink)


async def test_each_event_is_one_entry_of_its_accounts_stream(
    redis_server: Any, client: redis.asyncio.Redis, balance: BalanceFactory, order: OrderFactory
) -> None:
    alice_wallet = balance("USDT", "100.50", "0.25", timestamp=T0)
    alice_order = order("1001", timestamp=T0 + 1)
    bob_wallet = balance("BTC", "1", timestamp=T0 + 2, account="bob")
    sink = await write_batches(redis_server.url, [alice_wallet, bob_wallet, alice_order])
    assert await entries(client, "userstream:alice:events") == [entry(alice_wallet), entry(alice_order)]
    assert await entries(client, "userstream:bob:events") == [entry(bob_wallet)]
    assert (await entries(client, "userstream:alice:events"))[0] == {
        b"key": event_key(alice_wallet).encode(),
        b"event": (
            b'{"kind":"balance","exchange":"bitmusa","account":"alice","timestamp":1700703548000,'
            b'"source":"stream","asset":"USDT","free":"100.50","locked":"0.25","total":"100.75"}'
        ),
    }
    stored = (await entries(client, "userstream:alice:events"))[1][b"event"]
    assert eventjson.from_json(stored) == alice_order
    assert (sink.added, sink.replays) == (3, 0)


async def test_replays_and_a_second_writer_add_nothing(
    redis_server: Any, client: redis.asyncio.Redis, balance: BalanceFactory
) -> None:
    events: list[Event] = [balance("USDT", str(index), timestamp=T0 + index) for index in range(5)]
    first = await write_batches(redis_server.url, events[:3], events[1:4])  # a retried, overlapping batch
    # A second gateway instance that took the account over replays what it cannot know was written.
    second = await write_batches(redis_server.url, events, [events[0], events[0]])
    assert await entries(client, "userstream:alice:events") == [entry(event) for event in events]
    assert (first.added, first.replays, second.added, second.replays) == (4, 2, 1, 6)
    assert await client.zcard("userstream:alice:keys") == 5


async def test_a_consumer_group_sees_each_event_key_once(
    redis_server: Any, client: redis.asyncio.Redis, balance: BalanceFactory
) -> None:
    stream = "orders-desk:alice:events"
    await client.xgroup_create(stream, "risk", id="0", mkstream=True)
    events: list[Event] = [balance("USDT", str(index), timestamp=T0 + index) for index in range(6)]
    await asyncio.gather(
        write_batches(redis_server.url, events[:4], prefix="orders-desk"),
        write_batches(redis_server.url, events[2:], events[:2], prefix="orders-desk"),
    )
    reply = await client.xreadgroup("risk", "consumer-1", {stream: ">"}, count=100)
    keys = [fields[b"key"].decode() for _, fields in reply[0][1]]
    assert sorted(keys) == sorted(event_key(event) for event in events)
    assert len(keys) == len(set(keys)) == 6


async def test_maxlen_trims_the_stream_approximately_and_the_dedupe_set_exactly(
    redis_server: Any, client: redis.asyncio.Redis, balance: BalanceFactory
) -> None:
    await client.config_set("stream-node-max-entries", 10)  # small nodes, so trimming shows at 100 events
    events: list[Event] = [balance("USDT", str(index), timestamp=T0 + index) for index in range(100)]
    batches = [events[start : start + 7] for start in range(0, 100, 7)]
    await write_batches(redis_server.url, *batches, maxlen=20)
    kept = await entries(client, "userstream:alice:events")
    # `MAXLEN ~ 20` removes whole nodes of 10 entries: at least 20 stay, fewer than 20 + 10.
    assert 20 <= len(kept) < 30
    assert kept == [entry(event) for event in events[-len(kept) :]]
    assert await client.zcard("userstream:alice:keys") == 20  # the window defaults to maxlen


async def test_without_a_dedupe_window_a_replay_is_appended_again(
    redis_server: Any, client: redis.asyncio.Redis, balance: BalanceFactory
) -> None:
    event = balance()
    sink = await write_batches(redis_server.url, [event], [event], dedupe_window=0, maxlen=None)
    assert await entries(client, "userstream:alice:events") == [entry(event), entry(event)]
    assert await client.exists("userstream:alice:keys") == 0
    assert (sink.added, sink.replays) == (2, 0)


async def test_a_redis_restart_mid_run_is_retried_until_the_batch_is_written(
    redis_server: Any, client: redis.asyncio.Redis, balance: BalanceFactory
) -> None:
    before = [balance("USDT", str(index), timestamp=T0 + index) for index in range(3)]
    during = [balance("USDT", str(index), timestamp=T0 + index) for index in range(3, 6)]
    failed = asyncio.Event()
    errors: list[str] = []

    def on_retry(attempt: int, error: TransportError, delay: float) -> None:
        errors.append(str(error))
        failed.set()

    sink = RedisSink(redis_server.url)
    async with SinkRunner(sink, capacity=10, retry_base=0.01, retry_cap=0.05, on_retry=on_retry) as runner:
        for event in before:
            await runner.put(event)
        await runner.flush()
        redis_server.stop()
        for event in during:
            await runner.put(event)
        await failed.wait()  # the write failed at least once while Redis was down
        redis_server.start()  # persistence is off: the restarted server is empty
        await runner.flush()
    assert await entries(client, "userstream:alice:events") == [entry(event) for event in during]
    assert runner.written == 6
    assert runner.retries >= 1
    assert errors[0].startswith(f"{sink.name}: ")


async def test_a_redis_that_is_down_is_transport_trouble_and_the_password_stays_hidden(
    balance: BalanceFactory,
) -> None:
    sink = RedisSink("redis://reader:hunter2@127.0.0.1:1/0", socket_timeout=1.0)
    assert sink.name == "redis:redis://***@127.0.0.1:1/0"
    await sink.open()
    with pytest.raises(TransportError) as caught:
        await sink.write([balance()])
    await sink.close()
    assert "hunter2" not in str(caught.value)
    assert "reader" not in str(caught.value)


async def test_a_key_of_the_wrong_type_stops_the_runner_instead_of_retrying_forever(
    redis_server: Any, client: redis.asyncio.Redis, balance: BalanceFactory
) -> None:
    await client.set("userstream:alice:events", "not a stream")
    sink = RedisSink(redis_server.url, dedupe_window=0)
    await sink.open()
    with pytest.raises(RemoteProtocolError, match="Redis refused the batch: WRONGTYPE"):
        await sink.write([balance()])
    await sink.close()


def test_without_redis_server_the_redis_tests_fail_and_say_how_to_install_it(tmp_path: Path) -> None:
    """A missing redis-server must be a failure naming the fix, never a silent skip."""
    test_id = f"{Path(__file__)}::test_the_redis_sink_is_a_sink"
    fixture_user = f"{Path(__file__)}::test_without_a_dedupe_window_a_replay_is_appended_again"
    result = subprocess.run(  # noqa: S603 - our own interpreter and test file
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_id, fixture_user],
        env={**os.environ, "PATH": str(tmp_path)},  # a PATH where no redis-server can be found
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert "1 error" in result.stdout  # a fixture failure is reported as an error, and fails the run
    assert "redis-server is not on PATH" in result.stdout
    assert "Run scripts/ensure-redis.sh" in result.stdout
    assert "skipped" not in result.stdout


async def test_a_stopped_redis_makes_the_sink_down_after_its_attempts_and_up_again_with_nothing_lost(
    redis_server: Any, client: redis.asyncio.Redis, balance: BalanceFactory
) -> None:
    """A real redis-server stopped mid-run: the runner's health turns down after `down_after_attempts`
    failures (connection refused), names the sink and the error; the server started again (empty:
    persistence is off), every waiting event is written, in order, and the health is ok again."""
    events = [balance("USDT", str(index), timestamp=T0 + index) for index in range(6)]
    healths: list[Any] = []
    down = asyncio.Event()
    sink = RedisSink(redis_server.url)
    runner: SinkRunner

    def on_retry(attempt: int, error: TransportError, delay: float) -> None:
        healths.append(runner.health)
        if not runner.health.up:
            down.set()

    runner = SinkRunner(
        sink, capacity=10, retry_base=0.01, retry_cap=0.05, down_after_attempts=3, on_retry=on_retry
    )
    async with runner:
        await runner.put(events[0])
        await runner.flush()
        redis_server.stop()
        for event in events[1:]:
            await runner.put(event)
        try:
            async with asyncio.timeout(10):
                await down.wait()
        finally:
            redis_server.start()  # before any assertion, so that a failure cannot leave close() retrying
        async with asyncio.timeout(10):
            await runner.flush()
        assert runner.health.state == "ok"
    port = redis_server.port
    refused = (
        f"TransportError: {sink.name}: Error 111 connecting to 127.0.0.1:{port}. "
        f"Connect call failed ('127.0.0.1', {port})."
    )
    assert [(h.state, h.error, h.attempts) for h in healths[:3]] == [
        ("retrying", refused, 1),
        ("retrying", refused, 2),
        ("down", refused, 3),
    ]
    assert await entries(client, "userstream:alice:events") == [entry(event) for event in events[1:]]
    assert (runner.written, runner.abandoned) == (6, 0)


def test_a_redis_error_that_quotes_the_urls_credentials_is_scrubbed() -> None:
    """redis-py's messages do not quote the URL's user or password today; one that did (a future version,
    a proxy's reply) must still not carry them into a log, /healthz or the dashboard."""
    sink = RedisSink("redis://reader:hunt%21er2@127.0.0.1:1/0")
    error = redis.exceptions.ConnectionError(
        "Error connecting to redis://reader:hunt%21er2@127.0.0.1:1 (password hunt!er2)"
    )
    with pytest.raises(TransportError) as caught:
        _translate(error, sink.name, sink._secrets)
    assert str(caught.value) == (
        "redis:redis://***@127.0.0.1:1/0: Error connecting to redis://***:***@127.0.0.1:1 (password ***)"
    )


async def test_a_redis_that_accepts_but_never_answers_is_down_after_the_time_limit(
    balance: BalanceFactory,
) -> None:
    """A black hole (a scripted peer that accepts connections and never replies): each attempt hangs until
    the socket timeout, so it is the time limit, counted from the batch's first attempt, that turns the
    sink down, before the first attempt has even failed."""
    connections: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        await reader.read()  # reads whatever comes, answers nothing, until the client goes

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sink = RedisSink(f"redis://127.0.0.1:{port}/0", socket_timeout=30.0)
    runner = SinkRunner(sink, capacity=10, down_after_seconds=0.2)
    await runner.start()
    try:
        await runner.put(balance())
        async with asyncio.timeout(10):
            while runner.health.up:  # noqa: ASYNC110 - health is computed on demand, as /healthz reads it
                await asyncio.sleep(0.01)
        health = runner.health
        assert (health.state, health.attempts, runner.retries) == ("down", 0, 0)  # no attempt has failed
        assert health.error is not None
        assert health.error.startswith("a write has not returned for ")
        assert len(connections) == 1
    finally:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await runner.close()  # the write still hangs: close is cut short, what waits is abandoned
        server.close()
        for writer in connections:
            writer.close()
        await server.wait_closed()
    assert runner.abandoned == 1
