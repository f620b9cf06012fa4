"""The synchronous form: `with userstream.sync.connect(...) as stream: for event in stream:`, without asyncio.

For scripts, notebooks and codebases that do not use asyncio. This module owns one background thread per
stream, and the event loop running in it: the same `UserStream` as `userstream.connect()` gives, with the
same keyword arguments (`connect` is derived from the async one, so the two cannot drift apart), the same
events, status events, counters and typed errors.

- The hand-over between the threads buffers nothing: the background loop takes the next event from the
  stream only when the caller asks for one (`__next__` runs `anext(stream)` on the loop and waits for it).
  So the stream's own bounded queue is the only buffer, and its overflow policy, its backpressure and the
  picture of what was delivered (`balances()`, `open_orders()`) mean exactly what they mean in the async form.
- Errors come out in the caller's thread, as the same exception objects: a `ConfigurationError` from the
  arguments when the stream starts (entering `with`), an `AuthenticationError` (or any fatal error) from
  the iteration after the events received before it.
- Stopping. Leaving `with` (or `close()`) stops the stream (`aclose()` on its loop), then the loop and the
  thread, and waits for them. Ctrl-C while the caller waits in `for`: the wait is interrupted, the
  KeyboardInterrupt propagates as Python makes it (this module never swallows it), and leaving `with` on
  the way out stops the stream; a script that does not catch it ends as any Python script interrupted by
  Ctrl-C does. At interpreter shutdown an `atexit` hook closes every stream still open (a stream started
  without `with` and never closed), and the thread is a daemon, so a stream never keeps a process alive.
- `on_status` callbacks are called in the background thread (they must not block, as in the async form);
  `statuses()` gives the status events in the caller's thread instead.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import functools
import inspect
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from types import TracebackType
from typing import Any, Final, ParamSpec, TypeVar

from userstream.client.entry import connect as _async_connect
from userstream.client.options import StreamOptions
from userstream.client.status import StatusEvent, StreamStats
from userstream.client.supervisor import UserStream
from userstream.events import BalanceUpdate, Event, Exchange, OrderUpdate

__all__ = ["SyncStream", "connect", "run"]

P = ParamSpec("P")
T = TypeVar("T")


class _End:
    """What the loop hands back when the stream's iteration ended (StopAsyncIteration cannot cross)."""


_END: Final = _End()


class SyncStream:
    """One account's user data stream, run on a background thread. Make it with `userstream.sync.connect`.

    Use it with `with` and `for`; `start()` and `close()` do the same by hand.
    """

    def __init__(self, make: Callable[[], UserStream]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stream: UserStream | None = None
        self._start_error: BaseException | None = None
        self._closed = False
        self._status_reader: AsyncIterator[StatusEvent] | None = None

    def __repr__(self) -> str:
        stream = self._stream
        return f"SyncStream({stream!r})" if stream is not None else "SyncStream(not started)"

    # --- life ----------------------------------------------------------------------------------------

    def __enter__(self) -> SyncStream:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start the thread, its loop and the stream; raises what `userstream.connect()` raises (a
        `ConfigurationError` for bad arguments) in the caller's thread. Done by `with`."""
        with self._lock:
            if self._thread is not None or self._closed:
                raise RuntimeError("a SyncStream can be started once")
            self._thread = threading.Thread(target=self._run, name="userstream-sync", daemon=True)
            _open_streams.add(self)
            self._thread.start()
        try:
            self._ready.wait()
        except BaseException:  # Ctrl-C while starting: stop what started
            self.close()
            raise
        if self._start_error is not None:
            self.close()
            raise self._start_error

    def close(self) -> None:
        """Stop the stream, its loop and its thread, and wait for them. Idempotent; done by `with`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, stop, thread = self._loop, self._stop, self._thread
        _open_streams.discard(self)
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                loop.call_soon_threadsafe(stop.set)
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    @property
    def closed(self) -> bool:
        return self._closed

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        finally:
            self._ready.set()  # never leave start() waiting, whatever happened

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            stream = self._make()
            await stream.__aenter__()
        except BaseException as exc:  # handed to the caller's thread by start()
            self._start_error = exc
            return
        self._stream = stream
        try:
            self._ready.set()
            with self._lock:
                closing = self._closed
            if not closing:  # close() before the loop existed could not set the event
                await self._stop.wait()
        finally:
            await stream.aclose()

    # --- the caller's side ----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        stream = self._started()
        event = self._on_loop(_next(stream))
        if isinstance(event, _End):
            raise StopIteration
        return event

    def statuses(self) -> Iterator[StatusEvent]:
        """Status events as they happen, in the caller's thread (the stream keeps the latest 1024 for a
        reader behind); ends when the stream is closed. One reader at a time."""
        stream = self._started()
        if self._status_reader is None:
            self._status_reader = stream.statuses()
        reader = self._status_reader
        while True:
            status = self._on_loop(_next(reader))
            if isinstance(status, _End):
                return
            yield status

    def balances(self) -> Mapping[str, BalanceUpdate]:
        """The balances delivered so far, by asset: a read-only copy (`UserStream.balances`)."""
        stream = self._started()
        return self._read(stream.balances)

    def open_orders(self) -> Mapping[str, OrderUpdate]:
        """The orders delivered as open, by id: a read-only copy (`UserStream.open_orders`)."""
        stream = self._started()
        return self._read(stream.open_orders)

    @property
    def picture_complete(self) -> bool:
        stream = self._started()
        return self._read(lambda: stream.picture_complete)

    @property
    def stats(self) -> StreamStats:
        stream = self._started()
        return self._read(lambda: stream.stats)

    @property
    def exchange(self) -> Exchange:
        return self._started().exchange

    @property
    def account(self) -> str:
        return self._started().account

    @property
    def options(self) -> StreamOptions:
        return self._started().options

    @property
    def running(self) -> bool:
        """True while the stream runs: started, not closed, no fatal error yet."""
        stream = self._stream
        return stream is not None and not self._closed and self._read(lambda: stream.running)

    # --- between the threads ---------------------------------------------------------------------------

    def _started(self) -> UserStream:
        stream = self._stream
        if stream is None:
            raise RuntimeError("the stream is not started: use `with userstream.sync.connect(...) as stream`")
        return stream

    def _on_loop(self, work: Coroutine[Any, Any, T]) -> T | _End:
        """Run `work` on the stream's loop and wait for its result in this thread; _END once closed."""
        loop = self._loop
        if self._closed or loop is None or loop.is_closed():
            work.close()
            return _END
        try:
            future = asyncio.run_coroutine_threadsafe(work, loop)
        except RuntimeError:  # the loop ended between the check and the call
            work.close()
            return _END
        try:
            return future.result()
        except concurrent.futures.CancelledError:  # the loop ended under the wait: the stream was closed
            return _END
        except BaseException:  # KeyboardInterrupt in the wait: take nothing more, let it propagate
            future.cancel()
            raise

    def _read(self, read: Callable[[], T]) -> T:
        """`read()` on the loop's thread (the stream's state changes only there); directly once it ended."""
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return read()

        async def on_loop() -> T:
            return read()

        result = self._on_loop(on_loop())
        return read() if isinstance(result, _End) else result


async def _next(iterator: AsyncIterator[T]) -> T | _End:
    """The iterator's next item on the loop's thread, or `_END` once it is exhausted."""
    try:
        return await anext(iterator)
    except StopAsyncIteration:
        return _END


# Every stream started and not closed yet, closed at interpreter shutdown: the threads are daemons, so
# without this a stream nobody closed would be cut off mid-write instead of closing its sockets.
_open_streams: weakref.WeakSet[SyncStream] = weakref.WeakSet()


@atexit.register
def _close_open_streams() -> None:
    for stream in list(_open_streams):
        stream.close()


def _sync_form(async_connect: Callable[P, UserStream]) -> Callable[P, SyncStream]:
    """`userstream.sync.connect` from `userstream.connect`: the same parameters, a `SyncStream`."""

    def connect(*args: P.args, **kwargs: P.kwargs) -> SyncStream:
        return SyncStream(functools.partial(async_connect, *args, **kwargs))

    connect.__module__ = __name__
    connect.__qualname__ = connect.__name__ = "connect"
    signature = inspect.signature(async_connect)
    connect.__signature__ = signature.replace(return_annotation=SyncStream)  # type: ignore[attr-defined]
    connect.__doc__ = (
        "A user data stream for one account, run on a background thread; use it with `with` and `for`.\n\n"
        "Takes exactly the arguments of `userstream.connect()` (docs/client.md); nothing starts, and no "
        "argument is checked, until the stream is started by `with` (or `start()`)."
    )
    return connect


connect = _sync_form(_async_connect)


def run(exchange: str, *, on_event: Callable[[Event], object], **options: Any) -> None:
    """The callback form: call `on_event` for every event until Ctrl-C or the stream's fatal error (raised).
    `options` are `connect()`'s."""
    with connect(exchange, **options) as stream:
        for event in stream:
            on_event(event)
