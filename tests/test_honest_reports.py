"""Reports that never cry wolf: what was probed, honest diffs, nmap's folding, sorted CSV.

Every result here is made up (lab addresses); nothing is sent anywhere.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from xml.etree import ElementTree

import pytest
from conftest import run_cli
from hypothesis import given
from hypothesis import strategies as st

from scanner.models import Assessment, PortState, Proto, Reason, Result
from scanner.ports import parse_port_spec
from scanner.report import Ending, ScanMeta, Summary, make_writer
from scanner.report.diff import diff_reports, write_diff
from scanner.report.merge import merge_reports, write_merged
from scanner.report.probed import Coverage
from scanner.report.read import Report, read_report_bytes

HOST = "198.18.0.2"


def res(
    port: int,
    state: PortState = PortState.OPEN,
    *,
    host: str = HOST,
    protocol: Proto = Proto.TCP,
    label: str = "",
) -> Result:
    reason = {
        PortState.OPEN: Reason.SYN_ACK,
        PortState.CLOSED: Reason.CONN_REFUSED,
        PortState.FILTERED: Reason.NO_RESPONSE,
        PortState.OPEN_FILTERED: Reason.NO_RESPONSE,
        PortState.CLOSED_FILTERED: Reason.NO_RESPONSE,
    }[state]
    assessment = Assessment(label=label) if label else None
    return Result(host, port, protocol, state, reason, None, None, 1, 1795406400.0, assessment)


def report(
    fmt: str,
    results: Sequence[Result],
    *,
    ports: str,
    hosts: Sequence[str] = (HOST,),
    stop_after: int | None = None,
    shard: str = "1/1",
    show_all: bool = False,
    verbose: int = 0,
) -> bytes:
    """The report a scan of ``hosts`` x ``ports`` writes, given the states of the ports in
    ``results`` (every other port closed). ``stop_after`` cuts the scan short after that
    many results, as an interruption does."""
    by_key = {(r.host, r.protocol, r.port): r for r in results}
    every = [
        by_key.get(
            (h, p.protocol, p.number), res(p.number, PortState.CLOSED, host=h, protocol=p.protocol)
        )
        for h in hosts
        for p in parse_port_spec(ports)
    ]
    if stop_after is not None:
        every = every[:stop_after]
    meta = ScanMeta(
        version="0.1.0",
        command=["portprobe", *hosts, "-p", ports],
        started=1795406400.0,
        seed=7,
        ports=ports,
        hosts=len(hosts),
        shard=shard,
        closed_listed=show_all,
        extra={"verbose": verbose} if verbose else {},
    )
    out = io.StringIO()
    writer = make_writer(fmt, out, meta)
    summary = Summary(ports_per_host=len(parse_port_spec(ports)))
    for r in every:
        summary.add(r)
        if show_all or r.state is not PortState.CLOSED:
            writer.write(r)
        else:
            writer.omit(r)
    complete = stop_after is None
    writer.close(Ending(finished=1795406401.0, complete=complete, summary=summary))
    return out.getvalue().encode()


def read(data: bytes, name: str = "r") -> Report:
    return read_report_bytes(data, name)


def kinds(old: Report, new: Report) -> list[tuple[str, int, str, str]]:
    diff = diff_reports(old, new, old_name="old", new_name="new")
    return [(c.change, c.port, c.old_state, c.new_state) for c in diff.changes]


FORMATS = ["json", "jsonl", "xml"]


# -- what a report says it probed -----------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_port_closed_since_is_closed(fmt: str) -> None:
    old = read(report(fmt, [res(22), res(80)], ports="20-90"))
    new = read(report(fmt, [res(80)], ports="20-90"))
    assert kinds(old, new) == [("closed", 22, "open", "closed")]
    diff = diff_reports(old, new, old_name="old", new_name="new")
    assert diff.common == "20-90 on 1 host" and diff.compared == 71
    assert diff.warnings == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_port_the_partial_new_scan_never_probed_is_not_closed(fmt: str) -> None:
    old = read(report(fmt, [res(22), res(80)], ports="20-90"))
    # Interrupted after 40 results: 20-59 probed; 80 never was.
    new = read(report(fmt, [res(22)], ports="20-90", stop_after=40))
    assert new.complete is False
    diff = diff_reports(old, new, old_name="old.json", new_name="new.json")
    assert diff.changes == []
    assert diff.compared == 40 and diff.not_compared == 1
    assert any("new.json is partial" in w for w in diff.warnings)


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_interrupted_scan_still_tells_closed_from_unprobed(fmt: str) -> None:
    old = read(report(fmt, [res(22), res(80)], ports="20-90"))
    new = read(report(fmt, [], ports="20-90", stop_after=40))  # 22 closed now; 80 unknown
    assert kinds(old, new) == [("closed", 22, "open", "closed")]


@pytest.mark.parametrize("fmt", FORMATS)
def test_different_port_lists_compare_only_the_common_ports(fmt: str) -> None:
    old = read(report(fmt, [res(22), res(80), res(443)], ports="22,80,443"))
    new = read(report(fmt, [res(80), res(8080)], ports="80,8080"))
    diff = diff_reports(old, new, old_name="old", new_name="new")
    assert diff.changes == []  # 22 and 443 were not probed by new; 8080 not by old
    assert diff.common == "80 on 1 host" and diff.compared == 1 and diff.not_compared == 3
    assert any("the port lists differ (old: 22,80,443; new: 80,8080)" in w for w in diff.warnings)


@pytest.mark.parametrize("fmt", FORMATS)
def test_hosts_the_other_scan_did_not_probe_are_not_compared(fmt: str) -> None:
    other = "198.18.0.3"
    old = read(report(fmt, [res(22), res(22, host=other)], ports="22,80", hosts=[HOST, other]))
    new = read(report(fmt, [], ports="22,80", hosts=[HOST]))
    assert kinds(old, new) == [("closed", 22, "open", "closed")]  # on HOST only


def test_csv_records_nothing_so_only_listed_ports_compare() -> None:
    old = read(report("json", [res(22), res(80)], ports="20-90"))
    new = read(report("csv", [res(80, PortState.FILTERED)], ports="20-90"), "new.csv")
    diff = diff_reports(old, new, old_name="old", new_name="new.csv")
    assert [(c.change, c.port) for c in diff.changes] == [("closed", 80)]  # open -> filtered
    assert any("new.csv does not record what its scan probed" in w for w in diff.warnings)


@pytest.mark.parametrize(("a", "b"), [("json", "xml"), ("xml", "jsonl"), ("jsonl", "json")])
def test_formats_compare_with_each_other(a: str, b: str) -> None:
    results = [res(22), *(res(p, PortState.FILTERED) for p in range(100, 130))]
    old = read(report(a, results, ports="1-200"))
    new = read(report(b, [res(22), res(23)], ports="1-200"))
    changed = kinds(old, new)
    assert ("opened", 23, "closed", "open") in changed
    assert sorted(p for kind, p, *_ in changed if kind == "state") == list(range(100, 130))
    assert len(changed) == 31


# -- the command line: exit 1 only for real changes -------------------------------------


def test_write_diff_json_names_the_common_set() -> None:
    old = read(report("json", [res(22), res(443)], ports="22,443"))
    new = read(report("json", [], ports="22"))
    out = io.StringIO()
    write_diff(diff_reports(old, new, old_name="a", new_name="b"), "json", out, old="a", new="b")
    doc = json.loads(out.getvalue())
    assert doc["common"] == "22 on 1 host" and doc["compared"] == 1
    assert doc["not_compared"] == 1 and doc["changed"] is True
    assert [(c["change"], c["port"]) for c in doc["changes"]] == [("closed", 22)]


# -- nmap's XML folding -------------------------------------------------------------------


def xml_ports(data: bytes) -> tuple[list[tuple[str, str]], list[tuple[str, str, list[str]]]]:
    """The listed (port, state) and the extraports (state, count, reasons) of one host."""
    host = ElementTree.fromstring(data).find("host")
    assert host is not None
    listed = [
        (p.get("portid", ""), p.find("state").get("state", ""))  # type: ignore[union-attr]
        for p in host.iter("port")
    ]
    extra = [
        (
            e.get("state", ""),
            e.get("count", ""),
            [
                f"{r.get('reason')}:{r.get('count')}:{r.get('ports')}"
                for r in e.iter("extrareasons")
            ],
        )
        for e in host.iter("extraports")
    ]
    return listed, extra


FOLDING = [
    # (filtered ports, closed ports of 1-100, verbose, listed filtered, folded states)
    (25, 74, 0, 25, [("closed", "74")]),
    (26, 73, 0, 0, [("closed", "73"), ("filtered", "26")]),
    (50, 49, 0, 0, [("filtered", "50"), ("closed", "49")]),
    (26, 73, 2, 26, [("closed", "73")]),  # -vv lists up to 50
    (51, 48, 2, 0, [("filtered", "51")]),  # 48 closed listed at -vv
]


@pytest.mark.parametrize(("filtered", "closed", "verbose", "listed", "folded"), FOLDING)
def test_xml_folds_a_state_of_more_than_25_ports_as_nmap_does(
    filtered: int, closed: int, verbose: int, listed: int, folded: list[tuple[str, str]]
) -> None:
    results = [res(1), *(res(p, PortState.FILTERED) for p in range(2, 2 + filtered))]
    assert 1 + filtered + closed == 100
    ports, extra = xml_ports(report("xml", results, ports="1-100", verbose=verbose))
    assert [(state, count) for state, count, _ in extra] == folded
    assert sum(state == "filtered" for _, state in ports) == listed
    assert ("1", "open") in ports  # open is never folded
    shown_closed = sum(state == "closed" for _, state in ports)
    assert shown_closed == (closed if all(s != "closed" for s, *_ in folded) else 0)
    for _state, count, reasons in extra:
        # nmap 7.92's form: each reason names its ports, which parse back to the count.
        assert sum(int(r.split(":")[1]) for r in reasons) == int(count)


def test_xml_reads_back_folded_ports() -> None:
    results = [res(1), *(res(p, PortState.FILTERED) for p in range(2, 40))]
    back = read(report("xml", results, ports="1-100"))
    assert sorted(r.port for r in back.results if r.state is PortState.FILTERED) == list(
        range(2, 40)
    )
    assert len(back.coverage.unlisted[HOST]) == 61  # the closed ones


def test_merged_shards_get_the_whole_scans_extraports() -> None:
    results = [res(22), res(80), *(res(p, PortState.FILTERED) for p in range(100, 130))]
    whole = report("xml", results, ports="1-200")
    pieces = []
    for k in (1, 2):
        # Shards split host x port: here, the even and the odd ports.
        mine = [r for r in results if r.port % 2 == k - 1]
        ports = ",".join(str(p) for p in range(1, 201) if p % 2 == k - 1)
        data = report("xml", mine, ports=ports, shard=f"{k}/2")
        # Shards of one scan record the scan's port list.
        data = data.replace(b'services="' + ports.encode(), b'services="1-200')
        pieces.append((f"{k}.xml", read(data)))
    out = io.StringIO()
    write_merged(merge_reports(pieces), "xml", out, version="0.1.0", command=["portprobe"])
    assert xml_ports(out.getvalue().encode()) == xml_ports(whole)


# -- CSV ------------------------------------------------------------------------------------


def test_csv_rows_are_sorted_and_one_a_line() -> None:
    hosts = ["198.18.0.10", "198.18.0.9", "2001:db8::1", "198.18.0.100"]
    results = [
        res(p, host=h, protocol=proto, label="a\nb\r\nc\u2028d")
        for h in hosts
        for proto in (Proto.UDP, Proto.TCP)
        for p in (443, 22, 1000)
    ]
    results.reverse()
    text = report("csv", results, ports="T:22,443,1000,U:22,443,1000", hosts=hosts).decode()
    lines = text.splitlines()
    rows = list(csv.reader(io.StringIO(text)))
    assert len(lines) == len(rows) == 1 + 24
    order = [(r[0], r[2], int(r[1])) for r in rows[1:]]
    hosts_sorted = ["198.18.0.9", "198.18.0.10", "198.18.0.100", "2001:db8::1"]
    assert order == [
        (h, proto, p) for h in hosts_sorted for proto in ("tcp", "udp") for p in (22, 443, 1000)
    ]
    assert {r[9] for r in rows[1:]} == {"a\\x0ab\\x0d\\x0ac\\u2028d"}


# -- a report is untrusted: any probed record reads, or is no record ----------------------

_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(_JSONISH)
def test_any_probed_record_reads_or_is_ignored(record: object) -> None:
    coverage = Coverage.from_record(record, None)
    assert isinstance(coverage.exact, bool)
    for key in coverage.unlisted_keys():
        assert key[1] in ("tcp", "udp")


@given(
    st.dictionaries(
        st.text(max_size=40),
        st.dictionaries(st.text(max_size=20), st.text(max_size=30), max_size=3),
        max_size=3,
    )
)
def test_any_unlisted_map_reads_or_is_ignored(unlisted: dict[str, dict[str, str]]) -> None:
    Coverage.from_record({"complete_hosts": ["198.18.0.0/30"], "unlisted": unlisted}, None)


def test_diff_command_exits_0_for_a_partial_scan_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "old.json").write_bytes(report("json", [res(22), res(80)], ports="20-90"))
    (tmp_path / "new.json").write_bytes(report("json", [res(22)], ports="20-90", stop_after=40))
    proc = run_cli("diff", "old.json", "new.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout + proc.stderr
    assert "closed" not in text.replace("(its scan was cut short)", "")
    assert "new.json is partial" in text and "Compared 40 ports: 20-90 on 1 host" in text
