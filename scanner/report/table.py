"""The terminal report: a table of open ports and an nmap-style summary.

Rules:
- Only the rows shown are kept (open ports, or every port with ``--all``), never the rest.
- Every string from outside (host names, banners, registry text) passes :func:`printable`
  before it reaches a terminal, so no control character or escape sequence gets through
  (the class is :data:`scanner.text.CONTROL`).
"""

from __future__ import annotations

import ipaddress
from typing import TextIO

from tabulate import tabulate

from scanner.models import PortState, Result
from scanner.report.summary import Summary
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


HEADERS = ("HOST", "PORT", "STATE", "REASON")
ASSESSED_HEADERS = ("LABEL", "ATTESTATION", "EVIDENCE", "VERDICT")
EVIDENCE_WIDTH = 48


def _verdict_cell(verdict: str) -> str:
    # A contradiction must stand out in a long table, without relying on colour.
    return "!! CONTRADICTS" if verdict == "contradicts" else verdict


def _policy_cell(policy: str) -> str:
    return "!! VIOLATION" if policy == "violation" else policy


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
        printable(_verdict_cell(a.verdict)),
        *((printable(_policy_cell(a.policy)),) if judged else ()),
    )


class TableReport:
    """Collects the rows to show and renders them with the summary at the end."""

    def __init__(self, *, show_all: bool = False) -> None:
        self.show_all = show_all
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
                if r.assessment is not None and r.assessment.policy == "violation":
                    where = f"{r.host} {r.port}/{r.protocol.value}"
                    stream.write(f"{where}: open, and the policy does not allow it\n")
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
