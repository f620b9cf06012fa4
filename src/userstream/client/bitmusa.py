"""Bitmusa at runtime: the listenKey's life (create, keep alive, renew, optionally close) and its WebSocket.

This module owns `BitmusaSession` and `BitmusaDialect`. The wire (request shapes, reply judgement, frame
parsing, close codes) belongs to `userstream.protocol.bitmusa` and `protocol.close`; this file only
performs those requests at the right times:

- a listenKey is created (POST) when a connection needs one and none is held; POST returns the account's
  active key, so every connection of the stream (and every other process on the account) shares it;
- a keepalive (PUT) is sent every `keepalive_interval` after the key was created or last extended; a failed
  keepalive is retried with backoff (the key stays valid for 60 minutes, so there are many chances before it
  can lapse); a keepalive that says the key is gone drops every connection so they reconnect with a new key;
- a key reported invalid (by a reply, a handshake refused with a 4xx other than 429, or a close with
  LISTEN_KEY_EXPIRED/DELETED) is forgotten, the next connection creates a new one, and a `key_renewed`
  status reports it; a handshake 404 is also an `EndpointNotFoundError` (a wrong URL on a stream never live);
- a close with a 4000-4999 code that is not ours gets one reconnect with a fresh key (it may be the
  exchange's own word for an expired key); the same close on that key again is a plain failure, retried
  with backoff on the same key;
- REST replies are judged by `protocol.bitmusa` with the request and its URL, so every error names the
  method, the URL (no query string) and the HTTP status, and quotes the server with our credentials
  scrubbed out;
- on shutdown the key is DELETEd only with `close_key_on_exit=True`: DELETE would cut off every other
  client of the account that shares the key.

Bitmusa's stream has no application-level ping, so liveness uses protocol-level WebSocket pings, whose
pongs count as frames for the idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from userstream.client.backoff import Action, Backoff, RetryPolicy
from userstream.client.rest import carrying_retry_after
from userstream.client.session import SessionHooks
from userstream.client.status import State, mask_listen_key
from userstream.client.transport import Transport
from userstream.client.websocket import HandshakeRejectedError, PeerClosedError, WebSocket
from userstream.errors import (
    EndpointNotFoundError,
    ListenKeyInvalidError,
    RemoteProtocolError,
    UserStreamError,
)
from userstream.events import Exchange
from userstream.protocol import bitmusa, endpoints
from userstream.protocol.close import CloseCode, needs_new_listen_key
from userstream.protocol.messages import ControlReply, ErrorReply, Incoming

__all__ = ["BitmusaDialect", "BitmusaSession"]

_log = logging.getLogger("userstream.client")


class BitmusaDialect:
    """Frames on a Bitmusa stream: data only, live as soon as the handshake is done."""

    exchange = Exchange.BITMUSA
    live_on_connect = True

    def __init__(
        self,
        parser: bitmusa.Parser,
        unknown_close: Callable[[PeerClosedError], UserStreamError] | None = None,
    ) -> None:
        #: The exchange's parser itself, not a method around it: it runs once per frame.
        self.parse: Callable[[str | bytes], Incoming] = parser
        self._unknown_close = unknown_close

    def opening_frames(self) -> Sequence[str]:
        return ()

    def is_live_reply(self, reply: ControlReply) -> bool:
        return False

    def ping_frame(self, now_ms: int) -> str | None:
        return None  # protocol-level ping: Bitmusa documents no application ping

    def pong_frame(self, timestamp: int) -> str | None:
        return None  # Bitmusa's parser never yields a Ping

    def error_for_reply(self, reply: ErrorReply) -> UserStreamError:
        return RemoteProtocolError(f"Bitmusa sent an unexpected error reply (code {reply.code})")

    def error_for_close(self, closed: PeerClosedError) -> UserStreamError:
        if needs_new_listen_key(closed.code):
            what = "expired" if closed.code == CloseCode.LISTEN_KEY_EXPIRED else "was deleted"
            where = f"{closed.label}: " if closed.label else ""
            return ListenKeyInvalidError(f"{where}the listenKey {what} (close code {closed.code})")
        code = closed.code
        unknown = code is not None and 4000 <= code <= 4999 and code not in _PLAIN_CLOSES
        if unknown and self._unknown_close is not None:
            return self._unknown_close(closed)
        return closed


#: Our own 4xxx closes that a reconnect with the same key answers (docs/server.md).
_PLAIN_CLOSES = frozenset({CloseCode.MAX_AGE, CloseCode.SLOW_CONSUMER})


class _KeyOrEndpointNotFoundError(ListenKeyInvalidError, EndpointNotFoundError):
    """A handshake refused with 404: the listenKey is unknown there (get a new one), or, if it never
    worked, the URL is wrong (the supervisor counts it as an EndpointNotFoundError)."""


class BitmusaSession:
    """One account's listenKey and the WebSockets that use it. Driven by `stream.UserStream`."""

    exchange = Exchange.BITMUSA

    def __init__(
        self,
        *,
        transport: Transport,
        credentials: bitmusa.Credentials,
        account: str,
        rest_url: str,
        ws_url: str,
        keepalive_interval: float,
        close_key_on_exit: bool,
        auth_attempts: int,
        make_backoff: Callable[[], Backoff],
        max_frame: int,
        clock: Callable[[], float],
    ) -> None:
        self._transport = transport
        self._credentials = credentials
        self._rest_url = endpoints.bitmusa_rest_base(rest_url)
        self._ws_url = endpoints.bitmusa_ws_base(ws_url)
        #: where the listenKey calls go, as errors and status reasons may show it
        self._rest_shown = endpoints.shown(self._rest_url) + bitmusa.LISTEN_KEY_PATH
        self._ws_shown = endpoints.shown(self._ws_url) + bitmusa.WS_PATH_PREFIX
        self._keepalive_interval = keepalive_interval
        self._close_key_on_exit = close_key_on_exit
        self._auth_attempts = auth_attempts
        self._make_backoff = make_backoff
        self._clock = clock
        self.dialect = BitmusaDialect(
            bitmusa.Parser(account=account, max_frame=max_frame), unknown_close=self._unknown_close
        )
        self._renewing_for_close = False  # the next key is fetched because of an unknown 4xxx close
        self._key_renewed_for_close: str | None = None  # ... and this is that key
        self._key: str | None = None
        self._key_extended_at = 0.0
        self._forgotten_because: str | None = None
        self._key_changed = asyncio.Event()
        self._hooks: SessionHooks | None = None
        self._create_lock = asyncio.Lock()
        self.keepalives = 0

    @property
    def listen_key_hint(self) -> str | None:
        return None if self._key is None else mask_listen_key(self._key)

    def _rest_label(self, method: str) -> str:
        return f"{method} {self._rest_shown}"

    async def open_websocket(self) -> WebSocket:
        key = await self._listen_key()
        label = f"{self._ws_shown}{mask_listen_key(key)}"
        url = endpoints.join(self._ws_url, bitmusa.ws_path(key))
        try:
            return await self._transport.websocket(url, {}, label=label)
        except HandshakeRejectedError as exc:
            # The server refuses an unknown or expired key at the handshake; 5xx and 429 are transient.
            if exc.status == 404:
                raise _KeyOrEndpointNotFoundError(
                    f"{label}: WebSocket handshake refused with HTTP 404 (an unknown listenKey, or no "
                    "Bitmusa stream at this URL)",
                    url=f"{self._ws_shown}<listenKey>",
                    expected=f"{bitmusa.WS_PATH_PREFIX}<listenKey>",
                ) from None
            if 400 <= exc.status < 500 and exc.status != 429:
                raise ListenKeyInvalidError(
                    f"{label}: the server refused the listenKey (HTTP {exc.status})"
                ) from None
            raise

    def ended_before_live(self, ending: UserStreamError) -> UserStreamError:
        return ending  # a Bitmusa connection is live at its handshake

    def _unknown_close(self, closed: PeerClosedError) -> UserStreamError:
        """A 4xxx close code that is not ours: one reconnect with a fresh key, then a plain failure."""
        if self._key is not None and self._key == self._key_renewed_for_close:
            return closed
        self._renewing_for_close = True
        return ListenKeyInvalidError(f"{closed} (an unknown close code: trying once with a fresh listenKey)")

    def forget_listen_key(self, reason: str) -> None:
        if self._key is not None:
            self._key = None
            self._forgotten_because = reason
            self._key_changed.set()

    async def _listen_key(self) -> str:
        async with self._create_lock:  # a rotation and a reconnect must not both create keys
            if self._key is not None:
                return self._key
            request = bitmusa.create_listen_key_request(self._credentials)
            reply = await self._transport.request(self._rest_url, request, label=self._rest_label("POST"))
            # A refusal may quote the server's words (scrubbed); a 429 carries its Retry-After.
            with self._transport.scrubber.errors(), carrying_retry_after(reply):
                key = bitmusa.parse_listen_key_response(
                    reply.status, reply.body, request=request, url=self._rest_shown
                )
            self._transport.scrubber.add(key)  # from now on, an echo of this key is hidden too
            self._key = key
            self._key_renewed_for_close = key if self._renewing_for_close else None
            self._renewing_for_close = False
            self._key_extended_at = self._clock()
            self._key_changed.set()
            if self._forgotten_because is not None and self._hooks is not None:
                self._hooks.emit(
                    State.KEY_RENEWED,
                    reason=self._forgotten_because,
                    listen_key=mask_listen_key(key),
                )
            self._forgotten_because = None
            return key

    async def maintain(self, hooks: SessionHooks) -> None:
        """The keepalive loop: PUT every `keepalive_interval`, retried with backoff when it fails."""
        self._hooks = hooks
        retry = RetryPolicy(self._make_backoff(), auth_attempts=self._auth_attempts)  # client/backoff.py
        retry_at: float | None = None
        while True:
            self._key_changed.clear()
            if self._key is None:
                await self._key_changed.wait()
                retry_at = None
                continue
            due = self._key_extended_at + self._keepalive_interval if retry_at is None else retry_at
            if await self._wait_key_change(due):
                retry_at = None  # a new key starts a new schedule from its creation
                continue
            try:
                await self._keepalive()
            except UserStreamError as exc:
                action = retry.judge(exc)  # a rejected credential: the same bounded attempts as a connection
                if action is Action.NEW_LISTEN_KEY:
                    self.forget_listen_key(f"keepalive: {exc}")
                    await hooks.listen_key_lost(exc)
                    retry_at = None
                    continue
                if action is Action.FATAL:
                    hooks.fatal(exc)
                    return
                delay = retry.delay(exc)  # at least the server's Retry-After
                hooks.emit(State.KEEPALIVE_FAILED, reason=str(exc), attempt=retry.attempts, delay=delay)
                retry_at = self._clock() + delay
            else:
                retry.succeeded()
                retry_at = None

    async def _keepalive(self) -> None:
        request = bitmusa.keepalive_request(self._credentials)
        reply = await self._transport.request(self._rest_url, request, label=self._rest_label("PUT"))
        # No Retry-After here: a keepalive that waited out a long one would let the key lapse.
        with self._transport.scrubber.errors():
            bitmusa.parse_ack_response(reply.status, reply.body, request=request, url=self._rest_shown)
        self._key_extended_at = self._clock()
        self.keepalives += 1

    async def _wait_key_change(self, until: float | None) -> bool:
        """Sleep until `until` (forever if None); True if the key changed meanwhile."""
        timeout = None if until is None else max(0.0, until - self._clock())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._key_changed.wait()
        return self._key_changed.is_set()

    async def close(self) -> None:
        if not self._close_key_on_exit or self._key is None:
            return
        request = bitmusa.close_listen_key_request(self._credentials)
        try:
            reply = await self._transport.request(self._rest_url, request, label=self._rest_label("DELETE"))
            with self._transport.scrubber.errors():
                bitmusa.parse_ack_response(reply.status, reply.body, request=request, url=self._rest_shown)
        except UserStreamError as exc:
            _log.warning("the listenKey could not be closed on exit: %s", exc)
        else:
            self._key = None
