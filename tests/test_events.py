"""events.py: immutable, typed, raw kept but not compared, secrets-free reprs."""

from decimal import Decimal

import msgspec
import pytest

from userstream.events import BalanceUpdate, Exchange


def _balance(raw: str) -> BalanceUpdate:
    return BalanceUpdate(
        exchange=Exchange.COINLOCALLY,
        account="a",
        timestamp=1,
        asset="ETH",
        free=Decimal("10000.000000"),
        locked=Decimal("0.000000"),
        raw=raw,
    )


def test_events_are_immutable() -> None:
    event = _balance("")
    with pytest.raises(AttributeError):
        event.free = Decimal(1)  # type: ignore[misc]


def test_raw_is_kept_but_not_compared() -> None:
    a, b = _balance('{"e":"x"}'), _balance("")
    assert a.raw == '{"e":"x"}'
    assert a == b
    assert hash(a) == hash(b)
    assert a != msgspec.structs.replace(b, locked=Decimal("0.1"))


def test_total_is_exact_and_keeps_scale() -> None:
    assert str(_balance("").total) == "10000.000000"


def test_repr_is_short_and_has_no_raw() -> None:
    assert repr(_balance('{"secret":"x"}')) == (
        "BalanceUpdate(exchange='coinlocally', account='a', timestamp=1, asset='ETH', "
        "free=10000.000000, locked=0.000000, total=10000.000000)"
    )
