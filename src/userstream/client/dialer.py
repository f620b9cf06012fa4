"""The TCP connect of one client WebSocket, kept ours to end: picows' `socket_factory`.

This module owns `Dialer`, which resolves the host, connects to each address in turn (TCP_NODELAY), and
can shut the socket down at any stage (`drop`), so that no connect attempt, however it ends (failed,
cancelled, timed out), keeps a descriptor open (docs/architecture.md, "Notes on picows"). client/websocket.py
makes one per WebSocket it opens.
"""

from __future__ import annotations

import asyncio
import socket
from contextlib import suppress
from typing import Any

__all__ = ["Dialer"]


class Dialer:
    """The TCP connect of one WebSocket (picows' `socket_factory`), so that its socket stays ours to end.

    picows closes its socket when the connect or the upgrade fails, but not when the task waiting for the
    upgrade's answer is cancelled (a stream closed mid-handshake, our own timeout): the socket then stays
    open until picows' handshake timeout, or for good if the event loop ends first (a descriptor per
    cancelled attempt, and a ResourceWarning). `drop()` ends it at once, whatever stage it is in."""

    __slots__ = ("sock",)

    def __init__(self) -> None:
        self.sock: socket.socket | None = None

    async def connect(self, url: Any) -> socket.socket:
        """A socket connected to `url.host`:`url.port`, each resolved address tried in turn (as asyncio's
        `create_connection` does); the last failure if none answers."""
        loop = asyncio.get_running_loop()
        addresses = await loop.getaddrinfo(url.host, url.port, type=socket.SOCK_STREAM)
        failure: OSError = OSError(f"no address for {url.host!r}")
        for family, kind, proto, _, address in addresses:
            sock = socket.socket(family, kind, proto)
            self.sock = sock
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, address)
            except OSError as exc:
                sock.close()
                self.sock = None
                failure = exc
                continue
            except BaseException:
                sock.close()
                self.sock = None
                raise
            if family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        raise failure

    def drop(self) -> None:
        """End the connection now: the transport picows made of the socket sees the end at its next read
        and closes it (a socket still connecting is closed by `connect` itself when it is cancelled)."""
        sock, self.sock = self.sock, None
        if sock is None or sock.fileno() == -1:  # none yet, or already closed by its transport
            return
        with suppress(OSError):  # already reset by the peer: its transport sees that too
            sock.shutdown(socket.SHUT_RDWR)
