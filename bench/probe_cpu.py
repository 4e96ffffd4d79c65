"""Benchmark: CPU time per probe of 64 lab hosts x ports 1-10000, portprobe against ``nmap -sT``.

Run from the repository root, as root (the lab needs network namespaces)::

    sudo python3 bench/probe_cpu.py [--runs 3] [--portprobe PATH] [--timeout SECONDS]

The lab of ``tcp_hosts`` (the same services on 198.18.0.2-65).  Each run, interleaved, is::

    nmap -sT -p1-10000 -n -Pn -oX out.xml 198.18.0.2-65
    portprobe 198.18.0.2-65 -p 1-10000 --no-evidence -q -o out.csv

640,000 TCP connects each.  A command's CPU time is what ``getrusage(RUSAGE_CHILDREN)``
gains while it runs (``common.timed_run``): the process and every descendant it waited
for, portprobe's worker processes included.  The report gives user and system CPU per
probe for both tools (medians over the runs), the ratio of user CPU against the target of
at most 3x nmap's, the wall times, and whether every state is identical in every run.

Pass: states identical in every run and median user CPU of portprobe <= 3 x nmap's.
Exit status 0 on pass, 1 otherwise.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence

from common import (
    BenchSummary,
    Timed,
    bench_args,
    compare,
    find_nmap,
    find_portprobe,
    print_comparison,
    run_interleaved,
    service_lab,
    state_counts,
)

NAME = "probe_cpu"
TARGET_RATIO = 3.0  # portprobe's user CPU per probe, at most this many times nmap's
HOSTS = 64
PORTS = 10000
PROBES = HOSTS * PORTS
TARGETS = "198.18.0.2-65"


def _per_probe(seconds: float) -> str:
    return f"{seconds / PROBES * 1e6:.2f} us"


def _line(name: str, runs: Sequence[Timed]) -> tuple[str, float]:
    """The report line of one tool, and its median user CPU."""
    user = statistics.median(t.user for t in runs)
    system = statistics.median(t.system for t in runs)
    wall = statistics.median(t.seconds for t in runs)
    return (
        f"  {name:<10} user {user:6.2f} s ({_per_probe(user)}/probe)   "
        f"sys {system:6.2f} s ({_per_probe(system)}/probe)   wall {wall:6.2f} s",
        user,
    )


def run(argv: Sequence[str] | None = None) -> BenchSummary:
    """Run the benchmark and print its report; return its summary."""
    args = bench_args(__doc__.splitlines()[0], default_runs=3).parse_args(argv)
    portprobe, nmap = find_portprobe(args.portprobe), find_nmap()
    print(f"== {NAME}: {HOSTS} hosts x ports 1-{PORTS}, {args.runs} runs ==")
    with service_lab(HOSTS) as (lab, workdir):  # (checks the range is the lab's)
        pair = run_interleaved(
            lab,
            nmap_argv=lambda out: [
                nmap,
                "-sT",
                f"-p1-{PORTS}",
                "-n",
                "-Pn",
                "-oX",
                str(out),
                TARGETS,
            ],
            portprobe_argv=lambda out: [
                portprobe,
                TARGETS,
                "-p",
                f"1-{PORTS}",
                "--no-evidence",
                "-q",
                "-o",
                str(out),
            ],
            runs=args.runs,
            workdir=workdir,
            timeout=args.timeout,
            portprobe_suffix=".csv",
        )
    for i, (n, p) in enumerate(zip(pair.nmap_runs, pair.portprobe_runs, strict=True), start=1):
        print(
            f"  run {i}/{args.runs} CPU: nmap user {n.user:5.2f} s sys {n.system:5.2f} s   "
            f"portprobe user {p.user:5.2f} s sys {p.system:5.2f} s"
        )
    print(f"\n== {NAME}: results (medians; per probe = / {PROBES:,}) ==")
    nmap_line, nmap_user = _line("nmap", pair.nmap_runs)
    pp_line, pp_user = _line("portprobe", pair.portprobe_runs)
    print(nmap_line)
    print(pp_line)
    ratio = pp_user / nmap_user if nmap_user > 0 else float("inf")
    ratio_ok = ratio <= TARGET_RATIO
    print(
        f"  user CPU portprobe/nmap: {ratio:.2f}   target <= {TARGET_RATIO:g}: "
        f"{'met' if ratio_ok else 'NOT met'}"
    )
    wall = statistics.median(pair.portprobe_seconds) / statistics.median(pair.nmap_seconds)
    print(f"  wall portprobe/nmap: {wall:.3f} (information only)")
    comparisons = [
        compare(n, p) for n, p in zip(pair.nmap_states, pair.portprobe_states, strict=True)
    ]
    same = sum(c.identical for c in comparisons)
    identical = same == len(comparisons) > 0
    print(
        f"  states identical: {'yes' if identical else 'no'}"
        f" ({same} of {len(comparisons)} runs, {PROBES:,} ports each)"
    )
    print(f"  nmap states (run 1):      {state_counts(pair.nmap_states[0])}")
    print(f"  portprobe states (run 1): {state_counts(pair.portprobe_states[0])}")
    for cmp in comparisons:
        if not cmp.identical:
            print_comparison(cmp, "nmap", "portprobe", indent="    ")
            break
    for note in pair.notes:
        print(f"  note: {note}")
    passed = identical and ratio_ok
    print(f"  RESULT: {'PASS' if passed else 'FAIL'}")
    return BenchSummary(
        name=NAME,
        result=(
            f"user pp {_per_probe(pp_user)} / nmap {_per_probe(nmap_user)} a probe = "
            f"{ratio:.2f}; identical {'yes' if identical else 'no'}"
        ),
        target=f"user CPU ratio <= {TARGET_RATIO:g}, identical",
        passed=passed,
    )


def main() -> int:
    """Command-line entry point: exit 0 when the benchmark passes."""
    return 0 if run().passed else 1


if __name__ == "__main__":
    sys.exit(main())
