"""The symbol rule: split an exchange's concatenated symbol ("BTCUSDT") into unified "BASE/QUOTE"."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["DEFAULT_QUOTES", "SymbolSplitter"]

#: Quote assets tried by default, longest match first (so "FDUSD" wins over "USD"-like suffixes).
DEFAULT_QUOTES: tuple[str, ...] = (
    "USDT", "USDC", "BUSD", "TUSD", "FDUSD", "BTC", "ETH", "BNB", "TRY", "EUR",
)  # fmt: skip


class SymbolSplitter:
    """Split by the longest quote asset that is a proper suffix; unsplittable symbols stay as they are."""

    __slots__ = ("_cache", "_quotes")

    def __init__(self, quotes: Iterable[str] = DEFAULT_QUOTES) -> None:
        # dict.fromkeys, not a set: equal-length quotes keep the caller's order, whatever the hash seed.
        unique = dict.fromkeys(quote.upper() for quote in quotes)
        self._quotes = tuple(sorted(unique, key=len, reverse=True))
        self._cache: dict[str, str] = {}

    @property
    def quotes(self) -> tuple[str, ...]:
        return self._quotes

    @property
    def known(self) -> Mapping[str, str]:
        """The symbols split so far, raw -> unified: a hot path looks here before calling the splitter."""
        return self._cache

    def __call__(self, raw: str) -> str:
        unified = self._cache.get(raw)
        if unified is None:
            unified = self._split(raw)
            if len(self._cache) < 4096:  # bounded: symbols come from the wire
                self._cache[raw] = unified
        return unified

    def _split(self, raw: str) -> str:
        if "/" in raw:
            return raw
        upper = raw.upper()
        for quote in self._quotes:
            if len(upper) > len(quote) and upper.endswith(quote):
                return f"{upper[: -len(quote)]}/{quote}"
        return raw
