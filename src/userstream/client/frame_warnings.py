"""Rate-limited warnings about the frames one connection could not use: never silent, never a flood.

This module owns `FrameWarnings`, which one `Connection` keeps for its life. Every frame the parser returned
as `Unknown` is logged at DEBUG with its reason (the detail, as before). At WARNING, per kind (`undecodable`,
`malformed`, `unknown`: `protocol.messages.UnknownKind`): the first frame of the kind on the connection is
reported with its reason; later ones are counted, and the count is reported (with the latest reason) once
`interval` seconds have passed since the kind's last WARNING, then at most once per `interval`; whatever is
still counted when the connection ends is reported then. So a server that sends nothing but garbage shows on
stderr at the default level, with a bounded number of lines (docs/client.md, "Frames the client refuses").

Time is an input (`now`, the connection's monotonic clock); `next_report_at` tells the connection's
heartbeat task when to wake to report a count that no new frame will trigger. No task, no I/O but the log.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from userstream.protocol.messages import Unknown, UnknownKind

__all__ = ["DEFAULT_WARNING_INTERVAL", "FrameWarnings"]

_log = logging.getLogger("userstream.client")

#: Seconds between two WARNINGs about frames of one kind on one connection.
DEFAULT_WARNING_INTERVAL = 60.0

# What happened to a frame of each kind, as the warning says it.
_FATE: dict[UnknownKind, str] = {
    UnknownKind.UNDECODABLE: "refused",
    UnknownKind.MALFORMED: "refused",
    UnknownKind.UNKNOWN: "ignored",
}


@dataclass(slots=True)
class _Kind:
    """One kind's count since its last WARNING."""

    warned_at: float  # when its last WARNING was logged
    count: int = 0  # frames since then
    latest: str = ""  # the reason of the latest of them


class FrameWarnings:
    """One connection's warnings about `Unknown` frames. `name` starts every line (say
    "bitmusa/alice connection=3"), `interval` is the seconds between two WARNINGs of one kind."""

    __slots__ = ("_interval", "_kinds", "name", "next_report_at")

    def __init__(self, name: str, interval: float = DEFAULT_WARNING_INTERVAL) -> None:
        if not interval > 0:
            raise ValueError(f"the warning interval must be positive, not {interval!r}")
        self.name = name
        self._interval = interval
        self._kinds: dict[UnknownKind, _Kind] = {}
        #: The earliest time a count is due to be reported (inf: nothing counted).
        self.next_report_at = math.inf

    def frame(self, incoming: Unknown, now: float) -> bool:
        """Report one unusable frame; True when it made `next_report_at` earlier (wake the heartbeat)."""
        kind = incoming.kind
        _log.debug("%s: %s frame %s: %s", self.name, kind.value, _FATE[kind], incoming.reason)
        state = self._kinds.get(kind)
        if state is None:
            self._kinds[kind] = _Kind(warned_at=now)
            _log.warning(
                "%s: %s frame %s: %s (more %s frames on this connection: a count at most every %gs, "
                "each at DEBUG)",
                self.name,
                kind.value,
                _FATE[kind],
                incoming.reason,
                kind.value,
                self._interval,
            )
            return False
        state.count += 1
        state.latest = incoming.reason
        if now >= state.warned_at + self._interval:
            self._report(kind, state, now, "")
            return False
        due = state.warned_at + self._interval
        if due < self.next_report_at:
            self.next_report_at = due
            return True
        return False

    def poll(self, now: float) -> None:
        """Report every count that is due at `now`."""
        if now < self.next_report_at:
            return
        for kind, state in self._kinds.items():
            if state.count and now >= state.warned_at + self._interval:
                self._report(kind, state, now, "")

    def close(self, now: float) -> None:
        """The connection ended: report every count not reported yet."""
        for kind, state in self._kinds.items():
            if state.count:
                self._report(kind, state, now, " before the connection ended")

    def _report(self, kind: UnknownKind, state: _Kind, now: float, when: str) -> None:
        _log.warning(
            "%s: %d more %s frame%s %s in the last %.1fs%s (latest: %s)",
            self.name,
            state.count,
            kind.value,
            "" if state.count == 1 else "s",
            _FATE[kind],
            now - state.warned_at,
            when,
            state.latest,
        )
        state.warned_at = now
        state.count = 0
        self.next_report_at = min(
            (other.warned_at + self._interval for other in self._kinds.values() if other.count),
            default=math.inf,
        )
