"""`connect()` spells out StreamOptions' keywords again, on purpose: its signature is what users, their IDEs
and mypy --strict see, with every default, and it takes wider types at the boundary (`overflow` as a string,
`quotes` and `snapshot_symbols` as any sequence) than the options hold. This keeps the two lists in step:
every option is a keyword of `connect()`, with the same default."""

from __future__ import annotations

import inspect

from userstream.client.entry import connect
from userstream.client.options import StreamOptions


def test_every_stream_option_is_a_keyword_of_connect_with_the_same_default() -> None:
    options = inspect.signature(StreamOptions.__init__).parameters
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
