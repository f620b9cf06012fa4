"""`userstream doctor bitmusa|coinlocally`: what works and what does not, one line per check.

This package owns the checks, their order, their verdicts (OK, WARN, FAIL, SKIP, each with its reason), and
the command around them: `checks` (the vocabulary and the pure judgements), `steps` (the network steps
every exchange shares), `stream` (the checks on an open WebSocket, driven by the exchange's own client
session, `protocol.client_session`, so a stream and the doctor make every protocol decision alike),
`flows` (the order of the checks for each way a stream is opened, from the registry) and `command` (the
CLI). Each check is one step a stream takes, in the order it takes them, so the first FAIL is the step to
fix; a check that cannot run because an earlier one failed is SKIPped and says which.

- `rest reachable`, `ws reachable`: DNS, then a TCP connection to each address in turn.
- `clock skew`: the server's HTTP `Date` header against the local clock (WARN over 1 s, FAIL over 30 s).
- `credentials`: Bitmusa: the listenKey request (POST). The key is left open, never DELETEd: an account
  has one listenKey shared by every client, so a DELETE would cut off every bot on the account.
  Coinlocally: the handshake's credential header and the sub's token were both accepted.
- `ws handshake`: the WebSocket upgrade (Bitmusa with the listenKey; Coinlocally with the header).
- `sub handshake` (Coinlocally): "connect success", then "sub success" for our sub frame.
- `gzip decoding` (Coinlocally): the first binary frame within `frame_wait` gunzips and parses;
  `frame decoding` (Bitmusa): the first frame within `frame_wait` parses. SKIP when none arrives.
- `ping`: a ping's round trip (Coinlocally's {"ping": n}; Bitmusa a WebSocket-protocol ping).

HTTP and WebSocket traffic goes through the client's own `Transport`, so TLS, timeouts and error
conversion are the ones a stream uses; DNS and TCP use asyncio directly, to tell those steps apart. No
output carries a secret: errors are ours (they name credentials, never show them), a listenKey is masked.
"""

from __future__ import annotations

from userstream.ops.doctor.checks import (
    EXIT_INTERRUPTED,
    SKEW_FAIL,
    SKEW_WARN,
    SLOW_ROUND_TRIP,
    Check,
    DoctorOptions,
    Verdict,
    judge_binary_frame,
    judge_clock_skew,
)
from userstream.ops.doctor.command import add_parser, run
from userstream.ops.doctor.flows import diagnose

__all__ = [
    "EXIT_INTERRUPTED",
    "SKEW_FAIL",
    "SKEW_WARN",
    "SLOW_ROUND_TRIP",
    "Check",
    "DoctorOptions",
    "Verdict",
    "add_parser",
    "diagnose",
    "judge_binary_frame",
    "judge_clock_skew",
    "run",
]
