"""What changed between two reports of the same scan: ``portprobe diff OLD NEW``.

Rules:
- Ports are matched on (host, protocol, port), never on the port number alone.
- A port missing from a report counts as closed: reports leave closed ports out unless
  ``--all`` was given.
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
from dataclasses import dataclass
from typing import TextIO

from tabulate import tabulate

from scanner.models import PortState, Result
from scanner.report.table import address_key, printable
from scanner.report.writers import safe_cell

__all__ = ["DIFF_COLUMNS", "DIFF_FORMATS", "Change", "diff_results", "write_diff"]

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


def diff_results(old: Iterable[Result], new: Iterable[Result]) -> list[Change]:
    """Every port that differs between ``old`` and ``new``, sorted by kind, host, port."""
    before, after = _index(old), _index(new)
    changes = []
    for key in before.keys() | after.keys():
        a, b = before.get(key), after.get(key)
        old_state = a.state.value if a is not None else _MISSING
        new_state = b.state.value if b is not None else _MISSING
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
        if kind:
            host, protocol, port = key
            changes.append(
                Change(kind, host, port, protocol, old_state, new_state, "; ".join(details))
            )
    return sorted(changes, key=_sort_key)


def write_diff(changes: list[Change], fmt: str, stream: TextIO, *, old: str, new: str) -> None:
    """Write ``changes`` to ``stream`` as ``table``, ``csv`` or ``json``."""
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
            "changes": [
                {**dict(zip(DIFF_COLUMNS, c.cells(), strict=True)), "port": c.port} for c in changes
            ],
        }
        stream.write(json.dumps(document, indent=1) + "\n")
    elif not changes:
        stream.write(printable(f"No changes between {old} and {new}.") + "\n")
    else:
        rows = [[printable(cell) for cell in c.cells()] for c in changes]
        headers = [name.upper() for name in DIFF_COLUMNS]
        stream.write(tabulate(rows, headers=headers, disable_numparse=True) + "\n")
        counts = {kind: sum(c.change == kind for c in changes) for kind in _ORDER}
        stream.write(", ".join(f"{n} {kind}" for kind, n in counts.items() if n) + "\n")
