"""protocol/session.py: the vocabulary both roles share, the one transition-table helper, and the client
session's use of it (its sub timeout against its idle clock, when it went live, whether its idle is
paused, whether the server greeted it)."""

from __future__ import annotations

from enum import Enum

import pytest

from userstream.errors import ConnectionLostError, LocalProtocolError
from userstream.protocol import coinlocally, coinlocally_control
from userstream.protocol.client_session import TRANSITIONS, State, Timings
from userstream.protocol.coinlocally_client import CoinlocallyClientSession
from userstream.protocol.messages import ControlReply
from userstream.protocol.session import Close, End, GoLive, Send, Sent, Transitions

LABEL = "ws://h/spotws_user/userData/ws"


class Light(Enum):
    RED = "red"
    AMBER = "amber"
    GREEN = "green"


class Press(Enum):
    GO = "go"
    STOP = "stop"


def test_both_roles_send_the_same_actions_and_their_defaults() -> None:
    assert Send("x") == Send("x", Sent.FRAME)
    assert Send(b"\x1f\x8b") != Send(b"\x1f\x8b", Sent.PONG)
    assert Close() == Close(1000, "", None)
    assert Close(4004, "sub rejected") == Close(code=4004, reason="sub rejected", last_frame=None)
    assert GoLive() == GoLive()


def test_a_table_by_input_reads_as_where_each_state_may_go() -> None:
    moves = Transitions({(Light.RED, Press.GO): Light.GREEN, (Light.GREEN, Press.STOP): Light.AMBER})
    assert dict(moves.targets) == {
        Light.RED: frozenset({Light.GREEN}),
        Light.AMBER: frozenset(),
        Light.GREEN: frozenset({Light.AMBER}),
    }


def test_a_table_by_destination_moves_there_and_names_what_it_refuses() -> None:
    moves = Transitions.between(
        {Light.RED: frozenset({Light.GREEN}), Light.GREEN: frozenset(), Light.AMBER: frozenset()},
        what="a lamp",
    )
    assert moves(Light.RED, Light.GREEN) is Light.GREEN
    with pytest.raises(LocalProtocolError, match=r"^a lamp cannot go from GREEN to RED$"):
        moves(Light.GREEN, Light.RED)


def test_the_client_table_is_a_transitions_table() -> None:
    moves = Transitions.between(TRANSITIONS)
    assert moves.targets is TRANSITIONS
    assert moves(State.SUBSCRIBING, State.LIVE) is State.LIVE


def _started(now: float, **timings: float | None) -> CoinlocallyClientSession:
    values: dict[str, float | None] = {"ping_interval": 30.0, "idle_timeout": 45.0, "close_timeout": 5.0}
    values.update(timings)
    conversation = CoinlocallyClientSession(
        coinlocally.Parser(account="alice"),
        coinlocally_control.Credentials(token="t"),
        timings=Timings(**values),  # type: ignore[arg-type]
        label=LABEL,
    )
    conversation.start(now)
    conversation.data_to_send()
    return conversation


def test_the_sub_timeout_names_the_ending_when_both_clocks_end_at_once() -> None:
    conversation = _started(100.0, idle_timeout=10.0, sub_timeout=10.0)
    assert conversation.next_deadline() == 110.0
    conversation.wake(110.0, 1)
    [end] = conversation.data_to_send()
    assert isinstance(end, End)
    assert str(end.error) == f"{LABEL}: no 'sub success' within 10s"


def test_the_idle_clock_names_the_ending_when_it_ends_first() -> None:
    conversation = _started(100.0, idle_timeout=5.0, sub_timeout=10.0)
    conversation.wake(105.0, 1)
    [end] = conversation.data_to_send()
    assert isinstance(end, End)
    assert str(end.error) == f"{LABEL}: no frame for 5s; connection presumed dead"


def test_a_paused_idle_clock_leaves_the_sub_timeout_running() -> None:
    conversation = _started(100.0, idle_timeout=5.0, sub_timeout=10.0)
    conversation.pause_idle()
    assert conversation.idle_paused
    conversation.wake(109.0, 1)
    assert conversation.data_to_send() == []
    conversation.wake(110.0, 1)
    [end] = conversation.data_to_send()
    assert isinstance(end, End)
    assert isinstance(end.error, ConnectionLostError)
    assert str(end.error) == f"{LABEL}: no 'sub success' within 10s"
    conversation.resume_idle(111.0)
    assert not conversation.idle_paused


def test_the_session_says_when_it_went_live() -> None:
    conversation = _started(100.0)
    assert conversation.live_at is None
    conversation.receive("sub success", 102.5)
    assert (conversation.state, conversation.live_at) == (State.LIVE, 102.5)
    conversation.close(103.0)
    assert conversation.live_at == 102.5


def test_a_ping_not_sent_is_no_ending_of_its_own() -> None:
    conversation = _started(100.0)
    conversation.send_failed(ConnectionLostError("ping not sent"), Sent.PING)
    broken = ConnectionLostError("broken")
    assert conversation.connection_lost(broken) is broken
    pong_first = _started(100.0)
    failed = ConnectionLostError("pong not sent")
    pong_first.send_failed(failed, Sent.PONG)
    assert pong_first.connection_lost(broken) is failed


def test_the_session_remembers_the_greeting_before_the_sub_is_answered() -> None:
    greeted = _started(100.0)
    assert greeted.receive("connect success", 100.1) == ControlReply("connect success")
    assert (greeted.state, greeted.greeted, greeted.data_to_send()) == (State.SUBSCRIBING, True, [])
    silent = _started(100.0)
    silent.receive("sub success", 100.2)
    assert (silent.state, silent.greeted) == (State.LIVE, False)
