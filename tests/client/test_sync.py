"""`userstream.sync`: the same client on a background thread, against the real `userstream serve`.

The server runs on the test's event loop, so every synchronous body runs in a worker thread
(`asyncio.to_thread`) and reaches the server through `on_test_loop`; the Ctrl-C and shutdown tests run a
script in a subprocess, as a user's script runs.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import pytest

import userstream
from userstream import sync
from userstream.client import State, StatusEvent
from userstream.errors import AuthenticationError, ConfigurationError
from userstream.events import Event

Lab = Callable[..., AbstractAsyncContextManager[Any]]
T = TypeVar("T")

WAIT = 10.0
EXCHANGES = pytest.mark.parametrize("exchange", ["bitmusa", "coinlocally"])


def on_test_loop(loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, T]) -> T:
    """Run `work` on the test's loop (where the server lives) from a synchronous body's thread."""
    return asyncio.run_coroutine_threadsafe(work, loop).result(WAIT)


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


async def until_no_streams(env: Any) -> None:
    """Until the server holds no connection of alice's (bounded by WAIT)."""
    async with asyncio.timeout(WAIT):
        await env.server.server.hub.wait_until(lambda: env.server.streams("alice") == 0)


def sync_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name == "userstream-sync"]


@EXCHANGES
async def test_the_sync_stream_yields_the_same_events_and_statuses(lab: Lab, exchange: str) -> None:
    loop = asyncio.get_running_loop()
    seen: list[StatusEvent] = []  # on_status, called in the background thread

    async with lab() as env:

        def body() -> tuple[list[Event], list[StatusEvent], str, bool]:
            with sync.connect(exchange, **env.options(exchange), on_status=seen.append) as stream:
                on_test_loop(loop, env.until_streaming())
                on_test_loop(loop, env.ingest([env.balance(1), env.order(2)]))
                events = [next(stream), next(stream)]
                statuses = list(itertools.islice(stream.statuses(), len(seen)))
                described = repr(stream)
                assert stream.running
            assert not stream.running
            assert list(stream) == []  # a closed stream ends the iteration
            return events, statuses, described, stream.closed

        events, statuses, described, closed = await asyncio.to_thread(body)
        await until_no_streams(env)

    assert events == [env.expected_balance(1, exchange), env.expected_order(2, exchange)]
    assert statuses == seen[: len(statuses)]  # the accessor gives what the callback got, in order
    assert [status.state for status in statuses][:2] == [State.CONNECTING, State.CONNECTED]
    assert described == f"SyncStream(UserStream(exchange={exchange!r}, account='alice', running=True))"
    assert closed
    assert sync_threads() == []  # leaving `with` stopped the thread


async def test_a_rejected_credential_raises_the_same_authentication_error_in_the_callers_thread(
    lab: Lab,
) -> None:
    async with lab() as env:
        settings = env.options("bitmusa", api_key="wrong-SECRET", auth_attempts=1)
        async with userstream.connect("bitmusa", **settings) as stream:
            with pytest.raises(AuthenticationError) as in_async:
                await anext(stream)

        def body() -> AuthenticationError:
            with (
                pytest.raises(AuthenticationError) as in_sync,
                sync.connect("bitmusa", **settings) as sync_stream,
            ):
                for _ in sync_stream:
                    pass
            return in_sync.value

        error = await asyncio.to_thread(body)
    assert type(error) is AuthenticationError
    assert (str(error), error.rejected, error.status) == (
        str(in_async.value),
        in_async.value.rejected,
        in_async.value.status,
    )
    assert error.rejected == "listenKey request"
    assert "wrong-SECRET" not in str(error)
    assert sync_threads() == []


def test_bad_arguments_raise_the_same_configuration_error_when_the_stream_starts() -> None:
    stream = sync.connect("bitmusa", api_key="k")  # nothing is checked before it starts
    with pytest.raises(ConfigurationError) as info, stream:
        pass
    assert str(info.value) == "Bitmusa needs an api_key and an auth_key (auth_key missing)"
    assert stream.closed
    assert sync_threads() == []


def test_connect_takes_exactly_the_arguments_of_the_async_connect() -> None:
    ours = inspect.signature(sync.connect)
    theirs = inspect.signature(userstream.connect)
    assert list(ours.parameters.values()) == list(theirs.parameters.values())
    assert ours.return_annotation is sync.SyncStream


def test_the_async_connect_outside_a_running_loop_says_what_to_do() -> None:
    with pytest.raises(ConfigurationError) as info:
        userstream.connect("coinlocally", token="t")
    assert str(info.value) == (
        "userstream.connect() needs a running asyncio event loop: call it inside an `async def` run by "
        "asyncio.run(), as in `async with userstream.connect(...) as stream:`; without asyncio, use "
        "userstream.sync.connect() (docs/client.md)"
    )


async def test_the_hand_over_buffers_nothing_and_the_picture_is_what_was_taken(lab: Lab) -> None:
    loop = asyncio.get_running_loop()
    async with lab() as env:
        settings = env.options("coinlocally", queue_size=3, overflow="drop_oldest")

        def body() -> tuple[list[str], list[str], list[str], int]:
            with sync.connect("coinlocally", **settings) as stream:
                on_test_loop(loop, env.until_streaming())
                on_test_loop(loop, env.ingest([env.order(n) for n in range(1, 11)]))
                until(lambda: stream.stats.events_received == 10)
                before = list(stream.open_orders())  # all ten arrived; none was taken
                taken = [next(stream) for _ in range(3)]
                after = sorted(stream.open_orders())
                dropped = stream.stats.dropped
            return (
                before,
                [event.id for event in taken if isinstance(event, userstream.OrderUpdate)],
                after,
                dropped,
            )

        before, taken, after, dropped = await asyncio.to_thread(body)
    # A hand-over that buffered would have taken C1 before the queue overflowed: only the queue's 3 remain.
    assert (before, taken, after, dropped) == ([], ["C8", "C9", "C10"], ["C10", "C8", "C9"], 7)


SCRIPT = """
import atexit, json, sys, threading
def report():  # registered before userstream's own hook, so it runs after it
    alive = [t.name for t in threading.enumerate() if t.name == "userstream-sync"]
    print("at exit", stream.closed, alive, flush=True)
mode = sys.argv[2]
if mode == "unclosed":
    atexit.register(report)
import userstream
settings = json.loads(sys.argv[1])
if mode == "unclosed":  # started by hand, never closed: the atexit hook closes it
    stream = userstream.sync.connect("coinlocally", **settings)
    stream.start()
    print("started", flush=True)
    print(next(stream).kind, flush=True)
    sys.exit(0)
try:
    with userstream.sync.connect("coinlocally", **settings) as stream:
        print("iterating", flush=True)
        for event in stream:
            print(event.kind, flush=True)
except KeyboardInterrupt:
    if mode == "raise":
        raise
    alive = [t.name for t in threading.enumerate() if t.name == "userstream-sync"]
    print("stopped", stream.closed, alive, flush=True)
"""


async def run_script(env: Any, mode: str) -> asyncio.subprocess.Process:
    settings = env.options("coinlocally")
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SCRIPT,
        json.dumps(settings),
        mode,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def readline(process: asyncio.subprocess.Process) -> bytes:
    assert process.stdout is not None
    async with asyncio.timeout(WAIT):
        return (await process.stdout.readline()).rstrip(b"\n")


@pytest.mark.parametrize("mode", ["catch", "raise"])
async def test_ctrl_c_while_iterating_stops_the_stream_without_hanging(lab: Lab, mode: str) -> None:
    async with lab() as env:
        process = await run_script(env, mode)
        assert await readline(process) == b"iterating"
        await env.until_streaming()
        await env.ingest([env.balance(1)])
        assert await readline(process) == b"balance"  # blocked in `for` again, waiting for the next
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(WAIT):
            stdout, stderr = await process.communicate()
            await until_no_streams(env)
    if mode == "catch":  # the script caught KeyboardInterrupt: everything had stopped by then
        assert (process.returncode, stdout, stderr) == (0, b"stopped True []\n", b"")
    else:  # uncaught: Python's own ending for Ctrl-C (killed by SIGINT, its traceback), nothing of ours
        assert process.returncode == -signal.SIGINT
        assert stdout == b""
        assert stderr.splitlines()[-1] == b"KeyboardInterrupt"
        assert b"userstream" not in stderr.split(b"Traceback")[0]


async def test_a_stream_never_closed_is_closed_at_interpreter_shutdown(lab: Lab) -> None:
    async with lab() as env:
        process = await run_script(env, "unclosed")
        assert await readline(process) == b"started"
        await env.until_streaming()
        await env.ingest([env.order(1)])
        async with asyncio.timeout(WAIT):
            stdout, stderr = await process.communicate()
            await until_no_streams(env)
    assert (process.returncode, stdout, stderr) == (0, b"order\nat exit True []\n", b"")


async def test_run_at_the_top_level_is_the_callback_form(lab: Lab) -> None:
    received: list[Event] = []
    async with lab() as env:
        task = asyncio.create_task(
            userstream.run("coinlocally", on_event=received.append, **env.options("coinlocally"))
        )
        await env.until_streaming()
        await env.ingest([env.balance(1), env.order(2)])
        await env.until(lambda: len(received) == 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert received == [env.expected_balance(1, "coinlocally"), env.expected_order(2, "coinlocally")]


class Enough(Exception):  # noqa: N818 - the test's own way out of the callback
    pass


async def test_the_sync_callback_form_stops_when_the_callback_raises(lab: Lab) -> None:
    loop = asyncio.get_running_loop()
    received: list[Event] = []

    def on_event(event: Event) -> None:
        received.append(event)
        if len(received) == 2:
            raise Enough

    async with lab() as env:

        def body() -> None:
            def ingest_when_streaming() -> None:
                on_test_loop(loop, env.until_streaming())
                on_test_loop(loop, env.ingest([env.balance(1), env.order(2), env.order(3)]))

            feeder = threading.Thread(target=ingest_when_streaming)
            feeder.start()
            try:
                with pytest.raises(Enough):
                    sync.run("coinlocally", on_event=on_event, **env.options("coinlocally"))
            finally:
                feeder.join()

        await asyncio.to_thread(body)
    assert received == [env.expected_balance(1, "coinlocally"), env.expected_order(2, "coinlocally")]
    assert sync_threads() == []
