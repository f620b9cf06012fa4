"""protocol/server_session.py: the server role's shared types, and the registry's choice of session; and
protocol/session.py's transition-table helper, which both roles use."""

from __future__ import annotations

from enum import Enum

import pytest

from userstream.errors import LocalProtocolError
from userstream.events import Exchange
from userstream.protocol import coinlocally_render
from userstream.protocol.bitmusa_server import BitmusaServerSession
from userstream.protocol.coinlocally_server import CoinlocallyServerSession
from userstream.protocol.registry import spec
from userstream.protocol.server_session import ServerStyle, ServerTerms, SubRefusal, slow_consumer_close
from userstream.protocol.session import Close, Transitions


class Light(Enum):
    RED = "red"
    GREEN = "green"


class Press(Enum):
    GO = "go"
    STOP = "stop"


def test_a_transition_table_moves_by_its_entries_and_names_what_it_refuses() -> None:
    moves = Transitions({(Light.RED, Press.GO): Light.GREEN, (Light.GREEN, Press.STOP): Light.RED})
    assert moves(Light.RED, Press.GO) is Light.GREEN
    assert moves(Light.GREEN, Press.STOP) is Light.RED
    with pytest.raises(LocalProtocolError, match=r"^no transition from GREEN on GO$"):
        moves(Light.GREEN, Press.GO)


def test_the_registry_names_each_exchanges_server_session() -> None:
    terms = ServerTerms(uid=7, secret="s", max_age=60.0, heartbeat_timeout=5.0)
    assert isinstance(spec(Exchange.BITMUSA).server_session(terms), BitmusaServerSession)
    assert isinstance(spec(Exchange.COINLOCALLY).server_session(terms), CoinlocallyServerSession)


def test_the_default_style_is_our_own_answer_everywhere() -> None:
    style = ServerStyle()
    assert style.control("connect success") == "connect success"
    assert style.pong(5) == '{"pong":5}'
    assert style.ping(6) == '{"ping":6}'
    ours = SubRefusal("reply", 4004, "sub rejected")
    assert style.sub_refusal(ours) is ours
    assert style.server_ping_interval is None
    assert style.expired_close_code == 4001


def test_the_slow_consumer_close() -> None:
    notice = coinlocally_render.render_system_close(7)
    assert slow_consumer_close(notice) == Close(4005, "send buffer full: the client is not reading", notice)
    assert slow_consumer_close(None) == Close(4005, "send buffer full: the client is not reading", None)
