"""The whole-file report reader as it was before reports were streamed (``read.py`` at
commit 3118f5f), kept as the oracle of ``tests/test_report_stream.py``: the streaming reader
(``scanner.report.read``) must give the same results, records and one-line errors. It reads
the whole file, decodes it, then parses it in one piece (``json.loads``,
``ElementTree.fromstring``). Not used by portprobe.
"""

from __future__ import annotations

import csv
import enum
import io
import ipaddress
import json
import re
import reprlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
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
)
from scanner.ports import parse_ports
from scanner.report.probed import Coverage, ports_of_spec
from scanner.report.writers import ASSESSMENT_COLUMNS, CSV_COLUMNS
from scanner.safeio import read_bounded

__all__ = ["read_report_bytes"]

#: The largest report read (``diff``, ``merge``, ``--resume``): about 600,000 results.
MAX_REPORT_FILE = 256 * 1024 * 1024
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


def read_report(path: str, *, torn_tail: bool = False) -> Report:
    """Read the report at ``path`` (``-`` is not accepted); ReportError on any fault.

    At most :data:`MAX_REPORT_FILE` bytes are read (a FIFO or device as
    :func:`scanner.safeio.read_bounded` reads it).
    """
    if path == "-":
        raise ReportError("-: a report must be a file")
    data = read_bounded(path, MAX_REPORT_FILE, lambda message: ReportError(f"{path}: {message}"))
    return read_report_bytes(data, path, torn_tail=torn_tail)


def read_report_bytes(data: bytes, name: str, *, torn_tail: bool = False) -> Report:
    """Read a report from ``data``; ``name`` is used in messages. ReportError on any fault.

    ``torn_tail``: accept a report cut short mid-record (see the module rules).
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if not (torn_tail and len(data) - exc.start < 4):  # a character cut in two
            line = data[: exc.start].count(b"\n") + 1
            raise ReportError(f"{name}:{line}: not UTF-8 text") from None
        text = data[: exc.start].decode("utf-8-sig")
    start = text.lstrip()
    try:
        if not start:
            raise _Fault("empty file: not a portprobe report")
        if start.startswith("<"):
            return _read_xml(text)
        if start.startswith("{"):
            first = start.split("\n", 1)[0]
            try:
                head = json.loads(first)
            except (ValueError, RecursionError):
                head = None
            if isinstance(head, dict) and head.get("type") == "scan":
                return _read_jsonl(text, torn_tail=torn_tail)
            try:
                return _read_json(text)
            except _Fault:
                if not torn_tail:
                    raise
                return _read_json_lines(text)
        return _read_csv(text)
    except _Fault as exc:
        raise ReportError(f"{name}{exc.where}: {exc.message}") from None


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


def _enum(kind: type[enum.StrEnum], value: str, key: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise _Fault(f"unknown {key} {_repr.repr(value)}") from None


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


def _result(record: Mapping[str, Any]) -> Result:
    host = _text(record, "host", required=True)
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        raise _Fault(f"'host' is not an IP address: {_repr.repr(host)}") from None
    hostname = _text(record, "hostname")
    if hostname.startswith("'"):  # the CSV writer's guard against formulas
        hostname = hostname[1:]
    rtt = _number(record.get("rtt_ms"), "rtt_ms")
    tries = record.get("tries")
    assessed: dict[str, Any] = {key: _unguard(_text(record, key)) for key in ASSESSMENT_COLUMNS}
    assessment = None
    if any(assessed.values()):
        # The assessment's enums are checked: a report with another word is not ours.
        for key, kind in _ASSESSMENT_ENUMS.items():
            if assessed[key]:
                assessed[key] = _enum(kind, assessed[key], key)
        assessment = Assessment(**assessed)
    return Result(
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


def _unguard(cell: str) -> str:
    """Undo the CSV writer's apostrophe before a cell a spreadsheet would run."""
    if cell.startswith("'") and cell[1:2] in ("=", "+", "-", "@", "\t", "\r"):
        return cell[1:]
    return cell


# -- CSV --------------------------------------------------------------------------------


def _read_csv(text: str) -> Report:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None or not set(_REQUIRED_CSV) <= set(header):
            raise _Fault("not a portprobe report (no CSV header with host,port,protocol,...)")
        results = []
        for row in reader:
            if not row:
                continue
            where = f":{reader.line_num}"
            if len(row) != len(header):
                raise _at(where, f"{len(row)} cells where the header has {len(header)}")
            try:
                results.append(_result(dict(zip(header, row, strict=True))))
            except _Fault as exc:
                raise _at(where, exc.message) from None
    except csv.Error as exc:
        raise _at(f":{reader.line_num}", f"bad CSV: {exc}") from None
    return Report("csv", results)


# -- JSON and JSON Lines ------------------------------------------------------------------


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


def _read_jsonl(text: str, *, torn_tail: bool = False) -> Report:
    meta: dict[str, Any] = {}
    ending: dict[str, Any] = {}
    results = []
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f":{number}"
        try:
            record = _json(line, where)
        except _Fault:
            if torn_tail and number == len(lines):  # the last line, with no line end: cut
                break
            raise
        if not isinstance(record, dict):
            raise _at(where, "not a JSON object")
        kind = record.get("type")
        if kind == "scan":
            meta = record
        elif kind == "result":
            try:
                results.append(_result(record))
            except _Fault as exc:
                raise _at(where, exc.message) from None
        elif kind == "end":
            ending = record
        else:
            raise _at(where, f"unknown record type {_repr.repr(kind)}")
    try:
        complete = _complete(ending) if ending else False
    except _Fault as exc:
        raise _at(":end", exc.message) from None
    return Report("jsonl", results, meta, ending, complete, _coverage(meta, ending))


def _coverage(meta: Mapping[str, Any], ending: Mapping[str, Any]) -> Coverage:
    """The ``probed`` record of a JSON report's ending (not exact without one)."""
    return Coverage.from_record(ending.get("probed"), ports_of_spec(meta.get("ports")))


def _read_json_lines(text: str) -> Report:
    """What a JSON report cut short holds: the JSON writer puts the ``scan`` object on the
    first line and one result per line after it; a last line cut short is dropped."""
    lines = text.split("\n")
    prefix = '{"scan": '
    if not lines[0].startswith(prefix) or lines[1:2] != [' "results": [']:
        raise _Fault('not a portprobe JSON report (no "scan" line, then "results")')
    meta = _json(lines[0][len(prefix) :].rstrip().removesuffix(","), ":1")
    if not isinstance(meta, dict):
        raise _at(":1", '"scan" must be an object')
    results = []
    for number, line in enumerate(lines[2:], start=3):
        item = line.strip().removesuffix(",")
        if not item.startswith("{"):
            break  # "]," and the end record: the document was whole up to here
        try:
            record = _json(item, f":{number}")
        except _Fault:
            if number == len(lines):
                break
            raise
        results.append(_record_result(record, f":{number}"))
    return Report("json", results, meta, {}, False, _coverage(meta, {}))


# -- XML ------------------------------------------------------------------------------------


def _read_xml(text: str) -> Report:
    if "<!ENTITY" in text:
        raise _Fault("XML entity declarations are not accepted")
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        line = exc.position[0] if getattr(exc, "position", None) else None
        raise _at(f":{line}" if line else "", "bad XML") from None
    except (ValueError, RecursionError):
        raise _Fault("bad XML") from None
    if root.tag != "nmaprun":
        raise _Fault("not an nmap-style XML report (no <nmaprun>)")
    results: list[Result] = []
    coverage = Coverage(exact=True)
    for index, host in enumerate(root.iter("host"), start=1):
        try:
            results.extend(_xml_host(host, coverage))
        except _Fault as exc:
            raise _at(f": host {index}", exc.message) from None
    finished = root.find("runstats/finished")
    complete = None if finished is None else finished.get("exit", "success") == "success"
    ending: dict[str, Any] = {} if finished is None else dict(finished.attrib)
    if "time" in ending:
        ending["finished"] = _unix_iso(ending["time"])
    # The nmaprun attributes under the names of our JSON "scan" record.
    infos = root.findall("scaninfo")
    letters = {"tcp": "T:", "udp": "U:"}
    spec = ",".join(
        (letters.get(i.get("protocol", ""), "") if len(infos) > 1 else "") + i.get("services", "")
        for i in infos
    )
    meta: dict[str, Any] = dict(root.attrib)
    meta.update(
        command=root.get("args", ""),
        portprobe_version=root.get("version"),
        started=_unix_iso(root.get("start", "")),
        seed=root.get("portprobe_seed"),
        shard=root.get("portprobe_shard"),
        registry_date=root.get("portprobe_registry_date"),
        ports=spec or None,
    )
    coverage.ports = ports_of_spec(spec)
    return Report("xml", results, meta, ending, complete, coverage)


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
