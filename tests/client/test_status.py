"""client/status.py: status events have an exact JSON form and can only carry a masked listenKey."""

from __future__ import annotations

import json

import pytest

from userstream.client.status import State, StatusEvent, mask_listen_key
from userstream.events import Exchange

KEY = "cAUzPhRQYWX1a2cE528PeAgtErBE96QWP5HpwFMSEzUC"


def test_json_form_is_exact() -> None:
    status = StatusEvent(
        state=State.RECONNECTING,
        exchange=Exchange.BITMUSA,
        account="alice",
        reason="closed by the server with code 1001",
        attempt=2,
        delay=0.12345,
        connection=3,
        listen_key=mask_listen_key(KEY),
    )
    assert json.loads(status.to_json()) == {
        "kind": "status",
        "state": "reconnecting",
        "exchange": "bitmusa",
        "account": "alice",
        "reason": "closed by the server with code 1001",
        "attempt": 2,
        "delay": 0.123,
        "dropped": None,
        "connection": 3,
        "listen_key": "cAUzPh...",
        "corrections": None,
    }
    assert status.describe() == (
        "bitmusa/alice reconnecting connection=3 attempt=2 delay=0.123s listen_key=cAUzPh... "
        "reason=closed by the server with code 1001"
    )


def test_a_listen_key_must_be_masked() -> None:
    assert mask_listen_key(KEY) == "cAUzPh..."
    with pytest.raises(ValueError, match="masked"):
        StatusEvent(state=State.CONNECTED, exchange=Exchange.BITMUSA, account="a", listen_key=KEY)
    assert KEY not in repr(
        StatusEvent(
            state=State.CONNECTED,
            exchange=Exchange.BITMUSA,
            account="a",
            listen_key=mask_listen_key(KEY),
        )
    )


def test_states_are_the_documented_vocabulary() -> None:
    assert [state.value for state in State] == [
        "connecting",
        "connected",
        "subscribed",
        "disconnected",
        "reconnecting",
        "rotated",
        "key_renewed",
        "keepalive_failed",
        "dropped",
        "resynced",
        "resync_failed",
        "resync_skipped",
        "fatal",
    ]
