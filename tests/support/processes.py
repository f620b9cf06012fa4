"""`userstream` commands as real subprocesses: start one, read its first line, stop it, never leave it behind.

Every command runs as `sys.executable -m userstream ...`, so it inherits PYTHONPATH and runs this tree's
code. stdout and stderr are pipes; stdin is inherited unless a test asks otherwise (DEVNULL, PIPE).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Self

Process = asyncio.subprocess.Process

#: The bound on a wait when the test names none; never reached when all is well.
WAIT = 20.0


Environ = Mapping[str, str]


async def python(
    *argv: str, env: Environ | None = None, environ: Environ | None = None, stdin: int | None = None
) -> Process:
    """`sys.executable *argv`, stdout and stderr piped. Its environment: `env` (the test's own when None)
    with the variables of `environ` added."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        env={**(os.environ if env is None else env), **(environ or {})},
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def userstream(
    *arguments: str, env: Environ | None = None, environ: Environ | None = None, stdin: int | None = None
) -> Process:
    """`userstream ARGUMENTS` (this tree's), as `python -m userstream`; `env` and `environ` as `python`'s."""
    return await python("-m", "userstream", *arguments, env=env, environ=environ, stdin=stdin)


async def gateway(
    config: Path, *arguments: str, environ: Environ | None = None, http_port: int | None = 0
) -> Process:
    """`userstream gateway --config CONFIG [--http-port 0] ARGUMENTS`: its HTTP API on a free port unless
    `http_port` is None (then the config's own). Its environment: the test's, with `environ` added."""
    port = () if http_port is None else ("--http-port", str(http_port))
    return await userstream("gateway", "--config", str(config), *port, *arguments, environ=environ)


@asynccontextmanager
async def reaped(process: Process) -> AsyncIterator[Process]:
    """`process`, killed and waited for on the way out if it is still running (a failed test leaves none)."""
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def first_line(process: Process, within: float = WAIT) -> str:
    """The process's first line of stdout (its banner), as text; TimeoutError after `within` seconds."""
    assert process.stdout is not None
    async with asyncio.timeout(within):
        return (await process.stdout.readline()).decode()


def api_url(banner: str) -> str:
    """The HTTP API's URL that ends the gateway's banner ("... HTTP API on http://127.0.0.1:PORT")."""
    return banner.rsplit(" ", 1)[1].strip()


async def finish(process: Process, within: float = WAIT) -> tuple[bytes, bytes]:
    """(stdout, stderr) once the process has ended; TimeoutError after `within` seconds."""
    async with asyncio.timeout(within):
        return await process.communicate()


async def stop(process: Process, how: int = signal.SIGTERM, within: float = WAIT) -> tuple[bytes, bytes]:
    """Send the process the signal `how` (SIGTERM: a clean stop), then `finish` it."""
    process.send_signal(how)
    return await finish(process, within)


def to_toml(document: Mapping[str, Any]) -> str:
    """The few TOML forms a gateway config needs: tables and arrays of tables of strings, numbers, booleans
    and lists of them (what tomllib would read back as `document`)."""

    def value(item: Any) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, int | float):
            return repr(item)
        if isinstance(item, list):
            return "[" + ", ".join(value(element) for element in item) + "]"
        return json.dumps(item)  # a JSON string is a TOML basic string

    lines: list[str] = []
    for name, content in document.items():
        for table in content if isinstance(content, list) else [content]:
            lines.append(f"[[{name}]]" if isinstance(content, list) else f"[{name}]")
            lines.extend(f"{key} = {value(item)}" for key, item in table.items())
            lines.append("")
    return "\n".join(lines)


#: How a test runs this tree's `userstream` command: `[*USERSTREAM, "watch", ...]`.
USERSTREAM: tuple[str, ...] = (sys.executable, "-m", "userstream")


class LoggedProcess:
    """A subprocess whose stdout and stderr go to files (`[name.]stdout`, `[name.]stderr` in `directory`),
    read at any time while it runs and searched at the end. Its environment: the test's, with `environ`."""

    def __init__(
        self, directory: Path, argv: Sequence[str], environ: Environ | None = None, *, name: str = ""
    ) -> None:
        self.argv = list(argv)
        self.environ = {**os.environ, **(environ or {})}
        prefix = f"{name}." if name else ""
        self.stdout_path = directory / f"{prefix}stdout"
        self.stderr_path = directory / f"{prefix}stderr"
        self.process: Process | None = None

    async def start(self) -> Self:
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, env=self.environ, stdout=out, stderr=err
            )
        return self

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    async def until(self, condition: Callable[[], bool], what: str, within: float = WAIT) -> None:
        """Poll `condition` (over `stdout`, `stderr`, ...) until it holds; the process must still run."""
        deadline = time.monotonic() + within
        while not condition():
            assert self.process is not None
            assert self.process.returncode is None, (
                f"exited {self.process.returncode} before {what}: {self.stderr[-2000:]}"
            )
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.stderr[-2000:]}"
            await asyncio.sleep(0.02)

    async def stop(self, how: int = signal.SIGTERM, within: float = WAIT) -> int:
        """Send the signal `how` (unless it has ended already) and wait; its exit status."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(how)
        async with asyncio.timeout(within):
            return await self.process.wait()

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
