"""protocol/coinlocally_client.py (and protocol/client_session.py's shared rules): Coinlocally's client
conversation driven by hand, with a fake `now`: every transition, the exact frames and actions out, the
deadlines."""

from __future__ import annotations

import math

import pytest

from userstream.errors import (
    AuthenticationError,
    ConnectionLostError,
    EndpointNotFoundError,
    LocalProtocolError,
)
from userstream.protocol import coinlocally, coinlocally_control, coinlocally_render
from userstream.protocol.client_session import TRANSITIONS, State, Timings
from userstream.protocol.codec import gzip_bytes
from userstream.protocol.coinlocally_client import CoinlocallyClientSession, handshake_refused
from userstream.protocol.messages import ControlReply, DataEvents, Pong, Unknown
from userstream.protocol.session import Close, End, GoLive, Send, Sent

LABEL = "ws://h/spotws_user/userData/ws"
TOKEN = "alice-SECRET-token"
SUB = coinlocally_control.sub_frame(coinlocally_control.Credentials(token=TOKEN))
BALANCE = b'{"e":"outboundAccountPosition","E":1,"u":1,"B":[{"a":"USDT","f":"1","l":"0"}]}'


class ClosedError(ConnectionLostError):
    """What the runtime reports for the end of the socket (client.transport.PeerClosedError's shape)."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"{LABEL}: closed ({code})")
        self.code = code
        self.reason = reason
        self.label = LABEL


def session(**timings: float | None) -> CoinlocallyClientSession:
    values: dict[str, float | None] = {"ping_interval": 30.0, "idle_timeout": 45.0, "close_timeout": 5.0}
    values.update(timings)
    return CoinlocallyClientSession(
        coinlocally.Parser(account="alice"),
        coinlocally_control.Credentials(token=TOKEN),
        timings=Timings(**values),  # type: ignore[arg-type]
        label=LABEL,
        scrub=lambda text: text.replace(TOKEN, "<token>"),
    )


def started(now: float = 100.0, **timings: float | None) -> CoinlocallyClientSession:
    conversation = session(**timings)
    conversation.start(now)
    assert conversation.data_to_send() == [Send(SUB, Sent.OPENING)]
    return conversation


def live(now: float = 100.0) -> CoinlocallyClientSession:
    conversation = started(now)
    conversation.receive("sub success", now)
    assert conversation.data_to_send() == [GoLive()]
    return conversation


def test_the_transition_table_is_the_documented_one() -> None:
    assert dict(TRANSITIONS) == {
        State.CONNECTING: {State.SUBSCRIBING, State.LIVE, State.ENDED},
        State.SUBSCRIBING: {State.LIVE, State.CLOSING, State.ENDED},
        State.LIVE: {State.CLOSING, State.ENDED},
        State.CLOSING: {State.ENDED},
        State.ENDED: set(),
    }


def test_start_sends_the_sub_and_waits_for_sub_success() -> None:
    conversation = session()
    assert conversation.state is State.CONNECTING
    assert conversation.next_deadline() == math.inf
    conversation.start(100.0)
    assert conversation.state is State.SUBSCRIBING
    assert conversation.data_to_send() == [Send(SUB, Sent.OPENING)]
    assert conversation.data_to_send() == []  # handed out once
    assert conversation.receive("connect success", 100.5) == ControlReply("connect success")
    assert (conversation.state, conversation.data_to_send()) == (State.SUBSCRIBING, [])
    assert conversation.receive('"sub success"', 101.0) == ControlReply("sub success")
    assert (conversation.state, conversation.data_to_send()) == (State.LIVE, [GoLive()])
    conversation.receive("sub success", 101.5)  # a second one changes nothing
    assert (conversation.state, conversation.data_to_send()) == (State.LIVE, [])


def test_data_is_returned_to_the_runtime_parsed_once_and_queues_nothing() -> None:
    conversation = live()
    incoming = conversation.receive(gzip_bytes(BALANCE), 102.0)
    assert type(incoming) is DataEvents
    assert [event.asset for event in incoming.events] == ["USDT"]  # type: ignore[attr-defined]
    assert not conversation.has_actions
    unknown = conversation.receive('{"e":"listStatus","E":1}', 102.5)
    assert type(unknown) is Unknown
    assert not conversation.has_actions


def test_the_server_ping_is_answered_and_its_pong_changes_nothing() -> None:
    conversation = live()
    conversation.receive('{"ping":1713338308232}', 102.0)
    assert conversation.data_to_send() == [Send('{"pong":1713338308232}', Sent.PONG)]
    assert conversation.receive('{"pong":5}', 102.5) == Pong(5)
    assert conversation.data_to_send() == []


def test_heartbeat_deadlines_ping_then_death() -> None:
    conversation = live(now=100.0)
    assert conversation.next_deadline() == 130.0  # the ping; idle would be 145
    conversation.wake(129.9, 1)
    assert conversation.data_to_send() == []
    conversation.wake(130.0, 1_713_338_308_232)
    assert conversation.data_to_send() == [Send('{"ping":1713338308232}', Sent.PING)]
    assert conversation.next_deadline() == 145.0  # next ping at 160; idle at 100 + 45
    conversation.receive('{"pong":1}', 140.0)
    assert conversation.next_deadline() == 160.0
    conversation.wake(185.0, 2)
    [end] = conversation.data_to_send()
    assert isinstance(end, End)
    assert str(end.error) == f"{LABEL}: no frame for 45s; connection presumed dead"
    assert conversation.state is State.ENDED
    assert conversation.ending is end.error
    assert conversation.next_deadline() == math.inf


def test_the_idle_clock_is_paused_while_the_consumer_is_behind() -> None:
    conversation = live(now=100.0)
    conversation.wake(130.0, 1)
    conversation.data_to_send()
    conversation.pause_idle()
    assert conversation.next_deadline() == 160.0  # only the ping
    conversation.resume_idle(200.0)
    conversation.wake(200.0, 2)
    assert conversation.data_to_send() == [Send('{"ping":2}', Sent.PING)]
    assert conversation.next_deadline() == 230.0  # the ping; idle counts from 200: 245


def test_the_sub_timeout_is_a_deadline_when_asked_for() -> None:
    conversation = started(now=100.0, sub_timeout=10.0)
    assert conversation.next_deadline() == 110.0
    conversation.wake(110.0, 1)
    [end] = conversation.data_to_send()
    assert isinstance(end, End)
    assert str(end.error) == f"{LABEL}: no 'sub success' within 10s"
    assert conversation.state is State.ENDED
    without = started(now=100.0)
    assert without.next_deadline() == 130.0  # no sub timeout: the stream's supervisor waits itself


def test_an_error_reply_refuses_the_sub_with_the_server_words_scrubbed() -> None:
    conversation = started()
    conversation.receive(coinlocally_render.render_error(10002, f"bad token {TOKEN}"), 101.0)
    [end] = conversation.data_to_send()
    assert isinstance(end, End)
    assert isinstance(end.error, AuthenticationError)
    assert str(end.error) == (
        f"{LABEL}: Coinlocally refused the sub frame's token (error code 10002): bad token <token>"
    )
    assert conversation.state is State.ENDED
    # what the server sends after its refusal changes nothing; its close does not replace the ending
    conversation.receive("sub success", 101.5)
    assert conversation.data_to_send() == []
    assert conversation.peer_closed(ClosedError(1000)) is end.error


def test_a_transient_refusal_is_a_lost_connection() -> None:
    conversation = started()
    conversation.receive('{"event":"error","code":429,"message":"too many requests"}', 101.0)
    [end] = conversation.data_to_send()
    assert isinstance(end, End)
    assert type(end.error) is ConnectionLostError


def test_the_system_notice_closes_gracefully_and_is_the_ending() -> None:
    conversation = live(now=100.0)
    conversation.receive(coinlocally_render.render_system_close(7), 110.0)
    assert conversation.state is State.CLOSING
    assert conversation.data_to_send() == [Close(1000)]
    assert conversation.next_deadline() == 115.0  # the close timeout, no heartbeat while closing
    conversation.wake(112.0, 1)
    assert conversation.data_to_send() == []
    ending = conversation.peer_closed(ClosedError(1000))
    assert str(ending) == f"{LABEL}: the server announced a close (SYSTEM notice)"
    assert conversation.state is State.ENDED


def test_our_close_answered_is_a_clean_end_and_unanswered_is_not() -> None:
    conversation = live(now=100.0)
    conversation.close(120.0)
    conversation.close(121.0)  # once
    assert conversation.data_to_send() == [Close(1000)]
    assert conversation.peer_closed(ClosedError(1000)) is None
    late = live(now=100.0)
    late.close(120.0)
    late.data_to_send()
    late.wake(125.0, 1)
    [end] = late.data_to_send()
    assert isinstance(end, End)
    assert str(end.error) == f"{LABEL}: no answer to our close within 5s"


@pytest.mark.parametrize(
    ("code", "reason", "refused"),
    [
        (4004, "", True),
        (4001, "", True),
        (1008, "", True),
        (None, "", False),
        (1011, "", False),
        (1013, "", False),
        (1000, "", False),
        (1000, "invalid token", True),
    ],
)
def test_a_close_before_sub_success_may_refuse_the_sub(code: int | None, reason: str, refused: bool) -> None:
    conversation = started()
    closed = ClosedError(code, reason)
    ending = conversation.peer_closed(closed)
    if refused:
        assert isinstance(ending, AuthenticationError)
        detail = f": {reason}" if reason else ""
        assert (
            str(ending) == f"{LABEL}: Coinlocally refused the sub frame's token (close code {code}){detail}"
        )
    else:
        assert ending is closed
    assert conversation.state is State.ENDED


@pytest.mark.parametrize(("code", "refused"), [(4004, True), (4001, False), (1008, False), (None, False)])
def test_after_live_only_sub_rejected_is_a_refusal(code: int | None, refused: bool) -> None:
    closed = ClosedError(code)
    ending = live().peer_closed(closed)
    assert isinstance(ending, AuthenticationError) if refused else ending is closed


def test_a_failed_send_is_the_ending_only_when_no_close_says_more() -> None:
    conversation = started()
    failed = ConnectionLostError("send failed")
    conversation.send_failed(failed)
    conversation.send_failed(ConnectionLostError("later"))  # the first one counts
    other = ConnectionLostError("broken")
    assert conversation.connection_lost(other) is failed
    closed_first = started()
    closed_first.send_failed(failed)
    assert isinstance(closed_first.peer_closed(ClosedError(4004)), AuthenticationError)


def test_end_keeps_the_first_ending_and_queues_one_abort() -> None:
    conversation = live()
    first, second = ConnectionLostError("first"), ConnectionLostError("second")
    conversation.end(first)
    conversation.end(second)
    assert conversation.data_to_send() == [End(first)]
    assert conversation.connection_lost(ConnectionLostError("x")) is first


def test_a_move_outside_the_table_is_refused() -> None:
    conversation = live()
    conversation.end(ConnectionLostError("x"))
    with pytest.raises(LocalProtocolError, match="cannot go from ENDED to SUBSCRIBING"):
        conversation.start(1.0)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, (AuthenticationError, "L: Coinlocally refused the 'token' header (HTTP 401)")),
        (403, (AuthenticationError, "L: Coinlocally refused the 'token' header (HTTP 403)")),
        (
            404,
            (
                EndpointNotFoundError,
                "L: WebSocket handshake refused with HTTP 404 (no Coinlocally stream here)",
            ),
        ),
        (500, None),
        (429, None),
    ],
)
def test_a_refused_handshake(status: int, expected: tuple[type, str] | None) -> None:
    refused = handshake_refused(status, label="L", header="token")
    if expected is None:
        assert refused is None
    else:
        assert (type(refused), str(refused)) == expected


def test_ended_before_start() -> None:
    conversation = session()
    error = ConnectionLostError("the supervisor gave up")
    conversation.end(error)
    assert (conversation.state, conversation.data_to_send()) == (State.ENDED, [End(error)])


def test_closing_before_sub_success_never_goes_live_and_still_answers_pings() -> None:
    conversation = started(now=100.0)
    conversation.close(101.0)
    assert (conversation.state, conversation.data_to_send()) == (State.CLOSING, [Close(1000)])
    conversation.receive("sub success", 101.5)
    conversation.receive('{"ping":9}', 101.6)
    assert (conversation.state, conversation.data_to_send()) == (
        State.CLOSING,
        [Send('{"pong":9}', Sent.PONG)],
    )
    assert conversation.peer_closed(ClosedError(1000)) is None


def test_an_error_reply_while_closing_ends_at_once() -> None:
    conversation = live()
    conversation.close(110.0)
    conversation.data_to_send()
    conversation.receive(coinlocally_render.render_error(10002, "no"), 111.0)
    [end] = conversation.data_to_send()
    assert isinstance(end, End)
    assert str(end.error) == f"{LABEL}: Coinlocally refused the sub frame's token (error code 10002): no"
    assert conversation.state is State.ENDED
