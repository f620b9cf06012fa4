"""One dedicated worker thread per sink, so blocking file and database calls leave the event loop alone.

This module owns `WorkerThread`: a single thread that runs a sink's blocking calls one at a time, in the
order they were submitted. A shared pool (`asyncio.to_thread`) would not do: after a cancelled write its
call may still be running when the next one (or `close`) starts on another thread, and a sink's file or
connection must never be used by two threads at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from userstream.errors import LocalProtocolError

__all__ = ["WorkerThread"]

T = TypeVar("T")


class WorkerThread:
    """Runs blocking calls on one thread, in submission order. `start` and `stop` bracket its life."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._executor: ThreadPoolExecutor | None = None

    @property
    def running(self) -> bool:
        return self._executor is not None

    def start(self) -> None:
        if self._executor is not None:
            raise LocalProtocolError(f"{self._name}: the worker thread is already running")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Run `function(*args)` on the thread, after every call submitted before it."""
        if self._executor is None:
            raise LocalProtocolError(f"{self._name} is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def stop(self) -> None:
        """Let the thread finish what it was given, then end (without blocking the event loop)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)
