"""Worker processes for one scan: fork, a binary record stream back, and a clean stop.

Rules and theory:
- A sweep is CPU-bound in one Python process (socket, connect and close dominate), so a
  scan may fan out to worker processes, each running the ordinary sweep (``engine.core``)
  on its own shard of the same seeded plan. Shards are disjoint and cover the plan exactly
  (``scanner.plan``). Only TCP-only scans fan out: a host's ICMP budget must be paced from
  one place.
- Workers are forked, so they start in milliseconds and inherit the targets, the raised
  descriptor limit and the network namespace. A worker ignores SIGINT (the terminal sends
  it to the whole process group; the parent decides) and treats SIGTERM as "stop, send
  what is finished, exit", so an interrupted scan loses no finished result.
- Results come back as records (``engine.records``); closed ports in blocks, flushed at
  the end of each batch and before the worker exits, however it was stopped. A worker
  gets SIGTERM when its parent dies (Linux ``PR_SET_PDEATHSIG``), and a write to a pipe
  whose reader is gone kills it anyway: no orphan scans on.
- The parent stops reading when too many results wait for its consumer; the workers then
  block on their pipes, which is their back-pressure.
- Forking is done with SIGINT and SIGTERM held (:func:`signals_held`): a signal that comes
  while workers are being forked stops the forking at once (checked between forks), and
  its handler runs as soon as they are released. A child starts with them held too, and
  releases them only once SIGTERM is its own: a SIGTERM sent in the instant after the
  fork is never lost, nor run by the parent's handler in the child.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import dataclasses
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from scanner.engine.base import (
    MAX_BUFFERED,
    Attempt,
    HostCache,
    HostTable,
    Outbox,
    ScanStats,
    fit_concurrency,
    new_result,
    rare_collections,
    transports_for,
)
from scanner.engine.core import Sweep
from scanner.engine.records import (
    NO_RTT,
    REASON_CODE,
    REASONS,
    RESULT,
    STATE_CODE,
    STATES,
    ClosedBuffer,
    ClosedRecord,
    Decoder,
    encode_counters,
    encode_error,
    new_buffers,
)
from scanner.errors import ScanError
from scanner.models import ClosedPorts, Port, PortState, Proto, Reason, Result, ScanConfig
from scanner.plan import Plan, Shard
from scanner.transport import Answer

_PR_SET_PDEATHSIG = 1
_pack, _now = RESULT.pack, time.time


def _die_with_parent(parent: int) -> None:
    """Ask Linux to send SIGTERM when the parent exits; exit now if it already has.

    (Linux ties this to the forking *thread*; the engine forks from the thread running
    its event loop, which outlives the workers.)
    """
    with contextlib.suppress(OSError, AttributeError, TypeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


@dataclass(slots=True)
class Worker:
    """A forked worker: its pid, the read end of its pipe, and its decoder."""

    pid: int
    fd: int
    decoder: Decoder = field(default_factory=Decoder)
    status: int | None = None

    def stop(self) -> None:
        """Ask the worker to stop and send what it has finished."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)

    def reap(self, *, kill: bool = False) -> int:
        """Wait for the worker to exit (killing it first if asked); its exit status."""
        if self.status is None:
            if kill:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            try:
                _, raw = os.waitpid(self.pid, 0)
                self.status = os.waitstatus_to_exitcode(raw)
            except ChildProcessError:
                self.status = 0
        return self.status


_HELD = {signal.SIGINT, signal.SIGTERM}


@contextmanager
def signals_held() -> Iterator[Callable[[], bool]]:
    """Hold SIGINT and SIGTERM while forking; yields a check: has one of them come?

    On leaving, the signals are released and any that came is handled as usual.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield lambda: bool(signal.sigpending() & _HELD)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def fork_worker(body: Callable[[int], None]) -> Worker:
    """Fork a worker that runs ``body(write_fd)`` and exits; the parent gets its Worker.

    In the child, SIGINT is ignored, SIGTERM is left for ``body`` to handle, the parent's
    signal wakeup descriptor is dropped, and any exception becomes an error record and
    exit status 1. The child never returns into the caller.
    """
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid:
        os.close(write_fd)
        return Worker(pid, read_fd)
    code = 0
    try:
        os.close(read_fd)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        # Held by the parent's signals_held(): a SIGTERM that came meanwhile ends us now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)
        _die_with_parent(parent)
        body(write_fd)
    except BaseException as exc:  # reported to the parent through the pipe, never raised
        code = 1
        with contextlib.suppress(OSError):
            os.write(write_fd, encode_error(f"{type(exc).__name__}: {exc}"))
    finally:
        os._exit(code)


def _record(attempt: Attempt, answer: Answer, rtt: float | None) -> bytes:
    """A worker's final result, encoded for the parent (``encode_result``, inlined: this
    runs for every probe)."""
    tries = attempt.tries
    return _pack(
        b"R", attempt.host, attempt.port[1], STATE_CODE[answer.state],
        REASON_CODE[answer.reason], NO_RTT if rtt is None else rtt,
        tries if tries < 255 else 255, _now(),
    )  # fmt: skip


def recorder(closed: ClosedBuffer) -> Callable[[Attempt, Answer, float | None], bytes]:
    """A worker's ``emit``: a closed port goes into ``closed`` (``ClosedBuffer.add``,
    inlined) and makes no bytes of its own; any other result is its record (``_record``)."""
    columns, closed_state, codes, new = closed.columns, PortState.CLOSED, REASON_CODE, new_buffers
    # (An enum's hash is a Python call: the usual reason's code is known without one.)
    refused, refused_code = Reason.CONN_REFUSED, REASON_CODE[Reason.CONN_REFUSED]

    def record(attempt: Attempt, answer: Answer, rtt: float | None) -> bytes:
        if answer.state is not closed_state:
            return _record(attempt, answer, rtt)
        reason = answer.reason
        key = attempt.host << 8 | (refused_code if reason is refused else codes[reason])
        appends = columns.get(key)
        if appends is None:
            appends = columns[key] = new()
        count = attempt.tries
        appends[0](attempt.port[1] | (count if count < 255 else 255) << 16)
        appends[1](NO_RTT if rtt is None else rtt)
        return b""

    return record


async def serve(
    fd: int,
    hosts: HostTable,
    plan: Plan[Port],
    config: ScanConfig,
    skip: Callable[[str, Port], bool] | None,
) -> None:
    """Scan ``plan`` (a worker's shard), writing records to ``fd``; SIGTERM stops it cleanly."""
    stats = ScanStats(total=plan.expected)
    transports = transports_for(None, plan.ports)
    closed = ClosedBuffer()
    sweep = Sweep(plan, HostCache(hosts), config, transports, recorder(closed), stats, skip)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, sweep.stop)
    try:
        async for batch in sweep.batches(fit_concurrency(config.concurrency)):
            # The batch's closed ports follow it as blocks (none are left in between).
            batch.append(closed.flush(_now()))
            _write_all(fd, b"".join(batch))
        _write_all(fd, closed.flush(_now()))  # (nothing, unless a batch was cut short)
        _write_all(
            fd, encode_counters(stats.sent, stats.retransmitted, stats.deferred, sweep.concurrency)
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


class WorkerPool:
    """The parent's side of a fanned-out scan: forks ``count`` workers, reads their records.

    Results come out of :meth:`batches` as :class:`Result` s, and closed ports as
    :class:`~scanner.models.ClosedPorts` blocks (see ``engine.records``).
    """

    def __init__(
        self,
        count: int,
        hosts: HostTable,
        plan: Plan[Port],
        config: ScanConfig,
        skip: Callable[[str, Port], bool] | None,
        stats: ScanStats,
        host: HostCache,
    ) -> None:
        self._count, self._hosts, self._plan, self._config = count, hosts, plan, config
        self._skip, self._stats, self._host = skip, stats, host
        self._fan: list[Worker] = []
        self._paused = False
        self._stopping = False
        self._errors: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.out: Outbox[Result | ClosedPorts] = Outbox()
        # How many results ``_held_in`` (the outbox's list when last counted) holds.
        self._held, self._held_in = 0, self.out.items

    async def batches(self, cap: int) -> AsyncIterator[list[Result | ClosedPorts]]:
        """Fork the workers (``cap`` probes in flight between them); yield their results."""
        self._loop = asyncio.get_running_loop()
        try:
            self._start(cap)
            async for batch in self.out.batches(lambda: not self._fan, self._resume_reading):
                yield batch
        finally:
            for worker in self._fan:
                self._close(worker, kill=True)
            self._fan.clear()
        if self._errors:
            raise ScanError("a scan worker failed: " + "; ".join(self._errors))

    def stop(self) -> None:
        """Ask every worker to stop; what they finished still comes through."""
        self._stopping = True
        for worker in self._fan:
            worker.stop()
        self.out.wake()

    def _start(self, cap: int) -> None:
        loop = self._loop
        assert loop is not None
        count = self._count
        rate = self._config.rate
        config = dataclasses.replace(
            self._config,
            concurrency=max(1, cap // count),
            rate=None if rate is None else rate / count,
            workers=1,
        )
        base = self._plan.shard
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
                    plan = Plan(
                        self._hosts.size,
                        self._plan.ports,
                        seed=self._plan.seed,
                        shard=shard,
                        sequential=config.sequential,
                        front=self._plan.front,
                    )
                    # (The collector would mostly walk what the fork inherited.)
                    with rare_collections():
                        asyncio.run(serve(fd, self._hosts, plan, config, self._skip))

                worker = fork_worker(body)
                self._fan.append(worker)
                loop.add_reader(worker.fd, self._on_data, worker)

    def _on_data(self, worker: Worker) -> None:
        try:
            data = os.read(worker.fd, 1 << 18)
        except OSError:
            data = b""
        if not data:
            self._close(worker)
            self._fan.remove(worker)
            self.out.wake()
            return
        items = self.out.items
        count = decode_results(worker.decoder.runs(data), self._host, items)
        self._stats.done += count
        # Results waiting, blocks by their ports (the consumer swaps in a new list).
        if items is not self._held_in:
            self._held_in, self._held = items, 0
        self._held += count
        if self._held >= MAX_BUFFERED and not self._paused:
            # The consumer is behind: stop reading, and the workers block on their pipes.
            self._paused = True
            assert self._loop is not None
            for each in self._fan:
                self._loop.remove_reader(each.fd)
        self.out.wake()

    def _resume_reading(self) -> None:
        held = self._held if self.out.items is self._held_in else len(self.out.items)
        if self._paused and held < MAX_BUFFERED:
            self._paused = False
            assert self._loop is not None
            for worker in self._fan:
                self._loop.add_reader(worker.fd, self._on_data, worker)

    def _close(self, worker: Worker, *, kill: bool = False) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.remove_reader(worker.fd)
        with contextlib.suppress(OSError):
            os.close(worker.fd)
        status = worker.reap(kill=kill)
        sent, retransmitted, deferred, _ = worker.decoder.counters
        self._stats.sent += sent
        self._stats.retransmitted += retransmitted
        self._stats.deferred += deferred
        self._errors.extend(worker.decoder.errors)
        if status != 0 and not kill and not worker.decoder.errors and not self._stopping:
            self._errors.append(f"worker {worker.pid} exited with status {status}")


def decode_results(
    runs: list[memoryview | ClosedRecord], hosts: HostCache, into: list[Result | ClosedPorts]
) -> int:
    """Append a :class:`Result` for each result record of ``runs`` (from ``Decoder.runs``)
    to ``into``, and a :class:`~scanner.models.ClosedPorts` for each block; how many
    results they stand for. One loop, from bytes to results: the parent's whole share of
    a fanned-out sweep."""
    cached, host_of, make, append = hosts.cache, hosts, new_result, into.append
    states, reasons, no_rtt, tcp = STATES, REASONS, NO_RTT, Proto.TCP  # (workers scan TCP only)
    count = 0
    for run in runs:
        if isinstance(run, ClosedRecord):
            host = cached.get(run.host) or host_of(run.host)
            append(
                ClosedPorts(host.address, host.hostname, tcp, run.reason, run.ports, run.rtts,
                            run.tries, run.timestamp)
            )  # fmt: skip
            count += len(run.ports)
            continue
        for _, index, port, state, reason, rtt, tries, stamp in RESULT.iter_unpack(run):
            host = cached.get(index) or host_of(index)
            append(
                make(host.address, port, tcp, states[state], reasons[reason], host.hostname,
                     None if rtt == no_rtt else rtt, tries, stamp)
            )  # fmt: skip
        count += len(run) // RESULT.size
    return count
