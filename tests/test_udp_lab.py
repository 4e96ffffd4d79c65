"""UDP scans in the network-namespace lab, whose server keeps Linux's default ICMP limits.

The server answers DNS on 53 and NTP on 123 (well-formed queries only), echoes on 7,
holds 9999 bound and silent, and nftables drops 162 (tests/conftest.py). Closed ports
draw ICMP port-unreachables at Linux's default pace: a burst of 6, then one per second
per destination for IPv4 (faster for IPv6), so these tests keep the closed list short.
Loopback is never rate limited, which is why none of this runs on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from conftest import portprobe
from netlab import Lab

pytestmark = pytest.mark.netns

CLOSED = range(2000, 2016)  # 16 closed ports: 10 beyond the burst
UDP_LIST = "7,53,123,162,9999," + f"{CLOSED.start}-{CLOSED.stop - 1}"
EXPECTED = {
    7: ("open", "udp-response"),
    53: ("open", "udp-response"),
    123: ("open", "udp-response"),
    162: ("open|filtered", "no-response"),
    9999: ("open|filtered", "no-response"),
    **{port: ("closed", "port-unreach") for port in CLOSED},
}


def scan_json(lab: Lab, *args: str) -> tuple[dict[str, Any], str]:
    proc = portprobe(lab, *args, "--all", "--format", "json", timeout=200)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def states(doc: dict[str, Any], protocol: str = "udp") -> dict[int, tuple[str, str]]:
    return {
        r["port"]: (r["state"], r["reason"]) for r in doc["results"] if r["protocol"] == protocol
    }


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_udp_states_are_exact_under_default_icmp_rate_limits(lab: Lab, family: str) -> None:
    target = lab.server4 if family == "ipv4" else lab.server6
    doc, stderr = scan_json(lab, target, "-sU", "-p", UDP_LIST, "--no-evidence")
    assert states(doc) == EXPECTED
    assert doc["end"]["complete"] is True
    # The closed ports beyond the burst were only seen by pacing to the host's budget,
    # and the command line says so.
    assert f"note: {target} rate-limits its ICMP errors" in stderr


def test_open_udp_ports_carry_what_they_answered(lab: Lab) -> None:
    doc, _ = scan_json(lab, lab.server4, "-sU", "-p", "7,53,123", "-q")
    rows = {r["port"]: r for r in doc["results"]}
    assert (rows[53]["evidence"], rows[53]["verdict"]) == ("dns", "consistent")
    assert rows[53]["label"] == "domain"
    assert (rows[123]["evidence"], rows[123]["verdict"]) == ("ntp", "consistent")
    assert "stratum 2" in rows[123]["evidence_detail"]
    assert (rows[7]["evidence"], rows[7]["verdict"]) == ("echo", "consistent")


def test_tcp_and_udp_mix_in_one_scan(lab: Lab) -> None:
    doc, _ = scan_json(lab, lab.server4, "-p", "T:22,80,81,U:53,9999,2000", "--no-evidence", "-q")
    assert states(doc, "tcp") == {
        22: ("open", "syn-ack"),
        80: ("open", "syn-ack"),
        81: ("filtered", "no-response"),
    }
    assert states(doc, "udp") == {
        53: ("open", "udp-response"),
        9999: ("open|filtered", "no-response"),
        2000: ("closed", "port-unreach"),
    }
    assert doc["scan"]["ports"] == "T:22,80-81,U:53,2000,9999"


def test_tcp_and_udp_flags_scan_both_protocols_of_each_port(lab: Lab) -> None:
    doc, _ = scan_json(lab, lab.server6, "--tcp", "--udp", "-p", "53,80", "--no-evidence", "-q")
    assert states(doc, "tcp") == {53: ("closed", "conn-refused"), 80: ("open", "syn-ack")}
    assert states(doc, "udp") == {53: ("open", "udp-response"), 80: ("closed", "port-unreach")}


def test_fast_mode_trades_closed_for_closed_or_filtered(lab: Lab) -> None:
    many_closed = "7,53,123,162,9999,3000-3039"
    doc, stderr = scan_json(
        lab, lab.server4, "-sU", "-p", many_closed, "--defeat-icmp-ratelimit", "--no-evidence"
    )
    got = states(doc)
    assert {p: got[p] for p in (7, 53, 123)} == {p: ("open", "udp-response") for p in (7, 53, 123)}
    assert got[162] == got[9999] == ("closed|filtered", "no-response")
    closed = [p for p in range(3000, 3040) if got[p][0] == "closed"]
    unsure = [p for p in range(3000, 3040) if got[p][0] == "closed|filtered"]
    assert len(closed) + len(unsure) == 40
    assert len(closed) <= 10  # about the burst: the scan did not wait for more errors
    assert "rate-limits its ICMP errors" not in stderr


def test_udp_to_an_unroutable_address_is_net_unreachable(lab: Lab) -> None:
    # 198.19.0.1 has no route in the client namespace: the connect fails locally and no
    # packet leaves.
    doc, _ = scan_json(lab, "198.19.0.1", "-sU", "-p", "53,161", "--no-evidence", "-q")
    assert states(doc) == {53: ("filtered", "net-unreach"), 161: ("filtered", "net-unreach")}


def test_other_icmp_unreachables_are_filtered_with_their_reason(
    make_lab: Callable[..., Lab],
) -> None:
    # Rules of this test's own lab: the server rejects 4441/udp with an ICMP host
    # unreachable and 4442/udp with administratively prohibited.
    lab = make_lab(udp={53: "dns"}, filtered_udp=[162])
    for port, kind in ((4441, "host-unreachable"), (4442, "admin-prohibited")):
        added = lab.run_in_server(
            ["nft", "add", "rule", "inet", "portprobe_lab", "input",
             "udp", "dport", str(port), "reject", "with", "icmpx", "type", kind]
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
    v4, _ = scan_json(lab, lab.server4, "-sU", "-p", "53,4441,4442", "--no-evidence", "-q")
    v6, _ = scan_json(lab, lab.server6, "-sU", "-p", "53,4441,4442", "--no-evidence", "-q")
    assert states(v4)[53] == states(v6)[53] == ("open", "udp-response")
    assert states(v4)[4441] == states(v6)[4441] == ("filtered", "host-unreach")
    # The exact ICMP type and code come from the socket's error queue (IP_RECVERR).
    assert states(v4)[4442] == states(v6)[4442] == ("filtered", "admin-prohibited")


def test_udp_stays_exact_beside_a_full_tcp_sweep(lab: Lab) -> None:
    # The TCP sweep keeps the event loop busy: UDP answers reach their tasks late, and
    # would expire if UDP were timed by TCP's sub-millisecond RTTs or not reaped first.
    udp = "U:3,7,53,123,162,9999,2000-2005"
    doc, _ = scan_json(lab, lab.server4, "-p", f"T:1-65535,{udp}", "--no-evidence", "-q")
    tcp = states(doc, "tcp")
    assert len(tcp) == 65535
    assert {p for p, (state, _) in tcp.items() if state == "open"} == {
        22, 80, 443, 2451, 3451, 8080,
    }  # fmt: skip
    assert {p for p, (state, _) in tcp.items() if state == "filtered"} == {81, 444}
    assert states(doc, "udp") == {
        **{p: EXPECTED[p] for p in (7, 53, 123, 162, 9999)},
        **{p: ("closed", "port-unreach") for p in (3, 2000, 2001, 2002, 2003, 2004, 2005)},
    }


def test_addresses_of_one_machine_share_its_icmp_budget(
    make_lab: Callable[..., Lab],
) -> None:
    # 198.18.0.2 and 198.18.0.3 are one kernel: one ICMP bucket for the scanner's address.
    lab = make_lab(udp={53: "dns"}, extra_hosts=1)
    doc, _ = scan_json(
        lab, lab.server4, lab.extra4[0], "-sU", "-p", "53,2000-2007", "--no-evidence", "-q"
    )
    got = {(r["host"], r["port"]): r["state"] for r in doc["results"]}
    for host in (lab.server4, lab.extra4[0]):
        assert got[host, 53] == "open"
        assert [got[host, p] for p in range(2000, 2008)] == ["closed"] * 8


def test_services_on_ports_not_their_own_answer_the_sweep(make_lab: Callable[..., Lab]) -> None:
    """DNS on 5300 and SNMP on 1161 say nothing to an empty datagram; the other payloads
    draw them out, and the port is open. A silent port and a dropped one stay open|filtered."""
    lab = make_lab(udp={5300: "dns", 1161: "snmp", 9999: "silent"}, filtered_udp=[9998])
    for address in (lab.server4, lab.server6):
        doc, _ = scan_json(lab, address, "-sU", "-p", "1161,5300,9998,9999", "-q")
        assert states(doc) == {
            1161: ("open", "udp-response"),
            5300: ("open", "udp-response"),
            9998: ("open|filtered", "no-response"),
            9999: ("open|filtered", "no-response"),
        }
        seen = {r["port"]: r["evidence"] for r in doc["results"]}
        assert seen[5300] == "dns" and seen[1161] == "snmp"
        assert seen[9998] == seen[9999] == ""
