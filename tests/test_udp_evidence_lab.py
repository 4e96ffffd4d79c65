"""UDP evidence from the netns lab's responders (marker ``netns``), and a few on loopback.

What a user sees: 53 answers a DNS query, 123 is an NTP server at stratum 2, 7 echoes,
the silent bound port shows nothing after exactly one budget, over IPv4 and IPv6 alike;
SNMP, memcached and SIP responders are named with what they said. The session lab keeps
the target's default ICMP rate limit, which other tests may spend: a closed port is
checked on a lab of its own.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import cast

import pytest
from conftest import probe_evidence
from netlab import Lab

from scanner.evidence import NO_EVIDENCE, SLACK, Evidence, EvidenceConfig, Prober
from scanner.protocols import udp

LAB_DNS = Evidence("dns", "NOERROR; aa; version.bind 'lab-dns 1.0'", "dns", rule="dns:reply")
LAB_NTP = Evidence("ntp", "v4; server; stratum 2; refid 198.18.0.254", "ntp")
LAB_ECHO = Evidence("echo", f"echoed our {len(udp.ECHO_PAYLOAD)}-byte datagram", "echo")
LAB_SNMP_DESCR = "Linux lab 6.1.0-13-amd64 portprobe-lab"

QUICK = EvidenceConfig(timeout=1.0)


def probe_many(
    lab: Lab, config: EvidenceConfig, address: str, ports: list[int]
) -> tuple[dict[int, Evidence], float]:
    """UDP-probe ``ports`` at once from the client namespace: ({port: evidence}, seconds)."""
    return probe_evidence(lab, config, address, ports, udp=True)


def probe_one(lab: Lab, config: EvidenceConfig, address: str, port: int) -> tuple[Evidence, float]:
    found, seconds = probe_many(lab, config, address, [port])
    return found[port], seconds


# --------------------------------------------------------------------------- the session lab


@pytest.mark.netns
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
@pytest.mark.parametrize(
    ("port", "expected"),
    [(53, LAB_DNS), (123, LAB_NTP), (7, LAB_ECHO)],
    ids=["dns-53", "ntp-123", "echo-7"],
)
def test_responders(lab: Lab, family: str, port: int, expected: Evidence) -> None:
    address = lab.server4 if family == "ipv4" else lab.server6
    found, seconds = probe_one(lab, QUICK, address, port)
    assert found == expected
    assert seconds < QUICK.timeout / 2  # an answer comes at once, not at the resend


@pytest.mark.netns
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_silent_port_costs_one_timeout(lab: Lab, family: str) -> None:
    address = lab.server4 if family == "ipv4" else lab.server6
    found, seconds = probe_one(lab, QUICK, address, 9999)
    assert found == NO_EVIDENCE
    assert 0.95 * QUICK.timeout <= seconds < QUICK.timeout + SLACK


@pytest.mark.netns
def test_dropped_port_shows_nothing(lab: Lab) -> None:
    found, seconds = probe_one(lab, QUICK, lab.server4, 162)  # nft drops it
    assert found == NO_EVIDENCE
    assert seconds < QUICK.timeout + SLACK


@pytest.mark.netns
def test_all_at_once(lab: Lab) -> None:
    ports = [7, 53, 123, 162, 9999]
    found, seconds = probe_many(lab, QUICK, lab.server4, ports)
    assert found == {7: LAB_ECHO, 53: LAB_DNS, 123: LAB_NTP, 162: NO_EVIDENCE, 9999: NO_EVIDENCE}
    assert seconds < QUICK.timeout + SLACK  # concurrently: one budget for all


# --------------------------------------------------------------------------- labs of their own

KINDS = {53: "dns", 123: "ntp", 7: "echo", 161: "snmp", 11211: "memcached", 5060: "sip"}
KIND_EVIDENCE = {
    53: LAB_DNS,
    123: LAB_NTP,
    7: LAB_ECHO,
    161: Evidence("snmp", f"v1; community 'public'; {LAB_SNMP_DESCR}", "snmp"),
    11211: Evidence("memcached", "1.6.21", "memcached"),
    5060: Evidence(
        "sip",
        "200 OK; lab-sip/1.0",
        "sip",
        product="lab-sip",
        version="1.0",
        rule="sip:options-response",
    ),
}


@pytest.mark.netns
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_service_kinds(make_lab: Callable[..., Lab], family: str) -> None:
    lab = make_lab(udp=KINDS)
    address = lab.server4 if family == "ipv4" else lab.server6
    found, seconds = probe_many(lab, QUICK, address, sorted(KINDS))
    # SNMP: the v1 and v2c requests both go out; the agent answers both, and the first
    # answer decides. Either version is the truth, the rest of the detail is the same.
    snmp = found.pop(161)
    assert snmp.service == "snmp" and snmp.detail.endswith(f"community 'public'; {LAB_SNMP_DESCR}")
    assert snmp.detail.split(";")[0] in ("v1", "v2c")
    assert found == {p: e for p, e in KIND_EVIDENCE.items() if p != 161}
    assert seconds < QUICK.timeout / 2


@pytest.mark.netns
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_closed_port_ends_at_the_icmp_error(make_lab: Callable[..., Lab], family: str) -> None:
    lab = make_lab()  # a fresh target: its ICMP budget is unspent
    address = lab.server4 if family == "ipv4" else lab.server6
    found, seconds = probe_one(lab, EvidenceConfig(timeout=2.0), address, 40000)
    assert found == NO_EVIDENCE
    assert seconds < 0.5  # port unreachable ends the probe; no wait for the budget


# --------------------------------------------------------------------------- loopback


class _Responder(asyncio.DatagramProtocol):
    """Answers each datagram through ``answer``; counts what it received."""

    def __init__(self, answer: Callable[[bytes, int], bytes | None]) -> None:
        self.answer = answer
        self.received: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append(data)
        reply = self.answer(data, len(self.received))
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


def on_loopback(
    answer: Callable[[bytes, int], bytes | None], config: EvidenceConfig
) -> tuple[Evidence, float, list[bytes]]:
    """Serve ``answer`` on a UDP port of 127.0.0.1 and probe it: (evidence, seconds, received)."""

    async def run() -> tuple[Evidence, float, list[bytes]]:
        loop = asyncio.get_running_loop()
        transport, responder = await loop.create_datagram_endpoint(
            lambda: _Responder(answer), local_addr=("127.0.0.1", 0)
        )
        port = transport.get_extra_info("sockname")[1]
        try:
            start = time.perf_counter()
            found = await Prober(config).probe_udp("127.0.0.1", socket.AF_INET, port)
            return found, time.perf_counter() - start, responder.received
        finally:
            transport.close()

    return asyncio.run(run())


def test_generic_probe_sends_an_empty_datagram_and_resends_once() -> None:
    config = EvidenceConfig(timeout=0.6)
    found, seconds, received = on_loopback(lambda data, n: None, config)
    assert found == NO_EVIDENCE
    assert received == [b"", b""]  # the empty datagram, then once more at half the budget
    assert seconds >= 0.95 * config.timeout


def test_answer_to_the_resend_counts() -> None:
    config = EvidenceConfig(timeout=1.0)
    found, seconds, received = on_loopback(lambda data, n: b"late\n" if n == 2 else None, config)
    assert found == Evidence("", "late", "udp")
    assert received == [b"", b""]
    assert config.timeout / 2 <= seconds < config.timeout


def test_reply_is_bounded_and_cleaned() -> None:
    config = EvidenceConfig(timeout=1.0, max_bytes=64)
    found, _, _ = on_loopback(lambda data, n: b"\x1b[2J" + b"A" * 5000, config)
    assert found == Evidence("", "\\x1b[2J" + "A" * 60, "udp")  # 64 bytes of the reply
