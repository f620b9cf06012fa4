"""One entry per exchange: what the layers above protocol/ need to know about it, in one place. Sans-I/O.

`ExchangeSpec` is the shape of an entry, `REGISTRY` the entries (one per `Exchange` member, exactly:
`covering` refuses any other at import), and `spec(exchange)` an entry. Each layer reads the fields it
needs; no code outside protocol/ (and serve's per-exchange route modules) branches on `Exchange.X` or
imports an exchange's module by name (tests/protocol/test_registry.py holds the list of exceptions). An
entry holds protocol-level things only (constants, and functions and classes of protocol/ modules): a layer
that binds its own runtime code to an exchange is written once per *way* (a listenKey from REST, a
credential in the handshake), driven by these fields.

The fields, by topic (the class and both entries are laid out in this order):

- identity: the `exchange`, and its `title` as a user reads it;
- client: how a stream is opened, with its parser and the client session of one connection (`client`, a
  `ListenKeyWire` or a `HeaderWire` of protocol/client_wire.py, which also says whether the stream is live
  at the handshake and how long a listenKey lives);
- REST snapshot: how resync asks for an account's balances and open orders (`snapshot`);
- server: the session of one accepted stream, how an upgrade refused before it exists is answered and the
  credential an upgrade shows (`server_session`, `refuse_handshake`, `handshake_credential`); how events
  are rendered (`render_event`, `render_balances`); serve's variants (`server_variants`, `variant_style`)
  and the decimal keys its numbers variants rewrite (`data_decimal_keys`, `rest_decimal_keys`);
- config: the credentials (`credentials_required`, `_one_of`, `_optional`, `_identifying`), the options only
  this exchange takes (`only_options`), and the document's timings (`max_connection_age_ms`,
  `ping_silence_ms`).

One fact, one field: what follows from the fields is a read-only property, never a second field
(`ws_path`, `listen_key_path` and `handshake_names_account` from `client`; `rest_paths` from
`rest_decimal_keys` and `listen_key_path`; `account_keys` from the credentials; `snapshot_needs_secret_key`
from `credentials_optional`).

A third exchange provides: its protocol module (frames, parser, credentials), its REST module (with its
`SnapshotWire`), its client module (a `ListenKeyWire` or `HeaderWire`, with its client session), its server
module (server session, `refuse_handshake`, `handshake_credential`, `VARIANTS`, `variant_style`), an
`Exchange` member, and one `ExchangeSpec` here with every field given (tests/protocol/test_registry.py
refuses a half-registered one); serve adds its REST routes module (server/<exchange>_routes.py, one line
in server/serve_exchanges.py). The two entries stay here side by side rather than each in its exchange's
modules: they are wiring only (names of what those modules define), and reading them together is how a
difference between the exchanges is seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from userstream.errors import LocalProtocolError
from userstream.events import BalanceUpdate, Event, Exchange
from userstream.protocol import (
    bitmusa,
    bitmusa_client,
    bitmusa_render,
    bitmusa_rest,
    bitmusa_server,
    coinlocally,
    coinlocally_client,
    coinlocally_render,
    coinlocally_rest,
    coinlocally_server,
)
from userstream.protocol.client_wire import HeaderWire, ListenKeyWire
from userstream.protocol.server_session import (
    AccountNamedBy,
    HandshakeCredential,
    HandshakeProblem,
    HttpRefusal,
    ServerSession,
    ServerTerms,
    VariantInfo,
    VariantStyle,
)
from userstream.protocol.snapshot import SnapshotWire

__all__ = ["REGISTRY", "ExchangeSpec", "covering", "spec"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeSpec:
    """What one exchange is, for every layer that is not its protocol module, by topic (see above)."""

    # --- identity ---
    exchange: Exchange
    #: How the exchange is named to a user ("Bitmusa").
    title: str

    # --- client: how a stream is opened, its parser, its session ---
    #: A listenKey from REST (`ListenKeyWire`: its paths, requests, validity) or the credential in the
    #: handshake's header (`HeaderWire`), with the frame parser, the client session of one connection and
    #: whether it is live at the handshake (`live_on_connect`): what the client runtime and doctor drive.
    client: ListenKeyWire | HeaderWire

    # --- REST snapshot ---
    #: Its REST snapshot of an account, as client/resync.py takes it (its REST module's `SNAPSHOT`).
    snapshot: SnapshotWire

    # --- server: session and handshake ---
    #: The exchange's side of one accepted stream (serve's connections drive it): a session from its terms.
    server_session: Callable[[ServerTerms], ServerSession]
    #: How the exchange answers an upgrade refused before its stream exists: (problem, detail, retry_after).
    refuse_handshake: Callable[[HandshakeProblem, str, int | None], HttpRefusal]
    #: (the path's last segment, or None; the headers) -> the credential the upgrade shows, or None: none.
    handshake_credential: Callable[[str | None, Mapping[str, str]], HandshakeCredential | None]

    # --- server: rendering ---
    #: One event as the exchange's data frame (serve's fan-out renders every published event with it).
    render_event: Callable[[Event], str | bytes]
    #: Balance updates of one moment as one frame (Coinlocally's outboundAccountPosition); None: the
    #: exchange sends one frame per balance event.
    render_balances: Callable[[Iterable[BalanceUpdate]], str | bytes] | None

    # --- server: variants ---
    #: The exchange's `serve --variant`s (server/variants.py parses them), and how the chosen ones change
    #: its sessions' style.
    server_variants: tuple[VariantInfo, ...]
    variant_style: VariantStyle
    #: The keys whose values are decimals, at any depth of a data frame's JSON (the numbers variants).
    data_decimal_keys: frozenset[str]
    #: REST snapshot path -> the keys whose values are decimals in its reply (its keys: the snapshot paths).
    rest_decimal_keys: Mapping[str, frozenset[str]]

    # --- config: credentials (`connect()`'s argument names) ---
    #: The credentials a stream needs all of.
    credentials_required: tuple[str, ...]
    #: Credentials a stream needs exactly one of (empty: none such).
    credentials_one_of: tuple[str, ...]
    #: Credentials a stream may be given besides: (credential, the one it goes with). A `secret_key` here
    #: signs the REST snapshot (`snapshot_needs_secret_key`).
    credentials_optional: tuple[tuple[str, str], ...]
    #: The credentials an account is found by (serve keeps each unique across its accounts); any other is
    #: checked against the account they found, never a way to find one (Bitmusa's auth key).
    credentials_identifying: tuple[str, ...]

    # --- config: options ---
    #: Options that only this exchange's client uses (a config refuses them on another exchange).
    only_options: frozenset[str]

    # --- config: timings (the exchange's document) ---
    #: The age at which the exchange cuts every connection, in ms.
    max_connection_age_ms: int
    #: How long the exchange's document says it keeps a connection that has not pinged, in ms; None: no
    #: such limit is documented.
    ping_silence_ms: int | None

    # --- derived: answers read off the fields above, no fact of their own ---

    @property
    def ws_path(self) -> str:
        """The path of the exchange's user stream (with a listenKey, a prefix: the key follows)."""
        wire = self.client
        return wire.ws_path_prefix if isinstance(wire, ListenKeyWire) else wire.ws_path

    @property
    def listen_key_path(self) -> str | None:
        """The REST path that creates, extends and deletes a listenKey (POST, PUT, DELETE); None: no
        listenKey (the stream is opened with a credential in its handshake)."""
        wire = self.client
        return wire.listen_key_path if isinstance(wire, ListenKeyWire) else None

    @property
    def handshake_names_account(self) -> AccountNamedBy:
        """How an upgrade request names its stream's account: a listenKey as the last segment of `ws_path`
        (then `ws_path` is a prefix), or a credential header on `ws_path` itself."""
        if isinstance(self.client, ListenKeyWire):
            return AccountNamedBy.LISTEN_KEY_IN_PATH
        return AccountNamedBy.CREDENTIAL_HEADER

    @property
    def rest_paths(self) -> frozenset[str]:
        """The exchange's REST paths: the listenKey's, if any, and the snapshots'."""
        listen_key = () if self.listen_key_path is None else (self.listen_key_path,)
        return frozenset((*listen_key, *self.rest_decimal_keys))

    @property
    def account_keys(self) -> Mapping[str, str]:
        """Credential kind (as `HandshakeCredential.kind` and the REST routes name it) -> the key of serve's
        accounts file that holds it (`<exchange>_<credential>`): every credential that opens a stream, all
        of them or one of them. An account matches when every credential presented equals its own."""
        kinds = (*self.credentials_required, *self.credentials_one_of)
        return MappingProxyType({kind: f"{self.exchange.value}_{kind}" for kind in kinds})

    @property
    def snapshot_needs_secret_key(self) -> bool:
        """A REST snapshot of the account must be signed with the API key's secret key (Coinlocally), so a
        stream given none cannot resync; else the stream's own credentials take it (Bitmusa)."""
        return any(credential == "secret_key" for credential, _ in self.credentials_optional)


_BITMUSA_DECIMALS: Final = frozenset({"free", "locked", "price", "amount", "tradedAmount", "value"})

_BITMUSA: Final = ExchangeSpec(
    # identity
    exchange=Exchange.BITMUSA,
    title="Bitmusa",
    # client
    client=bitmusa_client.WIRE,  # a listenKey from REST, live at the handshake
    # REST snapshot
    snapshot=bitmusa_rest.SNAPSHOT,
    # server: session and handshake
    server_session=bitmusa_server.BitmusaServerSession,
    refuse_handshake=bitmusa_server.refuse_handshake,
    handshake_credential=bitmusa_server.handshake_credential,
    # server: rendering
    render_event=bitmusa_render.render_event,
    render_balances=None,
    # server: variants
    server_variants=bitmusa_server.VARIANTS,
    variant_style=bitmusa_server.variant_style,
    data_decimal_keys=_BITMUSA_DECIMALS,
    rest_decimal_keys=MappingProxyType(
        {
            bitmusa_rest.WALLET_PATH: frozenset({"free", "locked"}),
            bitmusa_rest.ORDER_HISTORY_PATH: _BITMUSA_DECIMALS,
        }
    ),
    # config: credentials
    credentials_required=("api_key", "auth_key"),
    credentials_one_of=(),
    credentials_optional=(),
    credentials_identifying=("api_key",),  # the API key names the account, the auth key proves it
    # config: options
    only_options=frozenset({"rest_url", "keepalive_interval", "close_key_on_exit"}),
    # config: timings
    max_connection_age_ms=bitmusa.MAX_CONNECTION_AGE_MS,
    ping_silence_ms=None,  # the document asks for no ping
)

_COINLOCALLY: Final = ExchangeSpec(
    # identity
    exchange=Exchange.COINLOCALLY,
    title="Coinlocally",
    # client
    client=coinlocally_client.WIRE,  # the credential in the handshake's header, live at "sub success"
    # REST snapshot
    snapshot=coinlocally_rest.SNAPSHOT,
    # server: session and handshake
    server_session=coinlocally_server.CoinlocallyServerSession,
    refuse_handshake=coinlocally_server.refuse_handshake,
    handshake_credential=coinlocally_server.handshake_credential,
    # server: rendering
    render_event=coinlocally_render.render_event,
    render_balances=coinlocally_render.render_balances,
    # server: variants
    server_variants=coinlocally_server.VARIANTS,
    variant_style=coinlocally_server.variant_style,
    # executionReport's l z L Z n q p Q P, and outboundAccountPosition's f and l (inside B).
    data_decimal_keys=frozenset({"l", "z", "L", "Z", "n", "q", "p", "Q", "P", "f"}),
    rest_decimal_keys=MappingProxyType(
        {
            coinlocally_rest.ACCOUNT_PATH: frozenset({"free", "locked"}),
            coinlocally_rest.OPEN_ORDERS_PATH: frozenset(
                {"price", "origQty", "executedQty", "cummulativeQuoteQty"}
            ),
        }
    ),
    # config: credentials
    credentials_required=(),
    credentials_one_of=("token", "api_key"),
    credentials_optional=(("secret_key", "api_key"),),  # signs the api key's snapshot requests
    credentials_identifying=("token", "api_key"),  # either may open a stream; the secret key signs
    # config: options
    only_options=frozenset({"sub_timeout", "quotes"}),
    # config: timings
    max_connection_age_ms=86_400_000,  # the same 24-hour cut as Bitmusa's (docs/client.md)
    ping_silence_ms=coinlocally.HEARTBEAT_TIMEOUT_MS,
)


def covering(entries: Iterable[ExchangeSpec], members: Iterable[Exchange]) -> Mapping[Exchange, ExchangeSpec]:
    """`entries` by exchange, in `members`' order, when they are exactly one per member; LocalProtocolError
    otherwise (an exchange half registered: a member without an entry, or two entries for one)."""
    table: dict[Exchange, ExchangeSpec] = {}
    for entry in entries:
        if entry.exchange in table:
            raise LocalProtocolError(f"two registry entries for {entry.exchange.value!r}")
        table[entry.exchange] = entry
    wanted = tuple(members)
    missing = [member.value for member in wanted if member not in table]
    extra = [exchange.value for exchange in table if exchange not in wanted]
    if missing or extra:
        raise LocalProtocolError(
            f"the registry does not cover the exchanges: missing {missing}, extra {extra}"
        )
    return MappingProxyType({member: table[member] for member in wanted})


#: Every exchange's entry, one per `Exchange` member (checked at import).
REGISTRY: Final = covering((_BITMUSA, _COINLOCALLY), Exchange)


def spec(exchange: Exchange) -> ExchangeSpec:
    """The registry's entry for `exchange`."""
    return REGISTRY[exchange]
