"""`connect()` takes the stream's options as one `StreamOptions` or as its keywords. The keyword form is
derived from StreamOptions (client/entry.py builds the signature users, `help()` and `inspect` see from it,
with every default), and it takes wider types at the boundary (`overflow` as a string, `quotes` and
`snapshot_symbols` as any sequence) than the options hold. This keeps the two lists in step: every option
is a keyword of `connect()`, with the same default."""

from __future__ import annotations

import inspect

import pytest

from userstream.client.entry import connect
from userstream.client.options import StreamOptions
from userstream.client.queue import Overflow
from userstream.errors import ConfigurationError


def test_every_stream_option_is_a_keyword_of_connect_with_the_same_default() -> None:
    options = inspect.signature(StreamOptions).parameters
    keywords = inspect.signature(connect).parameters
    missing = sorted(name for name in options if name != "self" and name not in keywords)
    assert missing == []
    differing = {
        name: (parameter.default, keywords[name].default)
        for name, parameter in options.items()
        if name != "self" and keywords[name].default != parameter.default
    }
    assert differing == {}
    assert all(keywords[name].kind is inspect.Parameter.KEYWORD_ONLY for name in options if name != "self")


async def test_connect_takes_a_stream_options_or_its_keywords_not_both() -> None:
    options = StreamOptions(account="alice", idle_timeout=30, overflow=Overflow.DROP_OLDEST)
    given = connect("coinlocally", options, token="tok-SECRET")
    spelled = connect(
        "coinlocally", token="tok-SECRET", account="alice", idle_timeout=30, overflow="drop_oldest"
    )
    try:
        assert given.options is options
        assert spelled.options == options
        assert (spelled.options.ping_interval, spelled.options.overflow) == (20.0, Overflow.DROP_OLDEST)
    finally:
        await given.aclose()
        await spelled.aclose()
    with pytest.raises(ConfigurationError) as both:
        connect("coinlocally", options, token="tok-SECRET", idle_timeout=20, fills=True)
    assert str(both.value) == (
        "pass the stream's options as a StreamOptions or as keyword arguments, not both "
        "(also given: fills, idle_timeout)"
    )
    with pytest.raises(TypeError) as unknown:
        connect("coinlocally", token="tok-SECRET", idle_timout=20)
    assert str(unknown.value) == "connect() got an unexpected keyword argument 'idle_timout'"
