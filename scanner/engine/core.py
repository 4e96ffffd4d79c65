"""The scan core: sending, answers, retries and timeouts, in one process.

Rules and theory:
- Work is a :class:`~scanner.plan.Plan` (the seeded host x port order) plus a queue of
  attempts to send again. Nothing proportional to hosts x ports is held: only the attempts
  in flight, their deadlines (``engine.deadlines``), RTT estimates of hosts that answered
  (``engine.rtt``), and the results the consumer has not taken yet (bounded: the sweep
  stops sending when too many wait).
- No coroutine, future or ``wait_for`` is spent per probe. Sends happen in one loop
  callback, in batches; the transport reports answers through a callback; one timer, set
  to the earliest deadline, expires unanswered attempts.
- An unanswered attempt is sent again, then the port gets the transport's silent state
  (``filtered``/``no-response`` for TCP). As in nmap, ``retries`` is a ceiling for TCP: a
  scan starts with one retry and goes up to the ceiling as soon as a retransmission is
  answered, the evidence that probes are being lost. A clean network then costs two tries
  per silent TCP port, a lossy one all of them. UDP ports get every retry, since a silent
  port is common there and its silence shows no loss; a UDP silence counts as a try only
  when ``engine.udp_pacing`` says it proves something. Before expiring anything the sweep
  first harvests answers that already arrived, so a busy event loop cannot turn an
  answered port into a filtered one.
- Local resource errors (out of descriptors or ephemeral ports) are never port states: the
  probe is queued again, and running out of descriptors lowers the concurrency for good.
- One transport per protocol: TCP and UDP ports mix in one plan, and each attempt goes to
  the transport of its port's protocol.
- What a final result becomes is the caller's ``emit``: a :class:`~scanner.models.Result`
  in the parent, an encoded record in a worker process.
- A TCP port found open on one host is probed next on every other host (of this sweep's
  shard) that the plan has not reached yet: services repeat across the hosts of a fleet,
  and an open port found early gets its evidence while the sweep goes on. Each cell is
  still probed once: :meth:`Plan.locate` tells which cells the plan has walked and which
  belong to the shard, a cursor per such port walks the hosts in order, and the plan
  later skips the cells the cursor has sent. Memory stays bounded: at most
  ``MAX_PROMOTED`` ports, a cursor each. Not with ``sequential`` (``-r``: the user's
  order), a ``skip`` function (resume), or UDP in the scan.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from itertools import islice
from typing import Generic

from scanner.engine.base import (
    MAX_BUFFERED,
    Attempt,
    HostCache,
    Item,
    Outbox,
    ScanStats,
    T,
    log,
)
from scanner.engine.deadlines import Deadlines
from scanner.engine.rtt import RttTable
from scanner.engine.udp_pacing import MAX_PARKED, UdpPacer
from scanner.models import Port, PortState, Proto, Reason, ScanConfig
from scanner.plan import Plan
from scanner.transport import Answer, Backpressure, Transport

# Sends per loop callback, so that the consumer and timers get a turn on fast-failing scans.
SEND_BATCH = 512
# How long to wait before sending again after a local resource error, and how many
# times one probe may be put off that way before it is given up as an error.
BACKOFF = 0.02
MAX_DEFERRALS = 250

Emit = Callable[[Attempt, Answer, "float | None"], T]
"""``emit(attempt, answer, rtt)``: what the consumer gets for one final result."""

# Ports found open that are probed on the other hosts next (see the rules), at most.
MAX_PROMOTED = 256

_TCP, _UDP = Proto.TCP, Proto.UDP  # (module constants: no enum lookup on the hot path)
_OPEN = PortState.OPEN
_SILENT = {
    Proto.TCP: Answer(PortState.FILTERED, Reason.NO_RESPONSE),
    Proto.UDP: Answer(PortState.OPEN_FILTERED, Reason.NO_RESPONSE),
}
_FAST_UDP_SILENT = Answer(PortState.CLOSED_FILTERED, Reason.NO_RESPONSE)
_GAVE_UP = Answer(PortState.FILTERED, Reason.ERROR)


class Sweep(Generic[T]):
    """Sends the probes of ``plan``, takes their answers and times them out; see the rules.

    ``skip(address, port)`` leaves a probe out. Final results, as ``emit`` makes them, come
    out of :meth:`batches`.
    """

    def __init__(
        self,
        plan: Plan[Port],
        hosts: HostCache,
        config: ScanConfig,
        transports: dict[Proto, Transport],
        emit: Emit[T],
        stats: ScanStats,
        skip: Callable[[str, Port], bool] | None = None,
    ) -> None:
        self.config, self.transports, self.stats = config, transports, stats
        self._hosts, self._emit, self._skip = hosts, emit, skip
        self._udp = Proto.UDP in transports
        self._plan = plan
        self._work: Iterator[tuple[int, Port]] = iter(plan)
        # Open ports probed on the other hosts next (see the rules): port -> the next host
        # its cursor considers; the ports whose cursor has hosts left; the plan's last cell.
        self._promotes = (
            not config.sequential and skip is None and plan.host_count > 1 and not self._udp
        )
        self._promoted: dict[Port, int] = {}
        self._promoting: deque[Port] = deque()
        self._last: tuple[int, Port] | None = None
        self._requeued: deque[Item] = deque()
        self._plan_done = False
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clock = time.monotonic  # the loop's clock (see batches())
        self._inflight = 0
        self._cap = config.concurrency
        self._send_scheduled = False
        self._resume_at = 0.0
        self._allowance = 1.0
        self._last_refill = 0.0
        self._retries = min(1, config.retries)  # raised to config.retries on seeing loss
        self.out: Outbox[T] = Outbox()
        self.rtt = RttTable(config.timing)
        self.pacer = UdpPacer(hosts, self.rtt, stats, self._schedule_send)
        self._deadlines = Deadlines(self._on_timer, config.timing.min_rtt_timeout)

    async def batches(self, cap: int) -> AsyncIterator[list[T]]:
        """Run the sweep with at most ``cap`` probes in flight; yield final results."""
        loop = asyncio.get_running_loop()
        self._loop = self.pacer.loop = self._deadlines.loop = loop
        # asyncio's own loops tell time with time.monotonic: calling it directly saves a
        # Python frame twice per probe. Another loop's clock is used as it is.
        if type(loop).time is not asyncio.BaseEventLoop.time:
            self._clock = loop.time
        self._cap = cap
        self._last_refill = loop.time()
        try:
            for transport in self.transports.values():
                transport.open(loop, self._deliver)
            self._send()
            async for batch in self.out.batches(self._finished, self._taken):
                yield batch
        finally:
            # A send still scheduled must find the sweep over, not a closed transport.
            self._stopping = True
            self._deadlines.close()
            self.pacer.close()
            for transport in self.transports.values():
                transport.close()
            self._inflight = 0

    def stop(self) -> None:
        """Stop sending and abandon what is in flight; :meth:`batches` then ends."""
        self._stopping = True
        self.pacer.close()
        self.out.wake()

    @property
    def concurrency(self) -> int:
        """The concurrency cap now (lowered when descriptors ran out)."""
        return self._cap

    def _finished(self) -> bool:
        if self._stopping:
            return True
        return (
            self._plan_done and not self._requeued and self._inflight == 0 and not self.pacer.parked
        )

    def _taken(self) -> None:
        if not self._send_scheduled:
            self._schedule_send()

    # -- sending ----------------------------------------------------------------------

    def _schedule_send(self, delay: float = 0.0) -> None:
        loop = self._loop
        assert loop is not None
        if self._send_scheduled:
            return
        self._send_scheduled = True
        if delay > 0:
            loop.call_later(delay, self._send)
        else:
            loop.call_soon(self._send)

    def _next_item(self) -> Item | None:
        """The next probe to send that is not waiting in a paced host's queue."""
        if self._requeued:
            return self._requeued.popleft()
        if self._plan_done or self.pacer.parked >= MAX_PARKED:
            return None
        if self._promoting:
            item = self._next_promoted()
            if item is not None:
                return item
        skip = self._skip
        for host, port in self._work:
            if skip is not None and skip(self._hosts(host).address, port):
                self.stats.done += 1
                continue
            self._last = host, port
            return host, port, 0, 0, 0
        self._plan_done = True
        return None

    def _send(self) -> None:
        """Send probes while concurrency, rate and the consumer allow; one batch per call."""
        self._send_scheduled = False
        loop = self._loop
        if self._stopping or loop is None:
            return
        now = loop.time()
        if now < self._resume_at:
            self._schedule_send(self._resume_at - now)
            return
        rate = self.config.rate
        transports, stats, hosts, out = self.transports, self.stats, self._hosts, self.out
        # A one-protocol scan (the usual) needs no lookup per probe.
        only = next(iter(transports.values())) if len(transports) == 1 else None
        udp, pacer, deadlines = self._udp, self.pacer, self._deadlines
        paced_hosts, ready = pacer.paced, pacer.ready
        # (The scan-wide estimates may be made during this call, by a reply read at once:
        # while one is None it is looked up again, lest the rest of the batch wait the
        # initial timeout, which only the first measured RTT cuts short.)
        table = self.rtt
        rtts, scan_rtt, udp_scan_rtt = table.hosts, table.tcp, table.udp
        initial = self.config.timing.initial_rtt_timeout
        heap, seq, provisional = deadlines.heap, deadlines.seq, deadlines.provisional
        young = deadlines.young.append
        push, clock, cached = heapq.heappush, self._clock, hosts.cache
        sent = 0
        # The fast path: one TCP-like protocol, no rate, nothing paced or queued again.
        fast = only is not None and rate is None and not udp
        while self._inflight < self._cap and len(out.items) < MAX_BUFFERED:
            if sent >= SEND_BATCH:
                self._schedule_send()
                break
            # Fresh probes straight from the plan when nothing else waits (the usual case).
            # Looked up each time round: an open port read at once promotes, and the plan
            # is then walked through a filter that skips the cells the promotion sent.
            work = self._work if self._skip is None and not self._plan_done else None
            if fast and work is not None and not self._requeued and not self._promoting:
                assert only is not None
                # Fresh probes in one plain loop. Each takes one place in flight or one in
                # the outbox, so the budget keeps within the loop's own limits.
                budget = min(
                    SEND_BATCH - sent, self._cap - self._inflight, MAX_BUFFERED - len(out.items)
                )
                send, inflight, count, blocked = only.send, self._inflight, 0, False
                keep, emit, rtt_add, done = out.items.append, self._emit, self.rtt.add, 0
                for host_index, port in islice(work, budget):
                    count += 1
                    host = cached.get(host_index) or hosts(host_index)
                    now = clock()
                    attempt = Attempt(host_index, host, port, 1, 0, 0, now, False)
                    try:
                        handle = send(attempt, host.family, host.address, port[1])
                    except Backpressure as exc:
                        self._inflight, blocked = inflight, True
                        attempt.paced = False  # never counted as outstanding
                        self._defer(attempt, exc)
                        break
                    if isinstance(handle, Answer):
                        if handle.measured and handle.state is not _OPEN:
                            # A reply read at once (a closed port): _final, inlined.
                            seconds = clock() - now
                            first = rtt_add(host_index, False, seconds)
                            if first is not None:
                                deadlines.retime(port[0], first)
                            keep(emit(attempt, handle, seconds))
                            done += 1
                        else:
                            self._final(attempt, handle, clock() - now if handle.measured else None)
                        continue
                    attempt.handle = handle
                    inflight += 1
                    rtt = rtts.get(host_index) or scan_rtt or table.tcp
                    if rtt is None:
                        provisional.append(attempt)
                        deadline = attempt.deadline = now + initial
                        push(heap, (deadline, next(seq), attempt))
                    else:
                        attempt.deadline = now + rtt.timeout
                        young(attempt)
                self._inflight = inflight
                stats.done += done
                if count:
                    self._last = host_index, port
                sent += count - blocked
                stats.sent += count - blocked
                if blocked:
                    break
                if count < budget:  # the plan is done
                    self._plan_done = True
                continue
            if rate is not None:
                self._allowance = min(
                    max(1.0, rate / 100), self._allowance + (now - self._last_refill) * rate
                )
                self._last_refill = now
                if self._allowance < 1.0:
                    self._schedule_send((1.0 - self._allowance) / rate)
                    break
            item = None
            if ready and ready[0][0] <= now:
                item = pacer.next_due(now)
            from_queue = item is not None
            if (
                item is None
                and work is not None
                and not self._requeued
                and not pacer.parked
                and not self._promoting
            ):
                fresh = next(work, None)
                if fresh is None:
                    self._plan_done = True
                    continue
                host_index, port = self._last = fresh
                tries = deferrals = silences = 0
                if udp and host_index in paced_hosts and port[0] is _UDP:
                    pacer.park(host_index, (host_index, port, 0, 0, 0))
                    continue
            else:
                if item is None:
                    item = self._next_item()
                    if item is None:
                        break
                host_index, port, tries, deferrals, silences = item
                if udp and not from_queue and host_index in paced_hosts and port[0] is _UDP:
                    pacer.park(host_index, item)
                    continue
            host = cached.get(host_index) or hosts(host_index)
            # Each probe is timed from its own send: a batch takes milliseconds, and its
            # last probes must get neither a shorter timeout nor a longer RTT.
            now = clock()
            attempt = Attempt(
                host_index, host, port, tries + 1, deferrals, silences, now, from_queue
            )
            try:
                handle = (only or transports[port[0]]).send(
                    attempt, host.family, host.address, port[1]
                )
            except Backpressure as exc:
                attempt.paced = False  # never counted as outstanding
                self._defer(attempt, exc)
                break
            sent += 1
            stats.sent += 1
            if rate is not None:
                self._allowance -= 1.0
            if tries:
                stats.retransmitted += 1
            if from_queue:
                pacer.released(host_index, now)
            if isinstance(handle, Answer):
                self._final(attempt, handle, clock() - now if handle.measured else None)
                continue
            if udp and port[0] is _UDP:
                rtt = rtts.get(~host_index) or udp_scan_rtt or table.udp
            else:
                rtt = rtts.get(host_index) or scan_rtt or table.tcp
            attempt.handle = handle
            self._inflight += 1
            if rtt is None:
                provisional.append(attempt)
                deadline = attempt.deadline = now + initial
                push(heap, (deadline, next(seq), attempt))
            else:  # (its deadline is at least the floor away: it waits among the young)
                attempt.deadline = now + rtt.timeout
                young(attempt)
        deadlines.arm()
        if ready:
            pacer.arm(ready[0][0])
        if out.items or self._finished():
            out.wake()

    def _defer(self, attempt: Attempt, exc: Backpressure) -> None:
        """Put a probe off after a local resource error, lowering concurrency if needed."""
        self.stats.deferred += 1
        if attempt.deferrals >= MAX_DEFERRALS:
            self._final(attempt, _GAVE_UP, None)
            return
        item = (
            attempt.host, attempt.port, attempt.tries - 1, attempt.deferrals + 1,
            attempt.silences,
        )  # fmt: skip
        if exc.descriptors and self._inflight > 0 and self._inflight < self._cap:
            log.warning(
                "out of file descriptors (%s): concurrency lowered from %d to %d",
                exc,
                self._cap,
                self._inflight,
            )
            self._cap = self._inflight
            self.stats.concurrency = self._cap
        assert self._loop is not None
        if attempt.port.protocol is Proto.UDP and attempt.host in self.pacer.paced:
            self.pacer.park(attempt.host, item, first=True, delay=BACKOFF)
            return
        self._requeued.appendleft(item)
        self._resume_at = self._loop.time() + BACKOFF
        self._schedule_send(BACKOFF)

    # -- answers and timeouts ---------------------------------------------------------

    def _deliver(self, key: object, answer: Answer | None) -> None:
        attempt: Attempt = key  # type: ignore[assignment]
        if not attempt.live:
            return
        attempt.live = False
        self._inflight -= 1
        if answer is None:
            if attempt.paced:
                self.pacer.unpace(attempt)
            self._defer(attempt, Backpressure(0))
            return
        rtt = self._clock() - attempt.sent
        protocol = attempt.port[0]
        if answer.state is _OPEN and self._promotes:
            self._promote(attempt.port)
        udp = self._udp and protocol is _UDP
        if udp:
            self.pacer.answer(attempt, answer, rtt, self.config.defeat_icmp_ratelimit)
        # _final, inlined: this runs for nearly every probe of a sweep.
        if attempt.silences:
            self._retries = self.config.retries  # answered after a silence: probes get lost
        first = self.rtt.add(attempt.host, udp, rtt)
        if first is not None:
            self._deadlines.retime(protocol, first)
        self.out.items.append(self._emit(attempt, answer, rtt))
        self.stats.done += 1
        if not self._send_scheduled:
            self._schedule_send()

    # -- open ports on the other hosts -------------------------------------------------

    def _promote(self, port: Port) -> None:
        """Probe ``port``, found open, on the other hosts next (see the rules)."""
        if port in self._promoted or len(self._promoted) >= MAX_PROMOTED or self._plan_done:
            return
        if not self._promoted:  # the plan skips the cells the cursors sent
            promoted = self._promoted

            def sent_early(cell: tuple[int, Port]) -> bool:
                cursor = promoted.get(cell[1])
                return cursor is not None and cell[0] < cursor

            self._work = itertools.filterfalse(sent_early, self._work)
        self._promoted[port] = 0
        self._promoting.append(port)

    def _next_promoted(self) -> Item | None:
        """The next cell of a promoted port that this shard walks and the plan has not
        reached; None when the cursors are through."""
        plan, hosts, promoted, promoting = (
            self._plan,
            self._plan.host_count,
            self._promoted,
            self._promoting,
        )
        last = self._last
        reached = (-1, -1) if last is None else plan.locate(*last)
        while promoting:
            port = promoting[0]
            host = promoted[port]
            while host < hosts:
                where = plan.locate(host, port)
                host += 1
                if where > reached and plan.owns(where[1]):
                    promoted[port] = host
                    return host - 1, port, 0, 0, 0
            promoted[port] = host
            promoting.popleft()
        return None

    def _final(self, attempt: Attempt, answer: Answer, rtt: float | None) -> None:
        if answer.state is _OPEN and self._promotes:
            self._promote(attempt.port)
        if rtt is not None:
            if attempt.silences:
                self._retries = self.config.retries  # answered after a silence: probes get lost
            protocol = attempt.port[0]
            first = self.rtt.add(attempt.host, self._udp and protocol is _UDP, rtt)
            if first is not None:
                self._deadlines.retime(protocol, first)
        self.out.items.append(self._emit(attempt, answer, rtt))
        self.stats.done += 1

    def _on_timer(self) -> None:
        loop = self._loop
        if loop is None or self._stopping:
            return
        # Harvest what has already been answered before declaring anything unanswered.
        transports = self.transports
        for transport in transports.values():
            transport.flush()
        now = loop.time()
        retries, full = self._retries, self.config.retries
        fast = self.config.defeat_icmp_ratelimit
        pacer = self.pacer
        for attempt in self._deadlines.due(now):
            attempt.live = False
            self._inflight -= 1
            protocol = attempt.port[0]
            transport = transports[protocol]
            late = transport.reap(attempt.handle)
            transport.cancel(attempt.handle)
            if late is not None:  # it had come back; the event loop had not got to it
                rtt = now - attempt.sent
                if protocol is _UDP:
                    pacer.answer(attempt, late, rtt, fast)
                self._final(attempt, late, rtt)
                continue
            counts = protocol is _TCP or fast or pacer.silence(attempt)
            silences = attempt.silences + counts
            # UDP gets every retry: its silence is the usual answer, so a lost probe
            # cannot show up as an answered retransmission the way TCP's does.
            if silences <= (full if protocol is _UDP else retries):
                item = (attempt.host, attempt.port, attempt.tries, 0, silences)
                if protocol is _UDP and attempt.host in pacer.paced:
                    pacer.park(attempt.host, item)
                else:
                    self._requeued.append(item)
            elif protocol is _UDP and fast:
                self._final(attempt, _FAST_UDP_SILENT, None)
            else:
                self._final(attempt, _SILENT[protocol], None)
        self._deadlines.rearm()
        self._send_scheduled = False
        self._send()
        if self.out.items or self._finished():
            self.out.wake()
