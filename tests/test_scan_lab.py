"""Real scans of the network-namespace lab: exact TCP states, as a user would see them.

The session lab serves 22 (banner), 80 and 2451 (HTTP), 443 and 8080 (open), 3451 (silent)
on 198.18.0.2 and 2001:db8::2, and drops 81 and 444 with nftables. Every other port is
closed. portprobe runs inside the lab's client namespace, which has no default route.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import pty
import re
import select
import signal
import time
from pathlib import Path
from typing import Any

import netlab
import pytest
from conftest import PORTPROBE, SESSION_LAB_FILTERED_TCP, SESSION_LAB_TCP, portprobe

import scanner
from scanner.models import Result

pytestmark = [pytest.mark.netns, pytest.mark.timeout(180)]

OPEN = set(SESSION_LAB_TCP)
FILTERED = set(SESSION_LAB_FILTERED_TCP)
PORTS = "1-1100,2451,3451,8080"
PORT_SET = set(range(1, 1101)) | {2451, 3451, 8080}

State = tuple[str, str]


def read_csv(path: Path) -> dict[tuple[str, int], State]:
    with path.open() as stream:
        rows = list(csv.DictReader(stream))
    table = {(r["host"], int(r["port"])): (r["state"], r["reason"]) for r in rows}
    assert len(table) == len(rows), "a port was reported twice"
    return table


def expected(
    host: str, ports: set[int], open_: set[int] = OPEN, filtered: set[int] = FILTERED
) -> dict[tuple[str, int], State]:
    def state(port: int) -> State:
        if port in open_:
            return ("open", "syn-ack")
        if port in filtered:
            return ("filtered", "no-response")
        return ("closed", "conn-refused")

    return {(host, port): state(port) for port in ports}


@pytest.mark.parametrize("address", ["198.18.0.2", "2001:db8::2"])
def test_exact_states_ipv4_and_ipv6(lab: netlab.Lab, tmp_path: Path, address: str) -> None:
    out = tmp_path / "scan.csv"
    proc = portprobe(lab, address, "-p", PORTS, "--all", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # not a terminal: no progress bar, and nothing went wrong
    assert read_csv(out) == expected(address, PORT_SET)
    # --all: every port has a row in the file; the terminal keeps its usual view.
    assert f"Not shown: {len(PORT_SET) - len(OPEN) - len(FILTERED)} closed" in proc.stdout
    rows = [line for line in proc.stdout.splitlines() if re.match(r"\d+/tcp\s", line)]
    assert len(rows) == len(OPEN & PORT_SET)  # the default view: open ports


def test_full_range_exact_states(lab: netlab.Lab, tmp_path: Path) -> None:
    out = tmp_path / "full.csv"
    proc = portprobe(lab, "198.18.0.2", "-p-", "--all", "-o", str(out), "--seed", "5")
    assert proc.returncode == 0, proc.stderr
    assert read_csv(out) == expected("198.18.0.2", set(range(1, 65536)))
    assert "portprobe done: 1 host (1 up), 65535 ports each" in proc.stdout


def test_file_without_all_holds_every_port_that_is_not_closed(
    lab: netlab.Lab, tmp_path: Path
) -> None:
    out = tmp_path / "scan.json"
    proc = portprobe(lab, "198.18.0.2", "-p", PORTS, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    got = {(r["host"], r["port"]): (r["state"], r["reason"]) for r in doc["results"]}
    assert got == expected("198.18.0.2", OPEN | FILTERED)
    assert doc["end"]["complete"] is True
    assert f"Not shown: {len(PORT_SET) - 8} closed, 2 filtered" in proc.stdout


def test_library_scan_in_process(lab: netlab.Lab) -> None:
    async def collect() -> list[Result]:
        config = scanner.ScanConfig(seed=3)
        return [r async for r in scanner.scan(["198.18.0.2", "2001:db8::2"], "20-25,79-81", config)]

    results = lab.call_in_client(asyncio.run, collect())
    got = {(r.host, r.port): (r.state.value, r.reason.value) for r in results}
    ports = set(range(20, 26)) | {79, 80, 81}
    assert got == expected("198.18.0.2", ports) | expected("2001:db8::2", ports)
    # What the command line shows: every result assessed, open ports with their evidence.
    seen = {
        (r.host, r.port): (r.assessment.label, r.assessment.evidence, r.assessment.verdict)
        for r in results
        if r.assessment is not None
    }
    assert len(seen) == len(results)
    for host in ("198.18.0.2", "2001:db8::2"):
        assert seen[host, 80] == ("http", "http", "consistent")
        assert seen[host, 22][:2] == ("ssh", "ssh")
        assert seen[host, 23] == ("telnet", "", "")


def test_library_scan_without_evidence(lab: netlab.Lab) -> None:
    async def collect() -> list[Result]:
        return [r async for r in scanner.scan(["198.18.0.2"], [80, 2451], evidence=False)]

    results = lab.call_in_client(asyncio.run, collect())
    got = {r.port: (r.state.value, r.assessment.label, r.assessment.verdict) for r in results}
    assert got == {80: ("open", "http", "unverified"), 2451: ("open", "netchat", "unverified")}


def test_several_hosts_and_a_range(make_lab: Any, tmp_path: Path) -> None:
    multi = make_lab(tcp={22: "open", 80: "open"}, filtered_tcp=[81], extra_hosts=3)
    out = tmp_path / "multi.csv"
    proc = portprobe(multi, "198.18.0.2-5", "-p", "1-100", "--all", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    want: dict[tuple[str, int], State] = {}
    for host in ["198.18.0.2", *multi.extra4]:
        want |= expected(host, set(range(1, 101)), {22, 80}, {81})
    assert read_csv(out) == want
    assert "portprobe done: 4 hosts (4 up)" in proc.stdout


def test_unreachable_hosts_are_reported_per_host(lab: netlab.Lab, tmp_path: Path) -> None:
    # 198.19.0.1 has no route at all; 198.18.0.77 is on the link but nobody answers ARP,
    # which the kernel reports after about 3 s: the timeouts must outlast that.
    out = tmp_path / "unreach.csv"
    proc = portprobe(
        lab,
        "198.19.0.1",
        "198.18.0.77",
        "198.18.0.2",
        "-p",
        "22,80,81",
        "--retries",
        "0",
        "--initial-rtt-timeout",
        "6s",
        "--min-rtt-timeout",
        "6s",
        "-o",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    rows = read_csv(out)
    assert {rows["198.19.0.1", p] for p in (22, 80, 81)} == {("filtered", "net-unreach")}
    assert {rows["198.18.0.77", p] for p in (22, 80, 81)} == {("filtered", "host-unreach")}
    assert rows["198.18.0.2", 22] == ("open", "syn-ack")
    assert "Host 198.19.0.1 is unreachable (net-unreach)" in proc.stdout
    assert "Host 198.18.0.77 is unreachable (host-unreach)" in proc.stdout
    assert "Host 198.18.0.2 is unreachable" not in proc.stdout


def test_delay_exact_states_and_rtt(make_lab: Any, tmp_path: Path) -> None:
    slow = make_lab(tcp={22: "banner", 80: "http", 443: "open"}, filtered_tcp=[81], delay_ms=20)
    out = tmp_path / "delay.csv"
    ports = set(range(1, 301)) | {443}
    proc = portprobe(slow, slow.delayed4, "-p", "1-300,443", "--all", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert read_csv(out) == expected(slow.delayed4, ports, {22, 80, 443}, {81})
    with out.open() as stream:
        rtts = [float(r["rtt_ms"]) for r in csv.DictReader(stream) if r["state"] == "open"]
    assert len(rtts) == 3 and all(rtt >= 40 for rtt in rtts)


def test_delay_and_loss_miss_no_open_port(make_lab: Any, tmp_path: Path) -> None:
    lossy = make_lab(tcp=SESSION_LAB_TCP, filtered_tcp=[81], delay_ms=20, loss_pct=2)
    for address in (lossy.delayed4, lossy.delayed6):
        out = tmp_path / "lossy.csv"
        proc = portprobe(lossy, address, "-p", "1-2000,2451,3451,8080", "--all", "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        rows = read_csv(out)
        assert {p for (_, p), (s, _) in rows.items() if s == "open"} == OPEN
        assert rows[address, 81] == ("filtered", "no-response")
        # Loss may, rarely, hide a RST three times over; it may never invent an open port.
        flipped = [k for k, v in rows.items() if v == ("filtered", "no-response") and k[1] != 81]
        assert len(flipped) <= 5


def test_no_time_wait_sockets_are_left(make_lab: Any) -> None:
    # A lab of its own: other tests' plain sockets leave TIME_WAIT behind in the shared one.
    fresh = make_lab(tcp=SESSION_LAB_TCP, filtered_tcp=[81])
    proc = portprobe(fresh, "198.18.0.2", "2001:db8::2", "-p", PORTS)
    assert proc.returncode == 0
    assert proc.stdout.count("open ") == 2 * len(OPEN)
    ss = fresh.run(["ss", "-tan", "state", "time-wait"])
    assert ss.returncode == 0
    assert [line for line in ss.stdout.splitlines()[1:] if line.strip()] == []


def test_descriptor_limit_lowers_concurrency_and_stays_exact(
    lab: netlab.Lab, tmp_path: Path
) -> None:
    out = tmp_path / "limited.csv"
    proc = lab.run(
        [
            "prlimit",
            "--nofile=128:128",
            *PORTPROBE,
            "198.18.0.2",
            "-p",
            "1-5000",
            "--all",
            "-o",
            str(out),
        ],
        timeout=150,
    )
    assert proc.returncode == 0, proc.stderr
    assert "concurrency lowered from 1024 to 96" in proc.stderr
    assert read_csv(out) == expected("198.18.0.2", set(range(1, 5001)))


def test_rate_limits_probes_per_second(lab: netlab.Lab) -> None:
    started = time.monotonic()
    proc = portprobe(lab, "198.18.0.2", "-p", "1-1500", "--rate", "1000")
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert elapsed >= 1.4  # 1500 probes at 1000/s cannot take less, however fast the host


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_leaves_a_valid_file_with_every_finished_result(
    lab: netlab.Lab, tmp_path: Path, signum: int, fmt: str
) -> None:
    out = tmp_path / f"partial.{fmt}"
    proc = lab.popen(
        [
            *PORTPROBE,
            "198.18.0.2",
            "-p-",
            "--rate",
            "2000",
            "--all",
            "-o",
            str(out),
        ],
        stdout=-1,
        stderr=-1,
        text=True,
    )
    time.sleep(2.0)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "portprobe interrupted:" in stdout
    finished = int(stdout.split("portprobe interrupted: ")[1].split(" of ")[0])
    assert 500 < finished < 65535
    if fmt == "csv":
        rows = read_csv(out)
    elif fmt == "json":
        doc = json.loads(out.read_text())
        assert doc["end"]["complete"] is False
        rows = {(r["host"], r["port"]): (r["state"], r["reason"]) for r in doc["results"]}
    else:
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert lines[0]["type"] == "scan" and lines[-1]["type"] == "end"
        assert lines[-1]["complete"] is False
        results = [r for r in lines if r["type"] == "result"]
        assert len(results) == len(lines) - 2
        rows = {(r["host"], r["port"]): (r["state"], r["reason"]) for r in results}
    assert len(rows) == finished
    want = expected("198.18.0.2", set(range(1, 65536)))
    assert all(want[key] == value for key, value in rows.items())
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left


def test_progress_bar_only_on_a_terminal(lab: netlab.Lab) -> None:
    def stderr_of(*extra: str) -> str:
        controller, terminal = pty.openpty()
        proc = lab.popen(
            [
                *PORTPROBE,
                "198.18.0.2",
                "-p",
                "1-5000",
                "--rate",
                "2000",
                *extra,
            ],
            stdout=-3,
            stderr=terminal,
        )
        os.close(terminal)
        chunks = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if ready:
                try:
                    data = os.read(controller, 65536)
                except OSError:
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        proc.wait(timeout=30)
        os.close(controller)
        return b"".join(chunks).decode(errors="replace")

    shown = stderr_of()
    assert "probing" in shown and "probes" in shown  # the bar names its phase
    assert stderr_of("--quiet") == ""


def test_hostname_is_kept_in_reports(lab: netlab.Lab, tmp_path: Path) -> None:
    out = tmp_path / "names.csv"
    proc = portprobe(lab, "localhost", "-p", "1-5", "--all", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    with out.open() as stream:
        rows = list(csv.DictReader(stream))
    assert {(r["host"], r["hostname"], r["state"]) for r in rows} == {
        ("127.0.0.1", "localhost", "closed")
    }
    assert len(rows) == 5
    assert {r["reason"] for r in rows} == {"conn-refused"}
