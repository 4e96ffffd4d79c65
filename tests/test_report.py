"""Report writers, the summary, the terminal table and atomic output files."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.errors import OutputError
from scanner.models import PortState, Proto, Reason, Result
from scanner.report import (
    CSV_COLUMNS,
    Ending,
    ScanMeta,
    Summary,
    TableReport,
    format_for_path,
    make_writer,
    printable,
)
from scanner.report.files import AtomicOutput
from scanner.report.writers import ASSESSMENT_COLUMNS, isotime, safe_cell

META = ScanMeta(
    version="0.1.0",
    command=["portprobe", "198.18.0.2"],
    started=0.0,
    seed=5,
    ports="22,80",
    hosts=1,
)


def result(
    port: int,
    state: PortState = PortState.OPEN,
    reason: Reason = Reason.SYN_ACK,
    host: str = "198.18.0.2",
    hostname: str | None = None,
) -> Result:
    return Result(host, port, Proto.TCP, state, reason, hostname, 0.0012, 1, 1795406400.5)


RESULTS = [
    result(22),
    result(81, PortState.FILTERED, Reason.NO_RESPONSE),
    result(443, hostname="=cmd|' /C calc'!A0"),
]


def ending(complete: bool = True) -> Ending:
    summary = Summary(ports_per_host=3)
    for r in RESULTS:
        summary.add(r)
    return Ending(finished=1795406401.0, complete=complete, summary=summary)


def test_csv_has_header_columns_and_neutralised_cells() -> None:
    out = io.StringIO()
    writer = make_writer("csv", out, META)
    for r in RESULTS:
        writer.write(r)
    writer.close(ending())
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert rows[0][:5] == ["host", "port", "protocol", "state", "reason"]
    assert rows[1][:5] == ["198.18.0.2", "22", "tcp", "open", "syn-ack"]
    assert rows[1][6:9] == ["1.200", "1", "2026-11-23T04:00:00.500Z"]
    # No assessment: the results layer did not run.
    assert rows[1][9:] == [""] * len(ASSESSMENT_COLUMNS)
    assert rows[2][3:5] == ["filtered", "no-response"]
    assert rows[3][5] == "'=cmd|' /C calc'!A0"


@pytest.mark.parametrize("complete", [True, False])
def test_json_document_is_valid_however_it_ends(complete: bool) -> None:
    out = io.StringIO()
    writer = make_writer("json", out, META)
    for r in RESULTS:
        writer.write(r)
    writer.close(ending(complete))
    doc = json.loads(out.getvalue())
    assert doc["scan"]["seed"] == 5 and doc["scan"]["schema"] == 4
    assert [r["port"] for r in doc["results"]] == [22, 81, 443]
    assert doc["results"][1]["state"] == "filtered"
    assert doc["end"]["complete"] is complete
    assert doc["end"]["summary"]["states"] == {"filtered": 1, "open": 2}


def test_json_with_no_results_is_valid() -> None:
    out = io.StringIO()
    writer = make_writer("json", out, META)
    writer.close(ending())
    assert json.loads(out.getvalue())["results"] == []


def test_jsonl_is_one_object_per_line() -> None:
    out = io.StringIO()
    writer = make_writer("jsonl", out, META)
    for r in RESULTS:
        writer.write(r)
    writer.close(ending(False))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["type"] for line in lines] == ["scan", "result", "result", "result", "end"]
    assert lines[-1]["complete"] is False


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        ("a.csv", "csv"),
        ("A.CSV", "csv"),
        ("x.json", "json"),
        ("x.jsonl", "jsonl"),
        ("x.ndjson", "jsonl"),
        ("report.txt", "table"),
    ],
)
def test_format_from_extension(path: str, fmt: str) -> None:
    assert format_for_path(path) == fmt


@pytest.mark.parametrize("path", ["out", "out.xlsx", "out.csv.bak"])
def test_unknown_extension_is_a_usage_error(path: str) -> None:
    with pytest.raises(OutputError, match="--format"):
        format_for_path(path)


@pytest.mark.parametrize(
    ("cell", "safe"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("host.lab", "host.lab"),
        ("", ""),
    ],
)
def test_safe_cell(cell: str, safe: str) -> None:
    assert safe_cell(cell) == safe


@given(st.text())
def test_printable_leaves_no_control_characters(text: str) -> None:
    shown = printable(text)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in shown)


def test_isotime_is_utc() -> None:
    assert isotime(0) == "1970-01-01T00:00:00.000Z"


def test_summary_not_shown_and_unreachable_hosts() -> None:
    summary = Summary(ports_per_host=2)
    for r in [
        result(22),
        result(23, PortState.CLOSED, Reason.CONN_REFUSED),
        result(22, PortState.FILTERED, Reason.NET_UNREACH, host="198.19.0.1"),
        result(23, PortState.FILTERED, Reason.NET_UNREACH, host="198.19.0.1"),
        result(22, PortState.FILTERED, Reason.HOST_UNREACH, host="198.18.0.9"),
        result(23, PortState.FILTERED, Reason.NO_RESPONSE, host="198.18.0.9"),
    ]:
        summary.add(r)
    assert summary.not_shown(frozenset({PortState.OPEN})) == "Not shown: 4 filtered, 1 closed"
    assert summary.not_shown(frozenset(PortState)) == ""
    assert summary.unreachable_hosts() == [("198.19.0.1", Reason.NET_UNREACH)]
    assert summary.hosts_answered == {"198.18.0.2"}


def test_table_shows_open_ports_sorted_and_escapes_names() -> None:
    table = TableReport()
    for r in [
        result(443),
        result(22, hostname="evil\x1b[2Jname"),
        result(23, PortState.CLOSED, Reason.CONN_REFUSED),
    ]:
        table.add(r)
    summary = Summary(ports_per_host=3)
    out = io.StringIO()
    table.render(summary, out)
    text = out.getvalue()
    assert "\x1b" not in text and "evil\\x1b[2Jname" in text
    assert text.index("22/tcp") < text.index("443/tcp")
    assert "23/tcp" not in text


@pytest.mark.parametrize(
    ("dated", "noted"), [("2015-07-30", True), ("2026-09-17", False), ("", False)]
)
def test_table_dates_its_labels_and_explains(dated: str, noted: bool) -> None:
    from scanner.assess import Assessor
    from scanner.evidence import Evidence

    table = TableReport(registry_date=dated, today=dt.date(2026, 12, 1), explain=True)
    assessor = Assessor()
    table.add(assessor.assess(result(8000), Evidence("http", "x\x1b[2J; 200", "http")))
    table.add(assessor.assess(result(2451), Evidence("", "", "banner", excerpt="\\x00ab")))
    out = io.StringIO()
    table.render(Summary(ports_per_host=2), out)
    lines = out.getvalue().splitlines()
    assert (lines[0] == f"Labels from the IANA registry of {dated}") is bool(dated)
    assert ("over a year old" in lines[-1]) is noted
    assert any(x.startswith("198.18.0.2 8000/tcp: customary (it speaks a doc") for x in lines)
    assert "  check by hand: curl -sv http://198.18.0.2:8000/" in lines
    assert "  check by hand: nc 198.18.0.2 2451" in lines
    assert "!! UNRECOGNISED" in out.getvalue() and "\x1b" not in out.getvalue()


def test_atomic_output_renames_only_on_commit(tmp_path: Path) -> None:
    target = tmp_path / "scan.csv"
    sink = AtomicOutput(str(target))
    sink.stream.write("host\n")
    sink.flush()
    assert not target.exists()
    sink.commit()
    assert target.read_text() == "host\n"
    assert os.listdir(tmp_path) == ["scan.csv"]


def test_atomic_output_discard_leaves_nothing(tmp_path: Path) -> None:
    sink = AtomicOutput(str(tmp_path / "scan.csv"))
    sink.stream.write("partial")
    sink.discard()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("bad", ["missing-dir/x.csv", "."])
def test_atomic_output_refuses_bad_paths(tmp_path: Path, bad: str) -> None:
    with pytest.raises(OutputError, match="cannot write"):
        AtomicOutput(str(tmp_path / bad))


def test_csv_sorted_through_runs_on_disk_equals_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past CSV_RUN rows the CSV report sorts in runs on disk: the file is the same."""
    import io
    import random

    from scanner.models import PortState, Proto, Reason, Result
    from scanner.report import writers
    from scanner.report.summary import Summary

    hosts = ["198.18.0.10", "198.18.0.9", "2001:db8::2", "198.18.1.1"]
    results = [
        Result(h, p, proto, PortState.CLOSED, Reason.CONN_REFUSED)
        for h in hosts
        for p in range(1, 40)
        for proto in (Proto.TCP, Proto.UDP)
    ]
    random.Random(7).shuffle(results)
    meta = writers.ScanMeta(version="t", command=[], started=0.0, seed=1, ports="1-39", hosts=4)
    ending = writers.Ending(finished=0.0, complete=True, summary=Summary(ports_per_host=78))

    def written(run: int) -> str:
        monkeypatch.setattr(writers, "CSV_RUN", run)
        stream = io.StringIO()
        writer = writers.CsvWriter(stream, meta)
        for result in results:
            writer.write(result)
        writer.close(ending)
        return stream.getvalue()

    in_memory, on_disk = written(10_000), written(7)
    assert on_disk == in_memory
    rows = [line.split(",")[:3] for line in in_memory.splitlines()[1:]]
    assert rows[0] == ["198.18.0.9", "1", "tcp"] and rows[-1] == ["2001:db8::2", "39", "udp"]
    assert len(rows) == len(results)
