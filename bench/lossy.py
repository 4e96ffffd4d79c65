"""Benchmark: a delayed, lossy path; does portprobe still find every open port?

Run from the repository root, as root (the lab needs network namespaces)::

    sudo python3 bench/lossy.py [--runs 5] [--portprobe PATH] [--timeout SECONDS]

The lab's delayed path (198.18.1.2) adds 20 ms each way and drops 2 % of packets each way
(so a SYN/SYN-ACK exchange is lost about 4 % of the time); the services are those of
``tcp_full.py`` (22, 80, 443, 2451, 3451, 8080 open; 81 and 444 filtered).  The port list
is ``1-2000,2451,3451,8080``.  First one nmap run, then ``--runs`` portprobe runs with its
default ``--retries``::

    nmap -sT -p 1-2000,2451,3451,8080 -n -Pn -oX out.xml 198.18.1.2
    portprobe 198.18.1.2 -p 1-2000,2451,3451,8080 --all -q --no-evidence -o out.csv

Pass: every open port is reported open in every portprobe run ("no open port missed in K
of N runs", K == N).  The time ratio median(portprobe) / nmap and the state differences
from nmap are printed for information only: with loss, a closed port whose SYN or RST is
dropped on every try legitimately reads as filtered, for either tool.
Exit status 0 on pass, 1 otherwise.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from common import (
    LAB_FILTERED_TCP,
    LAB_OPEN_TCP,
    LAB_TCP,
    BenchSummary,
    Key,
    Lab,
    bench_args,
    compare,
    find_nmap,
    find_portprobe,
    nmap_full_states,
    parse_nmap_xml,
    parse_portprobe_csv,
    print_comparison,
    state_counts,
    timed_run,
)

NAME = "lossy"
TARGET = "198.18.1.2"
PORTS = "1-2000,2451,3451,8080"
DELAY_MS = 20
LOSS_PCT = 2


def _missed(states: dict[Key, str]) -> dict[int, str]:
    """The lab's open ports that a scan did not report open, with what it said instead."""
    found = {port: state for (_, port, _), state in states.items()}
    return {p: found.get(p, "absent") for p in LAB_OPEN_TCP if found.get(p) != "open"}


def run(argv: Sequence[str] | None = None) -> BenchSummary:
    """Run the benchmark and print its report; return its summary."""
    args = bench_args(__doc__.splitlines()[0], default_runs=5).parse_args(argv)
    portprobe, nmap = find_portprobe(args.portprobe), find_nmap()
    print(
        f"== {NAME}: {TARGET} delay {DELAY_MS} ms each way, loss {LOSS_PCT} % each way,"
        f" ports {PORTS}; 1 nmap run, {args.runs} portprobe runs =="
    )
    pp_seconds: list[float] = []
    pp_states: list[dict[Key, str]] = []
    notes: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="portprobe-bench-") as tmp,
        Lab(
            tcp=LAB_TCP, filtered_tcp=LAB_FILTERED_TCP, delay_ms=DELAY_MS, loss_pct=LOSS_PCT
        ) as lab,
    ):
        assert lab.delayed4 == TARGET, lab.delayed4  # only ever scan the lab's own address
        xml_path = Path(tmp) / "nmap.xml"
        t_nmap = timed_run(
            lab,
            [nmap, "-sT", "-p", PORTS, "-n", "-Pn", "-oX", str(xml_path), TARGET],
            timeout=args.timeout,
        )
        nmap_states = (
            nmap_full_states(parse_nmap_xml(xml_path), notes=notes) if xml_path.exists() else {}
        )
        print(f"  nmap:        {t_nmap.seconds:7.2f} s   {state_counts(nmap_states)}")
        for i in range(1, args.runs + 1):
            csv_path = Path(tmp) / f"portprobe-{i}.csv"
            timed = timed_run(
                lab,
                [
                    portprobe,
                    TARGET,
                    "-p",
                    PORTS,
                    "--all",
                    "-q",
                    "--no-evidence",
                    "-o",
                    str(csv_path),
                ],
                timeout=args.timeout,
            )
            states = parse_portprobe_csv(csv_path, notes=notes)
            pp_seconds.append(timed.seconds)
            pp_states.append(states)
            missed = _missed(states)
            miss_text = (
                "missed " + ", ".join(f"{p} ({s})" for p, s in missed.items()) if missed else ""
            )
            print(f"  portprobe {i}: {timed.seconds:7.2f} s   {state_counts(states)}   {miss_text}")

    print(f"\n== {NAME}: results ==")
    runs = len(pp_states)
    clean = sum(1 for s in pp_states if not _missed(s))
    missed_ports = Counter(p for s in pp_states for p in _missed(s))
    print(f"  no open port missed in {clean} of {runs} runs")
    if missed_ports:
        print(
            "  missed ports: "
            + ", ".join(f"{p} (in {n} runs)" for p, n in sorted(missed_ports.items()))
        )
    nmap_missed = _missed(nmap_states)
    print(
        "  nmap missed open ports: "
        + (", ".join(f"{p} ({s})" for p, s in nmap_missed.items()) if nmap_missed else "none")
    )
    median = statistics.median(pp_seconds)
    ratio = median / t_nmap.seconds
    print(
        f"  portprobe median {median:.2f} s (min {min(pp_seconds):.2f}, max "
        f"{max(pp_seconds):.2f}); nmap {t_nmap.seconds:.2f} s; ratio portprobe/nmap {ratio:.3f}"
    )
    comparisons = [compare(nmap_states, s) for s in pp_states]
    identical = sum(c.identical for c in comparisons)
    print(
        f"  states identical to nmap's: {identical} of {runs} runs; differing ports per run: "
        + ", ".join(str(len(c.diffs)) for c in comparisons)
        + " (loss can flip closed->filtered for either tool; not a pass criterion)"
    )
    worst = max(comparisons, key=lambda c: len(c.diffs))
    if worst.diffs:
        print("  the run with the most differences:")
        print_comparison(worst, "nmap", "portprobe", indent="    ")
    for note in notes:
        print(f"  note: {note}")
    passed = runs > 0 and clean == runs
    print(f"  RESULT: {'PASS' if passed else 'FAIL'}")
    return BenchSummary(
        name=NAME,
        result=(
            f"no open port missed in {clean}/{runs} runs; pp {median:.2f} s / nmap "
            f"{t_nmap.seconds:.2f} s = {ratio:.2f}; identical to nmap {identical}/{runs}"
        ),
        target="open ports found in every run",
        passed=passed,
    )


def main() -> int:
    """Command-line entry point: exit 0 when the benchmark passes."""
    return 0 if run().passed else 1


if __name__ == "__main__":
    sys.exit(main())
