"""TCP streams for evidence probing: connect, bounded reads, and a close with a RST.

Rules and theory:
- Evidence talks to an open port over asyncio streams; the sans-I/O protocols of
  ``scanner.protocols`` say what to write and how to read what comes back.
- :func:`connect` retries errors of this machine (``classify.LOCAL_ERRNOS``: out of
  descriptors, memory or local ports): they say nothing about the port, and giving up
  would lose its evidence silently whenever the scan itself holds most descriptors. The
  caller's timeout bounds the retries.
- Every byte from the network is untrusted: :class:`BoundedReader` never reads past its
  limit in all, whatever the peer sends.
- :func:`abort` closes with a RST (``SO_LINGER`` 0), as the scan's own connects are: the
  peer learns at once, and no TIME_WAIT socket stays behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from scanner.transport.classify import LOCAL_ERRNOS
from scanner.transport.tcp import LINGER_RST

READ_CHUNK = 4096  # bytes asked for per read
RETRY_LOCAL = 0.02  # seconds before connecting again after a local resource error


async def connect(
    address: str, family: int, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a TCP stream to ``address``:``port``, retrying local resource errors.

    Raises OSError for an error of the network (refused, reset, unreachable...).
    """
    while True:
        try:
            return await asyncio.open_connection(address, port, family=family, limit=READ_CHUNK * 2)
        except OSError as exc:
            if exc.errno not in LOCAL_ERRNOS:
                raise
        await asyncio.sleep(RETRY_LOCAL)


def abort(writer: asyncio.StreamWriter) -> None:
    """Close with a RST: the peer learns at once, and no TIME_WAIT socket stays behind."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
    writer.transport.abort()


class BoundedReader:
    """Reads from ``reader``, never more than ``limit`` bytes in all."""

    __slots__ = ("limit", "reader", "total")

    def __init__(self, reader: asyncio.StreamReader, limit: int) -> None:
        self.reader, self.limit, self.total = reader, limit, 0

    @property
    def full(self) -> bool:
        """Whether the limit has been read."""
        return self.total >= self.limit

    async def read(self, size: int = READ_CHUNK) -> bytes:
        """At most ``size`` bytes, and never past the limit; ``b""`` at EOF or once full."""
        want = min(size, self.limit - self.total)
        if want <= 0:
            return b""
        chunk = await self.reader.read(want)
        self.total += len(chunk)
        return chunk
