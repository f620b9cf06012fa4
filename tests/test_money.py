"""money.py: exact, bounded Decimal arithmetic."""

from decimal import Decimal

import pytest

from userstream.money import checked, exact_add, exact_div, exact_mul, exact_sub, parse_decimal


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


def test_exact_mul_keeps_every_digit_and_the_scale() -> None:
    product = exact_mul(Decimal("0.1000000000000000"), Decimal("13000.0000000000000000"))
    assert str(product) == "1300.00000000000000000000000000000000"
    wide = exact_mul(Decimal("1234567890123456789012345678901.5"), Decimal("3"))
    assert wide == Decimal("3703703670370370367037037036704.5")


@pytest.mark.parametrize(
    ("a", "b", "digits", "expected"),
    [
        ("21", "2", 34, "10.5"),  # an exact quotient is returned as is
        ("0.77325", "1.5", 34, "0.5155"),
        ("1", "3", 34, "0.3333333333333333333333333333333333"),
        ("2", "3", 34, "0.6666666666666666666666666666666667"),
        ("2.5", "1", 1, "2"),  # half-even: the tie goes to the even digit
        ("3.5", "1", 1, "4"),
        ("0", "7", 34, "0"),
    ],
)
def test_exact_div_rounds_half_even_to_the_digits_asked(a: str, b: str, digits: int, expected: str) -> None:
    assert str(exact_div(Decimal(a), Decimal(b), digits)) == expected


def test_exact_div_refuses_zero_out_of_bounds_and_bad_digits() -> None:
    with pytest.raises(ZeroDivisionError):
        exact_div(Decimal(1), Decimal("0.000"))
    with pytest.raises(ValueError, match="exponent out of range"):
        exact_div(Decimal("1E+60"), Decimal("1E-60"))
    with pytest.raises(ValueError, match="digits"):
        exact_div(Decimal(1), Decimal(3), 0)
