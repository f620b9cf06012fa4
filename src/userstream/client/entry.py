"""`connect()` and `run()`: a stream made from its options, its credentials and its endpoints.

This module owns the public entry points of the asyncio client. `connect()` takes the exchange, the
credentials and endpoints, and the stream's options: a `StreamOptions` (client/options.py, the one
definition of every option, its default and its rules), or the same options as keyword arguments, each
derived from that definition (the signature `help()` and `inspect` show is built from it, so the two never
drift apart). It checks the credentials against the exchange, builds the stream's `Transport`, its
exchange session and its snapshot taker, logs what it derived or finds unlikely to work, and hands them to
`UserStream` (client/supervisor.py), which runs them. `run()` is the callback form.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal

from userstream.client.options import StreamOptions, unlikely_to_work
from userstream.client.queue import Overflow
from userstream.client.resync import snapshot_taker
from userstream.client.runtimes import open_session
from userstream.client.scrub import Scrubber
from userstream.client.session import OpenArguments
from userstream.client.status import StatusEvent
from userstream.client.supervisor import UserStream
from userstream.client.transport import Transport
from userstream.errors import ConfigurationError
from userstream.events import Event, Exchange

__all__ = ["ExchangeName", "connect", "run"]

_log = logging.getLogger("userstream.client")

ExchangeName = Literal["bitmusa", "coinlocally"]


def connect(
    exchange: ExchangeName | Exchange | str,
    options: StreamOptions | None = None,
    *,
    api_key: str | None = None,
    auth_key: str | None = None,
    token: str | None = None,
    secret_key: str | None = None,
    rest_url: str | None = None,
    ws_url: str | None = None,
    snapshot_rest_url: str | None = None,
    on_status: Callable[[StatusEvent], object] | None = None,
    **option_values: Any,
) -> UserStream:
    """A user data stream for one account; use it with `async with` and `async for`.

    Bitmusa needs `api_key` and `auth_key`; Coinlocally needs `token` or `api_key` (exactly one).
    `rest_url`/`ws_url` default to the documented production endpoints; either may be written as a base
    (`wss://host:port`) or as the full URL of the documented path (`.../ws/spot`, `.../spot/userDataStream`,
    `.../spotws_user/userData/ws`), with or without a trailing slash (`protocol.endpoints`). Must be called
    inside a running event loop. The stream's options come as a `StreamOptions`, or as its keyword
    arguments (not both); each is documented in docs/client.md. A timing left as None takes its default,
    or a value fitted to the timings given (`idle_timeout=30` alone pings every 20 s); each value so
    derived is logged at INFO, and only a contradiction between given timings is refused.
    """
    _require_running_loop()
    if options is None:
        options = _options(option_values)
    elif option_values:
        raise ConfigurationError(
            f"pass the stream's options as a StreamOptions or as keyword arguments, not both "
            f"(also given: {', '.join(sorted(option_values))})"
        )
    elif not isinstance(options, StreamOptions):
        raise ConfigurationError(f"options must be a StreamOptions, not {type(options).__name__}")
    # Every credential of the stream (its listenKeys are added as the session gets them): what a server
    # says passes through this before anyone sees it (client/scrub.py).
    scrubber = Scrubber((api_key, auth_key, token, secret_key))
    transport = Transport(
        tls=options.tls_policy(),
        request_timeout=options.request_timeout,
        max_frame=options.max_frame,
        scrubber=scrubber,
    )
    session = open_session(
        _exchange(exchange),
        OpenArguments(transport, options, api_key, auth_key, token, rest_url, ws_url),
    )
    snapshots = snapshot_taker(
        _exchange(exchange),
        transport=transport,
        account=options.account,
        api_key=api_key,
        auth_key=auth_key,
        token=token,
        secret_key=secret_key,
        rest_url=rest_url,
        snapshot_rest_url=snapshot_rest_url,
        quotes=options.quotes,
    )
    for line in options.derived:  # once every argument is accepted
        _log.info("%s/%s: %s", session.exchange.value, options.account, line)
    for line in unlikely_to_work(options, session.exchange):
        _log.warning("%s/%s: %s", session.exchange.value, options.account, line)
    return UserStream(
        session=session, transport=transport, options=options, on_status=on_status, snapshots=snapshots
    )


#: StreamOptions' keywords, with its defaults: `connect()` takes each of them.
_OPTION_PARAMETERS = tuple(
    parameter
    for parameter in inspect.signature(StreamOptions).parameters.values()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
)
_OPTION_NAMES = frozenset(parameter.name for parameter in _OPTION_PARAMETERS)
#: What `connect()` takes wider than the options hold, converted by `_options`.
_WIDER = {
    "overflow": "Overflow | Literal['block', 'drop_oldest']",
    "quotes": "Sequence[str] | None",
    "snapshot_symbols": "Sequence[str]",
}


def _options(values: dict[str, Any]) -> StreamOptions:
    """`StreamOptions` from `connect()`'s keyword arguments, converting what it takes wider."""
    unknown = sorted(set(values) - _OPTION_NAMES)
    if unknown:
        raise TypeError(f"connect() got an unexpected keyword argument {unknown[0]!r}")
    if "overflow" in values:
        overflow = values["overflow"]
        try:
            values["overflow"] = Overflow(overflow)
        except ValueError:
            raise ConfigurationError(f"overflow must be 'block' or 'drop_oldest', not {overflow!r}") from None
    if values.get("quotes") is not None:
        values["quotes"] = tuple(values["quotes"])
    if "snapshot_symbols" in values:
        values["snapshot_symbols"] = _symbols(values["snapshot_symbols"])
    return StreamOptions(**values)


def _signature() -> inspect.Signature:
    """`connect()`'s signature as users, `help()` and `inspect` see it: its own parameters, then every
    option of `StreamOptions` as a keyword with the same default."""
    own = inspect.signature(connect)
    parameters = [
        parameter for parameter in own.parameters.values() if parameter.kind is not parameter.VAR_KEYWORD
    ]
    for option in _OPTION_PARAMETERS:
        parameters.append(option.replace(annotation=_WIDER.get(option.name, option.annotation)))
    return own.replace(parameters=parameters)


connect.__signature__ = _signature()  # type: ignore[attr-defined]


def _require_running_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise ConfigurationError(
            "userstream.connect() needs a running asyncio event loop: call it inside an `async def` run by "
            "asyncio.run(), as in `async with userstream.connect(...) as stream:`; without asyncio, use "
            "userstream.sync.connect() (docs/client.md)"
        ) from None


def _symbols(symbols: Sequence[str]) -> tuple[str, ...]:
    if isinstance(symbols, str):  # "BTC/USDT" would otherwise become eight one-letter symbols
        raise ConfigurationError("snapshot_symbols must be a sequence of symbols such as ['BTC/USDT']")
    return tuple(symbols)


async def run(
    exchange: ExchangeName | Exchange | str,
    *,
    on_event: Callable[[Event], object],
    **options: Any,
) -> None:
    """The callback form: call `on_event` (a function or a coroutine function) for every event.

    Runs until cancelled, or raises the stream's fatal error. `options` are `connect()`'s.
    """
    async with connect(exchange, **options) as stream:
        async for event in stream:
            result = on_event(event)
            if inspect.isawaitable(result):
                await result


def _exchange(name: ExchangeName | Exchange | str) -> Exchange:
    try:
        return Exchange(name)
    except ValueError:
        known = ", ".join(exchange.value for exchange in Exchange)
        raise ConfigurationError(f"unknown exchange {name!r}; known: {known}") from None
