"""event_key: a stable content key (it is stored in databases and streams, so it must never drift), and
the URL redaction every sink name relies on."""

from __future__ import annotations

from decimal import Decimal

import pytest

from userstream.events import BalanceUpdate, Exchange, Source
from userstream.logs import redacted_url
from userstream.sinks import event_key, key_of_json
from userstream.sinks.base import KEY_LENGTH

BALANCE = BalanceUpdate(
    exchange=Exchange.BITMUSA,
    account="alice",
    timestamp=1_700_703_548_000,
    asset="USDT",
    free=Decimal("100.50"),
    locked=Decimal("0.25"),
)


def test_the_key_is_the_truncated_sha256_of_the_contract_json() -> None:
    # Pinned: every stored key depends on this value. A change here is a data migration, not a refactor.
    assert event_key(BALANCE) == "7ad100501481fa9090f4335e982a033c"
    assert key_of_json(
        b'{"kind":"balance","exchange":"bitmusa","account":"alice","timestamp":1700703548000,"source":"stream",'
        b'"asset":"USDT","free":"100.50","locked":"0.25","total":"100.75"}'
    ) == event_key(BALANCE)
    assert len(event_key(BALANCE)) == KEY_LENGTH == 32


def test_the_raw_message_is_not_part_of_the_key_but_every_value_is() -> None:
    with_raw = BalanceUpdate(**{**fields(BALANCE), "raw": '{"e":"outboundAccountPosition"}'})
    assert event_key(with_raw) == event_key(BALANCE)
    for change in (
        {"timestamp": BALANCE.timestamp + 1},
        {"account": "bob"},
        {"free": Decimal("100.5")},  # the same number written differently is a different fact on the wire
        {"source": Source.SNAPSHOT},
    ):
        assert event_key(BalanceUpdate(**{**fields(BALANCE), **change})) != event_key(BALANCE), change


def fields(event: BalanceUpdate) -> dict[str, object]:
    return {name: getattr(event, name) for name in event.__struct_fields__}


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:s3cret@cache.internal:6380/2", "redis://***@cache.internal:6380/2"),
        (
            "rediss://app:s3cret@cache.internal/0?ssl_cert_reqs=none",
            "rediss://***@cache.internal/0?ssl_cert_reqs=none",
        ),
    ],
)
def test_a_url_is_shown_without_its_credentials(url: str, shown: str) -> None:
    assert redacted_url(url) == shown
