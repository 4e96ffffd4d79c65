"""What every part of the engine shares: hosts, counters, attempts, limits and the outbox.

Rules and theory:
- An attempt is one probe in flight; an item is a probe waiting to be sent (again). Both
  are plain slotted objects or tuples: a sweep makes hundreds of thousands of them.
- Final results go into an :class:`Outbox`, which the consumer drains in batches: one
  wake-up per batch, never one per result.
- Concurrency stays below RLIMIT_NOFILE, after raising the soft limit toward the hard one;
  the cap is logged (logger ``scanner``) so the command line can say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import resource
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from typing import Protocol as TypingProtocol

from scanner.models import Port, Proto, make_result
from scanner.transport import FD_RESERVE, TcpConnectTransport, Transport, UdpTransport

log = logging.getLogger("scanner")

# Results allowed to wait for the consumer before the engine stops sending.
MAX_BUFFERED = 8192
#: The collector's threshold for young objects while a scan runs (Python's default: 700).
GC_YOUNG = 70_000

T = TypeVar("T")


class HostLike(TypingProtocol):
    """A scanned host as the engine needs it (``scanner.targets.Host`` fits)."""

    @property
    def address(self) -> str: ...
    @property
    def family(self) -> int: ...
    @property
    def hostname(self) -> str | None: ...


class HostTable(TypingProtocol):
    """Hosts addressable by index (``scanner.targets.TargetSet`` fits)."""

    @property
    def size(self) -> int:
        """How many hosts (may exceed ``sys.maxsize``, so not ``len``)."""
        ...

    def host(self, index: int) -> HostLike: ...


class HostCache:
    """``hosts.host(index)``, remembered for the hosts in use (a bounded cache).

    The hot path reads ``cache`` (index -> host) first, and calls only on a miss.
    """

    __slots__ = ("_table", "cache")
    LIMIT = 65536

    def __init__(self, table: HostTable) -> None:
        self._table = table
        self.cache: dict[int, HostLike] = {}

    def __call__(self, index: int) -> HostLike:
        cache = self.cache
        host = cache.get(index)
        if host is None:
            if len(cache) >= self.LIMIT:
                cache.clear()
            host = cache[index] = self._table.host(index)
        return host


@contextlib.contextmanager
def rare_collections() -> Iterator[None]:
    """Run Python's cyclic garbage collector rarely, and over new objects only, meanwhile.

    A scan makes objects by the hundred thousand (attempts, tuples, results, report rows)
    that die by reference counting and form no cycles worth finding early; the collector,
    run every 700 of them, mostly walked the long-lived objects (modules, the registry, a
    worker's inheritance from its parent) again and again: a tenth of a sweep's CPU, a
    fifth of the parent's with ``--all``. What lives on entry is frozen out of it
    (``gc.freeze``), and it runs a hundred times less often. Both are undone on leaving
    (tests run many scans in one process).
    """
    gc.freeze()
    threshold = gc.get_threshold()
    gc.set_threshold(max(GC_YOUNG, threshold[0]), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


@dataclass(slots=True)
class ScanStats:
    """Counters of a scan, readable while it runs (for progress) and after it."""

    total: int = 0
    done: int = 0
    sent: int = 0
    retransmitted: int = 0
    deferred: int = 0
    concurrency: int = 0
    paced_hosts: int = 0
    started: float = field(default_factory=time.time)
    finished: float | None = None
    interrupted: bool = False


def fit_concurrency(requested: int, reserve: int = FD_RESERVE) -> int:
    """Return the concurrency the descriptor limit allows, raising the soft limit if needed.

    Logs a warning when the requested concurrency must be lowered.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = requested + reserve
    if soft != resource.RLIM_INFINITY and soft < wanted:
        ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
            soft = ceiling
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return requested
    allowed = max(1, soft - reserve)
    log.warning(
        "concurrency lowered from %d to %d: the open-file limit is %d (raise it with ulimit -n)",
        requested,
        allowed,
        soft,
    )
    return allowed


def ports_of(ports: Sequence[int | Port]) -> tuple[Port, ...]:
    """Ports as :class:`Port` (a bare number is TCP), in the given order."""
    # (tuple.__new__ skips the namedtuple's Python-level __new__: a third of the cost
    # for 65,535 ports.)
    make, tcp = tuple.__new__, Proto.TCP
    return tuple(p if type(p) is Port else make(Port, (tcp, p)) for p in ports)


def transports_for(
    given: Transport | Sequence[Transport] | None, ports: Sequence[Port]
) -> dict[Proto, Transport]:
    """One transport per protocol the ports use: the given ones, else the defaults."""
    if given is None:
        listed: Sequence[Transport] = ()
    elif isinstance(given, Sequence):
        listed = given
    else:
        listed = (given,)
    transports = {t.protocol: t for t in listed}
    defaults: dict[Proto, Callable[[], Transport]] = {
        Proto.TCP: TcpConnectTransport, Proto.UDP: UdpTransport
    }  # fmt: skip
    for protocol in {port.protocol for port in ports}:
        if protocol not in transports:
            if given is not None:
                raise ValueError(f"no transport given for {protocol.value} ports")
            transports[protocol] = defaults[protocol]()
    if not transports:
        transports[Proto.TCP] = TcpConnectTransport()
    return transports


#: ``new_result(host, port, protocol, state, reason, hostname, rtt, tries, timestamp)``:
#: a :class:`Result` (with no assessment), made fast: :data:`scanner.models.make_result`.
new_result = make_result


class Attempt:
    """One probe in flight.

    ``tries`` counts every probe of the port sent so far, this one included; ``silences``
    the timeouts before it that proved the port silent (for TCP, every timeout does).
    """

    __slots__ = (
        "deadline",
        "deferrals",
        "handle",
        "host",
        "live",
        "paced",
        "port",
        "sent",
        "silences",
        "target",
        "tries",
    )

    def __init__(
        self,
        host: int,
        target: HostLike,
        port: Port,
        tries: int,
        deferrals: int,
        silences: int,
        sent: float,
        paced: bool,
    ) -> None:
        self.host = host
        self.target = target
        self.port = port
        self.tries = tries
        self.deferrals = deferrals
        self.silences = silences
        self.sent = sent
        self.paced = paced
        self.deadline = 0.0
        self.handle: object = None
        self.live = True


# A probe waiting to be sent: (host index, port, tries already made, deferrals so far,
# silences so far).
Item = tuple[int, Port, int, int, int]


class Outbox(Generic[T]):
    """Final results waiting for the consumer, who takes them in batches.

    Producers append to ``items`` and call :meth:`wake`; :meth:`batches` yields the list
    whole and starts a new one.
    """

    __slots__ = ("_waiter", "items")

    def __init__(self) -> None:
        self.items: list[T] = []
        self._waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        """Let a consumer waiting in :meth:`batches` look again."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def batches(
        self, finished: Callable[[], bool], taken: Callable[[], None]
    ) -> AsyncIterator[list[T]]:
        """Yield what has come, batch by batch, until ``finished()`` and nothing is left.

        ``taken()`` runs after each batch the consumer has handled (to send more).
        """
        loop = asyncio.get_running_loop()
        while True:
            if self.items:
                batch, self.items = self.items, []
                yield batch
                taken()
            elif finished():
                return
            else:
                self._waiter = loop.create_future()
                await self._waiter
                self._waiter = None
