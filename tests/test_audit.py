"""The audit workflow without a network: XML, report readers, diff, merge and policies.

Every result here is made up (lab and loopback addresses); nothing is sent anywhere.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path
from xml.etree import ElementTree
from xml.sax.saxutils import escape, quoteattr

import pytest
from conftest import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanner.cli import Environment, main
from scanner.errors import PolicyError, ReportError
from scanner.models import Assessment, PortState, Proto, Reason, Result
from scanner.policy import parse_policy
from scanner.report import Ending, ScanMeta, Summary, make_writer
from scanner.report.diff import DIFF_COLUMNS, diff_results, write_diff
from scanner.report.merge import merge_reports
from scanner.report.read import Report, read_report_bytes
from scanner.report.xml import xml_text
from scanner.text import escape_controls

ROOT = Path(__file__).resolve().parent.parent

META = ScanMeta(
    version="0.1.0",
    command=["portprobe", "198.18.0.2", "-p", "22,80,81,443"],
    started=1795406400.0,
    seed=7,
    ports="T:1,22-23,81,2451,U:53",  # every port of RESULTS, and 1/tcp (omitted, closed)
    hosts=1,
)


def res(
    port: int,
    state: PortState = PortState.OPEN,
    reason: Reason = Reason.SYN_ACK,
    *,
    host: str = "198.18.0.2",
    protocol: Proto = Proto.TCP,
    hostname: str | None = None,
    assessment: Assessment | None = None,
) -> Result:
    rtt = 0.0015 if state is not PortState.FILTERED else None
    return Result(host, port, protocol, state, reason, hostname, rtt, 1, 1795406400.25, assessment)


SSH = Assessment(
    label="ssh",
    label_description="The Secure Shell (SSH) Protocol",
    range="system",
    attestation="common",
    evidence="ssh",
    evidence_detail="OpenSSH_9.2p1",
    verdict="consistent",
    product="OpenSSH",
    version="9.2p1",
    evidence_probe="banner",
    evidence_rule="ssh:identification",
    evidence_excerpt="SSH-2.0-OpenSSH_9.2p1",
)
HOSTILE = Assessment(
    label="netchat",
    attestation="obscure",
    evidence="http",
    evidence_detail="evil\x00\x1b[31m\x07<b>&amp;</b>\"'\ufffe]]>--",
    verdict="contradicts",
    warning="label is not evidence: 2451/tcp is registered as 'netchat', but it speaks http",
    policy="violation",
)

RESULTS = [
    res(22, assessment=SSH),
    res(81, PortState.FILTERED, Reason.NO_RESPONSE),
    res(2451, assessment=HOSTILE),
    res(53, PortState.OPEN_FILTERED, Reason.NO_RESPONSE, protocol=Proto.UDP),
    res(22, host="2001:db8::2"),
    res(23, PortState.CLOSED, Reason.CONN_REFUSED),
]


# What evidence looks like after scanner.protocols.clean: no characters XML cannot hold.
CLEAN_RESULTS = [
    replace(r, assessment=replace(HOSTILE, evidence_detail="<b>&amp;</b>\"' ]]>--"))
    if r.assessment is HOSTILE
    else r
    for r in RESULTS
]


def written(fmt: str, results: list[Result] = RESULTS, complete: bool = True) -> bytes:
    out = io.StringIO()
    writer = make_writer(fmt, out, META)
    summary = Summary(ports_per_host=4)
    for r in results:
        summary.add(r)
        writer.write(r)
    writer.omit(res(1, PortState.CLOSED, Reason.CONN_REFUSED))
    writer.close(Ending(finished=1795406402.0, complete=complete, summary=summary))
    return out.getvalue().encode("utf-8")


def comparable(results: list[Result]) -> set[tuple[object, ...]]:
    """What every format must keep of a result (times to the millisecond)."""
    return {
        (
            r.host,
            r.protocol,
            r.port,
            r.state,
            r.reason,
            r.hostname,
            None if r.rtt is None else round(r.rtt * 1000, 3),
            r.tries,
            round(r.timestamp, 3),
            r.assessment,
        )
        for r in results
    }


# -- XML -------------------------------------------------------------------------------


def test_xml_is_well_formed_and_nmap_shaped() -> None:
    root = ElementTree.fromstring(written("xml"))
    assert root.tag == "nmaprun" and root.get("xmloutputversion") == "1.05"
    assert root.find("scaninfo").get("type") == "connect"  # type: ignore[union-attr]
    hosts = root.findall("host")
    assert [h.find("address").get("addr") for h in hosts] == ["198.18.0.2", "2001:db8::2"]  # type: ignore[union-attr]
    assert hosts[1].find("address").get("addrtype") == "ipv6"  # type: ignore[union-attr]
    ports = hosts[0].findall("ports/port")
    # 1/tcp was left out as closed, but nmap lists a state of 25 ports or fewer: so do we.
    assert [(p.get("protocol"), p.get("portid")) for p in ports] == [
        ("tcp", "1"),
        ("tcp", "22"),
        ("tcp", "23"),
        ("tcp", "81"),
        ("tcp", "2451"),
        ("udp", "53"),
    ]
    # Left out (omit) but listed, 1/tcp gets its IANA name, as nmap names every port it lists.
    assert ports[0].find("service").attrib == {"name": "tcpmux", "method": "table", "conf": "3"}  # type: ignore[union-attr]
    ports = ports[1:]
    state = ports[0].find("state")
    assert state is not None and (state.get("state"), state.get("reason")) == ("open", "syn-ack")
    service = ports[0].find("service")
    assert service is not None and service.attrib == {
        "name": "ssh",
        "product": "OpenSSH",  # as nmap -sV reports the software
        "version": "9.2p1",
        "extrainfo": "OpenSSH_9.2p1",
        "method": "probed",
        "conf": "10",
        "portprobe_label_description": "The Secure Shell (SSH) Protocol",
        "portprobe_range": "system",
        "portprobe_attestation": "common",
        "portprobe_evidence": "ssh",
        "portprobe_verdict": "consistent",
        "portprobe_evidence_probe": "banner",
        "portprobe_evidence_rule": "ssh:identification",
        "portprobe_evidence_excerpt": "SSH-2.0-OpenSSH_9.2p1",
    }
    assert ports[1].find("service") is None  # closed 23/tcp, no assessment: no label
    assert not root.findall(".//script")  # ndiff 7.93 crashes on script-only differences
    assert ports[4].find("state").get("state") == "open|filtered"  # type: ignore[union-attr]
    assert hosts[0].find("ports/extraports") is None
    finished = root.find("runstats/finished")
    assert finished is not None and finished.get("exit") == "success"


def test_xml_writes_a_host_as_soon_as_every_port_of_it_is_final() -> None:
    out = io.StringIO()
    writer = make_writer("xml", out, META)
    for r in RESULTS:  # every port of 198.18.0.2 but 1/tcp, one of 2001:db8::2's six
        writer.write(r)
    assert "<host" not in out.getvalue()
    writer.omit(res(1, PortState.CLOSED, Reason.CONN_REFUSED))
    assert out.getvalue().count("<host ") == 1 and '"198.18.0.2"' in out.getvalue()
    writer.close(Ending(finished=1795406402.0, complete=False, summary=Summary()))
    root = ElementTree.fromstring(out.getvalue())
    assert [h.find("address").get("addr") for h in root.iter("host")] == [  # type: ignore[union-attr]
        "198.18.0.2",
        "2001:db8::2",
    ]
    assert root.find("runstats/hosts").get("up") == "2"  # type: ignore[union-attr]


def test_xml_of_an_interrupted_scan_is_valid_and_says_error() -> None:
    root = ElementTree.fromstring(written("xml", complete=False))
    finished = root.find("runstats/finished")
    assert finished is not None and finished.get("exit") == "error"
    assert "partial" in finished.get("errormsg", "")


def test_hostile_banner_cannot_break_the_xml() -> None:
    data = written("xml")
    assert b"\x00" not in data and b"\x1b" not in data and b"\x07" not in data
    root = ElementTree.fromstring(data)  # well-formed, no injected element
    assert not root.findall(".//b")
    detail = [e.get("extrainfo") for e in root.iter("service") if e.get("name") == "netchat"]
    assert detail[0] == "evil\\x00\\x1b[31m\\x07<b>&amp;</b>\"'\\ufffe]]>--"


@given(st.text())
def test_xml_text_is_always_xml(text: str) -> None:
    shown = xml_text(text)
    root = ElementTree.fromstring(
        f"<a b={quoteattr(shown)}>{escape(shown, {chr(13): '&#13;'})}</a>"
    )
    assert root.get("b") == shown and (root.text or "") == shown


# -- readers ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl", "xml"])
def test_every_format_reads_back_what_was_written(fmt: str) -> None:
    report = read_report_bytes(written(fmt), f"r.{fmt}")
    assert report.format == fmt
    # Every writer escapes control characters (and XML those XML 1.0 cannot hold): they
    # come back escaped.
    detail = (xml_text if fmt == "xml" else escape_controls)(HOSTILE.evidence_detail)
    want = [
        replace(r, assessment=replace(HOSTILE, evidence_detail=detail))
        if r.assessment is HOSTILE
        else r
        for r in RESULTS
    ]
    if fmt == "xml":
        # The closed 1/tcp left out (omit) is listed: nmap lists up to 25 ports a state.
        closed = res(1, PortState.CLOSED, Reason.CONN_REFUSED)
        want = [*want, replace(closed, rtt=None, assessment=Assessment(label="tcpmux"))]
        report = replace(
            report, results=[replace(r, rtt=None) if r.port == 1 else r for r in report.results]
        )
    assert comparable(report.results) == comparable(want)


@pytest.mark.parametrize("fmt", ["json", "jsonl", "xml"])
@pytest.mark.parametrize("complete", [True, False])
def test_readers_know_whether_the_scan_finished(fmt: str, complete: bool) -> None:
    report = read_report_bytes(written(fmt, complete=complete), fmt)
    assert report.complete is complete
    assert report.meta["seed"] in (7, "7") and report.meta["ports"] == "T:1,22-23,81,2451,U:53"


def test_nmap_xml_reads(tmp_path: Path) -> None:
    nmap = ROOT / "tests" / "data" / "nmap-7.93-sT.xml"
    report = read_report_bytes(nmap.read_bytes(), str(nmap))
    assert {(r.port, r.state.value) for r in report.results} == {
        (22, "open"),
        (80, "open"),
        (81, "filtered"),
        (8080, "open"),
    }
    assert report.results[0].assessment is not None


HEAD = b"host,port,protocol,state,reason,hostname,rtt_ms,tries,time\n"
BAD_REPORTS = [
    (b"", "empty"),
    (b"\xff\xfe", "UTF-8"),
    (b"hello,world\n1,2\n", "not a portprobe report"),
    (HEAD + b"x,1,tcp,open,syn-ack,,,1,\n", "IP address"),
    (HEAD + b"198.18.0.2,0,tcp,open,syn-ack,,,1,\n", "'port'"),
    (HEAD + b"198.18.0.2,22,sctp,open,syn-ack,,,1,\n", "protocol"),
    (HEAD + b"198.18.0.2,22,tcp,opened,syn-ack,,,1,\n", "state"),
    (HEAD + b"198.18.0.2,22,tcp,open,syn-ack\n", "cells"),
    (b'{"results": [{"host": "198.18.0.2"}]}', "result 1"),
    (b'{"results": 5}', "results"),
    (b"[" * 100000, "not a portprobe report"),
    (b'{"type": "scan"}\n{"type": "result", "port": true}\n', ":2"),
    (b'{"type": "scan"}\n{"type": "bogus"}\n', "record type"),
    (b"<nmaprun><host><ports><port portid='22'/></ports></host></nmaprun>", "address"),
    (b'<!DOCTYPE x [<!ENTITY a "aaaa">]><nmaprun>&a;</nmaprun>', "entity"),
    (b"<nmaprun><host>", "bad XML"),
    (b"<html/>", "nmaprun"),
]


@pytest.mark.parametrize(("data", "needle"), BAD_REPORTS, ids=[n for _, n in BAD_REPORTS])
def test_a_bad_report_is_one_line_naming_the_file(data: bytes, needle: str) -> None:
    with pytest.raises(ReportError) as info:
        read_report_bytes(data, "old.json")
    message = str(info.value)
    assert message.startswith("old.json") and "\n" not in message
    assert needle.lower() in message.lower()


@given(st.binary(max_size=2000))
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_any_bytes_give_a_report_or_a_one_line_report_error(data: bytes) -> None:
    try:
        read_report_bytes(data, "fuzz")
    except ReportError as exc:
        assert "\n" not in str(exc)


# Valid-looking prefixes make hypothesis explore past the format sniffing.
_PREFIXES = [
    b"host,port,protocol,state,reason,hostname,rtt_ms,tries,time\n",
    b'{"type": "scan", "seed": 1}\n{"type": "result", ',
    b'{"scan": {}, "results": [{"host": "198.18.0.2", "port": ',
    b"<?xml version='1.0'?><nmaprun><host><address addr='198.18.0.2'/><ports><port ",
]


@given(st.sampled_from(_PREFIXES), st.binary(max_size=300))
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_damaged_reports_give_one_line_errors(prefix: bytes, tail: bytes) -> None:
    try:
        read_report_bytes(prefix + tail, "fuzz")
    except ReportError as exc:
        assert "\n" not in str(exc)


# Evidence reaches a writer cleaned of control characters (scanner.protocols.clean).
_CLEAN_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")))


@given(st.lists(st.tuples(st.integers(1, 65535), st.sampled_from(list(PortState)), _CLEAN_TEXT)))
@settings(max_examples=100)
def test_any_results_round_trip_through_every_format(
    rows: list[tuple[int, PortState, str]],
) -> None:
    results = [
        res(port, state, assessment=Assessment(label="x", evidence_detail=text))
        for port, state, text in {(p, s, t) for p, s, t in rows}
    ]
    unique = [r for r in {(r.port): r for r in results}.values() if r.port != 1]
    for fmt in ("csv", "json", "jsonl", "xml"):
        report = read_report_bytes(written(fmt, unique), fmt)
        # XML folds a state of more than 25 ports: closed ones are told by the coverage.
        back = {(r.port, r.state) for r in report.results} | {
            (port.number, state)
            for port, state in report.coverage.unlisted.get("198.18.0.2", {}).items()
        }
        back.discard((1, PortState.CLOSED))  # written() leaves out 1/tcp as closed
        assert back == {(r.port, r.state) for r in unique}


# -- diff ------------------------------------------------------------------------------


def test_diff_kinds_keyed_on_host_protocol_and_port() -> None:
    old = [
        res(22, assessment=SSH),
        res(80),
        res(53, PortState.OPEN, Reason.UDP_RESPONSE, protocol=Proto.UDP),
        res(81, PortState.FILTERED, Reason.NO_RESPONSE),
        res(443),
    ]
    new = [
        res(22, assessment=replace(SSH, evidence="http", verdict="contradicts")),
        res(53, PortState.OPEN, Reason.SYN_ACK),  # 53/tcp is a different port from 53/udp
        res(81, PortState.CLOSED, Reason.CONN_REFUSED),
        res(443, PortState.FILTERED, Reason.NO_RESPONSE),
        res(22, host="2001:db8::2"),
    ]
    changes = diff_results(old, new)
    got = [(c.change, c.host, c.port, c.protocol, c.old_state, c.new_state) for c in changes]
    assert got == [
        ("opened", "198.18.0.2", 53, "tcp", "closed", "open"),
        ("opened", "2001:db8::2", 22, "tcp", "closed", "open"),
        ("closed", "198.18.0.2", 80, "tcp", "open", "closed"),
        ("closed", "198.18.0.2", 443, "tcp", "open", "filtered"),
        ("closed", "198.18.0.2", 53, "udp", "open", "closed"),
        ("changed", "198.18.0.2", 22, "tcp", "open", "open"),
        ("state", "198.18.0.2", 81, "tcp", "filtered", "closed"),
    ]
    assert changes[5].detail == "evidence: ssh -> http; verdict: consistent -> contradicts"


def test_no_change_is_no_change() -> None:
    assert diff_results(RESULTS, list(reversed(RESULTS))) == []


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_diff_formats(fmt: str) -> None:
    changes = diff_results([res(22)], [res(22, PortState.CLOSED, Reason.CONN_REFUSED), res(80)])
    out = io.StringIO()
    write_diff(changes, fmt, out, old="a.json", new="b.json")
    text = out.getvalue()
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(text)))
        assert tuple(rows[0]) == DIFF_COLUMNS and len(rows) == 3
    elif fmt == "json":
        doc = json.loads(text)
        assert doc["changed"] is True
        assert [(c["change"], c["port"]) for c in doc["changes"]] == [
            ("opened", 80),
            ("closed", 22),
        ]
    else:
        assert "opened" in text and "1 opened, 1 closed" in text


# -- merge -----------------------------------------------------------------------------


def shard_report(results: list[Result], shard: str, seed: int = 7) -> Report:
    meta = {"seed": seed, "ports": "22,80", "shard": shard, "hosts": 1, "closed_listed": True}
    return Report("json", results, meta, {}, True)


def test_merge_joins_disjoint_shards_in_order() -> None:
    merged = merge_reports(
        [("b", shard_report([res(80)], "2/2")), ("a", shard_report([res(22)], "1/2"))]
    )
    assert [r.port for r in merged.results()] == [22, 80]
    assert merged.complete and merged.shards == "1/2,2/2" and not merged.missing


@pytest.mark.parametrize(
    ("reports", "needle"),
    [
        ([("a", shard_report([res(22)], "1/2")), ("b", shard_report([res(22)], "2/2"))], "overlap"),
        ([("a", shard_report([res(22)], "1/2")), ("b", shard_report([res(80)], "2/2", 8))], "seed"),
        (
            [("a", shard_report([res(22)], "1/2")), ("b", shard_report([res(80)], "1/2"))],
            "both shard",
        ),
        (
            [("a", shard_report([res(22)], "1/2")), ("b", shard_report([res(80)], "2/3"))],
            "differently",
        ),
        ([("a", shard_report([res(22)], "3/2"))], "bad shard"),
    ],
)
def test_merge_refuses_what_is_not_one_scan(reports: list[tuple[str, Report]], needle: str) -> None:
    with pytest.raises(ReportError, match=needle):
        merge_reports(reports)


def test_merge_with_a_shard_missing_is_incomplete() -> None:
    merged = merge_reports([("a", shard_report([res(22)], "1/3"))])
    assert not merged.complete and merged.missing == "shards 2/3, 3/3 missing"


# -- policies --------------------------------------------------------------------------

POLICY = """
# the lab's allowed services
198.18.0.2        22, 80, 443        # ssh and web
198.18.0.0/24     53/udp 123/udp
198.18.0.10-20    8000-8100/tcp
2001:db8::/64     22
*                 7/udp
"""


@pytest.mark.parametrize(
    ("host", "protocol", "port", "allowed"),
    [
        ("198.18.0.2", Proto.TCP, 22, True),
        ("198.18.0.2", Proto.UDP, 22, False),  # a TCP rule does not allow UDP
        ("198.18.0.2", Proto.TCP, 8080, False),
        ("198.18.0.3", Proto.TCP, 22, False),
        ("198.18.0.99", Proto.UDP, 123, True),
        ("198.18.1.1", Proto.UDP, 53, False),
        ("198.18.0.15", Proto.TCP, 8050, True),
        ("198.18.0.21", Proto.TCP, 8050, False),
        ("2001:db8::9", Proto.TCP, 22, True),
        ("2001:db8:1::9", Proto.TCP, 22, False),
        ("127.0.0.1", Proto.UDP, 7, True),
    ],
)
def test_policy_rules(host: str, protocol: Proto, port: int, allowed: bool) -> None:
    assert parse_policy(POLICY).allows(host, protocol, port) is allowed


def test_policy_marks_only_open_ports() -> None:
    policy = parse_policy("198.18.0.2 22")
    assert policy.mark(res(22)).assessment == Assessment(policy="allowed")
    assert policy.mark(res(80)).assessment == Assessment(policy="violation")
    closed = res(80, PortState.CLOSED, Reason.CONN_REFUSED)
    assert policy.mark(closed) is closed


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "no rules"),
        ("# nothing\n", "no rules"),
        ("198.18.0.2\n", ":1: no ports"),
        ("\n198.18.0.300 22\n", ":2:"),
        ("198.18.0.2 22/sctp\n", "protocol"),
        ("198.18.0.2 0\n", "out of range"),
        ("198.18.0.2 5-1\n", "reversed"),
        ("lab.test 22\n", "host names"),
    ],
)
def test_bad_policy_is_one_line_naming_the_line(text: str, needle: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.txt")
    assert str(info.value).startswith("p.txt") and needle in str(info.value)
    assert "\n" not in str(info.value)


@given(st.text(max_size=300))
@settings(max_examples=300)
def test_any_policy_text_gives_a_policy_or_one_line_of_error(text: str) -> None:
    try:
        parse_policy(text, "p.txt")
    except PolicyError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("p.txt")


@given(
    st.lists(
        st.sampled_from(
            [
                "198.18.0.2",
                "198.18.0.0/30",
                "*",
                "2001:db8::/126",
                "22",
                "80-90/tcp",
                "53/udp",
                ",",
                " ",
                "\n",
                "#",
                "/",
                "-",
            ]
        ),
        max_size=12,
    )
)
@settings(max_examples=300)
def test_policy_like_text_gives_a_policy_or_one_line_of_error(words: list[str]) -> None:
    try:
        parse_policy(" ".join(words), "p.txt")
    except PolicyError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("p.txt")


def test_shipped_policy_example_parses_and_uses_only_lab_addresses() -> None:
    text = (ROOT / "policy.example.txt").read_text()
    policy = parse_policy(text, "policy.example.txt")
    for rule in policy.rules:
        for first, last in rule.intervals:
            if rule.family == 2:  # AF_INET: inside 198.18.0.0/15 or 127.0.0.0/8
                assert (0xC6120000 <= first <= last <= 0xC613FFFF) or (
                    0x7F000000 <= first <= last <= 0x7FFFFFFF
                )
            else:  # inside 2001:db8::/32 or ::1
                assert first >> 96 == 0x20010DB8 or first == last == 1


# -- the command line (no network: bad input is refused before any probe) --------------


@given(st.binary(max_size=500))
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_diff_of_any_bytes_exits_2_with_one_line(tmp_path: Path, data: bytes) -> None:
    bad, good = tmp_path / "bad.json", tmp_path / "good.json"
    bad.write_bytes(data)
    good.write_bytes(written("json"))
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        main(["diff", str(good), str(bad)], Environment(stdout=out, stderr=err))
    if exit_info.value.code == 2:
        assert err.getvalue().count("\n") == 1 and out.getvalue() == ""
        assert err.getvalue().startswith("portprobe: error: ")
    else:  # the bytes happened to be a report
        assert exit_info.value.code in (0, 1) and err.getvalue() == ""


def test_diff_command_exit_codes_and_formats(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_bytes(written("json", CLEAN_RESULTS))
    (tmp_path / "b.xml").write_bytes(written("xml", CLEAN_RESULTS))
    (tmp_path / "c.csv").write_bytes(written("csv", CLEAN_RESULTS[:2]))
    # 2451/tcp now closed, and said so; everything else as before.
    closed = [
        replace(r, state=PortState.CLOSED, reason=Reason.CONN_REFUSED, assessment=None)
        if r.port == 2451
        else r
        for r in CLEAN_RESULTS
    ]
    (tmp_path / "d.jsonl").write_bytes(written("jsonl", closed))
    same = run_cli("diff", "a.json", "b.xml", cwd=tmp_path)
    assert same.returncode == 0 and "No changes" in same.stdout, same.stderr
    # CSV records nothing of what was probed: only its listed ports compare, no false alarm.
    partial = run_cli("diff", "a.json", "c.csv", "--format", "json", cwd=tmp_path)
    assert partial.returncode == 0, partial.stderr
    assert json.loads(partial.stdout)["changes"] == []
    assert "c.csv does not record what its scan probed" in partial.stderr
    changed = run_cli("diff", "a.json", "d.jsonl", "--format", "json", cwd=tmp_path)
    assert changed.returncode == 1, changed.stderr
    doc = json.loads(changed.stdout)
    assert {(c["change"], c["port"], c["protocol"]) for c in doc["changes"]} == {
        ("closed", 2451, "tcp"),
    }
    assert doc["compared"] == 7 and doc["not_compared"] == 0


def test_merge_command_writes_one_report(tmp_path: Path) -> None:
    first = written("jsonl", CLEAN_RESULTS[:3])
    second = written("json", CLEAN_RESULTS[3:])
    (tmp_path / "1.jsonl").write_bytes(first)
    (tmp_path / "2.json").write_bytes(second)
    proc = run_cli("merge", "1.jsonl", "2.json", "-o", "all.xml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    merged = read_report_bytes((tmp_path / "all.xml").read_bytes(), "all.xml")
    # Both inputs left 1/tcp out as closed; XML lists a state of 25 ports or fewer, as nmap.
    (one,) = [r for r in merged.results if r.port == 1]
    assert (one.state, one.reason) == (PortState.CLOSED, Reason.CONN_REFUSED)
    listed = [r for r in merged.results if r.port != 1]
    assert comparable(listed) == comparable(CLEAN_RESULTS)


CLI_BAD = [
    (["diff", "missing.json", "a.json"], "missing.json"),
    (["diff", "a.json", "garbage.txt"], "garbage.txt"),
    (["diff", "a.json", "a.json", "--format", "xml"], "--format"),
    (["merge", "a.json", "a.json", "-o", "m.json"], "overlap"),
    (["merge", "a.json", "-o", "m.xlsx"], "--format"),
    (["127.0.0.1", "-p", "22", "--expect", "nope.txt"], "nope.txt"),
    (["127.0.0.1", "-p", "22", "--expect", "garbage.txt"], "garbage.txt:1"),
    (["127.0.0.1", "-p", "22", "--shard", "2/2"], "--seed"),
    (["127.0.0.1", "-p", "22", "--shard", "3/2", "--seed", "1"], "--shard"),
    (["127.0.0.1", "-p", "22", "--shard", "0/2", "--seed", "1"], "--shard"),
    (["127.0.0.1", "-p", "22", "--shard", "half", "--seed", "1"], "--shard"),
    # Several reports are fine (nmap's -oX and -oN together); two on stdout are not.
    (["127.0.0.1", "-p", "22", "-oX", "-", "-oG", "-"], "standard output"),
    (["127.0.0.1", "-p", "22", "-oA", "-"], "-oA"),
    (["127.0.0.1", "-p", "22", "-oX", "x.xml", "-oA", "x"], "same file"),
    (["--resume", "a.json", "-p", "80"], "no other options"),
    (["--resume", "a.json"], "finished"),
    (["--resume", "b.xml"], "JSON"),
    (["--resume", "garbage.txt"], "garbage.txt"),
]


@pytest.mark.parametrize(("argv", "needle"), CLI_BAD, ids=[" ".join(a) for a, _ in CLI_BAD])
def test_bad_audit_input_is_one_line_and_exit_2(
    argv: list[str], needle: str, tmp_path: Path
) -> None:
    (tmp_path / "a.json").write_bytes(written("json"))
    (tmp_path / "b.xml").write_bytes(written("xml", complete=False))
    (tmp_path / "garbage.txt").write_bytes(b"\x00\x01 not a report\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = run_cli(*argv, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("portprobe: error: "), proc.stderr
    assert needle.lower() in lines[0].lower()
    assert proc.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before
