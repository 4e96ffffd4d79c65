"""Run every portprobe benchmark in sequence and print a summary table.

Run from the repository root, as root::

    sudo python3 bench/run_all.py [--runs N] [--portprobe PATH] [--timeout SECONDS]

Runs ``tcp_full``, ``tcp_hosts``, ``probe_cpu``, ``lossy``, ``memory``, ``report_memory``,
``service_id`` and ``udp`` (see each module's docstring), each with its own default number
of runs unless ``--runs`` overrides them all, then prints one line per benchmark. A
benchmark that crashes is reported as failed and the others still run. Exit status 0 when
every benchmark passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable, Sequence

import lossy
import memory
import probe_cpu
import report_memory
import service_id
import tcp_full
import tcp_hosts
import udp
from common import BenchSummary, print_summary_table

BENCHMARKS: dict[str, Callable[[Sequence[str] | None], BenchSummary]] = {
    "tcp_full": tcp_full.run,
    "tcp_hosts": tcp_hosts.run,
    "probe_cpu": probe_cpu.run,
    "lossy": lossy.run,
    "memory": memory.run,
    "report_memory": report_memory.run,
    "service_id": service_id.run,
    "udp": udp.run,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run all benchmarks; exit 0 when all pass."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help="runs per benchmark (default: each its own)")
    parser.add_argument("--portprobe", help="the portprobe executable (default: found)")
    parser.add_argument("--timeout", type=float, help="seconds allowed per command")
    args = parser.parse_args(argv)
    passthrough: list[str] = []
    for flag, value in (("--runs", args.runs), ("--portprobe", args.portprobe),
                        ("--timeout", args.timeout)):  # fmt: skip
        if value is not None:
            passthrough += [flag, str(value)]

    summaries: list[BenchSummary] = []
    started = time.perf_counter()
    for name, run in BENCHMARKS.items():
        try:
            summaries.append(run(passthrough))
        except (Exception, SystemExit) as exc:  # one broken benchmark must not hide the rest
            traceback.print_exc()
            summaries.append(BenchSummary(name=name, result=f"error: {exc}", target="-",
                                          passed=False))  # fmt: skip
        print()
    print(f"== summary ({time.perf_counter() - started:.0f} s) ==")
    print_summary_table(summaries)
    return 0 if all(s.passed for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
