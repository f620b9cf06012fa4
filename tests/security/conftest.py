"""Shared fixtures of the security tests: accounts with recognisable secrets, a self-signed certificate, and
a log catcher that sees everything every logger of the process writes.

Everything runs for real: `userstream serve`'s app on 127.0.0.1, the project's client and gateway, the CLI
as subprocesses, third-party clients (websockets, aiohttp) where the server is under test. Test modules
cannot import each other (pytest's importlib mode), so the helpers come as fixtures.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from userstream.server import Account, ServerConfig

ALICE = Account(
    name="alice",
    uid=24005174,
    bitmusa_api_key="alice-bitmusa-api-SECRET",
    bitmusa_auth_key="alice-bitmusa-auth-SECRET",
    coinlocally_api_key="alice-coinlocally-api-SECRET",
    coinlocally_token="alice-coinlocally-token-SECRET",
    coinlocally_secret_key="alice-coinlocally-secret-SECRET",
)
ADMIN_TOKEN = "security-admin-token-SECRET"
WAIT = 10.0  # the bound on every wait for something that must happen; never reached when all is well


COINLOCALLY_PATH = "/spotws_user/userData/ws"
# Quick to recover, slow to declare anything dead, no rotation and no resync: exact flows stay exact.
CALM: dict[str, Any] = {
    "ping_interval": 1.0,
    "idle_timeout": 5.0,
    "backoff_base": 0.01,
    "backoff_cap": 0.05,
    "sub_timeout": 5.0,
    "close_timeout": 2.0,
    "request_timeout": 5.0,
    "rotate_after": None,
    "resync": False,
}


class Setup:
    """The constants and small builders every security test needs (a fixture: modules cannot import)."""

    alice = ALICE
    admin_token = ADMIN_TOKEN
    wait = WAIT
    coinlocally_path = COINLOCALLY_PATH
    calm = CALM

    @staticmethod
    def config(**overrides: Any) -> ServerConfig:
        settings: dict[str, Any] = {
            "accounts": (ALICE,),
            "port": 0,
            "admin_token": ADMIN_TOKEN,
            "close_timeout": 2.0,
            "rate_limit_per_second": 10_000,
            "rate_limit_per_minute": 1_000_000,
        }
        settings.update(overrides)
        return ServerConfig(**settings)

    @staticmethod
    def balance(n: int, asset: str = "USDT") -> dict[str, Any]:
        """The n-th event of a numbered sequence, in the ingest form."""
        return {
            "kind": "balance",
            "asset": asset,
            "free": f"{n}.5",
            "locked": "0.25",
            "timestamp": 1_700_703_548_000 + n,
        }


@pytest.fixture
def sec() -> Setup:
    return Setup()


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost, and its private key (PEM files)."""

    cert: Path
    key: Path


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """Made with the `openssl` command (the project's venv has no `cryptography`, and needs none)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the TLS tests need the openssl command")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(  # noqa: S603 - a fixed argument list, no shell
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=userstream test",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return Certificate(cert=cert, key=key)


class LogCatcher(logging.Handler):
    """Every record of every logger, formatted with its fields, as one searchable text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def text(self) -> str:
        lines = []
        for record in self.records:
            fields = getattr(record, "userstream_fields", None)
            line = f"{record.levelname} {record.name} {record.getMessage()} {fields!r}"
            if record.exc_info:
                line += " " + logging.Formatter().formatException(record.exc_info)
            lines.append(line)
        return "\n".join(lines)

    def at(self, level: int, logger: str) -> list[logging.LogRecord]:
        return [r for r in self.records if r.levelno == level and r.name.startswith(logger)]


@pytest.fixture
def logs() -> Iterator[LogCatcher]:
    """Catches every record at DEBUG and above, from every logger (the root's level is lowered meanwhile)."""
    catcher = LogCatcher()
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(catcher)
    try:
        yield catcher
    finally:
        root.removeHandler(catcher)
        root.setLevel(previous)
