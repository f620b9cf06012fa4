"""money.py: exact, bounded Decimal arithmetic."""

from decimal import Context, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.money_text import parse_decimal
from userstream.money import checked, exact_add, exact_div, exact_mul, exact_sub


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


def _full_check(value: Decimal) -> str:
    """The bounds as first written (a digit tuple), to hold `checked`'s fast path to: "ok" or the reason."""
    if not value.is_finite():
        return "not finite"
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if len(digits) > 64 or not -64 <= value.adjusted() <= 64 or exponent < -128:
        return "out of bounds"
    return "ok"


_EDGES = [
    f"{sign}{mantissa}E{exponent}"
    for sign in ("", "-")
    for mantissa in ("0", "1", "9" * 63, "9" * 64, "9" * 65, "1" + "0" * 63, "1" + "0" * 64)
    for exponent in (-200, -129, -128, -127, -65, -64, -63, 0, 63, 64, 65, 200)
] + ["NaN", "-NaN", "sNaN", "Infinity", "-Infinity", "0E+65", "0E-65", "0.0", "-0"]


@pytest.mark.parametrize("text", _EDGES)
def test_checked_fast_path_accepts_exactly_what_the_full_check_accepts(text: str) -> None:
    value = Decimal(text)
    if _full_check(value) == "ok":
        assert checked(value) is value
    else:
        with pytest.raises(ValueError, match=r"not a finite number|significant digits|exponent out of range"):
            checked(value)


@given(st.decimals(allow_nan=True, allow_infinity=True, places=None))
def test_checked_agrees_with_the_full_check_on_any_decimal(value: Decimal) -> None:
    try:
        checked(value)
    except ValueError:
        assert _full_check(value) != "ok"
    else:
        assert _full_check(value) == "ok"


@given(st.integers(-(10**70), 10**70), st.integers(-140, 140))
def test_checked_agrees_with_the_full_check_around_the_bounds(coefficient: int, exponent: int) -> None:
    value = Decimal(coefficient).scaleb(exponent, Context(prec=200))
    try:
        checked(value)
    except ValueError:
        assert _full_check(value) != "ok"
    else:
        assert _full_check(value) == "ok"


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("5200", "0.4", "13000"),
        ("7800", "0.6", "13000"),
        ("5200.0", "0.400", "13000"),
        ("1E+10", "1", "10000000000"),
    ],
)
def test_exact_div_writes_a_whole_quotient_as_a_price_is_written(a: str, b: str, expected: str) -> None:
    # a derived fill price of 13000 once printed as 1.300E+4 (same value, not how anyone writes a price)
    quotient = exact_div(Decimal(a), Decimal(b))
    assert (str(quotient), quotient == Decimal(expected)) == (expected, True)
