"""One entry per exchange: what the layers above protocol/ need to know about it, in one place. Sans-I/O.

A third exchange is one protocol module (with its REST module) and one `ExchangeSpec` here; no code outside
protocol/ and this registry branches on `Exchange.X` or imports an exchange's module by name. Each layer
reads the fields it needs from `spec(exchange)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

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

__all__ = ["REGISTRY", "ExchangeSpec", "spec"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeSpec:
    """What one exchange is, for every layer that is not its protocol module."""

    exchange: Exchange
    #: How the exchange is named to a user ("Bitmusa").
    title: str
    # --- gateway-house ---
    #: A connection delivers events from its handshake on (Bitmusa: the listenKey in the URL is the
    #: subscription), rather than from the subscription's acknowledgement (Coinlocally's "sub success").
    live_at_handshake: bool
    #: A REST snapshot of the account must be signed with the API key's secret key (Coinlocally), so a
    #: stream given none cannot resync; else the stream's own credentials take it (Bitmusa).
    snapshot_needs_secret_key: bool
    # --- server-house ---
    #: The WebSocket path prefix followed by a credential (Bitmusa's listenKey), which logs cut; None: none.
    secret_path_prefix: str | None
    #: One event as the exchange's data frame (serve's fan-out renders every published event with it).
    render_event: Callable[[Event], str | bytes]
    #: Balance updates of one moment as one frame (Coinlocally's outboundAccountPosition); None: the
    #: exchange sends one frame per balance event.
    render_balances: Callable[[Iterable[BalanceUpdate]], str | bytes] | None
    #: Whether a stream is opened with a listenKey that the REST API creates, extends and deletes (Bitmusa).
    listen_keys: bool
    #: The path of the exchange's user stream (Bitmusa's is a prefix: the listenKey follows).
    ws_path: str
    #: The exchange's REST paths (listenKey and snapshots).
    rest_paths: frozenset[str]
    #: The keys whose values are decimals, at any depth of a data frame's JSON.
    data_decimal_keys: frozenset[str]
    #: REST snapshot path -> the keys whose values are decimals in its reply.
    rest_decimal_keys: Mapping[str, frozenset[str]]
    # --- server-sessions ---
    #: The exchange's side of one accepted stream (serve's connections drive it): a session from its terms.
    server_session: Callable[[ServerTerms], ServerSession]
    #: How the exchange answers an upgrade refused before its stream exists: (problem, detail, retry_after).
    refuse_handshake: Callable[[HandshakeProblem, str, int | None], HttpRefusal]
    # --- config ---
    #: How long a listenKey lives after its creation or keep-alive, in ms; None: no listenKey.
    listen_key_validity_ms: int | None
    #: The age at which the exchange cuts every connection, in ms.
    max_connection_age_ms: int
    #: How long the exchange's document says it keeps a connection that has not pinged, in ms; None: no
    #: such limit is documented.
    ping_silence_ms: int | None
    #: The credentials (`connect()` arguments) a stream needs all of.
    credentials_required: tuple[str, ...]
    #: Credentials a stream needs exactly one of (empty: none such).
    credentials_one_of: tuple[str, ...]
    #: Credentials a stream may be given besides: (credential, the one it goes with).
    credentials_optional: tuple[tuple[str, str], ...]
    #: Options that only this exchange's client uses (a config refuses them on another exchange).
    only_options: frozenset[str]
    # --- client-sessions ---
    #: How its stream is opened (a listenKey from REST, or the credential in the handshake's header), with
    #: its parser and the client session of one connection: what the client runtime and doctor drive.
    client: ListenKeyWire | HeaderWire
    # --- config2 ---
    #: The credentials an account is found by (serve keeps each unique across its accounts); any other is
    #: checked against the account they found, never a way to find one (Bitmusa's auth key).
    credentials_identifying: tuple[str, ...]
    # --- client-house ---
    #: Its REST snapshot of an account, as client/resync.py takes it (its REST module's `SNAPSHOT`).
    snapshot: SnapshotWire
    # --- server2 ---
    #: How an upgrade request names its stream's account: a listenKey as the last segment of `ws_path`
    #: (then `ws_path` is a prefix), or a credential header on `ws_path` itself.
    handshake_names_account: AccountNamedBy
    #: (the path's last segment, or None; the headers) -> the credential the upgrade shows, or None: none.
    handshake_credential: Callable[[str | None, Mapping[str, str]], HandshakeCredential | None]
    #: Credential kind (as `HandshakeCredential.kind` and the REST routes name it) -> the key of serve's
    #: accounts file that holds it. An account matches when every credential presented equals its own.
    account_keys: Mapping[str, str]
    #: The exchange's `serve --variant`s (server/variants.py parses them), and how the chosen ones change
    #: its sessions' style.
    server_variants: tuple[VariantInfo, ...]
    variant_style: VariantStyle
    #: The REST path that creates, extends and deletes a listenKey (POST, PUT, DELETE); None: no listenKey.
    listen_key_path: str | None


# --- server-house ---
_BITMUSA_DECIMALS: Final = frozenset({"free", "locked", "price", "amount", "tradedAmount", "value"})

_BITMUSA: Final = ExchangeSpec(
    exchange=Exchange.BITMUSA,
    title="Bitmusa",
    # --- gateway-house ---
    live_at_handshake=True,
    snapshot_needs_secret_key=False,
    # --- server-house ---
    secret_path_prefix=bitmusa.WS_PATH_PREFIX,
    render_event=bitmusa_render.render_event,
    render_balances=None,
    listen_keys=True,
    ws_path=bitmusa.WS_PATH_PREFIX,
    rest_paths=frozenset(
        {bitmusa.LISTEN_KEY_PATH, bitmusa_rest.WALLET_PATH, bitmusa_rest.ORDER_HISTORY_PATH}
    ),
    data_decimal_keys=_BITMUSA_DECIMALS,
    rest_decimal_keys=MappingProxyType(
        {
            bitmusa_rest.WALLET_PATH: frozenset({"free", "locked"}),
            bitmusa_rest.ORDER_HISTORY_PATH: _BITMUSA_DECIMALS,
        }
    ),
    # --- server-sessions ---
    server_session=bitmusa_server.BitmusaServerSession,
    refuse_handshake=bitmusa_server.refuse_handshake,
    # --- config ---
    listen_key_validity_ms=bitmusa.LISTEN_KEY_VALIDITY_MS,
    max_connection_age_ms=bitmusa.MAX_CONNECTION_AGE_MS,
    ping_silence_ms=None,  # the document asks for no ping
    credentials_required=("api_key", "auth_key"),
    credentials_one_of=(),
    credentials_optional=(),
    only_options=frozenset({"rest_url", "keepalive_interval", "close_key_on_exit"}),
    # --- client-sessions ---
    client=bitmusa_client.WIRE,
    # --- config2 ---
    credentials_identifying=("api_key",),  # the API key names the account, the auth key proves it
    # --- client-house ---
    snapshot=bitmusa_rest.SNAPSHOT,
    # --- server2 ---
    handshake_names_account=AccountNamedBy.LISTEN_KEY_IN_PATH,
    handshake_credential=bitmusa_server.handshake_credential,
    account_keys=MappingProxyType({"api_key": "bitmusa_api_key", "auth_key": "bitmusa_auth_key"}),
    server_variants=bitmusa_server.VARIANTS,
    variant_style=bitmusa_server.variant_style,
    listen_key_path=bitmusa.LISTEN_KEY_PATH,
)

_COINLOCALLY: Final = ExchangeSpec(
    exchange=Exchange.COINLOCALLY,
    title="Coinlocally",
    # --- gateway-house ---
    live_at_handshake=False,
    snapshot_needs_secret_key=True,
    # --- server-house ---
    secret_path_prefix=None,
    render_event=coinlocally_render.render_event,
    render_balances=coinlocally_render.render_balances,
    listen_keys=False,
    ws_path=coinlocally.WS_PATH,
    rest_paths=frozenset({coinlocally_rest.ACCOUNT_PATH, coinlocally_rest.OPEN_ORDERS_PATH}),
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
    # --- server-sessions ---
    server_session=coinlocally_server.CoinlocallyServerSession,
    refuse_handshake=coinlocally_server.refuse_handshake,
    # --- config ---
    listen_key_validity_ms=None,
    max_connection_age_ms=86_400_000,  # the same 24-hour cut as Bitmusa's (docs/client.md)
    ping_silence_ms=coinlocally.HEARTBEAT_TIMEOUT_MS,
    credentials_required=(),
    credentials_one_of=("token", "api_key"),
    credentials_optional=(("secret_key", "api_key"),),  # signs the api key's snapshot requests
    only_options=frozenset({"sub_timeout", "quotes"}),
    # --- client-sessions ---
    client=coinlocally_client.WIRE,
    # --- config2 ---
    credentials_identifying=("token", "api_key"),  # either may open a stream; the secret key signs
    # --- client-house ---
    snapshot=coinlocally_rest.SNAPSHOT,
    # --- server2 ---
    handshake_names_account=AccountNamedBy.CREDENTIAL_HEADER,
    handshake_credential=coinlocally_server.handshake_credential,
    account_keys=MappingProxyType({"token": "coinlocally_token", "api_key": "coinlocally_api_key"}),
    server_variants=coinlocally_server.VARIANTS,
    variant_style=coinlocally_server.variant_style,
    listen_key_path=None,
)

REGISTRY: Final = MappingProxyType({entry.exchange: entry for entry in (_BITMUSA, _COINLOCALLY)})


def spec(exchange: Exchange) -> ExchangeSpec:
    """The registry's entry for `exchange`."""
    return REGISTRY[exchange]
