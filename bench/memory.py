"""Benchmark: peak memory of a 1.3-million-probe scan (198.18.0.0/15 x 10 ports).

Run from the repository root, as root (it creates a network namespace)::

    sudo python3 bench/memory.py [--runs 1] [--portprobe PATH] [--timeout SECONDS]

The scan runs in a fresh, bare namespace ``ppmem<pid>`` made here (not the lab): only
``lo`` exists and is up, there are no other interfaces and no routes to 198.18.0.0/15, so
each of the 131,072 x 10 = 1,310,720 connects fails at once with ENETUNREACH and nothing
can leave the namespace.  The namespace is deleted in a ``finally``.  Each run is::

    portprobe 198.18.0.0/15 -p 1-10 -q -o <tmpdir>/x.csv      (stdout to /dev/null)

started by a small wrapper process inside the namespace, whose only child is portprobe:
the wrapper reports ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` after reaping it (and the
``os.wait4`` rusage of that very pid, plus the last VmHWM it polled from /proc), so the
number is portprobe's, not ``ip``'s or the benchmark's.  Printed: peak RSS in MB (2**20
bytes), wall time from spawn to exit, and the rows written (net-unreachable ports are
``filtered``, so all 1,310,720 are expected in the file).

Pass: peak RSS < 150 MB in every run and the CSV holds every probed port.
Exit status 0 on pass, 1 otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from common import BenchSummary, bench_args, find_portprobe

NAME = "memory"
TARGET_MB = 150.0
EXPECTED_ROWS = 2**17 * 10  # a /15 holds 131,072 addresses, 10 ports each

# Runs inside the namespace as its own process, so that its only child is portprobe.
# argv: [-c, WRAPPER, stderr-file, portprobe, args...]; prints one JSON line.
WRAPPER = r"""
import json, os, resource, subprocess, sys, time

def vm_hwm_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None

with open(sys.argv[1], "wb") as err:
    start = time.perf_counter()
    proc = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=err)
    hwm = None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        hwm = vm_hwm_kib(proc.pid) or hwm  # after exec: the portprobe process's own mm
        time.sleep(0.05)
    wall = time.perf_counter() - start
proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, tell Popen
print(json.dumps({
    "wall": wall,
    "exit": proc.returncode,
    "children_maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    "wait4_maxrss_kib": usage.ru_maxrss,
    "polled_vmhwm_kib": hwm,
}))
"""


def _ip() -> str:
    path = shutil.which("ip") or "/usr/sbin/ip"
    if not os.access(path, os.X_OK):
        raise SystemExit("bench: iproute2 'ip' not found")
    return path


def _ip_run(*argv: str) -> str:
    res = subprocess.run([_ip(), *argv], capture_output=True, text=True, timeout=30, check=False)
    if res.returncode != 0:
        raise SystemExit(f"bench: ip {' '.join(argv)} failed: {res.stderr.strip()}")
    return res.stdout


def _make_bare_ns(name: str) -> None:
    """Create ``name`` with only ``lo`` up, and check that it can reach nothing else."""
    if Path("/run/netns", name).exists():
        raise SystemExit(f"bench: namespace {name} already exists")
    _ip_run("netns", "add", name)
    _ip_run("-n", name, "link", "set", "lo", "up")
    links = [ln.split(":")[1].strip() for ln in _ip_run("-n", name, "-o", "link").splitlines()]
    routes = _ip_run("-n", name, "-4", "route", "show", "table", "all").splitlines()
    # The safety argument is "no interface but lo": check it rather than assume it.
    if links != ["lo"] or any(" dev lo" not in r for r in routes):
        raise SystemExit(f"bench: namespace {name} is not bare: {links} {routes}")


def _delete_ns(name: str) -> None:
    # Only the namespace this process made; anything left running in it dies with it.
    if Path("/run/netns", name).exists():
        for pid in _ip_run("netns", "pids", name).split():
            if pid.isdigit() and int(pid) != os.getpid():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        subprocess.run([_ip(), "netns", "del", name], capture_output=True, timeout=30, check=False)


def _count_rows(path: Path) -> tuple[int, dict[str, int]]:
    """Data rows of a portprobe CSV, and how many per state."""
    rows = 0
    states: dict[str, int] = {}
    if not path.exists():
        return 0, states
    with path.open() as stream:
        next(stream, None)  # header
        for line in stream:
            rows += 1
            state = line.split(",", 4)[3]  # host,port,protocol,state,...
            states[state] = states.get(state, 0) + 1
    return rows, states


def run(argv: Sequence[str] | None = None) -> BenchSummary:
    """Run the benchmark and print its report; return its summary."""
    args = bench_args(__doc__.splitlines()[0], default_runs=1).parse_args(argv)
    portprobe = find_portprobe(args.portprobe)
    ns = f"ppmem{os.getpid()}"
    print(f"== {NAME}: portprobe 198.18.0.0/15 -p 1-10 in bare namespace {ns}, {args.runs} runs ==")
    peaks: list[float] = []
    walls: list[float] = []
    all_rows_ok = True
    rows = 0
    try:
        _make_bare_ns(ns)
        with tempfile.TemporaryDirectory(prefix="portprobe-bench-") as tmp:
            for i in range(1, args.runs + 1):
                out = Path(tmp) / "x.csv"
                err = Path(tmp) / "stderr.txt"
                out.unlink(missing_ok=True)
                cmd = [portprobe, "198.18.0.0/15", "-p", "1-10", "-q", "-o", str(out)]
                res = subprocess.run(
                    [_ip(), "netns", "exec", ns, sys.executable, "-c", WRAPPER, str(err), *cmd],
                    capture_output=True,
                    text=True,
                    timeout=args.timeout,
                    check=False,
                )
                if res.returncode != 0 or not res.stdout.strip():
                    raise SystemExit(f"bench: wrapper failed ({res.returncode}): {res.stderr}")
                m = json.loads(res.stdout.strip().splitlines()[-1])
                peak_mb = m["children_maxrss_kib"] / 1024
                rows, states = _count_rows(out)
                all_rows_ok &= rows == EXPECTED_ROWS and m["exit"] == 0
                peaks.append(peak_mb)
                walls.append(m["wall"])
                hwm = m["polled_vmhwm_kib"]
                print(
                    f"  run {i}/{args.runs}: peak RSS {peak_mb:.1f} MB"
                    f" (wait4 {m['wait4_maxrss_kib'] / 1024:.1f} MB,"
                    f" last polled VmHWM {hwm / 1024 if hwm else float('nan'):.1f} MB),"
                    f" wall {m['wall']:.2f} s, exit {m['exit']},"
                    f" rows {rows:,} of {EXPECTED_ROWS:,} {states}"
                )
                tail = err.read_text(errors="replace").strip().splitlines()[-3:]
                for line in tail:
                    print(f"    stderr: {line}")
    finally:
        _delete_ns(ns)

    print(f"\n== {NAME}: results ==")
    worst = max(peaks)
    print(f"  peak RSS: max {worst:.1f} MB, median {statistics.median(peaks):.1f} MB")
    print(f"  wall time: median {statistics.median(walls):.2f} s, min {min(walls):.2f} s")
    print(
        f"  result rows written: {rows:,} (expected {EXPECTED_ROWS:,}): "
        f"{'ok' if all_rows_ok else 'WRONG'}"
    )
    ok = worst < TARGET_MB
    print(f"  target < {TARGET_MB:.0f} MB: {'met' if ok else 'NOT met'}")
    passed = ok and all_rows_ok
    print(f"  RESULT: {'PASS' if passed else 'FAIL'}")
    return BenchSummary(
        name=NAME,
        result=(f"peak RSS {worst:.1f} MB; {statistics.median(walls):.1f} s; {rows:,} rows"),
        target=f"< {TARGET_MB:.0f} MB, all rows",
        passed=passed,
    )


def main() -> int:
    """Command-line entry point: exit 0 when the benchmark passes."""
    return 0 if run().passed else 1


if __name__ == "__main__":
    sys.exit(main())
