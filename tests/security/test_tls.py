"""TLS: verification on by default, a CA bundle to trust a private server, and an explicit, loud way out.

`userstream serve --tls-cert/--tls-key` serves HTTPS and WSS with a self-signed certificate made by the
`openssl` command. Against it: the default client refuses with a fatal error naming TLS (and tries once:
retrying cannot fix a certificate); `ca_file` / `--ca-file` makes it work; `verify_tls=False` /
`--insecure-no-verify` works too and logs a WARNING at every connection.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.processes import userstream
from userstream.client import State, StatusEvent, connect
from userstream.client.tls import TlsPolicy
from userstream.errors import ConfigurationError
from userstream.server import running_server

Setup = Any  # conftest.Setup
Certificate = Any  # conftest.Certificate
LogCatcher = Any  # conftest.LogCatcher


def options(sec: Setup, exchange: str, server: Any, **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = dict(sec.calm)
    alice = sec.alice
    if exchange == "bitmusa":
        settings.update(
            api_key=alice.bitmusa_api_key,
            auth_key=alice.bitmusa_auth_key,
            rest_url=server.base_url,
            ws_url=server.ws_url,
        )
    else:
        settings.update(token=alice.coinlocally_token, ws_url=server.ws_url + sec.coinlocally_path)
    settings.update(overrides)
    return settings


@pytest.mark.parametrize("exchange", ["bitmusa", "coinlocally"])
async def test_by_default_a_self_signed_server_is_refused_once_with_a_fatal_error_naming_tls(
    sec: Setup, certificate: Certificate, exchange: str
) -> None:
    statuses: list[StatusEvent] = []
    config = sec.config(tls_cert=str(certificate.cert), tls_key=str(certificate.key))
    async with running_server(config) as server:
        assert server.base_url.startswith("https://")
        assert server.ws_url.startswith("wss://")
        async with connect(exchange, **options(sec, exchange, server), on_status=statuses.append) as stream:
            with pytest.raises(ConfigurationError) as raised:
                async with asyncio.timeout(sec.wait):
                    await anext(stream)
    message = str(raised.value)
    assert "TLS certificate failed verification" in message
    assert "self-signed certificate" in message
    assert "ca_file (--ca-file)" in message
    # Fatal at once: one attempt, no reconnect storm against a server that cannot be trusted.
    assert [status.state for status in statuses] == [State.CONNECTING, State.FATAL]


@pytest.mark.parametrize("exchange", ["bitmusa", "coinlocally"])
async def test_a_ca_bundle_makes_the_self_signed_server_trusted(
    sec: Setup, certificate: Certificate, logs: LogCatcher, exchange: str
) -> None:
    config = sec.config(tls_cert=str(certificate.cert), tls_key=str(certificate.key))
    async with running_server(config) as server:
        settings = options(sec, exchange, server, ca_file=str(certificate.cert))
        async with connect(exchange, **settings) as stream:
            async with asyncio.timeout(sec.wait):
                await server.wait_for_streams("alice")
            await server.ingest("alice", [sec.balance(1), sec.balance(2)])
            async with asyncio.timeout(sec.wait):
                events = [await anext(stream), await anext(stream)]
    assert [(event.asset, str(event.free)) for event in events] == [("USDT", "1.5"), ("USDT", "2.5")]  # type: ignore[union-attr]
    assert logs.at(logging.WARNING, "userstream.client.tls") == []


@pytest.mark.parametrize(("exchange", "rest_warnings"), [("bitmusa", 1), ("coinlocally", 0)])
async def test_verification_off_works_and_warns_at_every_connection(
    sec: Setup, certificate: Certificate, logs: LogCatcher, exchange: str, rest_warnings: int
) -> None:
    statuses: list[StatusEvent] = []
    config = sec.config(tls_cert=str(certificate.cert), tls_key=str(certificate.key))
    async with running_server(config) as server:
        settings = options(sec, exchange, server, verify_tls=False)
        async with connect(exchange, **settings, on_status=statuses.append) as stream:
            for round_number in (1, 2):
                async with asyncio.timeout(sec.wait):
                    await server.wait_for_streams("alice")
                await server.ingest("alice", [sec.balance(round_number)])
                async with asyncio.timeout(sec.wait):
                    event = await anext(stream)
                assert str(event.free) == f"{round_number}.5"  # type: ignore[union-attr]
                if round_number == 1:
                    await server.drop("alice")  # a second connection must warn again
    connects = sum(1 for status in statuses if status.state is State.CONNECTED)
    assert connects == 2
    warnings = logs.at(logging.WARNING, "userstream.client.tls")
    assert len(warnings) == connects + rest_warnings  # Bitmusa's REST calls share one pooled connection
    assert all("TLS certificate verification is OFF" in record.getMessage() for record in warnings)
    assert all(sec.alice.coinlocally_token not in record.getMessage() for record in warnings)


def test_a_ca_bundle_that_cannot_be_used_is_refused_before_anything_connects(tmp_path: Path) -> None:
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: TlsPolicy(ca_file=str(tmp_path / "missing.pem")), "does not exist"),
        (lambda: TlsPolicy(ca_file=str(not_pem)), "holds no PEM certificate"),
        (lambda: TlsPolicy(verify=False, ca_file=str(not_pem)), "pass one or the other"),
    ]
    for make, message in cases:
        with pytest.raises(ConfigurationError, match=message):
            make()


async def test_connect_checks_the_ca_bundle_itself(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        connect("coinlocally", token="t", ca_file=str(tmp_path / "missing.pem"))


# --- the command line ------------------------------------------------------------------------------------


async def _watch(sec: Setup, server: Any, *flags: str) -> asyncio.subprocess.Process:
    url = server.ws_url + sec.coinlocally_path
    return await userstream(
        "watch", "coinlocally", "--ws-url", url, "--format", "jsonl", *flags,
        environ={"USERSTREAM_COINLOCALLY_TOKEN": str(sec.alice.coinlocally_token)},
    )  # fmt: skip


async def test_watch_refuses_by_default_and_works_with_ca_file_or_loudly_without_verification(
    sec: Setup, certificate: Certificate
) -> None:
    config = sec.config(tls_cert=str(certificate.cert), tls_key=str(certificate.key))
    async with running_server(config) as server:
        refused = await _watch(sec, server)
        async with asyncio.timeout(30):
            out, err = await refused.communicate()
        assert refused.returncode == 2
        assert out == b""
        assert "TLS certificate failed verification" in err.decode()

        for flags, warned in (
            (("--ca-file", str(certificate.cert)), False),
            (("--insecure-no-verify",), True),
        ):
            watcher = await _watch(sec, server, *flags)
            try:
                async with asyncio.timeout(30):
                    await server.wait_for_streams("alice")
                await server.ingest("alice", [sec.balance(7)])
                assert watcher.stdout is not None
                async with asyncio.timeout(sec.wait):
                    line = await watcher.stdout.readline()
                assert b'"free":"7.5"' in line
            finally:
                watcher.send_signal(signal.SIGTERM)
                async with asyncio.timeout(30):
                    _, err = await watcher.communicate()
            assert watcher.returncode == 0
            assert ("WARNING: TLS certificate verification is OFF" in err.decode()) is warned
            async with asyncio.timeout(sec.wait):
                await server.server.hub.wait_until(lambda: server.streams("alice") == 0)
