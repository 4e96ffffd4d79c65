"""UDP pacing: each host's probes at the pace of its ICMP error budget (``scanner.pacing``).

Rules and theory:
- Probes go out unpaced until a host both answers with ICMP errors and leaves a probe
  unanswered; from then on its UDP probes wait in a queue of its own and are released at
  the pace its inferred token bucket allows.
- A paced host's silence counts as a try only if the model says it had a token for the
  probe, by its own errors and by those of its /24 or /64 pooled (in case several
  addresses share one bucket); otherwise the port is probed again later. A host that sent
  no error is judged by its neighbours' alone.
- Hosts' queues are served side by side, so every host's budget is spent at once. The
  fast mode (``defeat_icmp_ratelimit``) does none of this: the sweep makes unanswered
  ports ``closed|filtered``.
- This module only keeps the books and says when a host is due; the sweep
  (``engine.core``) sends, and calls back here.
"""

from __future__ import annotations

import asyncio
import heapq
import ipaddress
from collections import deque
from collections.abc import Callable

from scanner.engine.base import Attempt, HostCache, Item, ScanStats, log
from scanner.engine.rtt import RttTable
from scanner.pacing import DEFAULT_INTERVAL, IcmpBudget
from scanner.transport import ICMP_REASONS, Answer

# UDP probes held in paced hosts' queues before the engine stops drawing from the plan.
MAX_PARKED = 65536
# Probes in flight to one paced host at once.
MAX_OUTSTANDING = 16
# A paced port probed this many times without a silence that proves anything counts the
# next silence anyway, so that a scan always ends. The model proves silences within about
# a second of the last ICMP error of a family, so this only bounds pathological cases:
# low enough a cap would call closed ports of addresses sharing one bucket silent.
MAX_FREE = 1000
# ICMP errors remembered per host before it is paced (the first volley sizes its bucket).
MAX_EARLY_ERRORS = 64
# Slack when judging whether a probe met a token: timer and scheduling noise, in seconds.
PACE_JITTER = 0.004


class PacedHost:
    """A host whose UDP probes wait for its ICMP budget."""

    __slots__ = ("budget", "last", "outstanding", "queue", "release")

    def __init__(self, budget: IcmpBudget) -> None:
        self.budget = budget
        self.queue: deque[Item] = deque()
        self.outstanding = 0
        self.last = -float("inf")
        self.release: float | None = None  # when it is due in the ready heap, if it is


class UdpPacer:
    """The ICMP books of one scan, and the queues of its paced hosts.

    ``paced`` (host index -> :class:`PacedHost`), ``ready`` (a heap of (release time, host
    index)) and ``parked`` (probes queued) are read by the sending loop directly.
    ``due()`` is called when a paced host's turn comes (the sweep then sends).
    """

    def __init__(
        self, hosts: HostCache, rtt: RttTable, stats: ScanStats, due: Callable[[], None]
    ) -> None:
        self._hosts, self._rtt, self._stats, self._due = hosts, rtt, stats, due
        self.loop: asyncio.AbstractEventLoop | None = None  # set while the scan runs
        # ICMP errors of hosts not paced yet, and of each /24 (IPv4) or /64 (IPv6) pooled,
        # as if its hosts shared one bucket: several addresses of one machine do.
        self._early: dict[int, list[float]] = {}
        self._pooled: dict[str, IcmpBudget] = {}
        self._early_pooled: dict[str, list[float]] = {}
        self.paced: dict[int, PacedHost] = {}
        self.ready: list[tuple[float, int]] = []
        self.parked = 0
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False
        self._interval_hint = DEFAULT_INTERVAL

    def budgets(self) -> dict[str, tuple[int, float, bool]]:
        """Rate-limited hosts: address -> (burst, interval, measured); see ``Scan``."""
        return {
            self._hosts(index).address: (p.budget.burst, p.budget.interval, p.budget.learned)
            for index, p in self.paced.items()
            if p.budget.errors  # (a host paced only for its neighbours' errors has none)
        }

    def _arrival(self, attempt: Attempt, rtt: float | None = None) -> float:
        """When ``attempt`` reached its host: its send plus half the (measured) RTT."""
        if rtt is None:
            estimate = self._rtt.of_udp(attempt.host)
            rtt = estimate.srtt if estimate is not None else 0.0
        return attempt.sent + rtt / 2

    def answer(self, attempt: Attempt, answer: Answer, rtt: float, fast: bool) -> None:
        """Account a UDP answer to its host's ICMP budget (an error spent a token)."""
        paced = self.paced.get(attempt.host)
        if paced is not None and attempt.paced:
            self.unpace(attempt)
        if answer.reason not in ICMP_REASONS or fast:
            return
        when = self._arrival(attempt, rtt)
        pool = _pool(attempt.target.address)
        pooled = self._pooled.get(pool)
        if pooled is not None:
            pooled.error(when)
        else:
            _remember(self._early_pooled.setdefault(pool, []), when)
        if paced is not None:
            paced.budget.error(when)
            if paced.budget.learned:
                self._interval_hint = paced.budget.interval
            return
        _remember(self._early.setdefault(attempt.host, []), when)

    def silence(self, attempt: Attempt) -> bool:
        """Whether a UDP timeout proves the port silent (a try), judged by ICMP budgets.

        A host that leaves a probe unanswered while it or its /24 or /64 has sent ICMP
        errors is paced from then on. Where no error came from the host or its neighbours,
        nothing gives reason to doubt a silence.
        """
        host_index = attempt.host
        pool = _pool(attempt.target.address)
        paced = self.paced.get(host_index)
        if paced is None:
            early = sorted(self._early.pop(host_index, []))
            if not early and pool not in self._pooled and not self._early_pooled.get(pool):
                return True  # no ICMP error from this host or its neighbours: no doubt
            budget = IcmpBudget(early, interval=self._interval_hint)
            paced = self.paced[host_index] = PacedHost(budget)
            if pool not in self._pooled:
                pooled_early = sorted(self._early_pooled.pop(pool, early))
                self._pooled[pool] = IcmpBudget(pooled_early, interval=DEFAULT_INTERVAL)
            self._stats.paced_hosts += 1
            log.info(
                "%s: pacing UDP probes to the ICMP budget of it and its neighbours (%d errors)",
                attempt.target.address,
                budget.errors,
            )
        elif attempt.paced:
            self.unpace(attempt)
        estimate = self._rtt.of_udp(host_index)
        jitter = PACE_JITTER + (estimate.rttvar if estimate is not None else 0.0)
        arrival = self._arrival(attempt)
        # The host must have had a token by its own errors, and by its pool's: another
        # address may draw on the same bucket. (Hosts with budgets of their own only lose
        # time by this: their silences are proved once their neighbours' errors stop.)
        pooled = self._pooled[pool]
        if paced.budget.proves_silence(arrival, jitter) and pooled.proves_silence(arrival, jitter):
            return True
        return attempt.tries - attempt.silences >= MAX_FREE

    def park(self, host_index: int, item: Item, *, first: bool = False, delay: float = 0.0) -> None:
        """Queue a UDP probe of a paced host until its budget lets it go (``first``: at the
        head of its queue, ``delay``: not before that many seconds)."""
        paced = self.paced[host_index]
        if first:
            paced.queue.appendleft(item)
        else:
            paced.queue.append(item)
        self.parked += 1
        if paced.release is None or delay:
            assert self.loop is not None
            self._schedule(host_index, self.loop.time() + delay)

    def next_due(self, now: float) -> Item | None:
        """The next probe of a paced host whose turn has come, if any."""
        ready = self.ready
        while ready and ready[0][0] <= now:
            when, host_index = heapq.heappop(ready)
            paced = self.paced[host_index]
            if paced.release != when:
                continue  # stale: the host was rescheduled earlier and has been served
            paced.release = None
            if paced.queue:
                self.parked -= 1
                return paced.queue.popleft()
        return None

    def released(self, host_index: int, now: float) -> None:
        """A paced host's probe went out: count it, and schedule the host's next one."""
        paced = self.paced[host_index]
        paced.outstanding += 1
        paced.last = now
        self._schedule(host_index, now)

    def unpace(self, attempt: Attempt) -> None:
        """A paced host's probe ended: one fewer outstanding, so the host may be due again."""
        attempt.paced = False
        paced = self.paced[attempt.host]
        paced.outstanding -= 1
        if paced.release is None and self.loop is not None:
            self._schedule(attempt.host, self.loop.time())

    def _schedule(self, host_index: int, now: float) -> None:
        paced = self.paced[host_index]
        if not paced.queue or paced.outstanding >= MAX_OUTSTANDING:
            return
        estimate = self._rtt.of_udp(host_index)
        ahead = estimate.srtt / 2 if estimate is not None else 0.0
        when = paced.budget.release_at(now, ahead, paced.outstanding, paced.last)
        if paced.release is not None and paced.release <= when:
            return
        paced.release = when  # an earlier entry already in the heap is simply stale
        heapq.heappush(self.ready, (when, host_index))
        self.arm(when)

    def arm(self, when: float) -> None:
        """Make sure the sweep sends at ``when``, when the earliest paced host is due."""
        loop = self.loop
        if loop is None or self._stopped:
            return
        timer = self._timer
        if timer is not None:
            if timer.when() <= when:
                return
            timer.cancel()
        self._timer = loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        # A send already scheduled re-arms this timer when it has run.
        self._timer = None
        self._due()

    def close(self) -> None:
        """Stop the timer for good: the scan is stopping."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _pool(address: str) -> str:
    """The ICMP pool of an address: its /24 (IPv4) or /64 (IPv6), as text."""
    if ":" in address:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return address.rpartition(".")[0]


def _remember(errors: list[float], when: float) -> None:
    """Keep an ICMP error's time for a budget not built yet (the first ones size it)."""
    if len(errors) < MAX_EARLY_ERRORS:
        errors.append(when)
