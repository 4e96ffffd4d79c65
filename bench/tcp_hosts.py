"""Benchmark: 64 lab hosts x nmap's top 1000 TCP ports, portprobe against ``nmap -sT``.

Run from the repository root, as root (the lab needs network namespaces)::

    sudo python3 bench/tcp_hosts.py [--runs 3] [--portprobe PATH] [--timeout SECONDS]

The lab's server namespace answers on 198.18.0.2-65 (``extra_hosts=63``); every address
serves the same sockets (22, 80, 443, 2451, 3451, 8080 open; 81 and 444 dropped, the
listeners being bound to the wildcard address).  Each run, interleaved, is::

    nmap -sT --top-ports 1000 -n -Pn -oX out.xml 198.18.0.2-65
    portprobe 198.18.0.2-65 --top-ports 1000 -q --no-evidence -o out.json

Pass: all 64,000 states identical in every run and median(portprobe) / median(nmap) <= 0.8.
The scanned port set is taken from nmap's XML, so a top-ports table that differs from
nmap's shows up as ``absent`` differences.  Exit status 0 on pass, 1 otherwise.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from common import (
    BenchSummary,
    bench_args,
    find_nmap,
    find_portprobe,
    report_pair,
    run_interleaved,
    service_lab,
)

NAME = "tcp_hosts"
TARGET_RATIO = 0.8
HOSTS = 64
TARGETS = "198.18.0.2-65"


def run(argv: Sequence[str] | None = None) -> BenchSummary:
    """Run the benchmark and print its report; return its summary."""
    args = bench_args(__doc__.splitlines()[0], default_runs=3).parse_args(argv)
    portprobe, nmap = find_portprobe(args.portprobe), find_nmap()
    print(f"== {NAME}: {HOSTS} hosts x top 1000 TCP ports, {args.runs} runs ==")
    with service_lab(HOSTS) as (lab, workdir):  # (checks the range is the lab's)
        pair = run_interleaved(
            lab,
            nmap_argv=lambda out: [
                nmap,
                "-sT",
                "--top-ports",
                "1000",
                "-n",
                "-Pn",
                "-oX",
                str(out),
                TARGETS,
            ],
            portprobe_argv=lambda out: [
                portprobe,
                TARGETS,
                "--top-ports",
                "1000",
                "-q",
                "--no-evidence",
                "-o",
                str(out),
            ],
            runs=args.runs,
            workdir=workdir,
            timeout=args.timeout,
        )
    return report_pair(NAME, pair, target_ratio=TARGET_RATIO, hosts=HOSTS)


def main() -> int:
    """Command-line entry point: exit 0 when the benchmark passes."""
    return 0 if run().passed else 1


if __name__ == "__main__":
    sys.exit(main())
