"""The terminal report: a table of open ports, host by host as nmap lays it out, and a summary.

Rules:
- It fits the terminal (``COLUMNS``), down to 80 columns: long evidence is shortened
  (``...``; the reports hold it whole), long labels too if need be, warnings are wrapped.
- Only the rows shown are kept (open ports, or every port with ``--all``), never the rest.
- Every string from outside (host names, banners, registry text) passes :func:`printable`
  before it reaches a terminal, so no control character or escape sequence gets through
  (the class is :data:`scanner.text.CONTROL`).
- Given the registry's date, the report starts with it (a header line) and, when the data
  is over a year old on ``today``, ends with one note saying so
  (:func:`scanner.report.explain.stale_note`). With ``explain``, each open port's
  evidence trail and a command to check it by hand follow the warnings.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import textwrap
from typing import TextIO

from scanner.models import Assessment, ClosedPorts, Judgement, PortState, Result
from scanner.report.summary import Summary
from scanner.report.writers import Ending, ScanMeta
from scanner.text import escape_controls

SHOWN_BY_DEFAULT = frozenset({PortState.OPEN})
MAX_UNREACHABLE_LISTED = 10


def printable(text: str) -> str:
    """``text`` with control and invisible characters escaped (:func:`escape_controls`)."""
    return escape_controls(text)


def address_key(host: str) -> tuple[int, bytes]:
    """A sort key that orders addresses numerically, IPv4 before IPv6, anything else last."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return 9, host.encode()
    return address.version, address.packed


MIN_WIDTH = 80  # the narrowest terminal the table is laid out for
LABEL_WIDTH = 16  # a longer label is shortened when the terminal is narrow
LABEL_MIN = 8
SEEN_MIN = 24  # the evidence column keeps at least this much
GAP = "  "


def terminal_width(columns: int | None = None) -> int:
    """The width to lay the table out for: ``columns``, else the terminal's (``COLUMNS``
    first, as the shell sets it), never under :data:`MIN_WIDTH`."""
    if columns is None:
        columns = shutil.get_terminal_size((MIN_WIDTH, 24)).columns
    return max(MIN_WIDTH, columns)


def shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in ``...`` when cut."""
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."


def _verdict_cell(a: Assessment) -> str:
    # An alarm must stand out in a long table, without relying on colour.
    return f"!! {a.verdict.upper()}" if a.alarm else a.verdict


def _policy_cell(policy: str) -> str:
    return "!! VIOLATION" if policy == Judgement.VIOLATION else policy


def _seen(r: Result) -> str:
    a = r.assessment
    if a is None:
        return ""
    return f"{a.evidence} ({a.evidence_detail})" if a.evidence_detail else a.evidence


def _cells(r: Result, columns: tuple[str, ...]) -> list[str]:
    a = r.assessment
    values = {
        "PORT": f"{r.port}/{r.protocol.value}",
        "STATE": r.state.value,
        "REASON": r.reason.value,
        "LABEL": a.label if a is not None else "",
        "SEEN": _seen(r),
        "VERDICT": _verdict_cell(a) if a is not None else "",
        "POLICY": _policy_cell(a.policy) if a is not None else "",
    }
    return [printable(values[column]) for column in columns]


def _layout(rows: list[list[str]], columns: tuple[str, ...], width: int) -> list[int]:
    """Column widths that fit ``width``: the evidence (SEEN) column takes what is left,
    after long labels are shortened if need be."""
    widths = [max([len(c), *(len(row[i]) for row in rows)]) for i, c in enumerate(columns)]
    if "SEEN" not in columns:
        return widths
    seen = columns.index("SEEN")

    def room() -> int:
        return (
            width
            - sum(w for i, w in enumerate(widths) if i != seen)
            - len(GAP) * (len(columns) - 1)
        )

    if "LABEL" in columns and room() < SEEN_MIN:
        # Labels give way first (to 16, then down to 8 on a crowded line), then evidence.
        label = columns.index("LABEL")
        widths[label] = min(widths[label], LABEL_WIDTH)
        if room() < SEEN_MIN // 2:
            widths[label] = max(LABEL_MIN, widths[label] - (SEEN_MIN // 2 - room()))
    widths[seen] = max(len("SEEN"), min(widths[seen], room()))
    return widths


def _line(cells: list[str], widths: list[int]) -> str:
    return GAP.join(shorten(c, w).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def _wrapped(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width, subsequent_indent="    ", break_on_hyphens=False))


class TableReport:
    """Collects the rows to show and renders them, host by host, with the summary at the end.

    The layout is nmap's, one block a host (``PORT STATE LABEL SEEN VERDICT``, with
    ``REASON`` when ``reason`` is set and ``POLICY`` under a policy), fitted to ``width``
    (default: the terminal's, at least 80 columns): the evidence is shortened to fit, and
    warnings are wrapped.
    """

    def __init__(
        self,
        *,
        show_all: bool = False,
        reason: bool = False,
        width: int | None = None,
        registry_date: str = "",
        today: dt.date | None = None,
        explain: bool = False,
    ) -> None:
        self.show_all = show_all
        self.reason = reason
        self.width = terminal_width(width)
        self.registry_date = registry_date
        self.today = today
        self.explain = explain
        self.rows: list[Result] = []

    @property
    def shown(self) -> frozenset[PortState]:
        """The states that get a row."""
        return frozenset(PortState) if self.show_all else SHOWN_BY_DEFAULT

    def add(self, result: Result) -> None:
        """Keep ``result`` if its state is shown."""
        if self.show_all or result.state in SHOWN_BY_DEFAULT:
            self.rows.append(result)

    def add_closed(self, block: ClosedPorts) -> None:
        """:meth:`add` each port of ``block``."""
        if self.show_all or PortState.CLOSED in SHOWN_BY_DEFAULT:
            self.rows += block.results()

    def render(self, summary: Summary, stream: TextIO) -> None:
        """Write each host's table and warnings, the "Not shown" line and the unreachable
        hosts to ``stream``."""
        if self.registry_date:
            stream.write(f"Labels from the IANA registry of {printable(self.registry_date)}\n")
        if self.rows:
            self._render_hosts(stream)
        elif summary.total:
            stream.write("No open ports found.\n")
        line = summary.not_shown(self.shown)
        if line:
            stream.write(line + "\n")
        unreachable = summary.unreachable_hosts()
        for host, reason in unreachable[:MAX_UNREACHABLE_LISTED]:
            stream.write(f"Host {host} is unreachable ({reason.value})\n")
        if len(unreachable) > MAX_UNREACHABLE_LISTED:
            more = len(unreachable) - MAX_UNREACHABLE_LISTED
            stream.write(f"... and {more} more unreachable hosts\n")
        if self.registry_date and self.today is not None:
            from scanner.report.explain import stale_note

            if note := stale_note(self.registry_date, self.today):
                stream.write(note + "\n")

    def _render_hosts(self, stream: TextIO) -> None:
        # One address parse per host, not per row: --all can mean 65,535 rows a host.
        keys = {host: address_key(host) for host in {r.host for r in self.rows}}
        rows = sorted(self.rows, key=lambda r: (keys[r.host], r.protocol.value, r.port))
        assessed = any(r.assessment is not None for r in rows)
        judged = any(r.assessment is not None and r.assessment.policy for r in rows)
        columns: tuple[str, ...] = ("PORT", "STATE")
        if self.reason or not assessed:
            columns += ("REASON",)
        if assessed:
            columns += ("LABEL", "SEEN", "VERDICT")
        if judged:
            columns += ("POLICY",)
        # Every host's block shares one layout, so the columns line up down the report.
        cells = [_cells(r, columns) for r in rows]
        widths = _layout(cells, columns, self.width)
        start = 0
        while start < len(rows):
            host = rows[start].host
            end = start
            while end < len(rows) and rows[end].host == host:
                end += 1
            first = rows[start]
            name = f"{first.hostname} ({host})" if first.hostname else host
            if start:
                stream.write("\n")
            stream.write(printable(f"portprobe report for {name}") + "\n")
            stream.write(_line(list(columns), widths) + "\n")
            for row in cells[start:end]:
                stream.write(_line(row, widths) + "\n")
            for r in rows[start:end]:
                a = r.assessment
                where = f"{r.port}/{r.protocol.value}"
                if a is not None and a.warning:
                    text = printable(f"{where}: {a.warning}")
                    stream.write(_wrapped(text, self.width) + "\n")
                if a is not None and a.policy == Judgement.VIOLATION:
                    stream.write(f"{host} {where}: open, and the policy does not allow it\n")
            if self.explain:
                from scanner.report.explain import explain_lines

                for r in rows[start:end]:
                    stream.writelines(printable(line) + "\n" for line in explain_lines(r))
            start = end


class TableWriter:
    """The terminal table as a report :class:`~scanner.report.writers.Writer` (``.txt``)."""

    def __init__(self, stream: TextIO, meta: ScanMeta) -> None:
        self._stream = stream
        self.table = TableReport(show_all=meta.closed_listed, registry_date=meta.registry_date)

    def write(self, result: Result) -> None:
        """Keep ``result`` for the table (written, sorted, by :meth:`close`)."""
        self.table.add(result)

    def omit(self, result: Result) -> None:
        """Nothing: the summary counts what is not shown."""

    def write_closed(self, block: ClosedPorts) -> None:
        """Keep the ports of ``block`` for the table."""
        self.table.add_closed(block)

    def omit_closed(self, block: ClosedPorts) -> None:
        """Nothing: the summary counts what is not shown."""

    def close(self, ending: Ending) -> None:
        """Render the table and the summary lines."""
        self.table.render(ending.summary, self._stream)
