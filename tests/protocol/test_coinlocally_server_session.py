"""protocol/coinlocally_server.py: the exchange's side of a Coinlocally stream, driven with a fake clock.

Every move of the transition table, every refusal (of a sub, and of an upgrade) and every deadline, with
the exact frames and closes the session asks for. No event loop, no socket: times are plain numbers passed in.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable

import pytest

from userstream.errors import LocalProtocolError
from userstream.events import Exchange
from userstream.protocol import coinlocally_control, coinlocally_render
from userstream.protocol.codec import gzip_bytes
from userstream.protocol.coinlocally_server import (
    TABLE,
    VARIANTS,
    CoinlocallyServerSession,
    Input,
    State,
    handshake_credential,
    is_client_pong,
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
    SubRefusal,
)
from userstream.protocol.session import Close, GoLive, Ignore, Send

SECRET = "alice-coinlocally-token"
UID = 24005174
T0 = 1000.0  # monotonic seconds at the open
WALL = 1_713_338_308_232  # wall-clock ms
MAX_AGE = 600.0
HEARTBEAT = 40.0
NOTICE = coinlocally_render.render_system_close(UID)
SUB = json.dumps({"event": "sub", "token": SECRET})
OTHER_SUB = json.dumps({"event": "sub", "token": "bob-coinlocally-token"})
REJECTED = Send(
    '{"event":"error","code":401002,'
    '"message":"sub rejected: the token does not match this connection\'s credential"}'
)


Make = Callable[[], CoinlocallyServerSession]


def session(secret: str | None = SECRET, style: ServerStyle | None = None) -> CoinlocallyServerSession:
    terms = ServerTerms(
        uid=UID, secret=secret, max_age=MAX_AGE, heartbeat_timeout=HEARTBEAT, style=style or ServerStyle()
    )
    return CoinlocallyServerSession(terms)


def opened(secret: str | None = SECRET, style: ServerStyle | None = None) -> CoinlocallyServerSession:
    made = session(secret, style)
    made.open(T0, WALL)
    return made


def live(style: ServerStyle | None = None) -> CoinlocallyServerSession:
    made = opened(style=style)
    made.receive(SUB, T0 + 1, WALL)
    assert made.state is State.LIVE
    return made


# --- the table ------------------------------------------------------------------------------------------


def test_the_transition_table_is_exactly_the_documented_one() -> None:
    s, i = State, Input
    stays = {
        (state, event): state
        for state in (s.AWAITING_SUB, s.LIVE)
        for event in (i.PING, i.PONG, i.OTHER, i.SERVER_PING_DUE)
    }
    ends = {
        (state, event): s.CLOSING
        for state in (s.AWAITING_SUB, s.LIVE)
        for event in (i.SUB_MISMATCH, i.HEARTBEAT_LAPSED, i.MAX_AGE, i.CLOSE, i.BUFFER_FULL)
    }
    unverified = {
        (s.UNVERIFIED, i.PING): s.UNVERIFIED,
        (s.UNVERIFIED, i.PONG): s.UNVERIFIED,
        (s.UNVERIFIED, i.OTHER): s.UNVERIFIED,
        (s.UNVERIFIED, i.SUB): s.CLOSING,
        (s.UNVERIFIED, i.SUB_WAIT_LAPSED): s.CLOSING,
        (s.UNVERIFIED, i.CLOSE): s.CLOSING,
        (s.UNVERIFIED, i.BUFFER_FULL): s.CLOSING,
    }
    closing = {(s.CLOSING, event): s.CLOSING for event in i if event not in (i.OPEN, i.OPEN_UNVERIFIED)}
    expected = {
        (s.NEW, i.OPEN): s.AWAITING_SUB,
        (s.NEW, i.OPEN_UNVERIFIED): s.UNVERIFIED,
        (s.AWAITING_SUB, i.SUB): s.LIVE,
        (s.LIVE, i.SUB): s.LIVE,
        **stays,
        **ends,
        **unverified,
        **closing,
    }
    assert dict(TABLE) == expected


def test_a_move_the_table_does_not_list_is_refused() -> None:
    fresh = session()
    with pytest.raises(LocalProtocolError, match=r"^no transition from NEW on PING$"):
        fresh.receive('{"ping":1}', T0, WALL)
    fresh.open(T0, WALL)
    with pytest.raises(LocalProtocolError, match=r"^no transition from AWAITING_SUB on OPEN$"):
        fresh.open(T0, WALL)
    assert fresh.state is State.AWAITING_SUB  # a refused move changes nothing


# --- opening and the sub ----------------------------------------------------------------------------------


def test_open_says_connect_success_and_sets_the_heartbeat_and_max_age_deadlines() -> None:
    made = session()
    assert made.state is State.NEW
    assert made.next_deadline() is None
    assert made.open(T0, WALL) == [Send("connect success")]
    assert made.state is State.AWAITING_SUB
    assert not made.live
    assert not made.closing
    assert made.next_deadline() == T0 + HEARTBEAT


def test_the_matching_sub_says_sub_success_then_goes_live() -> None:
    made = opened()
    assert made.receive(SUB, T0 + 1, WALL) == [Send("sub success"), GoLive()]
    assert made.state is State.LIVE
    assert made.live


def test_a_gzipped_sub_is_understood() -> None:
    made = opened()
    assert made.receive(gzip.compress(SUB.encode()), T0 + 1, WALL) == [Send("sub success"), GoLive()]


def test_a_second_sub_is_answered_but_does_not_go_live_again() -> None:
    made = live()
    assert made.receive(SUB, T0 + 2, WALL) == [Send("sub success")]
    assert made.state is State.LIVE


@pytest.mark.parametrize("make", [opened, live], ids=["awaiting sub", "live"])
def test_a_sub_with_another_token_is_refused_without_the_system_notice(make: Make) -> None:
    made = make()
    assert made.receive(OTHER_SUB, T0 + 2, WALL) == [REJECTED, Close(4004, "sub rejected", None)]
    assert made.state is State.CLOSING
    assert not made.live
    assert made.closing
    assert made.next_deadline() is None


def test_a_sub_without_a_string_token_is_ignored() -> None:
    made = opened()
    assert made.receive('{"event":"sub","token":5}', T0 + 1, WALL) == [
        Ignore("sub frame without a string token")
    ]
    assert made.state is State.AWAITING_SUB


# --- pings, pongs, other frames -----------------------------------------------------------------------------


@pytest.mark.parametrize("make", [opened, live], ids=["awaiting sub", "live"])
def test_a_ping_gets_a_pong_with_the_servers_time_and_moves_the_heartbeat(make: Make) -> None:
    made = make()
    assert made.receive('{"ping":5}', T0 + 30, WALL + 7) == [Send(f'{{"pong":{WALL + 7}}}')]
    assert made.next_deadline() == T0 + 30 + HEARTBEAT
    assert made.on_deadline(T0 + HEARTBEAT, WALL) == []  # the old heartbeat deadline no longer counts


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("hello", "not a JSON object: JSON is malformed: invalid character (byte 0)"),
        ('{"event":"unsub"}', "unrecognized client frame"),
        ('{"pong":5}', "unrecognized client frame"),  # no server pings: a pong is nothing
        ('{"ping":"soon"}', "$.ping: Expected `int`, got `str`"),
    ],
)
def test_other_frames_are_ignored_with_why(frame: str, reason: str) -> None:
    made = live()
    assert made.receive(frame, T0 + 3, WALL) == [Ignore(reason)]
    assert made.state is State.LIVE
    assert made.next_deadline() == T0 + HEARTBEAT  # nothing but a ping (or a pong) is a heartbeat


def test_with_server_pings_a_pong_is_a_heartbeat_too() -> None:
    made = live(ServerStyle(server_ping_interval=5.0))
    assert made.receive('{"pong":5}', T0 + 20, WALL) == []
    assert made.next_deadline() == T0 + 5  # the server's next ping comes first
    # at the old heartbeat deadline only the (late) server ping is due: the pong moved the heartbeat
    assert made.on_deadline(T0 + HEARTBEAT, WALL) == [Send(f'{{"ping":{WALL}}}')]
    assert made.next_deadline() == T0 + HEARTBEAT + 5
    assert made.on_deadline(T0 + 20 + HEARTBEAT, WALL) == [
        Send(f'{{"ping":{WALL}}}'),
        Close(4003, "no ping within 40 s", NOTICE),
    ]


# --- deadlines ----------------------------------------------------------------------------------------------


def test_no_ping_within_the_heartbeat_timeout_closes_4003_after_the_system_notice() -> None:
    made = live()
    assert made.on_deadline(T0 + HEARTBEAT - 0.001, WALL) == []  # woken early: nothing is due
    assert made.on_deadline(T0 + HEARTBEAT, WALL) == [Close(4003, "no ping within 40 s", NOTICE)]
    assert made.state is State.CLOSING
    assert made.next_deadline() is None


def test_an_unsubscribed_stream_hears_the_heartbeat_close_too() -> None:
    made = opened()
    assert made.on_deadline(T0 + HEARTBEAT, WALL) == [Close(4003, "no ping within 40 s", NOTICE)]


def test_the_heartbeat_timeout_is_written_as_it_was_given() -> None:
    made = CoinlocallyServerSession(
        ServerTerms(uid=UID, secret=SECRET, max_age=MAX_AGE, heartbeat_timeout=0.3)
    )
    made.open(T0, WALL)
    assert made.on_deadline(T0 + 0.3, WALL) == [Close(4003, "no ping within 0.3 s", NOTICE)]


def test_the_maximum_age_closes_4000_after_the_system_notice_however_lively() -> None:
    made = live()
    for second in range(30, int(MAX_AGE), 30):
        made.receive('{"ping":1}', T0 + second, WALL)
    assert made.next_deadline() == T0 + MAX_AGE
    assert made.on_deadline(T0 + MAX_AGE, WALL) == [Close(4000, "connection reached its maximum age", NOTICE)]


def test_an_unsubscribed_stream_reaches_its_maximum_age_too() -> None:
    made = CoinlocallyServerSession(ServerTerms(uid=UID, secret=SECRET, max_age=10, heartbeat_timeout=40))
    made.open(T0, WALL)
    assert made.next_deadline() == T0 + 10
    assert made.on_deadline(T0 + 10, WALL) == [Close(4000, "connection reached its maximum age", NOTICE)]
    assert made.state is State.CLOSING


def test_when_both_are_due_the_heartbeat_close_wins() -> None:
    made = CoinlocallyServerSession(ServerTerms(uid=UID, secret=SECRET, max_age=10, heartbeat_timeout=10))
    made.open(T0, WALL)
    assert made.on_deadline(T0 + 10, WALL) == [Close(4003, "no ping within 10 s", NOTICE)]


def test_the_server_pings_every_interval_when_its_style_says_so() -> None:
    made = opened(style=ServerStyle(server_ping_interval=5.0))
    assert made.next_deadline() == T0 + 5
    assert made.on_deadline(T0 + 5.2, WALL + 5200) == [Send(f'{{"ping":{WALL + 5200}}}')]
    assert made.next_deadline() == T0 + 10.2  # from when it was sent
    assert made.state is State.AWAITING_SUB


def test_a_server_ping_due_with_the_heartbeat_close_is_sent_before_it() -> None:
    made = opened(style=ServerStyle(server_ping_interval=HEARTBEAT))
    assert made.on_deadline(T0 + HEARTBEAT, WALL) == [
        Send(f'{{"ping":{WALL}}}'),
        Close(4003, "no ping within 40 s", NOTICE),
    ]


# --- the server's own closes ------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [opened, live], ids=["awaiting sub", "live"])
def test_a_server_close_carries_the_system_notice_and_the_first_one_wins(make: Make) -> None:
    made = make()
    assert made.close(1001, "server shutting down") == [Close(1001, "server shutting down", NOTICE)]
    assert made.close(4000, "again") == []
    assert made.send_buffer_full() == []
    assert made.receive(SUB, T0 + 2, WALL) == []  # the close is under way: nothing more is said
    assert made.receive(OTHER_SUB, T0 + 2, WALL) == []
    assert made.receive('{"ping":1}', T0 + 2, WALL) == []
    assert made.receive('{"pong":1}', T0 + 2, WALL) == []
    assert made.receive("hello", T0 + 2, WALL) == []
    assert made.on_deadline(T0 + MAX_AGE, WALL) == []
    assert made.state is State.CLOSING


@pytest.mark.parametrize("make", [opened, live], ids=["awaiting sub", "live"])
def test_a_full_send_buffer_closes_4005_after_the_system_notice(make: Make) -> None:
    made = make()
    assert made.send_buffer_full() == [Close(4005, "send buffer full: the client is not reading", NOTICE)]
    assert made.state is State.CLOSING


def test_coinlocally_has_no_listen_key_to_end() -> None:
    made = live()
    assert made.listen_key_ended(expired=True) == []
    assert made.state is State.LIVE


# --- a credential that matched nobody (a refusal variant let it through) -----------------------------------


def test_an_unverified_stream_says_connect_success_and_waits_for_its_sub() -> None:
    made = session(secret=None)
    assert made.open(T0, WALL) == [Send("connect success")]
    assert made.state is State.UNVERIFIED
    assert made.next_deadline() == T0 + HEARTBEAT  # its only deadline: no max age, no heartbeat moves


def test_an_unverified_stream_answers_pings_with_the_clients_number_without_moving_its_wait() -> None:
    made = opened(secret=None)
    assert made.receive('{"ping":5}', T0 + 30, WALL) == [Send('{"pong":5}')]
    assert made.next_deadline() == T0 + HEARTBEAT
    assert made.receive('{"hello":1}', T0 + 31, WALL) == [Ignore("unrecognized client frame")]
    assert made.state is State.UNVERIFIED


@pytest.mark.parametrize("token", [SECRET, "anything"])
def test_an_unverified_streams_sub_is_refused_whatever_its_token(token: str) -> None:
    made = opened(secret=None)
    sub = json.dumps({"event": "sub", "token": token})
    assert made.receive(sub, T0 + 1, WALL) == [Close(4004, "sub rejected", None)]
    assert made.state is State.CLOSING


def test_an_unverified_stream_silent_for_its_wait_is_refused_the_same_way() -> None:
    made = opened(secret=None)
    assert made.on_deadline(T0 + HEARTBEAT - 1, WALL) == []
    assert made.on_deadline(T0 + HEARTBEAT, WALL) == [Close(4004, "sub rejected", None)]
    assert made.next_deadline() is None


def test_an_unverified_stream_ignores_pongs_even_when_the_server_pings() -> None:
    made = opened(secret=None, style=ServerStyle(server_ping_interval=5.0))
    assert made.next_deadline() == T0 + HEARTBEAT  # no server pings on a stream refused at its sub
    assert made.receive('{"pong":5}', T0 + 30, WALL) == []
    assert made.state is State.UNVERIFIED
    assert made.next_deadline() == T0 + HEARTBEAT


def test_an_unverified_stream_closed_by_the_server_hears_the_notice() -> None:
    made = opened(secret=None)
    assert made.close(1001, "bye") == [Close(1001, "bye", coinlocally_render.render_system_close(UID))]
    assert made.state is State.CLOSING


def test_an_unverified_stream_whose_buffer_fills_is_closed_4005() -> None:
    made = opened(secret=None)
    assert made.send_buffer_full() == [Close(4005, "send buffer full: the client is not reading", NOTICE)]


# --- the style: how a run writes what the document leaves open ---------------------------------------------


def test_the_style_renders_control_replies_pongs_and_pings() -> None:
    style = ServerStyle(
        control=json.dumps,
        pong=lambda ms: gzip_bytes(coinlocally_render.render_pong(ms).encode()),
        ping=lambda ms: gzip_bytes(coinlocally_control.ping_frame(ms).encode()),
        server_ping_interval=5.0,
    )
    made = session(style=style)
    assert made.open(T0, WALL) == [Send('"connect success"')]
    assert made.receive(SUB, T0 + 1, WALL) == [Send('"sub success"'), GoLive()]
    assert made.receive('{"ping":1}', T0 + 2, 42) == [Send(gzip_bytes(b'{"pong":42}'))]
    assert made.on_deadline(T0 + 5, 43) == [Send(gzip_bytes(b'{"ping":43}'))]


def test_the_style_chooses_how_a_sub_is_refused_given_ours() -> None:
    seen: list[SubRefusal] = []

    def token_invalid(ours: SubRefusal) -> SubRefusal:
        seen.append(ours)
        return SubRefusal('{"code":"10002","msg":"token invalid"}', 4401, "token invalid")

    made = opened(style=ServerStyle(sub_refusal=token_invalid))
    assert made.receive(OTHER_SUB, T0 + 1, WALL) == [
        Send('{"code":"10002","msg":"token invalid"}'),
        Close(4401, "token invalid", None),
    ]
    assert seen == [SubRefusal(REJECTED.frame, 4004, "sub rejected")]
    closed_only = opened(secret=None, style=ServerStyle(sub_refusal=lambda ours: SubRefusal(None, 1008, "")))
    assert closed_only.receive(SUB, T0 + 1, WALL) == [Close(1008, "", None)]


# --- odds and ends ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ('{"pong":5}', True),
        (gzip.compress(b'{"pong":5}'), True),
        ('{"pong":true}', False),
        ('{"pong":"5"}', False),
        ('{"ping":5}', False),
        ("[1]", False),
        (b"\x1f\x8b\x00", False),
    ],
)
def test_a_client_pong_is_recognized_plain_or_gzip(frame: str | bytes, expected: bool) -> None:
    assert is_client_pong(frame) is expected


def test_the_repr_shows_the_state_and_never_the_secret() -> None:
    made = opened()
    assert repr(made) == "CoinlocallyServerSession(state=AWAITING_SUB)"
    terms = ServerTerms(uid=UID, secret=SECRET, max_age=MAX_AGE, heartbeat_timeout=HEARTBEAT)
    assert SECRET not in repr(terms)
    assert repr(terms) == "ServerTerms(uid=24005174, max_age=600.0, heartbeat_timeout=40.0)"


# --- the handshake, refused before any stream exists -------------------------------------------------------


def error(code: int, message: str) -> str:
    return json.dumps({"event": "error", "code": code, "message": message}, separators=(",", ":"))


@pytest.mark.parametrize(
    ("problem", "detail", "retry_after", "expected"),
    [
        (
            HandshakeProblem.NOT_AN_UPGRADE,
            "",
            None,
            HttpRefusal(400, error(400001, "expected a WebSocket upgrade")),
        ),
        (
            HandshakeProblem.SHUTTING_DOWN,
            "",
            None,
            HttpRefusal(503, error(400001, "the server is shutting down")),
        ),
        (
            HandshakeProblem.TOO_MANY_CONNECTIONS,
            "too many connections from this address: at most 2 at once",
            1,
            HttpRefusal(429, error(429002, "too many connections from this address: at most 2 at once"), 1),
        ),
        (
            HandshakeProblem.UNAVAILABLE,
            "redis is down",
            None,
            HttpRefusal(503, error(503001, "service unavailable: redis is down")),
        ),
        (
            HandshakeProblem.NO_CREDENTIALS,
            "",
            None,
            HttpRefusal(
                401,
                error(401001, "missing credentials: send exactly one of the 'token' or 'api-key' headers"),
            ),
        ),
        (
            HandshakeProblem.UNKNOWN_CREDENTIALS,
            "api-key",
            None,
            HttpRefusal(401, error(401001, "invalid api-key")),
        ),
        (
            HandshakeProblem.REFUSED_FOR_NOW,
            "service unavailable: new streams are refused for now (fault injection)",
            3,
            HttpRefusal(
                503,
                error(503001, "service unavailable: new streams are refused for now (fault injection)"),
                3,
            ),
        ),
    ],
)
def test_a_refused_upgrade_gets_our_error_body_as_text(
    problem: HandshakeProblem, detail: str, retry_after: int | None, expected: HttpRefusal
) -> None:
    assert refuse_handshake(problem, detail, retry_after) == expected
    assert spec(Exchange.COINLOCALLY).refuse_handshake(problem, detail, retry_after) == expected


# --- the handshake's credential and the variants ------------------------------------------------------


def test_the_upgrade_names_its_account_by_one_credential_header() -> None:
    entry = spec(Exchange.COINLOCALLY)
    assert entry.handshake_names_account is AccountNamedBy.CREDENTIAL_HEADER
    assert entry.handshake_credential is handshake_credential
    assert handshake_credential(None, {"Token": "t0k"}) == HandshakeCredential("token", "t0k", "token")
    assert handshake_credential(None, {"API-KEY": "k3y"}) == HandshakeCredential("api_key", "k3y", "api-key")
    assert (
        repr(handshake_credential(None, {"token": "t0k"}))
        == "HandshakeCredential(kind='token', value=<hidden>)"
    )
    assert handshake_credential(None, {}) is None
    assert handshake_credential(None, {"token": "a", "api-key": "b"}) is None  # exactly one
    assert handshake_credential(None, {"token": "bad\r\nline"}) is None
    assert handshake_credential("segment", {}) is None  # the path names nothing
    assert dict(entry.account_keys) == {"token": "coinlocally_token", "api_key": "coinlocally_api_key"}
    assert entry.listen_key_path is None


def test_the_variants_lay_their_frames_over_our_style() -> None:
    ours = variant_style({}, ServerStyle())
    assert (ours.control("sub success"), ours.pong(5), ours.ping(6)) == (
        "sub success",
        '{"pong":5}',
        '{"ping":6}',
    )
    assert ours.server_ping_interval is None
    mine = SubRefusal("reply", 4004, "sub rejected")
    assert ours.sub_refusal(mine) == mine
    gzip_style = variant_style(
        {"coinlocally-control-gzip": None, "coinlocally-pong-gzip": None}, ServerStyle()
    )
    assert gzip.decompress(bytes(gzip_style.control("connect success"))) == b"connect success"
    assert gzip.decompress(bytes(gzip_style.pong(5))) == b'{"pong":5}'
    assert gzip.decompress(bytes(gzip_style.ping(6))) == b'{"ping":6}'
    assert gzip.decompress(bytes(gzip_style.sub_refusal(mine).reply or b"")) == b"reply"
    quoted = variant_style(
        {"coinlocally-control-quoted": None, "coinlocally-server-ping": 5.0}, ServerStyle()
    )
    assert (quoted.control("sub success"), quoted.server_ping_interval) == ('"sub success"', 5.0)
    code_msg = variant_style({"coinlocally-refusal-code-msg": 4401.0}, ServerStyle())
    assert code_msg.sub_refusal(mine) == SubRefusal(
        '{"code":"10002","msg":"token invalid"}', 4401, "token invalid"
    )
    text = variant_style({"coinlocally-refusal-text": None}, ServerStyle())
    assert text.sub_refusal(mine) == SubRefusal("token invalid", 1000, "")
    closed = variant_style({"coinlocally-refusal-close": 1008.0}, ServerStyle())
    assert closed.sub_refusal(mine) == SubRefusal(None, 1008, "")
    assert {info.exchange for info in VARIANTS} == {Exchange.COINLOCALLY}
    assert len(VARIANTS) == 7
    assert spec(Exchange.COINLOCALLY).server_variants is VARIANTS
