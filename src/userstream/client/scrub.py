"""The secrets one stream holds, and the one function that takes them out of a server's words.

This module owns `Scrubber`. A server's own text (a REST error message or body, a WebSocket close reason,
an error reply, an unknown frame) is shown to users in errors, status reasons, logs and the gateway's HTTP
API. A hostile or careless server may echo what it was sent: the api key, the auth key, the token, the
secret key, or a listenKey. Each stream's `Transport` owns one `Scrubber` holding every credential of the
stream and every listenKey it has held (the session adds each one as it gets it), and server text passes
through it where it enters the project (docs/client.md, "What a server's words may show"):

- `scrubber(text)`: `text` with every echo of a secret replaced by `HIDDEN`;
- `scrubber.error(exc)`: the same for an error's message and its text attributes, in place;
- `with scrubber.errors():`: every error of ours raised inside leaves scrubbed.

An echo is found however a careless server writes it: exactly, in any letter case, percent-encoded (as in
a URL path or query), JSON- or Python-escaped, and in part: any run of `MIN_ECHO` or more characters of
one of those forms (a message clipped in the middle of a key leaves a prefix; a server that quotes the
first half of what it refused leaves a half). A secret shorter than `MIN_ECHO` is found whole, where it
stands alone (not inside a longer word: a one-letter test credential must not hide the "y" of
"listenKey"). A text longer than `MAX_TEXT` is cut to that length first (with "..."). No I/O, no clock; it
never raises.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Final, TypeVar
from urllib.parse import quote, quote_plus

from userstream.errors import UserStreamError

__all__ = ["HIDDEN", "MAX_TEXT", "MIN_ECHO", "Scrubber"]

#: What an echoed secret becomes.
HIDDEN: Final = "<hidden>"
#: The shortest run of a secret's characters that counts as an echo of it: 12 characters of a random key
#: do not occur in a server's prose by chance, and fewer are not enough to guess the rest.
MIN_ECHO: Final = 12
#: The most of one text that is kept (and searched): a server's words are shown, never stored, and every
#: place that shows them clips them far shorter. Bounds the work a hostile 1 MiB error reply can cause.
MAX_TEXT: Final = 4096
_CHUNK: Final = MIN_ECHO // 2  # see Scrubber._runs

_E = TypeVar("_E", bound=BaseException)


def _forms(secret: str) -> set[str]:
    """The ways a careless server writes `secret` back: as is, percent-encoded, JSON- and repr-escaped
    (lower-cased: matching ignores case, so %2f and %2F, or an upper-cased echo, are one form)."""
    forms = {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
    }
    return {form.lower() for form in forms if form}


def _stands_alone(text: str, start: int, end: int) -> bool:
    """True when text[start:end] is not the inside of a longer word: a short secret ("y", "tok") is a
    secret where it stands alone, and a piece of our own words ("listenKe-y") where it does not."""
    if start > 0 and text[start - 1].isalnum() and text[start].isalnum():
        return False
    return not (end < len(text) and text[end].isalnum() and text[end - 1].isalnum())


class Scrubber:
    """Every secret of one stream; call it on any text a server supplied before anyone can see it."""

    __slots__ = ("_chunks", "_grams", "_secrets", "_short")

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: set[str] = set()
        #: every run of MIN_ECHO characters of every form of every secret (lower-cased)...
        self._grams: set[str] = set()
        #: ...and every run of _CHUNK characters of them: the cheap first look (see `_runs`)
        self._chunks: set[str] = set()
        #: forms shorter than MIN_ECHO, found whole
        self._short: set[str] = set()
        self.add(*secrets)

    def __repr__(self) -> str:
        return f"Scrubber({len(self._secrets)} secrets)"  # never the secrets themselves

    def __len__(self) -> int:
        return len(self._secrets)

    def add(self, *secrets: str | None) -> None:
        """Hold these secrets too (None, "" and one already held are skipped)."""
        for secret in secrets:
            if not secret or secret in self._secrets:
                continue
            self._secrets.add(secret)
            for form in _forms(secret):
                if len(form) < MIN_ECHO:
                    self._short.add(form)
                    continue
                self._grams.update(form[at : at + MIN_ECHO] for at in range(len(form) - MIN_ECHO + 1))
                self._chunks.update(form[at : at + _CHUNK] for at in range(len(form) - _CHUNK + 1))

    def __call__(self, text: str) -> str:
        """`text` with every echo of a secret (see the module docstring) replaced by `HIDDEN`."""
        if not self._secrets or not text:
            return text
        if len(text) > MAX_TEXT:
            return self(text[:MAX_TEXT]) + "..."
        folded = text.lower()
        if len(folded) != len(text):  # a character whose lower case is longer: keep positions aligned
            folded = "".join(char if len(char.lower()) != 1 else char.lower() for char in text)
        hidden = bytearray(len(text))  # 1 where a character belongs to an echo
        found = False
        for start, end in self._runs(folded):
            hidden[start:end] = b"\x01" * (end - start)
            found = True
        if not found:
            return text
        parts: list[str] = []
        index = 0
        while index < len(text):
            if hidden[index]:
                parts.append(HIDDEN)
                while index < len(text) and hidden[index]:
                    index += 1
            else:
                end = hidden.find(b"\x01", index)
                end = len(text) if end < 0 else end
                parts.append(text[index:end])
                index = end
        return "".join(parts)

    def _runs(self, folded: str) -> Iterator[tuple[int, int]]:
        """(start, end) of every echo in `folded`, overlapping as they may.

        A run of MIN_ECHO characters or more, wherever it starts, wholly covers one of the _CHUNK-long
        pieces of the text that start at a multiple of _CHUNK (MIN_ECHO >= 2 * _CHUNK). So only those
        pieces are looked up first, one set lookup per _CHUNK characters, and the MIN_ECHO-long runs are
        looked for only around a piece that belongs to a secret."""
        for form in self._short:  # whole, with the C search, and never inside a longer word
            at = folded.find(form)
            while at >= 0:
                if _stands_alone(folded, at, at + len(form)):
                    yield at, at + len(form)
                at = folded.find(form, at + 1)
        if not self._grams:
            return
        length = len(folded)
        chunks, grams = self._chunks, self._grams
        for piece in range(0, length - _CHUNK + 1, _CHUNK):
            if folded[piece : piece + _CHUNK] not in chunks:
                continue
            for start in range(max(0, piece + _CHUNK - MIN_ECHO), min(piece, length - MIN_ECHO) + 1):
                if folded[start : start + MIN_ECHO] in grams:
                    yield start, start + MIN_ECHO

    def error(self, exc: _E) -> _E:
        """`exc` itself, with its message (every text argument) and every text attribute scrubbed."""
        exc.args = tuple(self(arg) if isinstance(arg, str) else arg for arg in exc.args)
        for name, value in vars(exc).items():
            if isinstance(value, str):
                setattr(exc, name, self(value))
        return exc

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Every error of ours raised inside leaves with its text scrubbed (the same exception object)."""
        try:
            yield
        except UserStreamError as exc:
            self.error(exc)
            raise
