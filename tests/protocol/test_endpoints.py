"""URLs written either way (issue 12): every form of each exchange's endpoint gives the same URL, with no
path segment doubled, and URLs are shown without query string or user info."""

from __future__ import annotations

import pytest

from userstream.protocol import bitmusa, coinlocally, endpoints

HOST = "ws://127.0.0.1:8080"


def test_the_paths_agree_with_the_exchange_modules() -> None:
    assert endpoints.BITMUSA_WS_PATH + "/" == bitmusa.WS_PATH_PREFIX
    assert endpoints.BITMUSA_REST_PATH == bitmusa.LISTEN_KEY_PATH
    assert endpoints.COINLOCALLY_WS_PATH == coinlocally.WS_PATH


@pytest.mark.parametrize(
    ("written", "base"),
    [
        (HOST, HOST),
        (HOST + "/", HOST),
        (HOST + "/ws/spot", HOST),
        (HOST + "/ws/spot/", HOST),
        (HOST + "/ws/spot/SOME-LISTEN-KEY", HOST),
        (HOST + "/spotws_user/userData/ws", HOST),
        (HOST + "/spotws_user/userData/ws/", HOST),
        (HOST + "/proxy/bitmusa", HOST + "/proxy/bitmusa"),
        (HOST + "/proxy/bitmusa/ws/spot/", HOST + "/proxy/bitmusa"),
        ("wss://websocket.bitmusa.com:60002", "wss://websocket.bitmusa.com:60002"),
        (HOST + "/ws/spot?region=eu", HOST + "?region=eu"),
    ],
)
def test_bitmusa_ws_url_in_any_form(written: str, base: str) -> None:
    assert endpoints.bitmusa_ws_base(written) == base
    # ... and the stream URL built from it never doubles a segment
    stream = endpoints.join(endpoints.bitmusa_ws_base(written), bitmusa.ws_path("KEY"))
    assert stream.count("/ws/spot/") == 1
    assert stream == endpoints.join(base, "/ws/spot/KEY")


def test_join_keeps_a_query_after_the_path() -> None:
    assert endpoints.join(HOST + "?region=eu", "/ws/spot/KEY") == HOST + "/ws/spot/KEY?region=eu"
    assert endpoints.join(HOST + "/", "/ws/spot/KEY") == HOST + "/ws/spot/KEY"


@pytest.mark.parametrize(
    ("written", "base"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/spot/userDataStream", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/spot/userDataStream/", "http://127.0.0.1:8080"),
        ("https://openapi.bitmusa.com", "https://openapi.bitmusa.com"),
        ("https://gw.example/api/", "https://gw.example/api"),
        ("https://gw.example/api/spot/userDataStream", "https://gw.example/api"),
    ],
)
def test_bitmusa_rest_url_in_any_form(written: str, base: str) -> None:
    assert endpoints.bitmusa_rest_base(written) == base


FULL = HOST + "/spotws_user/userData/ws"


@pytest.mark.parametrize(
    ("written", "url"),
    [
        (HOST, FULL),
        (HOST + "/", FULL),
        (FULL, FULL),
        (FULL + "/", FULL),
        (HOST + "/ws/spot", FULL),
        (HOST + "/ws/spot/", FULL),
        (HOST + "/gw/spotws_user/userData/ws", HOST + "/gw/spotws_user/userData/ws"),
        ("wss://ws2.coinlocally.com/spotws_user/userData/ws", coinlocally.WS_URL),
        ("wss://ws2.coinlocally.com", coinlocally.WS_URL),
        (HOST + "/private", HOST + "/private"),  # a path of its own is the user's full URL, kept
        (FULL + "?lang=en", FULL + "?lang=en"),
    ],
)
def test_coinlocally_ws_url_in_any_form(written: str, url: str) -> None:
    assert endpoints.coinlocally_ws_url(written) == url
    assert endpoints.coinlocally_ws_url(endpoints.coinlocally_ws_url(written)) == url  # idempotent


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ws://127.0.0.1:8080/ws/spot?token=SECRET", "ws://127.0.0.1:8080/ws/spot"),
        ("wss://user:SECRET@host.example/path#frag", "wss://host.example/path"),
        ("ws://[::1]:9000/spotws_user/userData/ws", "ws://[::1]:9000/spotws_user/userData/ws"),
        ("https://openapi.bitmusa.com", "https://openapi.bitmusa.com"),
        ("ws://host:notaport/x", "<invalid URL>"),
    ],
)
def test_a_url_is_shown_without_query_or_user_info(url: str, shown: str) -> None:
    assert endpoints.shown(url) == shown
