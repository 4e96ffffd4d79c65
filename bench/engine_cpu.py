"""Benchmark: the engine's own Python per probe, without a network or root.

Run from the repository root::

    python3 bench/engine_cpu.py [--runs 5] [--probes 128000]

Four numbers, each the best of ``--runs`` (CPU time of this process, so other load on the
machine barely moves them):

- ``sweep``: a :class:`~scanner.engine.Scan` of 64 addresses x N/64 ports in one process,
  over a transport that answers every probe "closed" at the next loop turn. No socket is
  opened and nothing is sent: what remains is the engine's Python (plan, attempts,
  deadlines, RTT, results), the part of a probe's user CPU that is not the socket calls.
- ``worker``: the same sweep as a worker process runs it (``engine.fanout.serve``): the
  closed ports kept in blocks and flushed after each batch, the rest encoded as records
  (``engine.records``), joined for the pipe.
- ``decode``: the parent's decoding of workers' records into results
  (``engine.records.Decoder.runs`` and ``engine.fanout.decode_results``), a record a port.
- ``blocks``: the same for closed ports in blocks of 12 (a worker's usual block when it
  scans 64 hosts): per port, into :class:`~scanner.models.ClosedPorts`.
- ``result``: making one :class:`~scanner.models.Result` (``engine.base.new_result``).

Information only: no pass or fail (exit status 0). Use it before and after a change to
``engine/``; the lab benchmarks (``tcp_full``, ``tcp_hosts``) measure what a user waits for.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import timeit
from array import array
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scanner.engine import Scan
from scanner.engine.base import HostCache, ScanStats, new_result, ports_of
from scanner.engine.core import Sweep
from scanner.engine.fanout import decode_results, recorder
from scanner.engine.records import ClosedBuffer, Decoder, encode_closed, encode_result
from scanner.models import PortState, Proto, Reason, ScanConfig
from scanner.plan import Plan
from scanner.targets import TargetSet, parse_target
from scanner.transport import CLOSED, Deliver

HOSTS = "198.18.0.2-65"  # never contacted: the transport below opens no socket


class _Instant:
    """A transport that answers every probe "closed" at the next turn of the loop."""

    protocol = Proto.TCP

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deliver: Deliver | None = None
        self._pending: dict[int, object] = {}
        self._count = 0

    def open(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        self._loop, self._deliver = loop, deliver

    def send(self, key: object, family: int, address: str, port: int) -> object:
        self._count += 1
        self._pending[self._count] = key
        if len(self._pending) == 1:
            assert self._loop is not None
            self._loop.call_soon(self.flush)
        return self._count

    def flush(self) -> None:
        pending, self._pending = self._pending, {}
        assert self._deliver is not None
        for key in pending.values():
            self._deliver(key, CLOSED)

    def cancel(self, handle: object) -> None:
        self._pending.pop(handle, None)  # type: ignore[call-overload]

    def reap(self, handle: object) -> None:
        return None

    def close(self) -> None:
        self._pending.clear()


def sweep(probes: int) -> float:
    """CPU seconds per probe of a sweep over the instant transport."""

    async def run() -> float:
        hosts = TargetSet([parse_target(HOSTS)])
        ports = range(1, probes // hosts.size + 1)
        scan = Scan(hosts, ports, ScanConfig(workers=1), transport=_Instant())
        start, count = time.process_time(), 0
        async for batch in scan.batches():
            count += len(batch)
        return (time.process_time() - start) / count

    return asyncio.run(run())


def worker(probes: int) -> float:
    """CPU seconds per probe of a worker's sweep over the instant transport."""

    async def run() -> float:
        hosts = TargetSet([parse_target(HOSTS)])
        ports = ports_of(range(1, probes // hosts.size + 1))
        plan = Plan(hosts.size, ports, seed=1)
        stats = ScanStats(total=plan.expected)
        closed = ClosedBuffer()
        emit = recorder(closed)
        sweep = Sweep(plan, HostCache(hosts), ScanConfig(), {Proto.TCP: _Instant()}, emit, stats)
        start, decoder, results = time.process_time(), Decoder(), 0
        async for batch in sweep.batches(1024):
            batch.append(closed.flush(time.time()))
            data = b"".join(batch)
            results += sum(len(run.ports) for run in decoder.runs(data))  # (all closed)
        seconds = time.process_time() - start
        assert results == stats.done
        return seconds / stats.done

    return asyncio.run(run())


def decode(records: int) -> float:
    """CPU seconds per record decoded into a result, fed in the parent's 256 KiB reads."""
    stamp = time.time()
    data = b"".join(
        encode_result(i % 64, i % 10000, PortState.CLOSED, Reason.CONN_REFUSED, 1e-4, 1, stamp)
        for i in range(records)
    )
    hosts = HostCache(TargetSet([parse_target(HOSTS)]))
    start = time.process_time()
    decoder = Decoder()
    for offset in range(0, len(data), 1 << 18):
        decode_results(decoder.runs(data[offset : offset + (1 << 18)]), hosts, [])
    return (time.process_time() - start) / records


def blocks(ports: int) -> float:
    """CPU seconds per port decoded from blocks of 12 closed ports into ClosedPorts."""
    stamp, numbers = time.time(), array("H", range(1, 13))
    rtts, tries = array("f", [1e-4] * 12), array("B", [1] * 12)
    data = b"".join(
        encode_closed(block % 64, Reason.CONN_REFUSED, numbers, rtts, tries, stamp)
        for block in range(ports // 12)
    )
    hosts = HostCache(TargetSet([parse_target(HOSTS)]))
    start = time.process_time()
    decoder, count = Decoder(), 0
    for offset in range(0, len(data), 1 << 18):
        count += decode_results(decoder.runs(data[offset : offset + (1 << 18)]), hosts, [])
    return (time.process_time() - start) / count


def result(count: int) -> float:
    """CPU seconds per Result made."""
    fields = ("198.18.0.2", 22, Proto.TCP, PortState.OPEN, Reason.SYN_ACK, None, 1e-4, 1, 1.0)
    return timeit.timeit(lambda: new_result(*fields), timer=time.process_time, number=count) / count


def main() -> int:
    """Print the four numbers, in microseconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--probes", type=int, default=128000)
    args = parser.parse_args()
    for name, measure, unit in (
        ("sweep", sweep, "probe"),
        ("worker", worker, "probe"),
        ("decode", decode, "record"),
        ("blocks", blocks, "port"),
        ("result", result, "result"),
    ):
        best = min(measure(args.probes) for _ in range(args.runs))
        print(f"{name:7} {best * 1e6:6.2f} us per {unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
