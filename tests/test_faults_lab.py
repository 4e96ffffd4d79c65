"""Resource faults: too few descriptors, no ephemeral ports, a full disk, a closed pipe.

Each test injects one fault into a real scan of the netns lab (or, for output faults that
need no network, of the lab's own client namespace) and checks that the scan still tells
the truth, or fails loudly: one line on stderr, a non-zero exit, and no report that
silently lacks results. Interrupting a scan mid-write is covered by
``test_scan_lab.py::test_interrupt_leaves_a_valid_file_with_every_finished_result``.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import netlab
import pytest
from conftest import PORTPROBE, SESSION_LAB_FILTERED_TCP, SESSION_LAB_TCP, portprobe

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

ONE_LINE_ERROR = "portprobe: error: writing the report failed: "


def read_rows(path: Path) -> dict[tuple[str, int], dict[str, str]]:
    with path.open(encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    table = {(r["host"], int(r["port"])): r for r in rows}
    assert len(table) == len(rows), "a port was reported twice"
    return table


def states(rows: dict[tuple[str, int], dict[str, str]]) -> dict[tuple[str, int], tuple[str, str]]:
    return {key: (r["state"], r["reason"]) for key, r in rows.items()}


def exact(
    hosts: list[str], ports: set[int], open_: set[int], filtered: set[int] = frozenset()
) -> dict[tuple[str, int], tuple[str, str]]:
    def state(port: int) -> tuple[str, str]:
        if port in open_:
            return ("open", "syn-ack")
        if port in filtered:
            return ("filtered", "no-response")
        return ("closed", "conn-refused")

    return {(h, p): state(p) for h in hosts for p in ports}


# --------------------------------------------------------------------------- descriptors


def test_full_range_under_ulimit_256_is_exact_and_says_so(lab: netlab.Lab, tmp_path: Path) -> None:
    out = tmp_path / "limited.csv"
    started = time.monotonic()
    proc = lab.run(
        ["prlimit", "--nofile=256:256", *PORTPROBE, lab.server4, "-p-", "--all", "-o", str(out)],
        timeout=100,
    )
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    # 256 descriptors, 32 kept for the process itself: 224 connects at once.
    assert "concurrency lowered from 1024 to 224" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Exception ignored" not in proc.stderr  # (workers' SIGTERM after their loop closed)
    rows = read_rows(out)
    assert states(rows) == exact(
        [lab.server4], set(range(1, 65536)), set(SESSION_LAB_TCP), set(SESSION_LAB_FILTERED_TCP)
    )
    # The evidence probes share the same 256 descriptors, and still see what speaks.
    assert rows[lab.server4, 22]["evidence"] == "ssh"
    assert rows[lab.server4, 80]["evidence"] == "http"
    assert rows[lab.server4, 2451]["verdict"] == "contradicts"
    assert seconds < 40, seconds


SPEAKING = {**{p: "banner" for p in range(5000, 5040)}, **{p: "http" for p in range(6000, 6040)}}


def test_evidence_survives_a_descriptor_limit_of_64(
    make_lab: Callable[..., netlab.Lab], tmp_path: Path
) -> None:
    # 80 speaking ports, three connections each, and the scan's own connects: far more
    # than 64 descriptors. Every port must still show what it speaks.
    lab = make_lab(tcp=SPEAKING)
    out = tmp_path / "evidence.csv"
    ports = "5000-5039,6000-6039"
    proc = lab.run(
        ["prlimit", "--nofile=64:64", *PORTPROBE, lab.server4, "-p", ports, "-o", str(out)],
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "concurrency lowered from 1024 to 32" in proc.stderr
    rows = read_rows(out)
    seen = {port: r["evidence"] for (_, port), r in rows.items()}
    assert seen == {p: "ssh" if kind == "banner" else "http" for p, kind in SPEAKING.items()}


# --------------------------------------------------------------------------- ephemeral ports

EPHEMERAL = (40000, 40063)
PRESSURE_TCP = {22: "banner", 80: "http", 2451: "http"}


@contextlib.contextmanager
def every_ephemeral_port_taken(lab: netlab.Lab) -> Iterator[list[socket.socket]]:
    """Narrow the client's ephemeral range to 64 ports and bind all of them."""
    low, high = EPHEMERAL
    proc = lab.run(["sysctl", "-w", f"net.ipv4.ip_local_port_range={low} {high}"])
    assert proc.returncode == 0, proc.stderr

    def take() -> list[socket.socket]:
        held = []
        for port in range(low, high + 1):
            sock = socket.socket()
            sock.bind(("0.0.0.0", port))
            held.append(sock)
        probe = socket.socket()
        probe.setblocking(False)
        try:  # the pressure is real: a connect finds no local port at all
            probe.connect((lab.server4, 22))
        except OSError as exc:
            assert exc.errno == errno.EADDRNOTAVAIL, exc
        else:
            raise AssertionError("a connect still found an ephemeral port")
        finally:
            probe.close()
        return held

    held: list[socket.socket] = lab.call_in_client(take)
    try:
        yield held
    finally:
        for sock in held:
            sock.close()


def test_no_ephemeral_ports_turns_no_open_port_closed(
    make_lab: Callable[..., netlab.Lab], tmp_path: Path
) -> None:
    lab = make_lab(tcp=PRESSURE_TCP, extra_hosts=30)
    hosts = [lab.server4, *lab.extra4]
    out = tmp_path / "pressure.csv"
    ports = "1-100,2451"
    with every_ephemeral_port_taken(lab) as held:
        started = time.monotonic()
        proc = lab.popen(
            [*PORTPROBE, "198.18.0.2-32", "-p", ports, "--all", "-o", str(out), "-q"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.5)  # the scan starts with no local port to connect from
        for sock in held[: len(held) // 2]:
            sock.close()  # then gets 32 of them back
        time.sleep(0.5)
    _, stderr = proc.communicate(timeout=60)
    seconds = time.monotonic() - started
    assert proc.returncode == 0, stderr
    assert seconds >= 1.5
    assert states(read_rows(out)) == exact(hosts, set(range(1, 101)) | {2451}, set(PRESSURE_TCP))
    assert "Traceback" not in stderr


# --------------------------------------------------------------------------- full disk


@pytest.fixture
def tiny_disk() -> Iterator[Path]:
    """A 64 KiB tmpfs, unmounted afterwards."""
    with tempfile.TemporaryDirectory(prefix="portprobe-full-") as where:
        mount = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "portprobe-test", where],
            capture_output=True,
            text=True,
            check=False,
        )
        if mount.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs: {mount.stderr.strip()}")
        try:
            yield Path(where)
        finally:
            subprocess.run(["umount", "-l", where], check=False)


def one_line_error(stderr: str, reason: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("portprobe: error: writing ") and lines[0].endswith(reason), stderr


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl"])
def test_full_disk_is_a_clear_error_and_keeps_the_old_report(
    lab: netlab.Lab, tiny_disk: Path, fmt: str
) -> None:
    out = tiny_disk / f"report.{fmt}"
    out.write_text("the previous report\n", encoding="utf-8")
    # 3,000 ports: one process (no workers), and still 50 times what the disk holds.
    proc = portprobe(lab, lab.server4, "-p", "1-3000", "--all", "-o", str(out))
    assert proc.returncode == 1, proc.stderr
    one_line_error(proc.stderr, "No space left on device")
    # The destination still holds the last complete report; no half-written file remains.
    assert out.read_text(encoding="utf-8") == "the previous report\n"
    assert sorted(p.name for p in tiny_disk.iterdir()) == [out.name]


def test_output_onto_a_device_writes_through_it(lab: netlab.Lab, tmp_path: Path) -> None:
    full = tmp_path / "full"
    os.mknod(full, 0o666 | 0o020000, os.makedev(1, 7))  # a /dev/full of our own
    proc = portprobe(lab, lab.server4, "-p", "1-2000", "--all", "--format", "csv", "-o", str(full))
    assert proc.returncode == 1
    one_line_error(proc.stderr, "No space left on device")
    assert full.is_char_device()  # not replaced by a regular file (as root!)
    null = tmp_path / "null"
    os.mknod(null, 0o666 | 0o020000, os.makedev(1, 3))
    proc = portprobe(lab, lab.server4, "-p", "22", "--format", "json", "-o", str(null))
    assert proc.returncode == 0, proc.stderr
    assert null.is_char_device() and [p.name for p in tmp_path.iterdir()].count("null") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "null"]  # no temporary


@pytest.mark.parametrize("fmt", ["table", "csv", "json", "jsonl"])
def test_stdout_on_a_full_disk_is_a_clear_error(lab: netlab.Lab, fmt: str) -> None:
    with open("/dev/full", "w") as full:
        proc = lab.popen(
            [*PORTPROBE, lab.server4, "-p", "1-3000", "--all", "--format", fmt],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1
    one_line_error(stderr, "No space left on device")


@pytest.mark.parametrize("fmt", ["table", "csv", "jsonl"])
def test_stdout_closed_mid_scan_ends_quietly_not_a_hang(lab: netlab.Lab, fmt: str) -> None:
    proc = lab.popen(
        [*PORTPROBE, lab.server4, "-p", "1-30000", "--all", "--format", fmt, "--rate", "20000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    started = time.monotonic()
    proc.stdout.readline()  # the reader goes away after one line, as `| head -1` does
    proc.stdout.close()
    proc.wait(timeout=60)
    stderr = proc.stderr.read()
    # As a tool killed by SIGPIPE: status 141, nothing on stderr (issue 11).
    assert proc.returncode == 141
    assert stderr == ""
    assert time.monotonic() - started < 10
