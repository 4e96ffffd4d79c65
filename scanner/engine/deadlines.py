"""The deadlines of the attempts in flight: one heap, one loop timer at the earliest.

Rules and theory:
- No timer per probe: a heap of (deadline, sequence, attempt) and one loop timer set to the
  earliest deadline. An entry is stale once its attempt has ended or its deadline moved;
  stale entries are dropped as they surface, never searched for.
- Attempts sent before any RTT was measured run under the initial timeout; they are
  re-timed with the first measured one (:meth:`Deadlines.retime`), so that a filtered port
  in the very first batch does not hold the whole scan for the initial timeout.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Iterator

from scanner.engine.base import Attempt
from scanner.models import Proto

_Entry = tuple[float, int, Attempt]


class Deadlines:
    """Attempts by deadline; ``expire()`` runs when the earliest one is due.

    The sending loop pushes ``(deadline, next(seq), attempt)`` onto ``heap`` itself, and
    appends attempts sent under the initial timeout to ``provisional`` (the hot path:
    :meth:`add` does the same with a call).
    """

    __slots__ = ("_expire", "_timer", "_when", "heap", "loop", "provisional", "seq")

    def __init__(self, expire: Callable[[], None]) -> None:
        self._expire = expire
        self.loop: asyncio.AbstractEventLoop | None = None  # set while the scan runs
        self.heap: list[_Entry] = []
        self.seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._when = float("inf")
        self.provisional: list[Attempt] = []  # sent before any RTT was measured

    def add(self, attempt: Attempt, deadline: float, provisional: bool) -> None:
        """Track ``attempt`` until ``deadline`` (``provisional``: under the initial timeout)."""
        attempt.deadline = deadline
        if provisional:
            self.provisional.append(attempt)
        heapq.heappush(self.heap, (deadline, next(self.seq), attempt))

    def arm(self) -> None:
        """Set the timer to the earliest deadline if it is not set earlier already."""
        heap = self.heap
        if heap and heap[0][0] < self._when:
            self._arm(heap[0][0])

    def rearm(self) -> None:
        """Set the timer to the earliest deadline after :meth:`due` has emptied the head."""
        if self.heap:
            self._arm(self.heap[0][0])

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
        heap = self.heap
        while heap and (heap[0][0] <= now or _stale(heap[0])):
            entry = heapq.heappop(heap)
            if not _stale(entry):
                yield entry[2]

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
        if heap and heap[0][0] < self._when:
            self._arm(heap[0][0])

    def close(self) -> None:
        """Cancel the timer and forget every attempt."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.heap.clear()


def _stale(entry: _Entry) -> bool:
    """A heap entry of an attempt that has ended, or whose deadline has since moved."""
    attempt = entry[2]
    return not attempt.live or entry[0] != attempt.deadline
