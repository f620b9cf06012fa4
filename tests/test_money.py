"""money.py: exact, bounded Decimal arithmetic."""

from decimal import Decimal

import pytest

from userstream.money import checked, exact_add, exact_sub, parse_decimal


def test_exact_add_keeps_every_digit_past_the_default_context() -> None:
    a = Decimal("1234567890123456789012345678901234567890.5")
    b = Decimal("0.0000000000000000000000000000000000000001")
    assert exact_add(a, b) == Decimal(
        "1234567890123456789012345678901234567890.5000000000000000000000000000000000000001"
    )
    # the default context would have rounded to 28 digits:
    assert a + b == Decimal("1.234567890123456789012345679E+39")


def test_exact_sub() -> None:
    assert exact_sub(Decimal("1"), Decimal("0.17861112")) == Decimal("0.82138888")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.5155", Decimal("0.5155")), ("2", Decimal(2)), ("2.0E-5", Decimal("0.000020"))],
)
def test_parse_decimal_is_exact(text: str, expected: Decimal) -> None:
    value = parse_decimal(text)
    assert value == expected
    assert value.as_tuple() == expected.as_tuple()  # same digits and scale, not just the same value


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("NaN", "not a finite number"),
        ("Infinity", "not a finite number"),
        ("1" * 65, "more than 64 significant digits"),
        ("1E+65", "exponent out of range"),
        ("1E-200", "exponent out of range"),
        ("abc", "not a decimal number"),
    ],
)
def test_bad_decimals_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_decimal(text)


def test_checked_passes_bounded_values_through() -> None:
    value = Decimal("9" * 64)
    assert checked(value) is value
