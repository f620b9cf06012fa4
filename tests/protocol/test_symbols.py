"""protocol/symbols.py: splitting "BTCUSDT" into "BTC/USDT" by the longest matching quote asset."""

from __future__ import annotations

import pytest

from userstream.protocol.symbols import DEFAULT_QUOTES, SymbolSplitter


def test_default_quotes_are_the_issues_list() -> None:
    assert DEFAULT_QUOTES == (
        "USDT", "USDC", "BUSD", "TUSD", "FDUSD", "BTC", "ETH", "BNB", "TRY", "EUR",
    )  # fmt: skip


def test_quotes_are_tried_longest_first() -> None:
    assert SymbolSplitter().quotes[0] == "FDUSD"
    lengths = [len(quote) for quote in SymbolSplitter().quotes]
    assert lengths == sorted(lengths, reverse=True)
    assert sorted(SymbolSplitter().quotes) == sorted(DEFAULT_QUOTES)


@pytest.mark.parametrize(
    ("raw", "unified"),
    [
        ("BTCUSDT", "BTC/USDT"),
        ("ETHFDUSD", "ETH/FDUSD"),
        ("ETHBTC", "ETH/BTC"),
        ("BNBETH", "BNB/ETH"),
        ("ETHBNB", "ETH/BNB"),
        ("USDCUSDT", "USDC/USDT"),
        ("BTCTUSD", "BTC/TUSD"),
        ("ETHBUSD", "ETH/BUSD"),
        ("SOLUSDC", "SOL/USDC"),
        ("BTCTRY", "BTC/TRY"),
        ("BTCEUR", "BTC/EUR"),
        ("WBTCBTC", "WBTC/BTC"),
        ("1000PEPEUSDT", "1000PEPE/USDT"),
        ("btcusdt", "BTC/USDT"),
    ],
)
def test_default_split(raw: str, unified: str) -> None:
    assert SymbolSplitter()(raw) == unified


@pytest.mark.parametrize(
    "raw",
    [
        "FOOBAR",  # no known quote
        "USDT",  # a quote alone has no base: not a proper suffix
        "BTC",
        "",
        "XRP/USDT",  # already unified (Bitmusa's spelling)
        "BTCUSD",  # USD is not a default quote
    ],
)
def test_no_match_keeps_the_raw_symbol(raw: str) -> None:
    assert SymbolSplitter()(raw) == raw


def test_custom_quote_list() -> None:
    split = SymbolSplitter(["usd", "dai"])
    assert split.quotes == ("USD", "DAI")
    assert split("BTCUSD") == "BTC/USD"
    assert split("ETHDAI") == "ETH/DAI"
    assert split("BTCUSDT") == "BTCUSDT"  # USDT is not in this list, and it does not end with USD
    assert split("ETHBTC") == "ETHBTC"


def test_custom_list_longest_match_wins_over_shorter_suffix() -> None:
    split = SymbolSplitter(["USD", "SD", "D"])
    assert split("BTCUSD") == "BTC/USD"
    assert split("BTCXD") == "BTCX/D"


def test_repeated_calls_agree_beyond_the_cache_bound() -> None:
    split = SymbolSplitter()
    raws = [f"TOKEN{index}USDT" for index in range(5000)]
    assert [split(raw) for raw in raws] == [f"TOKEN{index}/USDT" for index in range(5000)]
    assert [split(raw) for raw in raws[:10]] == [f"TOKEN{index}/USDT" for index in range(10)]
