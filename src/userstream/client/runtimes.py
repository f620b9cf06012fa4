"""Which runtime each registered exchange's stream gets: `open_session(exchange, ...)`, the one place.

This module owns the choice of an account's `client.session.Session` for an exchange, and the checks of
what `connect()` was given for it (credentials, URLs), made before anything is opened. Each runtime holds
only I/O (REST calls, the handshake); what the exchange's frames, closes and refusals mean is in its
sans-I/O client session under protocol/.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import MappingProxyType
from typing import Final

from userstream.client.bitmusa import BitmusaSession
from userstream.client.coinlocally import CoinlocallySession
from userstream.client.options import StreamOptions
from userstream.client.session import Session
from userstream.client.transport import Transport
from userstream.events import Exchange

__all__ = ["open_session"]

_Opener = Callable[..., Session]

#: The runtime of each exchange's stream (the registry, protocol.registry, holds everything else).
_RUNTIMES: Final[MappingProxyType[Exchange, _Opener]] = MappingProxyType(
    {runtime.exchange: runtime.open for runtime in (BitmusaSession, CoinlocallySession)}
)


def open_session(
    exchange: Exchange,
    *,
    transport: Transport,
    options: StreamOptions,
    api_key: str | None,
    auth_key: str | None,
    token: str | None,
    rest_url: str | None,
    ws_url: str | None,
) -> Session:
    """The `Session` of one account's stream on `exchange`; ConfigurationError for unusable arguments."""
    return _RUNTIMES[exchange](
        transport=transport,
        options=options,
        api_key=api_key,
        auth_key=auth_key,
        token=token,
        rest_url=rest_url,
        ws_url=ws_url,
        clock=asyncio.get_running_loop().time,
    )
