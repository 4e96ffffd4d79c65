"""The terminal report: a table of open ports and an nmap-style summary.

Rules:
- Only the rows shown are kept (open ports, or every port with ``--all``), never the rest.
- Every string from outside (host names now, banners later) passes :func:`printable`
  before it reaches a terminal, so no control character or escape sequence gets through.
- Given the registry's date, the report starts with it (a header line) and, when the data
  is over a year old on ``today``, ends with one note saying so
  (:func:`scanner.report.explain.stale_note`). With ``explain``, each open port's
  evidence trail and a command to check it by hand follow the warnings.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from typing import TextIO

from tabulate import tabulate

from scanner.models import Assessment, Judgement, PortState, Result
from scanner.report.summary import Summary
from scanner.report.writers import Ending, ScanMeta

# The class of ``scanner.protocols.clean``: C0 and C1 controls, DEL, zero-width characters,
# line/paragraph separators, bidi embeddings, overrides and isolates, and the BOM.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")

SHOWN_BY_DEFAULT = frozenset({PortState.OPEN})
MAX_UNREACHABLE_LISTED = 10


def printable(text: str) -> str:
    """``text`` with control characters (C0, C1, bidi, zero-width) as ``\\xNN``/``\\uNNNN``."""
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def address_key(host: str) -> tuple[int, bytes]:
    """A sort key that orders addresses numerically, IPv4 before IPv6, anything else last."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return 9, host.encode()
    return address.version, address.packed


HEADERS = ("HOST", "PORT", "STATE", "REASON")
ASSESSED_HEADERS = ("LABEL", "ATTESTATION", "EVIDENCE", "VERDICT")
EVIDENCE_WIDTH = 48


def _verdict_cell(a: Assessment) -> str:
    # An alarm must stand out in a long table, without relying on colour.
    return f"!! {a.verdict.upper()}" if a.alarm else a.verdict


def _policy_cell(policy: str) -> str:
    return "!! VIOLATION" if policy == Judgement.VIOLATION else policy


def _row(r: Result, assessed: bool, judged: bool = False) -> tuple[str, ...]:
    cells = (
        printable(f"{r.hostname} ({r.host})" if r.hostname else r.host),
        f"{r.port}/{r.protocol.value}",
        r.state.value,
        r.reason.value,
    )
    if not assessed:
        return cells
    a = r.assessment
    if a is None:
        return (*cells, "", "", "", "", *(("",) if judged else ()))
    evidence = f"{a.evidence} ({a.evidence_detail})" if a.evidence_detail else a.evidence
    if len(evidence) > EVIDENCE_WIDTH:
        evidence = evidence[: EVIDENCE_WIDTH - 3] + "..."
    return (
        *cells,
        printable(a.label),
        printable(a.attestation),
        printable(evidence),
        printable(_verdict_cell(a)),
        *((printable(_policy_cell(a.policy)),) if judged else ()),
    )


class TableReport:
    """Collects the rows to show and renders them with the summary at the end."""

    def __init__(
        self,
        *,
        show_all: bool = False,
        registry_date: str = "",
        today: dt.date | None = None,
        explain: bool = False,
    ) -> None:
        self.show_all = show_all
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

    def render(self, summary: Summary, stream: TextIO) -> None:
        """Write the table, the "Not shown" line and the unreachable hosts to ``stream``."""
        if self.registry_date:
            stream.write(f"Labels from the IANA registry of {printable(self.registry_date)}\n")
        if self.rows:
            # One address parse per host, not per row: --all can mean 65,535 rows a host.
            keys = {host: address_key(host) for host in {r.host for r in self.rows}}
            rows = sorted(self.rows, key=lambda r: (keys[r.host], r.protocol.value, r.port))
            assessed = any(r.assessment is not None for r in rows)
            judged = any(r.assessment is not None and r.assessment.policy for r in rows)
            table = [_row(r, assessed, judged) for r in rows]
            headers: tuple[str, ...] = HEADERS + ASSESSED_HEADERS if assessed else HEADERS
            if judged:
                headers += ("POLICY",)
            # Every cell is text: numparse would cost most of the time on large tables.
            stream.write(tabulate(table, headers=headers, disable_numparse=True) + "\n")
            warned = [r for r in rows if r.assessment is not None and r.assessment.warning]
            for r in warned:
                assert r.assessment is not None
                where = f"{r.host} {r.port}/{r.protocol.value}"
                stream.write(printable(f"{where}: {r.assessment.warning}") + "\n")
            for r in rows:
                if r.assessment is not None and r.assessment.policy == Judgement.VIOLATION:
                    where = f"{r.host} {r.port}/{r.protocol.value}"
                    stream.write(f"{where}: open, and the policy does not allow it\n")
            if self.explain:
                from scanner.report.explain import explain_lines

                for r in rows:
                    stream.writelines(printable(line) + "\n" for line in explain_lines(r))
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

    def close(self, ending: Ending) -> None:
        """Render the table and the summary lines."""
        self.table.render(ending.summary, self._stream)
