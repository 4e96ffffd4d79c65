"""Joining the reports of a sharded scan into one: ``portprobe merge FILES... -o OUT``.

Rules:
- Results are keyed on (host, protocol, port). A key found in two inputs means the inputs
  overlap (not shards of one scan, or one file given twice): that is an error, never a
  silent pick of one of them.
- Inputs that say which scan they come from (JSON, JSON Lines, XML) must agree on the seed
  and the ports, and each shard ``K/N`` may appear once: shards of different seeds are not
  disjoint, and together do not cover the scan.
- The merge is complete when every input is complete and, for shards, all ``N`` are there.
- The merged summary counts every result listed, plus the closed ports the inputs counted
  but left out (reports without ``--all``).
- What the inputs probed and left out (their ``probed`` record, or XML's folded ports) is
  carried over: the writer is told of each such closed port (``omit``), so the merged
  report records what was probed, and XML's ``<extraports>`` counts are the whole scan's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from scanner.errors import OutputClosed, ReportError, ScanError
from scanner.models import (
    PortState,
    Proto,
    Reason,
    Result,
)
from scanner.report import make_writer
from scanner.report.read import (
    MAX_DIGITS,
    Report,
    ReportStream,
    checked_result,
    each_result,
    unix_time,
)
from scanner.report.runs import ExternalSort, KeySet, sort_prefix
from scanner.report.summary import Summary
from scanner.report.table import address_key
from scanner.report.writers import ASSESSMENT_COLUMNS, Ending, ScanMeta

__all__ = ["Merged", "merge_reports", "write_merged"]


@dataclass(slots=True)
class Merged:
    """What is known of the joined scan, and its results (sorted by host, protocol, port)
    held in an external sort: :meth:`results` and :meth:`unlisted` read them back. Close
    it (or use it in a ``with``) to remove its temporary files."""

    summary: Summary
    seed: int | None
    ports: str
    hosts: int
    started: float
    finished: float
    complete: bool
    shards: str
    registry_date: str
    closed_listed: bool
    missing: str  # e.g. "shard 2/3 is missing"; empty when nothing is
    count: int = 0  # the results
    _rows: ExternalSort = field(default_factory=ExternalSort)
    _unlisted: ExternalSort = field(default_factory=ExternalSort)

    def results(self) -> Iterator[Result]:
        """The joined results, in order."""
        for line in self._rows.sorted():
            yield _from_line(line)

    def unlisted(self) -> Iterator[Result]:
        """The closed ports the inputs probed and left out, in order, as results without
        RTT or time."""
        previous = ""
        for line in self._unlisted.sorted():
            if line != previous:
                previous = line
                host, protocol, port = line[_KEY + 1 : -1].split("\t")
                yield _closed(host, Proto(protocol), int(port))

    def close(self) -> None:
        """Remove the temporary files."""
        self._rows.close()
        self._unlisted.close()

    def __enter__(self) -> Merged:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _closed(host: str, protocol: Proto, port: int) -> Result:
    return Result(host, port, protocol, PortState.CLOSED, Reason.CONN_REFUSED)


# A line of the external sort: sort_prefix (65), protocol (4), port (5), the input's
# index (6); then a tab and the payload.
_KEY = 65 + 4 + 5
_INPUT = _KEY + 6


def _to_line(prefix: str, index: int, result: Result) -> str:
    a = result.assessment
    payload = [
        result.host,
        result.port,
        result.protocol.value,
        result.state.value,
        result.reason.value,
        result.hostname,
        result.rtt,
        result.tries,
        result.timestamp,
        None if a is None else [getattr(a, name) for name in ASSESSMENT_COLUMNS],
    ]
    return (
        f"{prefix}{result.protocol.value:<4}{result.port:05d}{index:06d}\t"
        f"{json.dumps(payload, ensure_ascii=False)}\n"
    )


def _from_line(line: str) -> Result:
    return checked_result(json.loads(line[_INPUT + 1 :]))


def _int(value: object) -> int | None:
    """A whole number of at most :data:`MAX_DIGITS` digits from a report field, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value) if len(value) <= MAX_DIGITS else None
    if isinstance(value, int) and 0 <= value < 10**MAX_DIGITS:
        return value
    return None


def _shard(value: object, name: str) -> tuple[int, int] | None:
    if not isinstance(value, str) or value.count("/") != 1:
        return None
    k, n = (_int(part) for part in value.split("/"))
    if k is None or n is None or not 1 <= k <= n:
        raise ReportError(f"{name}: bad shard {value[:20]!r}")
    return k, n


def _agree(values: Mapping[str, object], what: str) -> object:
    distinct = {repr(v): (name, v) for name, v in values.items() if v is not None}
    if len(distinct) > 1:
        (a, va), (b, vb) = list(distinct.values())[:2]
        raise ReportError(f"{a} and {b} come from different scans ({what} {va!r} and {vb!r})")
    return next(iter(distinct.values()))[1] if distinct else None


class _Prefixes(dict[str, str]):
    """Each host's sort prefix, computed once."""

    def __missing__(self, host: str) -> str:
        prefix = self[host] = sort_prefix(address_key(host))
        return prefix


def merge_reports(reports: Sequence[tuple[str, Report | ReportStream]]) -> Merged:
    """Join ``(name, report)`` pairs; ReportError if they overlap or belong to other scans.

    Each report's results are read once, into an external sort: memory does not grow with
    their number. The :class:`Merged` holds temporary files: close it.
    """
    rows, unlisted = ExternalSort(), ExternalSort()
    try:
        return _merge(reports, rows, unlisted)
    except BaseException:
        rows.close()
        unlisted.close()
        raise


def _merge(
    reports: Sequence[tuple[str, Report | ReportStream]], rows: ExternalSort, unlisted: ExternalSort
) -> Merged:
    names = [name for name, _ in reports]
    listed = KeySet()
    prefixes = _Prefixes()
    summary = Summary()
    first, last = math.inf, 0.0  # the results' times
    closed_listed: list[int] = []
    for index, (_name, report) in enumerate(reports):
        closed = 0
        for result in each_result(report):
            rows.add(_to_line(prefixes[result.host], index, result))
            listed.add(result.host, result.protocol.value, result.port)
            summary.add(result)
            closed += result.state is PortState.CLOSED
            if result.timestamp:
                first, last = min(first, result.timestamp), max(last, result.timestamp)
        closed_listed.append(closed)
    _check_overlaps(rows, names)
    metas = {name: report.meta for name, report in reports}
    seeds = {n: _int(m.get("seed")) for n, m in metas.items()}
    ports_of = {n: m.get("ports") for n, m in metas.items()}
    shards: dict[tuple[int, int], str] = {}
    for name, meta in metas.items():
        shard = _shard(meta.get("shard"), name)
        if shard is None or shard[1] == 1:  # whole scans: of different hosts, perhaps
            continue
        if shard in shards:
            raise ReportError(f"{shards[shard]} and {name} are both shard {shard[0]}/{shard[1]}")
        shards[shard] = name
    # Shards must come from one scan; whole scans (of other hosts) may differ.
    seed = _agree(seeds, "seed") if shards else None
    ports = _agree(ports_of, "ports") if shards else None
    counts = {n for _, n in shards}
    if len(counts) > 1:
        raise ReportError(f"the inputs split the scan differently ({sorted(counts)} shards)")
    missing = ""
    if counts:
        total = counts.pop()
        absent = [k for k in range(1, total + 1) if (k, total) not in shards]
        if absent:
            missing = ", ".join(f"{k}/{total}" for k in absent)
            missing = f"shard{'s' if len(absent) > 1 else ''} {missing} missing"
    for (_name, report), count in zip(reports, closed_listed, strict=True):
        _add_unlisted_closed(summary, report.ending, count)
        for omitted in report.coverage.closed_unlisted(listed):
            host, protocol, port = omitted.host, omitted.protocol.value, omitted.port
            if (host, protocol, port) not in listed:  # (listed by another input)
                unlisted.add(
                    f"{prefixes[host]}{protocol:<4}{port:05d}\t{host}\t{protocol}\t{port}\n"
                )
    starts = [t for m in metas.values() if (t := unix_time(m.get("started"))) is not None]
    ends = [t for _, r in reports if (t := unix_time(r.ending.get("finished"))) is not None]
    hosts = [h for m in metas.values() if (h := _int(m.get("hosts"))) is not None]
    dates = [d for m in metas.values() if isinstance(d := m.get("registry_date"), str) and d]
    return Merged(
        summary=summary,
        seed=seed if isinstance(seed, int) else None,
        ports=ports if isinstance(ports, str) else "",
        hosts=max(hosts) if hosts else len(listed.hosts()),
        started=min(starts) if starts else (first if last else 0.0),
        finished=max(ends) if ends else last,
        complete=all(r.complete is not False for _, r in reports) and not missing,
        shards=",".join(f"{k}/{n}" for k, n in sorted(shards)) or "1/1",
        registry_date=dates[0] if dates else "",
        closed_listed=all(m.get("closed_listed") is True for m in metas.values()),
        missing=missing,
        count=rows.count,
        _rows=rows,
        _unlisted=unlisted,
    )


def _check_overlaps(rows: ExternalSort, names: list[str]) -> None:
    """ReportError at the first key (in order) that two results share."""
    previous, owner = "", 0
    for line in rows.sorted():
        key, index = line[:_KEY], int(line[_KEY:_INPUT])
        if key == previous:  # (equal keys come in the order of the inputs)
            result = _from_line(line)
            raise ReportError(
                f"{names[owner]} and {names[index]} both hold {result.host} "
                f"{result.port}/{result.protocol.value}: they overlap"
            )
        previous, owner = key, index


def _add_unlisted_closed(summary: Summary, ending: Mapping[str, Any], listed: int) -> None:
    """Count the closed ports a report counted in its summary but did not list (``listed``
    is how many closed ports it lists)."""
    counted = ending.get("summary")
    states = counted.get("states") if isinstance(counted, dict) else None
    closed = _int(states.get("closed")) if isinstance(states, dict) else None
    if closed is None:
        return
    if closed > listed:
        summary.states[PortState.CLOSED] += closed - listed
        summary.reasons[PortState.CLOSED, Reason.CONN_REFUSED] += closed - listed


def write_merged(
    merged: Merged, fmt: str, stream: TextIO, *, version: str, command: list[str]
) -> None:
    """Write ``merged`` to ``stream`` in ``fmt`` (any report format, ``table`` too).

    A failed write (disk full) raises :class:`ScanError`, one line; a closed pipe
    :class:`OutputClosed`.
    """
    try:
        _write_merged(merged, fmt, stream, version=version, command=command)
    except BrokenPipeError as exc:
        raise OutputClosed("the output was closed") from exc
    except OSError as exc:
        raise ScanError(f"writing the merged report failed: {exc.strerror or exc}") from exc


def _write_merged(
    merged: Merged, fmt: str, stream: TextIO, *, version: str, command: list[str]
) -> None:
    meta = ScanMeta(
        version=version,
        command=command,
        started=merged.started,
        seed=merged.seed if merged.seed is not None else 0,
        ports=merged.ports,
        hosts=merged.hosts,
        shard=merged.shards,
        registry_date=merged.registry_date,
        closed_listed=merged.closed_listed,
    )
    writer = make_writer(fmt, stream, meta)
    for result in merged.results():
        writer.write(result)
    for result in merged.unlisted():
        writer.omit(result)
    writer.close(Ending(finished=merged.finished, complete=merged.complete, summary=merged.summary))
