"""Reading reports back: CSV, JSON, JSON Lines and nmap-style XML, told apart by content.

Rules:
- A report file is untrusted input (``diff``, ``merge`` and ``--resume`` read files that
  may come from anywhere). Any fault, whatever the bytes, is one :class:`ReportError` with
  a one-line message naming the file (and the line or record); never another exception.
- The format comes from the content, not the name: ``<`` starts XML, a first line that is
  a JSON object of ``"type": "scan"`` starts JSON Lines, another ``{`` a JSON document,
  and anything else must be CSV with portprobe's header.
- XML documents may not declare entities (no "billion laughs"); nmap's own XML reads too,
  as long as its states and reasons are ones portprobe knows (its service name is read as
  the label, product and extra info as the evidence). The assessment's verdict,
  attestation and policy must be words portprobe writes.
- Whatever a field holds, the reader and the writers after it (``diff -o``, ``merge``,
  ``--resume``) never fail on it: whole numbers have at most :data:`MAX_DIGITS` digits
  (Python refuses to convert more than 4,300), times lie between 1970 and the end of 9998
  UTC (a time zone can move year 9999 into 10000, which no writer can show), and text
  with a lone surrogate (``"\\ud800"`` in JSON), which no file can hold, is refused.
- ``torn_tail=True`` (for ``--resume``, which reads what a crashed scan left) accepts a
  JSON Lines report whose last line was cut short, and a JSON document that stops after any
  result line (its results are one per line): the cut record is dropped, and the report
  counts as interrupted.
- A report lists every port that is not closed (and the closed ones with ``--all``): a
  port missing from it was closed, or not probed. The report's ``probed`` record (JSON),
  or nmap's ``<extrareasons ports=...>`` (XML), tells which: see :class:`Report.coverage`.
  Ports XML folds into ``<extraports>`` come back as results, except closed ones.
- Reports are streamed (:func:`open_report`, :class:`ReportStream`): memory holds one
  line (CSV, JSON Lines, portprobe's JSON, which has one result a line) or one XML
  ``<host>`` at a time, whatever the file's size. A line may have at most
  :data:`MAX_REPORT_RECORD` bytes. A FIFO or a device is read whole first, and a JSON
  document laid out otherwise is parsed whole, both within :data:`MAX_REPORT_FILE`.
- Streaming is as strict as reading whole, and says the same: the results, records and
  error messages are those of the whole-file reader it replaced (kept in
  ``tests/whole_reader.py``, which the tests compare it with). Results come before the
  reader knows the rest of the file is sound: a caller acts on them only once
  :meth:`ReportStream.results` is exhausted without an error.
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import functools
import io
import ipaddress
import json
import os
import re
import reprlib
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO
from xml.etree import ElementTree

from scanner.errors import PortSpecError, ReportError
from scanner.models import (
    Assessment,
    Attestation,
    Judgement,
    Port,
    PortState,
    Proto,
    Reason,
    Result,
    Verdict,
    make_result,
)
from scanner.ports import parse_ports
from scanner.report.probed import Coverage, ports_of_spec
from scanner.report.writers import ASSESSMENT_COLUMNS, CSV_COLUMNS
from scanner.safeio import describe_size, read_bounded

__all__ = [
    "MAX_DIGITS",
    "MAX_REPORT_FILE",
    "MAX_REPORT_RECORD",
    "Report",
    "ReportStream",
    "checked_result",
    "each_result",
    "open_report",
    "read_report",
    "read_report_bytes",
    "unix_time",
]

#: The most read of a report that is not a regular file (a FIFO, a device: it is read
#: whole first), and of a JSON document not laid out as portprobe writes it. A regular
#: file is streamed, whatever its size.
MAX_REPORT_FILE = 256 * 1024 * 1024
#: The longest line of a report read (a JSON result, the ``end`` record...).
MAX_REPORT_RECORD = MAX_REPORT_FILE
#: The most digits a whole number in a report may have (2**63 has 19).
MAX_DIGITS = 19
# Report times: from the Unix epoch to the end of year 9998, UTC.
_LATEST = datetime(9999, 1, 1, tzinfo=UTC).timestamp()
# A JSON escape of a UTF-16 surrogate: only text holding one needs the full check.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")

_repr = reprlib.Repr()
_repr.maxstring = 40
_repr.maxother = 40

# The columns every CSV schema (1, 2, 3) has.
_REQUIRED_CSV = CSV_COLUMNS[:9]


@dataclass(frozen=True, slots=True)
class Report:
    """What a report file holds.

    ``format`` is ``csv``, ``json``, ``jsonl`` or ``xml``. ``meta`` is the ``scan`` record
    (for XML, the ``nmaprun`` attributes; empty for CSV); ``ending`` the ``end`` record
    (empty if the file has none). ``complete`` is False for a scan that was cut short,
    True for one that finished, None when the file does not say (CSV). ``coverage`` says
    which ports the scan probed beyond those listed (see :mod:`scanner.report.probed`).
    """

    format: str
    results: list[Result]
    meta: dict[str, Any] = field(default_factory=dict)
    ending: dict[str, Any] = field(default_factory=dict)
    complete: bool | None = None
    coverage: Coverage = field(default_factory=Coverage)


def each_result(report: Report | ReportStream) -> Iterator[Result]:
    """The results of a report read whole or streamed (once)."""
    return iter(report.results) if isinstance(report, Report) else report.results()


def read_report(path: str, *, torn_tail: bool = False) -> Report:
    """Read the report at ``path`` (``-`` is not accepted) whole; ReportError on any fault.

    Every result is held in memory: :func:`open_report` streams them instead.
    """
    with open_report(path, torn_tail=torn_tail) as stream:
        return stream.whole()


def read_report_bytes(data: bytes, name: str, *, torn_tail: bool = False) -> Report:
    """Read a report from ``data``; ``name`` is used in messages. ReportError on any fault.

    ``torn_tail``: accept a report cut short mid-record (see the module rules).
    """
    with ReportStream(io.BytesIO(data), name, torn_tail=torn_tail) as stream:
        return stream.whole()


def open_report(path: str, *, torn_tail: bool = False) -> ReportStream:
    """Open the report at ``path`` to stream its results (see :class:`ReportStream`).

    A regular file is read as it is streamed, whatever its size (a line may have at most
    :data:`MAX_REPORT_RECORD` bytes); a FIFO or device is read whole first, at most
    :data:`MAX_REPORT_FILE` bytes, as :func:`scanner.safeio.read_bounded` reads it.
    ReportError on any fault.
    """
    if path == "-":
        raise ReportError("-: a report must be a file")
    try:
        # O_NONBLOCK: opening a FIFO nobody writes to would otherwise block for ever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ReportError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except ValueError:  # a NUL in the name: no file can have it
        raise ReportError(f"{path}: cannot read: the name holds a NUL character") from None
    source: BinaryIO
    if stat.S_ISREG(os.fstat(fd).st_mode):
        os.set_blocking(fd, True)
        source = os.fdopen(fd, "rb", buffering=_BUFFER)
    else:  # a directory, FIFO or device: read_bounded says why not, or reads it whole
        os.close(fd)
        source = io.BytesIO(
            read_bounded(path, MAX_REPORT_FILE, lambda message: ReportError(f"{path}: {message}"))
        )
    try:
        return ReportStream(source, path, torn_tail=torn_tail)
    except BaseException:
        source.close()
        raise


class ReportStream:
    """A report read as a stream: its results one by one, in the file's order.

    ``format`` is known at once. :meth:`results` is read once; ``meta``, ``ending``,
    ``complete`` and ``coverage`` (as in :class:`Report`) are whole when it is exhausted
    (JSON Lines and portprobe's JSON have ``meta`` at once). A fault anywhere raises
    :class:`ReportError` from :meth:`results`: a caller must not act on the results
    before it has read them all. ``count`` is the number of results given so far.
    ``source`` must be seekable (the format is told from the first line that is not
    blank, then the file is read from its start); closing the stream closes it.
    """

    def __init__(self, source: BinaryIO, name: str, *, torn_tail: bool = False) -> None:
        self.name = name
        self.meta: dict[str, Any] = {}
        self.ending: dict[str, Any] = {}
        self.complete: bool | None = None
        self.coverage = Coverage()
        self.count = 0
        self._source = source
        self._torn = torn_tail
        self._started = False
        try:
            self.format = self._detect()
        except _Fault as exc:
            raise ReportError(f"{name}{exc.where}: {exc.message}") from None

    def _lines(self) -> _Lines:
        self._source.seek(0)
        return _Lines(self._source, torn_tail=self._torn)

    def _detect(self) -> str:
        """The format, from the first line that is not blank (see the module rules)."""
        for line in self._lines():
            start = line.lstrip()
            if not start:
                continue
            if start.startswith("<"):
                return "xml"
            if not start.startswith("{"):
                return "csv"
            try:
                head = json.loads(start.split("\n", 1)[0])
            except (ValueError, RecursionError):
                head = None
            if isinstance(head, dict) and head.get("type") == "scan":
                return "jsonl"
            return "json"
        raise _Fault("empty file: not a portprobe report")

    def results(self) -> Iterator[Result]:
        """The report's results, checked one by one; ReportError at the first fault."""
        if self._started:
            raise RuntimeError("the results of a report stream are read once")
        self._started = True
        readers = {"csv": self._csv, "jsonl": self._jsonl, "json": self._json, "xml": self._xml}
        try:
            for result in readers[self.format]():
                self.count += 1
                yield result
        except _Fault as exc:
            fault = exc if self.format == "json" else self._precedent(exc)
            raise ReportError(f"{self.name}{fault.where}: {fault.message}") from None

    def _precedent(self, fault: _Fault) -> _Fault:
        """The fault the whole-file reader would have named, given that streaming met
        ``fault`` first: it decoded the whole file before anything else, and an XML
        document was checked for entity declarations, parsed and its root checked before
        any host. So the file is read again, to its end, for such a fault."""
        xml = self.format == "xml"
        entity = False
        broken: _Fault | None = None
        target = _FirstTag()
        parser = ElementTree.XMLParser(target=target)  # (builds nothing)
        try:
            for line in self._lines():
                if not xml:
                    continue
                entity = entity or "<!ENTITY" in line
                if broken is None:
                    broken = _xml_feed(parser, line)
        except _Fault as decoding:
            return decoding
        if not xml:
            return fault
        if entity:
            return _Fault("XML entity declarations are not accepted")
        if broken is None:
            broken = _xml_feed(parser, None)
        if broken is not None:
            return broken
        if target.tag != "nmaprun":
            return _Fault("not an nmap-style XML report (no <nmaprun>)")
        return fault

    def whole(self) -> Report:
        """Every result in a list, with what the report says (see :class:`Report`)."""
        results = list(self.results())
        return Report(self.format, results, self.meta, self.ending, self.complete, self.coverage)

    def again(self) -> ReportStream:
        """A new stream of the same file, read from its start. They share the file: close
        this one when both are done, not that one."""
        return ReportStream(self._source, self.name, torn_tail=self._torn)

    def close(self) -> None:
        """Close the file."""
        self._source.close()

    def __enter__(self) -> ReportStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # CSV

    def _csv(self) -> Iterator[Result]:
        reader = csv.reader(_csv_lines(self._lines()))
        try:
            header = next(reader, None)
            if header is None or not set(_REQUIRED_CSV) <= set(header):
                raise _Fault("not a portprobe report (no CSV header with host,port,protocol,...)")
            width = len(header)
            for row in reader:
                if not row:
                    continue
                if len(row) != width:
                    where = f":{reader.line_num}"
                    raise _at(where, f"{len(row)} cells where the header has {width}")
                try:
                    yield _result(dict(zip(header, row, strict=True)))
                except _Fault as exc:
                    raise _at(f":{reader.line_num}", exc.message) from None
        except csv.Error as exc:
            raise _at(f":{reader.line_num}", f"bad CSV: {exc}") from None

    # JSON Lines

    def _jsonl(self) -> Iterator[Result]:
        lines = self._lines()
        for line in lines:
            if not line.strip():
                continue
            where = f":{lines.number}"
            try:
                record = _json(line, where)
            except _Fault:
                if self._torn and lines.cut:  # the last line, with no line end: cut
                    break
                raise
            if not isinstance(record, dict):
                raise _at(where, "not a JSON object")
            kind = record.get("type")
            if kind == "result":
                try:
                    yield _result(record)
                except _Fault as exc:
                    raise _at(where, exc.message) from None
            elif kind == "scan":
                self.meta = record
            elif kind == "end":
                self.ending = record
            else:
                raise _at(where, f"unknown record type {_repr.repr(kind)}")
        try:
            self.complete = _complete(self.ending) if self.ending else False
        except _Fault as exc:
            raise _at(":end", exc.message) from None
        self.coverage = _coverage(self.meta, self.ending)

    # A JSON document

    def _json(self) -> Iterator[Result]:
        """portprobe's JSON writer puts the ``scan`` object on the first line, then a line
        ``"results": [``, one result a line, ``],`` and the ``end`` object: such a
        document is streamed. From the first line that is not so, the document is read
        whole (at most :data:`MAX_REPORT_FILE` bytes) as it always was, and the results
        not given yet come from there: the outcome is the whole-document reader's."""
        given = 0
        fault: _Fault | None = None  # a result that is not one: the whole reader says why
        lines = self._lines()
        try:
            self.meta = _json_head(lines)
            last = None  # a result line without a comma: the last one
            for line in lines:
                if line == _JSON_RESULTS_END and (last is not None or not given):
                    if last is not None:
                        yield _json_result(_line_json(last), given)
                        given += 1
                    break
                item = line.strip(_JSON_SPACE)
                if last is not None or not item.startswith("{"):
                    raise _Deviation
                if not item.endswith(","):
                    last = item
                    continue
                yield _json_result(_line_json(item[:-1]), given)
                given += 1
            else:
                raise _Deviation  # no "]," line: the document was cut short
            self._json_end(lines)
            return
        except _Deviation:
            pass
        except _BadResult as bad:
            fault = bad.fault
        yield from self._json_whole(given, fault)

    def _json_end(self, lines: _Lines) -> None:
        """What follows the results' ``],`` line: ``"end": {...}`` and the closing brace."""
        rest, size = ["{"], 0
        for line in lines:
            size += len(line)
            if size > MAX_REPORT_RECORD:
                raise _Deviation
            rest.append(line)
        tail = _line_json("".join(rest))
        if not isinstance(tail, dict) or list(tail) != ["end"]:
            raise _Deviation  # another key: the whole-document reader decides
        ending = tail["end"]
        if not isinstance(ending, dict):
            raise _Deviation
        self.ending = ending
        self.complete = _complete(ending)
        self.coverage = _coverage(self.meta, ending)

    def _json_whole(self, given: int, fault: _Fault | None = None) -> Iterator[Result]:
        """The document read whole (see :meth:`_json`), less the ``given`` first results;
        for ``torn_tail``, a document that does not parse is read as one cut short.
        ``fault``: why streaming stopped, if a result was not one (said as it is when
        the document is too large to be read whole)."""
        self._source.seek(0)
        data = self._source.read(MAX_REPORT_FILE + 1)
        if len(data) <= MAX_REPORT_FILE:
            text = _decode(data, torn_tail=self._torn)
            del data
            try:
                report = _read_json(text)
            except _Fault:
                if not self._torn:
                    raise
            else:
                self.meta, self.ending = report.meta, report.ending
                self.complete, self.coverage = report.complete, report.coverage
                yield from report.results[given:]
                return
        elif fault is not None and not self._torn:
            raise fault
        elif not self._torn:
            raise _Fault(
                f"a JSON document larger than {describe_size(MAX_REPORT_FILE)} that is not "
                "laid out as portprobe writes it (one result a line)"
            )
        yield from self._json_torn(given)

    def _json_torn(self, given: int) -> Iterator[Result]:
        """What a JSON report cut short holds: the JSON writer puts the ``scan`` object on
        the first line and one result a line after it; a last line cut short is dropped."""
        lines = self._lines()
        first, second = next(lines, ""), next(lines, "")
        if not first.startswith(_JSON_PREFIX) or second.removesuffix("\n") != _JSON_RESULTS:
            raise _Fault('not a portprobe JSON report (no "scan" line, then "results")')
        meta = _json(first.removesuffix("\n")[len(_JSON_PREFIX) :].rstrip().removesuffix(","), ":1")
        if not isinstance(meta, dict):
            raise _at(":1", '"scan" must be an object')
        self.meta, self.ending, self.complete = meta, {}, False
        self.coverage = _coverage(meta, {})
        for line in lines:
            item = line.strip().removesuffix(",")
            if not item.startswith("{"):
                break  # "]," and the end record: the document was whole up to here
            where = f":{lines.number}"
            try:
                record = _json(item, where)
            except _Fault:
                if lines.cut:
                    break
                raise
            result = _record_result(record, where)
            if given:
                given -= 1  # given already, by the streamed reading
            else:
                yield result

    # XML

    def _xml(self) -> Iterator[Result]:
        """nmap-style XML, parsed as it is read: a ``<host>`` is read when it ends and then
        dropped, so memory holds one host at a time."""
        parser: ElementTree.XMLPullParser[ElementTree.Element] = ElementTree.XMLPullParser(
            events=("start", "end")
        )
        stack: list[ElementTree.Element] = []
        root: ElementTree.Element | None = None
        infos: list[dict[str, str]] = []
        finished: dict[str, str] | None = None
        coverage = Coverage(exact=True)
        hosts = 0
        for chunk in _xml_chunks(self._lines()):
            for event, element in _xml_events(parser, chunk):
                if event == "start":
                    if root is None:
                        if element.tag != "nmaprun":
                            raise _Fault("not an nmap-style XML report (no <nmaprun>)")
                        root = element
                    stack.append(element)
                    continue
                stack.pop()
                parent = stack[-1] if stack else None
                if element.tag == "host":
                    hosts += 1
                    try:
                        yield from _xml_host(element, coverage)
                    except _Fault as exc:
                        raise _at(f": host {hosts}", exc.message) from None
                elif parent is root and element.tag == "scaninfo":
                    infos.append(dict(element.attrib))
                elif parent is root and element.tag == "runstats" and finished is None:
                    found = element.find("finished")
                    finished = None if found is None else dict(found.attrib)
                if parent is not None and (element.tag == "host" or parent is root):
                    parent.remove(element)  # read: memory holds one host at a time
        if root is None:
            raise _Fault("bad XML")
        self.complete = None if finished is None else finished.get("exit", "success") == "success"
        self.ending = {} if finished is None else dict(finished)
        if "time" in self.ending:
            self.ending["finished"] = _unix_iso(self.ending["time"])
        self.meta = _xml_meta(root.attrib, infos)
        coverage.ports = ports_of_spec(self.meta["ports"] or "")
        self.coverage = coverage


class _Deviation(Exception):
    """A JSON document not laid out as portprobe writes it (see ``ReportStream._json``)."""


class _BadResult(Exception):
    """A result of a streamed JSON document that is not one (``fault`` says why)."""

    def __init__(self, fault: _Fault) -> None:
        super().__init__(fault.message)
        self.fault = fault


def _json_result(record: Any, given: int) -> Result:
    """Result ``given + 1`` of a streamed JSON document."""
    where = f": result {given + 1}"
    try:
        return _record_result(record, where)
    except _Fault as exc:
        raise _BadResult(exc) from None


_JSON_PREFIX = '{"scan": '
_JSON_RESULTS = ' "results": ['
_JSON_RESULTS_END = " ],\n"
_JSON_SPACE = " \t\r\n"  # (str.strip() alone would take more than JSON calls space)
_BUFFER = 1 << 16
_BOM = b"\xef\xbb\xbf"


def _json_head(lines: _Lines) -> dict[str, Any]:
    """The ``scan`` object of portprobe's JSON layout, from its first two lines."""
    first = next(lines, "")
    if not first.startswith(_JSON_PREFIX) or next(lines, "") != _JSON_RESULTS + "\n":
        raise _Deviation
    head = first[len(_JSON_PREFIX) :].rstrip(_JSON_SPACE)
    if not head.endswith(","):
        raise _Deviation
    meta = _line_json(head[:-1])
    if not isinstance(meta, dict):
        raise _Deviation
    return meta


def _line_json(text: str) -> Any:
    """One piece of a streamed JSON document; one that is not JSON is a deviation (the
    whole-document reader then says what is wrong)."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise _Deviation from None
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise _Deviation
    return value


def _xml_chunks(lines: Iterable[str]) -> Iterator[str | None]:
    """Lines joined into pieces of about 64 KiB for the XML parser, then None (the end);
    entity declarations refused on the way."""
    held: list[str] = []
    size = 0
    for line in lines:
        if "<!ENTITY" in line:
            raise _Fault("XML entity declarations are not accepted")
        held.append(line)
        size += len(line)
        if size >= _BUFFER:
            yield "".join(held)
            held, size = [], 0
    if held:
        yield "".join(held)
    yield None


def _xml_events(
    parser: ElementTree.XMLPullParser[ElementTree.Element], chunk: str | None
) -> list[tuple[str, ElementTree.Element]]:
    """Feed ``chunk`` (None: the end) to ``parser``; the events it completes."""
    broken = _xml_feed(parser, chunk)
    if broken is None:
        try:  # (a pull parser may hold its error back until its events are read)
            return list(parser.read_events())  # type: ignore[arg-type]
        except ElementTree.ParseError as exc:
            broken = _xml_fault(exc)
    raise broken


def _xml_feed(
    parser: ElementTree.XMLPullParser[ElementTree.Element] | ElementTree.XMLParser,
    chunk: str | None,
) -> _Fault | None:
    """Feed ``chunk`` (None: the end) to ``parser``; the fault if it does not parse."""
    try:
        if chunk is None:
            parser.close()
        else:
            parser.feed(chunk)
    except ElementTree.ParseError as exc:
        return _xml_fault(exc)
    except (ValueError, RecursionError):
        return _Fault("bad XML")
    return None


def _xml_fault(exc: ElementTree.ParseError) -> _Fault:
    number = exc.position[0] if getattr(exc, "position", None) else None
    return _at(f":{number}" if number else "", "bad XML")


class _FirstTag:
    """An XML parser's target that keeps only the root's tag."""

    def __init__(self) -> None:
        self.tag: str | None = None

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        if self.tag is None:
            self.tag = tag

    def close(self) -> None:
        pass


class _Lines:
    """The text lines of a report (split on ``\\n``, ends kept), decoded as UTF-8.

    ``number`` is the number of the line last given; ``cut`` says that it was the file's
    last and had no line end. A line of more than :data:`MAX_REPORT_RECORD` bytes is
    refused (one line is held at a time). ``torn_tail``: a character cut in two at the
    very end of the file ends the text there, as a whole-file decode would have.
    """

    def __init__(self, source: BinaryIO, *, torn_tail: bool) -> None:
        self._source = source
        self._torn = torn_tail
        self.number = 0
        self.cut = False
        self._ended = False

    def __iter__(self) -> _Lines:
        return self

    def _long(self, start: bytes | bytearray) -> bytearray:
        """The rest of a line longer than a buffer, in one growing buffer (readline would
        hold its pieces and their join: twice the memory); at most one byte too many."""
        line = bytearray(start)
        while not line.endswith(b"\n") and len(line) <= MAX_REPORT_RECORD:
            piece = self._source.readline(min(_BUFFER, MAX_REPORT_RECORD + 1 - len(line)))
            if not piece:
                break
            line += piece
        return line

    def __next__(self) -> str:
        if self._ended:
            raise StopIteration
        size = min(_BUFFER, MAX_REPORT_RECORD + 1)
        raw: bytes | bytearray = self._source.readline(size)
        if not raw:
            self._ended = True
            raise StopIteration
        self.number += 1
        if len(raw) == size and not raw.endswith(b"\n"):
            raw = self._long(raw)
        if len(raw) > MAX_REPORT_RECORD:
            limit = describe_size(MAX_REPORT_RECORD)
            raise _at(f":{self.number}", f"a line larger than {limit}, the most accepted here")
        if self.number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        # readline stops at a line end, the limit (refused above) or the end of the file.
        self.cut = not raw.endswith(b"\n")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            # Cut short only within the file's last 3 bytes, as a whole-file decode says.
            left = len(raw) - exc.start + len(self._source.read(4))
            if not (self._torn and left < 4):
                raise _at(f":{self.number}", "not UTF-8 text") from None
            self._ended, self.cut = True, True
            return raw[: exc.start].decode("utf-8")


def _csv_lines(lines: Iterable[str]) -> Iterator[str]:
    """Lines as ``io.StringIO(text, newline="")`` gives them (a lone CR ends one too), as
    the CSV module expects them."""
    for line in lines:
        if "\r" in line:
            yield from io.StringIO(line, newline="")
        else:
            yield line


def _decode(data: bytes, *, torn_tail: bool) -> str:
    """A whole report's bytes as text (see :class:`_Lines` for ``torn_tail``)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if not (torn_tail and len(data) - exc.start < 4):  # a character cut in two
            line = data[: exc.start].count(b"\n") + 1
            raise _at(f":{line}", "not UTF-8 text") from None
        return data[: exc.start].decode("utf-8-sig")


class _Fault(Exception):
    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.where = where


def _at(where: str, message: str) -> _Fault:
    return _Fault(message, where)


# -- one result, from a mapping of CSV column names ------------------------------------


def _text(record: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = record.get(key)
    if value is None:
        if required:
            raise _Fault(f"no {key!r}")
        return ""
    if not isinstance(value, str):
        raise _Fault(f"{key!r} must be text, not {_repr.repr(value)}")
    return value


def _number(value: Any, key: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _Fault(f"{key!r} must be a number, not {_repr.repr(value)}")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise _Fault(f"{key!r} must be a number, not {_repr.repr(value)}") from None
    else:
        raise _Fault(f"{key!r} must be a number, not {_repr.repr(value)}")
    if not number >= 0 or number == float("inf"):
        raise _Fault(f"{key!r} must be a number of at least 0, not {_repr.repr(value)}")
    return number


def _integer(value: Any, key: str, low: int, high: int) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= MAX_DIGITS:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        shown = _repr.repr(value)
        raise _Fault(f"{key!r} must be a whole number from {low} to {high}, not {shown}")
    return value


_ASSESSMENT_ENUMS: dict[str, type[enum.StrEnum]] = {
    "attestation": Attestation,
    "verdict": Verdict,
    "policy": Judgement,
}


# Each enum's members by value: a dict look-up costs a tenth of calling the enum.
_KINDS: tuple[type[enum.StrEnum], ...] = (Proto, PortState, Reason, *_ASSESSMENT_ENUMS.values())
_MEMBERS: dict[type[enum.StrEnum], dict[str, Any]] = {
    kind: {member.value: member for member in kind} for kind in _KINDS
}


_ASSESSMENT_ENUMS_AT = [
    (ASSESSMENT_COLUMNS.index(key), key, kind) for key, kind in _ASSESSMENT_ENUMS.items()
]
_TEXT = {str}


def _enum(kind: type[enum.StrEnum], value: str, key: str) -> Any:
    member = _MEMBERS[kind].get(value)
    if member is None:
        raise _Fault(f"unknown {key} {_repr.repr(value)}")
    return member


def unix_time(value: object) -> float | None:
    """An ISO-8601 time with a zone, from 1970 to the end of 9998 UTC, as a Unix time;
    None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            return None
        stamp = moment.timestamp()
    except (ValueError, OverflowError):
        return None
    return stamp if 0 <= stamp < _LATEST else None


@functools.lru_cache(maxsize=1 << 16)  # results of one millisecond share their time
def _timestamp(value: str) -> float:
    if not value:
        return 0.0
    stamp = unix_time(value)
    if stamp is not None:
        return stamp
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _Fault(f"'time' is not an ISO-8601 time: {_repr.repr(value)}") from None
    if moment.tzinfo is None:
        raise _Fault(f"'time' has no time zone: {_repr.repr(value)}")
    raise _Fault(f"'time' is out of range (1970 to 9998): {_repr.repr(value)}")


@functools.lru_cache(maxsize=1 << 12)  # a report has a result a port: few hosts, many times
def _address(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise _Fault(f"'host' is not an IP address: {_repr.repr(host)}") from None


def _result(record: Mapping[str, Any]) -> Result:
    host = _address(_text(record, "host", required=True))
    hostname = _text(record, "hostname")
    if hostname.startswith("'"):  # the CSV writer's guard against formulas
        hostname = hostname[1:]
    rtt = _number(record.get("rtt_ms"), "rtt_ms")
    tries = record.get("tries")
    assessment = None
    cells: list[Any] = list(map(record.get, ASSESSMENT_COLUMNS))
    if set(map(type, cells)) != _TEXT or "\0'" in "\0" + "\0".join(cells):
        # Not all plain text (most are): absent cells, other types, the CSV guard.
        cells = [_unguard(_text(record, key)) for key in ASSESSMENT_COLUMNS]
    if any(cells):
        # The assessment's enums are checked: a report with another word is not ours.
        for index, key, kind in _ASSESSMENT_ENUMS_AT:
            if cells[index]:
                cells[index] = _enum(kind, cells[index], key)
        assessment = _new_assessment(*cells)
    return _new_result(
        host,
        _integer(record.get("port"), "port", 1, 65535),
        _enum(Proto, _text(record, "protocol", required=True), "protocol"),
        _enum(PortState, _text(record, "state", required=True), "state"),
        _enum(Reason, _text(record, "reason", required=True), "reason"),
        hostname or None,
        None if rtt is None else rtt / 1000,
        1 if tries in (None, "") else _integer(tries, "tries", 0, 1_000_000),
        _timestamp(_text(record, "time")),
        assessment,
    )


def _maker(kind: type[Any]) -> Callable[..., Any]:
    """A fast constructor of frozen dataclass ``kind`` that takes every field in order.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``;
    setting the slots through their descriptors makes the same object in half the time
    (reading a million results makes two million of them). With a ``__post_init__``,
    ``kind`` itself is used.
    """
    if hasattr(kind, "__post_init__"):
        return kind
    setters = [getattr(kind, f.name).__set__ for f in dataclasses.fields(kind)]
    new = object.__new__

    def make(*values: Any) -> Any:
        made = new(kind)
        for setter, value in zip(setters, values, strict=True):
            setter(made, value)
        return made

    return make


_new_result = make_result
# (Assessment's fields are the CSV's assessment columns, in order: a test pins it.)
_new_assessment: Callable[..., Assessment] = _maker(Assessment)


def checked_result(values: Sequence[Any]) -> Result:
    """A result from the fields of one this reader checked before, as plain data (``merge``
    keeps them so in its sorted runs): host, port, protocol, state, reason, hostname, RTT,
    tries, time, and the assessment's cells in ``ASSESSMENT_COLUMNS`` order or None.
    Built fast, without the checks again."""
    host, port, protocol, state, reason, hostname, rtt, tries, stamp, cells = values
    assessment = None
    if cells is not None:
        for index, _key, kind in _ASSESSMENT_ENUMS_AT:
            if cells[index]:
                cells[index] = _MEMBERS[kind][cells[index]]
        assessment = _new_assessment(*cells)
    return _new_result(
        host,
        port,
        _MEMBERS[Proto][protocol],
        _MEMBERS[PortState][state],
        _MEMBERS[Reason][reason],
        hostname,
        rtt,
        tries,
        stamp,
        assessment,
    )


def _unguard(cell: str) -> str:
    """Undo the CSV writer's apostrophe before a cell a spreadsheet would run."""
    if cell.startswith("'") and cell[1:2] in ("=", "+", "-", "@", "\t", "\r"):
        return cell[1:]
    return cell


# -- JSON ------------------------------------------------------------------------------------


def _json(text: str, where: str) -> Any:
    try:
        value = json.loads(text)
        if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
            raise _at(where, "text with a lone surrogate (not valid Unicode)")
        return value
    except RecursionError:
        raise _at(where, "JSON nested too deeply") from None
    except ValueError as exc:
        message = getattr(exc, "msg", "bad JSON")
        line = getattr(exc, "lineno", None)
        raise _at(f":{line}" if line and not where else where, f"bad JSON: {message}") from None


def _has_lone_surrogate(value: Any) -> bool:
    """Whether any string in JSON ``value`` (keys too) holds a lone surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _record_result(record: Any, where: str) -> Result:
    """A JSON result record as a result; the fault, if any, at ``where``."""
    if not isinstance(record, dict):
        raise _at(where, "not an object")
    try:
        return _result(record)
    except _Fault as exc:
        raise _at(where, exc.message) from None


def _complete(ending: Mapping[str, Any]) -> bool | None:
    value = ending.get("complete")
    if value is None:
        return None
    if not isinstance(value, bool):
        raise _Fault(f"'complete' must be true or false, not {_repr.repr(value)}")
    return value


def _read_json(text: str) -> Report:
    doc = _json(text, "")
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        raise _Fault('not a portprobe report (a JSON object with "results" expected)')
    meta, ending = doc.get("scan", {}), doc.get("end", {})
    if not isinstance(meta, dict) or not isinstance(ending, dict):
        raise _Fault('"scan" and "end" must be objects')
    results = [
        _record_result(record, f": result {index + 1}")
        for index, record in enumerate(doc["results"])
    ]
    complete = _complete(ending) if "end" in doc else False
    return Report("json", results, meta, ending, complete, _coverage(meta, ending))


def _coverage(meta: Mapping[str, Any], ending: Mapping[str, Any]) -> Coverage:
    """The ``probed`` record of a JSON report's ending (not exact without one)."""
    return Coverage.from_record(ending.get("probed"), ports_of_spec(meta.get("ports")))


# -- XML ------------------------------------------------------------------------------------


def _xml_meta(attrib: Mapping[str, str], infos: list[dict[str, str]]) -> dict[str, Any]:
    """The nmaprun attributes (and its ``<scaninfo>``) under the names of our JSON "scan"
    record."""
    letters = {"tcp": "T:", "udp": "U:"}
    spec = ",".join(
        (letters.get(i.get("protocol", ""), "") if len(infos) > 1 else "") + i.get("services", "")
        for i in infos
    )
    meta: dict[str, Any] = dict(attrib)
    meta.update(
        command=attrib.get("args", ""),
        portprobe_version=attrib.get("version"),
        started=_unix_iso(attrib.get("start", "")),
        seed=attrib.get("portprobe_seed"),
        shard=attrib.get("portprobe_shard"),
        registry_date=attrib.get("portprobe_registry_date"),
        ports=spec or None,
    )
    return meta


def _unix_iso(value: str) -> str | None:
    """A Unix time in text as ISO-8601 UTC (None if it is not one)."""
    if not (value.isascii() and value.isdigit()) or len(value) > 11:
        return None
    return datetime.fromtimestamp(int(value), tz=UTC).isoformat()


def _xml_extraports(
    host: ElementTree.Element, address: str, names: list[str], coverage: Coverage
) -> Iterator[Result]:
    """The ports ``host`` folds into ``<extraports>``: nmap 7.92 and later name them
    (``<extrareasons ports=...>``). Closed ones are noted in ``coverage`` (reports leave
    closed ports out: a reader finds them there); the other states are results, as if
    listed, without RTT or time. A count without the ports makes the coverage inexact."""
    for extra in host.iter("extraports"):
        try:
            state = PortState(extra.get("state", ""))
        except ValueError:  # a state portprobe has no name for (nmap's "unfiltered")
            coverage.exact = False
            continue
        named = 0
        for reasons in extra.iter("extrareasons"):
            spec, protocol = reasons.get("ports"), reasons.get("proto", "tcp")
            if spec is None:
                continue
            try:
                numbers = parse_ports(spec)
            except PortSpecError:
                raise _Fault(f"bad extraports ports {_repr.repr(spec)}") from None
            proto = _enum(Proto, protocol, "protocol")
            named += len(numbers)
            if state is PortState.CLOSED:
                ports = coverage.unlisted.setdefault(address, {})
                for number in numbers:
                    ports[Port(proto, number)] = state
                continue
            reason = _enum(Reason, reasons.get("reason", ""), "reason")
            for number in numbers:
                yield Result(address, number, proto, state, reason, names[0] if names else None)
        if str(named) != extra.get("count"):
            coverage.exact = False


def _xml_host(host: ElementTree.Element, coverage: Coverage) -> Iterator[Result]:
    address = next(
        (
            a.get("addr", "")
            for a in host.iter("address")
            if a.get("addrtype", "ipv4") in ("ipv4", "ipv6")
        ),
        None,
    )
    if address is None:
        raise _Fault("no IP address")
    names = [name for h in host.iter("hostname") if (name := h.get("name"))]
    try:
        canonical = str(ipaddress.ip_address(address))
    except ValueError:
        raise _Fault(f"'host' is not an IP address: {_repr.repr(address)}") from None
    yield from _xml_extraports(host, canonical, names, coverage)
    for port in host.iter("port"):
        state = port.find("state")
        if state is None:
            raise _Fault(f"port {_repr.repr(port.get('portid'))} has no state")
        record: dict[str, Any] = {
            "host": address,
            "port": port.get("portid"),
            "protocol": port.get("protocol", ""),
            "state": state.get("state", ""),
            "reason": state.get("reason", ""),
            "hostname": names[0] if names else None,
            "rtt_ms": state.get("portprobe_rtt_ms"),
            "tries": state.get("portprobe_tries"),
            "time": state.get("portprobe_time", ""),
        }
        service = port.find("service")
        if service is not None:
            # See scanner.report.xml: the label, the software and detail seen, then
            # portprobe's own fields (nmap's own XML has only product: the evidence).
            record["label"] = service.get("name", "")
            record["evidence"] = service.get("product")
            record["product"] = service.get("product")
            record["version"] = service.get("version")
            record["evidence_detail"] = service.get("extrainfo")
            for key in ASSESSMENT_COLUMNS:
                value = service.get(f"portprobe_{key}")
                if value is not None:
                    record[key] = value
        yield _result(record)
