"""Fuzzing with hypothesis: bad input from the command line, files and the network.

What the other test modules already fuzz is not repeated here: port specs
(``test_ports``), single targets (``test_targets``), the registry CSV (``test_registry``),
durations (``test_cli``), and every decoder on arbitrary bytes (``test_protocols``). This
module adds what they leave open:

- the whole command line: random argv -> exit status 0, 1 or 2, an error is one line on
  stderr, never a traceback (the scan itself is replaced, so no packet is ever sent);
- target and exclusion *files* of arbitrary bytes;
- decoders fed the way the prober feeds them (HTTP in arbitrary pieces) and fed hostile
  *structured* input (well-formed HTTP and greetings carrying escapes, bidi controls and
  formulas), which random bytes almost never reach; TLS record sniffing and alerts;
- the report writers and the terminal table on arbitrary text in every field;
- crafted report *fields* read by ``diff``, ``merge`` and ``--resume``: numbers of
  thousands of digits, times in year 0 or 10000, lone surrogates, values of the wrong type.

The numbers of examples are fixed (``CASES``) so the README's figures can quote them.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scanner.cli.run
import scanner.registry
from scanner.cli import Environment, ExitStatus, main
from scanner.errors import TargetFileError
from scanner.models import Assessment, PortState, Proto, Reason, Result
from scanner.protocols import DETAIL_LIMIT, Evidence, banner, http, tls
from scanner.report import Ending, ScanMeta, Summary, TableReport
from scanner.report.writers import (
    CSV_COLUMNS,
    CsvWriter,
    JsonLinesWriter,
    JsonWriter,
    RecordJson,
    csv_cell,
    csv_line,
    csv_row,
    result_record,
)
from scanner.targets import parse_exclude_file, read_targets_file

#: Examples per property (hypothesis may stop earlier when it has tried every case).
CASES = {
    "argv": 1500,
    "files": 300,
    "http": 500,
    "structured": 500,
    "tls": 500,
    "reports": 300,
    "crafted": 400,
}

# Written out here, not imported: the test's own idea of what must never get through.
UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069"
    "\ud800-\udfff\ufeff\ufff9-\ufffb\U000e0000-\U000e007f]"
)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

# Text with a bias toward what hurts: controls, escapes, bidi, formula starts, separators.
NASTY = [
    "\x1b[2J", "\x1b]0;t\x07", "\x1b]52;c;AAAA\x07", "\x9b31m", "\u202e", "\u2066", "\u200b",
    "\ufeff", "\x00", "\x7f", "\r", "\n", "\t", "=", "+", "-", "@", ",", '"', ";", "<", ">",
    "\ud7ff", "é", "\U0001f600", "\u061c", "\u2061", "\u00ad", "\u180e", "\ufffa",
    "\U000e0041",
]  # fmt: skip
nasty_text = st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=8)), max_size=12).map(
    "".join
)


# --------------------------------------------------------------------------- command line

OPTIONS = [
    "-p", "--ports", "--top-ports", "-iL", "--targets-file", "--exclude", "--exclude-file",
    "-o", "--output", "--format", "--all", "--concurrency", "--rate", "--retries",
    "--min-rtt-timeout", "--max-rtt-timeout", "--initial-rtt-timeout", "--seed", "--workers",
    "-q", "--quiet", "--no-evidence", "--evidence-timeout", "--help", "-h", "--version",
    "--", "-", "-p-",
]  # fmt: skip
# "diff" reads reports (the fixture's files); "merge" is left out: it writes its output.
COMMANDS = ["scan", "port", "local", "registry", "info", "update", "rollback", "--from", "diff"]
VALUES = [
    "22", "0", "65535", "65536", "-1", "1-", "-1024", "1,2,3", "1-65535", "80-22", "x",
    "1e9", "nan", "inf", "-inf", "0.0", "10ms", "2s", "1h", "-5s", "99999999999999999999",
    "127.0.0.1", "::1", "[::1]", "127.0.0.0/8", "127.0.0.1-5", "127.0.0.*", "localhost",
    "0.0.0.0/0", "::/0", "198.18.0.1/33", "", " ", "csv", "json", "jsonl", "table", "xml",
    "out.csv", "out.txt", "out.json", "/", ".",
]  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Target files the fuzzer may name: good, bad, binary, a directory, a missing one."""
    where = tmp_path_factory.mktemp("fuzz-files")
    made = {
        "good.txt": b"127.0.0.1 # loopback\n\n::1\n",
        "bad.txt": b"127.0.0.1\nnot a target!\n",
        "binary.txt": bytes(range(256)),
        "bom.txt": b"\xef\xbb\xbf127.0.0.1\n",
        "empty.txt": b"",
    }
    for name, data in made.items():
        (where / name).write_bytes(data)
    (where / "folder").mkdir()
    names = [*made, "folder", "missing.txt"]
    return {name: str(where / name) for name in names}


@pytest.fixture
def no_scans(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Replace everything that would send a packet or change state with a recorder."""
    calls: list[Any] = []

    def fake_scan(request: Any, env: Any) -> ExitStatus:
        calls.append(request)
        return ExitStatus.SUCCESS

    def refuse(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        raise scanner.registry.RegistryError("not in the fuzzer")

    monkeypatch.setattr(scanner.cli.run, "run_scan", fake_scan)
    monkeypatch.setattr(scanner.registry, "update_registry", refuse)
    monkeypatch.setattr(scanner.registry, "rollback_registry", refuse)
    return calls


def argv_strategy(files: dict[str, str]) -> st.SearchStrategy[list[str]]:
    token = st.one_of(
        st.sampled_from(OPTIONS),
        st.sampled_from(COMMANDS),
        st.sampled_from(VALUES),
        st.sampled_from(sorted(files.values())),
        st.text(max_size=12),
        st.sampled_from(OPTIONS).map(lambda o: o + "=" if o.startswith("--") else o + "1"),
    )
    return st.lists(token, max_size=8)


@settings(
    max_examples=CASES["argv"],
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_random_argv_exits_0_1_or_2_with_one_line(
    data: st.DataObject, files: dict[str, str], no_scans: list[Any], capsys: Any
) -> None:
    argv = data.draw(argv_strategy(files))
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err)
    with pytest.raises(SystemExit) as exit_info:
        main(argv, env)
    code = exit_info.value.code
    assert code in (ExitStatus.SUCCESS, ExitStatus.ERROR, ExitStatus.USAGE), (argv, code)
    captured = capsys.readouterr()  # --help and --version print to the real stdout
    message = err.getvalue() + captured.err
    assert "Traceback" not in message
    if code != ExitStatus.SUCCESS:
        lines = message.splitlines()
        assert len(lines) == 1 and lines[0].startswith("portprobe: error: "), (argv, message)
        assert UNSAFE.search(lines[0]) is None, (argv, lines)


# --------------------------------------------------------------------------- target files


@settings(max_examples=CASES["files"], deadline=None)
@given(content=st.one_of(st.binary(max_size=300), nasty_text.map(str.encode)))
def test_target_files_of_any_bytes_raise_only_target_file_error(
    tmp_path_factory: pytest.TempPathFactory, content: bytes
) -> None:
    path = tmp_path_factory.mktemp("targets") / "t.txt"
    path.write_bytes(content)
    for reader in (read_targets_file, parse_exclude_file):
        try:
            targets = reader(str(path))
        except TargetFileError as exc:
            assert "\n" not in str(exc)
        else:
            assert all(isinstance(t, str) and t.strip() == t and t for t in targets)


# --------------------------------------------------------------------------- decoders


def assert_clean(found: Evidence | None) -> None:
    if found is not None:
        for text in (found.service, found.detail, found.proof):
            assert UNSAFE.search(text) is None, found
        assert len(found.detail) <= DETAIL_LIMIT


HTTP_PREFIXES = [
    b"",
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
    b"HTTP/1.1 301 Moved\r\nLocation: ",
    b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n",
]


@settings(max_examples=CASES["http"], deadline=None)
@given(
    data=st.builds(lambda p, b: p + b, st.sampled_from(HTTP_PREFIXES), st.binary(max_size=400)),
    cuts=st.lists(st.integers(0, 500), max_size=6),
)
def test_http_in_pieces_equals_http_at_once(data: bytes, cuts: list[int]) -> None:
    # The prober feeds the parser what each read returned; the pieces must not matter.
    parser = http.ResponseParser()
    start = 0
    for cut in sorted(set(cuts)):
        parser.feed(data[start:cut])
        start = max(start, cut)
    parser.feed(data[start:])
    parser.close()
    found = parser.evidence()
    assert found == http.parse_response(data)
    assert_clean(found)


def http_response(server: str, title: str, status: int) -> bytes:
    body = f"<html><head><title>{title}</title></head></html>".encode("utf-8", "surrogatepass")
    head = (
        f"HTTP/1.1 {status} X\r\nServer: ".encode()
        + server.encode("latin-1", "replace")
        + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    )
    return head + body


printable_header = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1)


@settings(max_examples=CASES["structured"], deadline=None)
@given(
    server=st.one_of(printable_header, nasty_text),
    title=nasty_text,
    status=st.integers(100, 999),
)
def test_hostile_http_fields_come_out_clean(server: str, title: str, status: int) -> None:
    found = http.parse_response(http_response(server, title, status))
    assert_clean(found)
    if found is not None:
        assert found.service == "http"


@settings(max_examples=CASES["structured"], deadline=None)
@given(
    prefix=st.sampled_from(["220 ", "SSH-2.0-", "+OK ", "* OK ", "200 "]),
    text=nasty_text,
    suffix=st.sampled_from(["", " ESMTP", " FTP", " NNTP"]),
    end=st.sampled_from(["\r\n", "\n", ""]),
)
def test_hostile_greetings_come_out_clean(prefix: str, text: str, suffix: str, end: str) -> None:
    data = (prefix + text + suffix + end).encode("utf-8", "surrogatepass")
    found = banner.classify(data)
    assert found is not None
    assert_clean(found)
    assert banner.settled(data) in (True, False)


@settings(max_examples=CASES["tls"], deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=64),
        st.builds(lambda b: b"\x15\x03" + b, st.binary(max_size=16)),
        st.builds(lambda b: b"\x16\x03" + b, st.binary(max_size=16)),
    )
)
def test_tls_record_sniffing_never_raises(data: bytes) -> None:
    kind = tls.record_kind(data)
    assert kind in (None, "", "alert", "handshake")
    name = tls.parse_alert(data)
    assert name is None or isinstance(name, str)
    found = tls.alert_evidence(data)
    assert_clean(found)


# --------------------------------------------------------------------------- reports

META = ScanMeta(version="0", command=["portprobe"], started=0.0, seed=1, ports="22", hosts=1)


@st.composite
def hostile_results(draw: st.DrawFn) -> Result:
    # Every text field of the assessment (the policy column included) is hostile.
    fields = {field.name: draw(nasty_text) for field in dataclasses.fields(Assessment)}
    return Result(
        "198.18.0.2",
        draw(st.integers(1, 65535)),
        Proto.TCP,
        PortState.OPEN,
        Reason.SYN_ACK,
        draw(st.one_of(st.none(), nasty_text)),
        0.001,
        1,
        1.0,
        Assessment(**fields),
    )


@settings(max_examples=CASES["reports"], deadline=None)
@given(result=hostile_results(), bare=st.booleans(), host=st.one_of(st.just(""), nasty_text))
def test_csv_lines_made_per_assessment_are_what_csv_writes(
    result: Result, bare: bool, host: str
) -> None:
    # The CSV writer keeps each row as text, the assessment's part made once: byte for
    # byte what csv.writer writes for the row (an odd host or name takes the slow path).
    if bare:
        result = result.assessed(None)
    if host:
        result = dataclasses.replace(result, host=host)
    expected = io.StringIO()
    csv.writer(expected, lineterminator="\n").writerow(csv_row(result))
    assert csv_line(result) == expected.getvalue()
    stream = io.StringIO(newline="")
    writer = CsvWriter(stream, META)
    writer.write(result)
    writer.write(dataclasses.replace(result, port=result.port % 65535 + 1))  # tail cached
    writer.close(Ending(finished=2.0, complete=True, summary=Summary()))
    assert expected.getvalue() in stream.getvalue()


@settings(max_examples=CASES["reports"], deadline=None)
@given(result=hostile_results(), bare=st.booleans())
def test_json_records_made_per_assessment_are_json_dumps_of_the_record(
    result: Result, bare: bool
) -> None:
    # The writers join the result's own members to the assessment's text, made once per
    # assessment: byte for byte what json.dumps of the whole record gives.
    if bare:
        result = result.assessed(None)
    made = RecordJson()
    for _ in range(2):  # made, then from the cache
        assert made(result) == json.dumps(result_record(result))
        assert made(result, '{"type": "result", ') == json.dumps(
            {"type": "result", **result_record(result)}
        )


@settings(max_examples=CASES["reports"], deadline=None)
@given(results=st.lists(hostile_results(), min_size=1, max_size=4))
def test_reports_stay_well_formed_and_inert(results: list[Result]) -> None:
    summary = Summary(ports_per_host=1)
    for r in results:
        summary.add(r)
    ending = Ending(finished=2.0, complete=True, summary=summary)
    # CSV: parses back to exactly the cells written, each neutralised.
    stream = io.StringIO(newline="")
    writer = CsvWriter(stream, META)
    for r in results:
        writer.write(r)
    writer.close(ending)
    text = stream.getvalue()
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == list(CSV_COLUMNS) and len(rows) == len(results) + 1
    # One row a line: no cell holds a raw line break, so line tools count rows right.
    assert len(text.splitlines()) == len(rows)
    in_order = sorted(results, key=lambda r: r.port)  # one host and protocol: by port
    for row, r in zip(rows[1:], in_order, strict=True):
        record = result_record(r)
        assert int(row[1]) == r.port
        for column, cell in zip(CSV_COLUMNS, row, strict=True):
            assert not cell.startswith(FORMULA_START), (column, cell)
            assert "\n" not in cell and "\r" not in cell
            if column in ("hostname", *list(CSV_COLUMNS)[9:]):
                assert cell == csv_cell(record[column] or "")
                assert UNSAFE.search(cell) is None, (column, cell)
    # JSON and JSON Lines: parse back to the very same records.
    stream = io.StringIO()
    json_writer = JsonWriter(stream, META)
    for r in results:
        json_writer.write(r)
    json_writer.close(ending)
    assert json.loads(stream.getvalue())["results"] == [result_record(r) for r in results]
    stream = io.StringIO()
    lines_writer = JsonLinesWriter(stream, META)
    for r in results:
        lines_writer.write(r)
    lines_writer.close(ending)
    parsed = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [p["type"] for p in parsed] == ["scan", *["result"] * len(results), "end"]
    # The terminal table: no control character, escape or bidi control gets through.
    table = TableReport(show_all=True)
    for r in results:
        table.add(r)
    shown = io.StringIO()
    table.render(summary, shown)
    assert UNSAFE.search(shown.getvalue().replace("\n", "")) is None


# --------------------------------------------------------------------------- crafted reports

GOOD_SCAN = {
    "type": "scan",
    "schema": 3,
    "portprobe_version": "0.1.0",
    "command": ["portprobe", "198.18.0.2", "-p", "22"],
    "started": "2026-11-23T00:00:00.000Z",
    "seed": 5,
    "shard": "1/1",
    "ports": "22",
    "hosts": 1,
    "registry_date": "2015-07-30",
    "closed_listed": False,
}
GOOD_RESULT = {
    "type": "result",
    "host": "198.18.0.2",
    "port": 22,
    "protocol": "tcp",
    "state": "open",
    "reason": "syn-ack",
    "hostname": None,
    "rtt_ms": 1.0,
    "tries": 1,
    "time": "2026-11-23T00:00:00.000Z",
    "evidence": "ssh",
}
GOOD_END = {"type": "end", "finished": "2026-11-23T00:00:01.000Z", "complete": False}


@st.composite
def iso_times(draw: st.DrawFn) -> str:
    """ISO-8601 times of any year 1-9999 and any offset: the edges move past year 0 or 9999."""
    year = draw(st.sampled_from([1, 2, 1969, 1970, 2026, 9998, 9999]) | st.integers(1, 9999))
    hours = draw(st.integers(-14, 14))
    zone = draw(st.sampled_from(["Z", "", f"{hours:+03d}:00"]))
    return f"{year:04d}-{draw(st.sampled_from(['01-01', '12-31']))}T00:00:00{zone}"


crafted_values = st.one_of(
    st.sampled_from(
        [
            "9" * 5000,
            "1" * 4301,
            "0" * 30 + "22",
            "1/" + "9" * 5000,
            "9" * 5000 + "/" + "9" * 5000,
            "\ud800",
            "a\udfffb",
            "\udbff\udc00",  # a valid pair
            "",
            "-1",
            "1e309",
        ]
    ),
    st.integers(-(10**30), 10**30),
    st.floats(),
    st.booleans(),
    st.none(),
    iso_times(),
    nasty_text,
    st.lists(st.integers(), max_size=2),
)
SCAN_KEYS = ["seed", "shard", "ports", "hosts", "started", "command", "registry_date", "schema"]
RESULT_KEYS = ["port", "tries", "time", "rtt_ms", "hostname", "host", "evidence", "label"]
END_KEYS = ["finished", "complete", "summary"]


@st.composite
def crafted_reports(draw: st.DrawFn) -> bytes:
    """A JSON Lines report with a few fields replaced by crafted values.

    json.dumps writes a lone surrogate as the escape ``\\ud800``, as an attacker would.
    """
    lines = []
    for base, keys in ((GOOD_SCAN, SCAN_KEYS), (GOOD_RESULT, RESULT_KEYS), (GOOD_END, END_KEYS)):
        record = dict(base)
        for key in draw(st.lists(st.sampled_from(keys), max_size=3, unique=True)):
            value = draw(crafted_values)
            record[key] = {"states": {"closed": value}} if key == "summary" else value
        lines.append(json.dumps(record))
    return ("\n".join(lines) + "\n").encode("utf-8")


@settings(max_examples=CASES["crafted"], deadline=None)
@given(data=crafted_reports())
def test_crafted_report_fields_give_a_report_or_one_error(data: bytes) -> None:
    """Read, diff and merge, and write the result in every format: a report or ReportError."""
    from scanner.errors import ReportError
    from scanner.report.diff import DIFF_FORMATS, diff_results, write_diff
    from scanner.report.merge import merge_reports, write_merged
    from scanner.report.read import read_report_bytes

    try:
        report = read_report_bytes(data, "crafted.jsonl")
        merged = merge_reports([("crafted.jsonl", report)])
    except ReportError as exc:
        assert "\n" not in str(exc)
        return
    for fmt in ("table", "csv", "json", "jsonl", "xml"):
        stream = io.StringIO()
        write_merged(merged, fmt, stream, version="0.1.0", command=["portprobe", "merge"])
        stream.getvalue().encode("utf-8")  # a file can hold it
    changes = diff_results([], report.results)
    for fmt in DIFF_FORMATS:
        stream = io.StringIO()
        write_diff(changes, fmt, stream, old="a", new="b")
        stream.getvalue().encode("utf-8")


@settings(max_examples=CASES["crafted"], deadline=None)
@given(data=crafted_reports())
def test_crafted_reports_given_to_resume_give_a_scan_or_one_error(data: bytes) -> None:
    """What --resume takes from a report: checked, or one ReportError line."""
    import tempfile

    from scanner.errors import ReportError
    from scanner.report.resume import load_resumable

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "crafted.jsonl"
        path.write_bytes(data)
        try:
            found = load_resumable(str(path), ("scan", "diff", "merge"))
        except ReportError as exc:
            assert "\n" not in str(exc)
            return
        found.close()  # (it keeps the report open, to read its results again)
    assert 0 <= found.seed < 2**64 and found.command[0] == "portprobe"
    assert all(isinstance(word, str) for word in found.argv)


# --------------------------------------------------------------------------- found by fuzzing


def test_an_error_quoting_control_characters_stays_one_inert_line(no_scans: list[Any]) -> None:
    err = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        main(["-iL", "\x1b[2J\nforged line"], Environment(stdout=io.StringIO(), stderr=err))
    assert exit_info.value.code == ExitStatus.USAGE
    assert err.getvalue() == (
        "portprobe: error: \\x1b[2J\\x0aforged line: cannot read: No such file or directory\n"
    )


def test_no_arguments_prints_help_and_one_error_line() -> None:
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        main([], Environment(stdout=out, stderr=err))
    assert exit_info.value.code == ExitStatus.USAGE
    assert out.getvalue().startswith("Usage: portprobe")
    assert err.getvalue() == "portprobe: error: no command or target given\n"


def test_a_bare_carriage_return_cannot_split_a_csv_row() -> None:
    stream = io.StringIO(newline="")
    writer = CsvWriter(stream, META)
    r = Result("198.18.0.2", 22, Proto.TCP, PortState.OPEN, Reason.SYN_ACK, "a\rb")
    writer.write(r)
    writer.close(Ending(finished=2.0, complete=True, summary=Summary()))
    assert len(stream.getvalue().splitlines()) == 2
    rows = list(csv.reader(io.StringIO(stream.getvalue(), newline="")))
    assert len(rows) == 2 and rows[1][5] == "a\\x0db"


def test_case_budget_is_what_the_readme_quotes() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Reliability", 1)[1].split("\n## ", 1)[0]
    for kind, cases in CASES.items():
        assert f"{cases:,}" in section, kind
