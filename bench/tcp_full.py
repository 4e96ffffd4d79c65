"""Benchmark: every TCP port (1-65535) of one lab host, portprobe against ``nmap -sT``.

Run from the repository root, as root (the lab needs network namespaces)::

    sudo python3 bench/tcp_full.py [--runs 3] [--portprobe PATH] [--timeout SECONDS]

The lab (``tests/netlab.py``) serves 22 (banner), 80 (http), 443 (open), 2451 (http),
3451 (silent: accepts, never speaks) and 8080 (open) on 198.18.0.2, and drops SYNs to 81
and 444 (filtered).  Each run, interleaved, is::

    nmap -sT -p- -n -Pn -oX out.xml 198.18.0.2
    portprobe 198.18.0.2 -p- -q --no-evidence -o out.json

``--no-evidence``: ``nmap -sT`` identifies no services, so neither does portprobe here
(``bench/service_id.py`` compares evidence with ``nmap -sV``).

Pass: all 65,535 states identical in every run and median(portprobe) / median(nmap) <= 1.0.
Exit status 0 on pass, 1 otherwise.  portprobe is the one next to ``sys.executable``, on
``PATH``, or in ``.venv/bin`` (see ``common.find_portprobe``).
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

NAME = "tcp_full"
TARGET_RATIO = 1.0
SERVER = "198.18.0.2"


def run(argv: Sequence[str] | None = None) -> BenchSummary:
    """Run the benchmark and print its report; return its summary."""
    args = bench_args(__doc__.splitlines()[0], default_runs=3).parse_args(argv)
    portprobe, nmap = find_portprobe(args.portprobe), find_nmap()
    print(f"== {NAME}: 1 host x 65535 TCP ports, {args.runs} runs, portprobe = {portprobe} ==")
    with service_lab() as (lab, workdir):
        assert lab.server4 == SERVER, lab.server4  # only ever scan the lab's own address
        pair = run_interleaved(
            lab,
            nmap_argv=lambda out: [nmap, "-sT", "-p-", "-n", "-Pn", "-oX", str(out), SERVER],
            portprobe_argv=lambda out: [
                portprobe,
                SERVER,
                "-p-",
                "-q",
                "--no-evidence",
                "-o",
                str(out),
            ],
            runs=args.runs,
            workdir=workdir,
            timeout=args.timeout,
        )
    return report_pair(NAME, pair, target_ratio=TARGET_RATIO, hosts=1)


def main() -> int:
    """Command-line entry point: exit 0 when the benchmark passes."""
    return 0 if run().passed else 1


if __name__ == "__main__":
    sys.exit(main())
