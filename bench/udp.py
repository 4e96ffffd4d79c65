"""Benchmark: UDP against a Linux host with default ICMP rate limits, beside nmap -sU.

Run from the repository root, as root (the lab needs network namespaces)::

    sudo python3 bench/udp.py [--runs 1] [--ipv6] [--portprobe PATH] [--timeout SECONDS]

The lab server answers DNS on 53 and NTP on 123 (well-formed queries only), echoes on 7,
holds 9999 bound and silent, drops 162 with nftables, and has 100 closed ports
(2000-2099). Its kernel keeps Linux's default ICMP rate limit (a burst of 6, then one
error per second per destination for IPv4), so every closed port beyond the burst costs
about a second: the floor of an exact scan is ``(100 - 6) * 1 s``, about 94 s. Per run,
interleaved, each after a 7 s pause that lets the bucket refill::

    nmap -sU -p LIST -n -Pn -oX out.xml 198.18.0.2
    portprobe 198.18.0.2 -sU -p LIST --all -q --no-evidence -o out.csv

It prints both tools' states per port (identical or not), the wall-time ratio
portprobe / nmap (target <= 0.8), and how far portprobe is above the floor.
Exit status 0 when the states are identical in every run and the ratio meets the target.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from common import (
    BenchSummary,
    Lab,
    bench_args,
    compare,
    find_nmap,
    find_portprobe,
    nmap_full_states,
    parse_nmap_xml,
    parse_portprobe_csv,
    print_comparison,
    print_summary_table,
    state_counts,
    timed_run,
)

NAME = "udp"
UDP_SERVICES = {53: "dns", 123: "ntp", 7: "echo", 9999: "silent"}
DROPPED = [162]
CLOSED = range(2000, 2100)
PORTS = ",".join(str(p) for p in sorted([*UDP_SERVICES, *DROPPED, *CLOSED]))
TARGET_RATIO = 0.8
LINUX_BURST = 6
# Before each run, let the target's ICMP bucket refill (6 tokens at one a second), so that
# neither tool starts with a budget the other one drained.
REFILL = 7.0


def run(argv: Sequence[str] | None = None) -> BenchSummary:
    """Run the benchmark and print its report; return its summary."""
    parser = bench_args(__doc__.splitlines()[0], default_runs=1)
    parser.add_argument("--ipv6", action="store_true", help="scan the lab's IPv6 address")
    args = parser.parse_args(argv)
    portprobe, nmap = find_portprobe(args.portprobe), find_nmap()
    nmap_s: list[float] = []
    pp_s: list[float] = []
    identical = 0
    notes: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="portprobe-bench-") as tmp,
        Lab(udp=UDP_SERVICES, filtered_udp=DROPPED) as lab,
    ):
        target = lab.server6 if args.ipv6 else lab.server4
        family = ["-6"] if args.ipv6 else []
        print(
            f"== {NAME}: {target}, {len(PORTS.split(','))} UDP ports (100 closed, dns, ntp, "
            f"echo, silent, dropped); default ICMP rate limits; {args.runs} run(s) each =="
        )
        for i in range(1, args.runs + 1):
            xml_path, csv_path = Path(tmp) / f"nmap-{i}.xml", Path(tmp) / f"pp-{i}.csv"
            time.sleep(REFILL)
            t_nmap = timed_run(
                lab,
                [nmap, *family, "-sU", "-p", PORTS, "-n", "-Pn", "-oX", str(xml_path), target],
                timeout=args.timeout,
            )
            time.sleep(REFILL)
            t_pp = timed_run(
                lab,
                [portprobe, target, "-sU", "-p", PORTS, "--all", "-q", "--no-evidence",
                 "-o", str(csv_path)],
                timeout=args.timeout,
            )  # fmt: skip
            nmap_states = nmap_full_states(parse_nmap_xml(xml_path), notes=notes)
            pp_states = parse_portprobe_csv(csv_path, notes=notes)
            cmp = compare(nmap_states, pp_states)
            identical += cmp.identical
            nmap_s.append(t_nmap.seconds)
            pp_s.append(t_pp.seconds)
            print(f"  run {i}: nmap      {t_nmap.seconds:7.2f} s   {state_counts(nmap_states)}")
            print(f"  run {i}: portprobe {t_pp.seconds:7.2f} s   {state_counts(pp_states)}")
            print_comparison(cmp, "nmap", "portprobe", indent="    ")
            for key in (k for k in sorted(nmap_states) if k[1] < 2000 or k[1] > 2099):
                print(f"    {key[1]}/udp: nmap {nmap_states[key]}, portprobe {pp_states.get(key)}")
    runs = len(pp_s)
    ratio = statistics.median(pp_s) / statistics.median(nmap_s)
    floor = (len(CLOSED) - LINUX_BURST) * (0.1 if args.ipv6 else 1.0)
    print(f"\n== {NAME}: results ==")
    print(
        f"  nmap median {statistics.median(nmap_s):.1f} s, portprobe median "
        f"{statistics.median(pp_s):.1f} s: ratio {ratio:.3f} (target <= {TARGET_RATIO})"
    )
    print(
        f"  ICMP floor ~{floor:.0f} s ({len(CLOSED)} closed ports, burst {LINUX_BURST}); "
        f"portprobe is {statistics.median(pp_s) - floor:+.1f} s from it"
    )
    print(f"  states identical to nmap in {identical} of {runs} runs")
    for note in notes:
        print(f"  note: {note}")
    passed = identical == runs and ratio <= TARGET_RATIO
    return BenchSummary(
        name=NAME + ("-ipv6" if args.ipv6 else ""),
        result=f"{ratio:.2f}x nmap -sU ({statistics.median(pp_s):.1f} s vs "
        f"{statistics.median(nmap_s):.1f} s), states identical {identical}/{runs}",
        target=f"<= {TARGET_RATIO}x, identical",
        passed=passed,
    )


if __name__ == "__main__":
    summary = run()
    print_summary_table([summary])
    sys.exit(0 if summary.passed else 1)
