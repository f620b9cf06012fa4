"""Fixtures shared by every test directory: a real redis-server on a free loopback port.

The redis sink's tests (tests/sinks) and the multi-node tests (tests/scale) run against a real Redis, never
a fake. `redis_server` starts `redis-server` in a temporary directory with persistence off, waits until it
answers PING, and stops it at the end; a test may stop and restart it (on the same port) to cut Redis
away. It FAILS (never skips) when redis-server is missing, because a skipped Redis test is code nobody
tested: `scripts/ensure-redis.sh` (run by `make test`) installs it.

`immutable` makes a file or directory truly unwritable for the duration of a test, root included (the tests
run as root, whom `chmod` does not stop): `chattr +i`, undone at the end. It fails, never skips, where the
file system or the machine cannot do it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_WAIT = 10.0  # the bound on waiting for redis-server to start or stop; never reached when all is well


class RedisServer:
    """One redis-server process on 127.0.0.1:`port`, persistence off, that a test may stop and restart."""

    def __init__(self, executable: str, workdir: Path) -> None:
        self.executable = executable
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if self.process is not None:
            raise RuntimeError("redis-server is already running")
        self.starts += 1
        log = (self.workdir / f"redis-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - a fixed argument list, no shell
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + REDIS_WAIT
        while not self._answers_ping():
            if self.process.poll() is not None:
                output = (self.workdir / f"redis-{self.starts}.log").read_text(errors="replace")
                self.process = None
                pytest.fail(f"redis-server exited at start-up:\n{output}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"redis-server did not answer PING on port {self.port} within {REDIS_WAIT}s")
            time.sleep(0.01)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=REDIS_WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=REDIS_WAIT)

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(64).startswith(b"+PONG")
        except OSError:
            return False


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a process that cannot be told to pick its own)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.fail(
            "redis-server is not on PATH: the Redis code is tested against a real server. "
            "Run scripts/ensure-redis.sh (make test does) to install it."
        )
    server = RedisServer(executable, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Immutable:
    """`chattr +i` / `-i` on paths, every one released at the end of the test."""

    def __init__(self) -> None:
        self.held: set[Path] = set()

    def set(self, path: Path) -> None:
        self._chattr("+i", path)
        self.held.add(path)

    def clear(self, path: Path) -> None:
        self._chattr("-i", path)
        self.held.discard(path)

    @staticmethod
    def _chattr(flag: str, path: Path) -> None:
        executable = shutil.which("chattr")
        if executable is None:
            pytest.fail("chattr is not on PATH (e2fsprogs): it makes a file unwritable even for root")
        result = subprocess.run(  # noqa: S603 - a fixed argument list, no shell
            [executable, flag, str(path)], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            pytest.fail(f"chattr {flag} {path} failed (a file system without attributes?): {result.stderr}")


@pytest.fixture
def immutable() -> Iterator[Immutable]:
    holder = Immutable()
    try:
        yield holder
    finally:
        for path in list(holder.held):
            holder.clear(path)
