"""protocol/bitmusa_server.py: the exchange's side of a Bitmusa stream, driven by hand with a fake clock.

Every move of the transition table, each close code (expiry, deletion, maximum age, the server's own,
the full send buffer), the one deadline, and the refusals of an upgrade, with exact values. No event loop,
no socket.
"""

from __future__ import annotations

import pytest

from userstream.errors import LocalProtocolError
from userstream.events import Exchange
from userstream.protocol.bitmusa_server import (
    TABLE,
    VARIANTS,
    BitmusaServerSession,
    Input,
    State,
    handshake_credential,
    refuse_handshake,
    variant_style,
)
from userstream.protocol.registry import spec
from userstream.protocol.server_session import (
    AccountNamedBy,
    HandshakeCredential,
    HandshakeProblem,
    HttpRefusal,
    ServerStyle,
    ServerTerms,
)
from userstream.protocol.session import Close, GoLive

T0 = 500.0
WALL = 1_713_338_308_232
MAX_AGE = 86_400.0


def session(style: ServerStyle | None = None) -> BitmusaServerSession:
    return BitmusaServerSession(
        ServerTerms(max_age=MAX_AGE, heartbeat_timeout=40.0, style=style or ServerStyle())
    )


def live(style: ServerStyle | None = None) -> BitmusaServerSession:
    made = session(style)
    assert made.open(T0, WALL) == [GoLive()]
    return made


def test_the_transition_table_is_exactly_the_documented_one() -> None:
    s, i = State, Input
    expected = {
        (s.NEW, i.OPEN): s.LIVE,
        (s.LIVE, i.FRAME): s.LIVE,
        (s.LIVE, i.KEY_EXPIRED): s.CLOSING,
        (s.LIVE, i.KEY_DELETED): s.CLOSING,
        (s.LIVE, i.MAX_AGE): s.CLOSING,
        (s.LIVE, i.CLOSE): s.CLOSING,
        (s.LIVE, i.BUFFER_FULL): s.CLOSING,
        **{(s.CLOSING, event): s.CLOSING for event in i if event is not i.OPEN},
    }
    assert dict(TABLE) == expected


def test_a_move_the_table_does_not_list_is_refused() -> None:
    fresh = session()
    with pytest.raises(LocalProtocolError, match=r"^no transition from NEW on FRAME$"):
        fresh.receive("hello", T0, WALL)
    with pytest.raises(LocalProtocolError, match=r"^no transition from NEW on CLOSE$"):
        fresh.close(1001, "bye")
    fresh.open(T0, WALL)
    with pytest.raises(LocalProtocolError, match=r"^no transition from LIVE on OPEN$"):
        fresh.open(T0, WALL)


def test_a_listen_key_stream_is_live_from_its_open_with_the_maximum_age_as_its_deadline() -> None:
    made = session()
    assert made.state is State.NEW
    assert made.next_deadline() is None
    assert made.open(T0, WALL) == [GoLive()]
    assert made.state is State.LIVE
    assert made.live
    assert not made.closing
    assert made.next_deadline() == T0 + MAX_AGE


@pytest.mark.parametrize("frame", ["hello", '{"method":"SUBSCRIBE"}', b"\x00\x01", ""])
def test_client_frames_are_dropped_without_a_word(frame: str | bytes) -> None:
    made = live()
    assert made.receive(frame, T0 + 1, WALL) == []
    assert made.state is State.LIVE
    assert made.next_deadline() == T0 + MAX_AGE  # nothing a client sends moves anything


def test_the_maximum_age_closes_4000() -> None:
    made = live()
    assert made.on_deadline(T0 + MAX_AGE - 0.5, WALL) == []  # woken early
    assert made.on_deadline(T0 + MAX_AGE, WALL) == [Close(4000, "connection reached its maximum age", None)]
    assert made.state is State.CLOSING
    assert made.next_deadline() is None


def test_an_expired_listen_key_closes_4001_or_the_styles_code() -> None:
    assert live().listen_key_ended(expired=True) == [Close(4001, "listenKey expired", None)]
    variant = live(ServerStyle(expired_close_code=4401))
    assert variant.listen_key_ended(expired=True) == [Close(4401, "listenKey expired", None)]


def test_a_deleted_listen_key_closes_4002_whatever_the_style() -> None:
    made = live(ServerStyle(expired_close_code=4401))
    assert made.listen_key_ended(expired=False) == [Close(4002, "listenKey deleted", None)]


def test_the_servers_close_and_a_full_buffer_carry_no_notice() -> None:
    assert live().close(1001, "server shutting down") == [Close(1001, "server shutting down", None)]
    assert live().send_buffer_full() == [Close(4005, "send buffer full: the client is not reading", None)]


def test_once_closing_the_first_close_stands_and_nothing_more_is_said() -> None:
    made = live()
    assert made.listen_key_ended(expired=False) == [Close(4002, "listenKey deleted", None)]
    assert made.listen_key_ended(expired=True) == []
    assert made.close(1001, "again") == []
    assert made.send_buffer_full() == []
    assert made.receive("late", T0 + 2, WALL) == []
    assert made.on_deadline(T0 + MAX_AGE, WALL) == []
    assert made.state is State.CLOSING
    assert not made.live


def test_the_repr_shows_the_state() -> None:
    assert repr(live()) == "BitmusaServerSession(state=LIVE)"


# --- the handshake, refused before any stream exists -------------------------------------------------------

NOT_FOUND = HttpRefusal(404, b'{"code":404001,"message":"listenKey does not exist or has expired"}')


@pytest.mark.parametrize(
    ("problem", "detail", "retry_after", "expected"),
    [
        (
            HandshakeProblem.NOT_AN_UPGRADE,
            "",
            None,
            HttpRefusal(400, b'{"code":400001,"message":"expected a WebSocket upgrade"}'),
        ),
        (
            HandshakeProblem.SHUTTING_DOWN,
            "",
            None,
            HttpRefusal(503, b'{"code":400001,"message":"the server is shutting down"}'),
        ),
        (
            HandshakeProblem.TOO_MANY_CONNECTIONS,
            "too many connections from this address: at most 2 at once",
            1,
            HttpRefusal(
                429,
                b'{"code":429001,"message":"too many connections from this address: at most 2 at once"}',
                1,
            ),
        ),
        (
            HandshakeProblem.UNAVAILABLE,
            "redis is down",
            None,
            HttpRefusal(503, b'{"code":503001,"message":"service unavailable: redis is down"}'),
        ),
        (HandshakeProblem.NO_CREDENTIALS, "", None, NOT_FOUND),
        (HandshakeProblem.UNKNOWN_CREDENTIALS, "", None, NOT_FOUND),
        (
            HandshakeProblem.REFUSED_FOR_NOW,
            "service unavailable: new streams are refused for now (fault injection)",
            3,
            HttpRefusal(
                503,
                b'{"code":503001,"message":"service unavailable: new streams are refused for now '
                b'(fault injection)"}',
                3,
            ),
        ),
    ],
)
def test_a_refused_upgrade_gets_bitmusas_error_body(
    problem: HandshakeProblem, detail: str, retry_after: int | None, expected: HttpRefusal
) -> None:
    assert refuse_handshake(problem, detail, retry_after) == expected
    assert spec(Exchange.BITMUSA).refuse_handshake(problem, detail, retry_after) == expected


# --- the handshake's credential and the variants ------------------------------------------------------


def test_the_upgrade_names_its_account_by_the_listen_key_in_its_path() -> None:
    entry = spec(Exchange.BITMUSA)
    assert entry.handshake_names_account is AccountNamedBy.LISTEN_KEY_IN_PATH
    assert entry.handshake_credential is handshake_credential
    found = handshake_credential("k3y", {"token": "ignored"})
    assert found == HandshakeCredential("listen_key", "k3y", "listenKey")
    assert repr(found) == "HandshakeCredential(kind='listen_key', value=<hidden>)"
    assert handshake_credential(None, {}) is None
    assert handshake_credential("", {}) is None
    assert dict(entry.account_keys) == {"api_key": "bitmusa_api_key", "auth_key": "bitmusa_auth_key"}
    assert entry.listen_key_path == "/spot/userDataStream"


def test_the_expired_close_variant_changes_the_style_and_nothing_else_does() -> None:
    ours = ServerStyle()
    assert variant_style({}, ours) is ours
    assert variant_style({"numbers-as-strings": None}, ours) is ours
    assert variant_style({"bitmusa-expired-close": 4401.0}, ours) == ServerStyle(expired_close_code=4401)
    assert [info.name for info in VARIANTS] == [
        "bitmusa-errors-code-msg",
        "bitmusa-errors-html",
        "bitmusa-post-extends",
        "bitmusa-expired-close",
    ]
    assert {info.exchange for info in VARIANTS} == {Exchange.BITMUSA}
    assert spec(Exchange.BITMUSA).server_variants is VARIANTS
