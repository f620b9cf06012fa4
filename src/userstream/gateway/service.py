"""The gateway's supervisor: many accounts' streams, through one pipeline, into every sink and the live hub.

This module owns `GatewayService` (start, the supervisor, the pipeline, stop, and `snapshot()`). The
supervisor is one task holding one `asyncio.TaskGroup`, with one task per account; each account task is the
only reader of its stream (an `AccountRuntime`, account.py) and runs the pipeline for every event:

    stream event -> the account's picture (+ FillTracker -> fills -> the picture) -> live hub -> every sink

An account whose stream stops with an error (rejected credentials, after the client's bounded attempts) is
marked failed and its task ends; the others go on. The sinks (sink_handles.py) may make a task wait
(backpressure), never drop in its place. Stopping ends the streams, then lets the sinks write what they hold
(bounded by `shutdown_timeout`), then closes the live subscribers.

It knows nothing of HTTP: the composition root (app.py, `Gateway`) builds this service and the HTTP server
beside it, and every reader (http.py, metrics.py, the dashboard) sees the service only through the
immutable `GatewaySnapshot` (snapshot.py) that `snapshot()` takes.

Sharded (`config.cluster`), the supervisor runs the lease task (leases.py) instead of every account: it
starts an account's task when this instance takes the account's lease and cancels it when the lease is lost
or handed over; the other accounts wait on standby (docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from userstream.client.supervisor import UserStream
from userstream.errors import ConfigurationError, UserStreamError
from userstream.events import Event
from userstream.gateway.account import AccountRuntime, Clock
from userstream.gateway.config import GatewayConfig
from userstream.gateway.sink_handles import SinkHandle, open_sinks, picture_keeper
from userstream.gateway.snapshot import GatewaySnapshot
from userstream.gateway.sse import EventHub
from userstream.gateway.streams import open_stream
from userstream.logs import log_event

if TYPE_CHECKING:
    from userstream.gateway.cluster import ClusterConfig
    from userstream.gateway.leases import LeaseCoordinator

__all__ = ["GatewayService"]

_log = logging.getLogger("userstream.gateway")


class GatewayService:
    """Every account of `config` streamed into its sinks and the live hub, until `stop()`.

    `environ` is where the credentials' variables are read (default: the process environment).
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.config = config
        self.hub = EventHub(config.sse_queue)
        self._environ = os.environ if environ is None else environ
        self._clock = clock
        self._accounts = {account.name: AccountRuntime(account, clock=clock) for account in config.accounts}
        self._sinks: list[SinkHandle] = []
        self._supervisor: asyncio.Task[None] | None = None
        self._account_tasks: dict[str, asyncio.Task[None]] = {}
        self._stop_requested = asyncio.Event()
        # sharded (config.cluster): the leases decide which accounts this instance streams
        self.leases: LeaseCoordinator | None = None
        self._group: asyncio.TaskGroup | None = None  # the supervisor's, while it runs
        self._stopped = False

    def __repr__(self) -> str:
        return f"GatewayService(accounts={list(self._accounts)!r}, sinks={[s.name for s in self._sinks]!r})"

    # --- what the service holds ------------------------------------------------------------------------

    @property
    def accounts(self) -> Sequence[AccountRuntime]:
        return tuple(self._accounts.values())

    def account(self, name: str) -> AccountRuntime | None:
        return self._accounts.get(name)

    @property
    def sinks(self) -> Sequence[SinkHandle]:
        return tuple(self._sinks)

    @property
    def stopping(self) -> bool:
        return self._stop_requested.is_set()

    def snapshot(self) -> GatewaySnapshot:
        """Everything a reader may show, read now, once."""
        leases = self.leases
        return GatewaySnapshot.of(
            self._accounts.values(),
            self._sinks,
            self.hub,
            grace=self.config.health_grace,
            stopping=self.stopping,
            cluster=None if leases is None else leases.describe(),
            cluster_problem=None if leases is None else leases.problem,
        )

    # --- life ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check every account's credentials, open the sinks, restore the pictures, start the supervisor.

        Anything wrong with the configuration (a missing variable, an argument `connect()` refuses, a sink
        that cannot be opened) raises before any stream starts; the caller then stops the service.
        """
        if self.config.cluster is None:
            for runtime in self._accounts.values():
                runtime.attach(self._open_stream(runtime))
        else:
            self.leases = await self._make_leases(self.config.cluster)
        await open_sinks(self.config, self._sinks)
        await self._restore()
        self._supervisor = asyncio.create_task(self._supervise(), name="userstream-gateway")

    async def stop(self) -> None:
        """Stop the streams, flush and close the sinks, end the live subscribers. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._stop_requested.set()
        if self._supervisor is not None:
            await asyncio.wait({self._supervisor})
        else:  # start failed before the supervisor: close the streams that were made
            for runtime in self._accounts.values():
                if runtime.stream is not None:
                    await runtime.stream.aclose()
        for runtime in self._accounts.values():
            runtime.stop()
        timeout = self.config.shutdown_timeout
        await asyncio.gather(*(sink.close(timeout) for sink in self._sinks))
        self.hub.close()

    async def _restore(self) -> None:
        """A restart on a sink that keeps a picture (SQLite): every account starts from what it holds."""
        keeper = picture_keeper(self._sinks)
        if keeper is None:
            return
        for runtime in self._accounts.values():
            if runtime.stream is not None:
                runtime.restore(await keeper.read_picture(runtime.exchange, runtime.name))

    # --- the supervisor ----------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        leases: asyncio.Task[None] | None = None
        async with asyncio.TaskGroup() as group:
            self._group = group
            if self.leases is None:
                for runtime in self._accounts.values():
                    self._account_tasks[runtime.name] = group.create_task(
                        self._run_account(runtime), name=f"userstream-gateway:{runtime.name}"
                    )
            else:  # the leases start and stop the account tasks, in this group
                leases = group.create_task(self.leases.run(), name="userstream-gateway-leases")
            await self._stop_requested.wait()
            if leases is not None:
                leases.cancel()
            for task in self._account_tasks.values():
                task.cancel()
        self._group = None
        if self.leases is not None:  # the streams have stopped: hand the accounts over now, not at TTL
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.shutdown_timeout):
                    await self.leases.release_all()

    # --- sharding (config.cluster) -----------------------------------------------------------------------

    async def _make_leases(self, cluster: ClusterConfig) -> LeaseCoordinator:
        """Check every account as an unsharded start would (credentials, `connect()` arguments), then
        leave them on standby until their lease is taken."""
        try:
            from userstream.gateway.leases import LeaseCoordinator  # noqa: PLC0415 - needs redis-py
        except ModuleNotFoundError as exc:
            if exc.name != "redis":
                raise
            raise ConfigurationError("[cluster] needs redis-py: pip install 'userstream[redis]'") from None

        for runtime in self._accounts.values():
            await self._open_stream(runtime).aclose()  # made and dropped: the checks are the point
            runtime.standby()
        return LeaseCoordinator(
            cluster,
            list(self._accounts),
            start=self._start_account,
            stop=self._stop_account,
            clock=self._clock,
        )

    def _start_account(self, name: str) -> None:
        """The lease of `name` is ours: start its stream (which begins with a snapshot resync)."""
        group = self._group
        if group is None or self.stopping:
            return
        runtime = self._accounts[name]
        runtime.leased(self._open_stream(runtime))
        self._account_tasks[name] = group.create_task(
            self._run_account(runtime), name=f"userstream-gateway:{name}"
        )
        log_event(_log, logging.INFO, "account leased: streaming", account=name)

    async def _stop_account(self, name: str, reason: str) -> None:
        """The lease of `name` is lost or handed over: stop its stream now; nothing more reaches the sinks."""
        task = self._account_tasks.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        self._accounts[name].standby()
        log_event(_log, logging.INFO, "account on standby", account=name, reason=reason)

    async def _run_account(self, runtime: AccountRuntime) -> None:
        stream = runtime.stream
        assert stream is not None  # noqa: S101 - attached by start() before the supervisor runs
        try:
            async with stream:
                async for event in stream:
                    await self._dispatch(runtime, event)
        except UserStreamError as exc:  # what the `fatal` status said already; in case it did not
            runtime.fail(str(exc))
        except Exception as exc:  # a bug in our pipeline: this account stops, loudly; the others go on
            _log.exception("account %s stopped by an unexpected error", runtime.name)
            runtime.fail(f"internal error: {type(exc).__name__}: {exc}")

    async def _dispatch(self, runtime: AccountRuntime, event: Event) -> None:
        for item in runtime.absorb(event, wall_ms=time.time_ns() // 1_000_000):
            self.hub.publish(item)
            for sink in self._sinks:
                await sink.put(item)

    def _open_stream(self, runtime: AccountRuntime) -> UserStream:
        return open_stream(runtime.config, self._environ, runtime.on_status)
