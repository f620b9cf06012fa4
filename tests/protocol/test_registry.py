"""protocol/registry.py: one entry per exchange, every field given, and no exchange named outside protocol/.

A third exchange is one `Exchange` member and one `ExchangeSpec` (with its protocol modules): these tests
refuse it half registered (a member without an entry, an entry without a field, a field left None that
must be given), and hold the code outside protocol/ to reading the registry instead of naming an exchange
(`Exchange.BITMUSA`, `from userstream.protocol import coinlocally`), but for an exact list of exceptions.
"""

from __future__ import annotations

import ast
import dataclasses
import types
import typing
from pathlib import Path

import pytest

from userstream.errors import LocalProtocolError
from userstream.events import Exchange
from userstream.protocol import registry
from userstream.protocol.client_wire import HeaderWire, ListenKeyWire
from userstream.protocol.registry import REGISTRY, ExchangeSpec, covering, spec
from userstream.protocol.server_session import AccountNamedBy

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "userstream"
FIELDS = dataclasses.fields(ExchangeSpec)
HINTS = typing.get_type_hints(ExchangeSpec, vars(registry))


def _may_be_none(name: str) -> bool:
    hint = HINTS[name]
    return isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)


def test_the_registry_covers_exactly_the_exchanges_in_their_order() -> None:
    assert list(REGISTRY) == list(Exchange)
    assert all(entry.exchange is exchange for exchange, entry in REGISTRY.items())
    assert all(spec(exchange) is REGISTRY[exchange] for exchange in Exchange)


def test_every_field_is_given_for_every_exchange() -> None:
    # No field has a default: an entry that leaves one out is not built at all.
    assert [field.name for field in FIELDS if field.default is not dataclasses.MISSING] == []
    assert [field.name for field in FIELDS if field.default_factory is not dataclasses.MISSING] == []
    # None only where the field says None means something ("no such limit", "one frame per balance").
    assert sorted(field.name for field in FIELDS if _may_be_none(field.name)) == [
        "ping_silence_ms",
        "render_balances",
    ]
    for exchange in Exchange:
        entry = spec(exchange)
        unset = [
            field.name
            for field in FIELDS
            if getattr(entry, field.name) is None and not _may_be_none(field.name)
        ]
        assert unset == [], exchange
        assert entry.title != ""
        assert isinstance(entry.client, ListenKeyWire | HeaderWire)


@pytest.mark.parametrize("left_out", [field.name for field in FIELDS])
def test_a_third_exchange_without_one_field_is_refused(left_out: str) -> None:
    given = {field.name: getattr(spec(Exchange.BITMUSA), field.name) for field in FIELDS}
    del given[left_out]
    with pytest.raises(TypeError, match=left_out):
        ExchangeSpec(**given)


def test_an_exchange_without_its_entry_or_with_two_is_refused() -> None:
    bitmusa, coinlocally = spec(Exchange.BITMUSA), spec(Exchange.COINLOCALLY)
    with pytest.raises(LocalProtocolError) as raised:
        covering((bitmusa,), Exchange)
    assert str(raised.value) == "the registry does not cover the exchanges: missing ['coinlocally'], extra []"
    with pytest.raises(LocalProtocolError) as raised:
        covering((bitmusa, coinlocally), (Exchange.BITMUSA,))
    assert str(raised.value) == "the registry does not cover the exchanges: missing [], extra ['coinlocally']"
    with pytest.raises(LocalProtocolError) as raised:
        covering((bitmusa, coinlocally, bitmusa), Exchange)
    assert str(raised.value) == "two registry entries for 'bitmusa'"
    assert list(covering((coinlocally, bitmusa), Exchange).values()) == [bitmusa, coinlocally]


def test_what_follows_from_the_fields() -> None:
    bitmusa, coinlocally = spec(Exchange.BITMUSA), spec(Exchange.COINLOCALLY)
    assert (bitmusa.ws_path, coinlocally.ws_path) == ("/ws/spot/", "/spotws_user/userData/ws")
    assert (bitmusa.listen_key_path, coinlocally.listen_key_path) == ("/spot/userDataStream", None)
    assert (bitmusa.handshake_names_account, coinlocally.handshake_names_account) == (
        AccountNamedBy.LISTEN_KEY_IN_PATH,
        AccountNamedBy.CREDENTIAL_HEADER,
    )
    assert bitmusa.rest_paths == {"/spot/userDataStream", "/spot/wallet", "/spot/order/history"}
    assert coinlocally.rest_paths == {"/sapi/v1/account", "/sapi/v1/openOrders"}
    assert (bitmusa.snapshot_needs_secret_key, coinlocally.snapshot_needs_secret_key) == (False, True)
    assert (bitmusa.client.live_on_connect, coinlocally.client.live_on_connect) == (True, False)
    assert isinstance(bitmusa.client, ListenKeyWire)
    assert bitmusa.client.listen_key_validity_ms == 3_600_000


# --- no exchange named outside protocol/ ----------------------------------------------------------------

#: Where code outside protocol/ still names an exchange, and why each may:
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        # serve's per-exchange route modules (listed in server/serve_exchanges.py): aiohttp handlers of one
        # exchange's REST API, which cannot be protocol-level; each names the exchange it serves.
        ("server/bitmusa_routes.py", "Exchange.BITMUSA"),
        ("server/bitmusa_routes.py", "import userstream.protocol.bitmusa"),
        ("server/bitmusa_routes.py", "import userstream.protocol.bitmusa_listen_key"),
        ("server/bitmusa_routes.py", "import userstream.protocol.bitmusa_render"),
        ("server/bitmusa_routes.py", "import userstream.protocol.bitmusa_rest"),
        ("server/bitmusa_routes.py", "import userstream.protocol.bitmusa_server"),
        ("server/coinlocally_routes.py", "Exchange.COINLOCALLY"),
        ("server/coinlocally_routes.py", "import userstream.protocol.coinlocally"),
        ("server/coinlocally_routes.py", "import userstream.protocol.coinlocally_control"),
        ("server/coinlocally_routes.py", "import userstream.protocol.coinlocally_render"),
        ("server/coinlocally_routes.py", "import userstream.protocol.coinlocally_rest"),
        ("server/coinlocally_routes.py", "import userstream.protocol.coinlocally_rest_render"),
        # `from_dict(obj, exchange=...)`: the documented default of a public function (docs/events.md).
        ("eventjson.py", "Exchange.BITMUSA"),
    }
)


def _names_of_exchanges(tree: ast.AST) -> set[str]:
    """Every `Exchange.<MEMBER>` and every import of an exchange's protocol module in one file."""
    members = {exchange.name for exchange in Exchange}
    prefixes = tuple(f"userstream.protocol.{exchange.value}" for exchange in Exchange)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "Exchange" and node.attr in members:
                found.add(f"Exchange.{node.attr}")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            modules = (
                [f"{module}.{alias.name}" for alias in node.names]
                if module == "userstream.protocol"
                else [module]
            )
            found.update(f"import {name}" for name in modules if name.startswith(prefixes))
        elif isinstance(node, ast.Import):
            found.update(f"import {alias.name}" for alias in node.names if alias.name.startswith(prefixes))
    return found


def test_no_code_outside_protocol_names_an_exchange_but_the_listed() -> None:
    files = sorted(
        path for path in PACKAGE.rglob("*.py") if "protocol" not in path.relative_to(PACKAGE).parts
    )
    assert PACKAGE / "server" / "app.py" in files
    found = {
        (path.relative_to(PACKAGE).as_posix(), name)
        for path in files
        for name in _names_of_exchanges(ast.parse(path.read_text(encoding="utf-8")))
    }
    assert found == ALLOWED


def test_the_scan_sees_every_way_of_naming_an_exchange() -> None:
    source = (
        "from userstream.protocol import bitmusa, endpoints\n"
        "from userstream.protocol.coinlocally_rest import SNAPSHOT\n"
        "import userstream.protocol.bitmusa_server\n"
        "x = Exchange.COINLOCALLY if y is Exchange.BITMUSA else None\n"
        "from userstream.protocol.registry import spec\n"
    )
    assert _names_of_exchanges(ast.parse(source)) == {
        "import userstream.protocol.bitmusa",
        "import userstream.protocol.coinlocally_rest",
        "import userstream.protocol.bitmusa_server",
        "Exchange.COINLOCALLY",
        "Exchange.BITMUSA",
    }
