"""Hostile servers in the netns lab: exact states, bounded cost, nothing injected downstream.

Every byte a scanned host sends is controlled by it. These tests point portprobe at servers
built to hurt it (``tests/lab_services.py``, the hostile kinds) and check, for each, the
scan's result *and* what it cost: wall time, bytes read per connection, peak memory. And
they check that nothing the servers sent reaches a terminal as a control sequence or a
spreadsheet as a formula.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import netlab
import pytest
from conftest import PORTPROBE, portprobe, require_netns
from lab_services import ANSI_EVIL, ENDLESS_BYTES, FORMULAS, GARBAGE, formula_for

from scanner.evidence import SLACK, Evidence, EvidenceConfig, Prober
from scanner.protocols import clean, tcp
from scanner.report.writers import CSV_COLUMNS

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

TARPIT, ENDLESS, GARBAGE_PORT, ANSI, ANSI_HTTP, RST, HALFOPEN, NOREAD = (
    1001, 1002, 1003, 1004, 1005, 1008, 1009, 1010,
)  # fmt: skip
FORMULA_PORTS = range(1020, 1020 + len(FORMULAS))  # each port sends another formula
FORMULA_HTTP_PORTS = range(1030, 1030 + len(FORMULAS))
HOSTILE: dict[int, str] = {
    TARPIT: "tarpit",
    ENDLESS: "endless",
    GARBAGE_PORT: "garbage",
    ANSI: "ansi",
    ANSI_HTTP: "ansi-http",
    RST: "rst",
    HALFOPEN: "halfopen",
    NOREAD: "noread",
    **{p: "formula" for p in FORMULA_PORTS},
    **{p: "formula-http" for p in FORMULA_HTTP_PORTS},
}
RST_MANY = range(3000, 3200)  # the reset-after-accept race, 200 times (see its test)
HOSTILE |= {p: "rst" for p in RST_MANY}
SCANNED = "1000-1040"
SCANNED_SET = set(range(1000, 1041))
OPEN = set(HOSTILE) - {HALFOPEN} - set(RST_MANY)

EVIDENCE_TIMEOUT = 1.0  # the scans' --evidence-timeout
QUICK = EvidenceConfig(timeout=1.0, max_bytes=8192)

# What must never reach a terminal: C0/C1 controls (ESC, BEL, BS, NUL, CSI 0x9b), DEL,
# zero-width and bidi controls. Newline ends the table's lines and is the only exception.
UNSAFE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@pytest.fixture(scope="module")
def hostile() -> Iterator[netlab.Lab]:
    """One lab with every hostile kind, for the whole module."""
    require_netns()
    with netlab.Lab(tcp=HOSTILE) as the_lab:
        yield the_lab


def expected_states(host: str) -> dict[tuple[str, int], tuple[str, str]]:
    def state(port: int) -> tuple[str, str]:
        if port in OPEN:
            return ("open", "syn-ack")
        if port == HALFOPEN:  # its full accept queue drops every SYN: nothing answers
            return ("filtered", "no-response")
        return ("closed", "conn-refused")

    return {(host, p): state(p) for p in SCANNED_SET}


def scan(lab: netlab.Lab, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = portprobe(lab, lab.server4, "-p", SCANNED, "--evidence-timeout", "1s", *args)
    return proc, time.monotonic() - started


# --------------------------------------------------------------------------- the CLI


def test_states_exact_and_json_well_formed(hostile: netlab.Lab, tmp_path: Path) -> None:
    out = tmp_path / "hostile.json"
    proc, seconds = scan(hostile, "--all", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text(encoding="utf-8"))  # the whole document parses
    rows = {(r["host"], r["port"]): (r["state"], r["reason"]) for r in doc["results"]}
    assert rows == expected_states(hostile.server4)
    assert doc["end"]["complete"] is True
    # Every open port's evidence is bounded by one evidence timeout, all ports at once:
    # tarpit, endless, never-reading and half-open servers included.
    assert seconds < 1.0 + EVIDENCE_TIMEOUT + SLACK + 2.0, seconds  # + start-up, scan
    detail = {r["port"]: r["evidence_detail"] for r in doc["results"]}
    assert all(len(d) <= 200 and UNSAFE.search(d) is None for d in detail.values())
    assert detail[ANSI] == clean(ANSI_BANNER_TEXT)
    # JSON Lines, the other streaming format, also parses line by line.
    lines = tmp_path / "hostile.jsonl"
    proc, _ = scan(hostile, "--all", "-o", str(lines))
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in lines.read_text(encoding="utf-8").splitlines()]
    assert [r["type"] for r in records[:1] + records[-1:]] == ["scan", "end"]
    assert len(records) == len(SCANNED_SET) + 2


ANSI_BANNER_TEXT = "evil.test ESMTP " + ANSI_EVIL


def test_table_carries_no_control_character(hostile: netlab.Lab) -> None:
    # A wide terminal, so the table shows the evidence whole (at 80 columns it is cut).
    proc = hostile.run(
        [*PORTPROBE, hostile.server4, "-p", SCANNED, "--evidence-timeout", "1s", "--all"],
        env={**os.environ, "COLUMNS": "250"},
    )
    assert proc.returncode == 0, proc.stderr
    assert UNSAFE.search(proc.stdout) is None, repr(UNSAFE.findall(proc.stdout))
    assert UNSAFE.search(proc.stderr) is None
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if "/tcp  " in line}
    # The escapes are shown, visibly, as text: the user sees that the server tried.
    assert "\\x1b[2J" in lines[f"{ANSI}/tcp"] and "smtp (" in lines[f"{ANSI}/tcp"]
    assert "\\x1b[2J" in lines[f"{ANSI_HTTP}/tcp"] and "http (" in lines[f"{ANSI_HTTP}/tcp"]


def test_csv_cells_are_neutralised(hostile: netlab.Lab) -> None:
    proc, _ = scan(hostile, "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.reader(io.StringIO(proc.stdout)))
    assert rows[0] == list(CSV_COLUMNS)
    assert all(len(row) == len(CSV_COLUMNS) for row in rows)
    cells = [cell for row in rows[1:] for cell in row]
    assert [c for c in cells if c.startswith(FORMULA_START)] == []
    by_port = {int(row[1]): dict(zip(CSV_COLUMNS, row, strict=True)) for row in rows[1:]}
    for port in FORMULA_PORTS:  # the greeting's text, a formula, with an apostrophe first
        cell = by_port[port]
        assert cell["evidence"] == "smtp"
        assert cell["evidence_detail"] == "'" + clean(formula_for(port) + " ESMTP")
    for port in FORMULA_HTTP_PORTS:  # the Server header first in the detail
        cell = by_port[port]
        assert cell["evidence"] == "http"
        assert cell["evidence_detail"].startswith("'" + clean(formula_for(port)) + "; 200")
    # Each of = + - @ started a cell that came back neutralised.
    starts = {by_port[p]["evidence_detail"][1] for p in FORMULA_PORTS}
    assert starts == {"=", "+", "-", "@"}
    assert UNSAFE.search(proc.stdout.replace("\n", "")) is None


# --------------------------------------------------------------------------- the prober


class Counted:
    """Counts the bytes the prober takes from each connection it opens."""

    def __init__(self) -> None:
        self.per_connection: list[int] = []


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counted:
    counts = Counted()
    real = asyncio.open_connection

    async def counting(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        reader, writer = await real(*args, **kwargs)
        index = len(counts.per_connection)
        counts.per_connection.append(0)
        read = reader.read

        async def counted_read(n: int = -1) -> bytes:
            data = await read(n)
            counts.per_connection[index] += len(data)
            return data

        reader.read = counted_read  # type: ignore[method-assign]
        return reader, writer

    monkeypatch.setattr(asyncio, "open_connection", counting)
    return counts


def probe(lab: netlab.Lab, port: int, config: EvidenceConfig = QUICK) -> tuple[Evidence, float]:
    async def run() -> tuple[Evidence, float]:
        start = time.perf_counter()
        found = await Prober(config).probe(lab.server4, socket.AF_INET, port)
        return found, time.perf_counter() - start

    outcome: tuple[Evidence, float] = lab.call_in_client(asyncio.run, run())
    return outcome


@pytest.mark.parametrize(
    ("port", "fastest", "service"),
    [
        (TARPIT, QUICK.timeout, ""),  # promising forever: waited for up to the budget
        (ENDLESS, 0.0, ""),  # stops at max_bytes, long before the budget
        (GARBAGE_PORT, 0.0, ""),
        (NOREAD, QUICK.timeout, ""),
        (RST, 0.0, None),
    ],
    ids=["tarpit", "endless", "garbage", "noread", "rst"],
)
def test_evidence_is_bounded_in_time_and_bytes(
    hostile: netlab.Lab, counted: Counted, port: int, fastest: float, service: str | None
) -> None:
    found, seconds = probe(hostile, port)
    print(f"evidence {port}: {seconds:.3f} s, bytes read per connection {counted.per_connection}")
    assert fastest * 0.9 <= seconds <= QUICK.timeout + SLACK + 0.1, seconds
    # Passive, HTTP and TLS attempts, and the active probes that got a turn within the
    # budget (a reset may beat asyncio to the connect's end).
    most = 3 + len(tcp.active_probes())
    assert (3 if service is not None else 0) <= len(counted.per_connection) <= most
    assert max(counted.per_connection, default=0) <= QUICK.max_bytes, counted.per_connection
    if service is None:
        assert found == Evidence("", "", "")
        assert seconds < 0.3  # a reset ends every attempt at once
    else:
        assert found.service == service and len(found.detail) <= 200
    if port == ENDLESS:
        assert max(counted.per_connection) == QUICK.max_bytes  # it did try to send more
    if port == GARBAGE_PORT:
        assert found.detail.endswith(f"bytes: {GARBAGE[:16].hex()}...")
    if port == TARPIT:
        # What dripped in, one byte a second: a byte or two of the endless "banner".
        assert found.detail and "SSH-2.0-tarpit".startswith(found.detail), found


def test_reset_after_accept_is_open(hostile: netlab.Lab, tmp_path: Path) -> None:
    # The server resets before the engine reads the connect's outcome about half the time:
    # the connect then ends with ECONNRESET, which means the handshake completed. Before
    # the transport said so, about 120 of these 200 ports came out filtered/error.
    out = tmp_path / "rst.json"
    ports = f"{RST_MANY.start}-{RST_MANY.stop - 1}"
    proc = portprobe(hostile, hostile.server4, "-p", ports, "--no-evidence", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    states = {r["port"]: (r["state"], r["reason"]) for r in json.loads(out.read_text())["results"]}
    wrong = {p: s for p, s in states.items() if s != ("open", "syn-ack")}
    print(f"reset after accept: {len(wrong)} of {len(RST_MANY)} ports misreported")
    assert wrong == {}


def test_endless_server_really_sends_100_mb(hostile: netlab.Lab) -> None:
    def drain() -> tuple[int, float]:
        total, start = 0, time.monotonic()
        with socket.create_connection((hostile.server4, ENDLESS), timeout=10) as sock:
            while total < 100 * 1024 * 1024:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                total += len(chunk)
        return total, time.monotonic() - start

    total, seconds = hostile.call_in_client(drain)
    assert total >= 100 * 1024 * 1024 and total < ENDLESS_BYTES, total
    assert seconds < 10


RSS_WRAPPER = (
    "import resource, subprocess, sys;"
    "code = subprocess.run(sys.argv[1:]).returncode;"
    "print('MAXRSS_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr);"
    "sys.exit(code)"
)


def peak_rss_mib(lab: netlab.Lab, *args: str) -> tuple[float, float, str]:
    """(peak RSS in MiB of a portprobe run, its wall seconds, its stdout)."""
    started = time.monotonic()
    proc = lab.run([sys.executable, "-c", RSS_WRAPPER, *PORTPROBE, *args], timeout=60)
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    kib = int(re.findall(r"MAXRSS_KIB (\d+)", proc.stderr)[-1])
    return kib / 1024, seconds, proc.stdout


def test_memory_stays_flat_against_a_100_mb_sender(hostile: netlab.Lab) -> None:
    # The baseline finds one well-behaved HTTP port: the same modules (h11, ssl) loaded.
    base, _, _ = peak_rss_mib(
        hostile, hostile.server4, "-p", str(FORMULA_HTTP_PORTS[0]), "--evidence-timeout", "1s"
    )
    # The 100 MB sender (three connections: passive, HTTP, TLS), a tarpit and a server
    # that never reads, in one run, against a run that finds a single closed port.
    peak, seconds, out = peak_rss_mib(
        hostile, hostile.server4, "-p", f"{ENDLESS},{TARPIT},{NOREAD}", "--evidence-timeout", "1s"
    )
    print(
        f"peak RSS: {base:.1f} MiB (one HTTP port), {peak:.1f} MiB (100 MB sender), {seconds:.2f} s"
    )
    assert f"{ENDLESS}/tcp" in out and "open" in out
    assert peak < base + 8, (base, peak)  # a few socket buffers, never the stream
    assert peak < 120, peak
    assert seconds < 1.0 + EVIDENCE_TIMEOUT + SLACK + 2.0


# --------------------------------------------------------------------------- ICMP floods

FLOOD_SCRIPT = Path(__file__).resolve().parent / "lab_icmpflood.py"
FLOOD_TCP = {22: "banner", 80: "http", 443: "open", 2451: "http"}
# Ports whose connects stay in SYN-SENT for the whole scan: where a forged unreachable,
# if it were believed, would turn "filtered" into "closed" (port unreachable) or into
# "filtered/host-unreach".
FLOOD_FILTERED = range(1001, 1201)


def nstat(lab: netlab.Lab, counter: str) -> int:
    proc = lab.run(["nstat", "-az", counter])
    for line in proc.stdout.splitlines():
        if line.startswith(counter):
            return int(line.split()[1])
    return 0


@pytest.fixture
def flooded(make_lab: Callable[..., netlab.Lab]) -> Iterator[tuple[netlab.Lab, Any]]:
    lab = make_lab(tcp=FLOOD_TCP, filtered_tcp=FLOOD_FILTERED)
    flood = subprocess.Popen(
        ["ip", "netns", "exec", lab.server_ns, sys.executable, str(FLOOD_SCRIPT),
         "--iface", lab.server_veth, "--src", lab.server4, "--dst", lab.client4,
         "--seconds", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert flood.stdout is not None
        ready, _, _ = select.select([flood.stdout], [], [], 10.0)  # bounded start-up
        assert ready and flood.stdout.readline().strip() == "READY", flood.poll()
        yield lab, flood
    finally:
        if flood.poll() is None:
            flood.terminate()
        flood.communicate(timeout=10)


def test_icmp_unreachable_flood_changes_no_state(
    flooded: tuple[netlab.Lab, Any], tmp_path: Path
) -> None:
    lab, flood = flooded
    before = nstat(lab, "TcpExtOutOfWindowIcmps")
    out = tmp_path / "flood.csv"
    started = time.monotonic()
    proc = portprobe(lab, lab.server4, "-p", "1-2000,2451", "--all", "-o", str(out))
    seconds = time.monotonic() - started
    flood.terminate()
    sent_line, _ = flood.communicate(timeout=10)
    assert proc.returncode == 0, proc.stderr
    with out.open() as stream:
        rows = {int(r["port"]): (r["state"], r["reason"]) for r in csv.DictReader(stream)}
    want = {p: ("closed", "conn-refused") for p in [*range(1, 2001), 2451]}
    want |= {p: ("open", "syn-ack") for p in FLOOD_TCP}
    want |= {p: ("filtered", "no-response") for p in FLOOD_FILTERED}
    assert rows == want
    sent = int(sent_line.split()[-1])
    rejected = nstat(lab, "TcpExtOutOfWindowIcmps") - before
    # The flood was real: thousands of forged unreachables reached the client's TCP, which
    # matched them to its connects and threw them away for their sequence numbers.
    print(f"ICMP flood: {sent} forged, {rejected} matched a connect, rejected; {seconds:.2f} s")
    assert sent > 10_000, sent
    assert rejected > 2 * len(FLOOD_FILTERED), (sent, rejected)
    assert seconds < 20
