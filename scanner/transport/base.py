"""The seam between the engine and the network: answers, back-pressure and the transport shape.

Rules and theory:
- A transport starts one probe attempt at a time with :meth:`Transport.send` and reports
  how it ended through the ``deliver`` callback it was opened with. It never times
  anything out: the engine owns time, and calls :meth:`Transport.cancel` when it gives up.
- Errors of the local machine that say nothing about the port (out of file descriptors,
  out of ephemeral ports) raise :class:`Backpressure`, so that the engine sends the probe
  again later instead of recording a false state.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from scanner.models import PortState, Proto, Reason

# File descriptors kept free for the process itself (output files, DNS, stdio, epoll), by
# the engine and by evidence probing alike.
FD_RESERVE = 32


@dataclass(frozen=True, slots=True)
class Answer:
    """What one probe attempt established about a port.

    ``measured`` marks an answer that :meth:`Transport.send` returns at once but that came
    from the network (a reply already in when the send returned): its round trip is real
    and is timed. Any other answer returned at once is local (no route, a local firewall)
    and has no round trip. It takes no part in equality.
    """

    state: PortState
    reason: Reason
    measured: bool = field(default=False, compare=False)


class Backpressure(Exception):
    """The local machine is out of a resource (``errno``); send the probe again later.

    ``descriptors`` is true when the resource is file descriptors, so that the engine lowers
    its concurrency rather than only waiting.
    """

    def __init__(self, err: int) -> None:
        super().__init__(errno.errorcode.get(err, str(err)))
        self.errno = err
        self.descriptors = err in (errno.EMFILE, errno.ENFILE)


Deliver = Callable[[object, "Answer | None"], None]
"""``deliver(key, answer)``: how a transport reports that an attempt has ended.

``answer`` is None when the attempt failed for a local reason (:class:`Backpressure`) and
must be sent again without counting as a try.
"""


class Transport(Protocol):
    """The seam between the engine and the network.

    ``send`` either returns an :class:`Answer` at once (the outcome was known without
    waiting; ``measured`` if a reply had already come back) or returns an opaque handle and
    later calls ``deliver(key, answer)`` exactly once, unless the engine cancels the handle
    first.
    """

    protocol: Proto

    def open(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        """Attach to ``loop``; ``deliver`` receives the answers of later sends."""

    def send(self, key: object, family: int, address: str, port: int) -> object:
        """Start one attempt; return an :class:`Answer` or a handle for :meth:`cancel`."""

    def cancel(self, handle: object) -> None:
        """Abandon the attempt behind ``handle``; ``deliver`` is not called for it."""

    def flush(self) -> None:
        """Deliver every answer that has already arrived (called before timing out)."""

    def reap(self, handle: object) -> Answer | None:
        """The answer that has arrived for ``handle`` but was not delivered yet, if any.

        Called on an attempt about to time out, after :meth:`flush`; the attempt is then
        cancelled either way. (A transport whose ``flush`` delivers everything returns None.)
        """

    def close(self) -> None:
        """Abandon every attempt and release every resource."""
