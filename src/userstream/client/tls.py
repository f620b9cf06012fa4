"""TLS for the client's connections: one policy, one SSL context, and a loud warning when verification is off.

This module owns how the client trusts a server: `TlsPolicy` is built once per stream from `verify_tls`
and `ca_file`, checks them (a CA bundle that cannot be read, or one given while verification is off, is a
`ConfigurationError` before anything connects), and builds the `ssl.SSLContext` every HTTPS request and
every `wss://` WebSocket of the stream uses, whatever library carries the socket (aiohttp, picows). The
rules:

- verification is on by default: the system's trust store, hostname checked, TLS 1.2 at least;
- `ca_file` adds a PEM bundle of extra trusted certificates (a private exchange emulator, a corporate
  proxy) to the system's, and never weakens anything;
- verification off takes an explicit `verify_tls=False` (`--insecure-no-verify` on the command line), and
  then every connection logs a WARNING (`insecure_warning`), so it cannot be left on unnoticed.

It opens no socket and never sees a credential.
"""

from __future__ import annotations

import functools
import logging
import ssl
from dataclasses import dataclass, field

from userstream.errors import ConfigurationError

__all__ = ["INSECURE_WARNING", "TlsPolicy", "uses_tls"]

_log = logging.getLogger("userstream.client.tls")

#: The warning logged at every connection made with verification off (the label names the endpoint).
INSECURE_WARNING = (
    "TLS certificate verification is OFF for %s (verify_tls=False / --insecure-no-verify): the connection "
    "is encrypted but the server is not authenticated, so anyone on the path can read and change it"
)


def uses_tls(url: str) -> bool:
    """Whether `url` is a TLS endpoint (https:// or wss://)."""
    scheme = url.partition(":")[0].lower()
    return scheme in ("https", "wss")


@dataclass(frozen=True, slots=True)
class TlsPolicy:
    """How a stream's connections verify the server. `context()` is the SSL context to connect with."""

    verify: bool = True
    ca_file: str | None = None
    _context: ssl.SSLContext | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.verify, bool):
            raise ConfigurationError(f"verify_tls must be True or False, not {self.verify!r}")
        if self.ca_file is not None:
            if not isinstance(self.ca_file, str) or not self.ca_file:
                raise ConfigurationError("ca_file must be the path of a PEM file of CA certificates")
            if not self.verify:
                raise ConfigurationError(
                    "ca_file adds trusted certificates, which verify_tls=False would ignore: pass one or the "
                    "other"
                )
        # A CA bundle is loaded now, so a bad one is refused before anything connects. The two plain
        # policies (verify on with the system's store, or off) share one context per process, made at the
        # first TLS connection: a context holds the whole system trust store (~0.8 MiB and ~0.1 s to load
        # on the reference machine), too much to build per stream in a process of hundreds of accounts,
        # and a ws:// stream never needs one (docs/performance.md).
        object.__setattr__(
            self, "_context", None if self.ca_file is None else _build(self.verify, self.ca_file)
        )

    def context(self) -> ssl.SSLContext:
        """The SSL context of every TLS connection of the stream (built once, shared)."""
        if self._context is not None:
            return self._context
        return _shared_context(self.verify)

    def before_connect(self, url: str, label: str) -> None:
        """Called before each connection to `url`: with verification off, say so loudly, every time."""
        if not self.verify and uses_tls(url):
            _log.warning(INSECURE_WARNING, label)


@functools.cache
def _shared_context(verify: bool) -> ssl.SSLContext:
    """The context of the policies without a CA bundle, one per process for each `verify` (an SSLContext
    is meant to be shared by many connections)."""
    return _build(verify, None)


def _build(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    if not verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=ca_file)
        except FileNotFoundError:
            raise ConfigurationError(f"ca_file {ca_file!r} does not exist") from None
        except ssl.SSLError:  # an OSError too: caught first
            raise ConfigurationError(
                f"ca_file {ca_file!r} holds no PEM certificate that can be loaded"
            ) from None
        except OSError as exc:
            raise ConfigurationError(f"ca_file {ca_file!r} cannot be read: {exc.strerror}") from None
    return context
