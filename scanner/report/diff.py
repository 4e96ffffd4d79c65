"""What changed between two reports of the same scan: ``portprobe diff OLD NEW``.

Rules:
- Ports are matched on (host, protocol, port), never on the port number alone.
- Only what both reports probed is compared (:func:`diff_reports`). A report leaves closed
  ports out (unless ``--all``), so a port missing from it is closed only if the report's
  record of what it probed says so (:mod:`scanner.report.probed`): a port a scan never
  probed (an interrupted scan, another port list, other hosts) is never ``closed``. Ports
  listed by one report and not probed by the other are counted, not compared; the diff
  names the common port set and warns of partial inputs and differing port lists.
- Kinds of change, in the order they are listed:

  ========== ===============================================================
  ``opened``  open in NEW, not open in OLD (or missing from it)
  ``closed``  open in OLD, and closed, filtered or missing in NEW
  ``changed`` open in both, with a different label, evidence or verdict
  ``state``   any other change of state (e.g. filtered -> closed)
  ========== ===============================================================

- Writers take a stream and the fixed column list ``DIFF_COLUMNS``; cells from the
  network pass :func:`~scanner.report.table.printable` (table) or the CSV formula guard.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TextIO

from tabulate import tabulate

from scanner.models import Port, PortState, Result
from scanner.ports import format_port_spec
from scanner.report.probed import Coverage
from scanner.report.read import Report
from scanner.report.table import address_key, printable
from scanner.report.writers import safe_cell

__all__ = [
    "DIFF_COLUMNS",
    "DIFF_FORMATS",
    "Change",
    "Diff",
    "diff_reports",
    "diff_results",
    "write_diff",
]

DIFF_COLUMNS = ("change", "host", "port", "protocol", "old_state", "new_state", "detail")
"""The columns of a diff, in order (CSV header, JSON keys, table headers upper-cased)."""

DIFF_FORMATS = ("table", "csv", "json")

_COMPARED = ("label", "evidence", "evidence_detail", "verdict")
_ORDER = {"opened": 0, "closed": 1, "changed": 2, "state": 3}
_MISSING = "closed"  # what a port missing from a report counts as

Key = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class Change:
    """One port that differs between OLD and NEW.

    ``old_state``/``new_state`` are state names (``closed`` for a port missing from a
    report); ``detail`` says what else changed, as ``field: old -> new`` parts joined by
    ``"; "`` (``-`` for an empty value).
    """

    change: str
    host: str
    port: int
    protocol: str
    old_state: str
    new_state: str
    detail: str

    def cells(self) -> tuple[str, ...]:
        """The change as text, in ``DIFF_COLUMNS`` order."""
        return (
            self.change,
            self.host,
            str(self.port),
            self.protocol,
            self.old_state,
            self.new_state,
            self.detail,
        )


def _key(result: Result) -> Key:
    return result.host, result.protocol.value, result.port


def _index(results: Iterable[Result]) -> dict[Key, Result]:
    return {_key(r): r for r in results}


def _sort_key(change: Change) -> tuple[int, tuple[int, bytes], str, int]:
    return _ORDER[change.change], address_key(change.host), change.protocol, change.port


def _fields(result: Result | None) -> dict[str, str]:
    a = None if result is None else result.assessment
    return {name: "" if a is None else getattr(a, name) for name in _COMPARED}


def _compare(
    key: Key, a: Result | None, b: Result | None, old_state: str, new_state: str
) -> Change | None:
    """The change of one port probed by both reports, or None."""
    was_open = old_state == PortState.OPEN.value
    is_open = new_state == PortState.OPEN.value
    details = []
    if was_open and is_open:
        fa, fb = _fields(a), _fields(b)
        details = [
            f"{name}: {fa[name] or '-'} -> {fb[name] or '-'}"
            for name in _COMPARED
            if fa[name] != fb[name]
        ]
        kind = "changed" if details else ""
    elif is_open:
        kind = "opened"
    elif was_open:
        kind = "closed"
    else:
        kind = "state" if old_state != new_state else ""
    if not kind:
        return None
    host, protocol, port = key
    return Change(kind, host, port, protocol, old_state, new_state, "; ".join(details))


def diff_results(old: Iterable[Result], new: Iterable[Result]) -> list[Change]:
    """Every port that differs between two complete lists of the same scan (a port missing
    from one was closed), sorted by kind, host, port. Reports: :func:`diff_reports`."""
    before, after = _index(old), _index(new)
    changes = []
    for key in before.keys() | after.keys():
        a, b = before.get(key), after.get(key)
        old_state = a.state.value if a is not None else _MISSING
        new_state = b.state.value if b is not None else _MISSING
        change = _compare(key, a, b, old_state, new_state)
        if change is not None:
            changes.append(change)
    return sorted(changes, key=_sort_key)


@dataclass(frozen=True, slots=True)
class Diff:
    """What :func:`diff_reports` found: the changes within the common set, and what that
    set was. ``common`` describes it (ports and hosts); ``compared`` counts the ports in
    it; ``not_compared`` the ports one report lists and the other did not probe."""

    changes: list[Change]
    common: str
    compared: int
    not_compared: int
    warnings: list[str] = field(default_factory=list)


def _state(listed: Result | None, coverage: Coverage, host: str, port: Port) -> str:
    if listed is not None:
        return listed.state.value
    found = coverage.unlisted_state(host, port)
    return _MISSING if found is None else found.value


class _Side:
    """One report's ports, by host: those it lists, and those it probed."""

    def __init__(self, report: Report) -> None:
        self.coverage = report.coverage
        self.listed: dict[str, dict[Port, Result]] = {}
        for r in report.results:
            self.listed.setdefault(r.host, {})[Port(r.protocol, r.port)] = r

    def hosts(self) -> set[str]:
        found = set(self.listed) | set(self.coverage.unlisted)
        if self.coverage.ports:
            found.update(str(a) for network in self.coverage.complete for a in network)
        return found

    def named(self, host: str) -> set[Port]:
        """The ports of ``host`` the report lists or names as probed."""
        return set(self.listed.get(host, ())) | set(self.coverage.unlisted.get(host, ()))

    def probed(self, host: str) -> set[Port]:
        found = self.named(host)
        if self.coverage.ports and self.coverage.host_complete(host):
            found |= self.coverage.ports
        return found


def _coverage_warning(report: Report, name: str) -> str:
    if report.complete is None:
        return (
            f"{name} does not record what its scan probed ({report.format}): "
            "only the ports it lists are compared"
        )
    if report.complete is False:
        return f"{name} is partial (its scan was cut short): only the ports it probed are compared"
    if not report.coverage.exact:
        return f"{name} has no record of what it probed: only the ports it lists are compared"
    return ""


def diff_reports(old: Report, new: Report, *, old_name: str, new_name: str) -> Diff:
    """What changed from ``old`` to ``new`` among the ports both probed (see the rules)."""
    before, after = _Side(old), _Side(new)
    changes: list[Change] = []
    hosts: set[str] = set()
    compared = skipped = 0
    for host in before.hosts() | after.hosts():
        common = before.probed(host) & after.probed(host)
        listed = set(before.listed.get(host, ())) | set(after.listed.get(host, ()))
        skipped += len(listed - common)
        if not common:
            continue
        hosts.add(host)
        compared += len(common)
        # A port neither report names was closed in both: no change to look for.
        for port in (before.named(host) | after.named(host)) & common:
            a = before.listed.get(host, {}).get(port)
            b = after.listed.get(host, {}).get(port)
            change = _compare(
                (host, port.protocol.value, port.number),
                a,
                b,
                _state(a, before.coverage, host, port),
                _state(b, after.coverage, host, port),
            )
            if change is not None:
                changes.append(change)
    warnings = [
        w for w in (_coverage_warning(old, old_name), _coverage_warning(new, new_name)) if w
    ]
    ports_a, ports_b = old.coverage.ports, new.coverage.ports
    if ports_a is not None and ports_b is not None:
        common_ports = sorted(ports_a & ports_b)
        spec = format_port_spec(common_ports) or "none"
        if ports_a != ports_b:
            warnings.append(
                f"the port lists differ ({old_name}: {format_port_spec(sorted(ports_a))}; "
                f"{new_name}: {format_port_spec(sorted(ports_b))}): only the common ports "
                "are compared"
            )
    else:
        spec = "the ports both list"
    if skipped:
        warnings.append(
            f"{skipped} port{'s' if skipped != 1 else ''} listed in one report "
            f"{'were' if skipped != 1 else 'was'} not probed by the other: not compared"
        )
    described = f"{spec} on {len(hosts)} host{'s' if len(hosts) != 1 else ''}"
    return Diff(sorted(changes, key=_sort_key), described, compared, skipped, warnings)


def write_diff(found: Diff | list[Change], fmt: str, stream: TextIO, *, old: str, new: str) -> None:
    """Write a diff to ``stream`` as ``table``, ``csv`` or ``json``.

    The table ends with the common set and the warnings; JSON holds them as ``common``,
    ``compared``, ``not_compared`` and ``warnings``; CSV has only the changes (the
    command line says the rest on stderr).
    """
    diff = found if isinstance(found, Diff) else Diff(found, "", 0, 0)
    changes = diff.changes
    if fmt == "csv":
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(DIFF_COLUMNS)
        for change in changes:
            writer.writerow([safe_cell(cell) for cell in change.cells()])
    elif fmt == "json":
        document = {
            "old": old,
            "new": new,
            "changed": bool(changes),
            "common": diff.common,
            "compared": diff.compared,
            "not_compared": diff.not_compared,
            "warnings": diff.warnings,
            "changes": [
                {**dict(zip(DIFF_COLUMNS, c.cells(), strict=True)), "port": c.port} for c in changes
            ],
        }
        stream.write(json.dumps(document, indent=1) + "\n")
    elif not changes:
        stream.write(printable(f"No changes between {old} and {new}.") + "\n")
        _write_common(diff, stream)
    else:
        rows = [[printable(cell) for cell in c.cells()] for c in changes]
        headers = [name.upper() for name in DIFF_COLUMNS]
        stream.write(tabulate(rows, headers=headers, disable_numparse=True) + "\n")
        counts = {kind: sum(c.change == kind for c in changes) for kind in _ORDER}
        stream.write(", ".join(f"{n} {kind}" for kind, n in counts.items() if n) + "\n")
        _write_common(diff, stream)


def _write_common(diff: Diff, stream: TextIO) -> None:
    """The table's closing lines: what was compared, and the warnings."""
    if diff.common:
        stream.write(printable(f"Compared {diff.compared} ports: {diff.common}.") + "\n")
    for warning in diff.warnings:
        stream.write(printable(f"warning: {warning}") + "\n")
