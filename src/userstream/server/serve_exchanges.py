"""The one table of serve's per-exchange modules: what serve itself (not the wire) does per exchange.

Wire knowledge (frames, paths, REST shapes, how a handshake names its account, session styles and their
variants) lives in protocol/ and is read through the registry (protocol/registry.py): app.py's user-stream
routes and exchange.py's credential lookup are generic over it. What is serve's own per exchange, and
cannot be protocol-level because it is aiohttp handlers, lives in one module per exchange (bitmusa_routes.py,
coinlocally_routes.py), chosen here: its REST routes (authentication, the listenKey, the snapshots), the
body of a 429 on its paths, and the middleware of its HTTP-side variants (Bitmusa's error bodies). This is
the only serve-side table; a third exchange is one more module and one more line in `SERVE_EXCHANGES`, and
a registry entry without one is refused when serve is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from userstream.errors import LocalProtocolError
from userstream.events import Exchange
from userstream.protocol.registry import REGISTRY
from userstream.server import bitmusa_routes, coinlocally_routes
from userstream.server.exchange import ExchangeServer
from userstream.server.variants import Variants, snapshot_numbers_middleware

__all__ = ["SERVE_EXCHANGES", "ServeExchange", "add_rest_routes", "variant_middlewares"]


@dataclass(frozen=True, slots=True)
class ServeExchange:
    """serve's own part of one exchange."""

    #: Register the exchange's REST routes on the app.
    add_routes: Callable[[web.Application, ExchangeServer], None]
    #: (path, message) -> the body of a 429 (too many failed authentications) if the path is this exchange's.
    throttled_body: Callable[[str, str], bytes | None]
    #: The middleware rewriting the exchange's HTTP replies as the run's variants say (None: none needed).
    variant_middleware: Callable[[Variants], Middleware | None]


#: serve's module of each exchange, by the `EXCHANGE` it names.
SERVE_EXCHANGES: Final[Mapping[Exchange, ServeExchange]] = MappingProxyType(
    {
        bitmusa_routes.EXCHANGE: ServeExchange(
            bitmusa_routes.add_routes, bitmusa_routes.throttled_body, bitmusa_routes.variant_middleware
        ),
        coinlocally_routes.EXCHANGE: ServeExchange(
            coinlocally_routes.add_routes,
            coinlocally_routes.throttled_body,
            coinlocally_routes.variant_middleware,
        ),
    }
)
if set(SERVE_EXCHANGES) != set(REGISTRY):  # pragma: no cover - a third exchange half added
    raise LocalProtocolError("serve needs one routes module per registry entry (server/serve_exchanges.py)")


def add_rest_routes(app: web.Application, server: ExchangeServer) -> None:
    """Every exchange's REST routes on `app`."""
    for entry in SERVE_EXCHANGES.values():
        entry.add_routes(app, server)


def variant_middlewares(variants: Variants) -> list[Middleware]:
    """The aiohttp middlewares the run's variants need (none by default): each exchange's own (Bitmusa's
    error bodies), then the numbers of the REST snapshots, written as the streams write theirs."""
    middlewares = [
        middleware
        for entry in SERVE_EXCHANGES.values()
        if (middleware := entry.variant_middleware(variants)) is not None
    ]
    if variants.rewrites_numbers:
        middlewares.append(snapshot_numbers_middleware(variants))
    return middlewares
