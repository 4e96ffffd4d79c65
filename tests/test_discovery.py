"""Host discovery's logic with scripted probes: no network."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import socket
from xml.etree import ElementTree

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.discovery import DiscoveryConfig, HostStatus, discover
from scanner.models import PortState, Reason, Timing
from scanner.report import ScanMeta
from scanner.report.hosts import HOST_COLUMNS, write_hosts
from scanner.transport import ECHO_REPLY, Answer, Deliver
from scanner.transport.icmp import parse_icmp

UP_RST = Answer(PortState.CLOSED, Reason.CONN_REFUSED)
NO_ROUTE = Answer(PortState.FILTERED, Reason.NET_UNREACH)
ROUTER_SAYS_UNREACHABLE = Answer(PortState.FILTERED, Reason.HOST_UNREACH)


class Scripted:
    """A probe whose outcome per address is scripted: an Answer at once, ("later", Answer)
    delivered on the next loop turn, or nothing (silence). Counts what it sent."""

    def __init__(self, script: dict[str, Answer | tuple[str, Answer]]) -> None:
        self.script = script
        self.sent: list[tuple[str, int]] = []
        self.cancelled = 0
        self._deliver: Deliver | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        self._loop, self._deliver = loop, deliver

    def send(self, key: object, family: int, address: str, port: int) -> object:
        self.sent.append((address, port))
        outcome = self.script.get(address)
        if isinstance(outcome, Answer):
            return outcome
        handle = object()
        if isinstance(outcome, tuple):
            assert self._loop is not None and self._deliver is not None
            self._loop.call_soon(self._deliver, key, outcome[1])
        return handle

    def cancel(self, handle: object) -> None:
        self.cancelled += 1

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


FAST = DiscoveryConfig(
    tcp_ports=(80, 443), retries=1, timing=Timing(initial_rtt_timeout=0.2, min_rtt_timeout=0.05)
)


def run(hosts: list[str], probe: Scripted, config: DiscoveryConfig = FAST) -> dict[str, HostStatus]:
    async def collect() -> dict[str, HostStatus]:
        return {s.host: s async for s in discover(hosts, config, probes=[(probe, "tcp")])}

    return asyncio.run(collect())


def test_up_down_and_why() -> None:
    probe = Scripted(
        {
            "198.18.0.2": ("later", UP_RST),
            "198.18.0.3": NO_ROUTE,
            "198.18.0.4": ("later", ROUTER_SAYS_UNREACHABLE),
        }
    )
    found = run(["198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5"], probe)
    assert {h: (s.up, s.reason) for h, s in found.items()} == {
        "198.18.0.2": (True, "conn-refused"),
        "198.18.0.3": (False, "net-unreach"),
        "198.18.0.4": (False, "host-unreach"),  # a router's error is no sign of life
        "198.18.0.5": (False, "no-response"),
    }
    sent = [address for address, _ in probe.sent]
    # A live host: one round. Refused outright: no second round. Silent: retries + 1 rounds.
    assert sent.count("198.18.0.2") == 2
    assert sent.count("198.18.0.3") == 2
    assert sent.count("198.18.0.5") == 4
    assert probe.cancelled == 4  # the silent host's probes, both rounds


def test_no_host_no_probe() -> None:
    probe = Scripted({})
    assert run([], probe) == {} and probe.sent == []


# -- the discovery report (-sn) in every format ----------------------------------------------

STATUSES = [
    HostStatus("198.18.0.10", True, "syn-ack", 0.0004),
    HostStatus("198.18.2.1", False, "no-response"),
    HostStatus("198.18.0.9", True, "echo-reply", 0.0002),
    HostStatus("2001:db8::2", True, "conn-refused", 0.0003),
]
META = ScanMeta(
    version="0.1.0",
    command=["portprobe", "-sn", "198.18.0.9-10", "198.18.2.1", "2001:db8::2"],
    started=1795406400.0,
    seed=0,
    ports="",
    hosts=4,
)


def hosts_report(fmt: str, **options: int) -> str:
    out = io.StringIO()
    write_hosts(STATUSES, fmt, out, META, finished=1795406401.5, **options)  # type: ignore[arg-type]
    return out.getvalue()


def test_table_lists_the_hosts_up_in_address_order() -> None:
    text = hosts_report("table")
    assert [line for line in text.splitlines() if line.startswith("portprobe report")] == [
        "portprobe report for 198.18.0.9",
        "portprobe report for 198.18.0.10",
        "portprobe report for 2001:db8::2",
    ]
    assert "Host is up (0.00020s latency)." in text and "198.18.2.1" not in text
    assert "198.18.2.1 [host down, no-response]" in hosts_report("table", verbose=1)


def test_xml_is_nmaps_sn_shape_and_libnmap_reads_it() -> None:
    from libnmap.parser import NmapParser

    text = hosts_report("xml")
    root = ElementTree.fromstring(text)
    assert [h.find("address").get("addr") for h in root.iter("host")] == [  # type: ignore[union-attr]
        "198.18.0.9",
        "198.18.0.10",
        "2001:db8::2",
    ]
    assert root.find("runstats/hosts").attrib == {"up": "3", "down": "1", "total": "4"}  # type: ignore[union-attr]
    parsed = NmapParser.parse_fromstring(text)
    assert sorted(h.address for h in parsed.hosts if h.is_up()) == [
        "198.18.0.10",
        "198.18.0.9",
        "2001:db8::2",
    ]


def test_grepable_csv_and_json() -> None:
    grepable = hosts_report("grepable").splitlines()
    assert grepable[1:4] == [
        "Host: 198.18.0.9 ()\tStatus: Up",
        "Host: 198.18.0.10 ()\tStatus: Up",
        "Host: 2001:db8::2 ()\tStatus: Up",
    ]
    assert grepable[4].endswith("4 IP addresses (3 hosts up) scanned in 1.50 seconds")
    rows = list(csv.reader(io.StringIO(hosts_report("csv"))))
    assert rows[0] == list(HOST_COLUMNS)
    assert rows[1:] == [
        ["198.18.0.9", "up", "echo-reply", "0.2"],
        ["198.18.0.10", "up", "syn-ack", "0.4"],
        ["198.18.2.1", "down", "no-response", ""],
        ["2001:db8::2", "up", "conn-refused", "0.3"],
    ]
    doc = json.loads(hosts_report("json"))
    assert [(h["host"], h["status"]) for h in doc["hosts"]][2] == ("198.18.2.1", "down")
    kinds = [json.loads(line)["type"] for line in hosts_report("jsonl").splitlines()]
    assert kinds == ["scan", "host", "host", "host", "host", "end"]


# -- ICMP messages: bytes captured in the lab (raw sockets, echo identifier 0x1234) ---------

V4_HEADER = bytes.fromhex("450000346ac90000400183d8c6120002c6120001")
V4_REPLY = bytes.fromhex("000013e212340007706f727470726f626520686f737420646973636f76657279")
V6_REPLY = bytes.fromhex("8100371012340009706f727470726f626520686f737420646973636f76657279")
V6_NEIGHBOUR = bytes.fromhex("8800c48e6000000020010db80000000000000000000000020201e293e1da0376")
# 198.18.0.6 refusing our echo with an administratively prohibited (type 3 code 13).
V4_ADMIN = bytes.fromhex(
    "030dfcf20000000045000034da3a40004001d462c6120001c612000608000be2"
    "12340007706f727470726f626520686f737420646973636f76657279"
)
ADMIN = Answer(PortState.CLOSED, Reason.ADMIN_PROHIBITED)

ICMP_TABLE = [
    # (family, data, source, ident, expected)
    (socket.AF_INET, V4_REPLY, "198.18.0.2", 0x1234, ("198.18.0.2", 7, ECHO_REPLY)),
    (socket.AF_INET, V4_REPLY, "198.18.0.2", 0x9999, None),  # someone else's echo
    (socket.AF_INET, V4_REPLY, "198.18.0.2", None, ("198.18.0.2", 7, ECHO_REPLY)),  # ping socket
    (socket.AF_INET6, V6_REPLY, "2001:db8::2", 0x1234, ("2001:db8::2", 9, ECHO_REPLY)),
    (socket.AF_INET6, V6_NEIGHBOUR, "2001:db8::2", 0x1234, None),
    (socket.AF_INET, V4_ADMIN, "198.18.0.6", 0x1234, ("198.18.0.6", 7, ADMIN)),
    # The same error from a router: the host did not answer.
    (socket.AF_INET, V4_ADMIN, "198.18.0.1", 0x1234, None),
    (socket.AF_INET, V4_ADMIN[:30], "198.18.0.6", 0x1234, None),  # truncated quote
    (socket.AF_INET, b"", "198.18.0.6", 0x1234, None),
]


@pytest.mark.parametrize(("family", "data", "source", "ident", "expected"), ICMP_TABLE)
def test_icmp_messages(
    family: int, data: bytes, source: str, ident: int | None, expected: object
) -> None:
    assert parse_icmp(family, data, source, ident) == expected


def test_the_captured_ipv4_reply_came_with_an_ip_header() -> None:
    packet = V4_HEADER + V4_REPLY
    assert packet[(packet[0] & 0x0F) * 4 :] == V4_REPLY


@given(
    st.sampled_from([socket.AF_INET, socket.AF_INET6]),
    st.binary(max_size=120),
    st.one_of(st.none(), st.integers(0, 0xFFFF)),
)
def test_any_icmp_bytes_parse_or_are_ignored(family: int, data: bytes, ident: int | None) -> None:
    found = parse_icmp(family, data, "198.18.0.2", ident)
    assert found is None or (found[0] == "198.18.0.2" and 0 <= found[1] <= 0xFFFF)
