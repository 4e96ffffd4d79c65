"""Benchmark: peak memory and time of ``diff``, ``merge`` and ``--resume`` of million-result
reports (issue 12: each under 300 MB).

Run from the repository root, as root (it creates a network namespace)::

    sudo python3 bench/report_memory.py [--portprobe PATH] [--timeout SECONDS]

Every scan runs in a fresh, bare namespace ``pprep<pid>`` made here (only ``lo``, no
routes: see ``bench/memory.py``), against its loopback ``127.0.0.1-16``, all 65,535 TCP
ports, ``--all --no-evidence``: 1,048,560 results a report. The namespace is deleted in
a ``finally``. The reports, in a temporary folder:

- ``a.csv``: a whole scan; ``b1.jsonl`` and ``b2.jsonl``: the two shards of another scan
  (``--seed 7 --shard K/2``), while a listener in the namespace (this script's, on ports
  22, 80 and 443) gives ``diff`` 48 ports to find opened;
- ``part.jsonl``: a third scan, interrupted with SIGINT about half-way.

Measured, each as one process whose peak RSS is its own (``os.wait4``'s ``ru_maxrss``;
``ip netns exec`` execs the command in place):

    portprobe merge b1.jsonl b2.jsonl -o b.jsonl      (1,048,560 results)
    portprobe diff a.csv b.jsonl                      (two reports of 1,048,560 results)
    portprobe scan --resume part.jsonl                (finishes the scan: 1,048,560 results)

Pass: each peak RSS under 300 MB, and each output whole (the merged and resumed reports
hold every result; the diff finds the 48 opened ports). Exit status 0 on pass, 1 otherwise.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from common import BenchSummary, bench_args, find_portprobe, print_summary_table
from memory import _delete_ns, _ip, _make_bare_ns

NAME = "report_memory"
TARGET_MB = 300.0
HOSTS = "127.0.0.1-16"
RESULTS = 16 * 65535
LISTENED = (22, 80, 443)
LISTENER = (
    "import socket, sys, time\n"
    "held = []\n"
    "for port in map(int, sys.argv[1:]):\n"
    "    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "    s.bind(('0.0.0.0', port)); s.listen(4096); held.append(s)\n"
    "print('ready', flush=True)\n"
    "time.sleep(3600)\n"
)


@dataclass(frozen=True, slots=True)
class Measured:
    """One command: its exit status, wall time, peak RSS (MB), and what it printed."""

    code: int
    seconds: float
    peak_mb: float
    stdout: str
    stderr: str


def _in_ns(ns: str, argv: Sequence[str]) -> list[str]:
    return [_ip(), "netns", "exec", ns, *argv]


def measure(
    argv: Sequence[str], folder: Path, timeout: float, *, stop_after: float = 0
) -> Measured:
    """Run ``argv`` (its own process: ``ip netns exec`` execs in place); SIGINT it after
    ``stop_after`` seconds when that is set."""
    out, err = folder / "stdout", folder / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), cwd=folder, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr
        )
        signalled = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            elapsed = time.perf_counter() - start
            if stop_after and not signalled and elapsed > stop_after:
                os.kill(proc.pid, signal.SIGINT)
                signalled = True
            if elapsed > timeout:
                os.kill(proc.pid, signal.SIGKILL)
            time.sleep(0.05)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen
    return Measured(
        proc.returncode,
        seconds,
        usage.ru_maxrss / 1024,
        out.read_text(errors="replace"),
        err.read_text(errors="replace"),
    )


def _results_in(path: Path) -> int:
    """The result records of a JSON Lines report."""
    with path.open("rb") as stream:
        return sum(line.startswith(b'{"type": "result"') for line in stream)


def _scan(ns: str, portprobe: str, folder: Path, timeout: float, *extra: str) -> Measured:
    argv = [portprobe, HOSTS, "-p-", "--all", "--no-evidence", "-q", *extra]
    found = measure(_in_ns(ns, argv), folder, timeout)
    if found.code != 0:
        raise SystemExit(f"bench: scan {' '.join(extra)} failed: {found.stderr[-500:]}")
    return found


def run(argv: Sequence[str] | None = None) -> BenchSummary:
    """Build the reports, measure the three commands, print the table; return the summary."""
    args = bench_args(__doc__.splitlines()[0], default_runs=1).parse_args(argv)
    portprobe = find_portprobe(args.portprobe)
    ns = f"pprep{os.getpid()}"
    rows: list[tuple[str, Measured, bool]] = []
    try:
        _make_bare_ns(ns)
        with tempfile.TemporaryDirectory(prefix="portprobe-bench-") as tmp:
            folder = Path(tmp)
            print(f"== {NAME}: reports of {RESULTS:,} results in namespace {ns} ({folder}) ==")
            whole = _scan(ns, portprobe, folder, args.timeout, "-o", "a.csv")
            print(f"  a.csv: scanned in {whole.seconds:.1f} s, peak {whole.peak_mb:.0f} MB")
            listener = subprocess.Popen(
                _in_ns(ns, [sys.executable, "-c", LISTENER, *map(str, LISTENED)]),
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert listener.stdout is not None
                listener.stdout.readline()  # "ready"
                for k in (1, 2):
                    shard = ("--seed", "7", "--shard", f"{k}/2", "-o", f"b{k}.jsonl")
                    _scan(ns, portprobe, folder, args.timeout, *shard)
            finally:
                listener.kill()
                listener.wait()
            print("  b1.jsonl, b2.jsonl: scanned (two shards, 48 ports listened to)")
            interrupted = [portprobe, HOSTS, "-p-", "--all", "--no-evidence", "-q"]
            part = measure(
                _in_ns(ns, [*interrupted, "-o", "part.jsonl"]),
                folder,
                args.timeout,
                stop_after=whole.seconds / 2,
            )
            kept = _results_in(folder / "part.jsonl")
            print(f"  part.jsonl: interrupted (exit {part.code}) with {kept:,} results")

            merge = measure(
                [portprobe, "merge", "b1.jsonl", "b2.jsonl", "-o", "b.jsonl"], folder, args.timeout
            )
            merged = _results_in(folder / "b.jsonl") if merge.code == 0 else 0
            rows.append(("merge b1.jsonl b2.jsonl -o b.jsonl", merge, merged == RESULTS))
            diff = measure([portprobe, "diff", "a.csv", "b.jsonl"], folder, args.timeout)
            opened = re.search(r"(\d+) opened", diff.stdout)
            found = int(opened.group(1)) if opened else 0
            rows.append(("diff a.csv b.jsonl", diff, diff.code == 1 and found == 48))
            resume = measure(
                _in_ns(ns, [portprobe, "scan", "--resume", "part.jsonl", "-q"]),
                folder,
                args.timeout,
            )
            resumed = _results_in(folder / "part.jsonl") if resume.code == 0 else 0
            rows.append(("scan --resume part.jsonl", resume, resumed == RESULTS))
    finally:
        _delete_ns(ns)

    print(f"\n== {NAME}: results (target: peak RSS < {TARGET_MB:.0f} MB each) ==")
    passed = True
    for name, got, whole_output in rows:
        ok = got.peak_mb < TARGET_MB and whole_output
        passed = passed and ok
        print(
            f"  portprobe {name:<36} {got.seconds:7.1f} s  peak RSS {got.peak_mb:6.1f} MB  "
            f"exit {got.code}  output {'whole' if whole_output else 'WRONG'}  "
            f"{'met' if ok else 'NOT met'}"
        )
        if not whole_output:
            print(f"    stderr: {got.stderr.strip()[-300:]}")
    print(f"  RESULT: {'PASS' if passed else 'FAIL'}")
    worst = max((got.peak_mb for _, got, _ in rows), default=0.0)
    return BenchSummary(
        name=NAME,
        result="; ".join(f"{n.split()[0]} {g.peak_mb:.0f} MB {g.seconds:.0f} s" for n, g, _ in rows)
        or "no result",
        target=f"< {TARGET_MB:.0f} MB each (worst {worst:.0f} MB)",
        passed=passed,
    )


def main() -> int:
    """Command-line entry point: exit 0 when the benchmark passes."""
    summary = run()
    print_summary_table([summary])
    return 0 if summary.passed else 1


if __name__ == "__main__":
    sys.exit(main())
