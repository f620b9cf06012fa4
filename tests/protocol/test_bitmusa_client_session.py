"""protocol/bitmusa_client.py: Bitmusa's client conversation and its listenKey schedule, driven by hand with
a fake `now`: live at the handshake, protocol-level pings, what each close and refused handshake means, and
the keepalive deadlines."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from userstream.errors import (
    ConnectionLostError,
    EndpointNotFoundError,
    ListenKeyInvalidError,
    RemoteProtocolError,
)
from userstream.events import BalanceUpdate, Exchange
from userstream.protocol import bitmusa, bitmusa_render
from userstream.protocol.bitmusa_client import BitmusaClientSession, handshake_refused
from userstream.protocol.client_session import State, Timings
from userstream.protocol.listen_key import ListenKeySchedule
from userstream.protocol.messages import DataEvents, ErrorReply
from userstream.protocol.session import End, GoLive, SendPing

LABEL = "ws://h/ws/spot/abcdef..."
TIMINGS = Timings(ping_interval=30.0, idle_timeout=45.0, close_timeout=5.0)


class ClosedError(ConnectionLostError):
    """What the runtime reports for the end of the socket (client.transport.PeerClosedError's shape)."""

    def __init__(self, code: int | None, label: str = LABEL) -> None:
        super().__init__(f"{label}: closed with code {code}")
        self.code = code
        self.reason = ""
        self.label = label


def session(schedule: ListenKeySchedule | None = None) -> BitmusaClientSession:
    return BitmusaClientSession(
        bitmusa.Parser(account="alice"), timings=TIMINGS, label=LABEL, schedule=schedule
    )


def test_live_at_the_handshake_with_nothing_to_send() -> None:
    conversation = session()
    conversation.start(100.0)
    assert conversation.state is State.LIVE
    assert conversation.data_to_send() == [GoLive()]


def test_the_heartbeat_uses_protocol_pings() -> None:
    conversation = session()
    conversation.start(100.0)
    conversation.data_to_send()
    assert conversation.next_deadline() == 130.0
    conversation.wake(130.0, 1)
    assert conversation.data_to_send() == [SendPing()]
    conversation.sign_of_life(131.0)  # its pong
    assert conversation.next_deadline() == 160.0
    conversation.wake(176.0, 2)
    [end] = conversation.data_to_send()
    assert isinstance(end, End)
    assert str(end.error) == f"{LABEL}: no frame for 45s; connection presumed dead"


def test_data_frames_are_returned_once_parsed() -> None:
    conversation = session()
    conversation.start(0.0)
    conversation.data_to_send()
    frame = bitmusa_render.render_event(
        BalanceUpdate(
            exchange=Exchange.BITMUSA,
            account="alice",
            timestamp=1,
            asset="USDT",
            free=Decimal("1"),
            locked=Decimal("0"),
        )
    )
    incoming = conversation.receive(frame, 1.0)
    assert type(incoming) is DataEvents
    assert not conversation.has_actions


def test_an_error_reply_is_unexpected() -> None:
    conversation = session()
    conversation.start(0.0)
    conversation.data_to_send()
    error = conversation._error_for_reply(ErrorReply(7, "no"))
    assert (type(error), str(error)) == (
        RemoteProtocolError,
        "Bitmusa sent an unexpected error reply (code 7)",
    )


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (4001, f"{LABEL}: the listenKey expired (close code 4001)"),
        (4002, f"{LABEL}: the listenKey was deleted (close code 4002)"),
    ],
)
def test_a_lapsed_or_deleted_key_needs_a_new_one(code: int, expected: str) -> None:
    conversation = session()
    conversation.start(0.0)
    ending = conversation.peer_closed(ClosedError(code))
    assert (type(ending), str(ending)) == (ListenKeyInvalidError, expected)
    assert conversation.state is State.ENDED


@pytest.mark.parametrize("code", [4000, 4005, 1000, 1011, None])
def test_our_plain_closes_and_the_rest_stay_what_they_were(code: int | None) -> None:
    conversation = session(ListenKeySchedule(keepalive_interval=1800.0))
    conversation.start(0.0)
    closed = ClosedError(code)
    assert conversation.peer_closed(closed) is closed


def test_an_unknown_4xxx_close_gets_one_fresh_key_then_is_a_plain_failure() -> None:
    schedule = ListenKeySchedule(keepalive_interval=1800.0)
    assert schedule.created("key-1", 0.0) is None
    first = session(schedule)
    first.start(0.0)
    ending = first.peer_closed(ClosedError(4999))
    assert type(ending) is ListenKeyInvalidError
    assert (
        str(ending)
        == f"{LABEL}: closed with code 4999 (an unknown close code: trying once with a fresh listenKey)"
    )
    assert schedule.forget(str(ending))
    assert schedule.created("key-2", 10.0) == str(ending)  # reported as renewed, with the reason
    again = session(schedule)
    again.start(10.0)
    closed = ClosedError(4999)
    assert again.peer_closed(closed) is closed  # the same close on the fresh key: a plain failure
    without = session()  # no schedule: a plain failure at once
    without.start(0.0)
    assert without.peer_closed(closed) is closed


def test_the_keepalive_schedule_is_a_deadline() -> None:
    schedule = ListenKeySchedule(keepalive_interval=1800.0)
    assert (schedule.key, schedule.next_deadline()) == (None, math.inf)
    schedule.created("key-1", 100.0)
    assert schedule.next_deadline() == 1900.0
    schedule.retry_at(1903.5)  # a failed keepalive, retried when the runtime's backoff says
    assert schedule.next_deadline() == 1903.5
    schedule.extended(1904.0)
    assert (schedule.next_deadline(), schedule.keepalives) == (3704.0, 1)
    schedule.retry_at(3710.0)
    assert schedule.forget("keepalive: gone")
    assert not schedule.forget("twice")
    assert schedule.next_deadline() == math.inf
    assert schedule.created("key-2", 4000.0) == "keepalive: gone"
    assert schedule.next_deadline() == 5800.0  # a new key starts a new schedule, the retry forgotten
    schedule.closed()
    assert (schedule.key, schedule.next_deadline()) == (None, math.inf)
    assert schedule.created("key-3", 6000.0) is None  # closed on exit is not a renewal


@pytest.mark.parametrize(
    ("status", "kinds", "message"),
    [
        (
            404,
            (ListenKeyInvalidError, EndpointNotFoundError),
            "L: WebSocket handshake refused with HTTP 404 (an unknown listenKey, or no Bitmusa stream at "
            "this URL)",
        ),
        (400, (ListenKeyInvalidError,), "L: the server refused the listenKey (HTTP 400)"),
        (410, (ListenKeyInvalidError,), "L: the server refused the listenKey (HTTP 410)"),
    ],
)
def test_a_refused_handshake(status: int, kinds: tuple[type, ...], message: str) -> None:
    refused = handshake_refused(status, label="L", ws_shown="ws://h/ws/spot/")
    assert all(isinstance(refused, kind) for kind in kinds)
    assert str(refused) == message
    if isinstance(refused, EndpointNotFoundError):
        assert (refused.url, refused.expected) == ("ws://h/ws/spot/<listenKey>", "/ws/spot/<listenKey>")


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_transient_refused_handshake_stays_what_it_was(status: int) -> None:
    assert handshake_refused(status, label="L", ws_shown="ws://h/ws/spot/") is None
