"""Reports read as streams, against the whole-file reader they replaced.

``tests/whole_reader.py`` is the reader as it was (whole file, one parse): for every format
the streaming reader (``scanner.report.read``) must give the same results, records, coverage
and one-line errors, whether it reads a file or bytes. Then the pieces that keep ``diff``,
``merge`` and ``--resume`` flat: the external sort and the key set
(``scanner.report.runs``), and diff and merge forced through runs on disk.
"""

from __future__ import annotations

import dataclasses
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest
import whole_reader
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanner.errors import ReportError
from scanner.models import Assessment, Attestation, PortState, Proto, Reason, Result, Verdict
from scanner.report import Ending, ScanMeta, Summary, make_writer, runs
from scanner.report import read as reader
from scanner.report.diff import diff_reports, write_diff
from scanner.report.merge import merge_reports, write_merged
from scanner.report.read import open_report, read_report, read_report_bytes
from scanner.report.runs import ExternalSort, KeySet, sort_text
from scanner.report.table import address_key
from scanner.report.writers import ASSESSMENT_COLUMNS

FORMATS = ("csv", "json", "jsonl", "xml")
META = ScanMeta(
    version="0.1.0",
    command=["portprobe", "198.18.0.0/30", "-p", "20-25,U:53"],
    started=1_764_000_000.0,
    seed=5,
    ports="T:20-25,U:53",
    hosts=4,
    registry_date="2026-09-17",
)


def result(
    port: int,
    host: str = "198.18.0.2",
    state: PortState = PortState.OPEN,
    protocol: Proto = Proto.TCP,
    **assessed: Any,
) -> Result:
    reason = {
        PortState.OPEN: Reason.SYN_ACK,
        PortState.CLOSED: Reason.CONN_REFUSED,
    }.get(state, Reason.NO_RESPONSE)
    return Result(
        host,
        port,
        protocol,
        state,
        reason,
        "lab.example" if port % 2 else None,
        0.0015 if state is not PortState.FILTERED else None,
        1 + port % 3,
        META.started + port / 1000,
        Assessment(**assessed) if assessed else None,
    )


RESULTS = [
    result(
        22, label="ssh", attestation=Attestation.COMMON, evidence="ssh", verdict=Verdict.CONSISTENT
    ),
    result(25, label="=smtp", evidence="+cmd|' /C calc'!A0", evidence_detail='a b,c"d'),
    result(21, "198.18.0.1", PortState.CLOSED, label="ftp", range="system"),
    result(23, "198.18.0.3", PortState.FILTERED),
    result(53, "198.18.0.2", PortState.OPEN_FILTERED, Proto.UDP, label="domain"),
    result(24, "198.18.0.2", label="x", warning="label is not evidence: l'étiquette ☃"),
]


def written(fmt: str, results: list[Result], *, complete: bool = True) -> bytes:
    """``results`` as ``fmt`` writes them (closed ports listed, as with ``--all``)."""
    stream = io.StringIO(newline="")
    writer = make_writer(fmt, stream, dataclasses.replace(META, closed_listed=True))
    summary = Summary()
    for r in results:
        writer.write(r)
        summary.add(r)
    writer.close(Ending(finished=META.started + 60, complete=complete, summary=summary))
    return stream.getvalue().encode("utf-8")


def both(data: bytes, tmp_path: Path | None = None, *, torn: bool = False) -> tuple[Any, Any]:
    """What the whole-file reader and the streaming reader make of ``data``: a report, or
    the error's message. With ``tmp_path`` the streaming reader reads a file."""
    outcomes: list[Any] = []
    for read in ("whole", "stream"):
        try:
            if read == "whole":
                found = whole_reader.read_report_bytes(data, "r", torn_tail=torn)
            elif tmp_path is None:
                found = read_report_bytes(data, "r", torn_tail=torn)
            else:
                (tmp_path / "r").write_bytes(data)
                found = read_report(str(tmp_path / "r"), torn_tail=torn)
                found = dataclasses.replace(found)
            outcomes.append(
                (
                    found.format,
                    found.results,
                    found.meta,
                    found.ending,
                    found.complete,
                    _coverage(found.coverage),
                )
            )
        except ReportError as exc:
            message = str(exc)
            if tmp_path is not None and read == "stream":
                message = message.replace(str(tmp_path / "r"), "r", 1)
            outcomes.append(message)
    return outcomes[0], outcomes[1]


def _coverage(coverage: Any) -> tuple[Any, ...]:
    return coverage.ports, coverage.exact, coverage.complete, coverage.unlisted


# -- the same results as the whole-file reader ---------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("complete", [True, False])
def test_every_format_streams_what_the_whole_reader_reads(
    fmt: str, complete: bool, tmp_path: Path
) -> None:
    data = written(fmt, RESULTS, complete=complete)
    whole, streamed = both(data, tmp_path)
    assert not isinstance(whole, str), whole
    assert streamed == whole
    if fmt != "xml":  # (nmap's XML has one hostname a host, and no hostname of a port)
        assert sorted(whole[1], key=_order) == sorted(RESULTS, key=_order)


def _order(r: Result) -> tuple[Any, ...]:
    return address_key(r.host), r.protocol, r.port


@pytest.mark.parametrize("fmt", FORMATS)
def test_meta_is_known_once_the_results_are_read(fmt: str, tmp_path: Path) -> None:
    path = tmp_path / f"r.{fmt}"
    path.write_bytes(written(fmt, RESULTS))
    with open_report(str(path)) as stream:
        assert stream.format == fmt
        given = list(stream.results())
        assert stream.count == len(given) == len(RESULTS)
        assert stream.complete is (None if fmt == "csv" else True)
        if fmt != "csv":
            assert stream.coverage.ports is not None and len(stream.coverage.ports) == 7
        with pytest.raises(RuntimeError):
            list(stream.results())


def _reformatted(data: bytes) -> bytes:
    return json.dumps(json.loads(data), indent=3).encode()


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n")


def _cr(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r")


def _bom(data: bytes) -> bytes:
    return b"\xef\xbb\xbf" + data


def _blank_lines(data: bytes) -> bytes:
    return b"\n \n\t\n" + data


def _cut(data: bytes, at: float) -> bytes:
    return data[: int(len(data) * at)]


# (format, change, torn_tail): documents laid out otherwise, or damaged; the readers agree.
VARIANTS = [
    ("json", _reformatted, False),
    ("json", lambda d: d.replace(b'},\n  {"host"', b'}, {"host"', 1), False),
    ("json", lambda d: d.replace(b"\n ],", b",\n ],"), False),  # a trailing comma
    ("json", lambda d: d.replace(b'"end": {', b'"end": {"x": 1, '), False),
    ("json", lambda d: d.replace(b'\n "end"', b'\n "extra": 1,\n "end"'), False),
    ("json", lambda d: d.replace(b'"port": 25', b'"port": 250000'), False),
    ("json", lambda d: d.replace(b'"port": 25', b'"port": "\\ud800"'), False),
    ("json", _crlf, False),
    ("json", _bom, False),
    ("json", _blank_lines, False),
    ("json", lambda d: _cut(d, 0.5), False),
    ("json", lambda d: _cut(d, 0.5), True),
    ("json", lambda d: _cut(d, 0.97), True),
    ("json", lambda d: d[:-3] + b"\xe2\x82", True),
    ("jsonl", _crlf, False),
    ("jsonl", _bom, False),
    ("jsonl", _blank_lines, False),
    ("jsonl", lambda d: _cut(d, 0.5), False),
    ("jsonl", lambda d: _cut(d, 0.5), True),
    ("jsonl", lambda d: d + b'{"type": "result", "host": "198.18.0.9", "po', True),
    ("jsonl", lambda d: d + b'{"type": "result", "host": "198.18.0.9\xe2\x82', True),
    ("jsonl", lambda d: d + b'{"type": "result", "host": "198.18.0.9\xe2\x82\n', True),
    ("jsonl", lambda d: d + b'{"type": "wat"}\n', False),
    ("jsonl", lambda d: d.replace(b'"state": "filtered"', b'"state": "shut"'), False),
    ("csv", _crlf, False),
    ("csv", _cr, False),
    ("csv", _bom, False),
    ("csv", _blank_lines, False),
    ("csv", lambda d: d.replace(b",ssh,", b',"s\nsh",'), False),
    ("csv", lambda d: d.replace(b",ssh,", b',"ssh'), False),
    ("csv", lambda d: d.replace(b",ssh,", b",s\xffsh,"), False),
    ("csv", lambda d: d.replace(b"198.18.0.3", b"198.18.0.300"), False),
    ("csv", lambda d: d + b"198.18.0.2,1\n", False),
    ("csv", lambda d: d.replace(b"host,", b"hostname2,"), False),
    ("xml", _crlf, False),
    ("xml", _bom, False),
    ("xml", lambda d: b"<?xml version='1.0'?>\n<!DOCTYPE x [<!ENTITY a 'b'>]>\n" + d[40:], False),
    ("xml", lambda d: _cut(d, 0.6), False),
    ("xml", lambda d: d.replace(b'portid="25"', b'portid="x25"'), False),
    ("xml", lambda d: d.replace(b"<nmaprun", b"<other").replace(b"</nmaprun", b"</other"), False),
    ("xml", lambda d: d.replace(b'state="open"', b'state="opened"', 1), False),
    ("xml", lambda d: d.replace(b"<runstats>", b"<runstats><junk/>"), False),
]


@pytest.mark.parametrize(("fmt", "change", "torn"), VARIANTS)
def test_variants_and_faults_read_as_the_whole_reader_reads_them(
    fmt: str, change: Any, torn: bool, tmp_path: Path
) -> None:
    data = change(written(fmt, RESULTS, complete=False))
    whole, streamed = both(data, tmp_path, torn=torn)
    assert streamed == whole
    if isinstance(streamed, str):
        assert "\n" not in streamed and streamed.startswith("r")


def test_a_json_document_laid_out_otherwise_is_capped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A JSON document not in portprobe's layout is read whole, so it keeps the cap."""
    data = _reformatted(written("json", RESULTS))
    path = tmp_path / "r.json"
    path.write_bytes(data)
    monkeypatch.setattr(reader, "MAX_REPORT_FILE", len(data) - 1)
    with pytest.raises(ReportError, match=r"larger than .* not laid out as portprobe writes it"):
        read_report(str(path))
    path.write_bytes(written("json", RESULTS))  # the layout of the writer: streamed, no cap
    assert len(read_report(str(path)).results) == len(RESULTS)


def test_a_line_over_the_record_cap_is_one_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "MAX_REPORT_RECORD", 100)
    path = tmp_path / "r.jsonl"
    path.write_bytes(written("jsonl", RESULTS))
    with pytest.raises(ReportError, match=r"r\.jsonl:1: a line larger than 100 bytes"):
        read_report(str(path))


def test_assessment_fields_are_the_csv_columns_in_order() -> None:
    """The reader builds an Assessment from the columns' cells in order."""
    assert tuple(f.name for f in dataclasses.fields(Assessment)) == ASSESSMENT_COLUMNS


# -- hypothesis: any results, any cut or damage ---------------------------------------------

texts = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)


@st.composite
def any_results(draw: st.DrawFn) -> list[Result]:
    found: dict[tuple[str, Proto, int], Result] = {}
    for _ in range(draw(st.integers(0, 8))):
        host = draw(st.sampled_from(["198.18.0.1", "198.18.0.2", "2001:db8::5", "198.18.1.0"]))
        protocol = draw(st.sampled_from(list(Proto)))
        port = draw(st.integers(1, 65535))
        state = draw(st.sampled_from(list(PortState)))
        assessed = None
        if draw(st.booleans()):
            assessed = Assessment(
                label=draw(texts),
                evidence=draw(texts),
                evidence_detail=draw(texts),
                attestation=draw(st.sampled_from(["", *Attestation])),
                verdict=draw(st.sampled_from(["", *Verdict])),
                warning=draw(texts),
            )
        found[host, protocol, port] = Result(
            host,
            port,
            protocol,
            state,
            draw(st.sampled_from(list(Reason))),
            draw(st.none() | texts.filter(bool)),
            draw(st.none() | st.floats(0, 10).map(lambda f: round(f, 6))),
            draw(st.integers(0, 5)),
            draw(st.floats(1e9, 2e9).map(lambda f: round(f, 3))),
            assessed,
        )
    return list(found.values())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    results=any_results(),
    fmt=st.sampled_from(FORMATS),
    cut=st.none() | st.floats(0, 1),
    flip=st.none() | st.tuples(st.floats(0, 1), st.integers(0, 255)),
    torn=st.booleans(),
)
def test_any_report_cut_or_damaged_reads_as_the_whole_reader_reads_it(
    results: list[Result],
    fmt: str,
    cut: float | None,
    flip: tuple[float, int] | None,
    torn: bool,
) -> None:
    data = bytearray(written(fmt, results, complete=False))
    if flip is not None and data:
        data[int(flip[0] * (len(data) - 1))] = flip[1]
    if cut is not None:
        data = data[: int(cut * len(data))]
    whole, streamed = both(bytes(data), torn=torn)
    assert streamed == whole


# -- the external sort and the key set ------------------------------------------------------


@pytest.mark.parametrize("run", [1, 3, 1000])
def test_the_external_sort_gives_every_line_in_order(run: int) -> None:
    lines = [f"{random.Random(n).randrange(10**6):07d}\t{n}\n" for n in range(200)]
    with ExternalSort(run) as sort:
        sort.extend(lines)
        assert list(sort.sorted()) == sorted(lines)
        assert list(sort.sorted()) == sorted(lines)  # again: it starts over
        assert sort.count == len(lines)


def test_input_in_order_makes_one_run() -> None:
    lines = [f"{n:05d}\n" for n in range(100)]
    with ExternalSort(7) as sort:
        sort.extend(lines)
        assert list(sort.sorted()) == lines
        assert len(sort._runs._runs) == 1  # appended, never merged


def test_sort_text_sorts_as_the_address_key() -> None:
    hosts = ["198.18.0.10", "198.18.0.9", "2001:db8::1", "10.0.0.1", "::1", "198.18.1.0"]
    keys = [(address_key(h), p, n) for h in hosts for p in ("tcp", "udp") for n in (9, 80)]
    assert sorted(keys, key=sort_text) == sorted(keys)


@settings(max_examples=100, deadline=None)
@given(
    keys=st.lists(
        st.tuples(
            st.sampled_from(["198.18.0.1", "2001:db8::1", "198.18.0.2"]),
            st.sampled_from(["tcp", "udp"]),
            st.integers(0, 65535),
        ),
        max_size=3000,
    ),
    probe=st.tuples(st.sampled_from(["198.18.0.1", "x"]), st.just("udp"), st.integers(0, 65535)),
)
def test_the_key_set_is_a_set(
    keys: list[tuple[str, str, int]], probe: tuple[str, str, int]
) -> None:
    found = KeySet()
    for key in keys:
        found.add(*key)
    expected = set(keys)
    assert all(key in found for key in expected)
    assert (probe in found) == (probe in expected)
    assert set(found.hosts()) == {h for h, _, _ in expected}
    for host in found.hosts():
        ports = list(found.ports(host))
        assert ports == sorted({(p, n) for h, p, n in expected if h == host})


# -- diff and merge through runs on disk ----------------------------------------------------

MANY = [
    result(n, f"198.18.0.{n % 5}", [PortState.OPEN, PortState.CLOSED, PortState.FILTERED][n % 3])
    for n in range(1, 400)
]
CHANGED = [
    dataclasses.replace(r, state=PortState.OPEN) if r.port % 7 == 0 else r
    for r in MANY
    if r.port % 11
]


@pytest.mark.parametrize("fmt", FORMATS)
def test_diff_and_merge_are_the_same_through_runs_on_disk(
    fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = tmp_path / f"old.{fmt}", tmp_path / f"new.{fmt}"
    old.write_bytes(written(fmt, MANY))
    new.write_bytes(written(fmt, CHANGED))
    outputs = []
    for run in (runs.RUN_LINES, 16):
        monkeypatch.setattr(runs, "RUN_LINES", run)
        with open_report(str(old)) as a, open_report(str(new)) as b:
            found = diff_reports(a, b, old_name="old", new_name="new")
        text = io.StringIO()
        write_diff(found, "json", text, old="old", new="new")
        first, second = MANY[: len(MANY) // 2], MANY[len(MANY) // 2 :]
        (tmp_path / "a.jsonl").write_bytes(written("jsonl", first))
        (tmp_path / "b.jsonl").write_bytes(written("jsonl", second))
        with (
            open_report(str(tmp_path / "a.jsonl")) as a,
            open_report(str(tmp_path / "b.jsonl")) as b,
            merge_reports([("a", a), ("b", b)]) as merged,
        ):
            joined = io.StringIO()
            write_merged(merged, fmt, joined, version="0", command=["portprobe", "merge"])
        outputs.append((text.getvalue(), joined.getvalue()))
        assert found.changes and found.compared
    assert outputs[0] == outputs[1]
    if fmt != "xml":
        whole = whole_reader.read_report_bytes(outputs[1][1].encode(), "merged")
        assert sorted(whole.results, key=_order) == sorted(MANY, key=_order)


def test_merge_finds_an_overlap_in_runs_on_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs, "RUN_LINES", 8)
    first = read_report_bytes(written("jsonl", MANY[:100]), "a")
    second = read_report_bytes(written("jsonl", MANY[99:]), "b")
    shown = f"{MANY[99].host} {MANY[99].port}/tcp"
    with pytest.raises(ReportError, match=f"a and b both hold {shown}: they overlap"):
        merge_reports([("a", first), ("b", second)])
