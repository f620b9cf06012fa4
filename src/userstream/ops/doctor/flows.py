"""The doctor's flows: the checks of one exchange in the order its stream takes them, and `diagnose`.

This module owns the order of the checks for each way a stream is opened (the registry's `client` field,
`protocol.client_wire`), never for an exchange by name:

- a listenKey from REST (Bitmusa): `rest reachable`, `ws reachable`, `clock skew` (the REST host's Date),
  `credentials` (the listenKey request, POST; the key is left open, never DELETEd: an account has one
  listenKey shared by every client, so a DELETE would cut off every bot on the account), `ws handshake`
  (with the key), `frame decoding`, `ping`;
- the credential in the handshake's header (Coinlocally): `rest reachable` (only when a REST URL is
  given), `ws reachable`, `clock skew` (the REST host's, else the stream host's Date), `ws handshake`,
  `sub handshake`, `credentials` (the header and the sub's token both accepted), `gzip decoding`, `ping`.

The first FAIL is the step to fix; a check that cannot run because an earlier one failed is SKIPped and
says which.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from yarl import URL

from userstream.client.rest import check_url
from userstream.client.status import mask_listen_key
from userstream.client.transport import Transport
from userstream.client.websocket import HandshakeRejectedError
from userstream.errors import AuthenticationError, ConfigurationError, UserStreamError
from userstream.ops.doctor.checks import Check, DoctorOptions, Verdict
from userstream.ops.doctor.stream import StreamChecks
from userstream.protocol.client_wire import HeaderWire, ListenKeyWire
from userstream.protocol.registry import spec

__all__ = ["diagnose"]


async def diagnose(options: DoctorOptions, report: Callable[[Check], object] | None = None) -> list[Check]:
    """Run every check of `options.exchange` in order; each result also goes to `report` as it is known.

    Raises ConfigurationError, before any check, for missing credentials or unusable URLs.
    """
    entry = spec(options.exchange)
    wire = entry.client
    if isinstance(wire, ListenKeyWire):
        listen_key_flow = _ListenKeyFlow(options, report)
        await listen_key_flow.check(entry.title, wire)
        return listen_key_flow.results
    header_flow = _HeaderFlow(options, report)
    await header_flow.check(entry.title, wire)
    return header_flow.results


class _ListenKeyFlow(StreamChecks):
    async def check(self, title: str, wire: ListenKeyWire) -> None:
        options = self._options
        rest = options.rest_url if options.rest_url is not None else wire.rest_base
        ws_base = options.ws_url if options.ws_url is not None else wire.ws_base
        check_url(rest, ("https", "http"), f"the {title} REST URL")
        check_url(ws_base, ("wss", "ws"), f"the {title} WebSocket URL")
        # a base or a full URL, as the client reads them (protocol.endpoints)
        rest, ws_base = wire.rest_base_of(rest), wire.ws_base_of(ws_base)
        if options.token is not None:
            raise ConfigurationError(f"{title} takes an api key and an auth key, not a token")
        if options.api_key is None or options.auth_key is None:
            raise ConfigurationError(f"{title} needs an api key and an auth key")
        credentials = wire.credentials(options.api_key, options.auth_key)

        rest_reachable = await self._reachable("rest reachable", rest)
        ws_reachable = await self._reachable("ws reachable", ws_base)
        async with self._transport() as transport:
            if rest_reachable:
                await self._clock(transport, rest.rstrip("/"), "/")
            else:
                self._add("clock skew", Verdict.SKIP, "the REST host is unreachable")
            key = await self._listen_key(transport, wire, rest, credentials) if rest_reachable else None
            if not rest_reachable:
                self._add("credentials", Verdict.SKIP, "the REST host is unreachable")
            ws = None
            label = ""
            if key is None:
                self._add("ws handshake", Verdict.SKIP, "no listenKey (see credentials)")
            elif not ws_reachable:
                self._add("ws handshake", Verdict.SKIP, "the WebSocket host is unreachable")
            else:
                label = f"{ws_base.rstrip('/')}{wire.ws_path_prefix}{mask_listen_key(key)}"
                ws, _ = await self._handshake(transport, ws_base.rstrip("/") + wire.ws_path(key), {}, label)
            if ws is None:
                self._add("frame decoding", Verdict.SKIP, "no WebSocket connection")
                self._add("ping", Verdict.SKIP, "no WebSocket connection")
                return
            session = wire.client_session(
                wire.parser(options.account), timings=self._timings(), label=label, scrub=self._scrubber
            )
            async with self._reading(ws) as inbox:
                session.start(self._loop.time())
                await self._perform(ws, session)  # nothing to send: live at the handshake
                await self._first_frame(ws, inbox, session)
                await self._ping(ws, inbox, session)

    async def _listen_key(
        self, transport: Transport, wire: ListenKeyWire, rest: str, credentials: Any
    ) -> str | None:
        request = wire.create_request(credentials)
        label = f"POST {rest.rstrip('/')}{wire.listen_key_path}"
        try:
            reply = await transport.request(rest, request, label=label)
            key = wire.parse_listen_key(reply.status, reply.body)
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


class _HeaderFlow(StreamChecks):
    async def check(self, title: str, wire: HeaderWire) -> None:
        options = self._options
        ws_url = options.ws_url if options.ws_url is not None else wire.ws_url
        check_url(ws_url, ("wss", "ws"), f"the {title} WebSocket URL")
        ws_url = wire.ws_url_of(ws_url)  # a base or a full URL, as the client reads them
        parsed = check_url(ws_url, ("wss", "ws"), f"the {title} WebSocket URL")
        if options.rest_url is not None:
            check_url(options.rest_url, ("https", "http"), f"the {title} REST URL")
        if options.auth_key is not None:
            raise ConfigurationError(f"{title} takes a token or an api key, not an auth key")
        credentials = wire.credentials(options.token, options.api_key)
        header = wire.header_name(credentials)

        rest_reachable = True
        if options.rest_url is not None:  # the user stream needs none; check one if given
            rest_reachable = await self._reachable("rest reachable", options.rest_url)
        ws_reachable = await self._reachable("ws reachable", ws_url)
        async with self._transport() as transport:
            await self._stream_host_clock(transport, parsed, rest_reachable, ws_reachable)
            ws = None
            refused: HandshakeRejectedError | None = None
            if ws_reachable:
                headers = dict(wire.handshake_headers(credentials))
                ws, refused = await self._handshake(transport, ws_url, headers, ws_url)
            else:
                self._add("ws handshake", Verdict.SKIP, "the WebSocket host is unreachable")
            if ws is None:
                self._no_websocket(title, wire, header, refused)
                return
            parse = wire.parser(options.account)
            session = wire.client_session(
                parse, credentials, timings=self._timings(), label=ws_url, scrub=self._scrubber
            )
            async with self._reading(ws) as inbox:
                subscribed, early_binary = await self._subscribe(
                    ws, inbox, session, connect_success=wire.connect_success, sub_success=wire.sub_success
                )
                if subscribed is True:
                    self._add(
                        "credentials", Verdict.OK, f"the {header} was accepted by the handshake and the sub"
                    )
                elif subscribed is False:
                    self._add("credentials", Verdict.FAIL, f"{title} refused the sub frame's token")
                else:
                    self._add("credentials", Verdict.SKIP, "the sub did not complete (see sub handshake)")
                if subscribed is not True:
                    self._add("gzip decoding", Verdict.SKIP, "not subscribed")
                    self._add("ping", Verdict.SKIP, "not subscribed")
                    return
                if wire.gzip_frames:
                    await self._first_binary_frame(ws, inbox, session, parse, early_binary)
                else:
                    await self._first_frame(ws, inbox, session)
                await self._ping(ws, inbox, session)

    def _no_websocket(
        self, title: str, wire: HeaderWire, header: str, refused: HandshakeRejectedError | None
    ) -> None:
        self._add("sub handshake", Verdict.SKIP, "no WebSocket connection")
        judged = None if refused is None else wire.handshake_refused(refused.status, label="", header=header)
        if refused is not None and isinstance(judged, AuthenticationError):
            self._add(
                "credentials", Verdict.FAIL, f"{title} refused the {header!r} header (HTTP {refused.status})"
            )
        else:
            self._add("credentials", Verdict.SKIP, "no WebSocket connection")
        self._add("gzip decoding", Verdict.SKIP, "no WebSocket connection")
        self._add("ping", Verdict.SKIP, "no WebSocket connection")

    async def _stream_host_clock(
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
