"""Streaming report writers: CSV, JSON and JSON Lines. Each takes an open text stream.

Rules:
- Every writer writes one complete record per result as it comes, and :meth:`close`
  finishes the document, so an interrupted scan still leaves a valid file (see
  :mod:`scanner.report.files` for the atomic rename).
- Columns are fixed and documented (``CSV_COLUMNS``); a change to them bumps
  ``SCHEMA_VERSION``.
- Times are ISO-8601 in UTC. CSV cells that a spreadsheet would run as a formula are
  neutralised with a leading apostrophe (OWASP's advice against CSV injection).
- CSV rows come sorted by host (numerically), protocol and port, so they are kept until
  :meth:`close`: in memory up to ``CSV_RUN`` rows, beyond that in sorted runs in
  temporary files (the writer's own rows, pickled in chunks), merged at the end (an
  external sort: a million rows cost the memory of ``CSV_RUN``). No cell holds a raw
  line break (shown as ``\\x0a``, as on the terminal), so line tools (grep, sort, wc -l)
  see one row per line.
- Every text field is escaped with :func:`scanner.text.escape_controls`, whatever its
  source (a banner is already clean; a registry description, or a field of a report that
  ``merge`` read, may not be), so no report carries a control or invisible character.
- JSON and JSON Lines end with a ``probed`` record of what the scan probed beyond the
  ports listed (:mod:`scanner.report.probed`): ``diff`` and ``--resume`` need it.
"""

from __future__ import annotations

import bisect
import csv
import functools
import io
import itertools
import json
import operator
import pickle
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Generic, Protocol, TextIO, TypeVar

from scanner.models import Assessment, ClosedPorts, Result
from scanner.report.probed import ProbedLog, ports_of_spec, whole_scan
from scanner.report.summary import Summary
from scanner.text import escape_controls

SCHEMA_VERSION = 4

T = TypeVar("T")

ASSESSMENT_COLUMNS = (
    "label",
    "label_description",
    "range",
    "attestation",
    "evidence",
    "evidence_detail",
    "verdict",
    "warning",
    "policy",
    "product",
    "version",
    "evidence_probe",
    "evidence_rule",
    "evidence_excerpt",
)
"""The results layer's columns (see :class:`scanner.models.Assessment`); added in schema 2,
``policy`` appended in schema 3, the evidence trail (product, version, the probe, the rule
that named the service, an excerpt of the bytes) in schema 4."""

CSV_COLUMNS = (
    "host",
    "port",
    "protocol",
    "state",
    "reason",
    "hostname",
    "rtt_ms",
    "tries",
    "time",
    *ASSESSMENT_COLUMNS,
)
"""The CSV header, in order. ``rtt_ms`` is empty when nothing answered. Schema 1 had the
first nine columns; schema 2 appended the assessment, schema 3 ``policy`` and schema 4 the
evidence trail, so readers of an older schema still find their columns where they were."""

_NO_ASSESSMENT = ("",) * len(ASSESSMENT_COLUMNS)

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@functools.lru_cache(maxsize=1024)
def _isotime_ms(milliseconds: int) -> str:
    moment = datetime.fromtimestamp(milliseconds / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def isotime(timestamp: float) -> str:
    """A Unix time as ISO-8601 UTC with milliseconds, e.g. ``2026-11-23T04:15:00.123Z``.

    Results of one batch finish within the same millisecond, so the text is cached.
    """
    return _isotime_ms(int(timestamp * 1000))


def safe_cell(value: str) -> str:
    """Neutralise a CSV cell that a spreadsheet would evaluate as a formula."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def assessment_cells(result: Result) -> tuple[str, ...]:
    """The assessment columns of ``result``, in ``ASSESSMENT_COLUMNS`` order."""
    a = result.assessment
    return _NO_ASSESSMENT if a is None else _cells_of(a)


def _cells_of(a: Assessment) -> tuple[str, ...]:
    return (
        a.label,
        a.label_description,
        a.range,
        a.attestation,
        a.evidence,
        a.evidence_detail,
        a.verdict,
        a.warning,
        a.policy,
        a.product,
        a.version,
        a.evidence_probe,
        a.evidence_rule,
        a.evidence_excerpt,
    )


def result_record(result: Result) -> dict[str, Any]:
    """A result as plain data with the CSV column names (for JSON and JSON Lines)."""
    return {**_head_record(result), **_tail_record(result.assessment)}


def _head_record(result: Result) -> dict[str, Any]:
    """The result's own columns of :func:`result_record`."""
    return {
        "host": result.host,
        "port": result.port,
        "protocol": result.protocol.value,
        "state": result.state.value,
        "reason": result.reason.value,
        "hostname": None if result.hostname is None else escape_controls(result.hostname),
        "rtt_ms": None if result.rtt is None else round(result.rtt * 1000, 3),
        "tries": result.tries,
        "time": isotime(result.timestamp),
    }


def _tail_record(a: Assessment | None) -> dict[str, str]:
    """The assessment's columns of :func:`result_record`."""
    cells = _NO_ASSESSMENT if a is None else _cells_of(a)
    return dict(zip(ASSESSMENT_COLUMNS, map(escape_controls, cells), strict=True))


def _tail_json(a: Assessment) -> str:
    return json.dumps(_tail_record(a))[1:]  # without its "{": it follows the result's own


_NO_TAIL_JSON = json.dumps(_tail_record(None))[1:]


class RecordJson:
    """``json.dumps(result_record(result))``, with the assessment's part of the text made
    once per assessment (see :class:`PerAssessment`)."""

    def __init__(self) -> None:
        self._tails = PerAssessment(_tail_json)

    def __call__(self, result: Result, head: str = "{") -> str:
        """The record's JSON text; ``head``: what opens the object instead of ``{`` (JSON
        Lines puts its ``"type"`` member there)."""
        a = result.assessment
        tail = _NO_TAIL_JSON if a is None else self._tails(a)
        return head + json.dumps(_head_record(result))[1:-1] + ", " + tail


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanMeta:
    """What a report says about the scan itself.

    ``shard`` is ``K/N`` (``1/1`` for a whole scan); ``registry_date`` the date of the IANA
    registry data the labels come from; ``closed_listed`` whether closed ports are written
    (``--all``), which tells a reader (``--resume``) that a port missing from the report
    was not probed yet rather than closed.
    """

    version: str
    command: list[str]
    started: float
    seed: int
    ports: str
    hosts: int
    shard: str = "1/1"
    registry_date: str = ""
    closed_listed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The metadata as plain data."""
        return {
            "schema": SCHEMA_VERSION,
            "portprobe_version": self.version,
            "command": self.command,
            "started": isotime(self.started),
            "seed": self.seed,
            "shard": self.shard,
            "ports": self.ports,
            "hosts": self.hosts,
            "registry_date": self.registry_date,
            "closed_listed": self.closed_listed,
            **self.extra,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Ending:
    """How a scan ended, for the closing part of a report."""

    finished: float
    complete: bool
    summary: Summary

    def as_dict(self) -> dict[str, Any]:
        """The ending as plain data."""
        return {
            "finished": isotime(self.finished),
            "complete": self.complete,
            "summary": self.summary.as_dict(),
        }


class Writer(Protocol):
    """A report format: ``write`` each result as it comes, then ``close`` once.

    ``omit`` is told of each result the report leaves out (closed ports, without
    ``--all``); only formats that count them (XML's ``extraports``) use it.
    ``write_closed`` and ``omit_closed`` do the same for a block of closed ports
    (:class:`~scanner.models.ClosedPorts`), in bulk: the same document as ``write`` or
    ``omit`` of each of ``block.results()`` in turn.
    """

    def write(self, result: Result) -> None:
        """Write one result as a complete record."""

    def omit(self, result: Result) -> None:
        """Count one result that is not written."""

    def write_closed(self, block: ClosedPorts) -> None:
        """Write every port of a block (assessed)."""

    def omit_closed(self, block: ClosedPorts) -> None:
        """Count every port of a block, not written."""

    def close(self, ending: Ending) -> None:
        """Finish the document (it stays valid however the scan ended)."""


CSV_RUN = 65_536  # rows sorted in memory (one host's whole range); more go to runs on disk

# A row is kept as one string: its sort key in hex, a tab, its line. The key sorts as
# (address_key(host), protocol, port, the row's number) do, and no key is the start of
# another, so rows sort as plain strings (a memcmp a comparison, where a tuple of a tuple
# took a dozen calls) and the line never decides: the same port written twice (a merge
# of reports may) keeps its order, as a stable sort by (host, protocol, port) would. The
# line is what follows the first tab.


def host_sort_key(host: str) -> bytes:
    """:func:`~scanner.report.table.address_key` of ``host`` as bytes that sort the same
    way: the version, then the packed address (fixed length for each version); anything
    else after 9, escaped so that it ends in the one NUL (a shorter name sorts first)."""
    from scanner.report.table import address_key  # (the table imports this module)

    version, packed = address_key(host)
    if version != 9:
        return bytes((version,)) + packed
    return b"\x09" + packed.replace(b"\x01", b"\x01\x02").replace(b"\x00", b"\x01\x01") + b"\x00"


_line_of = operator.itemgetter(2)  # of a row's partition("\t")
_split = operator.methodcaller("partition", "\t")


def _lines(rows: Iterable[str]) -> Iterator[str]:
    """The lines of rows (what follows each one's key), in C loops."""
    return map(_line_of, map(_split, rows))


class CsvWriter:
    """CSV with a header row and the columns of ``CSV_COLUMNS``, sorted (see the rules).

    Each row is kept as its line of text (:func:`csv_line`), the assessment's part made
    once per assessment, after its sort key: sorting, runs on disk and the final write
    then handle one string a row, not 23 cells. A block of closed ports
    (:meth:`write_closed`) makes its rows with one template in a C loop (``map``).
    """

    def __init__(self, stream: TextIO, meta: ScanMeta) -> None:
        self._stream = stream
        csv.writer(stream, lineterminator="\n").writerow(CSV_COLUMNS)
        self._rows: list[str] = []
        self._count = 0  # rows so far: the end of each one's key
        self._runs: list[IO[bytes]] = []
        self._keys: dict[tuple[str, str], str] = {}
        self._templates: dict[tuple[Any, ...], tuple[str, str] | None] = {}
        self._tails = PerAssessment(_csv_tail)

    def _key(self, host: str, protocol: str) -> str:
        """The start of the sort key of the rows of ``host`` and ``protocol``, in hex (the
        port's four hex digits end it)."""
        key = self._keys.get((host, protocol))
        if key is None:
            # (A protocol's name ends in a NUL, as a name: "tcp" sorts before "udp".)
            raw = host_sort_key(host) + protocol.encode() + b"\0"
            key = self._keys[host, protocol] = raw.hex()
        return key

    def write(self, result: Result) -> None:
        key = self._key(result.host, result.protocol._value_)
        line = csv_line(result, self._tails)
        self._rows.append(f"{key}{result.port:04x}{self._count:012x}\t{line}")
        self._count += 1
        if len(self._rows) >= CSV_RUN:
            self._spill()

    def write_closed(self, block: ClosedPorts) -> None:
        """The rows of ``block``: what :meth:`write` makes of each of its results."""
        count = len(block)
        if not count:
            return
        what = (block.host, block.hostname, block.protocol, block.reason)
        start = self._templates.get(what)
        if start is None:
            start = self._templates[what] = self._template(block)
        if not start:  # an odd host name: each row as csv_line makes it
            for result in block.results():
                self.write(result)
            return
        # The row, from the port (twice: in hex for the key), the RTT, tries, the
        # assessment's part and the row's number; the block's time is fixed (and holds
        # no brace).
        template = start[0] + isotime(block.timestamp) + ",{3}\n"
        rtts = block.rtts
        assessments = block.assessments
        tails = [_NO_TAIL] * count if assessments is None else self._tails.each(assessments)
        numbers = range(self._count, self._count + count)
        self._count += count
        if min(rtts) >= 0:
            ms = map(operator.mul, rtts, itertools.repeat(1000))
            self._rows += map(template.format, block.ports, ms, block.tries, tails, numbers)
        else:  # some without an RTT (an answer at the send itself): empty cells
            texts = ["" if rtt < 0 else f"{rtt * 1000:.3f}" for rtt in rtts]
            template = start[1] + isotime(block.timestamp) + ",{3}\n"
            self._rows += map(template.format, block.ports, texts, block.tries, tails, numbers)
        if len(self._rows) >= CSV_RUN:
            self._spill()

    def _template(self, block: ClosedPorts) -> tuple[str, str] | None:
        """The start of the row template of a block's ports (key, host, port, protocol,
        state, reason, name, RTT, tries), with the RTT as a number or as text; None where
        the host or its name needs quoting (never for an address)."""
        host, hostname = block.host, block.hostname
        name = "" if hostname is None else csv_cell(hostname)
        if _QUOTED.search(host) or _QUOTED.search(name):
            return None
        protocol = block.protocol._value_
        key = self._key(host, protocol)
        head, middle = (
            part.replace("{", "{{").replace("}", "}}")
            for part in (f"{host},", f",{protocol},closed,{block.reason._value_},{name},")
        )
        start = f"{key}{{0:04x}}{{4:012x}}\t{head}{{0}}{middle}"
        return start + "{1:.3f},{2},", start + "{1},{2},"

    def omit(self, result: Result) -> None:
        pass

    def omit_closed(self, block: ClosedPorts) -> None:
        pass

    def _spill(self) -> None:
        """Write the rows kept so far, sorted, as one run in a temporary file."""
        self._rows.sort()
        run = tempfile.TemporaryFile()  # noqa: SIM115  (closed by close())
        self._runs.append(run)
        rows = self._rows
        for start in range(0, len(rows), _RUN_CHUNK):
            pickle.dump(rows[start : start + _RUN_CHUNK], run, protocol=pickle.HIGHEST_PROTOCOL)
        self._rows = []

    def close(self, ending: Ending) -> None:
        if self._runs and self._rows:
            self._spill()
        try:
            if self._runs:
                for run in self._runs:
                    run.seek(0)
                for rows in merge_chunks(list(map(_run_chunks, self._runs))):
                    self._stream.writelines(_lines(rows))
            else:
                self._rows.sort()
                self._stream.writelines(_lines(self._rows))
        finally:
            for run in self._runs:
                run.close()
            self._runs, self._rows = [], []


_RUN_CHUNK = 1024  # rows a run holds per pickle: what the merge keeps of each run


def _run_chunks(run: IO[bytes]) -> Iterator[list[str]]:
    """The chunks of rows of a run that ``CsvWriter._spill`` wrote (its own file: safe to
    unpickle)."""
    while True:
        try:
            yield pickle.load(run)
        except EOFError:
            return


def merge_chunks(runs: list[Iterator[list[str]]]) -> Iterator[list[str]]:
    """Sorted runs of strings (each given as its chunks, in order), merged into one sorted
    stream, a list at a time. No string is in two runs.

    Each step takes, from every run's chunk at hand, the strings up to the smallest last
    one among those chunks (a bisection), and sorts them together (timsort merges sorted
    pieces in C): every string not taken yet sorts after them. At least one chunk is used
    up a step, so the Python work is per chunk, not per string (``heapq.merge``'s is).
    """
    heads: list[tuple[list[str], Iterator[list[str]]]] = []
    for chunks in runs:
        chunk = next(chunks, [])  # (a run has no empty chunk: [] is its end)
        if chunk:
            heads.append((chunk, chunks))
    while heads:
        bound = min(chunk[-1] for chunk, _ in heads)
        taken: list[str] = []
        left: list[tuple[list[str], Iterator[list[str]]]] = []
        for chunk, chunks in heads:
            cut = bisect.bisect_right(chunk, bound)
            taken += chunk[:cut]
            rest = chunk[cut:] or next(chunks, [])
            if rest:
                left.append((rest, chunks))
        heads = left
        taken.sort()
        yield taken


# Everything a line reader may end a line on (str.splitlines' set: CR, LF, VT, FF, FS, GS,
# RS, NEL, LS, PS).
def csv_cell(value: str) -> str:
    """A text cell as CSV writes it: no line break or other control character (shown as
    ``\\x0a``..., :func:`scanner.text.escape_controls`), no formula."""
    return safe_cell(escape_controls(value))


class PerAssessment(Generic[T]):
    """``render(assessment)``, computed once per :class:`~scanner.models.Assessment` object.

    The results layer shares one assessment among the ports of a registry segment (every
    closed port of a host, and the same port on every host): a million rows with ``--all``
    render a few thousand assessments. Objects are known by identity, which is only sound
    while they live, so each entry keeps its object; at most ``size`` are kept.
    """

    def __init__(self, render: Callable[[Assessment], T], size: int = 65_536) -> None:
        self._render = render
        self._size = size
        # id -> the object (kept alive, so that its id is not another's) and its rendering
        self._objects: dict[int, Assessment] = {}
        self._values: dict[int, T] = {}

    def __call__(self, assessment: Assessment) -> T:
        """``render(assessment)``, from the cache when this object was rendered before."""
        key = id(assessment)
        if self._objects.get(key) is assessment:
            return self._values[key]
        rendered = self._render(assessment)
        if len(self._objects) >= self._size:
            self._objects.clear()
            self._values.clear()
        self._objects[key] = assessment
        self._values[key] = rendered
        return rendered

    def each(self, assessments: Sequence[Assessment]) -> list[T]:
        """``render`` of each of ``assessments``, in order, in C loops but for the ones
        not seen before. (A known id is its own object: the cache keeps it alive.)"""
        ids = list(map(id, assessments))
        values = self._values
        try:
            return list(map(values.__getitem__, ids))
        except KeyError:  # some are new
            pass
        objects = self._objects
        missing = set(ids).difference(objects)
        if len(objects) + len(missing) > self._size:
            objects.clear()
            values.clear()
            missing = set(ids)
        firsts = dict(zip(ids, assessments, strict=True))
        render = self._render
        for key in missing:
            objects[key] = firsts[key]
            values[key] = render(firsts[key])
        return list(map(values.__getitem__, ids))


def _csv_cells(a: Assessment) -> tuple[str, ...]:
    return tuple(map(csv_cell, _cells_of(a)))


def csv_row(result: Result) -> tuple[str | int, ...]:
    """One result as a CSV row, in ``CSV_COLUMNS`` order."""
    hostname = result.hostname
    return (
        result.host,
        result.port,
        result.protocol.value,
        result.state.value,
        result.reason.value,
        "" if hostname is None else csv_cell(hostname),
        "" if result.rtt is None else f"{result.rtt * 1000:.3f}",
        result.tries,
        isotime(result.timestamp),
        *map(csv_cell, assessment_cells(result)),
    )


def csv_text(cells: Iterable[str | int]) -> str:
    """``cells`` as the CSV writer writes them in a row (minimal quoting; a field holding
    the line end is quoted too), without the line end."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()[:-1]


def _csv_tail(a: Assessment) -> str:
    return csv_text(_csv_cells(a))


_NO_TAIL = csv_text(_NO_ASSESSMENT)
# What makes csv quote a field (its delimiter, quote character, line terminator); a field
# with none of them is written as it is.
_QUOTED = re.compile('[,"\r\n]')


def csv_line(result: Result, tails: Callable[[Assessment], str] | None = None) -> str:
    """:func:`csv_row` as one line of text, line end included: what ``csv.writer`` writes
    (``tails``: a :class:`PerAssessment` of the assessment's part, made once each)."""
    a, hostname, rtt = result.assessment, result.hostname, result.rtt
    host = result.host
    name = "" if hostname is None else csv_cell(hostname)
    if _QUOTED.search(host) or _QUOTED.search(name):  # not an address, or an odd name
        head = csv_text(csv_row(result)[:9])
    else:  # the other cells are portprobe's own numbers, words and times
        rtt_text = "" if rtt is None else f"{rtt * 1000:.3f}"
        head = (
            f"{host},{result.port},{result.protocol._value_},{result.state._value_},"
            f"{result.reason._value_},{name},{rtt_text},{result.tries},"
            f"{isotime(result.timestamp)}"
        )
    if a is None:
        return f"{head},{_NO_TAIL}\n"
    return f"{head},{_csv_tail(a) if tails is None else tails(a)}\n"


class JsonWriter:
    """One JSON document: ``{"scan": {...}, "results": [...], "end": {...}}``."""

    def __init__(self, stream: TextIO, meta: ScanMeta) -> None:
        self._stream = stream
        self._first = True
        self._probed = probed_log(meta)
        self._json = RecordJson()
        stream.write('{"scan": ' + json.dumps(meta.as_dict()) + ',\n "results": [')

    def write(self, result: Result) -> None:
        sep = "\n  " if self._first else ",\n  "
        self._first = False
        self._probed.listed(result)
        self._stream.write(sep + self._json(result))

    def omit(self, result: Result) -> None:
        self._probed.unlisted(result)

    def write_closed(self, block: ClosedPorts) -> None:
        for result in block.results():
            self.write(result)

    def omit_closed(self, block: ClosedPorts) -> None:
        self._probed.unlisted_closed(block)

    def close(self, ending: Ending) -> None:
        end = {**ending.as_dict(), "probed": self._probed.as_dict()}
        self._stream.write('\n ],\n "end": ' + json.dumps(end) + "\n}\n")


class JsonLinesWriter:
    """JSON Lines: a ``scan`` line, a ``result`` line per result, an ``end`` line."""

    def __init__(self, stream: TextIO, meta: ScanMeta) -> None:
        self._stream = stream
        self._probed = probed_log(meta)
        self._json = RecordJson()
        stream.write(json.dumps({"type": "scan", **meta.as_dict()}) + "\n")

    def write(self, result: Result) -> None:
        self._probed.listed(result)
        self._stream.write(self._json(result, '{"type": "result", ') + "\n")

    def omit(self, result: Result) -> None:
        self._probed.unlisted(result)

    def write_closed(self, block: ClosedPorts) -> None:
        for result in block.results():
            self.write(result)

    def omit_closed(self, block: ClosedPorts) -> None:
        self._probed.unlisted_closed(block)

    def close(self, ending: Ending) -> None:
        end = {"type": "end", **ending.as_dict(), "probed": self._probed.as_dict()}
        self._stream.write(json.dumps(end) + "\n")


def probed_log(meta: ScanMeta) -> ProbedLog:
    """The log of what a scan with ``meta`` probed (see :mod:`scanner.report.probed`)."""
    return ProbedLog(ports_of_spec(meta.ports), whole=whole_scan(meta.shard))
