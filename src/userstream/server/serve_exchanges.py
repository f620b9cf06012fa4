"""The one table of serve's per-exchange modules: what serve itself (not the wire) does per exchange.

Wire knowledge (frames, paths, REST shapes) lives in protocol/ and is read through the registry
(protocol/registry.py). What is serve's own, per exchange, lives in one module per exchange, chosen here:
its REST routes (authentication, the listenKey, the snapshots) and the body of a 429 on its paths. A third
exchange is one more module and one more line below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from aiohttp import web

from userstream.events import Exchange
from userstream.server import bitmusa_routes, coinlocally_routes
from userstream.server.exchange import ExchangeServer

__all__ = ["SERVE_EXCHANGES", "ServeExchange", "add_rest_routes"]


@dataclass(frozen=True, slots=True)
class ServeExchange:
    """serve's own part of one exchange."""

    #: Register the exchange's REST routes on the app.
    add_routes: Callable[[web.Application, ExchangeServer], None]
    #: (path, message) -> the body of a 429 (too many failed authentications) if the path is this exchange's.
    throttled_body: Callable[[str, str], bytes | None]


SERVE_EXCHANGES: Final[Mapping[Exchange, ServeExchange]] = MappingProxyType(
    {
        Exchange.BITMUSA: ServeExchange(bitmusa_routes.add_routes, bitmusa_routes.throttled_body),
        Exchange.COINLOCALLY: ServeExchange(coinlocally_routes.add_routes, coinlocally_routes.throttled_body),
    }
)


def add_rest_routes(app: web.Application, server: ExchangeServer) -> None:
    """Every exchange's REST routes on `app`."""
    for entry in SERVE_EXCHANGES.values():
        entry.add_routes(app, server)
