"""A listenKey stream (Bitmusa) at runtime: the listenKey's REST calls (create, keep alive, optionally close)
and its WebSocket.

This module owns `ListenKeySession`, the I/O of one account's stream on an exchange the registry describes
with a `protocol.client_wire.ListenKeyWire`. The decisions are sans-I/O: `protocol.listen_key.
ListenKeySchedule` holds the key and says when its next keepalive is due (a deadline this module sleeps
until), and each connection gets the exchange's client session (`protocol.bitmusa_client`: what a close or a
refused handshake means); the wire (request shapes, reply judgement, frame parsing, close codes) belongs to
the exchange's protocol module. This file performs the requests at the times they say:

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
- REST replies are judged by the protocol module with the request and its URL, so every error names the
  method, the URL (no query string) and the HTTP status, and quotes the server with our credentials
  scrubbed out;
- on shutdown the key is DELETEd only with `close_key_on_exit=True`: DELETE would cut off every other
  client of the account that shares the key.

Bitmusa's stream has no application-level ping, so its client session asks for protocol-level WebSocket
pings, whose pongs count as frames for the idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from typing import Any

from userstream.client.backoff import Action, Backoff, RetryPolicy
from userstream.client.rest import carrying_retry_after, check_url
from userstream.client.session import OpenArguments, SessionHooks
from userstream.client.status import State, mask_listen_key
from userstream.client.transport import Transport
from userstream.client.websocket import HandshakeRejectedError, WebSocket
from userstream.errors import ConfigurationError, UserStreamError
from userstream.events import Exchange
from userstream.protocol import endpoints
from userstream.protocol.client_session import ClientSession, Timings
from userstream.protocol.client_wire import ListenKeyWire
from userstream.protocol.listen_key import ListenKeySchedule
from userstream.protocol.registry import ExchangeSpec

__all__ = ["ListenKeySession"]

_log = logging.getLogger("userstream.client")


class ListenKeySession:
    """One account's listenKey and the WebSockets that use it. Driven by `stream.UserStream`."""

    @classmethod
    def open(
        cls,
        entry: ExchangeSpec,
        wire: ListenKeyWire,
        arguments: OpenArguments,
    ) -> ListenKeySession:
        """The session `connect()`'s arguments describe; ConfigurationError for unusable ones."""
        title = entry.title
        transport, options = arguments.transport, arguments.options
        api_key, auth_key, token = arguments.api_key, arguments.auth_key, arguments.token
        rest_url, ws_url = arguments.rest_url, arguments.ws_url
        if token is not None:
            raise ConfigurationError(f"{title} takes api_key and auth_key, not a token")
        if api_key is None or auth_key is None:
            missing = " and ".join(
                name for name, value in (("api_key", api_key), ("auth_key", auth_key)) if value is None
            )
            raise ConfigurationError(f"{title} needs an api_key and an auth_key ({missing} missing)")
        rest = rest_url if rest_url is not None else wire.rest_base
        wss = ws_url if ws_url is not None else wire.ws_base
        check_url(rest, ("https", "http"), f"the {title} REST URL")
        check_url(wss, ("wss", "ws"), f"the {title} WebSocket URL")
        return cls(
            entry.exchange,
            wire,
            transport=transport,
            credentials=wire.credentials(api_key, auth_key),
            account=options.account,
            rest_url=rest,
            ws_url=wss,
            keepalive_interval=options.keepalive_interval,
            close_key_on_exit=options.close_key_on_exit,
            auth_attempts=options.auth_attempts,
            make_backoff=options.make_backoff,
            max_frame=options.max_frame,
            clock=asyncio.get_running_loop().time,
        )

    def __init__(
        self,
        exchange: Exchange,
        wire: ListenKeyWire,
        *,
        transport: Transport,
        credentials: Any,
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
        self.exchange = exchange
        self._wire = wire
        self._transport = transport
        self._credentials = credentials
        self._rest_url = wire.rest_base_of(rest_url)
        self._ws_url = wire.ws_base_of(ws_url)
        #: where the listenKey calls go, as errors and status reasons may show it
        self._rest_shown = endpoints.shown(self._rest_url) + wire.listen_key_path
        self._ws_shown = endpoints.shown(self._ws_url) + wire.ws_path_prefix
        self.live_on_connect = wire.live_on_connect
        self._close_key_on_exit = close_key_on_exit
        self._auth_attempts = auth_attempts
        self._make_backoff = make_backoff
        self._clock = clock
        self._parser = wire.parser(account, max_frame=max_frame)
        self._schedule = ListenKeySchedule(keepalive_interval=keepalive_interval)
        self._key_changed = asyncio.Event()
        self._hooks: SessionHooks | None = None
        self._create_lock = asyncio.Lock()

    @property
    def keepalives(self) -> int:
        return self._schedule.keepalives

    @property
    def listen_key_hint(self) -> str | None:
        key = self._schedule.key
        return None if key is None else mask_listen_key(key)

    def new_client_session(
        self, *, timings: Timings, label: str, scrub: Callable[[str], str]
    ) -> ClientSession:
        return self._wire.client_session(
            self._parser, timings=timings, label=label, scrub=scrub, schedule=self._schedule
        )

    def _rest_label(self, method: str) -> str:
        return f"{method} {self._rest_shown}"

    async def open_websocket(self) -> WebSocket:
        key = await self._listen_key()
        label = f"{self._ws_shown}{mask_listen_key(key)}"
        url = endpoints.join(self._ws_url, self._wire.ws_path(key))
        try:
            return await self._transport.websocket(url, {}, label=label)
        except HandshakeRejectedError as exc:
            # The server refuses an unknown or expired key at the handshake; 5xx and 429 are transient.
            refused = self._wire.handshake_refused(exc.status, label=label, ws_shown=self._ws_shown)
            if refused is None:
                raise
            raise refused from None

    def forget_listen_key(self, reason: str) -> None:
        if self._schedule.forget(reason):
            self._key_changed.set()

    async def _listen_key(self) -> str:
        async with self._create_lock:  # a rotation and a reconnect must not both create keys
            if self._schedule.key is not None:
                return self._schedule.key
            request = self._wire.create_request(self._credentials)
            reply = await self._transport.request(self._rest_url, request, label=self._rest_label("POST"))
            # A refusal may quote the server's words (scrubbed); a 429 carries its Retry-After.
            with self._transport.scrubber.errors(), carrying_retry_after(reply):
                key: str = self._wire.parse_listen_key(
                    reply.status, reply.body, request=request, url=self._rest_shown
                )
            self._transport.scrubber.add(key)  # from now on, an echo of this key is hidden too
            renewed_because = self._schedule.created(key, self._clock())
            self._key_changed.set()
            if renewed_because is not None and self._hooks is not None:
                self._hooks.emit(State.KEY_RENEWED, reason=renewed_because, listen_key=mask_listen_key(key))
            return key

    async def maintain(self, hooks: SessionHooks) -> None:
        """The keepalive loop: PUT when the schedule says it is due, retried with backoff when it fails."""
        self._hooks = hooks
        schedule = self._schedule
        retry = RetryPolicy(self._make_backoff(), auth_attempts=self._auth_attempts)  # client/backoff.py
        while True:
            self._key_changed.clear()
            due = schedule.next_deadline()
            if await self._wait_key_change(None if math.isinf(due) else due):
                continue  # a new key (or none) starts a new schedule
            try:
                await self._keepalive()
            except UserStreamError as exc:
                action = retry.judge(exc)  # a rejected credential: the same bounded attempts as a connection
                if action is Action.NEW_LISTEN_KEY:
                    self.forget_listen_key(f"keepalive: {exc}")
                    await hooks.listen_key_lost(exc)
                    continue
                if action is Action.FATAL:
                    hooks.fatal(exc)
                    return
                delay = retry.delay(exc)  # at least a RateLimitedError's retry_after
                hooks.emit(State.KEEPALIVE_FAILED, reason=str(exc), attempt=retry.attempts, delay=delay)
                schedule.retry_at(self._clock() + delay)
            else:
                retry.succeeded()

    async def _keepalive(self) -> None:
        request = self._wire.keepalive_request(self._credentials)
        reply = await self._transport.request(self._rest_url, request, label=self._rest_label("PUT"))
        # No Retry-After here: a keepalive that waited out a long one would let the key lapse.
        with self._transport.scrubber.errors():
            self._wire.parse_ack(reply.status, reply.body, request=request, url=self._rest_shown)
        self._schedule.extended(self._clock())

    async def _wait_key_change(self, until: float | None) -> bool:
        """Sleep until `until` (forever if None); True if the key changed meanwhile."""
        timeout = None if until is None else max(0.0, until - self._clock())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._key_changed.wait()
        return self._key_changed.is_set()

    async def close(self) -> None:
        if not self._close_key_on_exit or self._schedule.key is None:
            return
        request = self._wire.close_request(self._credentials)
        try:
            reply = await self._transport.request(self._rest_url, request, label=self._rest_label("DELETE"))
            with self._transport.scrubber.errors():
                self._wire.parse_ack(reply.status, reply.body, request=request, url=self._rest_shown)
        except UserStreamError as exc:
            _log.warning("the listenKey could not be closed on exit: %s", exc)
        else:
            self._schedule.closed()
