"""The scan engine: concurrency, pacing, retries and adaptive timeouts. It never prints.

Rules and theory:
- Work is a :class:`~scanner.plan.Plan` (the seeded host x port order) plus a queue of
  attempts to send again. Nothing proportional to hosts x ports is held: only the attempts
  in flight, a heap of their deadlines, RTT estimates of hosts that answered, and the
  results the consumer has not taken yet (bounded: the engine stops sending when too many
  wait).
- No coroutine, future or ``wait_for`` is spent per probe. Sends happen in one loop
  callback, in batches; the transport reports answers through a callback; one timer, set
  to the earliest deadline, expires unanswered attempts. The consumer is an async iterator
  woken once per batch of results.
- The timeout of an attempt adapts as in nmap and RFC 6298: ``srtt + 4 * rttvar`` of the
  host (or of the whole scan, before the host has answered), clamped to the configured
  floor and ceiling. Before any answer the initial timeout applies; the attempts sent
  under it are re-timed with the first measured RTT, so that a filtered port in the very
  first batch does not hold the whole scan for the initial timeout.
- An unanswered attempt is sent again, then the port gets the transport's silent state
  (``filtered``/``no-response`` for TCP). As in nmap, ``retries`` is a ceiling for TCP: a
  scan starts with one retry and goes up to the ceiling as soon as a retransmission is
  answered, the evidence that probes are being lost. A clean network then costs two tries
  per silent TCP port, a lossy one all of them. UDP ports get every retry, since a silent
  port is common there and its silence shows no loss. Before expiring anything
  the engine first harvests answers that already arrived, so a busy event loop cannot turn
  an answered port into a filtered one.
- Local resource errors (out of descriptors or ephemeral ports) are never port states: the
  probe is queued again, and running out of descriptors lowers the concurrency for good.
- Concurrency is capped below RLIMIT_NOFILE, after raising the soft limit toward the hard
  one; the cap is logged (logger ``scanner``) so the command line can say so.
- One engine, one transport per protocol: TCP and UDP ports mix in one plan, and each
  attempt goes to the transport of its port's protocol.
- UDP is paced by each host's ICMP budget (``scanner.pacing``). Probes go out unpaced
  until a host both answers with ICMP errors and leaves a probe unanswered; from then on
  its UDP probes wait in a queue of its own and are released at the pace its inferred
  token bucket allows. A paced host's silence counts as a try only if the model says it
  had a token for the probe, by its own errors and by those of its /24 or /64 pooled (in
  case several addresses share one bucket); otherwise the port is probed again later. A
  host that sent no error is judged by its neighbours' alone.
  Hosts' queues are served side by side, so every host's budget is spent at once. The fast mode
  (``defeat_icmp_ratelimit``) does none of this: unanswered ports become
  ``closed|filtered``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import ipaddress
import itertools
import logging
import os
import resource
import secrets
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from typing import Protocol as TypingProtocol

from scanner.errors import ScanError
from scanner.fanout import (
    ResultRecord,
    Worker,
    encode_counters,
    encode_result,
    fork_worker,
    signals_held,
)
from scanner.models import MAX_WORKERS, Port, PortState, Proto, Reason, Result, ScanConfig
from scanner.pacing import DEFAULT_INTERVAL, IcmpBudget
from scanner.plan import Plan, Shard
from scanner.transport import (
    ICMP_REASONS,
    Answer,
    Backpressure,
    TcpConnectTransport,
    Transport,
    UdpTransport,
)

__all__ = ["HostTable", "Scan", "ScanStats", "fit_concurrency"]

log = logging.getLogger("scanner")

# File descriptors kept free for the process itself (output files, DNS, stdio, epoll).
FD_RESERVE = 32
# Results allowed to wait for the consumer before the engine stops sending.
MAX_BUFFERED = 8192
# Sends per loop callback, so that the consumer and timers get a turn on fast-failing scans.
SEND_BATCH = 512
# How long to wait before sending again after a local resource error, and how many
# times one probe may be put off that way before it is given up as an error.
BACKOFF = 0.02
MAX_DEFERRALS = 250
# Fan out to worker processes (one per CPU, at most this many) only for scans this large:
# below it, the fork costs more than the second core saves.
FANOUT_MIN_PROBES = 4096
MAX_AUTO_WORKERS = 4
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


class _Rtt:
    """Smoothed RTT and its variance (RFC 6298), with the timeout they give.

    After ``FULL_SAMPLES`` answers only every eighth one is folded in: the estimate is
    settled by then, and a full sweep would otherwise spend a tenth of its time here.
    """

    __slots__ = ("answers", "rttvar", "srtt", "timeout")
    FULL_SAMPLES = 32

    def __init__(self, sample: float, floor: float, ceiling: float) -> None:
        self.answers = 1
        self.srtt = sample
        self.rttvar = sample / 2
        self.timeout = min(ceiling, max(floor, self.srtt + 4 * self.rttvar))

    def add(self, sample: float, floor: float, ceiling: float) -> None:
        """Count one answer and fold its RTT into the estimate (thinned, see above)."""
        self.answers += 1
        if self.answers > self.FULL_SAMPLES and self.answers & 7:
            return
        self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - sample)
        self.srtt = 0.875 * self.srtt + 0.125 * sample
        self.timeout = min(ceiling, max(floor, self.srtt + 4 * self.rttvar))


class _Attempt:
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


# (host index, port, tries already made, deferrals so far, silences so far)
_Item = tuple[int, Port, int, int, int]


class _PacedHost:
    """A host whose UDP probes wait for its ICMP budget (see ``scanner.pacing``)."""

    __slots__ = ("budget", "last", "outstanding", "queue", "release")

    def __init__(self, budget: IcmpBudget) -> None:
        self.budget = budget
        self.queue: deque[_Item] = deque()
        self.outstanding = 0
        self.last = -float("inf")
        self.release: float | None = None  # when it is due in the ready heap, if it is


def _ports(ports: Sequence[int | Port]) -> tuple[Port, ...]:
    """Ports as :class:`Port` (a bare number is TCP), in the given order."""
    # (tuple.__new__ skips the namedtuple's Python-level __new__: a third of the cost
    # for 65,535 ports.)
    make, tcp = tuple.__new__, Proto.TCP
    return tuple(p if type(p) is Port else make(Port, (tcp, p)) for p in ports)


class Scan:
    """One scan of ``hosts`` x ``ports``, consumed as an async iterator of results.

    >>> async def open_ports(hosts, ports):           # doctest: +SKIP
    ...     return [r async for r in Scan(hosts, ports) if r.state == "open"]

    ``ports`` are numbers (TCP) or :class:`~scanner.models.Port` s of either protocol.
    ``transport`` is one transport or one per protocol (default: TCP connects and UDP
    exchanges, as the ports need). ``skip(address, port)`` leaves a probe out (resuming a
    scan); ``shard`` takes one part of the seeded order.

    Results come in the order they are final. :meth:`stop` ends the scan early: the
    iterator then yields what is already final and ends, with ``stats.interrupted`` set.
    """

    def __init__(
        self,
        hosts: HostTable,
        ports: Sequence[int | Port],
        config: ScanConfig = ScanConfig(),
        *,
        transport: Transport | Sequence[Transport] | None = None,
        shard: Shard = Shard(),
        skip: Callable[[str, Port], bool] | None = None,
    ) -> None:
        self.hosts = hosts
        self.config = config
        ports = _ports(ports)
        self.transports = self._transports(transport, ports)
        seed = config.seed if config.seed is not None else secrets.randbits(64)
        self.seed = seed
        self.plan = Plan(hosts.size, ports, seed=seed, shard=shard)
        self.stats = ScanStats(total=self.plan.expected)
        self._udp = Proto.UDP in self.transports
        self._workers = self._worker_count(transport)
        self._fan: list[Worker] = []
        self._paused = False
        self._errors: list[str] = []
        self._skip = skip
        self._loop: asyncio.AbstractEventLoop | None = None
        self._work = iter(self.plan)
        self._requeued: deque[_Item] = deque()
        self._plan_done = False
        self._stopping = False
        self._inflight = 0
        self._cap = config.concurrency
        self._heap: list[tuple[float, int, _Attempt]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = float("inf")
        self._send_scheduled = False
        self._resume_at = 0.0
        self._buffer: list[Any] = []  # what _emit made of each final result
        self._waiter: asyncio.Future[None] | None = None
        # RTT estimates per host and protocol (key: the host's index for TCP, its bitwise
        # complement for UDP: a UDP answer may come from an application, or be starved by
        # a TCP sweep sharing the loop), and scan-wide per protocol.
        self._host_rtt: dict[int, _Rtt] = {}
        self._scan_rtt: _Rtt | None = None
        self._udp_scan_rtt: _Rtt | None = None
        self._host_cache: dict[int, HostLike] = {}
        self._allowance = 1.0
        self._last_refill = 0.0
        self._retries = min(1, config.retries)  # raised to config.retries on seeing loss
        self._provisional: list[_Attempt] = []  # sent before any RTT was measured
        # UDP pacing: ICMP errors of hosts not paced yet, the paced hosts, and a heap of
        # (release time, host) for the paced hosts whose next probe is due.
        self._early_errors: dict[int, list[float]] = {}
        # The ICMP errors of each /24 (IPv4) or /64 (IPv6) of the scan pooled, as if its
        # hosts shared one bucket: several addresses of one machine do.
        self._pooled: dict[str, IcmpBudget] = {}
        self._early_pooled: dict[str, list[float]] = {}
        self._paced: dict[int, _PacedHost] = {}
        self._ready: list[tuple[float, int]] = []
        self._parked = 0
        self._pace_timer: asyncio.TimerHandle | None = None
        self._interval_hint = DEFAULT_INTERVAL

    @staticmethod
    def _transports(
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

    @property
    def transport(self) -> Transport:
        """The transport of a one-protocol scan (the TCP one of a mixed scan)."""
        return self.transports.get(Proto.TCP) or next(iter(self.transports.values()))

    def icmp_budgets(self) -> dict[str, tuple[int, float, bool]]:
        """Hosts whose ICMP errors are rate-limited: address -> (burst, interval, measured).

        ``interval`` is seconds per error; ``measured`` is false while it is still the
        assumed default rather than learned from the host's answers.
        """
        return {
            self._host(index).address: (p.budget.burst, p.budget.interval, p.budget.learned)
            for index, p in self._paced.items()
            if p.budget.errors  # (a host paced only for its neighbours' errors has none)
        }

    # -- the consumer's side ------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Result]:
        return self._results()

    async def _results(self) -> AsyncIterator[Result]:
        async for batch in self._batches():
            for result in batch:
                yield result

    async def _batches(self) -> AsyncIterator[list[Any]]:
        """Run the scan, yielding what ``_emit`` made of each final result, in batches."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._cap = fit_concurrency(self.config.concurrency)
        self.stats.concurrency = self._cap
        self.stats.started = time.time()
        self._last_refill = loop.time()
        try:
            if self._workers > 1:
                self._start_workers()
            else:
                for transport in self.transports.values():
                    transport.open(loop, self._deliver)
                self._send()
            while True:
                if self._buffer:
                    batch, self._buffer = self._buffer, []
                    yield batch
                    if self._fan:
                        self._resume_reading()
                    elif not self._send_scheduled:
                        self._schedule_send()
                elif self._finished():
                    break
                else:
                    self._waiter = loop.create_future()
                    await self._waiter
                    self._waiter = None
        finally:
            self._shutdown()
        if self._errors:
            raise ScanError("a scan worker failed: " + "; ".join(self._errors))

    def stop(self) -> None:
        """Stop sending, abandon what is in flight, and let the iterator end.

        Workers, if any, are asked to stop too; what they finished still comes through.
        """
        if self._stopping:
            return
        self._stopping = True
        self.stats.interrupted = True
        for worker in self._fan:
            worker.stop()
        self._wake()

    def _finished(self) -> bool:
        if self._workers > 1:
            return not self._fan
        if self._stopping:
            return True
        return self._plan_done and not self._requeued and self._inflight == 0 and not self._parked

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _shutdown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pace_timer is not None:
            self._pace_timer.cancel()
            self._pace_timer = None
        for transport in self.transports.values():
            transport.close()
        self._inflight = 0
        self._heap.clear()
        for worker in self._fan:
            self._close_worker(worker, kill=True)
        self._fan.clear()
        self.stats.finished = time.time()

    # -- fanning out to worker processes ---------------------------------------------------

    def _worker_count(self, transport: Transport | Sequence[Transport] | None) -> int:
        wanted = self.config.workers
        if transport is not None or not hasattr(os, "fork"):
            return 1  # a given transport may not survive a fork (tests' fakes, for one)
        if self._udp:
            return 1  # a host's ICMP budget must be paced from one place
        if wanted is None:
            if self.plan.expected < FANOUT_MIN_PROBES:
                return 1
            wanted = min(len(os.sched_getaffinity(0)), MAX_AUTO_WORKERS)
        return max(1, min(wanted, MAX_WORKERS, max(1, self.plan.expected)))

    def _start_workers(self) -> None:
        loop = self._loop
        assert loop is not None
        count = self._workers
        rate = self.config.rate
        config = dataclasses.replace(
            self.config,
            concurrency=max(1, self._cap // count),
            rate=None if rate is None else rate / count,
            workers=1,
            seed=self.seed,
        )
        base = self.plan.shard
        # A SIGINT or SIGTERM while forking stops the forking; its handler (stop) then
        # stops the workers already forked, which send what they finished.
        with signals_held() as interrupted:
            for index in range(count):
                if interrupted():
                    break
                shard = Shard(base.index + base.count * index, base.count * count)
                inherited = [worker.fd for worker in self._fan]

                def body(fd: int, shard: Shard = shard, inherited: list[int] = inherited) -> None:
                    for other in inherited:
                        os.close(other)
                    worker = _WorkerScan(self.hosts, self.plan.ports, config, shard, self._skip)
                    asyncio.run(worker.serve(fd))

                worker = fork_worker(body)
                self._fan.append(worker)
                loop.add_reader(worker.fd, self._on_worker_data, worker)

    def _on_worker_data(self, worker: Worker) -> None:
        try:
            data = os.read(worker.fd, 1 << 18)
        except OSError:
            data = b""
        if not data:
            self._close_worker(worker)
            self._fan.remove(worker)
            self._wake()
            return
        emit, stats = self._emit_record, self.stats
        for record in worker.decoder.feed(data):
            self._buffer.append(emit(record))
            stats.done += 1
        if len(self._buffer) >= MAX_BUFFERED and not self._paused:
            # The consumer is behind: stop reading, and the workers block on their pipes.
            self._paused = True
            assert self._loop is not None
            for each in self._fan:
                self._loop.remove_reader(each.fd)
        self._wake()

    def _resume_reading(self) -> None:
        if self._paused and len(self._buffer) < MAX_BUFFERED:
            self._paused = False
            assert self._loop is not None
            for worker in self._fan:
                self._loop.add_reader(worker.fd, self._on_worker_data, worker)

    def _close_worker(self, worker: Worker, *, kill: bool = False) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.remove_reader(worker.fd)
        with contextlib.suppress(OSError):
            os.close(worker.fd)
        status = worker.reap(kill=kill)
        sent, retransmitted, deferred, _ = worker.decoder.counters
        self.stats.sent += sent
        self.stats.retransmitted += retransmitted
        self.stats.deferred += deferred
        self._errors.extend(worker.decoder.errors)
        if status != 0 and not kill and not worker.decoder.errors and not self._stopping:
            self._errors.append(f"worker {worker.pid} exited with status {status}")

    def _emit_record(self, record: ResultRecord) -> Result:
        host = self._host(record.host)
        return Result(
            host.address,
            record.port,
            Proto.TCP,  # workers are only used for TCP-only scans
            record.state,
            record.reason,
            host.hostname,
            record.rtt,
            record.tries,
            record.timestamp,
        )

    # -- sending ----------------------------------------------------------------------

    def _host(self, index: int) -> HostLike:
        cache = self._host_cache
        host = cache.get(index)
        if host is None:
            if len(cache) >= 65536:
                cache.clear()
            host = cache[index] = self.hosts.host(index)
        return host

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

    def _next_paced(self, now: float) -> _Item | None:
        """The next probe of a paced host whose turn has come, if any."""
        ready = self._ready
        while ready and ready[0][0] <= now:
            when, host_index = heapq.heappop(ready)
            paced = self._paced[host_index]
            if paced.release != when:
                continue  # stale: the host was rescheduled earlier and has been served
            paced.release = None
            if paced.queue:
                self._parked -= 1
                return paced.queue.popleft()
        return None

    def _next_item(self) -> _Item | None:
        """The next probe to send that is not waiting in a paced host's queue."""
        if self._requeued:
            return self._requeued.popleft()
        if self._plan_done or self._parked >= MAX_PARKED:
            return None
        skip = self._skip
        for host, port in self._work:
            if skip is not None and skip(self._host(host).address, port):
                self.stats.done += 1
                continue
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
        transports, heap, stats = self.transports, self._heap, self.stats
        # A one-protocol scan (the usual) needs no lookup per probe.
        only = next(iter(transports.values())) if len(transports) == 1 else None
        udp, paced_hosts, ready = self._udp, self._paced, self._ready
        rtts, scan_rtt, udp_scan_rtt = self._host_rtt, self._scan_rtt, self._udp_scan_rtt
        initial = self.config.timing.initial_rtt_timeout
        clock = loop.time
        sent = 0
        while self._inflight < self._cap and len(self._buffer) < MAX_BUFFERED:
            if sent >= SEND_BATCH:
                self._schedule_send()
                break
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
                item = self._next_paced(now)
            from_queue = item is not None
            if item is None:
                item = self._next_item()
                if item is None:
                    break
            host_index, port, tries, deferrals, silences = item
            if udp and not from_queue and host_index in paced_hosts and port[0] is _UDP:
                self._park(host_index, item)
                continue
            host = self._host(host_index)
            # Each probe is timed from its own send: a batch takes milliseconds, and its
            # last probes must get neither a shorter timeout nor a longer RTT.
            now = clock()
            attempt = _Attempt(
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
                self._released(host_index, now)
            if isinstance(handle, Answer):
                self._final(attempt, handle, None)
                continue
            if udp and port[0] is _UDP:
                rtt = rtts.get(~host_index) or udp_scan_rtt
            else:
                rtt = rtts.get(host_index) or scan_rtt
            if rtt is None:
                self._provisional.append(attempt)
            attempt.deadline = now + (rtt.timeout if rtt is not None else initial)
            attempt.handle = handle
            self._inflight += 1
            heapq.heappush(heap, (attempt.deadline, next(self._seq), attempt))
        if heap and heap[0][0] < self._timer_when:
            self._arm_timer(heap[0][0])
        if self._ready:
            self._arm_pace(self._ready[0][0])
        if self._buffer or self._finished():
            self._wake()

    def _defer(self, attempt: _Attempt, exc: Backpressure) -> None:
        """Put a probe off after a local resource error, lowering concurrency if needed."""
        self.stats.deferred += 1
        if attempt.deferrals >= MAX_DEFERRALS:
            self._final(attempt, Answer(PortState.FILTERED, Reason.ERROR), None)
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
        paced = self._paced.get(attempt.host)
        if paced is not None and attempt.port.protocol is Proto.UDP:
            paced.queue.appendleft(item)
            self._parked += 1
            self._schedule_host(attempt.host, self._loop.time() + BACKOFF)
            return
        self._requeued.appendleft(item)
        self._resume_at = self._loop.time() + BACKOFF
        self._schedule_send(BACKOFF)

    # -- answers and timeouts ---------------------------------------------------------

    def _deliver(self, key: object, answer: Answer | None) -> None:
        attempt: _Attempt = key  # type: ignore[assignment]
        if not attempt.live:
            return
        attempt.live = False
        self._inflight -= 1
        if answer is None:
            if attempt.paced:
                self._unpace(attempt)
            self._defer(attempt, Backpressure(0))
            return
        loop = self._loop
        assert loop is not None
        rtt = loop.time() - attempt.sent
        if self._udp and attempt.port[0] is _UDP:
            self._udp_answer(attempt, answer, rtt)
        self._final(attempt, answer, rtt)
        if not self._send_scheduled:
            self._schedule_send()

    def _final(self, attempt: _Attempt, answer: Answer, rtt: float | None) -> None:
        if rtt is not None:
            if attempt.silences:
                self._retries = self.config.retries  # answered after a silence: probes get lost
            timing = self.config.timing
            floor, ceiling = timing.min_rtt_timeout, timing.max_rtt_timeout
            udp = self._udp and attempt.port[0] is _UDP
            key = ~attempt.host if udp else attempt.host
            host_rtt = self._host_rtt.get(key)
            if host_rtt is None:
                self._host_rtt[key] = _Rtt(rtt, floor, ceiling)
            else:
                host_rtt.add(rtt, floor, ceiling)
            scan_rtt = self._udp_scan_rtt if udp else self._scan_rtt
            if scan_rtt is None:
                scan_rtt = _Rtt(rtt, floor, ceiling)
                if udp:
                    self._udp_scan_rtt = scan_rtt
                else:
                    self._scan_rtt = scan_rtt
                self._retime_provisional(attempt.port[0], scan_rtt.timeout)
            else:
                scan_rtt.add(rtt, floor, ceiling)
        self._buffer.append(self._emit(attempt, answer, rtt))
        self.stats.done += 1

    def _emit(self, attempt: _Attempt, answer: Answer, rtt: float | None) -> Any:
        """What the consumer gets for a final result: a :class:`Result`."""
        host = attempt.target
        return Result(
            host.address,
            attempt.port.number,
            attempt.port.protocol,
            answer.state,
            answer.reason,
            host.hostname,
            rtt,
            attempt.tries,
            time.time(),
        )

    # -- UDP pacing -------------------------------------------------------------------

    def _arrival(self, attempt: _Attempt, rtt: float | None = None) -> float:
        """When ``attempt`` reached its host: its send plus half the (measured) RTT."""
        if rtt is None:
            estimate = self._udp_rtt(attempt.host)
            rtt = estimate.srtt if estimate is not None else 0.0
        return attempt.sent + rtt / 2

    def _udp_rtt(self, host_index: int) -> _Rtt | None:
        """The UDP RTT estimate of a host, else of the scan."""
        return self._host_rtt.get(~host_index) or self._udp_scan_rtt

    def _udp_answer(self, attempt: _Attempt, answer: Answer, rtt: float) -> None:
        """Account a UDP answer to its host's ICMP budget (an error spent a token)."""
        paced = self._paced.get(attempt.host)
        if paced is not None and attempt.paced:
            self._unpace(attempt)
        if answer.reason not in ICMP_REASONS or self.config.defeat_icmp_ratelimit:
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
        _remember(self._early_errors.setdefault(attempt.host, []), when)

    def _udp_silence(self, attempt: _Attempt) -> bool:
        """Whether a UDP timeout proves the port silent (a try), judged by ICMP budgets.

        A host that leaves a probe unanswered while it or its /24 or /64 has sent ICMP
        errors is paced from then on. Where no error came from the host or its neighbours,
        nothing gives reason to doubt a silence.
        """
        host_index = attempt.host
        pool = _pool(attempt.target.address)
        paced = self._paced.get(host_index)
        if paced is None:
            early = sorted(self._early_errors.pop(host_index, []))
            if not early and pool not in self._pooled and not self._early_pooled.get(pool):
                return True  # no ICMP error from this host or its neighbours: no doubt
            budget = IcmpBudget(early, interval=self._interval_hint)
            paced = self._paced[host_index] = _PacedHost(budget)
            if pool not in self._pooled:
                pooled_early = sorted(self._early_pooled.pop(pool, early))
                self._pooled[pool] = IcmpBudget(pooled_early, interval=DEFAULT_INTERVAL)
            self.stats.paced_hosts += 1
            log.info(
                "%s: pacing UDP probes to the ICMP budget of it and its neighbours (%d errors)",
                attempt.target.address,
                budget.errors,
            )
        elif attempt.paced:
            self._unpace(attempt)
        estimate = self._udp_rtt(host_index)
        jitter = PACE_JITTER + (estimate.rttvar if estimate is not None else 0.0)
        arrival = self._arrival(attempt)
        # The host must have had a token by its own errors, and by its pool's: another
        # address may draw on the same bucket. (Hosts with budgets of their own only lose
        # time by this: their silences are proved once their neighbours' errors stop.)
        pooled = self._pooled[pool]
        if paced.budget.proves_silence(arrival, jitter) and pooled.proves_silence(arrival, jitter):
            return True
        return attempt.tries - attempt.silences >= MAX_FREE

    def _park(self, host_index: int, item: _Item) -> None:
        """Queue a UDP probe of a paced host until its budget lets it go."""
        paced = self._paced[host_index]
        paced.queue.append(item)
        self._parked += 1
        if paced.release is None:
            assert self._loop is not None
            self._schedule_host(host_index, self._loop.time())

    def _released(self, host_index: int, now: float) -> None:
        """A paced host's probe went out: count it, and schedule the host's next one."""
        paced = self._paced[host_index]
        paced.outstanding += 1
        paced.last = now
        self._schedule_host(host_index, now)

    def _unpace(self, attempt: _Attempt) -> None:
        """A paced host's probe ended: one fewer outstanding, so the host may be due again."""
        attempt.paced = False
        paced = self._paced[attempt.host]
        paced.outstanding -= 1
        if paced.release is None and self._loop is not None:
            self._schedule_host(attempt.host, self._loop.time())

    def _schedule_host(self, host_index: int, now: float) -> None:
        paced = self._paced[host_index]
        if not paced.queue or paced.outstanding >= MAX_OUTSTANDING:
            return
        estimate = self._udp_rtt(host_index)
        ahead = estimate.srtt / 2 if estimate is not None else 0.0
        when = paced.budget.release_at(now, ahead, paced.outstanding, paced.last)
        if paced.release is not None and paced.release <= when:
            return
        paced.release = when  # an earlier entry already in the heap is simply stale
        heapq.heappush(self._ready, (when, host_index))
        self._arm_pace(when)

    def _arm_pace(self, when: float) -> None:
        loop = self._loop
        if loop is None or self._stopping:
            return
        timer = self._pace_timer
        if timer is not None:
            if timer.when() <= when:
                return
            timer.cancel()
        self._pace_timer = loop.call_at(when, self._on_pace)

    def _on_pace(self) -> None:
        # A send already scheduled re-arms this timer when it has run.
        self._pace_timer = None
        self._schedule_send()

    def _retime_provisional(self, protocol: Proto, timeout: float) -> None:
        """Give the attempts of ``protocol`` sent under the initial timeout the first
        measured one."""
        heap, others = self._heap, []
        for attempt in self._provisional:
            if attempt.port[0] is not protocol:
                others.append(attempt)
                continue
            deadline = attempt.sent + timeout
            if attempt.live and deadline < attempt.deadline:
                attempt.deadline = deadline  # the old heap entry is now stale
                heapq.heappush(heap, (deadline, next(self._seq), attempt))
        self._provisional = others
        if heap and heap[0][0] < self._timer_when:
            self._arm_timer(heap[0][0])

    def _arm_timer(self, when: float) -> None:
        loop = self._loop
        assert loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._on_timer)
        self._timer_when = when

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_when = float("inf")
        loop = self._loop
        if loop is None or self._stopping:
            return
        # Harvest what has already been answered before declaring anything unanswered.
        transports = self.transports
        for transport in transports.values():
            transport.flush()
        now = loop.time()
        heap, retries, full = self._heap, self._retries, self.config.retries
        fast = self.config.defeat_icmp_ratelimit
        while heap and (heap[0][0] <= now or _stale(heap[0])):
            entry = heapq.heappop(heap)
            if _stale(entry):
                continue
            attempt = entry[2]
            attempt.live = False
            self._inflight -= 1
            protocol = attempt.port[0]
            transport = transports[protocol]
            late = transport.reap(attempt.handle)
            transport.cancel(attempt.handle)
            if late is not None:  # it had come back; the event loop had not got to it
                rtt = now - attempt.sent
                if protocol is _UDP:
                    self._udp_answer(attempt, late, rtt)
                self._final(attempt, late, rtt)
                continue
            counts = protocol is _TCP or fast or self._udp_silence(attempt)
            silences = attempt.silences + counts
            # UDP gets every retry: its silence is the usual answer, so a lost probe
            # cannot show up as an answered retransmission the way TCP's does.
            if silences <= (full if protocol is _UDP else retries):
                item = (attempt.host, attempt.port, attempt.tries, 0, silences)
                if protocol is _UDP and attempt.host in self._paced:
                    self._park(attempt.host, item)
                else:
                    self._requeued.append(item)
            elif protocol is _UDP and fast:
                self._final(attempt, _FAST_UDP_SILENT, None)
            else:
                self._final(attempt, _SILENT[protocol], None)
        if heap:
            self._arm_timer(heap[0][0])
        self._send_scheduled = False
        self._send()
        if self._buffer or self._finished():
            self._wake()


def _pool(address: str) -> str:
    """The ICMP pool of an address: its /24 (IPv4) or /64 (IPv6), as text."""
    if ":" in address:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return address.rpartition(".")[0]


def _remember(errors: list[float], when: float) -> None:
    """Keep an ICMP error's time for a budget not built yet (the first ones size it)."""
    if len(errors) < MAX_EARLY_ERRORS:
        errors.append(when)


def _stale(entry: tuple[float, int, _Attempt]) -> bool:
    """A heap entry of an attempt that has ended, or whose deadline has since moved."""
    attempt = entry[2]
    return not attempt.live or entry[0] != attempt.deadline


_TCP, _UDP = Proto.TCP, Proto.UDP  # (module constants: no enum lookup on the hot path)
_SILENT = {
    Proto.TCP: Answer(PortState.FILTERED, Reason.NO_RESPONSE),
    Proto.UDP: Answer(PortState.OPEN_FILTERED, Reason.NO_RESPONSE),
}
_FAST_UDP_SILENT = Answer(PortState.CLOSED_FILTERED, Reason.NO_RESPONSE)


class _WorkerScan(Scan):
    """The engine inside a worker process: emits encoded records instead of Results."""

    def __init__(
        self,
        hosts: HostTable,
        ports: Sequence[Port],
        config: ScanConfig,
        shard: Shard,
        skip: Callable[[str, Port], bool] | None,
    ) -> None:
        super().__init__(hosts, ports, config, shard=shard, skip=skip)

    def _emit(self, attempt: _Attempt, answer: Answer, rtt: float | None) -> Any:
        return encode_result(
            attempt.host, attempt.port.number, answer.state, answer.reason, rtt, attempt.tries,
            time.time(),
        )  # fmt: skip

    async def serve(self, fd: int) -> None:
        """Scan this worker's shard, writing records to ``fd``; SIGTERM stops it cleanly."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        try:
            async for batch in self._batches():
                _write_all(fd, b"".join(batch))
            stats = self.stats
            _write_all(
                fd, encode_counters(stats.sent, stats.retransmitted, stats.deferred, self._cap)
            )
        finally:
            # Everything is sent: a late SIGTERM has nothing left to stop. Ignore it before
            # the loop closes its self-pipe, which the handler would otherwise write to.
            loop.remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
