"""The deadlines of the attempts in flight: one heap, one loop timer at the earliest.

Rules and theory:
- No timer per probe: a heap of (deadline, sequence, attempt) and one loop timer set to the
  earliest deadline. An entry is stale once its attempt has ended or its deadline moved;
  stale entries are dropped as they surface, never searched for.
- Most attempts end long before any deadline (a closed port answers in a round trip), so
  an attempt timed by a measured RTT first waits in ``young``, a queue in sending order:
  appending costs nothing, and an attempt that ends there never reaches the heap. Every
  such deadline is at least ``floor`` (the smallest timeout, ``min_rtt_timeout``) after
  its send, so the timer also fires when the oldest young attempt is ``floor / 2`` old;
  then every young attempt older than ``floor / 4`` that is still live moves to the heap,
  well before its deadline. The timer thus fires at most every ``floor / 4`` for the
  young, and each deadline is kept exactly.
- Attempts sent before any RTT was measured run under the initial timeout; they are
  re-timed with the first measured one (:meth:`Deadlines.retime`), so that a filtered port
  in the very first batch does not hold the whole scan for the initial timeout.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterator

from scanner.engine.base import Attempt
from scanner.models import Proto

_Entry = tuple[float, int, Attempt]


class Deadlines:
    """Attempts by deadline; ``expire()`` runs when the earliest one is due.

    The sending loop itself appends an attempt timed by a measured RTT (its deadline at
    least ``floor`` after ``attempt.sent``) to ``young``, and pushes any other attempt as
    ``(deadline, next(seq), attempt)`` onto ``heap``, appending those sent under the
    initial timeout to ``provisional`` (the hot path: :meth:`add` does the same with a
    call).
    """

    __slots__ = (
        "_expire", "_timer", "_when", "floor", "heap", "loop", "provisional", "seq", "young",
    )  # fmt: skip

    def __init__(self, expire: Callable[[], None], floor: float) -> None:
        if not floor > 0:
            raise ValueError("floor must be positive")
        self._expire = expire
        self.floor = floor
        self.loop: asyncio.AbstractEventLoop | None = None  # set while the scan runs
        self.heap: list[_Entry] = []
        self.young: deque[Attempt] = deque()  # timed by a measured RTT, in sending order
        self.seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._when = float("inf")
        self.provisional: list[Attempt] = []  # sent before any RTT was measured

    def add(self, attempt: Attempt, deadline: float, provisional: bool = False) -> None:
        """Track ``attempt`` until ``deadline`` (``provisional``: under the initial timeout).

        An attempt that is not provisional must have ``deadline >= attempt.sent + floor``.
        """
        attempt.deadline = deadline
        if provisional:
            self.provisional.append(attempt)
            heapq.heappush(self.heap, (deadline, next(self.seq), attempt))
        else:
            self.young.append(attempt)

    def arm(self) -> None:
        """Set the timer to the earliest deadline if it is not set earlier already."""
        when = self._next()
        if when < self._when:
            self._arm(when)

    def rearm(self) -> None:
        """Set the timer to the earliest deadline after :meth:`due` has emptied the head."""
        when = self._next()
        if when < float("inf"):
            self._arm(when)

    def _next(self) -> float:
        """When the timer must fire next: the heap's head, or the oldest young attempt
        half a floor old (infinity: nothing to wait for)."""
        heap, young = self.heap, self.young
        when = heap[0][0] if heap else float("inf")
        if young:
            when = min(when, young[0].sent + self.floor / 2)
        return when

    def _arm(self, when: float) -> None:
        loop = self.loop
        assert loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._on_timer)
        self._when = when

    def _on_timer(self) -> None:
        self._timer = None
        self._when = float("inf")
        self._expire()

    def due(self, now: float) -> Iterator[Attempt]:
        """Take out the live attempts whose deadline is ``now`` or earlier."""
        self.promote(now)
        heap = self.heap
        while heap and (heap[0][0] <= now or _stale(heap[0])):
            entry = heapq.heappop(heap)
            if not _stale(entry):
                yield entry[2]

    def promote(self, now: float) -> None:
        """Move the young attempts older than a quarter floor that are still live to the heap."""
        young, heap, seq, push = self.young, self.heap, self.seq, heapq.heappush
        oldest = now - self.floor / 4
        while young and young[0].sent <= oldest:
            attempt = young.popleft()
            if attempt.live:
                push(heap, (attempt.deadline, next(seq), attempt))

    def retime(self, protocol: Proto, timeout: float) -> None:
        """Give the attempts of ``protocol`` sent under the initial timeout the first
        measured one."""
        heap, others = self.heap, []
        for attempt in self.provisional:
            if attempt.port[0] is not protocol:
                others.append(attempt)
                continue
            deadline = attempt.sent + timeout
            if attempt.live and deadline < attempt.deadline:
                attempt.deadline = deadline  # the old heap entry is now stale
                heapq.heappush(heap, (deadline, next(self.seq), attempt))
        self.provisional = others
        self.arm()

    def close(self) -> None:
        """Cancel the timer and forget every attempt."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.heap.clear()
        self.young.clear()


def _stale(entry: _Entry) -> bool:
    """A heap entry of an attempt that has ended, or whose deadline has since moved."""
    attempt = entry[2]
    return not attempt.live or entry[0] != attempt.deadline
