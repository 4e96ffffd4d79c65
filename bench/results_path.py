"""Benchmark: the results path (evidence, assessment, writing) against ``nmap -sT -oX``.

Run from the repository root, as root (the lab needs network namespaces)::

    sudo python3 bench/results_path.py [--runs 3] [--case NAME ...]

Issue 12's targets, each interleaved with nmap on the same lab in the same run:

| case | portprobe | nmap | target |
| --- | --- | --- | --- |
| ``default_full`` | ``198.18.0.2 -p- -q -o x.csv`` (evidence on) | ``-sT -p- -n -Pn`` | <= 0.7 |
| ``default_hosts`` | ``198.18.0.2-65 -p 1-1000 -q -o x.csv`` | ``-sT -p 1-1000 ...`` | <= 0.6 |
| ``all_full`` | ``198.18.0.2 -p- --all -q -o x.csv`` | ``-sT -p- ...`` | <= 0.8 |
| ``all_hosts`` | ``198.18.0.2-65 -p 1-10000 --all -q -o x.csv`` | ``-sT -p 1-10000 ...`` | <= 0.7 |

The lab serves 22, 80, 443, 2451, 3451 (silent), 8080 and drops 81 and 444 on every
address. Every state must be identical to nmap's in every run. Exit status 0 when every
case passes.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from common import (
    LAB_FILTERED_TCP,
    LAB_TCP,
    BenchSummary,
    Lab,
    bench_args,
    find_nmap,
    find_portprobe,
    print_summary_table,
    report_pair,
    run_interleaved,
)

# name: (hosts, ports, --all, target ratio)
PORTPROBE: str | None = None
CASES: dict[str, tuple[int, str, bool, float]] = {
    "default_full": (1, "-", False, 0.7),
    "default_hosts": (64, "1-1000", False, 0.6),
    "all_full": (1, "-", True, 0.8),
    "all_hosts": (64, "1-10000", True, 0.7),
}


def run_case(name: str, lab: Lab, runs: int, timeout: float, tmp: Path) -> BenchSummary:
    """One case: interleaved runs, then its report."""
    hosts, ports, show_all, target = CASES[name]
    targets = lab.server4 if hosts == 1 else f"{lab.server4}-{lab.extra4[hosts - 2].split('.')[-1]}"
    portprobe, nmap = find_portprobe(PORTPROBE), find_nmap()
    print(f"== {name}: {hosts} host(s) x ports {ports}{' --all' if show_all else ''} ==")
    workdir = tmp / name
    workdir.mkdir()
    pair = run_interleaved(
        lab,
        nmap_argv=lambda out: [nmap, "-sT", f"-p{ports}", "-n", "-Pn", "-oX", str(out), targets],
        portprobe_argv=lambda out: [
            portprobe,
            targets,
            "-p",
            ports,
            *(["--all"] if show_all else []),
            "-q",
            "-o",
            str(out),
        ],
        runs=runs,
        workdir=workdir,
        timeout=timeout,
        portprobe_suffix=".csv",
    )
    return report_pair(name, pair, target_ratio=target, hosts=hosts)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: exit 0 when every case passes."""
    parser = bench_args(__doc__.splitlines()[0], default_runs=3)
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="only these")
    args = parser.parse_args(argv)
    global PORTPROBE
    PORTPROBE = args.portprobe
    names = args.case or list(CASES)
    extra = max(CASES[n][0] for n in names) - 1
    summaries = []
    with (
        tempfile.TemporaryDirectory(prefix="portprobe-bench-") as tmp,
        Lab(tcp=LAB_TCP, filtered_tcp=LAB_FILTERED_TCP, extra_hosts=extra) as lab,
    ):
        for name in names:
            summaries.append(run_case(name, lab, args.runs, args.timeout, Path(tmp)))
    print()
    print_summary_table(summaries)
    return 0 if all(s.passed for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
