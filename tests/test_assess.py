"""The results layer: labels, verdicts, warnings; the port card; local listeners; the CLI."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import socket
from pathlib import Path
from typing import Any

import netlab
import pytest
from conftest import portprobe

from scanner.assess import WARNING_PREFIX, Assessor, check_command, customary_for, verdict
from scanner.cli import Environment, main
from scanner.evidence import Evidence
from scanner.localinfo import Listener, listeners
from scanner.models import Assessment, Attestation, PortState, Proto, Reason, Result, Verdict
from scanner.portcard import build_card
from scanner.registry import Registry, attestation, load_registry, parse_registry_csv
from scanner.registry.customary import CustomaryUse, customary_uses
from scanner.report.explain import explain_lines, stale_note

HTTP = Evidence("http", "lab-http/1.0; 200; title 'lab page'", "http")
SSH = Evidence("ssh", "OpenSSH_9.2p1 Debian-2", "banner")
TLS = Evidence("https", "TLSv1.3; CN=lab.test", "tls+http")
NOTHING = Evidence("", "", "")


UNNAMED = Evidence("", "SSH-like hello", "banner", excerpt="HELLO 1.0")
DNS = Evidence("dns", "NOERROR; aa", "dns")
C, U = Attestation.COMMON, Attestation.UNASSIGNED
OBS, R, D = Attestation.OBSCURE, Attestation.RESERVED, Attestation.DYNAMIC


@pytest.mark.parametrize(
    ("labels", "attest", "evidence", "uses", "expected"),
    [
        # consistent: the evidence is what one of the registered names says
        (["http", "www", "www-http"], C, HTTP, (), Verdict.CONSISTENT),
        (["ssh"], C, SSH, (), Verdict.CONSISTENT),
        (["https"], C, TLS, (), Verdict.CONSISTENT),
        (["http-alt"], C, HTTP, (), Verdict.CONSISTENT),
        (["urd", "submissions"], C, Evidence("smtp", "ESMTP", "banner"), (), Verdict.CONSISTENT),
        (["domain-s"], OBS, Evidence("tls", "TLSv1.3", "tls"), (), Verdict.CONSISTENT),
        (["domain"], C, DNS, (), Verdict.CONSISTENT),
        (["isakmp"], C, Evidence("ike", "IKEv2; IKE_SA_INIT", "ike"), (), Verdict.CONSISTENT),
        (["sunrpc"], C, Evidence("rpcbind", "portmapper v2", "rpc"), (), Verdict.CONSISTENT),
        (["memcache"], C, Evidence("memcached", "1.6.21", "memcached"), (), Verdict.CONSISTENT),
        (["ntp"], C, Evidence("ntp", "v4; server; stratum 2", "ntp"), (), Verdict.CONSISTENT),
        # customary: a documented unofficial use, or anything on a free dynamic port
        (["irdmi"], C, HTTP, customary_uses(8000, "tcp"), Verdict.CUSTOMARY),
        (["EtherNet-IP-1"], C, SSH, customary_uses(2222, "tcp"), Verdict.CUSTOMARY),
        ([], U, TLS, customary_uses(10250, "tcp"), Verdict.CUSTOMARY),
        ([], D, HTTP, customary_for(50000, "tcp", D), Verdict.CUSTOMARY),
        # contradicts: something else
        (["netchat"], OBS, HTTP, (), Verdict.CONTRADICTS),
        (["ssh"], C, HTTP, (), Verdict.CONTRADICTS),
        (["irdmi"], C, SSH, customary_uses(8000, "tcp"), Verdict.CONTRADICTS),
        (["domain"], C, Evidence("echo", "echoed our datagram", "echo"), (), Verdict.CONTRADICTS),
        ([], U, HTTP, (), Verdict.CONTRADICTS),
        ([], R, SSH, (), Verdict.CONTRADICTS),
        # unrecognised: it answered, nothing could name it
        (["netchat"], OBS, UNNAMED, (), Verdict.UNRECOGNISED),
        (["http"], C, UNNAMED, (), Verdict.UNRECOGNISED),
        ([], D, UNNAMED, customary_for(50000, "tcp", D), Verdict.UNRECOGNISED),
        # unverified: nothing seen
        (["asam"], OBS, NOTHING, (), Verdict.UNVERIFIED),
        (["asam"], OBS, None, (), Verdict.UNVERIFIED),
        ([], U, NOTHING, (), Verdict.UNVERIFIED),
        ([], D, None, customary_for(50000, "tcp", D), Verdict.UNVERIFIED),
    ],
)
def test_verdict_table(
    labels: list[str],
    attest: Attestation,
    evidence: Evidence | None,
    uses: tuple[CustomaryUse, ...],
    expected: Verdict,
) -> None:
    assert verdict(labels, attest, evidence, uses) is expected


@pytest.mark.parametrize(
    ("verdict_", "attest", "alarm"),
    [
        (Verdict.CONTRADICTS, C, True),
        (Verdict.CONTRADICTS, D, True),
        (Verdict.UNRECOGNISED, OBS, True),
        (Verdict.UNRECOGNISED, U, True),
        (Verdict.UNRECOGNISED, R, True),
        (Verdict.UNRECOGNISED, C, False),
        (Verdict.UNRECOGNISED, D, False),
        (Verdict.CUSTOMARY, OBS, False),
        (Verdict.CUSTOMARY, U, False),
        (Verdict.CONSISTENT, OBS, False),
        (Verdict.UNVERIFIED, OBS, False),
        (Verdict.UNVERIFIED, U, False),
    ],
)
def test_alarm_table(verdict_: Verdict, attest: Attestation, alarm: bool) -> None:
    assert Assessment(verdict=verdict_, attestation=attest).alarm is alarm


def unassigned_port() -> int:
    """The first registered-range port that IANA lists as unassigned for TCP and UDP."""
    return next(
        p for p in range(1024, 49152)
        if attestation(p, "tcp") == "unassigned" and attestation(p, "udp") == "unassigned"
    )  # fmt: skip


def result(port: int, state: PortState = PortState.OPEN) -> Result:
    reason = Reason.SYN_ACK if state is PortState.OPEN else Reason.NO_RESPONSE
    return Result("198.18.0.2", port, Proto.TCP, state, reason)


def test_contradicted_obscure_label_warns() -> None:
    assessed = Assessor().assess(result(2451), HTTP).assessment
    assert assessed is not None
    assert (assessed.label, assessed.range, assessed.attestation) == (
        "netchat", "registered", "obscure"
    )  # fmt: skip
    assert (assessed.evidence, assessed.verdict) == ("http", "contradicts")
    assert assessed.warning.startswith(WARNING_PREFIX)
    assert "netchat" in assessed.warning and "http" in assessed.warning


@pytest.mark.parametrize(
    ("port", "evidence", "warned", "verdict_"),
    [
        (22, SSH, False, "consistent"),  # common and confirmed: no warning
        (80, HTTP, False, "consistent"),
        (3451, NOTHING, True, "unverified"),  # obscure, silent
        (3451, None, True, "unverified"),  # obscure, not probed
    ],
)
def test_warnings(port: int, evidence: Evidence | None, warned: bool, verdict_: str) -> None:
    assessed = Assessor().assess(result(port), evidence).assessment
    assert assessed is not None
    assert bool(assessed.warning) is warned
    assert assessed.verdict == verdict_
    if warned:
        assert assessed.warning.startswith(WARNING_PREFIX)


def test_ports_not_open_get_labels_but_no_verdict() -> None:
    assessed = Assessor().assess(result(444, PortState.FILTERED), HTTP).assessment
    assert assessed is not None
    assert assessed.label == "snpp" and assessed.range == "system"
    assert (assessed.evidence, assessed.verdict, assessed.warning) == ("", "", "")


def test_unassigned_open_port_warns_about_scrutiny() -> None:
    registry = load_registry()
    port = unassigned_port()
    assessed = Assessor(registry).assess(result(port), NOTHING).assessment
    assert assessed is not None
    assert assessed.attestation == "unassigned"
    assert assessed.warning.startswith(WARNING_PREFIX) and "scrutiny" in assessed.warning


def test_port_card_for_3451() -> None:
    text = "\n".join(build_card(3451, load_registry(), [], False))
    assert "Port 3451: registered (user) range (1024-49151)" in text
    assert "TCP: asam - ASAM Services" in text and "UDP: asam - ASAM Services" in text
    assert "registrant Mike Gossett [Mike_Gossett]" in text and "registered 2002-04" in text
    assert "Attestation (tcp): obscure" in text
    assert "nothing on 3451/tcp or 3451/udp" in text
    assert "ss -ltnup 'sport = :3451'" in text and "lsof -nP -i :3451" in text


def test_port_card_for_an_unassigned_port() -> None:
    registry = load_registry()
    port = unassigned_port()
    text = "\n".join(build_card(port, registry, [], True))
    assert f"Port {port} is unassigned: any traffic on it warrants scrutiny." in text
    assert "other users' processes are not shown" in text


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        (853, ["TCP: domain-s - DNS query-response protocol run over TLS"]),
        (465, ["TCP: submissions - Message Submission over TLS protocol"]),
        (8000, ["TCP: irdmi - iRDMI", "Customary uses (documented, but not IANA's):",
                "source: Python documentation (python -m http.server serves on 8000)"]),
        (2222, ["TCP: EtherNet-IP-1", "a second SSH server", "linuxserver.io"]),
        (6443, ["the Kubernetes API server", "Ports and Protocols"]),
    ],
)  # fmt: skip
def test_port_card_names_and_customary_uses(port: int, expected: list[str]) -> None:
    text = "\n".join(build_card(port, load_registry(), [], False))
    assert "IANA registry (dated 2026-09-17):" in text
    for piece in expected:
        assert piece in text
    assert "(unassigned)" not in text  # no stale 2015 range around a port named since


def test_port_card_says_where_fields_come_from() -> None:
    text = "\n".join(build_card(853, load_registry(), [], False))
    assert "name and description as of 2026-09-17; the shipped data has no registrant" in text
    text = "\n".join(build_card(3451, load_registry(), [], False))
    assert "name and description as of 2026-09-17, other fields as of 2015-07-30" in text


@pytest.mark.parametrize(
    ("port", "listener", "command"),
    [
        (8000, Listener("tcp", "0.0.0.0", 8000, 1, "python3"), "curl -sv http://127.0.0.1:8000/"),
        (443, Listener("tcp", "::", 443, None, ""), "curl -skv 'https://[::1]:443/'"),
        (853, Listener("tcp", "127.0.0.53", 853, 9, "x"),
         "openssl s_client -connect 127.0.0.53:853"),
        (53, Listener("udp", "127.0.0.1", 53, 9, "x"),
         "dig @127.0.0.1 -p 53 version.bind chaos txt"),
        (22, Listener("tcp", "0.0.0.0", 22, 9, "sshd"), "nc 127.0.0.1 22"),
        (161, Listener("udp", "0.0.0.0", 161, 9, "snmpd"),
         "snmpget -v2c -c public 127.0.0.1:161 1.3.6.1.2.1.1.1.0"),
    ],
)  # fmt: skip
def test_port_card_gives_a_check_for_each_listener(
    port: int, listener: Listener, command: str
) -> None:
    lines = build_card(port, load_registry(), [listener], False)
    assert f"  {command}" in lines
    assert f"  ss -ltnup 'sport = :{port}'" in lines


@pytest.mark.parametrize(
    ("host", "port", "protocol", "service", "command"),
    [
        ("198.18.0.2", 8000, "tcp", "http", "curl -sv http://198.18.0.2:8000/"),
        ("2001:db8::2", 443, "tcp", "https", "curl -skv 'https://[2001:db8::2]:443/'"),
        ("198.18.0.2", 853, "tcp", "tls", "openssl s_client -connect 198.18.0.2:853"),
        ("198.18.0.2", 853, "udp", "tls", "openssl s_client -dtls -connect 198.18.0.2:853"),
        ("198.18.0.2", 5353, "udp", "dns", "dig @198.18.0.2 -p 5353 version.bind chaos txt"),
        ("198.18.0.2", 53, "tcp", "dns", "dig @198.18.0.2 -p 53 +tcp version.bind chaos txt"),
        ("198.18.0.2", 161, "udp", "snmp",
         "snmpget -v2c -c public 198.18.0.2:161 1.3.6.1.2.1.1.1.0"),
        ("198.18.0.2", 2222, "tcp", "ssh", "nc 198.18.0.2 2222"),
        ("198.18.0.2", 2451, "tcp", "", "nc 198.18.0.2 2451"),
        ("198.18.0.2", 9999, "udp", "", "nc -u 198.18.0.2 9999"),
    ],
)  # fmt: skip
def test_check_command(host: str, port: int, protocol: str, service: str, command: str) -> None:
    assert check_command(host, port, protocol, service) == command


def test_trail_fills_the_assessment() -> None:
    evidence = Evidence(
        "ssh", "OpenSSH_9.2p1", "banner", "OpenSSH", "9.2p1", "ssh:identification",
        "SSH-2.0-OpenSSH_9.2p1",
    )  # fmt: skip
    a = Assessor().assess(result(22), evidence).assessment
    assert a is not None
    assert (a.product, a.version, a.evidence_probe, a.evidence_rule, a.evidence_excerpt) == (
        "OpenSSH", "9.2p1", "banner", "ssh:identification", "SSH-2.0-OpenSSH_9.2p1"
    )  # fmt: skip
    unnamed = Assessor().assess(result(2451), UNNAMED).assessment
    assert unnamed is not None
    assert (unnamed.verdict, unnamed.evidence, unnamed.evidence_excerpt) == (
        "unrecognised", "", "HELLO 1.0"
    )  # fmt: skip
    assert unnamed.alarm and unnamed.warning.startswith(WARNING_PREFIX)
    assert "cannot name" in unnamed.warning


@pytest.mark.parametrize(
    ("port", "evidence", "verdict_", "warned"),
    [
        (8000, HTTP, "customary", False),
        (2222, SSH, "customary", False),
        (8080, HTTP, "consistent", False),
        (465, Evidence("smtp", "ESMTP", "banner"), "consistent", False),
        (2451, HTTP, "contradicts", True),
        (8000, SSH, "contradicts", True),
        (443, UNNAMED, "unrecognised", False),  # common port: no alarm
    ],
)
def test_graded_verdicts_and_alarms(
    port: int, evidence: Evidence, verdict_: str, warned: bool
) -> None:
    a = Assessor().assess(result(port), evidence).assessment
    assert a is not None
    assert a.verdict == verdict_
    assert bool(a.warning) is warned and a.alarm is warned


def test_label_shows_every_current_name() -> None:
    registry = Registry(
        parse_registry_csv(
            "Service Name,Port Number,Transport Protocol,Description,Assignee,Contact,"
            "Registration Date,Modification Date,Reference,Service Code,"
            "Unauthorized Use Reported,Assignment Notes\n"
            "urd,465,tcp,URL Rendezvous Directory for SSM,,,,,,,,\n"
            "submissions,465,tcp,Message Submission over TLS protocol,,,,,,,,\n"
            "http,80,tcp,World Wide Web HTTP,,,,,,,,\n"
            "www,80,tcp,World Wide Web HTTP,,,,,,,,\n"
        ),
        source="test",
        date="2026-08-17",
    )
    assessor = Assessor(registry)
    assert assessor.label(465, "tcp").label == "urd/submissions"
    assert assessor.label(80, "tcp").label == "http"  # aliases: one description
    a = assessor.assess(result(465), TLS).assessment
    assert a is not None and a.verdict == "contradicts"
    assert "registered as 'urd' or 'submissions', but it speaks https" in a.warning
    a = assessor.assess(result(465), Evidence("tls", "TLSv1.3", "tls")).assessment
    assert a is not None and a.verdict == "consistent"


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        main(argv, Environment(stdout=out, stderr=err))
    return int(exit_info.value.code or 0), out.getvalue(), err.getvalue()


def test_local_lists_a_listener_with_its_process(listener: int) -> None:
    found, _ = listeners(listener)
    assert [(x.protocol, x.address, x.pid) for x in found] == [("tcp", "127.0.0.1", os.getpid())]
    code, out, _ = run_main(["local"])
    assert code == 0
    line = next(line for line in out.splitlines() if f" {listener} " in f" {line} ")
    assert "127.0.0.1" in line and str(os.getpid()) in line


def test_port_command(listener: int) -> None:
    code, out, _ = run_main(["port", str(listener)])
    assert code == 0
    assert f"tcp 127.0.0.1:{listener}  pid {os.getpid()}" in out


@pytest.mark.parametrize("bad", ["65536", "-1", "http", "٣", ""])
def test_port_command_bad_input(bad: str) -> None:
    code, _, err = run_main(["port", bad])
    assert code == 2 and err.count("\n") == 1 and err.startswith("portprobe: error:")


def test_udp_listener_is_listed() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        found, _ = listeners(port)
    assert [(x.protocol, x.pid) for x in found] == [("udp", os.getpid())]


# -- the "done when": 2451/tcp serving HTTP, in the table, CSV and JSON ---------


@pytest.mark.netns
@pytest.mark.timeout(120)
def test_label_is_not_evidence_end_to_end(lab: netlab.Lab, tmp_path: Path) -> None:
    base = ["198.18.0.2", "-p", "22,80,81,2451,3451"]
    table = portprobe(lab, *base, timeout=60)
    assert table.returncode == 0, table.stderr
    # nmap's per-host layout (PORT STATE LABEL SEEN VERDICT); the attestation is in the
    # reports, and the warning, wrapped to the terminal, under the host's table.
    row = next(line for line in table.stdout.splitlines() if "2451/tcp" in line)
    assert "netchat" in row and "http" in row and "!! CONTRADICTS" in row
    assert "2451/tcp: label is not evidence" in table.stdout
    ssh = next(line for line in table.stdout.splitlines() if "22/tcp" in line)
    assert "ssh" in ssh and "consistent" in ssh

    for fmt in ("csv", "json"):
        out = tmp_path / f"scan.{fmt}"
        proc = portprobe(lab, *base, "-o", str(out), timeout=60)
        assert proc.returncode == 0, proc.stderr
        if fmt == "csv":
            with out.open() as stream:
                rows = {int(r["port"]): r for r in csv.DictReader(stream)}
        else:
            rows = {r["port"]: r for r in json.loads(out.read_text())["results"]}
        r = rows[2451]
        assert (r["label"], r["attestation"], r["evidence"], r["verdict"]) == (
            "netchat", "obscure", "http", "contradicts"
        )  # fmt: skip
        assert r["warning"].startswith("label is not evidence")
        assert rows[22]["verdict"] == "consistent" and rows[22]["evidence"] == "ssh"
        assert rows[3451]["label"] == "asam" and rows[3451]["verdict"] == "unverified"
        assert rows[3451]["warning"].startswith("label is not evidence")
        assert rows[81]["state"] == "filtered" and rows[81]["verdict"] == ""
        assert rows[81]["attestation"] == "unassigned" and rows[81]["warning"] == ""


@pytest.mark.netns
@pytest.mark.timeout(120)
def test_no_evidence_skips_probing(lab: netlab.Lab) -> None:
    proc = portprobe(lab, "198.18.0.2", "-p", "2451", "--no-evidence", "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    row = [json.loads(line) for line in proc.stdout.splitlines()][1]
    assert (row["label"], row["evidence"], row["verdict"]) == ("netchat", "", "unverified")


def test_registry_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTPROBE_DATA_DIR", str(tmp_path / "data"))
    load_registry.cache_clear()
    try:
        shipped_records = len(load_registry())
        code, out, _ = run_main(["registry", "info"])
        assert code == 0 and out.startswith(f"{shipped_records} records;")
        assert "2015-07-30" in out  # the full records' date, beside the current names'
        bad = tmp_path / "bad.csv"
        bad.write_text("Service Name,Port Number\nhttp,eighty\n")
        code, _, err = run_main(["registry", "update", "--from", str(bad)])
        assert code == 2 and err.count("\n") == 1 and err.startswith("portprobe: error:")
        assert len(load_registry()) == shipped_records  # untouched
        shipped = Path(__file__).parent.parent / "scanner/data/iana-service-names-port-numbers.csv"
        text = shipped.read_text()
        columns = text.split("\n", 1)[0].count(",") + 1
        good = tmp_path / "iana.csv"
        free = unassigned_port()
        assert load_registry().label(free, "tcp") is None
        row = [f"newsvc,{free},tcp,A test record", *[""] * (columns - 4)]
        good.write_text(text + ",".join(row) + "\n")
        code, out, _ = run_main(["registry", "update", "--from", str(good)])
        assert code == 0 and f"{shipped_records + 1} records (was {shipped_records})" in out
        label = load_registry().label(free, "tcp")
        assert label is not None and label.service == "newsvc"
        code, out, _ = run_main(["registry", "rollback"])
        assert code == 0 and f"{shipped_records} records" in out
    finally:
        load_registry.cache_clear()


# -- issue 14: customary ports raise no alarm, a contradicting one does --------------------


@pytest.mark.netns
@pytest.mark.timeout(150)
def test_customary_and_contradicting_ports_in_the_lab(make_lab: Any, tmp_path: Path) -> None:
    lab = make_lab(tcp={8000: "http", 2222: "banner", 2451: "http", 3451: "garbage"})
    ports = ["198.18.0.2", "-p", "2222,2451,3451,8000"]
    table = portprobe(lab, *ports, timeout=90)
    assert table.returncode == 0, table.stderr
    rows = {line.split()[0]: line for line in table.stdout.splitlines() if "/tcp  " in line}
    text = " ".join(table.stdout.split())  # warnings are wrapped to the terminal's width
    for port, service in (("8000/tcp", "http"), ("2222/tcp", "ssh")):
        assert service in rows[port] and "customary" in rows[port]
        assert "!!" not in rows[port]
        assert f"{port}: " not in text  # no warning line either
    assert "!! CONTRADICTS" in rows["2451/tcp"]
    assert (
        "2451/tcp: label is not evidence: 2451/tcp is registered as 'netchat', "
        "but it speaks http"
    ) in text
    assert "!! UNRECOGNISED" in rows["3451/tcp"]  # an obscure port answering unnamed bytes
    assert "3451/tcp: label is not evidence" in text

    out = tmp_path / "scan.json"
    proc = portprobe(lab, *ports, "-o", str(out), timeout=90)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["scan"]["registry_date"] == "2026-09-17"
    found = {r["port"]: r for r in doc["results"]}
    assert (found[8000]["verdict"], found[8000]["evidence_probe"]) == ("customary", "http")
    assert found[8000]["evidence_rule"] and found[8000]["warning"] == ""
    assert found[2222]["verdict"] == "customary" and found[2222]["evidence"] == "ssh"
    assert found[2451]["verdict"] == "contradicts"
    assert found[3451]["verdict"] == "unrecognised" and found[3451]["evidence_excerpt"]


@pytest.mark.parametrize(
    ("dated", "today", "noted"),
    [
        ("2015-07-30", dt.date(2026, 12, 1), True),
        ("2026-09-17", dt.date(2026, 12, 1), False),
        ("2025-12-01", dt.date(2026, 12, 1), False),  # exactly a year
        ("2025-11-30", dt.date(2026, 12, 1), True),
        ("2024-02-29", dt.date(2025, 2, 28), False),
        ("2024-02-29", dt.date(2025, 3, 1), True),
        ("2002-04", dt.date(2026, 12, 1), True),  # IANA's month dates
        ("not a date", dt.date(2026, 12, 1), False),
        ("", dt.date(2026, 12, 1), False),
    ],
)
def test_stale_note(dated: str, today: dt.date, noted: bool) -> None:
    note = stale_note(dated, today)
    assert bool(note) is noted
    if noted:
        assert dated in note and "portprobe registry update" in note


def test_explain_lines() -> None:
    evidence = Evidence(
        "http", "SimpleHTTP/0.6; 200", "http", "SimpleHTTP", "0.6", "http:status-line",
        "HTTP/1.0 200 OK",
    )  # fmt: skip
    lines = explain_lines(Assessor().assess(result(8000), evidence))
    assert lines[0] == (
        "198.18.0.2 8000/tcp: customary (it speaks a documented unofficial use of the port)"
    )
    assert "  evidence: http (SimpleHTTP 0.6), from probe http, named by rule http:status-line" in (
        lines
    )
    assert "  bytes: HTTP/1.0 200 OK" in lines and "  registry: irdmi (common)" in lines
    assert any(
        line.startswith("  customary use: development and application HTTP") for line in lines
    )
    assert lines[-1] == "  check by hand: curl -sv http://198.18.0.2:8000/"
    silent = explain_lines(Assessor().assess(result(3451), None))
    assert silent[0].startswith("198.18.0.2 3451/tcp: unverified")
    assert silent[-1] == "  check by hand: nc 198.18.0.2 3451"
    assert explain_lines(Assessor().assess(result(3451, PortState.FILTERED), None)) == []
