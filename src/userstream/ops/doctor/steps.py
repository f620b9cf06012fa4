"""The doctor's steps that touch the network, in the order a stream takes them, each reporting one check.

This module owns `Doctor`, the base every flow (`ops.doctor.flows`) builds on: the results and their report,
the client's own `Transport` (so TLS, timeouts and error conversion are a stream's), and the steps shared by
every exchange: DNS and TCP reachability (asyncio directly, to tell those steps apart), the clock check's
request, the WebSocket handshake, and `Inbox`, which reads one WebSocket in one task so that each check can
wait for its next frame with its own deadline. Every detail passes through the scrubber: details quote
what servers say, and no output may carry a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from yarl import URL

from userstream.client.scrub import Scrubber
from userstream.client.tls import TlsPolicy
from userstream.client.transport import Transport
from userstream.client.websocket import HandshakeRejectedError, SignOfLife, WebSocket
from userstream.errors import UserStreamError
from userstream.ops.doctor.checks import SLOW_ROUND_TRIP, Check, DoctorOptions, Verdict, judge_clock_skew, ms

__all__ = ["Doctor", "Inbox", "Received"]


@dataclass(frozen=True, slots=True)
class _Get:
    """A bare GET (the clock check's request), in the shape `Transport.request` takes."""

    path: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


Received = str | bytes | SignOfLife


class Inbox:
    """Every frame of one WebSocket, read by one task, so that each check can wait with its own deadline."""

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws
        self._queue: asyncio.Queue[Received | UserStreamError] = asyncio.Queue()
        self.ended: UserStreamError | None = None

    async def pump(self) -> None:
        while True:
            try:
                frame = await self._ws.receive()
            except UserStreamError as exc:
                self._queue.put_nowait(exc)
                return
            self._queue.put_nowait(frame)

    async def next(self, deadline: float) -> Received | UserStreamError | None:
        """The next frame, the ending of the connection, or None at `deadline` (loop time)."""
        if self.ended is not None:
            return self.ended
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(max(0.0, remaining)):
                item = await self._queue.get()
        except TimeoutError:
            return None
        if isinstance(item, UserStreamError):
            self.ended = item
        return item


class Doctor:
    """The results of one diagnosis so far, and the steps every flow shares."""

    def __init__(self, options: DoctorOptions, report: Callable[[Check], object] | None) -> None:
        self._options = options
        self._report = report
        self._loop = asyncio.get_running_loop()
        self.results: list[Check] = []
        # The credentials, and the listenKey once there is one: every detail passes through it, since
        # details quote what servers say (client/scrub.py).
        self._scrubber = Scrubber((options.api_key, options.auth_key, options.token))

    def _add(self, name: str, verdict: Verdict, detail: str) -> Check:
        return self._add_check(Check(name, verdict, self._scrubber(detail)))

    def _add_check(self, check: Check) -> Check:
        self.results.append(check)
        if self._report is not None:
            self._report(check)
        return check

    @contextlib.asynccontextmanager
    async def _transport(self) -> AsyncIterator[Transport]:
        options = self._options
        tls = TlsPolicy(verify=options.verify_tls, ca_file=options.ca_file)
        async with Transport(tls=tls, request_timeout=options.timeout, scrubber=self._scrubber) as transport:
            yield transport

    def _round_trip(self, seconds: float, what: str) -> None:
        if seconds > SLOW_ROUND_TRIP:
            self._add("ping", Verdict.WARN, f"{what} after {ms(seconds)}: a slow path")
        else:
            self._add("ping", Verdict.OK, f"{what} in {ms(seconds)}")

    async def _reachable(self, name: str, url: str) -> bool:
        parsed = URL(url)
        host, port = parsed.host or "", parsed.port
        timeout = self._options.timeout
        try:
            async with asyncio.timeout(timeout):
                infos = await self._loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            self._add(name, Verdict.FAIL, f"{host}: DNS lookup failed ({exc.strerror})")
            return False
        except TimeoutError:
            self._add(name, Verdict.FAIL, f"{host}: DNS lookup timed out after {timeout:g} s")
            return False
        except (OSError, UnicodeError) as exc:
            self._add(name, Verdict.FAIL, f"{host}: DNS lookup failed ({type(exc).__name__})")
            return False
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        failures = []
        for address in addresses:
            started = self._loop.time()
            try:
                async with asyncio.timeout(timeout):
                    _, writer = await asyncio.open_connection(address, port)
            except TimeoutError:
                failures.append(f"{address}: timed out after {timeout:g} s")
                continue
            except OSError as exc:
                reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
                failures.append(f"{address}: {reason}")
                continue
            elapsed = self._loop.time() - started
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            count = f"{len(addresses)} address{'' if len(addresses) == 1 else 'es'}"
            self._add(name, Verdict.OK, f"{host}:{port} ({count}): TCP connect to {address} in {ms(elapsed)}")
            return True
        self._add(name, Verdict.FAIL, f"{host}:{port}: TCP connect failed ({'; '.join(failures)})")
        return False

    async def _clock(self, transport: Transport, origin: str, path: str) -> None:
        source = f"GET {origin}{path}"
        sent_at = self._options.wall_clock()
        try:
            reply = await transport.request(origin, _Get(path), label=source)
        except UserStreamError as exc:
            self._add("clock skew", Verdict.SKIP, f"no reply to read a Date header from: {exc}")
            return
        received_at = self._options.wall_clock()
        self._add_check(judge_clock_skew(reply.headers.get("Date"), sent_at, received_at, source))

    async def _handshake(
        self, transport: Transport, url: str, headers: dict[str, str], label: str
    ) -> tuple[WebSocket | None, HandshakeRejectedError | None]:
        started = self._loop.time()
        try:
            ws = await transport.websocket(url, headers, label=label)
        except HandshakeRejectedError as exc:
            self._add("ws handshake", Verdict.FAIL, f"{label}: refused with HTTP {exc.status}")
            return None, exc
        except UserStreamError as exc:
            self._add("ws handshake", Verdict.FAIL, str(exc))
            return None, None
        self._add("ws handshake", Verdict.OK, f"{label}: upgraded in {ms(self._loop.time() - started)}")
        return ws, None

    @contextlib.asynccontextmanager
    async def _reading(self, ws: WebSocket) -> AsyncIterator[Inbox]:
        """Read `ws` in one task for the block's duration; close it afterwards."""
        inbox = Inbox(ws)
        async with asyncio.TaskGroup() as tasks:
            reader = tasks.create_task(inbox.pump(), name="userstream-doctor:reader")
            try:
                yield inbox
            finally:
                reader.cancel()
                await ws.abort()
