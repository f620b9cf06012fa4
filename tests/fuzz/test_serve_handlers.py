"""Fuzzing serve's handlers from the outside: REST requests (methods, paths, queries, headers, bodies), the
admin ingest, WebSocket handshakes and WebSocket frames, with third-party synchronous clients.

The server runs in its own thread (conftest.ThreadedServer) with small limits (4 KiB client frames, 256 KiB
bodies). For every example: no 5xx, a JSON error body that says what was wrong whenever one of our routes
refuses, a WebSocket that either keeps working (a marker event ingested afterwards still arrives) or is
closed with a code that names the peer's fault (1009 too big, 4004 a refused sub), never 1011; and, for the
whole module, not one log record at ERROR from the server. Requests are bounded in size; the bounds of
the server's own buffers are tested directly (a gzip bomb in a frame, oversized bodies).
"""

from __future__ import annotations

import gzip
import http.client
import itertools
import json
import string
import time
import urllib.parse
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from userstream.protocol import bitmusa, coinlocally, coinlocally_rest
from userstream.protocol.messages import DataEvents

FUZZ = settings(settings.get_profile("userstream-fuzz-io"))
Fuzz = Any  # conftest.Fuzz
ThreadedServer = Any  # conftest.ThreadedServer
ServerLog = Any  # conftest.ServerLog

WAIT = 10.0
MAX_FRAME = 4096  # conftest's max_client_frame
_markers = itertools.count(1)

# --- strategies ------------------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["", "0", "-1", "1e400", "NaN", "0.1", "9" * 70, "BTC/USDT", "open", "buy"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=10,
)
# What http.client lets through in a header: visible ASCII, spaces and Latin-1 letters, no control characters.
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=60
)
header_names = st.sampled_from(
    [
        "Authorization",
        "x-api-key",
        "token",
        "api-key",
        "X-CH-APIKEY",
        "X-CH-TS",
        "X-CH-SIGN",
        "Content-Type",
        "Content-Length",
        "Transfer-Encoding",
        "Upgrade",
        "Connection",
    ]
) | st.text(alphabet=string.ascii_letters + string.digits + "-", min_size=1, max_size=12)


def header_values(fuzz: Fuzz) -> st.SearchStrategy[str]:
    alice = fuzz.alice
    real = [
        f"Bearer {alice.bitmusa_auth_key}",
        str(alice.bitmusa_api_key),
        str(alice.coinlocally_token),
        str(alice.coinlocally_api_key),
        "Bearer",
        "bearer  x",
        "application/json",
        "chunked",
        "websocket",
        "-1",
        "99999999999999999999",
    ]
    return st.sampled_from(real) | header_text


PATHS = [
    bitmusa.LISTEN_KEY_PATH,
    "/spot/wallet",
    "/spot/order/history",
    "/sapi/v1/account",
    "/sapi/v1/openOrders",
    "/admin/events",
    "/healthz",
    "/ws/spot/abc",
    coinlocally.WS_PATH,
    "/",
    "/spot",
    "/%2e%2e/admin/events",
]
query_keys = st.sampled_from(["symbol", "status", "limit", "listenKey", "timestamp"]) | st.text(
    alphabet=string.ascii_letters, min_size=1, max_size=6
)
queries = st.dictionaries(query_keys, st.text(max_size=20), max_size=3).map(
    lambda q: ("?" + urllib.parse.urlencode(q)) if q else ""
)


def request(
    server: ThreadedServer, method: str, target: str, headers: dict[str, str], body: bytes
) -> tuple[int, str, bytes]:
    """One HTTP request on a fresh connection: (status, content type, body)."""
    parsed = urllib.parse.urlsplit(server.base_url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=WAIT)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value.encode("latin-1"))
        if "Content-Length" not in headers and "Transfer-Encoding" not in headers:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        reply = connection.getresponse()
        return reply.status, reply.getheader("Content-Type") or "", reply.read()
    finally:
        connection.close()


def check_refusal(status: int, content_type: str, body: bytes) -> None:
    """A refusal says what was wrong: our routes answer JSON with a message, aiohttp's own 4xx plain text."""
    assert status < 500, (status, body[:300])
    if status >= 400 and content_type.startswith("application/json") and body:  # (HEAD has no body)
        decoded = json.loads(body)
        assert isinstance(decoded, dict)
        assert {"message", "msg", "error"} & set(decoded), decoded
        text = decoded.get("message") or decoded.get("msg") or decoded.get("error")
        assert isinstance(text, str)
        assert text


# --- REST ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rest_requests(fuzz: Fuzz) -> st.SearchStrategy[tuple[str, str, dict[str, str], bytes]]:
    return st.tuples(
        st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
        st.builds(lambda path, query: path + query, st.sampled_from(PATHS), queries),
        st.dictionaries(header_names, header_values(fuzz), max_size=5),
        st.binary(max_size=600) | json_values.map(lambda v: json.dumps(v).encode()),
    )


@FUZZ
@given(data=st.data())
def test_any_rest_request_gets_a_non_5xx_answer_with_a_clear_error(
    threaded_server: ThreadedServer, server_log: ServerLog, rest_requests: Any, data: st.DataObject
) -> None:
    method, target, headers, body = data.draw(rest_requests)
    if headers.get("Transfer-Encoding", "").lower() == "chunked":
        headers = {
            k: v for k, v in headers.items() if k != "Transfer-Encoding"
        }  # http.client would not frame it
    try:
        status, content_type, reply = request(threaded_server, method, target, headers, body)
    except (http.client.HTTPException, ConnectionError):
        # The server may refuse a request it cannot even parse (a Content-Length that lies) by closing.
        return
    check_refusal(status, content_type, reply)
    assert server_log.errors() == []


@FUZZ
@given(
    symbol=st.text(max_size=30),
    limit=st.none() | st.text(max_size=8) | st.integers(min_value=-5, max_value=5000).map(str),
    path=st.sampled_from(["/sapi/v1/account", "/sapi/v1/openOrders"]),
    skew=st.sampled_from([0, 0, 29_000, -29_000, 31_000, -(10**12)]),
)
def test_signed_snapshot_requests_with_any_query_are_answered_or_refused_clearly(  # noqa: PLR0917
    threaded_server: ThreadedServer,
    server_log: ServerLog,
    fuzz: Fuzz,
    symbol: str,
    limit: str | None,
    path: str,
    skew: int,
) -> None:
    query = {"symbol": symbol} if limit is None else {"symbol": symbol, "limit": limit}
    target = path + "?" + urllib.parse.urlencode(query)
    timestamp = str(int(time.time() * 1000) + skew)
    signature = coinlocally_rest.sign(str(fuzz.alice.coinlocally_secret_key), timestamp, "GET", target, b"")
    headers = {
        "X-CH-APIKEY": str(fuzz.alice.coinlocally_api_key),
        "X-CH-TS": timestamp,
        "X-CH-SIGN": signature,
    }
    status, content_type, reply = request(threaded_server, "GET", target, headers, b"")
    check_refusal(status, content_type, reply)
    assert status in (200, 400)
    assert server_log.errors() == []


# --- the admin ingest ------------------------------------------------------------------------------------

EVENT_KEYS = [
    "kind",
    "asset",
    "free",
    "locked",
    "total",
    "id",
    "symbol",
    "side",
    "type",
    "status",
    "price",
    "amount",
    "filled",
    "remaining",
    "cost",
    "timestamp",
    "created_at",
    "raw_status",
    "account",
    "x",
]
VALID_EVENTS = [
    {"kind": "balance", "asset": "USDT", "free": "10", "locked": "0"},
    {"kind": "order", "id": "C1", "symbol": "BTC/USDT", "side": "buy", "type": "limit", "status": "open",
     "price": "100", "amount": "1", "filled": "0", "cost": "0"},
]  # fmt: skip
events = st.builds(
    lambda base, patch, drop: {k: v for k, v in {**base, **patch}.items() if k not in drop},
    st.sampled_from(VALID_EVENTS),
    st.dictionaries(st.sampled_from(EVENT_KEYS), json_values, max_size=3),
    st.sets(st.sampled_from(EVENT_KEYS), max_size=2),
)
ingest_bodies = (
    st.binary(max_size=400)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.builds(
        lambda account, batch, extra: json.dumps({"account": account, "events": batch, **extra}).encode(),
        st.sampled_from(["alice", "bob", "zed", ""]) | json_values,
        st.lists(events, max_size=4) | json_values,
        st.dictionaries(st.sampled_from(["x", "account"]), json_values, max_size=1),
    )
)


@FUZZ
@given(body=ingest_bodies, authorization=st.sampled_from(["good", "good", "good", "wrong", "none"]))
def test_any_ingest_body_is_accepted_whole_or_refused_with_a_reason(
    threaded_server: ThreadedServer, server_log: ServerLog, fuzz: Fuzz, body: bytes, authorization: str
) -> None:
    headers = {"Content-Type": "application/json"}
    if authorization != "none":
        token = fuzz.admin_token if authorization == "good" else "not-the-token"
        headers["Authorization"] = f"Bearer {token}"
    status, content_type, reply = request(threaded_server, "POST", "/admin/events", headers, body)
    check_refusal(status, content_type, reply)
    decoded = json.loads(reply)
    if authorization != "good":
        assert status == 401
    elif status == 200:
        assert decoded["accepted"] == len(json.loads(body)["events"])
    else:
        assert status in (400, 404, 413, 422)
        assert set(decoded) <= {"error", "account", "index", "field"}
    assert server_log.errors() == []


def test_an_oversized_ingest_body_is_refused_with_413(threaded_server: ThreadedServer, fuzz: Fuzz) -> None:
    body = json.dumps({"account": "alice", "events": [VALID_EVENTS[0]] * 10_000}).encode()
    assert len(body) > 256 * 1024
    headers = {"Authorization": f"Bearer {fuzz.admin_token}", "Content-Type": "application/json"}
    status, _, reply = request(threaded_server, "POST", "/admin/events", headers, body)
    assert (status, json.loads(reply)) == (413, {"error": "the body exceeds 262144 bytes"})


# --- WebSocket handshakes --------------------------------------------------------------------------------

key_text = st.text(alphabet=string.ascii_letters + string.digits + "-_.~%", max_size=80)


@FUZZ
@given(data=st.data())
def test_any_websocket_handshake_is_accepted_or_refused_with_a_4xx(
    threaded_server: ThreadedServer, server_log: ServerLog, fuzz: Fuzz, data: st.DataObject
) -> None:
    headers = data.draw(
        st.dictionaries(
            st.sampled_from(["token", "api-key", "Token", "x-api-key"]), header_values(fuzz), max_size=3
        )
    )
    path = data.draw(
        st.sampled_from([coinlocally.WS_PATH]) | key_text.map(lambda key: bitmusa.WS_PATH_PREFIX + key)
    )
    try:
        with connect(
            threaded_server.ws_url + path, additional_headers=headers, open_timeout=WAIT, close_timeout=2
        ):
            pass
    except InvalidStatus as refused:
        response = refused.response
        assert response.status_code in (400, 401, 404, 429), response.status_code
        check_refusal(response.status_code, response.headers.get("Content-Type", ""), response.body or b"")
    assert server_log.errors() == []


# --- WebSocket frames ------------------------------------------------------------------------------------

client_frames = (
    st.binary(max_size=300)
    | st.text(max_size=300)
    | st.binary(max_size=200).map(gzip.compress)
    | json_values.map(json.dumps)
    | st.builds(lambda n: json.dumps({"ping": n}), json_values)
    | st.builds(lambda t: json.dumps({"event": "sub", "token": t}), json_values)
    | st.sampled_from(['{"ping": 1}', '{"event":"sub","token":"alice-coinlocally-token"}', "ping", "{}"])
    | st.sampled_from([MAX_FRAME + 1, 3 * MAX_FRAME]).map(lambda size: "x" * size)
)


def marker_event() -> tuple[dict[str, Any], str]:
    """A balance event unique to this example (its `free` is the marker)."""
    marker = str(next(_markers))
    return {"kind": "balance", "asset": "MARK", "free": marker, "locked": "0"}, marker


def until_marker(ws: ClientConnection, parse: Any, marker: str) -> None:
    deadline = time.monotonic() + WAIT
    while True:
        incoming = parse(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if isinstance(incoming, DataEvents) and any(
            getattr(event, "asset", None) == "MARK" and str(event.free) == marker
            for event in incoming.events  # type: ignore[attr-defined]
        ):
            return


def closed_code(error: ConnectionClosed) -> int | None:
    return None if error.rcvd is None else error.rcvd.code


@FUZZ
@given(frames=st.lists(client_frames, max_size=6))
def test_coinlocally_frames_in_any_order_leave_the_stream_working_or_closed_for_a_reason(
    threaded_server: ThreadedServer, server_log: ServerLog, fuzz: Fuzz, frames: list[str | bytes]
) -> None:
    token = str(fuzz.alice.coinlocally_token)
    event, marker = marker_event()
    parse = coinlocally.Parser(account="alice")
    oversized = any(len(frame) > MAX_FRAME for frame in frames)
    with connect(
        threaded_server.ws_url + coinlocally.WS_PATH,
        additional_headers={"token": token},
        open_timeout=WAIT,
        max_size=None,
    ) as ws:
        try:
            assert ws.recv(timeout=WAIT) == "connect success"
            for frame in frames:
                ws.send(frame)
            ws.send(json.dumps({"event": "sub", "token": token}))
            while ws.recv(timeout=WAIT) != "sub success":
                pass
            threaded_server.call(threaded_server.handle.ingest("alice", [event]))
            until_marker(ws, parse, marker)
            outcome = "working"
        except ConnectionClosed as closed:
            # After its close the server stops reading: a client still writing may see a reset instead.
            outcome = f"closed {closed_code(closed) or 'by a reset'}"
    allowed = {"working", "closed 4004", "closed by a reset"}  # 4004: a sub with a token not the header's
    if oversized:
        allowed.add("closed 1009")
    assert outcome in allowed, outcome
    assert outcome != "closed 4004" or any(
        b"sub" in (f if isinstance(f, bytes) else f.encode()) for f in frames
    )
    assert (
        outcome != "closed by a reset"
        or oversized
        or any(b"sub" in (f if isinstance(f, bytes) else f.encode()) for f in frames)
    )
    assert server_log.errors() == []


@pytest.fixture(scope="module")
def listen_key(threaded_server: ThreadedServer, fuzz: Fuzz) -> str:
    alice = fuzz.alice
    headers = {"Authorization": f"Bearer {alice.bitmusa_auth_key}", "x-api-key": str(alice.bitmusa_api_key)}
    status, _, reply = request(threaded_server, "POST", bitmusa.LISTEN_KEY_PATH, headers, b"")
    assert status == 200
    key: str = json.loads(reply)["data"]["listenKey"]
    return key


@FUZZ
@given(frames=st.lists(client_frames, max_size=6))
def test_bitmusa_ignores_any_client_frame_and_keeps_streaming(
    threaded_server: ThreadedServer, server_log: ServerLog, listen_key: str, frames: list[str | bytes]
) -> None:
    event, marker = marker_event()
    oversized = any(len(frame) > MAX_FRAME for frame in frames)
    with connect(
        threaded_server.ws_url + bitmusa.WS_PATH_PREFIX + listen_key, open_timeout=WAIT, max_size=None
    ) as ws:
        try:
            for frame in frames:
                ws.send(frame)
            if oversized:  # the server must close with 1009, whatever came before
                while True:
                    ws.recv(timeout=WAIT)
            assert ws.ping().wait(WAIT)  # every frame before it has been read by the server
            threaded_server.call(threaded_server.handle.ingest("alice", [event]))
            until_marker(ws, bitmusa.Parser(account="alice"), marker)
            outcome = "working"
        except ConnectionClosed as closed:
            # After its 1009 the server stops reading: a client still writing may see a reset instead.
            outcome = f"closed {closed_code(closed) or 'by a reset'}"
        assert outcome in (("closed 1009", "closed by a reset") if oversized else ("working",)), outcome
    assert server_log.errors() == []


def test_a_gzip_bomb_in_a_client_frame_is_ignored_without_inflating_it(
    threaded_server: ThreadedServer, server_log: ServerLog, fuzz: Fuzz
) -> None:
    bomb = gzip.compress(b"\0" * (3 << 20), compresslevel=9)  # 3 MiB of zeros in about 3 KiB
    assert len(bomb) < MAX_FRAME
    token = str(fuzz.alice.coinlocally_token)
    event, marker = marker_event()
    with connect(
        threaded_server.ws_url + coinlocally.WS_PATH, additional_headers={"token": token}, open_timeout=WAIT
    ) as ws:
        assert ws.recv(timeout=WAIT) == "connect success"
        for _ in range(20):
            ws.send(bomb)
        ws.send(json.dumps({"event": "sub", "token": token}))
        assert ws.recv(timeout=WAIT) == "sub success"
        threaded_server.call(threaded_server.handle.ingest("alice", [event]))
        until_marker(ws, coinlocally.Parser(account="alice"), marker)
    ignored = [r for r in server_log.records if r.getMessage() == "client frame ignored"]
    assert any("limit" in getattr(r, "userstream_fields", {}).get("reason", "") for r in ignored)
    assert server_log.errors() == []
