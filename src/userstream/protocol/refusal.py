"""What a refusal looks like when the exchange never said: one liberal reading of error replies, sans-I/O.

Neither exchange document shows an error reply. This module owns the reading both protocol modules share,
so that a refusal in a shape we did not invent is still recognized as one (docs/client.md, "Refusals"):

- `read_refusal(obj)`: does a decoded JSON object refuse something? Yes when it carries a non-zero code
  (`code`, `status`, `errorCode`, ... as a number or a numeric string), `success`/`ok` false, a non-empty
  `error`/`err`, or a refusal word ("error", "fail", "invalid", "denied", ...) in any top-level text. The
  answer carries the code and the most telling text, and whether the refusal is transient (a rate limit, a
  server that is busy or restarting: codes 429, 503, 1011, 1013, or words such as "too many", "try again");
- `read_text_refusal(text)`: the same for a plain-text reply (a refusal or transient word in it);
- `reply_text(obj)`: the text of a reply worth quoting, refusal or not;
- `scrub(text, secrets)`: a server's text with our credentials replaced by `<hidden>` and clipped, for
  quoting in errors and status reasons (a careless server echoes what it refused).

It performs no I/O and decides nothing about what a refusal means to a stream: the runtime does that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["HIDDEN", "Refusal", "clip", "read_refusal", "read_text_refusal", "reply_text", "scrub"]

HIDDEN: Final = "<hidden>"
#: How much of a server's text is quoted: enough to act on, bounded against a server that sends a novel.
SHOWN_CHARS: Final = 200

#: Keys that carry a result code, in the order their value is preferred.
_CODE_KEYS: Final = ("code", "errorCode", "error_code", "errCode", "errcode", "retCode", "ret_code", "status")
#: Keys that carry the text worth quoting, in the order preferred.
_TEXT_KEYS: Final = (
    "msg",
    "message",
    "error",
    "err",
    "errMsg",
    "errmsg",
    "error_msg",
    "error_message",
    "error_description",
    "reason",
    "detail",
    "description",
    "retMsg",
    "status",
)
_ERROR_KEYS: Final = ("error", "err", "errors")
_SUCCESS_KEYS: Final = ("success", "ok")
#: Words (lower case) that make a text a refusal.
_REFUSAL_WORDS: Final = (
    "error",
    "fail",
    "invalid",
    "denied",
    "unauthori",
    "forbidden",
    "refuse",
    "reject",
    "expired",
    "not allowed",
    "not found",
    "permission",
    "illegal",
    "wrong",
    "incorrect",
    "disabled",
    "suspend",
    "banned",
    "blocked",
    "not exist",
    "no such",
    "mismatch",
)
#: Codes and words that make a refusal transient: worth retrying with the same credential.
_TRANSIENT_CODES: Final = frozenset({429, 502, 503, 504, 1011, 1012, 1013})
_TRANSIENT_WORDS: Final = (
    "too many",
    "rate limit",
    "ratelimit",
    "try again",
    "retry",
    "busy",
    "unavailable",
    "overload",
    "maintenance",
    "timeout",
    "timed out",
    "restart",
    "internal",
)
#: Texts of a code key that mean success.
_SUCCESS_WORDS: Final = frozenset({"ok", "success", "succeeded", "successful", "true", "done"})


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refusal read from a reply: its code (an int, the server's own word, or None), its text, and
    whether retrying with the same credential may help."""

    code: int | str | None
    message: str
    transient: bool


def read_refusal(obj: Mapping[str, Any]) -> Refusal | None:
    """The refusal a decoded JSON object carries, or None when it carries none."""
    code, refused = _read_code(obj)
    for key in _SUCCESS_KEYS:
        value = obj.get(key)
        if value is False or (isinstance(value, str) and value.strip().lower() == "false"):
            refused = True
    nested: Mapping[str, Any] | None = None
    for key in _ERROR_KEYS:
        value = obj.get(key)
        if isinstance(value, Mapping):
            if value:
                nested, refused = value, True
        elif (isinstance(value, list | str) and value) or value is True:
            refused = True
    texts = [value for value in obj.values() if isinstance(value, str)]
    if any(_has_word(text, _REFUSAL_WORDS) for text in texts):
        refused = True
    if nested is not None:
        nested_code, _ = _read_code(nested)
        code = code if code is not None else nested_code
    if not refused:
        return None
    message = reply_text(obj)
    return Refusal(code, message, _is_transient(code, message, texts))


def reply_text(obj: Mapping[str, Any]) -> str:
    """The most telling text of a reply (`msg`, `message`, `error`..., a nested error's), refusal or not."""
    text = _best_text(obj)
    if text:
        return text
    for key in _ERROR_KEYS:
        value = obj.get(key)
        if isinstance(value, Mapping):
            return _best_text(value)
    return ""


def read_text_refusal(text: str) -> Refusal | None:
    """The refusal a plain-text reply carries (a refusal or transient word), or None."""
    stripped = text.strip()
    if _has_word(stripped, _REFUSAL_WORDS) or _has_word(stripped, _TRANSIENT_WORDS):
        return Refusal(None, stripped, _has_word(stripped, _TRANSIENT_WORDS))
    return None


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced by `<hidden>`, clipped to `SHOWN_CHARS` (after the replacement,
    so a clip can never leave half a secret showing). The protocol layer's own, for the credentials of the
    request it judges; the client's stream-wide boundary (every secret, every form) is client/scrub.py."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, HIDDEN)
    return clip(text)


def clip(text: str) -> str:
    """`text` cut to `SHOWN_CHARS` (with "..."): a server's words are quoted, never a novel of them."""
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


def _read_code(obj: Mapping[str, Any]) -> tuple[int | str | None, bool]:
    """The first code found and whether it refuses (non-zero, or a word that is not a success)."""
    for key in _CODE_KEYS:
        value = obj.get(key)
        if value is None or isinstance(value, bool):
            continue
        number = _as_int(value.strip()) if isinstance(value, str) else value
        if isinstance(number, float) and number.is_integer():
            number = int(number)
        if isinstance(number, int):
            # `status` is also spelt as an HTTP status: 200 is its success
            return number, number not in ((0, 200) if key == "status" else (0,))
        if isinstance(value, str):
            word = value.strip()
            if key != "status" and word and word.lower() not in _SUCCESS_WORDS:
                return word[:64], True  # a named code ("INVALID_TOKEN"): a refusal by its presence
    return None, False


def _as_int(text: str) -> int | None:
    digits = text[1:] if text[:1] in "+-" else text
    if not digits.isascii() or not digits.isdigit() or len(digits) > 19:
        return None
    return int(text)


def _has_word(text: str, words: tuple[str, ...]) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in words)


def _best_text(obj: Mapping[str, Any]) -> str:
    for key in _TEXT_KEYS:
        value = obj.get(key)
        if isinstance(value, str) and value.strip() and _as_int(value.strip()) is None:
            return value.strip()
    return ""


def _is_transient(code: int | str | None, message: str, texts: list[str]) -> bool:
    if isinstance(code, int) and code in _TRANSIENT_CODES:
        return True
    return any(_has_word(text, _TRANSIENT_WORDS) for text in (message, *texts))
