"""What a client needs of an exchange besides its frames: how its stream is opened. Sans-I/O.

This module owns the two ways a user-data stream is opened that the registered exchanges use, as values
of protocol-level functions and constants, so the client runtime (`client.listen_key`,
`client.header_auth`) and `doctor` are written once per way, never per exchange:

- `ListenKeyWire` (Bitmusa): REST calls create, keep alive and close a listenKey (valid for
  `listen_key_validity_ms` after each); the WebSocket's path carries the key; the credentials are an api
  key and an auth key;
- `HeaderWire` (Coinlocally): the WebSocket handshake carries the credential in a header (a token or an
  api key), and the conversation then subscribes with it.

A third exchange that opens its stream one of these ways is one protocol module, one client module
describing it with one of these, and one registry entry; one that opens it another way adds a third class
here and the runtime that performs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from userstream.errors import UserStreamError
from userstream.protocol.client_session import ClientSession
from userstream.protocol.messages import Incoming

__all__ = ["HeaderWire", "ListenKeyWire", "Parse", "ParserFactory", "production_endpoints"]

#: The exchange's frame parser: one frame in, one classified `Incoming` out.
Parse = Callable[[str | bytes], Incoming]


class ParserFactory:
    """Builds an exchange's parser for an account (`quotes` where the exchange needs them to split symbols;
    `max_frame` None: the parser's default)."""

    def __init__(self, build: Callable[[str, Sequence[str] | None, int | None], Parse]) -> None:
        self._build = build

    def __call__(
        self, account: str = "default", *, quotes: Sequence[str] | None = None, max_frame: int | None = None
    ) -> Parse:
        return self._build(account, quotes, max_frame)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenKeyWire:
    """A stream opened with a listenKey that REST calls create, keep alive and close."""

    rest_base: str  # the production REST base
    ws_base: str  # the production WebSocket base
    listen_key_path: str  # the REST path of the listenKey calls
    ws_path_prefix: str  # the WebSocket path before the key
    listen_key_validity_ms: int  # how long a key lives after its creation or keep-alive
    rest_base_of: Callable[[str], str]  # the REST base however the user wrote the URL
    ws_base_of: Callable[[str], str]  # the WebSocket base however the user wrote the URL
    ws_path: Callable[[str], str]  # the WebSocket path of a key
    credentials: Callable[[str, str], Any]  # (api key, auth key) -> the exchange's Credentials
    create_request: Callable[[Any], Any]  # Credentials -> the POST request (an HttpRequest-like value)
    keepalive_request: Callable[[Any], Any]
    close_request: Callable[[Any], Any]
    #: (status, body, *, request, url) -> the key; a typed error otherwise
    parse_listen_key: Callable[..., str]
    #: (status, body, *, request, url) -> None; a typed error otherwise
    parse_ack: Callable[..., None]
    parser: ParserFactory
    #: (parse, *, timings, label, scrub, schedule) -> the client session of one connection
    client_session: Callable[..., ClientSession]
    live_on_connect: bool  # the client session's: live at the handshake
    #: (status, *, label, ws_shown) -> what a refused handshake means (None: transient)
    handshake_refused: Callable[..., UserStreamError | None]
    gzip_frames: bool  # binary frames are gzip (the doctor checks the first one)


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderWire:
    """A stream whose handshake carries the credential (a token or an api key) in a header."""

    ws_url: str  # the production WebSocket URL
    ws_path: str  # the document's path, named in errors
    ws_url_of: Callable[[str], str]  # the full WebSocket URL however the user wrote it
    credentials: Callable[[str | None, str | None], Any]  # (token, api key) -> the exchange's Credentials
    header_name: Callable[[Any], str]  # which header the credentials travel in
    handshake_headers: Callable[[Any], Mapping[str, str]]
    parser: ParserFactory
    #: (parse, credentials, *, timings, label, scrub) -> the client session of one connection
    client_session: Callable[..., ClientSession]
    live_on_connect: bool  # the client session's: False when a sub must be answered first
    #: (status, *, label, header) -> what a refused handshake means (None: transient)
    handshake_refused: Callable[..., UserStreamError | None]
    connect_success: str  # the greeting before the sub's answer (the doctor notes its absence)
    sub_success: str  # the reply that makes the connection live
    gzip_frames: bool  # binary frames are gzip (the doctor checks the first one)


def production_endpoints(wire: ListenKeyWire | HeaderWire) -> tuple[str | None, str]:
    """The exchange's own (REST base, WebSocket URL or base): what a client uses when given none. A stream
    opened with the credential in its handshake needs no REST endpoint (None)."""
    if isinstance(wire, ListenKeyWire):
        return wire.rest_base, wire.ws_base
    return None, wire.ws_url
