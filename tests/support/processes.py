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
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

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
