"""Which runtime a registered exchange's stream gets: `open_session(exchange, arguments)`, the one place.

This module owns the choice of an account's `client.session.Session`, made from the registry's `client`
field (how the exchange's stream is opened: `client.listen_key` for a listenKey from REST,
`client.header_auth` for a credential in the handshake's header), never from the exchange's name. Each
runtime holds only I/O (REST calls, the handshake); what the exchange's frames, closes and refusals mean is
in its sans-I/O client session under protocol/.
"""

from __future__ import annotations

from userstream.client.header_auth import HeaderSession
from userstream.client.listen_key import ListenKeySession
from userstream.client.session import OpenArguments, Session
from userstream.events import Exchange
from userstream.protocol.client_wire import ListenKeyWire
from userstream.protocol.registry import spec

__all__ = ["open_session"]


def open_session(exchange: Exchange, arguments: OpenArguments) -> Session:
    """The `Session` of one account's stream on `exchange`, by how the registry says its stream is opened;
    ConfigurationError for unusable arguments."""
    entry = spec(exchange)
    wire = entry.client
    if isinstance(wire, ListenKeyWire):
        return ListenKeySession.open(entry, wire, arguments)
    return HeaderSession.open(entry, wire, arguments)
