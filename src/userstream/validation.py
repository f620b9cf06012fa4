"""msgspec's validation errors and declared constraints, in the words a user reads. Pure: no I/O.

Two jobs, both about turning msgspec's terse validation into this project's messages:

- `failure(exc)` reads a `msgspec.ValidationError` (`Expected int, got str - at $.data[0].q`, `Object
  missing required field x`) into its parts: the reason, the JSON path it points at, and the field it names.
  Every parser of the project (protocol/, eventjson, the emulator's admin routes, the configs) takes the
  failing path from here: it is written once.
- The configs (`StreamOptions`, serve's `ServerConfig` and `Account`, the gateway's `GatewayConfig`, the
  sinks' specs) are msgspec Structs whose constraints are declared on their fields' types, as
  `Annotated[float, Meta(gt=0, extra=must("be a positive number of seconds"))]`. msgspec enforces them on
  `msgspec.convert` only; `check_fields` enforces the same declarations when a config is built by keyword
  (its `__post_init__` calls it), `converted` is the one `msgspec.convert` of a table or of flags, and
  both say a broken constraint as `<name> must <wording>, not <value>` (`Wording.refuse`; `translate` turns
  msgspec's refusal into it). The wording lives beside the constraint, in the Struct's one definition;
  `default_of` reads a field's default for the flag that sets it.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final, NamedTuple, TypeVar

import msgspec

from userstream.errors import ConfigurationError

__all__ = [
    "Count",
    "Failure",
    "Seconds",
    "SecondsOrZero",
    "Wording",
    "check_fields",
    "converted",
    "default_of",
    "failure",
    "field_wording",
    "must",
    "translate",
    "wording",
]

_AT: Final = " - at `"
_MISSING: Final = "missing required field `"
_UNKNOWN: Final = "unknown field `"
#: The key of a Meta's `extra` holding what a value must be, in words.
_MUST: Final = "must"
#: The key of a Meta's `extra` saying that a refusal does not repeat the value (a path, say).
_QUIET: Final = "quiet"


def must(words: str, *, quiet: bool = False) -> dict[str, Any]:
    """A Meta's `extra` saying what a value must be: `Meta(gt=0, extra=must("be a positive integer"))`.
    A refusal says `<name> must <words>, not <value>`; `quiet` leaves the value out."""
    return {_MUST: words, _QUIET: quiet}


#: A number of seconds above 0 (a duration, a timeout).
Seconds = Annotated[float, msgspec.Meta(gt=0, extra=must("be a positive number of seconds"))]
#: A number of seconds, 0 allowed.
SecondsOrZero = Annotated[float, msgspec.Meta(ge=0, extra=must("be a number of seconds, 0 or more"))]
#: A count of at least 1 (a size, a bound, a number of attempts).
Count = Annotated[int, msgspec.Meta(ge=1, extra=must("be a positive integer"))]


class Failure(NamedTuple):
    """A msgspec validation error, in parts."""

    #: msgspec's words, without the location ("Expected `int`, got `str`").
    reason: str
    #: The JSON path msgspec points at ("$.data[0].q"), None when it points at the whole document.
    at: str | None
    #: The field a "missing required field" reason names.
    missing: str | None
    #: The field an "unknown field" reason names (a Struct that forbids unknown fields).
    unknown: str | None

    @property
    def path(self) -> str:
        """The JSON path of what failed: where msgspec points (the root, "$", if nowhere), and a missing
        field's own name after it."""
        path = self.at if self.at is not None else "$"
        return path if self.missing is None else f"{path}.{self.missing}"

    @property
    def key(self) -> str | None:
        """The path msgspec points at as a config key (`accounts[0].ping_interval`), None at the root."""
        if self.at is None or not self.at.startswith("$."):
            return None
        return self.at[2:]


def failure(error: msgspec.ValidationError | str) -> Failure:
    """The parts of a msgspec validation error (or of its text)."""
    text = str(error)
    reason, marker, tail = text.partition(_AT)
    at = tail.rstrip("`") if marker else None
    return Failure(reason, at, _named(reason, _MISSING), _named(reason, _UNKNOWN))


def _named(reason: str, marker: str) -> str | None:
    _, found, tail = reason.partition(marker)
    return tail.split("`", 1)[0] if found else None


# --- declared constraints, in words ---------------------------------------------------------------------


class Wording(NamedTuple):
    """What a value must be, in words (a field's declared `must`), and how a value that is not is refused."""

    words: str
    #: The refusal leaves the value out (a path, say, that the words already describe).
    quiet: bool = False

    def refuse(self, name: str, value: object) -> str:
        """`<name> must <words>, not <value!r>` (`<name> must <words>` when quiet)."""
        if self.quiet:
            return f"{name} must {self.words}"
        return f"{name} must {self.words}, not {value!r}"


def wording(annotation: object) -> Wording | None:
    """What a value of this (Annotated, or Optional Annotated) type must be, if its Meta says so."""
    for meta in getattr(annotation, "__metadata__", ()):
        if isinstance(meta, msgspec.Meta) and meta.extra is not None and _MUST in meta.extra:
            return Wording(str(meta.extra[_MUST]), bool(meta.extra.get(_QUIET)))
    for argument in typing.get_args(annotation):  # Optional[Annotated[...]]
        found = wording(argument)
        if found is not None:
            return found
    return None


@functools.cache
def _constrained(cls: type[msgspec.Struct]) -> tuple[tuple[str, Any, Wording], ...]:
    """(field, annotation, wording) of each field of `cls` whose type declares a wording."""
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = []
    for name in cls.__struct_fields__:
        declared = wording(hints[name])
        if declared is not None:
            fields.append((name, hints[name], declared))
    return tuple(fields)


def check_fields(
    struct: msgspec.Struct,
    *,
    skip: frozenset[str] = frozenset(),
    spell: Callable[[str], str] = str,
) -> None:
    """Hold every field of `struct` with a declared wording to its declared type and constraints, as
    `msgspec.convert` would; ConfigurationError `<spell(name)> must <wording>, not <value!r>` at the first
    that breaks them. For a Struct built by keyword (msgspec checks nothing then): call from
    `__post_init__`. `skip` names fields checked otherwise."""
    for name, annotation, declared in _constrained(type(struct)):
        if name in skip:
            continue
        value = getattr(struct, name)
        try:
            msgspec.convert(value, annotation)
        except msgspec.ValidationError:
            raise ConfigurationError(declared.refuse(spell(name), value)) from None


def field_wording(cls: type[msgspec.Struct], name: str) -> Wording | None:
    """The declared wording of field `name` of `cls`, if any."""
    for field, _, declared in _constrained(cls):
        if field == name:
            return declared
    return None


def translate(
    error: msgspec.ValidationError,
    cls: type[msgspec.Struct],
    document: Mapping[str, Any],
    *,
    spell: Callable[[str], str] = str,
) -> str:
    """A `msgspec.convert(document, cls)` refusal in the project's words: a top-level field with a
    declared wording is refused as `check_fields` would; anything else keeps msgspec's reason, with the key
    it points at."""
    found = failure(error)
    key = found.key
    if key is not None and key in document:
        declared = field_wording(cls, key)
        if declared is not None:
            return declared.refuse(spell(key), document[key])
    if found.unknown is not None:
        return f"unknown key {found.unknown!r}"
    if key is not None:
        return f"{spell(key)}: {found.reason}"
    return found.reason


_S = TypeVar("_S", bound=msgspec.Struct)


def converted(
    values: Mapping[str, Any],
    cls: type[_S],
    *,
    spell: Callable[[str], str] = str,
) -> _S:
    """`values` (a config table, or flags) as a `cls`, by `msgspec.convert`: its declared types and
    constraints checked, then its `__post_init__`. A refusal is a ConfigurationError in the project's words
    (`translate`)."""
    try:
        return msgspec.convert(values, cls)
    except msgspec.ValidationError as exc:
        raise ConfigurationError(translate(exc, cls, values, spell=spell)) from None


def default_of(cls: type[msgspec.Struct], name: str) -> Any:
    """The default of field `name` of `cls` (what a flag that is not given leaves)."""
    for info in msgspec.structs.fields(cls):
        if info.name == name:
            if info.default is not msgspec.NODEFAULT:
                return info.default
            if info.default_factory is not msgspec.NODEFAULT:
                return info.default_factory()
            raise LookupError(f"{cls.__name__}.{name} has no default")
    raise LookupError(f"{cls.__name__} has no field {name!r}")
