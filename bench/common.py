"""What every bench section shares: the machine's description, medians and percentiles, child processes
with a control pipe, and reading a process's CPU time and RSS from /proc.

This module owns the plumbing of `bench/run.py` and nothing that measures by itself. Servers run in child
processes started with the "spawn" method, so a measured client never shares its interpreter (or its core,
on a 2-core machine) with a server's Python; each child answers commands over one `multiprocessing` pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards `wanted` (at most the hard limit); children
    started afterwards inherit it. Returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values (fraction 0.99 is p99)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, round(fraction * len(sorted_values) + 0.5 - 1e-9))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


# --- /proc readings -------------------------------------------------------------------------------------


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (this one by default), threads included."""
    if pid is None:
        return time.process_time()  # nanosecond resolution; /proc counts 10 ms ticks
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size now (not the peak), from /proc/<pid>/statm."""
    path = Path(f"/proc/{pid or 'self'}/statm")
    return int(path.read_text().split()[1]) * PAGE_SIZE


# --- child processes ------------------------------------------------------------------------------------

#: A child's entry point: it gets its end of the pipe and keyword arguments, and serves commands on it.
ChildMain = Callable[..., None]


class Child:
    """A child process and the parent's end of its control pipe. `call` sends a command and waits for
    the answer; an answer that is an exception is raised here."""

    def __init__(self, process: multiprocessing.process.BaseProcess, pipe: Connection) -> None:
        self.process = process
        self.pipe = pipe

    @property
    def pid(self) -> int:
        pid = self.process.pid
        assert pid is not None
        return pid

    def call(self, *command: Any, timeout: float = 120.0) -> Any:
        self.pipe.send(command)
        return self.answer(timeout)

    def answer(self, timeout: float = 120.0) -> Any:
        if not self.pipe.poll(timeout):
            raise TimeoutError(f"child {self.pid} did not answer within {timeout} s")
        reply = self.pipe.recv()
        if isinstance(reply, BaseException):
            raise reply
        return reply

    async def acall(self, *command: Any) -> Any:
        """`call` from async code, without blocking the event loop."""
        return await asyncio.to_thread(self.call, *command)


@contextlib.contextmanager
def child(target: ChildMain, **kwargs: Any) -> Iterator[Child]:
    """Start `target(pipe, **kwargs)` in a spawned process; its first message is its ready report
    (available as `Child.ready`). On exit: ask it to stop, then terminate it if it does not."""
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe()
    process = context.Process(target=target, args=(child_end,), kwargs=kwargs, daemon=True)
    process.start()
    handle = Child(process, parent_end)
    try:
        handle.ready = handle.answer(60.0)  # type: ignore[attr-defined]
        yield handle
    finally:
        with contextlib.suppress(OSError, EOFError, BrokenPipeError):
            parent_end.send(("stop",))
        process.join(10)
        if process.is_alive():
            process.terminate()
            process.join(5)


def serve_commands(pipe: Connection, handlers: dict[str, Callable[..., Any]]) -> None:
    """A child's command loop for synchronous handlers: run each command, send back its result or the
    exception it raised, until "stop"."""
    while True:
        command, *args = pipe.recv()
        if command == "stop":
            return
        try:
            pipe.send(handlers[command](*args))
        except Exception as exc:  # the parent re-raises it
            pipe.send(exc)


async def serve_commands_async(pipe: Connection, handlers: dict[str, Callable[..., Any]]) -> None:
    """The same loop for a child that runs an event loop: handlers may be coroutines functions."""
    loop = asyncio.get_running_loop()
    while True:
        command, *args = await loop.run_in_executor(None, pipe.recv)
        if command == "stop":
            return
        try:
            result = handlers[command](*args)
            if asyncio.iscoroutine(result):
                result = await result
            pipe.send(result)
        except Exception as exc:  # the parent re-raises it
            pipe.send(exc)


# --- the machine ----------------------------------------------------------------------------------------


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH, read-only
            capture_output=True,
            text=True,
            cwd=BENCH_DIR,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "src"],  # noqa: S607
        capture_output=True,
        text=True,
        cwd=BENCH_DIR,
        check=False,
    ).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    names = ["userstream", "aiohttp", "msgspec", "picows", "aiofastnet", "websockets", "orjson"]
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PHYS_PAGES") * PAGE_SIZE / 2**30, 1),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "event_loop": "asyncio (stdlib selector loop)",
        "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "git_commit": _git_commit(),
        "versions": versions,
    }
