"""Exact Decimal money: bounded as it comes in, then added, subtracted or multiplied exactly.

Python's default decimal context rounds to 28 significant digits, which would silently corrupt a
40-digit quantity. Every arithmetic on money in userstream goes through `exact_add` / `exact_sub` /
`exact_mul`, which use a wide context that traps inexact results instead of rounding. Values are bounded on
the way in (`checked`), so "wide enough" is a fact, not a hope. `exact_div` is the one operation that
rounds (a quotient such as 1/3 has no finite decimal form); it is used only for a derived average price.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Rounded
from typing import Final

__all__ = [
    "MAX_DIGITS",
    "MAX_EXPONENT",
    "QUOTIENT_DIGITS",
    "checked",
    "exact_add",
    "exact_div",
    "exact_mul",
    "exact_sub",
]

#: The most significant digits a money value may carry, and the largest |exponent|. Real exchange
#: values use fewer than 40 digits; the bounds keep exact arithmetic cheap and reject absurd input.
MAX_DIGITS = 64
MAX_EXPONENT = 64

#: The significant digits of a quotient (`exact_div`'s default): IEEE 754 decimal128's precision, far beyond
#: any exchange's price precision.
QUOTIENT_DIGITS = 34

# Operands have at most MAX_DIGITS digits within +-MAX_EXPONENT, so a sum needs at most
# MAX_DIGITS + 2 * MAX_EXPONENT + 1 digits and a product at most 2 * MAX_DIGITS; the context is wider
# and traps Inexact as a guard.
_EXACT = Context(prec=MAX_DIGITS + 2 * MAX_EXPONENT + 8, traps=[Inexact, InvalidOperation])


# Counts significant digits without building a digit tuple (`as_tuple()` costs several times more):
# rounding to MAX_DIGITS signals Rounded exactly when the value has more. Its exponent range is far wider
# than money's, so only the digit count can signal.
_DIGIT_COUNT = Context(prec=MAX_DIGITS, Emax=10 * MAX_EXPONENT, Emin=-10 * MAX_EXPONENT, traps=[Rounded])
# Bound once: looking the method up on the Context per call cost about as much as the call itself.
_count_digits = _DIGIT_COUNT.plus
_LOWEST_ADJUSTED = -MAX_EXPONENT


def checked(value: Decimal) -> Decimal:
    """Return `value` if it is a finite Decimal within the bounds, else raise ValueError saying why.

    This runs on every money value of every event, so the common case takes a fast path (3-5x faster
    than the full check on the reference machine, docs/performance.md): finite, adjusted exponent within
    +-MAX_EXPONENT, at most MAX_DIGITS digits. Those three imply the last bound (exponent >= -2 *
    MAX_EXPONENT, since exponent = adjusted - digits + 1 >= -MAX_EXPONENT - MAX_DIGITS + 1), so whatever
    passes them is exactly what the full check below accepts; anything else gets the full check, which
    names what is wrong.
    """
    if value.is_finite() and _LOWEST_ADJUSTED <= value.adjusted() <= MAX_EXPONENT:
        try:
            _count_digits(value)
        except Rounded:
            pass
        else:
            return value
    return _checked_slowly(value)


def _checked_slowly(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError(f"not a finite number: {value}")
    _sign, digits, exponent = value.as_tuple()
    if len(digits) > MAX_DIGITS:
        raise ValueError(f"more than {MAX_DIGITS} significant digits")
    # finite, so `exponent` is an int
    if not -MAX_EXPONENT <= value.adjusted() <= MAX_EXPONENT or int(exponent) < -2 * MAX_EXPONENT:
        raise ValueError(f"exponent out of range (|e| > {MAX_EXPONENT})")
    return value


# The context's own methods, bound once (every order update subtracts; a wrapper would cost as much again).
#: a + b, exactly (InvalidOperation or Inexact is raised rather than a rounded result)
exact_add: Final[Callable[[Decimal, Decimal], Decimal]] = _EXACT.add
#: a - b, exactly
exact_sub: Final[Callable[[Decimal, Decimal], Decimal]] = _EXACT.subtract
#: a * b, exactly; its scale is the sum of the operands' scales (0.10 * 2.5 == 0.250)
exact_mul: Final[Callable[[Decimal, Decimal], Decimal]] = _EXACT.multiply


def exact_div(a: Decimal, b: Decimal, digits: int = QUOTIENT_DIGITS) -> Decimal:
    """`a / b` to `digits` significant digits, rounded half-even: the ONE money operation that rounds.

    An exact quotient is returned as is (21 / 2 == 10.5). Raises ZeroDivisionError when `b` is zero and
    ValueError when the quotient falls outside the bounds `checked` enforces.
    """
    if not 1 <= digits <= MAX_DIGITS:
        raise ValueError(f"digits must be within 1..{MAX_DIGITS}")
    if not b:
        raise ZeroDivisionError("exact_div by zero")
    context = Context(prec=digits, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero])
    quotient = context.divide(a, b)
    _, digits_of, exponent = quotient.as_tuple()
    if isinstance(exponent, int) and exponent > 0 and len(digits_of) + exponent <= MAX_DIGITS:
        # 5200 / 0.4 is Decimal('1.300E+4'): the same number, written as a price is (13000), exactly
        quotient = quotient.quantize(_ONE, context=_PLAIN)
    return checked(quotient)


_ONE: Final = Decimal(1)
#: Room for an integer of MAX_DIGITS digits: writing one without an exponent never rounds it.
_PLAIN: Final = Context(prec=MAX_DIGITS, traps=[InvalidOperation])
