"""A scripted transport for engine tests: no sockets, answers on the event loop's clock."""

from __future__ import annotations

import asyncio
import socket
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from scanner.models import PortState, Proto, Reason
from scanner.transport import Answer, Backpressure, Deliver


@dataclass(frozen=True)
class Reply:
    """Answer after ``delay`` seconds (0: at once, from ``send``)."""

    answer: Answer
    delay: float = 0.0


@dataclass(frozen=True)
class Silence:
    """Never answer."""


@dataclass(frozen=True)
class Refuse:
    """Raise Backpressure(errno) from ``send``."""

    errno: int


@dataclass(frozen=True)
class Queued:
    """The answer has arrived but is only delivered when the engine calls ``flush``."""

    answer: Answer


Step = Reply | Silence | Refuse | Queued


@dataclass
class Host:
    address: str
    family: int = socket.AF_INET
    hostname: str | None = None


class Hosts:
    """A HostTable over a plain list of addresses."""

    def __init__(self, *addresses: str) -> None:
        self._hosts = [Host(a, socket.AF_INET6 if ":" in a else socket.AF_INET) for a in addresses]

    @property
    def size(self) -> int:
        return len(self._hosts)

    def host(self, index: int) -> Host:
        return self._hosts[index]


@dataclass
class FakeTransport:
    """Plays ``script[(address, port)]`` one step per attempt (the last step repeats).

    Ports with no script get ``default``. Records every send, cancel and the most
    attempts in flight at once.
    """

    script: dict[tuple[str, int], list[Step]] = field(default_factory=dict)
    default: Step = field(default_factory=Silence)
    protocol: Proto = Proto.TCP
    sends: list[tuple[str, int, float]] = field(default_factory=list)
    cancels: int = 0
    max_inflight: int = 0
    closed: bool = False
    on_send: Callable[[int], None] | None = None

    def __post_init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deliver: Deliver | None = None
        self._attempts: dict[tuple[str, int], int] = defaultdict(int)
        self._inflight: dict[int, asyncio.TimerHandle | None] = {}
        self._queued: list[tuple[int, object, Answer]] = []
        self._next = 0

    def open(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        self._loop, self._deliver = loop, deliver

    def send(self, key: object, family: int, address: str, port: int) -> object:
        assert self._loop is not None and self._deliver is not None
        steps = self.script.get((address, port), [self.default])
        n = self._attempts[address, port]
        step = steps[min(n, len(steps) - 1)]
        if isinstance(step, Refuse):
            raise Backpressure(step.errno)
        self._attempts[address, port] = n + 1
        self.sends.append((address, port, self._loop.time()))
        if self.on_send is not None:
            self.on_send(len(self.sends))
        if isinstance(step, Reply) and step.delay == 0:
            return step.answer
        handle_id = self._next
        self._next += 1
        timer = None
        if isinstance(step, Reply):
            timer = self._loop.call_later(step.delay, self._answer, handle_id, key, step.answer)
        elif isinstance(step, Queued):
            self._queued.append((handle_id, key, step.answer))
        self._inflight[handle_id] = timer
        self.max_inflight = max(self.max_inflight, len(self._inflight))
        return handle_id

    def _answer(self, handle_id: int, key: object, answer: Answer) -> None:
        assert self._deliver is not None
        if self._inflight.pop(handle_id, "gone") != "gone":
            self._deliver(key, answer)

    def cancel(self, handle: object) -> None:
        timer = self._inflight.pop(handle, None)  # type: ignore[call-overload]
        self.cancels += 1
        if timer is not None:
            timer.cancel()

    def flush(self) -> None:
        # As the real transport harvests what already arrived: queued answers, and replies
        # whose time has come but whose loop callback has not run yet (a starved loop).
        assert self._deliver is not None and self._loop is not None
        queued, self._queued = self._queued, []
        for handle_id, key, answer in queued:
            self._answer(handle_id, key, answer)
        now = self._loop.time()
        for handle_id, timer in list(self._inflight.items()):
            if timer is not None and timer.when() <= now:
                key, answer = timer._args[1], timer._args[2]  # type: ignore[attr-defined]
                timer.cancel()  # (cancel() clears the handle's arguments)
                self._answer(handle_id, key, answer)

    def reap(self, handle: object) -> Answer | None:
        return None  # flush() delivers everything that has come back

    def close(self) -> None:
        self.closed = True
        for timer in self._inflight.values():
            if timer is not None:
                timer.cancel()
        self._inflight.clear()


@dataclass
class RateLimitedUdpHost:
    """A UDP transport in front of simulated hosts that ration ICMP errors as Linux does.

    Each host has a token bucket (``burst`` tokens, one more per ``interval`` seconds); a
    probe of a closed port reaching a host with a token spends it and draws a
    port-unreachable, one reaching a host without a token is dropped silently. ``ports``
    maps a port to "closed" (the default), "open" (a reply) or "silent". Packets take
    ``delay`` seconds each way. ``drop_first`` ports lose their first probe on the way.
    With ``shared``, all addresses draw on one bucket (several addresses of one machine).
    """

    burst: int = 6
    interval: float = 0.05
    delay: float = 0.001
    ports: dict[int, str] = field(default_factory=dict)
    drop_first: set[int] = field(default_factory=set)
    shared: bool = False
    protocol: Proto = Proto.UDP
    errors_sent: int = 0
    sends: int = 0

    def __post_init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deliver: Deliver | None = None
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, stamp)
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._dropped: set[int] = set()
        self._next = 0

    def open(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        self._loop, self._deliver = loop, deliver

    def send(self, key: object, family: int, address: str, port: int) -> object:
        assert self._loop is not None
        self.sends += 1
        handle = self._next
        self._next += 1
        if port in self.drop_first and port not in self._dropped:
            self._dropped.add(port)
            return handle  # lost on the way: nothing will come back
        self._timers[handle] = self._loop.call_later(
            self.delay, self._arrive, handle, key, address, port
        )
        return handle

    def _token(self, address: str, now: float) -> bool:
        if self.shared:
            address = "*"
        tokens, stamp = self._buckets.get(address, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - stamp) / self.interval)
        if tokens >= 1.0:
            self._buckets[address] = (tokens - 1.0, now)
            return True
        self._buckets[address] = (tokens, now)
        return False

    def _arrive(self, handle: int, key: object, address: str, port: int) -> None:
        assert self._loop is not None
        kind = self.ports.get(port, "closed")
        if kind == "open":
            answer = Answer(PortState.OPEN, Reason.UDP_RESPONSE)
        elif kind == "closed" and self._token(address, self._loop.time()):
            self.errors_sent += 1
            answer = Answer(PortState.CLOSED, Reason.PORT_UNREACH)
        else:
            del self._timers[handle]
            return
        self._timers[handle] = self._loop.call_later(self.delay, self._answer, handle, key, answer)

    def _answer(self, handle: int, key: object, answer: Answer) -> None:
        assert self._deliver is not None
        if self._timers.pop(handle, None) is not None:
            self._deliver(key, answer)

    def cancel(self, handle: object) -> None:
        timer = self._timers.pop(handle, None)  # type: ignore[call-overload]
        if timer is not None:
            timer.cancel()

    def flush(self) -> None:
        pass

    def reap(self, handle: object) -> Answer | None:
        return None

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
