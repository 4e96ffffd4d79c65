"""Shared helpers of portprobe's benchmarks: find the tools, time them in the lab, compare scans.

Not a benchmark itself; ``bench/tcp_full.py``, ``tcp_hosts.py``, ``lossy.py`` and
``memory.py`` import it (run them from the repository root, as root, e.g.
``python3 bench/tcp_full.py --runs 3``).

Rules and theory:

- Every network command runs inside a namespace: the lab's CLIENT namespace
  (``tests/netlab.py``) or a bare one, so traffic only ever reaches 198.18.0.0/15 and
  2001:db8::/32 inside the lab.  Wall time is ``time.perf_counter`` around
  ``lab.run``: it includes process start-up, which is what a user waits for, and is the
  same ``ip netns exec`` overhead for both tools.
- The tools' runs are interleaved (nmap, portprobe, nmap, portprobe, ...) so that any drift
  of the machine (other work, thermal, page cache) hits both alike.
- A comparison is exact over every scanned port.  Both tools report the way a user runs
  them: neither lists closed ports one by one.  portprobe's JSON lists every port that is
  not closed and counts the closed ones in ``end.summary``; every scanned port it does not
  list is taken as closed, and that count must match (``portprobe_full_states``).  (With
  ``--all`` portprobe would also render a 65,535-row terminal table, which nmap never
  prints: that measures tabulate, not scanning.)  nmap's XML lists only the "interesting"
  ports and folds the rest
  into ``<extraports state=... count=...>``; nmap 7.93 also names those ports in
  ``<extrareasons ports="...">``, which we use when present.  Otherwise an unlisted port
  takes its host's extraports state only if that state is ``closed`` (the only state the
  benchmarks expect to be folded); anything else becomes ``unknown`` and shows up as a
  difference.
- The set of scanned ports comes from nmap's own ``<scaninfo services="...">``, so
  ``--top-ports`` needs no knowledge of either tool's port table.
"""

from __future__ import annotations

import argparse
import csv
import ipaddress
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TESTS_DIR = REPO / "tests"
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))
from netlab import Lab  # noqa: E402  (tests/ is not a package: it needs the path first)

__all__ = [
    "LAB_FILTERED_TCP",
    "LAB_OPEN_TCP",
    "LAB_TCP",
    "REPO",
    "BenchSummary",
    "Comparison",
    "Key",
    "Lab",
    "NmapScan",
    "PairResult",
    "Timed",
    "bench_args",
    "compare",
    "find_nmap",
    "find_portprobe",
    "format_key",
    "nmap_full_states",
    "parse_nmap_xml",
    "parse_port_spec",
    "parse_portprobe_csv",
    "portprobe_full_states",
    "print_comparison",
    "print_summary_table",
    "report_pair",
    "run_interleaved",
    "service_lab",
    "state_counts",
    "timed_run",
]

# (host, port, protocol): the identity of one scanned port.
Key = tuple[str, int, str]

# The services of the single-host benchmarks (tcp_full, lossy).
LAB_TCP: dict[int, str] = {
    22: "banner",
    80: "http",
    443: "open",
    2451: "http",
    3451: "silent",
    8080: "open",
}
LAB_OPEN_TCP: tuple[int, ...] = tuple(sorted(LAB_TCP))
LAB_FILTERED_TCP: tuple[int, ...] = (81, 444)

MAX_DIFFS_SHOWN = 15
# Both tools end with a line saying how long the scan proper took ("... scanned in 1.23
# seconds" / "... scanned in 1.21 s"); the rest of the wall time is start-up and output.
_SCANNED_IN = re.compile(r"scanned in ([0-9]+(?:\.[0-9]+)?) s")


# --------------------------------------------------------------------------- tools


def find_portprobe(explicit: str | None = None) -> str:
    """Path of the ``portprobe`` executable to benchmark.

    Order: ``explicit`` (``--portprobe``), the one next to ``sys.executable`` (a venv's
    python), ``PATH``, then the repository's dev venv (``.venv/bin/portprobe``), since
    running as root usually drops the venv from ``PATH``.
    """
    if explicit:
        return _must_be_executable(explicit)
    candidates = [
        Path(sys.executable).parent / "portprobe",
        Path(shutil.which("portprobe") or "/nonexistent"),
        REPO / ".venv" / "bin" / "portprobe",
    ]
    for path in candidates:
        if os.access(path, os.X_OK) and path.is_file():
            return str(path)
    raise SystemExit("bench: cannot find the portprobe executable (use --portprobe PATH)")


def find_nmap() -> str:
    """Path of ``nmap``; exits with a message when it is missing."""
    path = shutil.which("nmap")
    if path is None and os.access("/usr/bin/nmap", os.X_OK):
        path = "/usr/bin/nmap"  # root's PATH may be minimal
    if path is None:
        raise SystemExit("bench: nmap not found (apt-get install nmap)")
    return path


def _must_be_executable(path: str) -> str:
    if not os.access(path, os.X_OK):
        raise SystemExit(f"bench: {path} is not executable")
    return path


def bench_args(description: str, *, default_runs: int) -> argparse.ArgumentParser:
    """The options every benchmark shares: ``--runs``, ``--portprobe``, ``--timeout``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--runs", type=int, default=default_runs, help=f"runs per tool (default {default_runs})"
    )
    parser.add_argument("--portprobe", help="the portprobe executable (default: found)")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds allowed per command (default 900)"
    )
    return parser


@dataclass(frozen=True, slots=True)
class Timed:
    """One command's wall time, its captured outcome, and the user and system CPU seconds
    of its process tree (every descendant it waited for, worker processes included)."""

    seconds: float
    proc: subprocess.CompletedProcess[str]
    user: float = 0.0
    system: float = 0.0

    @property
    def self_reported(self) -> float | None:
        """The scan time the tool printed itself ("scanned in X s"), if it did."""
        found = _SCANNED_IN.findall(self.proc.stdout)
        return float(found[-1]) if found else None


@contextmanager
def service_lab(hosts: int = 1) -> Iterator[tuple[Lab, Path]]:
    """The lab of the TCP benchmarks, and a scratch directory for the reports.

    ``LAB_TCP`` served and ``LAB_FILTERED_TCP`` dropped on 198.18.0.2 and the next
    ``hosts - 1`` addresses (at most 198.18.0.65): the ranges the benchmarks scan must be
    exactly these, nothing else may be probed, so that is checked here.
    """
    with (
        tempfile.TemporaryDirectory(prefix="portprobe-bench-") as tmp,
        Lab(tcp=LAB_TCP, filtered_tcp=LAB_FILTERED_TCP, extra_hosts=hosts - 1) as lab,
    ):
        last = [lab.server4, *lab.extra4][-1]
        assert last == f"198.18.0.{hosts + 1}", last
        yield lab, Path(tmp)


def timed_run(lab: Lab, argv: Sequence[str], *, timeout: float) -> Timed:
    """Run ``argv`` in the lab's CLIENT namespace; time its wall clock and its CPU.

    The CPU is what ``getrusage(RUSAGE_CHILDREN)`` gains meanwhile: ``ip netns exec``
    execs the command, so it is the command's own and its waited-for descendants'.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = lab.run(list(argv), timeout=timeout)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    if proc.returncode != 0:
        # Printed, not raised: the report must still come out, and the missing or
        # partial output file will show up as differences.
        print(f"  ! exit {proc.returncode}: {' '.join(argv)}")
        for line in (proc.stderr.strip().splitlines() or ["(no stderr)"])[-10:]:
            print(f"  ! {line}")
    return Timed(seconds, proc, user, system)


# --------------------------------------------------------------------------- parsing


def parse_port_spec(spec: str) -> list[int]:
    """Expand nmap's ``services`` text (``1-1000,2451``) into a sorted port list."""
    ports: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        # nmap prefixes a protocol when several are scanned ("T:1-10"); keep the numbers.
        part = part.split(":", 1)[-1]
        low, _, high = part.partition("-")
        ports.update(range(int(low), int(high or low) + 1))
    return sorted(ports)


@dataclass(slots=True)
class NmapScan:
    """What one nmap ``-oX`` file says.

    ``listed``: the ports nmap printed one by one.  ``extraports``: per host, the count of
    folded ports per state.  ``folded``: folded ports whose number nmap gave (in
    ``<extrareasons ports=...>``), with their state.  ``scanned``: per protocol, the ports
    nmap scanned (``<scaninfo>``).  ``hosts``: every host reported, in document order.
    """

    listed: dict[Key, str] = field(default_factory=dict)
    extraports: dict[str, dict[str, int]] = field(default_factory=dict)
    folded: dict[Key, str] = field(default_factory=dict)
    scanned: dict[str, list[int]] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)


def parse_nmap_xml(path: Path) -> NmapScan:
    """Read an nmap ``-oX`` file (ours, so trusted to be well formed)."""
    root = ET.parse(path).getroot()
    scan = NmapScan()
    for info in root.iter("scaninfo"):
        proto = info.get("protocol", "tcp")
        scan.scanned[proto] = parse_port_spec(info.get("services", ""))
    for host in root.iter("host"):
        addr_el = next(
            (a for a in host.iter("address") if a.get("addrtype") in ("ipv4", "ipv6")), None
        )
        if addr_el is None:
            continue
        addr = addr_el.get("addr", "")
        scan.hosts.append(addr)
        per_state = scan.extraports.setdefault(addr, {})
        for extra in host.iter("extraports"):
            state = extra.get("state", "unknown")
            per_state[state] = per_state.get(state, 0) + int(extra.get("count", "0"))
            for why in extra.iter("extrareasons"):
                ports = why.get("ports")
                if ports:
                    proto = why.get("proto", "tcp")
                    for port in parse_port_spec(ports):
                        scan.folded[(addr, port, proto)] = state
        for port_el in host.iter("port"):
            state_el = port_el.find("state")
            key = (addr, int(port_el.get("portid", "0")), port_el.get("protocol", "tcp"))
            scan.listed[key] = state_el.get("state", "unknown") if state_el is not None else "?"
    return scan


def nmap_full_states(scan: NmapScan, *, notes: list[str] | None = None) -> dict[Key, str]:
    """Every scanned (host, port, proto) with its state, folded ports included.

    Appends to ``notes`` anything that makes the expansion doubtful (non-closed folded
    ports nmap did not name, counts that do not add up).
    """
    states: dict[Key, str] = {}
    for host in scan.hosts:
        extra = scan.extraports.get(host, {})
        for state, count in sorted(extra.items()):
            if state != "closed" and notes is not None:
                notes.append(f"nmap folded {count} {state} ports of {host}")
        for proto, ports in scan.scanned.items():
            listed = sum(1 for p in ports if (host, p, proto) in scan.listed)
            if notes is not None and listed + sum(extra.values()) != len(ports):
                notes.append(
                    f"nmap {host}: {listed} listed + {sum(extra.values())} folded"
                    f" != {len(ports)} scanned"
                )
            for port in ports:
                key = (host, port, proto)
                if key in scan.listed:
                    states[key] = scan.listed[key]
                elif key in scan.folded:
                    states[key] = scan.folded[key]
                elif list(extra) == ["closed"]:
                    states[key] = "closed"
                else:
                    states[key] = "unknown"
    return states


def parse_portprobe_csv(path: Path, *, notes: list[str] | None = None) -> dict[Key, str]:
    """Read a portprobe CSV report into {(host, port, proto): state}.

    A missing file gives an empty mapping (and a note), so a crashed run is reported as
    differences instead of stopping the benchmark.
    """
    states: dict[Key, str] = {}
    if not path.exists():
        if notes is not None:
            notes.append(f"portprobe wrote no {path.name}")
        return states
    with path.open(newline="") as stream:
        for row in csv.DictReader(stream):
            key = (row["host"], int(row["port"]), row["protocol"])
            if key in states and notes is not None:
                notes.append(f"portprobe listed {format_key(key)} twice")
            states[key] = row["state"]
    return states


def portprobe_full_states(
    path: Path, universe: Iterable[Key], *, notes: list[str] | None = None
) -> dict[Key, str]:
    """Read a portprobe JSON report (run without ``--all``) over every scanned port.

    Listed ports keep their state; every other port of ``universe`` is closed, and the
    number of those must equal the closed count of the report's summary, or a note says so.
    A missing or unreadable file gives an empty mapping (and a note).
    """
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        if notes is not None:
            notes.append(f"portprobe wrote no readable {path.name}: {exc}")
        return {}
    listed: dict[Key, str] = {}
    for row in doc["results"]:
        key = (row["host"], int(row["port"]), row["protocol"])
        if key in listed and notes is not None:
            notes.append(f"portprobe listed {format_key(key)} twice")
        listed[key] = row["state"]
    states = {key: listed.get(key, "closed") for key in universe}
    unlisted = sum(1 for key in states if key not in listed)
    closed = doc["end"]["summary"]["states"].get("closed", 0)
    if notes is not None and unlisted != closed:
        notes.append(f"portprobe counted {closed} closed ports, but {unlisted} were unlisted")
    states.update(listed)  # a listed port outside the universe shows up as a difference
    return states


def state_counts(states: Mapping[Key, str]) -> str:
    """``open 6, filtered 2, closed 65527``: most common state last."""
    counts = Counter(states.values())
    return ", ".join(f"{s} {n}" for s, n in sorted(counts.items(), key=lambda kv: kv[1])) or "-"


# --------------------------------------------------------------------------- comparing


def _sort_key(key: Key) -> tuple[int, int, int, str]:
    addr = ipaddress.ip_address(key[0])
    return (addr.version, int(addr), key[1], key[2])


def format_key(key: Key) -> str:
    """``198.18.0.2 443/tcp``."""
    return f"{key[0]} {key[1]}/{key[2]}"


@dataclass(frozen=True, slots=True)
class Comparison:
    """Two scans compared port by port: ``diffs`` holds (key, state A, state B)."""

    total: int
    diffs: list[tuple[Key, str, str]]

    @property
    def identical(self) -> bool:
        """True when every port has the same state in both scans (and both have data)."""
        return self.total > 0 and not self.diffs


def compare(a: Mapping[Key, str], b: Mapping[Key, str]) -> Comparison:
    """Compare two full scans; a port present in only one is a difference (``absent``)."""
    keys = sorted(set(a) | set(b), key=_sort_key)
    diffs = [
        (k, a.get(k, "absent"), b.get(k, "absent"))
        for k in keys
        if a.get(k, "absent") != b.get(k, "absent")
    ]
    return Comparison(total=len(keys), diffs=diffs)


def print_comparison(cmp: Comparison, a_name: str, b_name: str, *, indent: str = "  ") -> None:
    """The first differences of a comparison, plus a tally of the kinds of flip."""
    flips = Counter((sa, sb) for _, sa, sb in cmp.diffs)
    tally = ", ".join(f"{sa}->{sb} x{n}" for (sa, sb), n in flips.most_common())
    print(f"{indent}{len(cmp.diffs)} of {cmp.total} ports differ ({a_name}->{b_name}: {tally})")
    for key, sa, sb in cmp.diffs[:MAX_DIFFS_SHOWN]:
        print(f"{indent}  {format_key(key):<24} {a_name} {sa:<14} {b_name} {sb}")
    if len(cmp.diffs) > MAX_DIFFS_SHOWN:
        print(f"{indent}  ... {len(cmp.diffs) - MAX_DIFFS_SHOWN} more")


# --------------------------------------------------------------------------- runs


@dataclass(slots=True)
class PairResult:
    """Interleaved runs of nmap and portprobe: wall times, full states and each run (CPU)."""

    nmap_seconds: list[float] = field(default_factory=list)
    portprobe_seconds: list[float] = field(default_factory=list)
    nmap_reported: list[float] = field(default_factory=list)
    portprobe_reported: list[float] = field(default_factory=list)
    nmap_states: list[dict[Key, str]] = field(default_factory=list)
    portprobe_states: list[dict[Key, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    nmap_runs: list[Timed] = field(default_factory=list)
    portprobe_runs: list[Timed] = field(default_factory=list)


ArgvFor = Callable[[Path], list[str]]


def run_interleaved(
    lab: Lab,
    *,
    nmap_argv: ArgvFor,
    portprobe_argv: ArgvFor,
    runs: int,
    workdir: Path,
    timeout: float,
    portprobe_suffix: str = ".json",
) -> PairResult:
    """Run nmap then portprobe, ``runs`` times, each writing a fresh file in ``workdir``.

    ``nmap_argv(path)`` / ``portprobe_argv(path)`` build the command lines for an output
    file (``.xml`` / ``portprobe_suffix``: ``.json``, or ``.csv``, read as listing every
    port that is not closed, and every port with ``--all``).
    """
    result = PairResult()
    for i in range(1, runs + 1):
        xml_path = workdir / f"nmap-{i}.xml"
        json_path = workdir / f"portprobe-{i}{portprobe_suffix}"
        t_nmap = timed_run(lab, nmap_argv(xml_path), timeout=timeout)
        t_pp = timed_run(lab, portprobe_argv(json_path), timeout=timeout)
        result.nmap_runs.append(t_nmap)
        result.portprobe_runs.append(t_pp)
        result.nmap_seconds.append(t_nmap.seconds)
        result.portprobe_seconds.append(t_pp.seconds)
        if t_nmap.self_reported is not None:
            result.nmap_reported.append(t_nmap.self_reported)
        if t_pp.self_reported is not None:
            result.portprobe_reported.append(t_pp.self_reported)
        notes: list[str] = []
        nmap_states = (
            nmap_full_states(parse_nmap_xml(xml_path), notes=notes) if xml_path.exists() else {}
        )
        if not xml_path.exists():
            notes.append("nmap wrote no XML")
        result.nmap_states.append(nmap_states)
        if portprobe_suffix == ".csv":
            listed = parse_portprobe_csv(json_path, notes=notes)
            full = {key: listed.get(key, "closed") for key in nmap_states}
            full.update(listed)
            result.portprobe_states.append(full)
        else:
            result.portprobe_states.append(
                portprobe_full_states(json_path, nmap_states.keys(), notes=notes)
            )
        result.notes.extend(f"run {i}: {n}" for n in notes)
        print(
            f"  run {i}/{runs}: nmap {t_nmap.seconds:7.2f} s   portprobe {t_pp.seconds:7.2f} s"
            f"   (self-reported scan: nmap {_fmt(t_nmap.self_reported)},"
            f" portprobe {_fmt(t_pp.self_reported)})"
        )
    return result


def _fmt(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds:.2f} s"


def _times_line(name: str, seconds: Sequence[float]) -> str:
    return (
        f"  {name:<10} median {statistics.median(seconds):7.2f} s   min {min(seconds):7.2f} s"
        f"   max {max(seconds):7.2f} s   ({len(seconds)} runs)"
    )


@dataclass(frozen=True, slots=True)
class BenchSummary:
    """One benchmark's outcome, for ``run_all.py``'s table."""

    name: str
    result: str
    target: str
    passed: bool


def report_pair(name: str, pair: PairResult, *, target_ratio: float, hosts: int) -> BenchSummary:
    """Print times, the median ratio and the exact comparison of every run; pass/fail.

    Passes when every run's states are identical between the tools and
    median(portprobe) / median(nmap) <= ``target_ratio``.
    """
    print(f"\n== {name}: results ==")
    print(_times_line("nmap", pair.nmap_seconds))
    print(_times_line("portprobe", pair.portprobe_seconds))
    ratio = statistics.median(pair.portprobe_seconds) / statistics.median(pair.nmap_seconds)
    ratio_ok = ratio <= target_ratio
    if pair.nmap_reported and pair.portprobe_reported:
        nmap_scan = statistics.median(pair.nmap_reported)
        pp_scan = statistics.median(pair.portprobe_reported)
        print(
            f"  self-reported scan time (median, excludes start-up and output): nmap "
            f"{nmap_scan:.2f} s, portprobe {pp_scan:.2f} s, ratio {pp_scan / nmap_scan:.3f}"
            " (information only)"
        )
    print(
        f"  ratio portprobe/nmap (median): {ratio:.3f}   target <= {target_ratio:.2f}: "
        f"{'met' if ratio_ok else 'NOT met'}"
    )
    comparisons = [
        compare(n, p) for n, p in zip(pair.nmap_states, pair.portprobe_states, strict=True)
    ]
    identical = all(c.identical for c in comparisons)
    runs = len(comparisons)
    per_host = comparisons[0].total // max(hosts, 1) if comparisons else 0
    print(
        f"  states identical: {'yes' if identical else 'no'}"
        f" ({comparisons[0].total if comparisons else 0} ports = {hosts} host(s) x {per_host},"
        f" {sum(c.identical for c in comparisons)} of {runs} runs identical)"
    )
    if pair.nmap_states:
        print(f"  nmap states (run 1):      {state_counts(pair.nmap_states[0])}")
        print(f"  portprobe states (run 1): {state_counts(pair.portprobe_states[0])}")
    for i, cmp in enumerate(comparisons, start=1):
        if not cmp.identical:
            print(f"  run {i} differences:")
            print_comparison(cmp, "nmap", "portprobe", indent="    ")
            break  # the first differing run is enough detail; the count line covers the rest
    for note in pair.notes:
        print(f"  note: {note}")
    passed = identical and ratio_ok
    print(f"  RESULT: {'PASS' if passed else 'FAIL'}")
    return BenchSummary(
        name=name,
        result=(
            f"pp {statistics.median(pair.portprobe_seconds):.2f} s / nmap "
            f"{statistics.median(pair.nmap_seconds):.2f} s = {ratio:.2f}; "
            f"identical {'yes' if identical else 'no'}"
        ),
        target=f"ratio <= {target_ratio:g}, identical",
        passed=passed,
    )


def print_summary_table(rows: Iterable[BenchSummary]) -> None:
    """A plain-text table of benchmark outcomes."""
    rows = list(rows)
    widths = [
        max([len("benchmark"), *(len(r.name) for r in rows)]),
        max([len("result"), *(len(r.result) for r in rows)]),
        max([len("target"), *(len(r.target) for r in rows)]),
    ]
    header = ("benchmark", "result", "target", "pass")
    print("  ".join(h.ljust(w) for h, w in zip(header, [*widths, 4], strict=True)))
    print("  ".join("-" * w for w in [*widths, 4]))
    for r in rows:
        cells = (r.name, r.result, r.target, "yes" if r.passed else "NO")
        print("  ".join(c.ljust(w) for c, w in zip(cells, [*widths, 4], strict=True)))
