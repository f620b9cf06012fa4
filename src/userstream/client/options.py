"""Every option of a stream, and which value each takes: the one the caller gave, else one that fits it.

This module owns `StreamOptions` and `resolve()`, the one place where the rules *between* options live
(docs/client.md, "How the options fit together"). The principle: a value the caller did not give never
contradicts one they gave. It keeps its documented default when that fits what was given, and is derived
from what was given when the default would not (`idle_timeout=30` alone gives a 20 s ping interval, not a
refusal). Only a contradiction between values the caller gave explicitly is refused, and the refusal names
what they typed: `resolve()` spells option names through a function, so `connect()` names its keyword
arguments, `userstream watch` its flags and the gateway its TOML keys, from the same rules. Pure: no I/O,
no clock, no asyncio.

`StreamOptions` is a frozen msgspec Struct, the one definition of every option: a field's type declares its
constraint and the words of its refusal (`userstream.validation`), its default is the documented one and
the one `watch`'s flags show. A timing left out defaults to None, "not given" (`NOT_GIVEN`), and
`__post_init__` settles it through `resolve()`, writing the number into the frozen field: so keyword
construction, `msgspec.convert` from a table and `msgspec.structs.replace` all go through the same rules.
What the exchanges document (the listenKey's validity, the ping silence Coinlocally tolerates, the 24-hour
cut) is read from the exchange registry, never branched on.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, Final, cast

import msgspec
from msgspec import Meta

from userstream.client.backoff import Backoff
from userstream.client.connection import FrameHook
from userstream.client.frame_warnings import DEFAULT_WARNING_INTERVAL
from userstream.client.queue import Overflow
from userstream.client.tls import TlsPolicy
from userstream.errors import ConfigurationError
from userstream.events import Exchange
from userstream.protocol.client_wire import ListenKeyWire
from userstream.protocol.codec import DEFAULT_MAX_FRAME
from userstream.protocol.registry import REGISTRY, spec
from userstream.validation import Count, Seconds, SecondsOrZero, Wording, check_fields, must, wording

__all__ = [
    "DEFAULTS",
    "LISTEN_KEY_VALIDITY",
    "NOT_GIVEN",
    "PONG_MARGIN",
    "TIMINGS",
    "Resolved",
    "StreamOptions",
    "resolve",
    "unlikely_to_work",
]

_CaFile = Annotated[
    str, Meta(min_length=1, extra=must("be the path of a PEM file of CA certificates", quiet=True))
]
#: The default of a timing the caller leaves out: None, "not given", which `resolve` settles into a number
#: (typed Any so that the field keeps the type it has once settled).
NOT_GIVEN: Any = None

#: The queue's default byte bound (`queue_bytes`, as `events.event_size` counts): 10,000 ordinary events
#: (~2.8 KB each at most) fit under it, so `queue_size` binds first unless messages are padded.
DEFAULT_QUEUE_BYTES = 32 << 20

#: The documented defaults of the timings, in seconds (docs/client.md). A default that does not fit a
#: value the caller gave is replaced by a derived one (`resolve`).
DEFAULTS: Final[Mapping[str, float]] = MappingProxyType(
    {
        "keepalive_interval": 1800.0,  # Bitmusa: half the listenKey's hour
        "ping_interval": 30.0,  # Coinlocally drops a client that has not pinged for 40 s
        "idle_timeout": 45.0,  # a ping interval and half of one more for its pong
        "rotate_after": 84600.0,  # 23 h 30 min: half an hour before both exchanges' 24-hour cut
        "sub_timeout": 10.0,
        "backoff_base": 1.0,
        "backoff_cap": 30.0,
        "stable_after": 60.0,
        "overlap_timeout": 5.0,
        "close_timeout": 5.0,
        "request_timeout": 10.0,
    }
)
#: Every timing `resolve` knows, in the order it settles them.
TIMINGS: Final = tuple(DEFAULTS)

#: idle_timeout / ping_interval when one of them is derived from the other: each ping (and its pong) comes
#: at least a third of the idle timeout before a quiet connection would be declared dead.
PONG_MARGIN: Final = 1.5

#: The shortest listenKey validity of the exchanges that have one (seconds): a keepalive must come within it.
LISTEN_KEY_VALIDITY: Final = (
    min(
        entry.client.listen_key_validity_ms
        for entry in REGISTRY.values()
        if isinstance(entry.client, ListenKeyWire)
    )
    / 1000
)


def _keyword(name: str) -> str:
    return name


@dataclass(frozen=True, slots=True)
class Resolved:
    """What `resolve` settled: every timing's value, and a line for each one derived from a given value."""

    values: Mapping[str, float | None]
    derived: tuple[str, ...] = ()


def resolve(
    given: Mapping[str, object],
    *,
    spell: Callable[[str], str] = _keyword,
    rotation_off: str = "None",
) -> Resolved:
    """Every timing of a stream from the ones the caller gave (`given`: name -> value; a name left out, or
    given as None, was not given, except `rotate_after`, where None turns rotation off).

    Raises ConfigurationError for a value of the wrong kind and for a contradiction between given values,
    naming each option as `spell(name)` (`--idle-timeout` for `watch`, say) and how rotation is turned off
    as `rotation_off`. The rules, and why each default is derived as it is, are docs/client.md's table.
    """
    unknown = sorted(set(given) - set(TIMINGS))
    if unknown:  # a caller's bug, not a user's
        raise TypeError(f"resolve() got an unknown timing {unknown[0]!r}")
    explicit: dict[str, float | None] = {}
    for name in TIMINGS:
        if name not in given or (given[name] is None and name != "rotate_after"):
            continue
        explicit[name] = _checked(name, given[name], spell, rotation_off)
    return _Settler(explicit, spell).settle()


def _checked(name: str, value: object, spell: Callable[[str], str], rotation_off: str) -> float | None:
    """`value` if `name` can take it (its type in `StreamOptions`), else a ConfigurationError naming
    `spell(name)` in the words the type declares."""
    declared = _TIMING_TYPES[name]
    try:
        msgspec.convert(value, declared)
    except msgspec.ValidationError:
        words = wording(declared) or Wording("be a number of seconds")
        if name == "rotate_after":
            words = words._replace(words=f"{words.words} ({rotation_off} turns rotation off)")
        raise ConfigurationError(words.refuse(spell(name), value)) from None
    return cast("float | None", value)


class _Settler:
    """One `resolve` call: the given values, and the rules applied to them in order."""

    def __init__(self, explicit: dict[str, float | None], spell: Callable[[str], str]) -> None:
        self.explicit = explicit
        self.spell = spell
        self.values: dict[str, float | None] = {}
        self.derived: list[str] = []

    def settle(self) -> Resolved:
        self._heartbeat()
        self._sub_timeout()
        self._keepalive()
        self._backoff()
        self._rotation()
        for name in ("close_timeout", "request_timeout"):  # no rule ties these to anything else
            self.values[name] = self._given(name)
        return Resolved(values={name: self.values[name] for name in TIMINGS}, derived=tuple(self.derived))

    # --- the rules: both of a pair given -> checked; one given -> the other fits it; none -> defaults ----

    def _heartbeat(self) -> None:
        ping, idle = self.explicit.get("ping_interval"), self.explicit.get("idle_timeout")
        if ping is not None and idle is not None and not idle > ping:
            raise ConfigurationError(
                f"{self._shown('idle_timeout', idle)} must exceed {self._shown('ping_interval', ping)}: "
                "the pong of a ping is what proves a quiet connection alive (give one of the two and the "
                "other is derived from it)"
            )
        if ping is None and idle is not None:
            ping = self._derive(
                "ping_interval",
                min(DEFAULTS["ping_interval"], idle / PONG_MARGIN),
                "idle_timeout",
                f"{self.spell('idle_timeout')} / {PONG_MARGIN:g}, at most {DEFAULTS['ping_interval']:g}s",
            )
        elif idle is None and ping is not None:
            idle = self._derive(
                "idle_timeout",
                max(DEFAULTS["idle_timeout"], ping * PONG_MARGIN),
                "ping_interval",
                f"{self.spell('ping_interval')} * {PONG_MARGIN:g}, at least {DEFAULTS['idle_timeout']:g}s",
            )
        self.values["ping_interval"] = ping if ping is not None else DEFAULTS["ping_interval"]
        self.values["idle_timeout"] = idle if idle is not None else DEFAULTS["idle_timeout"]

    def _sub_timeout(self) -> None:
        # Never a contradiction (the sub wait and the idle clock run side by side, and whichever ends first
        # names itself in the reason); the default just never waits for a sub longer than for silence.
        if "sub_timeout" in self.explicit:
            self.values["sub_timeout"] = self.explicit["sub_timeout"]
        else:
            self.values["sub_timeout"] = self._derive(
                "sub_timeout",
                min(DEFAULTS["sub_timeout"], self._value("idle_timeout")),
                "idle_timeout",
                f"never longer than {self.spell('idle_timeout')}",
            )

    def _keepalive(self) -> None:
        # The other side of this rule is the exchange's, not an option: nothing to derive, only to check.
        keepalive = self._given("keepalive_interval")
        if not keepalive < LISTEN_KEY_VALIDITY:
            raise ConfigurationError(
                f"{self._shown('keepalive_interval', keepalive)} must be shorter than the listenKey's "
                f"validity ({LISTEN_KEY_VALIDITY:g}s)"
            )
        self.values["keepalive_interval"] = keepalive

    def _backoff(self) -> None:
        base, cap = self.explicit.get("backoff_base"), self.explicit.get("backoff_cap")
        if base is not None and cap is not None and not cap >= base:
            raise ConfigurationError(
                f"{self._shown('backoff_cap', cap)} must be at least {self._shown('backoff_base', base)}"
            )
        if cap is None and base is not None:
            cap = self._derive(
                "backoff_cap",
                max(DEFAULTS["backoff_cap"], base),
                "backoff_base",
                f"never below {self.spell('backoff_base')}",
            )
        elif base is None and cap is not None:
            base = self._derive(
                "backoff_base",
                min(DEFAULTS["backoff_base"], cap),
                "backoff_cap",
                f"never above {self.spell('backoff_cap')}",
            )
        self.values["backoff_base"] = base if base is not None else DEFAULTS["backoff_base"]
        self.values["backoff_cap"] = cap if cap is not None else DEFAULTS["backoff_cap"]

    def _rotation(self) -> None:
        # rotate_after is never derived: its default is set by the exchanges' 24-hour cut, and a later
        # rotation would come after the cut. What depends on it fits under it.
        rotate = (
            self.explicit["rotate_after"] if "rotate_after" in self.explicit else DEFAULTS["rotate_after"]
        )
        self.values["rotate_after"] = rotate
        for name, why in (
            ("overlap_timeout", "a rotation's hand-over would last until the next rotation is due"),
            (
                "stable_after",
                "every connection would be rotated before it counted as stable, so the reconnect backoff "
                "would never start over",
            ),
        ):
            value = self.explicit.get(name)
            if value is not None and rotate is not None and not value < rotate:
                raise ConfigurationError(
                    f"{self._shown(name, value)} must be shorter than {self._shown('rotate_after', rotate)}: "
                    f"{why}"
                )
            if value is None and rotate is not None:
                value = self._derive(
                    name,
                    min(DEFAULTS[name], rotate / 2),
                    "rotate_after",
                    f"at most half of {self.spell('rotate_after')}",
                )
            self.values[name] = value if value is not None else DEFAULTS[name]

    # --- helpers --------------------------------------------------------------------------------------

    def _given(self, name: str) -> float:
        """The given value of an option that is never derived, else its default."""
        value = self.explicit.get(name)
        return value if value is not None else DEFAULTS[name]

    def _value(self, name: str) -> float:
        """The settled value of an option settled earlier (never None)."""
        value = self.values[name]
        assert value is not None  # noqa: S101 - only rotate_after can be None, and it is never asked
        return value

    def _shown(self, name: str, value: float) -> str:
        """`--idle-timeout (30s)` for a given value, `--rotate-after (84600s by default)` for another."""
        if name in self.explicit:
            return f"{self.spell(name)} ({value:g}s)"
        return f"{self.spell(name)} ({value:g}s by default)"

    def _derive(self, name: str, value: float, source: str, rule: str) -> float:
        """`value` for the option `name` the caller did not give, fitted to `source`; noted when it is not
        the default."""
        if value != DEFAULTS[name]:
            settled = self.values[source] if source in self.values else self.explicit[source]
            assert settled is not None  # noqa: S101 - nothing is derived from a rotation turned off
            self.derived.append(
                f"{self.spell(name)} {value:g}s, derived from {self._shown(source, settled)}: {rule}"
            )
        return value


class StreamOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, dict=True):
    """Every timing and limit of a stream, in seconds where a duration. Validated once, immutable.

    The one definition of the options: each field's type declares its constraint and how a value that
    breaks it is refused (`validation.check_fields`), and its default is the documented one. Built by
    keyword (`StreamOptions(idle_timeout=30)`, `connect()`) or by `msgspec.convert` from a config table (the
    gateway); either way `__post_init__` settles and checks it.

    A timing left out (or given as None) takes its documented default when that fits the timings given,
    and otherwise a value derived from them (`resolve`, docs/client.md): `StreamOptions(idle_timeout=30)`
    pings every 20 s. After construction every timing is a number; `derived` says, one line each, which
    were derived from given values. A contradiction between given values is a ConfigurationError naming
    both. The defaults follow the documents: Bitmusa's listenKey lives 60 min (keepalive at 30), Coinlocally
    wants a ping every 30 s and drops a client after 40 s of silence, both exchanges cut connections at 24 h
    (rotation at 23 h 30 min leaves half an hour to overlap safely). `rotate_after=None` disables rotation.
    `msgspec.structs.replace()` works and takes every timing of the original as given (each is a number by
    then); to change one timing and have the others fit it again, build a new `StreamOptions`.
    `rng` and `on_frame` are neither compared nor shown.
    """

    account: str = "default"
    keepalive_interval: Seconds = NOT_GIVEN
    ping_interval: Seconds = NOT_GIVEN
    idle_timeout: Seconds = NOT_GIVEN
    rotate_after: Seconds | None = DEFAULTS["rotate_after"]
    sub_timeout: Seconds = NOT_GIVEN
    queue_size: Count = 10_000
    #: the queue's bound in bytes besides events (docs/reliability.md, "Memory")
    queue_bytes: Count = DEFAULT_QUEUE_BYTES
    overflow: Overflow = Overflow.BLOCK
    backoff_base: Seconds = NOT_GIVEN
    backoff_cap: Seconds = NOT_GIVEN
    stable_after: SecondsOrZero = NOT_GIVEN
    auth_attempts: Count = 3
    overlap_timeout: Seconds = NOT_GIVEN
    close_timeout: Seconds = NOT_GIVEN
    request_timeout: Seconds = NOT_GIVEN
    verify_tls: bool = True
    ca_file: _CaFile | None = None  # a PEM bundle of CA certificates trusted besides the system's (tls.py)
    close_key_on_exit: bool = False
    max_frame: Count = DEFAULT_MAX_FRAME
    quotes: tuple[str, ...] | None = None
    rng: Callable[[], float] | None = None
    #: called with (receive time, raw frame, connection serial) for every frame, before parsing
    on_frame: FrameHook | None = None
    #: after an unplanned reconnect, correct the delivered picture from a REST snapshot (client/resync.py)
    resync: bool = True
    snapshot_symbols: tuple[str, ...] = ()  # symbols whose open orders a snapshot lists besides those held
    initial_snapshot: bool = False  # also resync once the first connection is live
    #: seconds between two WARNINGs about unusable frames of one kind on a connection (frame_warnings.py)
    warning_interval: Seconds = DEFAULT_WARNING_INTERVAL
    #: also yield the `Fill`s each order update reveals, right after it (client/delivered.py)
    fills: bool = False
    #: fold every event taken into the delivered picture (`UserStream.balances()`, `open_orders()`)
    picture: bool = True

    def __post_init__(self) -> None:
        given: dict[str, object] = {
            name: getattr(self, name) for name in TIMINGS if getattr(self, name) is not None
        }
        if self.rotate_after == DEFAULTS["rotate_after"]:
            del given["rotate_after"]  # the default itself reads "84600s by default" in refusals
        elif self.rotate_after is None:
            given["rotate_after"] = None  # rotation turned off
        resolved = resolve(given)
        for name, timing in resolved.values.items():
            _FIELDS[name].__set__(self, timing)  # frozen: the one place a field is written
        self.__dict__["derived"] = resolved.derived
        check_fields(self, skip=_SETTLED)
        symbols: object = self.snapshot_symbols  # typed a tuple, but a caller may pass anything
        if not isinstance(symbols, tuple) or not all(
            isinstance(symbol, str) and symbol and symbol.isprintable() for symbol in symbols
        ):
            raise ConfigurationError("snapshot_symbols must be a sequence of symbols such as ['BTC/USDT']")
        if not isinstance(self.account, str) or not self.account:
            raise ConfigurationError("account must be a non-empty label")
        self.tls_policy()  # a CA bundle that cannot be read is refused here, before anything connects

    @property
    def derived(self) -> tuple[str, ...]:
        """How each timing the caller did not give was derived from those given (only where it is not the
        default), one line each: `connect()` logs them at INFO."""
        derived: tuple[str, ...] = self.__dict__["derived"]
        return derived

    def __copy__(self) -> StreamOptions:
        return self  # immutable; msgspec's own copy would leave `derived` behind

    def __deepcopy__(self, memo: dict[int, object]) -> StreamOptions:
        return self

    def _compared(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in _COMPARED)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StreamOptions) or type(other) is not type(self):
            return NotImplemented
        return self._compared() == other._compared()

    def __hash__(self) -> int:
        return hash(self._compared())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in _COMPARED)
        return f"{type(self).__name__}({shown})"

    def tls_policy(self) -> TlsPolicy:
        return TlsPolicy(verify=self.verify_tls, ca_file=self.ca_file)

    def make_backoff(self) -> Backoff:
        return Backoff(
            base=self.backoff_base,
            cap=self.backoff_cap,
            stable_after=self.stable_after,
            rng=self.rng,
        )


#: The fields' descriptors: how `__post_init__` writes a settled timing into a frozen Struct.
_FIELDS: Final[Mapping[str, Any]] = MappingProxyType({name: vars(StreamOptions)[name] for name in TIMINGS})
#: Checked by `resolve` (with the caller's spelling), not again by `check_fields`.
_SETTLED: Final = frozenset(TIMINGS)
#: Each timing's declared type (its constraint and its wording), as `resolve` checks a given value.
_TIMING_TYPES: Final[Mapping[str, Any]] = MappingProxyType(
    {name: typing.get_type_hints(StreamOptions, include_extras=True)[name] for name in TIMINGS}
)
#: What equality, hashing and the repr consider: every field but the callables.
_COMPARED: Final = tuple(name for name in StreamOptions.__struct_fields__ if name not in ("rng", "on_frame"))


def unlikely_to_work(options: StreamOptions, exchange: Exchange) -> tuple[str, ...]:
    """What the exchange's document says will go wrong with these options, one warning line each.

    Warned (by `connect()`), not refused: the values were given on purpose (a derived or default value never
    lands here), and the document may be stricter than the exchange, or the peer an emulator of the
    caller's own. A keepalive past the listenKey's validity is the exception, refused by `resolve`: the
    stream could never stay up."""
    lines = []
    entry = spec(exchange)
    silence = None if entry.ping_silence_ms is None else entry.ping_silence_ms / 1000
    if silence is not None and not options.ping_interval < silence:
        lines.append(
            f"ping_interval ({options.ping_interval:g}s) is not under the {silence:g}s after "
            f"which {entry.title}'s document says it closes a connection that has not pinged: expect the "
            f"connection closed about every {silence:g}s, each close a gap"
        )
    age = entry.max_connection_age_ms / 1000
    if options.rotate_after is not None and not options.rotate_after < age:
        lines.append(
            f"rotate_after ({options.rotate_after:g}s) is not under the exchanges' 24-hour connection limit "
            f"({age:g}s): every connection will be cut before it is rotated, each cut a gap"
        )
    return tuple(lines)
