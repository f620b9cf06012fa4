"""How the stream's options fit together (client/options.py): a timing left out takes its default when
that fits the timings given and a derived value otherwise, exactly; only a contradiction between given
timings is refused, naming them as the caller typed them; and `connect()` with a single timing given
streams on both exchanges."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import msgspec
import pytest

from userstream.client import State, StreamOptions, connect
from userstream.client.options import DEFAULTS, resolve
from userstream.errors import ConfigurationError

Env = Any  # conftest.Env
Lab = Callable[..., AbstractAsyncContextManager[Any]]
Recorder = Any  # conftest.Recorder

DOCUMENTED = {  # docs/client.md's defaults, written out rather than read from the code under test
    "keepalive_interval": 1800.0,
    "ping_interval": 30.0,
    "idle_timeout": 45.0,
    "rotate_after": 84600.0,
    "sub_timeout": 10.0,
    "backoff_base": 1.0,
    "backoff_cap": 30.0,
    "stable_after": 60.0,
    "overlap_timeout": 5.0,
    "close_timeout": 5.0,
    "request_timeout": 10.0,
}


def flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def test_the_defaults_are_the_documented_ones_and_fit_together() -> None:
    assert DEFAULTS == DOCUMENTED
    assert resolve({}).values == DOCUMENTED
    assert resolve({}).derived == ()
    options = StreamOptions()
    assert {name: getattr(options, name) for name in DOCUMENTED} == DOCUMENTED
    assert options.derived == ()


@pytest.mark.parametrize(
    ("given", "settled", "derived"),
    [
        # The case: idle_timeout alone. The ping interval fits under it (idle / 1.5, at most 30 s).
        (
            {"idle_timeout": 5},
            {"ping_interval": 10 / 3, "sub_timeout": 5},
            (
                "ping_interval 3.33333s, derived from idle_timeout (5s): idle_timeout / 1.5, at most 30s",
                "sub_timeout 5s, derived from idle_timeout (5s): never longer than idle_timeout",
            ),
        ),
        (
            {"idle_timeout": 10},
            {"ping_interval": 20 / 3},
            ("ping_interval 6.66667s, derived from idle_timeout (10s): idle_timeout / 1.5, at most 30s",),
        ),
        (
            {"idle_timeout": 30},
            {"ping_interval": 20.0},
            ("ping_interval 20s, derived from idle_timeout (30s): idle_timeout / 1.5, at most 30s",),
        ),
        # A default that fits stays: Coinlocally drops a client that has not pinged for 40 s.
        ({"idle_timeout": 120}, {"ping_interval": 30.0}, ()),
        # ... and the reverse: ping_interval alone, idle_timeout fits over it (ping * 1.5, at least 45 s).
        (
            {"ping_interval": 60},
            {"idle_timeout": 90.0},
            ("idle_timeout 90s, derived from ping_interval (60s): ping_interval * 1.5, at least 45s",),
        ),
        ({"ping_interval": 1}, {"idle_timeout": 45.0}, ()),
        # Both given and consistent: taken as they are, whatever the ratio.
        ({"ping_interval": 0.1, "idle_timeout": 0.15}, {"sub_timeout": 0.15}, None),
        # sub_timeout given is never bound by idle_timeout (both run; the first to end names itself).
        ({"idle_timeout": 2, "sub_timeout": 30}, {"ping_interval": 4 / 3}, None),
        (
            {"backoff_base": 60},
            {"backoff_cap": 60},
            ("backoff_cap 60s, derived from backoff_base (60s): never below backoff_base",),
        ),
        (
            {"backoff_cap": 0.5},
            {"backoff_base": 0.5},
            ("backoff_base 0.5s, derived from backoff_cap (0.5s): never above backoff_cap",),
        ),
        ({"backoff_base": 2}, {}, ()),
        (
            {"rotate_after": 0.5},
            {"overlap_timeout": 0.25, "stable_after": 0.25},
            (
                "overlap_timeout 0.25s, derived from rotate_after (0.5s): at most half of rotate_after",
                "stable_after 0.25s, derived from rotate_after (0.5s): at most half of rotate_after",
            ),
        ),
        ({"rotate_after": 3600}, {}, ()),
        ({"rotate_after": None}, {}, ()),  # no rotation: nothing to fit under
        ({"rotate_after": None, "overlap_timeout": 90_000, "stable_after": 90_000}, {}, None),
        ({"keepalive_interval": 3599.5}, {}, ()),
    ],
)
def test_a_timing_left_out_fits_the_ones_given(
    given: dict[str, float | None], settled: dict[str, float], derived: tuple[str, ...] | None
) -> None:
    resolved = resolve(given)
    assert resolved.values == {**DOCUMENTED, **given, **settled}
    if derived is not None:
        assert resolved.derived == derived
    options = StreamOptions(**given)  # type: ignore[arg-type]
    assert {name: getattr(options, name) for name in DOCUMENTED} == resolved.values
    assert options.derived == resolved.derived


def test_replace_takes_every_value_of_the_original_as_given() -> None:
    options = StreamOptions(idle_timeout=30)
    smaller = msgspec.structs.replace(options, queue_size=5)
    assert (smaller.queue_size, smaller.ping_interval, smaller.idle_timeout) == (5, 20.0, 30)
    assert smaller.derived == ()
    with pytest.raises(ConfigurationError, match=r"^idle_timeout \(5s\) must exceed ping_interval \(20s\)"):
        msgspec.structs.replace(options, idle_timeout=5)


def test_none_means_not_given_and_equality_ignores_how_a_value_came() -> None:
    assert StreamOptions(idle_timeout=30, ping_interval=None) == StreamOptions(idle_timeout=30)
    assert StreamOptions(idle_timeout=30) == StreamOptions(idle_timeout=30, ping_interval=20)
    assert StreamOptions(idle_timeout=30, ping_interval=20).derived == ()
    assert StreamOptions(rotate_after=None).rotate_after is None


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            {"idle_timeout": 30, "ping_interval": 30},
            "{idle_timeout} (30s) must exceed {ping_interval} (30s): the pong of a ping is what proves a "
            "quiet connection alive (give one of the two and the other is derived from it)",
        ),
        (
            {"keepalive_interval": 3600},
            "{keepalive_interval} (3600s) must be shorter than the listenKey's validity (3600s)",
        ),
        ({"backoff_base": 5, "backoff_cap": 2}, "{backoff_cap} (2s) must be at least {backoff_base} (5s)"),
        (
            {"rotate_after": 10, "overlap_timeout": 10},
            "{overlap_timeout} (10s) must be shorter than {rotate_after} (10s): a rotation's hand-over "
            "would last until the next rotation is due",
        ),
        (
            {"rotate_after": 60, "stable_after": 90},
            "{stable_after} (90s) must be shorter than {rotate_after} (60s): every connection would be "
            "rotated before it counted as stable, so the reconnect backoff would never start over",
        ),
        # rotate_after is never derived (its default is set by the exchanges' 24-hour cut): what must fit
        # under it and cannot is refused, saying the other side is the default.
        (
            {"overlap_timeout": 90_000},
            "{overlap_timeout} (90000s) must be shorter than {rotate_after} (84600s by default): a "
            "rotation's hand-over would last until the next rotation is due",
        ),
        ({"idle_timeout": 0}, "{idle_timeout} must be a positive number of seconds, not 0"),
        ({"ping_interval": "fast"}, "{ping_interval} must be a positive number of seconds, not 'fast'"),
        ({"backoff_cap": True}, "{backoff_cap} must be a positive number of seconds, not True"),
        ({"stable_after": -1}, "{stable_after} must be a number of seconds, 0 or more, not -1"),
    ],
)
@pytest.mark.parametrize("spelling", ["keyword", "flag"])
def test_only_a_contradiction_between_given_values_is_refused_naming_them(
    given: dict[str, Any], message: str, spelling: str
) -> None:
    spell = flag if spelling == "flag" else str
    names = {name: spell(name) for name in DOCUMENTED}
    with pytest.raises(ConfigurationError) as raised:
        resolve(given, spell=spell)
    assert str(raised.value) == message.format(**names)
    if spelling == "keyword":
        with pytest.raises(ConfigurationError) as raised:
            StreamOptions(**given)
        assert str(raised.value) == message.format(**names)


def test_how_rotation_is_turned_off_is_said_as_the_caller_says_it() -> None:
    with pytest.raises(ConfigurationError) as raised:
        StreamOptions(rotate_after=-5)
    assert str(raised.value) == (
        "rotate_after must be a positive number of seconds (None turns rotation off), not -5"
    )
    with pytest.raises(ConfigurationError) as raised:
        resolve({"rotate_after": 0.0}, spell=flag, rotation_off="0")
    assert str(raised.value) == (
        "--rotate-after must be a positive number of seconds (0 turns rotation off), not 0.0"
    )


def test_resolve_refuses_a_name_that_is_not_a_timing() -> None:
    with pytest.raises(TypeError, match="resolve\\(\\) got an unknown timing 'queue_size'"):
        resolve({"queue_size": 10})


# --- connect() with one timing given, against the real emulator ------------------------------------------


def only(env: Env, exchange: str, **timings: float) -> dict[str, Any]:
    """connect()'s credentials and endpoints for alice on this server, `timings`, and nothing else."""
    settings = env.options(exchange, **timings)
    return {
        key: value
        for key, value in settings.items()
        if key in {"account", "api_key", "auth_key", "token", "rest_url", "ws_url"} or key in timings
    }


@pytest.mark.parametrize("idle_timeout", [5.0, 10.0, 30.0])
@pytest.mark.parametrize("exchange", ["bitmusa", "coinlocally"])
async def test_connect_with_only_an_idle_timeout_streams(
    lab: Lab, recorder: Recorder, exchange: str, idle_timeout: float
) -> None:
    async with lab() as env:
        settings = only(env, exchange, idle_timeout=idle_timeout)
        async with connect(exchange, **settings, on_status=recorder) as stream:
            await env.until_streaming()
            await env.ingest([env.balance(1)])
            assert await env.take(stream, 1) == [env.expected_balance(1, exchange)]
            assert stream.options.ping_interval == idle_timeout / 1.5
    live = ["connecting", "connected"] + (["subscribed"] if exchange == "coinlocally" else [])
    assert recorder.states()[: len(live)] == live
    assert State.DISCONNECTED not in [status.state for status in recorder.statuses]


@pytest.mark.parametrize("exchange", ["bitmusa", "coinlocally"])
async def test_the_derived_ping_keeps_a_quiet_connection_alive(
    lab: Lab, recorder: Recorder, exchange: str
) -> None:
    # idle_timeout alone, short: the derived ping (1 s) must reach the server and its pong come back before
    # each 1.5 s of silence is up. Three pings span twice the idle timeout without a single event.
    async with lab() as env:
        settings = only(env, exchange, idle_timeout=1.5)
        async with connect(exchange, **settings, on_status=recorder) as stream:
            await env.until_streaming()
            await env.until(lambda: stream.stats.pings_sent >= 3)
            await env.ingest([env.balance(1)])
            assert await env.take(stream, 1) == [env.expected_balance(1, exchange)]
            assert stream.stats.connections == 1
            assert stream.options.ping_interval == 1.0
    assert State.DISCONNECTED not in [status.state for status in recorder.statuses]


async def test_connect_logs_each_derived_value_at_info(lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    async with lab() as env:
        with caplog.at_level(logging.INFO, logger="userstream.client"):
            async with connect("bitmusa", **only(env, "bitmusa", idle_timeout=30, rotate_after=7200)):
                await env.until_streaming()
    assert [record.getMessage() for record in caplog.records if record.name == "userstream.client"] == [
        "bitmusa/alice: ping_interval 20s, derived from idle_timeout (30s): idle_timeout / 1.5, at most 30s"
    ]


@pytest.mark.parametrize(
    ("exchange", "timings", "warnings"),
    [
        (
            "coinlocally",
            {"ping_interval": 40},
            [
                "coinlocally/alice: ping_interval (40s) is not under the 40s after which Coinlocally's "
                "document says it closes a connection that has not pinged: expect the connection closed "
                "about every 40s, each close a gap"
            ],
        ),
        ("coinlocally", {"ping_interval": 39.5}, []),
        ("bitmusa", {"ping_interval": 40}, []),  # Bitmusa documents no ping, so no limit on it
        (
            "bitmusa",
            {"rotate_after": 86400},
            [
                "bitmusa/alice: rotate_after (86400s) is not under the exchanges' 24-hour connection limit "
                "(86400s): every connection will be cut before it is rotated, each cut a gap"
            ],
        ),
        ("coinlocally", {"rotate_after": 86399, "idle_timeout": 120}, []),  # derived ping 30: never warned
    ],
)
async def test_given_timings_the_documents_say_will_fail_are_warned_not_refused(
    lab: Lab, caplog: pytest.LogCaptureFixture, exchange: str, timings: dict[str, float], warnings: list[str]
) -> None:
    async with lab() as env:
        with caplog.at_level(logging.WARNING, logger="userstream.client"):
            stream = connect(exchange, **only(env, exchange, **timings))
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "userstream.client"] == [
        ("WARNING", line) for line in warnings
    ]
    assert {name: getattr(stream.options, name) for name in timings} == timings
    await stream.aclose()
