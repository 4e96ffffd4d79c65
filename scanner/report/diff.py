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
- Memory does not grow with the reports: each is read once, as a stream, into an
  external sort (:mod:`scanner.report.runs`) of one short line a result (its state, and
  what is compared of an open port); the two sorted streams are then walked together,
  one host at a time. Only the changes are held.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TextIO

from tabulate import tabulate

from scanner.models import Port, PortState, Proto, Result
from scanner.ports import format_port_spec
from scanner.report.probed import Coverage
from scanner.report.read import Report, ReportStream, each_result
from scanner.report.runs import ExternalSort, sort_prefix
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


def _sort_key(change: Change) -> tuple[int, tuple[int, bytes], str, int]:
    return _ORDER[change.change], address_key(change.host), change.protocol, change.port


_NO_FIELDS = ("",) * len(_COMPARED)


def _fields(result: Result) -> tuple[str, ...]:
    a = result.assessment
    return _NO_FIELDS if a is None else tuple(getattr(a, name) for name in _COMPARED)


@dataclass(frozen=True, slots=True)
class _Listed:
    """What a diff needs of a listed result: its state, and the compared fields."""

    state: str
    fields: tuple[str, ...] = _NO_FIELDS


def _compare(
    key: Key, a: _Listed | None, b: _Listed | None, old_state: str, new_state: str
) -> Change | None:
    """The change of one port probed by both reports, or None."""
    was_open = old_state == PortState.OPEN.value
    is_open = new_state == PortState.OPEN.value
    details = []
    if was_open and is_open:
        fa = a.fields if a is not None else _NO_FIELDS
        fb = b.fields if b is not None else _NO_FIELDS
        details = [
            f"{name}: {old or '-'} -> {new or '-'}"
            for name, old, new in zip(_COMPARED, fa, fb, strict=True)
            if old != new
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


def _listed(result: Result) -> _Listed:
    return _Listed(result.state.value, _fields(result))


def diff_results(old: Iterable[Result], new: Iterable[Result]) -> list[Change]:
    """Every port that differs between two complete lists of the same scan (a port missing
    from one was closed), sorted by kind, host, port. Reports: :func:`diff_reports`."""
    before = {(r.host, r.protocol.value, r.port): _listed(r) for r in old}
    after = {(r.host, r.protocol.value, r.port): _listed(r) for r in new}
    changes = []
    for key in before.keys() | after.keys():
        a, b = before.get(key), after.get(key)
        old_state = a.state if a is not None else _MISSING
        new_state = b.state if b is not None else _MISSING
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


def _state(listed: _Listed | None, coverage: Coverage, host: str, port: Port) -> str:
    if listed is not None:
        return listed.state
    found = coverage.unlisted_state(host, port)
    return _MISSING if found is None else found.value


# A line of a side's external sort: the host's sort prefix (65 characters), the protocol
# (4), the port (5), the result's place in its report (12: of a port listed twice, the
# last counts, as a dict would keep it); then the host, the state and, for an open port,
# the compared fields as JSON, separated by tabs.
_PREFIX = 65
_PROTOCOL = _PREFIX + 4
_PORT = _PROTOCOL + 5
_PAYLOAD = _PORT + 12 + 1
_PROTOCOLS = {p.value: p for p in Proto}
_PORTS: dict[str, Port] = {}  # each port once, by its text in a line
_PLAIN = {state.value: _Listed(state.value) for state in PortState}


class _Side:
    """One report's ports: those it lists, sorted into runs on disk; those it probed."""

    def __init__(self, report: Report | ReportStream, sort: ExternalSort) -> None:
        self.report = report
        self.sort = sort
        prefixes: dict[str, str] = {}
        open_ = PortState.OPEN
        for place, result in enumerate(each_result(report)):
            host = result.host
            prefix = prefixes.get(host)
            if prefix is None:
                prefix = prefixes[host] = sort_prefix(address_key(host))
            fields = json.dumps(_fields(result)) if result.state is open_ else ""
            sort.add(
                f"{prefix}{result.protocol.value:<4}{result.port:05d}{place:012d}\t"
                f"{host}\t{result.state.value}\t{fields}\n"
            )
        self.coverage = report.coverage  # whole once the results are read

    def hosts(self) -> Iterator[tuple[str, str, dict[Port, _Listed]]]:
        """``(sort prefix, host, listed ports)`` for each host the report lists, in order."""
        current, host = "", ""
        listed: dict[Port, _Listed] = {}
        ports = _PORTS
        plain = _PLAIN
        for line in self.sort.sorted():
            prefix = line[:_PREFIX]
            if prefix != current:
                if current:
                    yield current, host, listed
                current, listed = prefix, {}
            host, state, fields = line[_PAYLOAD:-1].split("\t", 2)
            code = line[_PREFIX:_PORT]
            port = ports.get(code)
            if port is None:
                port = ports[code] = Port(_PROTOCOLS[code[:4].rstrip()], int(code[4:]))
            listed[port] = _Listed(state, tuple(json.loads(fields))) if fields else plain[state]
        if current:
            yield current, host, listed

    def covered_hosts(self) -> set[str]:
        """The hosts the report's coverage names (beyond those it lists)."""
        found = set(self.coverage.unlisted)
        if self.coverage.ports:
            found.update(str(a) for network in self.coverage.complete for a in network)
        return found

    def named(self, host: str, listed: dict[Port, _Listed]) -> set[Port]:
        """The ports of ``host`` the report lists or names as probed."""
        unlisted = self.coverage.unlisted.get(host)
        return listed.keys() | unlisted.keys() if unlisted else set(listed)

    def probed(self, host: str, named: set[Port]) -> set[Port]:
        """The ports of ``host`` the report probed, of which it ``named`` these."""
        if self.coverage.ports and self.coverage.host_complete(host):
            return named | self.coverage.ports
        return named


def _coverage_warning(report: Report | ReportStream, name: str) -> str:
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


def _both(
    before: _Side, after: _Side
) -> Iterator[tuple[str, dict[Port, _Listed], dict[Port, _Listed]]]:
    """Every host either report lists or names, with the ports each lists (by host)."""
    seen: set[str] = set()
    old, new = before.hosts(), after.hosts()
    a, b = next(old, None), next(new, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a[0] < b[0]):
            assert a is not None
            yield a[1], a[2], {}
            seen.add(a[1])
            a = next(old, None)
        elif a is None or b[0] < a[0]:
            yield b[1], {}, b[2]
            seen.add(b[1])
            b = next(new, None)
        else:
            yield a[1], a[2], b[2]
            seen.add(a[1])
            a, b = next(old, None), next(new, None)
    for host in (before.covered_hosts() | after.covered_hosts()) - seen:
        yield host, {}, {}


def diff_reports(
    old: Report | ReportStream, new: Report | ReportStream, *, old_name: str, new_name: str
) -> Diff:
    """What changed from ``old`` to ``new`` among the ports both probed (see the rules).

    Streamed reports are read once each; their results are sorted on disk meanwhile.
    """
    with ExternalSort() as sort_old, ExternalSort() as sort_new:
        before, after = _Side(old, sort_old), _Side(new, sort_new)
        return _diff(before, after, old_name=old_name, new_name=new_name)


def _diff(before: _Side, after: _Side, *, old_name: str, new_name: str) -> Diff:
    old, new = before.report, after.report
    changes: list[Change] = []
    hosts: set[str] = set()
    compared = skipped = 0
    for host, listed_a, listed_b in _both(before, after):
        named_a, named_b = before.named(host, listed_a), after.named(host, listed_b)
        common = before.probed(host, named_a) & after.probed(host, named_b)
        listed = listed_a.keys() | listed_b.keys()
        skipped += len(listed - common)
        if not common:
            continue
        hosts.add(host)
        compared += len(common)
        # A port neither report names was closed in both: no change to look for.
        for port in (named_a | named_b) & common:
            a, b = listed_a.get(port), listed_b.get(port)
            if a is b and a is not None:
                continue  # the same state, not open (open ports have their own _Listed)
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
