"""Benchmark: host discovery, portprobe against ``nmap -sn`` on the same lab.

Run from the repository root, as root (the lab needs network namespaces)::

    sudo python3 bench/discovery.py [--runs 3] [--portprobe PATH] [--timeout SECONDS]

The lab (``tests/lab_discovery.py``): 198.18.0.2-38 are live (37 addresses of the server
namespace; 198.18.0.4 answers only ICMP echoes, 198.18.0.5 only UDP, with
port-unreachable), and 198.18.2.0/27 is routed into the server namespace, whose
nftables drop it: 32 silent addresses. Each run, interleaved, is::

    nmap -sn -n -oX out.xml 198.18.0.2-38 198.18.2.0/27
    portprobe -sn -n -q -oX out.xml 198.18.0.2-38 198.18.2.0/27

Pass: in every run both tools find exactly the live addresses up and the rest down, and
median(portprobe) / median(nmap) <= 0.5. Exit status 0 on pass, 1 otherwise.
"""

from __future__ import annotations

import ipaddress
import statistics
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from common import BenchSummary, Lab, bench_args, find_nmap, find_portprobe, timed_run

NAME = "discovery"
TARGET_RATIO = 0.5
LIVE = "198.18.0.2-38"
SILENT = "198.18.2.0/27"
EXTRA_HOSTS = 36  # 198.18.0.3-38


def up_hosts(path: Path) -> set[str]:
    """The addresses an nmap-style XML report says are up."""
    if not path.exists():
        return set()
    root = ET.parse(path).getroot()
    found = set()
    for host in root.iter("host"):
        status = host.find("status")
        address = host.find("address")
        if status is not None and address is not None and status.get("state") == "up":
            found.add(address.get("addr", ""))
    return found


def run(argv: Sequence[str] | None = None) -> BenchSummary:
    """Run the benchmark and print its report; return its summary."""
    import lab_discovery  # in tests/, which common puts on the path

    args = bench_args(__doc__.splitlines()[0], default_runs=3).parse_args(argv)
    portprobe, nmap = find_portprobe(args.portprobe), find_nmap()
    live = [str(ipaddress.ip_address("198.18.0.2") + i) for i in range(EXTRA_HOSTS + 1)]
    silent = [str(a) for a in ipaddress.ip_network(SILENT)]
    print(f"== {NAME}: {len(live)} live and {len(silent)} silent addresses, {args.runs} runs ==")
    times: dict[str, list[float]] = {"nmap": [], "portprobe": []}
    exact = True
    with (
        tempfile.TemporaryDirectory(prefix="portprobe-bench-") as tmp,
        Lab(tcp={22: "open", 80: "http"}, extra_hosts=EXTRA_HOSTS) as lab,
    ):
        assert [lab.server4, *lab.extra4] == live, lab.extra4
        lab_discovery.prepare(lab, silent4=SILENT)
        commands = {
            "nmap": lambda out: [nmap, "-sn", "-n", "-oX", str(out), LIVE, SILENT],
            "portprobe": lambda out: [portprobe, "-sn", "-n", "-q", "-oX", str(out), LIVE, SILENT],
        }
        for i in range(1, args.runs + 1):
            line = []
            for tool, argv_for in commands.items():
                out = Path(tmp) / f"{tool}-{i}.xml"
                timed = timed_run(lab, argv_for(out), timeout=args.timeout)
                times[tool].append(timed.seconds)
                found = up_hosts(out)
                right = found == set(live)
                exact = exact and right
                wrong = sorted(found ^ set(live), key=ipaddress.ip_address)
                line.append(
                    f"{tool} {timed.seconds:6.2f} s, {len(found)} up"
                    + ("" if right else f" (WRONG: {', '.join(wrong[:8])})")
                )
            print(f"  run {i}/{args.runs}: " + "   ".join(line))
    nmap_median = statistics.median(times["nmap"])
    pp_median = statistics.median(times["portprobe"])
    ratio = pp_median / nmap_median
    passed = exact and ratio <= TARGET_RATIO
    print(f"\n== {NAME}: results ==")
    for tool, median in (("nmap", nmap_median), ("portprobe", pp_median)):
        runs = ", ".join(f"{t:.2f}" for t in times[tool])
        print(f"  {tool:<9} median {median:6.2f} s   ({runs})")
    print(f"  ratio portprobe/nmap (median): {ratio:.3f}   target <= {TARGET_RATIO}")
    print(f"  up and down exactly right in every run: {'yes' if exact else 'no'}")
    print(f"  RESULT: {'PASS' if passed else 'FAIL'}")
    return BenchSummary(
        name=NAME,
        result=(
            f"pp {pp_median:.2f} s / nmap {nmap_median:.2f} s = {ratio:.2f};"
            f" exact {'yes' if exact else 'no'}"
        ),
        target=f"ratio <= {TARGET_RATIO:g}, exact",
        passed=passed,
    )


def main() -> int:
    """Command-line entry point: exit 0 when the benchmark passes."""
    return 0 if run().passed else 1


if __name__ == "__main__":
    sys.exit(main())
