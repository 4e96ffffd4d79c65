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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from scanner.errors import OutputClosed, ReportError, ScanError
from scanner.models import PortState, Reason, Result
from scanner.report import make_writer
from scanner.report.read import MAX_DIGITS, Report, unix_time
from scanner.report.summary import Summary
from scanner.report.table import address_key
from scanner.report.writers import Ending, ScanMeta

__all__ = ["Merged", "merge_reports", "write_merged"]


@dataclass(frozen=True, slots=True)
class Merged:
    """The joined results (sorted by host, protocol, port) and what is known of the scan."""

    results: list[Result]
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
    unlisted: list[Result] = field(default_factory=list)  # closed ports the inputs left out


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


def merge_reports(reports: Sequence[tuple[str, Report]]) -> Merged:
    """Join ``(name, report)`` pairs; ReportError if they overlap or belong to other scans."""
    owner: dict[tuple[str, str, int], str] = {}
    results: list[Result] = []
    for name, report in reports:
        for result in report.results:
            key = (result.host, result.protocol.value, result.port)
            if key in owner:
                raise ReportError(
                    f"{owner[key]} and {name} both hold {result.host} "
                    f"{result.port}/{result.protocol.value}: they overlap"
                )
            owner[key] = name
            results.append(result)
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
    results.sort(key=lambda r: (address_key(r.host), r.protocol.value, r.port))
    summary = Summary()
    for result in results:
        summary.add(result)
    for _, report in reports:
        _add_unlisted_closed(summary, report)
    starts = [t for m in metas.values() if (t := unix_time(m.get("started"))) is not None]
    ends = [t for _, r in reports if (t := unix_time(r.ending.get("finished"))) is not None]
    hosts = [h for m in metas.values() if (h := _int(m.get("hosts"))) is not None]
    dates = [d for m in metas.values() if isinstance(d := m.get("registry_date"), str) and d]
    stamps = [r.timestamp for r in results if r.timestamp]
    return Merged(
        results=results,
        summary=summary,
        seed=seed if isinstance(seed, int) else None,
        ports=ports if isinstance(ports, str) else "",
        hosts=max(hosts) if hosts else len({r.host for r in results}),
        started=min(starts) if starts else min(stamps, default=0.0),
        finished=max(ends) if ends else max(stamps, default=0.0),
        complete=all(r.complete is not False for _, r in reports) and not missing,
        shards=",".join(f"{k}/{n}" for k, n in sorted(shards)) or "1/1",
        registry_date=dates[0] if dates else "",
        closed_listed=all(m.get("closed_listed") is True for m in metas.values()),
        missing=missing,
        unlisted=sorted(
            {
                _key(r): r
                for _, report in reports
                for r in report.coverage.unlisted_results(report.results)
                if _key(r) not in owner
            }.values(),
            key=lambda r: (address_key(r.host), r.protocol.value, r.port),
        ),
    )


def _key(result: Result) -> tuple[str, str, int]:
    return result.host, result.protocol.value, result.port


def _add_unlisted_closed(summary: Summary, report: Report) -> None:
    """Count the closed ports ``report`` counted in its summary but did not list."""
    counted = report.ending.get("summary")
    states = counted.get("states") if isinstance(counted, dict) else None
    closed = _int(states.get("closed")) if isinstance(states, dict) else None
    if closed is None:
        return
    listed = sum(r.state is PortState.CLOSED for r in report.results)
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
    for result in merged.results:
        writer.write(result)
    for result in merged.unlisted:
        writer.omit(result)
    writer.close(Ending(finished=merged.finished, complete=merged.complete, summary=merged.summary))
