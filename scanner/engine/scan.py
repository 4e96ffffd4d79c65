"""The public scan: hosts x ports in, an async iterator of results out. It never prints.

Rules and theory:
- :class:`Scan` decides how a scan runs and hands it to one runner: a :class:`~scanner.
  engine.core.Sweep` in this process, or a :class:`~scanner.engine.fanout.WorkerPool` of
  forked processes for large TCP-only scans. Either yields final results in batches; the
  consumer is woken once per batch.
- A long port list is probed likely-open ports first (``scanner.ports.likely_open_first``:
  nmap's top ports and IANA's named ones, then the rest; each part in the seeded order),
  unless ``sequential``: the evidence of an open port then overlaps the sweep.
- Concurrency is capped below RLIMIT_NOFILE (``engine.base.fit_concurrency``), then shared
  between the workers, if any.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal, overload

from scanner.engine.base import (
    Attempt,
    HostCache,
    HostTable,
    ScanStats,
    fit_concurrency,
    new_result,
    ports_of,
    transports_for,
)
from scanner.engine.core import Sweep
from scanner.engine.fanout import WorkerPool
from scanner.models import ClosedPorts, Port, Proto, Result, ScanConfig
from scanner.plan import Plan, Shard
from scanner.ports import likely_open_first
from scanner.transport import Answer, Transport

# Fan out to worker processes (one per CPU, at most this many) only for scans this large:
# below it, the fork costs more than the second core saves.
FANOUT_MIN_PROBES = 4096
MAX_AUTO_WORKERS = 4
# Port lists this long get the ports most likely open probed first (``Plan``'s front):
# on a short one, every port is probed within moments anyway.
FRONT_MIN_PORTS = 1024


class Scan:
    """One scan of ``hosts`` x ``ports``, consumed as an async iterator of results.

    >>> async def open_ports(hosts, ports):           # doctest: +SKIP
    ...     return [r async for r in Scan(hosts, ports) if r.state == "open"]

    ``ports`` are numbers (TCP) or :class:`~scanner.models.Port` s of either protocol.
    ``transport`` is one transport or one per protocol (default: TCP connects and UDP
    exchanges, as the ports need). ``skip(address, port)`` leaves a probe out (resuming a
    scan); ``shard`` takes one part of the seeded order.

    Results come in the order they are final (:meth:`batches` gives them in lists, as
    they come). :meth:`stop` ends the scan early: the
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
        port_list = ports_of(ports)
        front = 0
        if not config.sequential and len(port_list) > FRONT_MIN_PORTS:
            ordered, front = likely_open_first(port_list)
            port_list = tuple(ordered)
        self.transports = transports_for(transport, port_list)
        seed = config.seed if config.seed is not None else secrets.randbits(64)
        self.seed = seed
        self.plan = Plan(
            hosts.size,
            port_list,
            seed=seed,
            shard=shard,
            sequential=config.sequential,
            front=front,
        )
        self.stats = ScanStats(total=self.plan.expected)
        self._host = HostCache(hosts)
        self._workers = self._worker_count(transport)
        self._runner: Sweep[Result] | WorkerPool
        if self._workers > 1:
            self._runner = WorkerPool(
                self._workers, hosts, self.plan, config, skip, self.stats, self._host
            )
        else:
            self._runner = Sweep(
                self.plan, self._host, config, self.transports, self._result, self.stats, skip
            )

    @property
    def transport(self) -> Transport:
        """The transport of a one-protocol scan (the TCP one of a mixed scan)."""
        return self.transports.get(Proto.TCP) or next(iter(self.transports.values()))

    def icmp_budgets(self) -> dict[str, tuple[int, float, bool]]:
        """Hosts whose ICMP errors are rate-limited: address -> (burst, interval, measured).

        ``interval`` is seconds per error; ``measured`` is false while it is still the
        assumed default rather than learned from the host's answers.
        """
        runner = self._runner
        return runner.pacer.budgets() if isinstance(runner, Sweep) else {}

    def __aiter__(self) -> AsyncIterator[Result]:
        return self._results()

    async def _results(self) -> AsyncIterator[Result]:
        async for batch in self.batches():
            for result in batch:
                yield result

    @overload
    def batches(self, *, blocks: Literal[False] = False) -> AsyncIterator[list[Result]]: ...
    @overload
    def batches(self, *, blocks: Literal[True]) -> AsyncIterator[list[Result | ClosedPorts]]: ...

    async def batches(self, *, blocks: bool = False) -> AsyncIterator[list[Any]]:
        """Run the scan, yielding its results in lists, as they become final.

        The same results as iterating the scan itself, without an async generator step
        per result: a consumer of hundreds of thousands of them saves a fifth of a
        microsecond each. With ``blocks``, the lists may also hold
        :class:`~scanner.models.ClosedPorts`, closed ports in bulk (as worker processes
        send them), for a consumer that has no work to do per closed port.
        """
        cap = fit_concurrency(self.config.concurrency)
        self.stats.concurrency = cap
        self.stats.started = time.time()
        try:
            # (Blocks come from worker processes only.)
            bulk = blocks or isinstance(self._runner, Sweep)
            async for batch in self._runner.batches(cap):
                yield batch if bulk else expand(batch)
        finally:
            self.stats.finished = time.time()

    def stop(self) -> None:
        """Stop sending, abandon what is in flight, and let the iterator end.

        Workers, if any, are asked to stop too; what they finished still comes through.
        """
        if self.stats.interrupted:
            return
        self.stats.interrupted = True
        self._runner.stop()

    def _worker_count(self, transport: Transport | Sequence[Transport] | None) -> int:
        wanted = self.config.workers
        if transport is not None or not hasattr(os, "fork"):
            return 1  # a given transport may not survive a fork (tests' fakes, for one)
        if Proto.UDP in self.transports:
            return 1  # a host's ICMP budget must be paced from one place
        if wanted is None:
            if self.plan.expected < FANOUT_MIN_PROBES:
                return 1
            wanted = min(len(os.sched_getaffinity(0)), MAX_AUTO_WORKERS)
        return max(1, min(wanted, max(1, self.plan.expected)))

    def _result(self, attempt: Attempt, answer: Answer, rtt: float | None) -> Result:
        """What the consumer gets for a final result."""
        host = attempt.target
        return new_result(
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


def expand(batch: Sequence[Result | ClosedPorts]) -> list[Result]:
    """``batch`` with its blocks of closed ports as one :class:`Result` a port, in order."""
    results: list[Result] = []
    for item in batch:
        if type(item) is Result:
            results.append(item)
        else:
            assert isinstance(item, ClosedPorts)
            results += item.results()
    return results
