"""`Scrubber`: every echo of a secret, however a careless server writes it, becomes <hidden>."""

from __future__ import annotations

import json
from urllib.parse import quote, quote_plus

import pytest

from userstream.client.scrub import HIDDEN, MAX_TEXT, MIN_ECHO, Scrubber
from userstream.errors import AuthenticationError, MessageShapeError, UserStreamError

KEY = 'Api/Key+With=Signs"and\\more-0123456789'
LISTEN_KEY = "pqkF2x9vLr0DmTzW8yBnHc4sJ1aUeQoG7iKtX5wZ3bM"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"bad key {KEY}", f"bad key {HIDDEN}"),  # as is
        (f"bad key {KEY.upper()}!", f"bad key {HIDDEN}!"),  # in another case
        (f"/x/{quote(KEY, safe='')}?a=1", f"/x/{HIDDEN}?a=1"),  # percent-encoded
        (f"/x/{quote(KEY, safe='').lower()}", f"/x/{HIDDEN}"),  # %2f, not %2F
        (f"q={quote_plus(KEY)}&b=2", f"q={HIDDEN}&b=2"),  # as a form value
        ('{"key": ' + json.dumps(KEY) + "}", '{"key": "' + HIDDEN + '"}'),  # JSON-escaped
        (f"repr {KEY!r}", f"repr '{HIDDEN}'"),  # Python-escaped
        (f"cut at {KEY[:MIN_ECHO]}...", f"cut at {HIDDEN}..."),  # a clipped echo: its prefix
        (f"tail {KEY[-MIN_ECHO:]}", f"tail {HIDDEN}"),
        (f"{LISTEN_KEY}{LISTEN_KEY}", HIDDEN),  # runs that touch are one
        (f"a {LISTEN_KEY} b {KEY} c", f"a {HIDDEN} b {HIDDEN} c"),
        (f"short {KEY[: MIN_ECHO - 1]} stays", f"short {KEY[: MIN_ECHO - 1]} stays"),  # too little to hide
        ("nothing secret here", "nothing secret here"),
        ("", ""),
    ],
)
def test_every_form_of_an_echo_is_hidden(text: str, expected: str) -> None:
    assert Scrubber((KEY, LISTEN_KEY))(text) == expected


def test_a_secret_shorter_than_an_echo_is_hidden_whole_and_none_is_skipped() -> None:
    scrubber = Scrubber(("tok-1", None, ""))
    assert len(scrubber) == 1
    assert scrubber("token tok-1 refused; tok-2 fine") == f"token {HIDDEN} refused; tok-2 fine"


def test_a_short_secret_inside_a_longer_word_is_that_word_not_the_secret() -> None:
    # a one-letter test credential once made "listenKey request rejected" read "listenKe<hidden> request"
    scrubber = Scrubber(("y", "x"))
    assert scrubber("listenKey request rejected: x") == f"listenKey request rejected: {HIDDEN}"
    assert scrubber('{"key":"y","box":"y1"}') == f'{{"key":"{HIDDEN}","box":"y1"}}'
    assert scrubber("y") == HIDDEN


def test_a_secret_added_later_is_hidden_from_then_on() -> None:
    scrubber = Scrubber((KEY,))
    assert scrubber(f"closed: {LISTEN_KEY}") == f"closed: {LISTEN_KEY}"
    scrubber.add(LISTEN_KEY)
    scrubber.add(LISTEN_KEY)  # the same key again (POST returns the account's active key): held once
    assert scrubber(f"closed: {LISTEN_KEY}") == f"closed: {HIDDEN}"
    assert (repr(scrubber), len(scrubber)) == ("Scrubber(2 secrets)", 2)


def test_an_empty_scrubber_returns_the_same_text() -> None:
    text = f"anything {KEY}"
    assert Scrubber()(text) is text


def test_error_scrubs_the_message_and_text_attributes_in_place() -> None:
    scrubber = Scrubber((KEY,))
    error = MessageShapeError(f"bad field near {KEY}", field=f"$.{KEY}")
    assert scrubber.error(error) is error
    assert str(error) == f"bad field near {HIDDEN}"
    assert error.field == f"$.{HIDDEN}"
    assert KEY not in repr(error)


def test_errors_rescrubs_what_is_raised_inside_and_keeps_its_type_and_fields() -> None:
    scrubber = Scrubber((KEY,))
    with pytest.raises(AuthenticationError) as raised, scrubber.errors():
        raise AuthenticationError(f"refused {KEY}", rejected="api key", status=401)
    assert (str(raised.value), raised.value.rejected, raised.value.status) == (
        f"refused {HIDDEN}",
        "api key",
        401,
    )
    with pytest.raises(ValueError, match="not ours"), scrubber.errors():  # only errors of ours are touched
        raise ValueError("not ours")
    with pytest.raises(UserStreamError, match=r"^plain$"), scrubber.errors():
        raise UserStreamError("plain")


def test_a_long_text_is_cut_to_max_text_and_still_scrubbed() -> None:
    scrubber = Scrubber((KEY,))
    padding = "x" * (MAX_TEXT - len(KEY) - 4)
    text = f"{padding} {KEY} {'y' * 2_000_000}"  # a hostile megabyte: cut, and the key in its head hidden
    assert scrubber(text) == f"{padding} {HIDDEN} yy..."
    assert scrubber("z" * MAX_TEXT) == "z" * MAX_TEXT


@pytest.mark.parametrize("shift", range(MIN_ECHO))  # every alignment of the echo in the text
def test_every_run_of_a_secret_at_least_min_echo_long_is_hidden_wherever_it_sits(shift: int) -> None:
    scrubber = Scrubber((LISTEN_KEY,))
    prefix = "." * shift + "<"
    for start in range(len(LISTEN_KEY)):
        for end in range(start + 1, len(LISTEN_KEY) + 1):
            run = LISTEN_KEY[start:end]
            expected = f"{prefix}{HIDDEN}>" if len(run) >= MIN_ECHO else f"{prefix}{run}>"
            assert scrubber(f"{prefix}{run}>") == expected, (start, end)
