"""Money from wire text, the way the tests state it: `Decimal(text)` held to money.py's bounds.

The parsers get their Decimals from msgspec and bound them with `money.checked`; the tests of those bounds
(tests/test_money.py) write values as text, and this is the one place that turns such text into a checked
Decimal, with the reason when it is refused.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from userstream.money import checked

__all__ = ["parse_decimal"]


def parse_decimal(text: str) -> Decimal:
    """Parse wire text (a JSON string's content or a JSON number's literal) exactly; ValueError if bad."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a decimal number: {text[:40]!r}") from None
    return checked(value)
