"""`userstream doctor bitmusa|coinlocally`: what works and what does not, one line per check.

This module owns the checks, their order, their verdicts (OK, WARN, FAIL, SKIP, each with its reason), and
the command around them. Each check is one step a stream takes, in the order it takes them, so the first
FAIL is the step to fix; a check that cannot run because an earlier one failed is SKIPped and says which.

- `rest reachable`, `ws reachable`: DNS, then a TCP connection to each address in turn.
- `clock skew`: the server's HTTP `Date` header against the local clock (WARN over 1 s, FAIL over 30 s).
- `credentials`: Bitmusa: the listenKey request (POST). The key is left open, never DELETEd: an account
  has one listenKey shared by every client, so a DELETE would cut off every bot on the account.
  Coinlocally: the handshake's credential header and the sub's token were both accepted.
- `ws handshake`: the WebSocket upgrade (Bitmusa with the listenKey; Coinlocally with the header).
- `sub handshake` (Coinlocally): "connect success", then "sub success" for our sub frame.
- `gzip decoding` (Coinlocally): the first binary frame within `frame_wait` gunzips and parses;
  `frame decoding` (Bitmusa): the first frame within `frame_wait` parses. SKIP when none arrives.
- `ping`: a ping's round trip (Coinlocally's {"ping": n}; Bitmusa a WebSocket-protocol ping).

HTTP and WebSocket traffic goes through the client's own `Transport`, so TLS, timeouts and error
conversion are the ones a stream uses; DNS and TCP use asyncio directly, to tell those steps apart. No
output carries a secret: errors are ours (they name credentials, never show them), a listenKey is masked.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from yarl import URL

from userstream.client.command import ENVIRONMENT, add_connection_arguments, read_credentials, tls_arguments
from userstream.client.rest import check_url
from userstream.client.scrub import Scrubber
from userstream.client.status import mask_listen_key
from userstream.client.tls import TlsPolicy
from userstream.client.transport import Transport
from userstream.client.websocket import HandshakeRejectedError, PeerClosedError, SignOfLife, WebSocket
from userstream.clihelp import credentials_paragraph, parser_texts
from userstream.errors import AuthenticationError, ConfigurationError, FrameDecodeError, UserStreamError
from userstream.events import Exchange
from userstream.protocol import bitmusa, coinlocally, endpoints
from userstream.protocol.close import is_fatal
from userstream.protocol.codec import decode_frame
from userstream.protocol.messages import (
    ControlReply,
    DataEvents,
    ErrorReply,
    Incoming,
    Pong,
    SystemClose,
    Unknown,
)

__all__ = [
    "EXIT_INTERRUPTED",
    "SKEW_FAIL",
    "SKEW_WARN",
    "SLOW_ROUND_TRIP",
    "Check",
    "DoctorOptions",
    "Verdict",
    "add_parser",
    "diagnose",
    "judge_binary_frame",
    "judge_clock_skew",
    "run",
]

#: Clock skew limits, seconds. Over SKEW_WARN, lags computed from event times are off by as much; over
#: SKEW_FAIL, exchanges refuse signed REST requests (their time windows are seconds wide).
SKEW_WARN: Final = 1.0
SKEW_FAIL: Final = 30.0
#: A ping answered slower than this is a WARN: the heartbeat still works, the path is poor.
SLOW_ROUND_TRIP: Final = 1.0

#: The exit status after Ctrl-C (SIGINT): the shell's 128 + 2, since the diagnosis was cut short.
EXIT_INTERRUPTED: Final = 130

_GZIP_MAGIC: Final = b"\x1f\x8b"
_SHOWN_REPLY_CHARS: Final = 200


class Verdict(StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    verdict: Verdict
    detail: str

    def line(self) -> str:
        return f"{self.verdict.value:<4}  {self.name:<15}  {self.detail}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DoctorOptions:
    """What to check and how long to wait. `wall_clock` (epoch seconds) is what the clock check compares
    with the server's; a test passes a shifted one."""

    exchange: Exchange
    api_key: str | None = field(default=None, repr=False)
    auth_key: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    rest_url: str | None = None
    ws_url: str | None = None
    account: str = "default"
    timeout: float = 5.0
    frame_wait: float = 3.0
    verify_tls: bool = True
    ca_file: str | None = None  # extra trusted CA certificates (PEM), as connect()'s
    wall_clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)


async def diagnose(options: DoctorOptions, report: Callable[[Check], object] | None = None) -> list[Check]:
    """Run every check of `options.exchange` in order; each result also goes to `report` as it is known.

    Raises ConfigurationError, before any check, for missing credentials or unusable URLs.
    """
    doctor = _Doctor(options, report)
    if options.exchange is Exchange.BITMUSA:
        await doctor.check_bitmusa()
    else:
        await doctor.check_coinlocally()
    return doctor.results


# --- pure judgements -------------------------------------------------------------------------------------


def judge_clock_skew(date_header: str | None, sent_at: float, received_at: float, source: str) -> Check:
    """The clock check from a reply's `Date` header and the local (epoch) times around its request.

    `Date` has 1 s resolution: the server's time when it answered lies in [D, D + 1), and that moment lies
    in [sent_at, received_at] locally. The skew reported is the smallest one consistent with both, so a
    clock in sync is never blamed for the header's rounding.
    """
    name = "clock skew"
    if date_header is None:
        return Check(name, Verdict.SKIP, f"the reply to {source} has no Date header")
    try:
        date = email.utils.parsedate_to_datetime(date_header)
    except (TypeError, ValueError):
        return Check(name, Verdict.SKIP, f"the Date header of {source} is not an HTTP date")
    server = date.timestamp() if date.tzinfo is not None else date.replace(tzinfo=None).timestamp()
    lowest = server - received_at  # skew = server time - local time
    highest = server + 1 - sent_at
    skew = 0.0 if lowest <= 0 <= highest else (lowest if lowest > 0 else highest)
    if skew == 0:
        return Check(name, Verdict.OK, f"in agreement with the Date header of {source} (1 s resolution)")
    side = "behind" if skew > 0 else "ahead of"
    detail = f"the local clock is {side} the server's by at least {abs(skew):.1f} s (Date header of {source})"
    if abs(skew) > SKEW_FAIL:
        return Check(
            name, Verdict.FAIL, f"{detail}; fix it (NTP): signed requests fail, lags are meaningless"
        )
    if abs(skew) > SKEW_WARN:
        return Check(name, Verdict.WARN, f"{detail}; lags computed from event times are off by as much")
    return Check(name, Verdict.OK, detail)


def judge_binary_frame(frame: bytes, parser: Callable[[bytes | str], Incoming]) -> Check:
    """The gzip check of Coinlocally's first binary frame."""
    name = "gzip decoding"
    gzipped = frame[:2] == _GZIP_MAGIC
    try:
        message = decode_frame(frame)
    except FrameDecodeError as exc:
        return Check(
            name, Verdict.FAIL, f"the first binary frame ({len(frame)} bytes) does not decode: {exc}"
        )
    incoming = parser(frame)
    sizes = f"{len(frame)} bytes of gzip -> {len(message)} bytes" if gzipped else f"{len(frame)} bytes"
    if isinstance(incoming, Unknown):
        return Check(
            name,
            Verdict.WARN,
            f"first binary frame: {sizes}, not understood: {incoming.reason} "
            "(record it with `userstream record` and report it)",
        )
    if not gzipped:
        return Check(
            name,
            Verdict.WARN,
            f"first binary frame: {sizes}, not gzip (the document says binary frames are): "
            f"{_describe(incoming)}",
        )
    return Check(name, Verdict.OK, f"first binary frame: {sizes} of JSON, {_describe(incoming)}")


def _describe(incoming: Incoming) -> str:
    if isinstance(incoming, DataEvents):
        count = len(incoming.events)
        return f"{count} event{'' if count == 1 else 's'} parsed"
    if isinstance(incoming, SystemClose):
        return "the SYSTEM close notice"
    if isinstance(incoming, ControlReply):
        return f"the control reply {incoming.text!r}"
    return type(incoming).__name__


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# --- the checks --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Get:
    """A bare GET (the clock check's request), in the shape `Transport.request` takes."""

    path: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


Received = str | bytes | SignOfLife


class _Inbox:
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


class _Doctor:
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

    # --- Bitmusa ---

    async def check_bitmusa(self) -> None:
        options = self._options
        rest = options.rest_url if options.rest_url is not None else bitmusa.REST_BASE
        ws_base = options.ws_url if options.ws_url is not None else bitmusa.WS_BASE
        check_url(rest, ("https", "http"), "the Bitmusa REST URL")
        check_url(ws_base, ("wss", "ws"), "the Bitmusa WebSocket URL")
        # a base or a full URL, as the client reads them (protocol.endpoints)
        rest, ws_base = endpoints.bitmusa_rest_base(rest), endpoints.bitmusa_ws_base(ws_base)
        if options.token is not None:
            raise ConfigurationError("Bitmusa takes an api key and an auth key, not a token")
        if options.api_key is None or options.auth_key is None:
            raise ConfigurationError("Bitmusa needs an api key and an auth key")
        credentials = bitmusa.Credentials(api_key=options.api_key, auth_key=options.auth_key)

        rest_reachable = await self._reachable("rest reachable", rest)
        ws_reachable = await self._reachable("ws reachable", ws_base)
        async with self._transport() as transport:
            if rest_reachable:
                await self._clock(transport, rest.rstrip("/"), "/")
            else:
                self._add("clock skew", Verdict.SKIP, "the REST host is unreachable")
            key = await self._listen_key(transport, rest, credentials) if rest_reachable else None
            if not rest_reachable:
                self._add("credentials", Verdict.SKIP, "the REST host is unreachable")
            ws = None
            label = ""
            if key is None:
                self._add("ws handshake", Verdict.SKIP, "no listenKey (see credentials)")
            elif not ws_reachable:
                self._add("ws handshake", Verdict.SKIP, "the WebSocket host is unreachable")
            else:
                label = f"{ws_base.rstrip('/')}{bitmusa.WS_PATH_PREFIX}{mask_listen_key(key)}"
                ws, _ = await self._handshake(transport, bitmusa.ws_url(key, ws_base), {}, label)
            if ws is None:
                self._add("frame decoding", Verdict.SKIP, "no WebSocket connection")
                self._add("ping", Verdict.SKIP, "no WebSocket connection")
                return
            async with self._reading(ws) as inbox:
                await self._bitmusa_frame(inbox, bitmusa.Parser(account=options.account))
                await self._protocol_ping(ws, inbox)

    async def _listen_key(
        self, transport: Transport, rest: str, credentials: bitmusa.Credentials
    ) -> str | None:
        request = bitmusa.create_listen_key_request(credentials)
        label = f"POST {rest.rstrip('/')}{bitmusa.LISTEN_KEY_PATH}"
        try:
            reply = await transport.request(rest, request, label=label)
            key = bitmusa.parse_listen_key_response(reply.status, reply.body)
            self._scrubber.add(key)
        except AuthenticationError as exc:
            self._add("credentials", Verdict.FAIL, f"rejected: {exc} (check the api key and the auth key)")
            return None
        except UserStreamError as exc:
            self._add("credentials", Verdict.FAIL, f"the listenKey request failed: {exc}")
            return None
        self._add(
            "credentials",
            Verdict.OK,
            f"listenKey request accepted (key {mask_listen_key(key)}); the key is left open, not DELETEd: "
            "every client of the account shares it, so a DELETE would cut them all off "
            "(an unused key lapses by itself in 60 min)",
        )
        return key

    async def _bitmusa_frame(self, inbox: _Inbox, parser: bitmusa.Parser) -> None:
        wait = self._options.frame_wait
        deadline = self._loop.time() + wait
        while True:
            item = await inbox.next(deadline)
            if item is None:
                self._add(
                    "frame decoding",
                    Verdict.SKIP,
                    f"no frame within {wait:g} s: the account was quiet (run it while the account trades)",
                )
                return
            if isinstance(item, UserStreamError):
                self._add("frame decoding", Verdict.SKIP, f"the connection ended before any frame: {item}")
                return
            if isinstance(item, SignOfLife):
                continue
            kind = "text" if isinstance(item, str) else "binary"
            size = f"{len(item)} {'characters' if isinstance(item, str) else 'bytes'}, {kind}"
            incoming = parser(item)
            if isinstance(incoming, Unknown):
                self._add(
                    "frame decoding",
                    Verdict.WARN,
                    f"first frame ({size}) not understood: {incoming.reason} "
                    "(record it with `userstream record` and report it)",
                )
            else:
                self._add("frame decoding", Verdict.OK, f"first frame ({size}): {_describe(incoming)}")
            return

    async def _protocol_ping(self, ws: WebSocket, inbox: _Inbox) -> None:
        started = self._loop.time()
        try:
            await ws.ping()
        except UserStreamError as exc:
            self._add("ping", Verdict.FAIL, f"the ping could not be sent: {exc}")
            return
        deadline = started + self._options.timeout
        while True:
            item = await inbox.next(deadline)
            if item is None:
                self._add("ping", Verdict.FAIL, f"no pong within {self._options.timeout:g} s")
                return
            if isinstance(item, UserStreamError):
                self._add("ping", Verdict.FAIL, f"the connection ended: {item}")
                return
            if isinstance(item, SignOfLife):
                self._round_trip(self._loop.time() - started, "WebSocket-protocol pong")
                return

    # --- Coinlocally ---

    async def check_coinlocally(self) -> None:
        options = self._options
        ws_url = options.ws_url if options.ws_url is not None else coinlocally.WS_URL
        check_url(ws_url, ("wss", "ws"), "the Coinlocally WebSocket URL")
        ws_url = endpoints.coinlocally_ws_url(ws_url)  # a base or a full URL, as the client reads them
        parsed = check_url(ws_url, ("wss", "ws"), "the Coinlocally WebSocket URL")
        if options.rest_url is not None:
            check_url(options.rest_url, ("https", "http"), "the Coinlocally REST URL")
        if options.auth_key is not None:
            raise ConfigurationError("Coinlocally takes a token or an api key, not an auth key")
        credentials = coinlocally.Credentials(token=options.token, api_key=options.api_key)
        header = credentials.header_name

        rest_reachable = True
        if options.rest_url is not None:  # Coinlocally's user stream needs none; check one if given
            rest_reachable = await self._reachable("rest reachable", options.rest_url)
        ws_reachable = await self._reachable("ws reachable", ws_url)
        async with self._transport() as transport:
            await self._coinlocally_clock(transport, parsed, rest_reachable, ws_reachable)
            ws = None
            refused: HandshakeRejectedError | None = None
            if ws_reachable:
                headers = coinlocally.handshake_headers(credentials)
                ws, refused = await self._handshake(transport, ws_url, headers, ws_url)
            else:
                self._add("ws handshake", Verdict.SKIP, "the WebSocket host is unreachable")
            if ws is None:
                self._add("sub handshake", Verdict.SKIP, "no WebSocket connection")
                if refused is not None and refused.status in (401, 403):
                    self._add(
                        "credentials",
                        Verdict.FAIL,
                        f"Coinlocally refused the {header!r} header (HTTP {refused.status})",
                    )
                else:
                    self._add("credentials", Verdict.SKIP, "no WebSocket connection")
                self._add("gzip decoding", Verdict.SKIP, "no WebSocket connection")
                self._add("ping", Verdict.SKIP, "no WebSocket connection")
                return
            parser = coinlocally.Parser(account=options.account)
            async with self._reading(ws) as inbox:
                subscribed, early_binary = await self._sub(ws, inbox, credentials, parser)
                if subscribed is True:
                    self._add(
                        "credentials", Verdict.OK, f"the {header} was accepted by the handshake and the sub"
                    )
                elif subscribed is False:
                    self._add("credentials", Verdict.FAIL, "Coinlocally refused the sub frame's token")
                else:
                    self._add("credentials", Verdict.SKIP, "the sub did not complete (see sub handshake)")
                if subscribed is not True:
                    self._add("gzip decoding", Verdict.SKIP, "not subscribed")
                    self._add("ping", Verdict.SKIP, "not subscribed")
                    return
                await self._gzip(inbox, parser, early_binary)
                await self._application_ping(ws, inbox, parser)

    async def _coinlocally_clock(
        self, transport: Transport, ws_url: URL, rest_reachable: bool, ws_reachable: bool
    ) -> None:
        rest_url = self._options.rest_url
        if rest_url is not None:
            if rest_reachable:
                await self._clock(transport, rest_url.rstrip("/"), "/")
            else:
                self._add("clock skew", Verdict.SKIP, "the REST host is unreachable")
        elif ws_reachable:
            # The stream's host answers a plain GET too (with an error status): its Date is enough.
            scheme = "https" if ws_url.scheme == "wss" else "http"
            origin = str(URL.build(scheme=scheme, host=ws_url.host or "", port=ws_url.explicit_port))
            await self._clock(transport, origin, ws_url.raw_path_qs)
        else:
            self._add("clock skew", Verdict.SKIP, "the WebSocket host is unreachable")

    async def _sub(
        self,
        ws: WebSocket,
        inbox: _Inbox,
        credentials: coinlocally.Credentials,
        parser: coinlocally.Parser,
    ) -> tuple[bool | None, bytes | None]:
        """Send the sub and wait for its answer: (True accepted / False refused / None unknown, the first
        binary frame if one came meanwhile)."""
        name = "sub handshake"
        timeout = self._options.timeout
        started = self._loop.time()
        try:
            await ws.send_text(coinlocally.sub_frame(credentials))
        except UserStreamError as exc:
            self._add(name, Verdict.FAIL, f"the sub frame could not be sent: {exc}")
            return None, None
        connected = False
        early_binary: bytes | None = None
        while True:
            item = await inbox.next(started + timeout)
            if item is None:
                self._add(name, Verdict.FAIL, f"no {coinlocally.SUB_SUCCESS!r} within {timeout:g} s")
                return None, early_binary
            if isinstance(item, UserStreamError):
                if isinstance(item, PeerClosedError) and is_fatal(item.code):
                    self._add(name, Verdict.FAIL, f"the sub was refused (close code {item.code})")
                    return False, early_binary
                self._add(
                    name, Verdict.FAIL, f"the connection ended before {coinlocally.SUB_SUCCESS!r}: {item}"
                )
                return None, early_binary
            if isinstance(item, SignOfLife):
                continue
            if isinstance(item, bytes) and early_binary is None:
                early_binary = item
            incoming = parser(item)
            if isinstance(incoming, ErrorReply):
                message = self._scrubber(incoming.message)[:_SHOWN_REPLY_CHARS]
                self._add(name, Verdict.FAIL, f"the sub was refused: error {incoming.code}: {message}")
                return False, early_binary
            if not isinstance(incoming, ControlReply):
                continue
            if incoming.text == coinlocally.CONNECT_SUCCESS:
                connected = True
            elif incoming.text == coinlocally.SUB_SUCCESS:
                elapsed = _ms(self._loop.time() - started)
                if connected:
                    self._add(
                        name,
                        Verdict.OK,
                        f"{coinlocally.CONNECT_SUCCESS!r} then {coinlocally.SUB_SUCCESS!r} in {elapsed}",
                    )
                else:
                    self._add(
                        name,
                        Verdict.WARN,
                        f"{coinlocally.SUB_SUCCESS!r} in {elapsed}, without {coinlocally.CONNECT_SUCCESS!r} "
                        "before it (the document shows one)",
                    )
                return True, early_binary

    async def _gzip(self, inbox: _Inbox, parser: coinlocally.Parser, early_binary: bytes | None) -> None:
        if early_binary is not None:
            self._add_check(judge_binary_frame(early_binary, parser))
            return
        wait = self._options.frame_wait
        deadline = self._loop.time() + wait
        while True:
            item = await inbox.next(deadline)
            if item is None:
                self._add(
                    "gzip decoding",
                    Verdict.SKIP,
                    f"no binary frame within {wait:g} s: the account was quiet "
                    "(run it while the account trades)",
                )
                return
            if isinstance(item, UserStreamError):
                self._add(
                    "gzip decoding", Verdict.SKIP, f"the connection ended before a binary frame: {item}"
                )
                return
            if isinstance(item, bytes):
                self._add_check(judge_binary_frame(item, parser))
                return

    async def _application_ping(self, ws: WebSocket, inbox: _Inbox, parser: coinlocally.Parser) -> None:
        started = self._loop.time()
        try:
            await ws.send_text(coinlocally.ping_frame(int(self._options.wall_clock() * 1000)))
        except UserStreamError as exc:
            self._add("ping", Verdict.FAIL, f"the ping could not be sent: {exc}")
            return
        deadline = started + self._options.timeout
        while True:
            item = await inbox.next(deadline)
            if item is None:
                self._add("ping", Verdict.FAIL, f"no pong within {self._options.timeout:g} s")
                return
            if isinstance(item, UserStreamError):
                self._add("ping", Verdict.FAIL, f"the connection ended: {item}")
                return
            if isinstance(item, SignOfLife):
                continue
            if isinstance(parser(item), Pong):
                self._round_trip(self._loop.time() - started, '{"pong": ...}')
                return

    # --- shared steps ---

    def _round_trip(self, seconds: float, what: str) -> None:
        if seconds > SLOW_ROUND_TRIP:
            self._add("ping", Verdict.WARN, f"{what} after {_ms(seconds)}: a slow path")
        else:
            self._add("ping", Verdict.OK, f"{what} in {_ms(seconds)}")

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
            self._add(
                name, Verdict.OK, f"{host}:{port} ({count}): TCP connect to {address} in {_ms(elapsed)}"
            )
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
        self._add("ws handshake", Verdict.OK, f"{label}: upgraded in {_ms(self._loop.time() - started)}")
        return ws, None

    @contextlib.asynccontextmanager
    async def _reading(self, ws: WebSocket) -> AsyncIterator[_Inbox]:
        """Read `ws` in one task for the block's duration; close it afterwards."""
        inbox = _Inbox(ws)
        async with asyncio.TaskGroup() as tasks:
            reader = tasks.create_task(inbox.pump(), name="userstream-doctor:reader")
            try:
                yield inbox
            finally:
                reader.cancel()
                await ws.abort()


# --- the command ---------------------------------------------------------------------------------------


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "doctor",
        help="check reachability, clock, credentials and the stream handshake, one line per check",
        **parser_texts(
            "Check, in the order a stream needs them, everything between this machine and one account's "
            "user data stream: one line per check with OK, WARN, FAIL or SKIP and the reason. Exit status "
            "0 when nothing FAILed, 1 when a check FAILed, 2 for missing credentials, 130 when "
            "interrupted (Ctrl-C). Nothing it prints shows a credential."
            "\n\n" + credentials_paragraph(ENVIRONMENT),
            [
                (
                    "a Bitmusa account in production, its credentials in the environment",
                    "userstream doctor bitmusa",
                ),
                (
                    "alice on the emulator's Coinlocally",
                    "USERSTREAM_COINLOCALLY_TOKEN=alice-coinlocally-token-example userstream doctor "
                    "coinlocally --ws-url ws://127.0.0.1:8765/spotws_user/userData/ws",
                ),
                (
                    "a slow network: more time per step and for the first frame",
                    "userstream doctor coinlocally --timeout 15 --frame-wait 10",
                ),
            ],
        ),
    )
    add_connection_arguments(parser)
    checks = parser.add_argument_group("checks")
    checks.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=5.0,
        metavar="SECONDS",
        help="how long each step may take (default 5)",
    )
    checks.add_argument(
        "--frame-wait",
        type=_positive_seconds,
        default=3.0,
        metavar="SECONDS",
        help="how long to wait for the first data frame (default 3)",
    )


def run(args: argparse.Namespace) -> int:
    def print_check(check: Check) -> None:
        print(check.line(), flush=True)

    try:
        credentials = read_credentials(args)
        options = DoctorOptions(
            exchange=Exchange(args.exchange),
            api_key=credentials.api_key,
            auth_key=credentials.auth_key,
            token=credentials.token,
            rest_url=args.rest_url,
            ws_url=args.ws_url,
            account=args.account,
            timeout=args.timeout,
            frame_wait=args.frame_wait,
            **tls_arguments(args),
        )
        results = asyncio.run(diagnose(options, report=print_check))
    except ConfigurationError as exc:
        print(f"userstream doctor: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C in the middle of a check: the checks so far are printed
        print("userstream doctor: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    counts = {verdict: sum(1 for check in results if check.verdict is verdict) for verdict in Verdict}
    summary = ", ".join(f"{count} {verdict.value}" for verdict, count in counts.items())
    print(f"{len(results)} checks: {summary}", flush=True)
    return 1 if counts[Verdict.FAIL] else 0
