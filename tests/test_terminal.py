"""The terminal report: nmap's per-host layout, fitted to the terminal's width."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass, field

import pytest

from scanner.models import Assessment, PortState, Proto, Reason, Result
from scanner.report import Summary, TableReport
from scanner.report.table import terminal_width

LONG = Assessment(
    label="a-very-long-registered-service-name",
    evidence="http",
    evidence_detail="lab-http/1.0; 200; title '" + "x" * 150 + "'",
    verdict="contradicts",
    warning="label is not evidence: " + "the registry says one thing and the port another; " * 4,
    policy="violation",
)
SSH = Assessment(label="ssh", evidence="ssh", evidence_detail="OpenSSH_9.2p1", verdict="consistent")


def render(width: int, *, reason: bool = False) -> str:
    table = TableReport(width=width, reason=reason)
    for host in ("2001:db8::2", "198.18.0.10", "198.18.0.9"):
        table.add(Result(host, 2451, Proto.TCP, PortState.OPEN, Reason.SYN_ACK, assessment=LONG))
        table.add(Result(host, 22, Proto.TCP, PortState.OPEN, Reason.SYN_ACK, assessment=SSH))
        table.add(Result(host, 23, Proto.TCP, PortState.CLOSED, Reason.CONN_REFUSED))
    out = io.StringIO()
    table.render(Summary(ports_per_host=3), out)
    return out.getvalue()


@pytest.mark.parametrize("width", [80, 100, 132, 200])
@pytest.mark.parametrize("reason", [False, True])
def test_every_line_fits_the_width(width: int, reason: bool) -> None:
    text = render(width, reason=reason)
    assert max(map(len, text.splitlines())) <= width
    header = next(line for line in text.splitlines() if line.startswith("PORT"))
    assert header.split() == [
        "PORT", "STATE", *(["REASON"] if reason else []), "LABEL", "SEEN", "VERDICT", "POLICY"
    ]  # fmt: skip
    assert "!! CONTRADICTS" in text and "!! VIOLATION" in text  # never cut away


def test_hosts_come_in_numeric_order_each_with_its_block() -> None:
    text = render(80)
    reports = [line for line in text.splitlines() if line.startswith("portprobe report for")]
    assert reports == [
        "portprobe report for 198.18.0.9",
        "portprobe report for 198.18.0.10",
        "portprobe report for 2001:db8::2",
    ]
    block = text.split("portprobe report for 198.18.0.9\n")[1].split("\n\n")[0]
    lines = block.splitlines()
    assert lines[1].startswith("22/tcp    open   ssh")
    assert lines[2].startswith("2451/tcp  open   ")
    assert "23/tcp" not in text  # closed: not shown without --all


def test_a_wider_terminal_shows_more_evidence_and_warnings_wrap() -> None:
    narrow, wide = render(80), render(200)
    seen = [line for line in narrow.splitlines() if line.startswith("2451/tcp  open")]
    assert seen and all("..." in line for line in seen)
    assert len(max(wide.splitlines(), key=len)) > 80
    warning = [line for line in narrow.splitlines() if "label is not evidence" in line]
    assert warning and all(len(line) <= 80 for line in narrow.splitlines())
    assert "    port another" in narrow or narrow.count("\n    ") >= 3  # continuation lines


def test_width_comes_from_columns_and_never_goes_under_80(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    assert terminal_width() == 120
    monkeypatch.setenv("COLUMNS", "40")
    assert terminal_width() == 80
    assert terminal_width(100) == 100


# -- the progress bar ----------------------------------------------------------------------


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@dataclass
class _Stats:
    done: int = 0
    total: int = 10


@dataclass
class _Scan:
    stats: _Stats = field(default_factory=_Stats)


@dataclass
class _Pipeline:
    pending_evidence: int = 0


def test_the_progress_bar_names_its_phase_and_is_cleared_when_closed() -> None:
    from scanner.cli.app import Environment
    from scanner.cli.progress import Progress

    stderr = _Tty()
    scan, pipeline = _Scan(), _Pipeline()

    async def run() -> None:
        progress = Progress(scan, Environment(stderr=stderr), pipeline)  # type: ignore[arg-type]
        await asyncio.sleep(progress.DELAY + 0.4)
        scan.stats.done = 10
        pipeline.pending_evidence = 2
        await asyncio.sleep(0.5)
        progress.close()
        stderr.write("REPORT\n")

    asyncio.run(run())
    text = stderr.getvalue()
    assert "probing" in text and "identifying services (2 open ports)" in text
    bar, report = text.rsplit("REPORT", 1)
    # The last thing before the report erases the bar's line: the report starts on a clean one.
    assert bar.endswith("\x1b[2K") or bar.rstrip("\r\n").endswith("\x1b[2K"), repr(bar[-40:])
    assert report == "\n"
