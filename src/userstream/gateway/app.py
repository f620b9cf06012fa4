"""The gateway's composition root: `Gateway` builds the service and the HTTP API beside it, and runs both.

    Gateway (this module)
      |- GatewayService (service.py)  accounts, streams, pictures, sinks, the live hub; takes snapshots
      '- HttpServer (http.py)         /healthz, /accounts, /metrics, /events: reads one snapshot per request

This is the only module that knows both: the service knows nothing of HTTP, and the HTTP server, the
metrics page and the dashboard know the service only as a `GatewaySource`: the config, the live hub and
`snapshot()`, an immutable `GatewaySnapshot` (snapshot.py). So no import runs back from the service to
what shows it. What `userstream gateway` (command.py) and `userstream demo` run is a `Gateway`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from types import TracebackType

from userstream.gateway.account import AccountRuntime, Clock
from userstream.gateway.config import GatewayConfig
from userstream.gateway.http import HttpServer
from userstream.gateway.service import GatewayService
from userstream.gateway.sink_handles import SinkHandle
from userstream.gateway.snapshot import GatewaySnapshot
from userstream.gateway.sse import EventHub
from userstream.logs import log_event

__all__ = ["Gateway"]

_log = logging.getLogger("userstream.gateway")


class Gateway:
    """Many accounts, both exchanges, one process: `async with Gateway(config) as gateway: ...`.

    `environ` is where the credentials' variables are read (default: the process environment). Leaving
    the block (or `await gateway.stop()`) stops the streams, flushes the sinks and closes the HTTP server.
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.config = config
        self.service = GatewayService(config, environ=environ, clock=clock)
        self._http: HttpServer | None = None
        self._started = False
        self._stopped = False

    def __repr__(self) -> str:
        return (
            f"Gateway(accounts={[a.name for a in self.accounts]!r}, sinks={[s.name for s in self.sinks]!r})"
        )

    # --- what the gateway shows ------------------------------------------------------------------------

    def snapshot(self) -> GatewaySnapshot:
        """The whole gateway now, once: what every reader shows (snapshot.py)."""
        return dataclasses.replace(self.service.snapshot(), http_url=self.http_url)

    @property
    def hub(self) -> EventHub:
        """The live fan-out: `/events`, and anyone in-process who subscribes (the demo, the tests)."""
        return self.service.hub

    @property
    def accounts(self) -> Sequence[AccountRuntime]:
        return self.service.accounts

    def account(self, name: str) -> AccountRuntime | None:
        return self.service.account(name)

    @property
    def sinks(self) -> Sequence[SinkHandle]:
        return self.service.sinks

    @property
    def http_url(self) -> str | None:
        """The HTTP API's base URL (`http://host:port`), None when it does not run."""
        return None if self._http is None else self._http.url

    @property
    def lost_events(self) -> int:
        """Events a sink never wrote against the user's wishes (see `GatewaySnapshot.lost_events`)."""
        return self.service.snapshot().lost_events

    # --- life ------------------------------------------------------------------------------------------

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Check every account's credentials, open the sinks, start the streams and the HTTP server.

        Anything wrong with the configuration (a missing variable, an argument `connect()` refuses, a sink
        that cannot be opened, a port in use) raises before any stream starts, and nothing is left running.
        """
        if self._started:
            raise RuntimeError("a Gateway starts once")
        self._started = True
        config = self.config
        try:
            await self.service.start()
            if config.http_port is not None:
                self._http = HttpServer(self)
                await self._http.start(config.http_host, config.http_port)
        except BaseException:
            await self.stop()
            raise
        log_event(
            _log,
            logging.INFO,
            "gateway started",
            accounts=[account.name for account in self.accounts],
            sinks=[sink.name for sink in self.sinks],
            http=self.http_url,
        )

    async def stop(self) -> None:
        """Stop the streams, flush and close the sinks, end the live subscribers, stop HTTP. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        await self.service.stop()
        if self._http is not None:
            await self._http.stop()
        log_event(_log, logging.INFO, "gateway stopped", lost_events=self.lost_events)
