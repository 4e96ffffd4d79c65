"""Benchmark: CPU time per probe of 64 lab hosts x ports 1-10000, portprobe against ``nmap -sT``.

Run from the repository root, as root (the lab needs network namespaces)::

    sudo python3 bench/probe_cpu.py [--runs 3] [--portprobe PATH] [--timeout SECONDS]

The lab of ``tcp_hosts`` (the same services on 198.18.0.2-65).  Each run, interleaved, is::

    nmap -sT -p1-10000 -n -Pn -oX out.xml 198.18.0.2-65
    portprobe 198.18.0.2-65 -p 1-10000 --no-evidence -q -o out.csv

640,000 TCP connects each.  A command's CPU time is what ``getrusage(RUSAGE_CHILDREN)``
gains while it runs: the process and every descendant it waited for (portprobe's worker
processes included; ``ip netns exec`` execs the tool, so it is the same process).  The
report gives user and system CPU per probe for both tools (median over the runs), the
ratio of user CPU against the target of at most 3x nmap's, the wall times, and whether
every state is identical in every run.

Pass: states identical in every run and median user CPU of portprobe <= 3 x nmap's.
Exit status 0 on pass, 1 otherwise.
"""

from __future__ import annotations

import resource
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    LAB_FILTERED_TCP,
    LAB_TCP,
    BenchSummary,
    Lab,
    Timed,
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

NAME = "probe_cpu"
TARGET_RATIO = 3.0  # portprobe's user CPU per probe, at most this many times nmap's
HOSTS = 64
PORTS = 10000
TARGETS = "198.18.0.2-65"


@dataclass(frozen=True, slots=True)
class Cpu:
    """One command's wall time and CPU seconds (its own and its waited-for descendants')."""

    wall: float
    user: float
    system: float


@dataclass(slots=True)
class Tool:
    """One tool's runs."""

    name: str
    runs: list[Cpu] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        """The median of one of :class:`Cpu`'s fields over the runs."""
        return statistics.median(getattr(run, attribute) for run in self.runs)


def cpu_run(lab: Lab, argv: Sequence[str], *, timeout: float) -> tuple[Cpu, Timed]:
    """Run ``argv`` in the lab; its wall time and the CPU its process tree used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    timed = timed_run(lab, argv, timeout=timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = Cpu(timed.seconds, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime)
    return cpu, timed


def _per_probe(seconds: float) -> str:
    return f"{seconds / (HOSTS * PORTS) * 1e6:5.2f} us"


def run(argv: Sequence[str] | None = None) -> BenchSummary:
    """Run the benchmark and print its report; return its summary."""
    args = bench_args(__doc__.splitlines()[0], default_runs=3).parse_args(argv)
    portprobe, nmap = find_portprobe(args.portprobe), find_nmap()
    print(f"== {NAME}: {HOSTS} hosts x ports 1-{PORTS}, {args.runs} runs ==")
    tools = (Tool("nmap"), Tool("portprobe"))
    identical_runs = 0
    first_diff = None
    counts = ("", "")
    notes: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="portprobe-bench-") as tmp,
        Lab(tcp=LAB_TCP, filtered_tcp=LAB_FILTERED_TCP, extra_hosts=HOSTS - 1) as lab,
    ):
        # The range must be exactly the lab's addresses: nothing else may be probed.
        assert [lab.server4, *lab.extra4][-1] == "198.18.0.65", lab.extra4[-1]
        for i in range(1, args.runs + 1):
            xml, csv = Path(tmp) / f"nmap-{i}.xml", Path(tmp) / f"portprobe-{i}.csv"
            n_cpu, _ = cpu_run(
                lab,
                [nmap, "-sT", f"-p1-{PORTS}", "-n", "-Pn", "-oX", str(xml), TARGETS],
                timeout=args.timeout,
            )
            p_cpu, _ = cpu_run(
                lab,
                [portprobe, TARGETS, "-p", f"1-{PORTS}", "--no-evidence", "-q", "-o", str(csv)],
                timeout=args.timeout,
            )
            tools[0].runs.append(n_cpu)
            tools[1].runs.append(p_cpu)
            run_notes: list[str] = []
            nmap_states = (
                nmap_full_states(parse_nmap_xml(xml), notes=run_notes) if xml.exists() else {}
            )
            listed = parse_portprobe_csv(csv, notes=run_notes)
            full = {key: listed.get(key, "closed") for key in nmap_states}
            full.update(listed)
            cmp = compare(nmap_states, full)
            identical_runs += cmp.identical
            if not cmp.identical and first_diff is None:
                first_diff = cmp
            if i == 1:
                counts = (state_counts(nmap_states), state_counts(full))
            notes.extend(f"run {i}: {n}" for n in run_notes)
            print(
                f"  run {i}/{args.runs}: "
                + "   ".join(
                    f"{name} wall {c.wall:6.2f} s user {c.user:6.2f} s sys {c.system:6.2f} s"
                    for name, c in (("nmap", n_cpu), ("portprobe", p_cpu))
                )
            )
    print(f"\n== {NAME}: results (medians; per probe = / {HOSTS * PORTS:,}) ==")
    for tool in tools:
        user, system, wall = tool.median("user"), tool.median("system"), tool.median("wall")
        print(
            f"  {tool.name:<10} user {user:6.2f} s ({_per_probe(user)}/probe)   "
            f"sys {system:6.2f} s ({_per_probe(system)}/probe)   wall {wall:6.2f} s"
        )
    nmap_user, pp_user = tools[0].median("user"), tools[1].median("user")
    ratio = pp_user / nmap_user if nmap_user > 0 else float("inf")
    ratio_ok = ratio <= TARGET_RATIO
    wall_ratio = tools[1].median("wall") / tools[0].median("wall")
    print(
        f"  user CPU portprobe/nmap: {ratio:.2f}   target <= {TARGET_RATIO:g}: "
        f"{'met' if ratio_ok else 'NOT met'}"
    )
    print(f"  wall portprobe/nmap: {wall_ratio:.3f} (information only)")
    identical = identical_runs == args.runs
    print(
        f"  states identical: {'yes' if identical else 'no'}"
        f" ({identical_runs} of {args.runs} runs, {HOSTS * PORTS:,} ports each)"
    )
    print(f"  nmap states (run 1):      {counts[0]}")
    print(f"  portprobe states (run 1): {counts[1]}")
    if first_diff is not None:
        print_comparison(first_diff, "nmap", "portprobe", indent="    ")
    for note in notes:
        print(f"  note: {note}")
    passed = identical and ratio_ok
    print(f"  RESULT: {'PASS' if passed else 'FAIL'}")
    return BenchSummary(
        name=NAME,
        result=(
            f"user pp {_per_probe(pp_user).strip()} / nmap {_per_probe(nmap_user).strip()} "
            f"per probe = {ratio:.2f}; identical {'yes' if identical else 'no'}"
        ),
        target=f"user CPU ratio <= {TARGET_RATIO:g}, identical",
        passed=passed,
    )


def main() -> int:
    """Command-line entry point: exit 0 when the benchmark passes."""
    return 0 if run().passed else 1


if __name__ == "__main__":
    sys.exit(main())
