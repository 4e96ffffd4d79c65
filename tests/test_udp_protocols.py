"""The sans-I/O UDP probes of ``scanner.protocols``: tables of replies, plus hypothesis.

Every decoder gets replies as real servers send them (BIND-style DNS, ntpd, net-snmp,
miniupnpd, Samba's nmbd, strongSwan/racoon-style IKE, Asterisk, memcached, rpcbind),
built byte by byte or with dnspython, and broken ones: truncated, mangled, with another
transaction ID, or our own request echoed back. On arbitrary bytes every decoder and
:func:`udp.identify` return None or clean Evidence, and never raise.
"""

from __future__ import annotations

import importlib
import struct
from collections.abc import Callable

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_protocols import assert_clean

from scanner.protocols import (
    Evidence,
    headers,
    ike,
    memcached,
    netbios,
    ntp,
    rpc,
    sip,
    snmp,
    ssdp,
    udp,
)
from scanner.protocols import (
    dns as pdns,
)

Decoder = Callable[[bytes], Evidence | None]
Case = tuple[str, bytes, Evidence | None]


def run_cases(decode: Decoder, data: bytes, expected: Evidence | None) -> None:
    found = decode(data)
    assert found == expected
    assert_clean(found)


def ids(cases: list[Case]) -> list[str]:
    return [c[0] for c in cases]


# --------------------------------------------------------------------------- DNS


def dns_response(
    query: bytes,
    *,
    answers: tuple[str, ...] = (),
    rcode: dns.rcode.Rcode = dns.rcode.NOERROR,
    aa: bool = True,
    **change: int,
) -> bytes:
    """A dnspython response to ``query`` with ``answers`` ("A 198.18.0.2"); ``id`` may differ."""
    q = dns.message.from_wire(query)
    r = dns.message.make_response(q)
    if aa:
        r.flags |= dns.flags.AA
    r.set_rcode(rcode)
    for answer in answers:
        rdtype, text = answer.split(" ", 1)
        r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", rdtype, text))
    if "id" in change:
        r.id = change["id"]
    return r.to_wire()


QUERY = pdns.build_query()
MDNS_QUERY = pdns.build_mdns_query()
# A REFUSED reply without a question section, as some servers send: header only.
REFUSED_NO_QUESTION = struct.pack("!HHHHHH", pdns.QUERY_ID, 0x8005, 0, 0, 0, 0)
OTHER_QUESTION = dns.message.make_query("example.com.", "A", id=pdns.QUERY_ID, flags=0)
OTHER_QUESTION_REPLY = dns.message.make_response(OTHER_QUESTION).to_wire()
STATUS_OPCODE = bytearray(dns_response(QUERY))
STATUS_OPCODE[2] |= 2 << 3  # opcode 2 (STATUS)
LONG_ANSWER = dns_response(QUERY, answers=tuple(f"A 198.18.0.{i}" for i in range(2, 7)), aa=False)

DNS_CASES: list[Case] = [
    ("lab A answer", dns_response(QUERY, answers=("A 198.18.0.2",)),
     Evidence("dns", "NOERROR; aa; A 198.18.0.2", "dns")),
    ("nxdomain", dns_response(QUERY, rcode=dns.rcode.NXDOMAIN),
     Evidence("dns", "NXDOMAIN; aa", "dns")),
    ("refused, resolver", dns_response(QUERY, rcode=dns.rcode.REFUSED, aa=False),
     Evidence("dns", "REFUSED", "dns")),
    ("refused, no question", REFUSED_NO_QUESTION, Evidence("dns", "REFUSED", "dns")),
    ("five answers, three shown", LONG_ANSWER, Evidence(
        "dns", "NOERROR; A 198.18.0.2, A 198.18.0.3, A 198.18.0.4, 2 more", "dns")),
    ("hostile TXT", dns_response(QUERY, answers=('TXT "\\027[2Jowned"',)),
     Evidence("dns", 'NOERROR; aa; TXT "\\027[2Jowned"', "dns")),
    ("our query echoed", QUERY, None),
    ("wrong id", dns_response(QUERY, id=0x1234), None),
    ("another question", OTHER_QUESTION_REPLY, None),
    ("opcode status", bytes(STATUS_OPCODE), None),
    ("truncated", dns_response(QUERY, answers=("A 198.18.0.2",))[:-3], None),
    ("header only, cut", REFUSED_NO_QUESTION[:11], None),
    ("mdns reply to the dns port", dns_response(MDNS_QUERY), None),
    ("empty", b"", None),
]  # fmt: skip


@pytest.mark.parametrize(("name", "data", "expected"), DNS_CASES, ids=ids(DNS_CASES))
def test_dns_parse_reply(name: str, data: bytes, expected: Evidence | None) -> None:
    run_cases(pdns.parse_reply, data, expected)


MDNS_CASES: list[Case] = [
    ("services", dns_response(MDNS_QUERY, answers=("PTR _http._tcp.local.",)),
     Evidence("mdns", "NOERROR; aa; PTR _http._tcp.local.", "mdns")),
    ("no services", dns_response(MDNS_QUERY, aa=False), Evidence("mdns", "NOERROR", "mdns")),
    ("our query echoed", MDNS_QUERY, None),
    ("a reply to the dns query", dns_response(QUERY), None),
    ("multicast-style id 0", dns_response(MDNS_QUERY, id=0), None),
]  # fmt: skip


@pytest.mark.parametrize(("name", "data", "expected"), MDNS_CASES, ids=ids(MDNS_CASES))
def test_mdns_parse_reply(name: str, data: bytes, expected: Evidence | None) -> None:
    run_cases(pdns.parse_mdns_reply, data, expected)


def test_dns_queries_are_well_formed() -> None:
    for wire, name, rdtype in (
        (QUERY, "portprobe.invalid.", dns.rdatatype.A),
        (MDNS_QUERY, "_services._dns-sd._udp.local.", dns.rdatatype.PTR),
    ):
        q = dns.message.from_wire(wire)
        assert q.id == pdns.QUERY_ID
        assert q.opcode() == dns.opcode.QUERY and q.flags == 0  # a query, RD clear
        assert len(q.question) == 1 and not q.answer and not q.additional
        asked = q.question[0]
        assert (str(asked.name), asked.rdtype, asked.rdclass) == (name, rdtype, dns.rdataclass.IN)


# --------------------------------------------------------------------------- NTP


def ntp_reply(
    *,
    first: int = 0x24,
    stratum: int = 2,
    refid: bytes = bytes((198, 18, 0, 254)),
    origin: bytes = ntp.NONCE,
    size: int = 48,
) -> bytes:
    """A server reply as ntpd sends it: LI 0, v4, mode 4 (first byte 0x24) by default."""
    packet = struct.pack("!BBbbII4s", first, stratum, 6, -23, 0x100, 0x200, refid)
    packet += b"\xe9" * 8 + origin + b"\xea" * 16  # reference, origin, receive, transmit
    return (packet + bytes(max(0, size - len(packet))))[:size]


NTPD = Evidence("ntp", "v4; server; stratum 2; refid 198.18.0.254", "ntp")
NTP_CASES: list[Case] = [
    ("ntpd stratum 2", ntp_reply(), NTPD),
    ("stratum 1 gps", ntp_reply(stratum=1, refid=b"GPS\x00"),
     Evidence("ntp", "v4; server; stratum 1; refid GPS", "ntp")),
    ("kiss of death", ntp_reply(first=0xE4, stratum=0, refid=b"RATE"),
     Evidence("ntp", "v4; server; stratum 0; kiss code RATE", "ntp")),
    ("v3 unsynchronised", ntp_reply(first=0xDC, stratum=16, refid=b"\x00\x00\x00\x00"),
     Evidence("ntp", "v3; server; unsynchronised; refid 0.0.0.0", "ntp")),
    ("binary stratum 1 refid", ntp_reply(stratum=1, refid=b"\x1b[2J"),
     Evidence("ntp", "v4; server; stratum 1; refid 1b5b324a", "ntp")),
    ("with extension bytes", ntp_reply(size=68), NTPD),
    ("our request echoed", ntp.build_request(), None),
    ("another origin", ntp_reply(origin=b"\x00" * 8), None),
    ("mode 3", ntp_reply(first=0x23), None),
    ("version 0", ntp_reply(first=0x04), None),
    ("version 5", ntp_reply(first=0x2C), None),
    ("truncated", ntp_reply()[:47], None),
    ("empty", b"", None),
]  # fmt: skip


@pytest.mark.parametrize(("name", "data", "expected"), NTP_CASES, ids=ids(NTP_CASES))
def test_ntp_parse_reply(name: str, data: bytes, expected: Evidence | None) -> None:
    run_cases(ntp.parse_reply, data, expected)


def test_ntp_request() -> None:
    request = ntp.build_request()
    assert len(request) == 48
    assert request[0] == 0x23  # LI 0, version 4, mode 3
    assert request[1:40] == bytes(39) and request[40:] == ntp.NONCE


# --------------------------------------------------------------------------- SNMP

SYS_DESCR_BER = bytes.fromhex("06082b06010201010100")


def v2c_reply(request_id: bytes = bytes.fromhex("70700002"), value: bytes = b"") -> bytes:
    """net-snmp's answer to our v2c request, written out byte by byte."""
    value = value or b"\x04\x18Linux lab 6.1.0-13-amd64"
    binding = b"\x30" + bytes((len(SYS_DESCR_BER) + len(value),)) + SYS_DESCR_BER + value
    bindings = b"\x30" + bytes((len(binding),)) + binding
    pdu_body = b"\x02\x04" + request_id + b"\x02\x01\x00\x02\x01\x00" + bindings
    pdu = b"\xa2" + bytes((len(pdu_body),)) + pdu_body
    body = b"\x02\x01\x01\x04\x06public" + pdu
    return b"\x30" + bytes((len(body),)) + body


def snmp_message(version: int, pdu: int, request_id: int, status: int = 0, tag: int = 4,
                 value: bytes = b"lab", community: bytes = b"public") -> bytes:  # fmt: skip
    return snmp.encode_message(
        snmp.Message(
            version, community, pdu, request_id, status, 0, ((snmp.SYS_DESCR, tag, value),)
        )
    )


V1_ID, V2_ID = snmp.REQUEST_IDS[0], snmp.REQUEST_IDS[1]
LONG_FORM = bytearray(v2c_reply())
LONG_FORM[1:2] = b"\x82\x00\x41"  # the same length in a non-minimal long form (BER allows it)

SNMP_CASES: list[Case] = [
    ("net-snmp v2c, bytes", v2c_reply(),
     Evidence("snmp", "v2c; community 'public'; Linux lab 6.1.0-13-amd64", "snmp")),
    ("v2c long-form length", bytes(LONG_FORM),
     Evidence("snmp", "v2c; community 'public'; Linux lab 6.1.0-13-amd64", "snmp")),
    ("v1", snmp_message(0, snmp.RESPONSE, V1_ID, value=b"Cisco IOS\r\nSoftware"),
     Evidence("snmp", "v1; community 'public'; Cisco IOS Software", "snmp")),
    ("v1 noSuchName", snmp_message(0, snmp.RESPONSE, V1_ID, status=2, tag=5, value=b""),
     Evidence("snmp", "v1; community 'public'; noSuchName", "snmp")),
    ("v2c noSuchObject", v2c_reply(value=b"\x80\x00"),
     Evidence("snmp", "v2c; community 'public'; noSuchObject", "snmp")),
    ("hostile sysDescr", v2c_reply(value=b"\x04\x07\x1b]0;x\x07y"),
     Evidence("snmp", "v2c; community 'public'; \\x1b]0;x\\x07y", "snmp")),
    ("our v1 request echoed", snmp.build_request(0), None),
    ("our v2c request echoed", snmp.build_request(1), None),
    ("wrong request id", v2c_reply(request_id=bytes.fromhex("70700001")), None),
    ("v3 version", snmp_message(3, snmp.RESPONSE, V2_ID), None),
    ("trailing byte", v2c_reply() + b"\x00", None),
    ("truncated", v2c_reply()[:-1], None),
    ("indefinite length", b"\x30\x80" + v2c_reply()[2:] + b"\x00\x00", None),
    ("multi-byte tag", b"\x3f\x01" + v2c_reply()[1:], None),
    ("length past the end", b"\x30\x84\xff\xff\xff\xff" + v2c_reply()[2:], None),
    ("empty", b"", None),
]  # fmt: skip


@pytest.mark.parametrize(("name", "data", "expected"), SNMP_CASES, ids=ids(SNMP_CASES))
def test_snmp_parse_reply(name: str, data: bytes, expected: Evidence | None) -> None:
    run_cases(snmp.parse_reply, data, expected)


def test_snmp_version_decoders_accept_only_their_version() -> None:
    v1 = snmp_message(0, snmp.RESPONSE, V1_ID)
    assert snmp.parse_v1_reply(v1) is not None and snmp.parse_v2c_reply(v1) is None
    assert (
        snmp.parse_v2c_reply(v2c_reply()) is not None and snmp.parse_v1_reply(v2c_reply()) is None
    )
    # v1 with the v2c request's id: a reply to neither request.
    assert snmp.parse_reply(snmp_message(0, snmp.RESPONSE, V2_ID)) is None


@pytest.mark.parametrize("version", [0, 1])
def test_snmp_requests_decode(version: int) -> None:
    message = snmp.decode_message(snmp.build_request(version))
    assert message == snmp.Message(
        version, b"public", snmp.GET_REQUEST, snmp.REQUEST_IDS[version], 0, 0,
        (((1, 3, 6, 1, 2, 1, 1, 1, 0), snmp.NULL, b""),),
    )  # fmt: skip


def test_snmp_request_bytes() -> None:
    # The v2c GetRequest as nmap's and net-snmp's snmpget write it (request-id aside).
    assert snmp.build_request(1) == bytes.fromhex(
        "3029"  # SEQUENCE, 41 bytes
        "020101"  # version 1 (v2c)
        "04067075626c6963"  # community "public"
        "a01c"  # GetRequest PDU, 28 bytes
        "020470700002"  # request-id
        "020100020100"  # error-status 0, error-index 0
        "300e300c"  # variable bindings: one
        "06082b06010201010100"  # sysDescr.0
        "0500"  # NULL
    )


BER_INTEGERS = [(0, "020100"), (127, "02017f"), (128, "02020080"), (-1, "0201ff"),
                (0x70700001, "020470700001"), (256, "02020100")]  # fmt: skip


@pytest.mark.parametrize(("value", "encoded"), BER_INTEGERS)
def test_ber_integer(value: int, encoded: str) -> None:
    assert snmp.encode_integer(value).hex() == encoded


OIDS = [((1, 3, 6, 1, 2, 1, 1, 1, 0), "2b06010201010100"),
        ((1, 3, 6, 1, 4, 1, 311), "2b0601040182 37"),
        ((2, 999, 3), "8837 03"), ((0, 39), "27")]  # fmt: skip


@pytest.mark.parametrize(("oid", "body"), OIDS)
def test_ber_oid_round_trip(oid: tuple[int, ...], body: str) -> None:
    raw = bytes.fromhex(body.replace(" ", ""))
    assert snmp.encode_oid(oid) == snmp.tlv(snmp.OID, raw)
    assert snmp.decode_oid(raw) == oid


@pytest.mark.parametrize("body", ["", "2b86", "2b8001"])
def test_ber_oid_rejects(body: str) -> None:
    with pytest.raises(snmp.BerError):
        snmp.decode_oid(bytes.fromhex(body))


def test_ber_long_lengths() -> None:
    long = snmp.tlv(snmp.OCTET_STRING, b"x" * 300)
    assert long[:4] == b"\x04\x82\x01\x2c"
    message = snmp_message(1, snmp.RESPONSE, V2_ID, value=b"y" * 300)
    assert snmp.decode_message(message).bindings[0][2] == b"y" * 300


# --------------------------------------------------------------------------- SSDP

MINIUPNPD = (
    b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: upnp:rootdevice\r\n"
    b"USN: uuid:8d2b1a10-0000-4000-8000-00000000a1b2::upnp:rootdevice\r\nEXT:\r\n"
    b"SERVER: Linux/5.10 UPnP/1.1 MiniUPnPd/2.3.0\r\n"
    b"LOCATION: http://198.18.0.2:5000/rootDesc.xml\r\n\r\n"
)

SSDP_CASES: list[Case] = [
    ("miniupnpd", MINIUPNPD,
     Evidence("ssdp", "Linux/5.10 UPnP/1.1 MiniUPnPd/2.3.0; ST upnp:rootdevice", "ssdp")),
    ("lower-case names, no server", b"HTTP/1.1 200 OK\nst: urn:schemas-upnp-org:device:"
     b"InternetGatewayDevice:1\nusn: uuid:x\n\n",
     Evidence("ssdp", "ST urn:schemas-upnp-org:device:InternetGatewayDevice:1", "ssdp")),
    ("usn only", b"HTTP/1.1 200 OK\r\nUSN: uuid:x\r\nServer: \x1b[31mred\r\n\r\n",
     Evidence("ssdp", "\\x1b[31mred", "ssdp")),
    ("our m-search echoed", ssdp.build_request(), None),
    ("http without ssdp fields", b"HTTP/1.1 200 OK\r\nServer: nginx\r\n\r\n", None),
    ("not 200", b"HTTP/1.1 404 Not Found\r\nST: upnp:rootdevice\r\n\r\n", None),
    ("notify", b"NOTIFY * HTTP/1.1\r\nNT: upnp:rootdevice\r\nUSN: uuid:x\r\n\r\n", None),
    ("empty", b"", None),
]  # fmt: skip


@pytest.mark.parametrize(("name", "data", "expected"), SSDP_CASES, ids=ids(SSDP_CASES))
def test_ssdp_parse_reply(name: str, data: bytes, expected: Evidence | None) -> None:
    run_cases(ssdp.parse_reply, data, expected)


def test_ssdp_request() -> None:
    start, fields = headers.parse_head(ssdp.build_request())
    assert start == b"M-SEARCH * HTTP/1.1"
    assert fields[b"man"] == b'"ssdp:discover"' and fields[b"st"] == b"ssdp:all"
    assert ssdp.build_request().endswith(b"\r\n\r\n")


HEAD_CASES = [
    (b"A\r\nX: 1\r\nx: 2\r\n\r\nY: body", b"A", {b"x": b"1"}),
    (b"A\nX: 1\n folded\nno colon\n: empty name\nZ:3", b"A", {b"x": b"1 folded", b"z": b"3"}),
    (b"", b"", {}),
]


@pytest.mark.parametrize(("data", "start", "fields"), HEAD_CASES)
def test_parse_head(data: bytes, start: bytes, fields: dict[bytes, bytes]) -> None:
    assert headers.parse_head(data) == (start, fields)


def test_parse_head_is_bounded() -> None:
    many = b"S\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(1000))
    _, fields = headers.parse_head(many)
    assert len(fields) <= headers.MAX_FIELDS
    _, fields = headers.parse_head(b"S\r\nBig: " + b"x" * 100_000)
    assert len(fields[b"big"]) < headers.MAX_HEAD


# --------------------------------------------------------------------------- SIP

ASTERISK = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP portprobe.invalid;branch=z9hG4bK-portprobe;received=198.18.0.1;"
    b"rport=40000\r\n"
    b"From: <sip:portprobe@portprobe.invalid>;tag=portprobe\r\n"
    b"To: <sip:portprobe.invalid>;tag=as1f2e3d4c\r\n"
    b"Call-ID: portprobe-5060@portprobe.invalid\r\nCSeq: 1 OPTIONS\r\n"
    b"Server: Asterisk PBX 18.10.0\r\nAllow: INVITE, ACK, CANCEL, OPTIONS, BYE\r\n"
    b"Content-Length: 0\r\n\r\n"
)

SIP_CASES: list[Case] = [
    ("asterisk 200", ASTERISK, Evidence("sip", "200 OK; Asterisk PBX 18.10.0", "sip",
     product="Asterisk PBX", version="18.10.0", rule="sip:options-response")),
    ("compact call-id, user-agent", b"SIP/2.0 403 Forbidden\r\ni: portprobe-5060@portprobe.invalid"
     b"\r\nUser-Agent: FRITZ!OS\r\n\r\n", Evidence("sip", "403 Forbidden; FRITZ!OS", "sip",
     product="FRITZ", rule="sip:options-response")),
    ("no reason phrase", b"SIP/2.0 404\r\nCall-ID: portprobe-5060@portprobe.invalid\r\n\r\n",
     Evidence("sip", "404", "sip", rule="sip:options-response")),
    ("our request echoed", sip.build_request(), None),
    ("another call-id", ASTERISK.replace(b"portprobe-5060@", b"other@"), None),
    ("no call-id", b"SIP/2.0 200 OK\r\nServer: x\r\n\r\n", None),
    ("bad status", ASTERISK.replace(b"SIP/2.0 200", b"SIP/2.0 2x0"), None),
    ("http", ASTERISK.replace(b"SIP/2.0", b"HTTP/1.1", 1), None),
    ("empty", b"", None),
]  # fmt: skip


@pytest.mark.parametrize(("name", "data", "expected"), SIP_CASES, ids=ids(SIP_CASES))
def test_sip_parse_reply(name: str, data: bytes, expected: Evidence | None) -> None:
    run_cases(sip.parse_reply, data, expected)


def test_sip_request_has_the_mandatory_fields() -> None:
    start, fields = headers.parse_head(sip.build_request())
    assert start == b"OPTIONS sip:portprobe.invalid SIP/2.0"
    for name in (b"via", b"max-forwards", b"to", b"from", b"call-id", b"cseq"):
        assert name in fields
    assert b"branch=z9hG4bK" in fields[b"via"] and fields[b"via"].endswith(b";rport")
    assert fields[b"content-length"] == b"0"


# --------------------------------------------------------------------------- NetBIOS

STAR = b"\x20CKAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\x00"


def nbstat_reply(*, ident: int = 0x7070, flags: int = 0x8400, name: bytes = STAR,
                 entries: tuple[tuple[bytes, int, int], ...] = (
                     (b"LABHOST", 0x00, 0x0400), (b"WORKGROUP", 0x00, 0x8400),
                     (b"LABHOST", 0x20, 0x0400)),
                 mac: bytes = bytes.fromhex("02005e101234")) -> bytes:  # fmt: skip
    """Samba nmbd's node status response (RFC 1002 4.2.18), written out."""
    rdata = (
        bytes((len(entries),))
        + b"".join(
            n.ljust(15, b" ") + bytes((suffix,)) + struct.pack("!H", fl)
            for n, suffix, fl in entries
        )
        + mac
        + bytes(40)
    )  # statistics: MAC, then counters
    return (
        struct.pack("!HHHHHH", ident, flags, 0, 1, 0, 0) + name
        + struct.pack("!HHIH", 0x21, 1, 0, len(rdata)) + rdata
    )  # fmt: skip


NETBIOS_CASES: list[Case] = [
    ("nmbd", nbstat_reply(), Evidence(
        "netbios-ns", "LABHOST<00>, WORKGROUP<00>/group, LABHOST<20>; MAC 02:00:5e:10:12:34",
        "netbios")),
    ("compressed name, no MAC", nbstat_reply(name=b"\xc0\x0c", entries=((b"PRINTER", 0x20, 0),),
                                             mac=bytes(6)),
     Evidence("netbios-ns", "PRINTER<20>", "netbios")),
    ("hostile name", nbstat_reply(entries=((b"\x1b[2JEVIL", 0, 0),)),
     Evidence("netbios-ns", "\\x1b[2JEVIL<00>; MAC 02:00:5e:10:12:34", "netbios")),
    ("our request echoed", netbios.build_request(), None),
    ("wrong id", nbstat_reply(ident=1), None),
    ("no response bit", nbstat_reply(flags=0x0400), None),
    ("error rcode", nbstat_reply(flags=0x8403), None),
    ("another record name", nbstat_reply(name=b"\x20" + b"E" * 32 + b"\x00"), None),
    ("truncated names", nbstat_reply()[:80], None),
    ("empty", b"", None),
]  # fmt: skip


@pytest.mark.parametrize(("name", "data", "expected"), NETBIOS_CASES, ids=ids(NETBIOS_CASES))
def test_netbios_parse_reply(name: str, data: bytes, expected: Evidence | None) -> None:
    run_cases(netbios.parse_reply, data, expected)


def test_netbios_request() -> None:
    assert netbios.build_request() == (
        b"\x70\x70\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00" + STAR + b"\x00\x21\x00\x01"
    )
    assert netbios.encode_name(b"LAB") == b"\x20EMEBEC" + b"AA" * 13 + b"\x00"
    with pytest.raises(ValueError):
        netbios.encode_name(b"x" * 17)


# --------------------------------------------------------------------------- IKE


def ike_reply(spi: bytes, *, responder: bytes = b"\x11" * 8, first: int, version: int,
              exchange: int, flags: int, payloads: bytes,
              length: int | None = None) -> bytes:  # fmt: skip
    size = 28 + len(payloads) if length is None else length
    return (
        struct.pack("!8s8sBBBBII", spi, responder, first, version, exchange, flags, 0, size)
        + payloads
    )


V1_SA = struct.pack("!BBHII", 13, 0, 12, 1, 1) + struct.pack("!BBH", 0, 0, 12) + b"\x00" * 8
V1_NO_PROPOSAL = struct.pack("!BBHIBBH", 0, 0, 12, 1, 1, 0, 14)
V2_SA = struct.pack("!BBH", 34, 0, 8) + b"\x00" * 4 + struct.pack("!BBH", 0, 0, 8) + b"\x00" * 4
V2_INVALID_KE = struct.pack("!BBHBBHH", 0, 0, 10, 0, 0, 17, 14)
V2_COOKIE = struct.pack("!BBHBBH", 0, 0, 8 + 16, 0, 0, 16390) + b"c" * 16

IKE_CASES: list[Case] = [
    ("v1 main mode SA", ike_reply(ike.V1_COOKIE, first=1, version=0x10, exchange=2, flags=0,
                                  payloads=V1_SA),
     Evidence("ike", "IKEv1; main mode; SA accepted", "ike")),
    ("v1 no proposal chosen", ike_reply(ike.V1_COOKIE, responder=bytes(8), first=11, version=0x10,
                                        exchange=5, flags=0, payloads=V1_NO_PROPOSAL),
     Evidence("ike", "IKEv1; informational; notify NO-PROPOSAL-CHOSEN", "ike")),
    ("v2 SA_INIT", ike_reply(ike.V2_SPI, first=33, version=0x20, exchange=34, flags=0x20,
                             payloads=V2_SA),
     Evidence("ike", "IKEv2; IKE_SA_INIT; SA accepted", "ike")),
    ("v2 invalid KE", ike_reply(ike.V2_SPI, responder=bytes(8), first=41, version=0x20,
                                exchange=34, flags=0x20, payloads=V2_INVALID_KE),
     Evidence("ike", "IKEv2; IKE_SA_INIT; notify INVALID-KE-PAYLOAD", "ike")),
    ("v2 cookie", ike_reply(ike.V2_SPI, responder=bytes(8), first=41, version=0x20, exchange=34,
                            flags=0x20, payloads=V2_COOKIE),
     Evidence("ike", "IKEv2; IKE_SA_INIT; notify COOKIE", "ike")),
    ("v2 header only", ike_reply(ike.V2_SPI, first=0, version=0x20, exchange=37, flags=0x20,
                                 payloads=b""),
     Evidence("ike", "IKEv2; INFORMATIONAL", "ike")),
    ("our v1 request echoed", ike.build_v1_request(), None),
    ("our v2 request echoed", ike.build_v2_request(), None),
    ("another cookie", ike_reply(b"\x01" * 8, first=1, version=0x10, exchange=2, flags=0,
                                 payloads=V1_SA), None),
    ("v1 cookie, v2 header", ike_reply(ike.V1_COOKIE, first=33, version=0x20, exchange=34,
                                       flags=0x20, payloads=V2_SA), None),
    ("bad length field", ike_reply(ike.V2_SPI, first=33, version=0x20, exchange=34, flags=0x20,
                                   payloads=V2_SA, length=20), None),
    ("truncated header", ike.V2_SPI + bytes(10), None),
    ("empty", b"", None),
]  # fmt: skip


@pytest.mark.parametrize(("name", "data", "expected"), IKE_CASES, ids=ids(IKE_CASES))
def test_ike_parse_reply(name: str, data: bytes, expected: Evidence | None) -> None:
    run_cases(ike.parse_reply, data, expected)


def _payload_chain(message: bytes) -> list[tuple[int, int]]:
    """(payload type, length) of each payload after the header, following next-payload."""
    kind, pos, chain = message[16], 28, []
    while kind:
        nxt, _, size = struct.unpack_from("!BBH", message, pos)
        chain.append((kind, size))
        kind, pos = nxt, pos + size
    assert pos == len(message)
    return chain


def test_ike_requests_are_well_formed() -> None:
    v1, v2 = ike.build_v1_request(), ike.build_v2_request()
    assert struct.unpack_from("!I", v1, 24)[0] == len(v1)
    assert struct.unpack_from("!I", v2, 24)[0] == len(v2)
    assert v1[:8] == ike.V1_COOKIE and v1[8:16] == bytes(8) and v1[17:19] == b"\x10\x02"
    assert v2[:8] == ike.V2_SPI and v2[17:20] == b"\x20\x22\x08"  # v2, IKE_SA_INIT, initiator
    assert [k for k, _ in _payload_chain(v1)] == [1]  # SA
    assert _payload_chain(v2) == [(33, 48), (34, 8 + 256), (40, 36)]  # SA, KE, nonce


# --------------------------------------------------------------------------- memcached

MEMCACHED_CASES: list[Case] = [
    ("version", b"\x70\x70\x00\x00\x00\x01\x00\x00VERSION 1.6.21\r\n",
     Evidence("memcached", "1.6.21", "memcached")),
    ("error", b"\x70\x70\x00\x00\x00\x01\x00\x00SERVER_ERROR out of memory\r\n",
     Evidence("memcached", "SERVER_ERROR out of memory", "memcached")),
    ("our request echoed", memcached.build_request(), None),
    ("wrong request id", b"\x00\x01\x00\x00\x00\x01\x00\x00VERSION 1.6.21\r\n", None),
    ("second datagram", b"\x70\x70\x00\x01\x00\x02\x00\x00VERSION 1.6.21\r\n", None),
    ("reserved set", b"\x70\x70\x00\x00\x00\x01\x00\x01VERSION 1.6.21\r\n", None),
    ("no line end", b"\x70\x70\x00\x00\x00\x01\x00\x00VERSION 1.6.21", None),
    ("tcp-style, no frame", b"VERSION 1.6.21\r\n", None),
    ("empty", b"", None),
]  # fmt: skip


@pytest.mark.parametrize(("name", "data", "expected"), MEMCACHED_CASES, ids=ids(MEMCACHED_CASES))
def test_memcached_parse_reply(name: str, data: bytes, expected: Evidence | None) -> None:
    run_cases(memcached.parse_reply, data, expected)


def test_memcached_request() -> None:
    assert memcached.build_request() == b"\x70\x70\x00\x00\x00\x01\x00\x00version\r\n"


# --------------------------------------------------------------------------- ONC RPC


def words(*values: int) -> bytes:
    return struct.pack(f"!{len(values)}I", *values)


MAPPINGS = (words(1, 100000, 2, 6, 111) + words(1, 100000, 2, 17, 111)
            + words(1, 100003, 3, 6, 2049) + words(1, 390113, 1, 6, 7937) + words(0))  # fmt: skip
RPC_OK = words(rpc.XID, 1, 0, 0, 0, 0) + MAPPINGS

RPC_CASES: list[Case] = [
    ("rpcbind dump", RPC_OK, Evidence(
        "rpcbind", "portmapper v2; 4 mappings: portmapper v2 tcp 111, portmapper v2 udp 111, "
        "nfs v3 tcp 2049, 390113 v1 tcp 7937", "rpc")),
    ("verifier with a body", words(rpc.XID, 1, 0, 1, 6) + b"abcdef\x00\x00" + words(0)
     + words(1, 100024, 1, 17, 40000, 0),
     Evidence("rpcbind", "portmapper v2; 1 mapping: status v1 udp 40000", "rpc")),
    ("empty list", words(rpc.XID, 1, 0, 0, 0, 0, 0), Evidence("rpcbind", "portmapper v2", "rpc")),
    ("list cut short", RPC_OK[:50], Evidence(
        "rpcbind", "portmapper v2; 1 mapping: portmapper v2 tcp 111", "rpc")),
    ("program unavailable", words(rpc.XID, 1, 0, 0, 0, 1),
     Evidence("rpc", "program unavailable", "rpc")),
    ("denied", words(rpc.XID, 1, 1, 0, 2, 2), Evidence("rpc", "call denied", "rpc")),
    ("our call echoed", rpc.build_request(), None),
    ("wrong xid", words(1, 1, 0, 0, 0, 0, 0), None),
    ("bad reply status", words(rpc.XID, 1, 2, 0, 0, 0, 0), None),
    ("verifier too long", words(rpc.XID, 1, 0, 0, 5000, 0), None),
    ("no accept status", words(rpc.XID, 1, 0, 0, 0), None),
    ("empty", b"", None),
]  # fmt: skip


@pytest.mark.parametrize(("name", "data", "expected"), RPC_CASES, ids=ids(RPC_CASES))
def test_rpc_parse_reply(name: str, data: bytes, expected: Evidence | None) -> None:
    run_cases(rpc.parse_reply, data, expected)


def test_rpc_request() -> None:
    # XID, CALL, RPC v2, portmapper, v2, DUMP, AUTH_NONE credential and verifier.
    assert rpc.build_request() == words(rpc.XID, 0, 2, 100000, 2, 4, 0, 0, 0, 0)


# --------------------------------------------------------------------------- udp: the table

PORT_NAMES = {
    7: ["echo"], 53: ["dns-version", "dns"], 111: ["rpcbind"], 123: ["ntp"], 137: ["netbios-ns"],
    161: ["snmp-v1", "snmp-v2c"], 500: ["ike-v1", "ike-v2"], 1900: ["ssdp"], 5060: ["sip"],
    5353: ["mdns"], 11211: ["memcached"], 9999: ["generic"], 1: ["generic"], 65535: ["generic"],
}  # fmt: skip


@pytest.mark.parametrize(("port", "names"), sorted(PORT_NAMES.items()))
def test_probes_for(port: int, names: list[str]) -> None:
    probes = udp.probes_for(port)
    assert [p.name for p in probes] == names
    assert probes is udp.probes_for(port)  # built once, not per call


def test_generic_probe_is_an_empty_datagram() -> None:
    assert udp.probes_for(9999) == (udp.GENERIC,)
    assert udp.GENERIC.payload == b""


def test_every_payload_is_distinct_and_fits_a_datagram() -> None:
    payloads = [p.payload for probes in udp.PORT_PROBES.values() for p in probes]
    assert len(set(payloads)) == len(payloads)
    assert all(0 < len(p) <= 512 for p in payloads)  # fits any path's MTU, DNS's old limit too


def test_no_decoder_accepts_its_own_payload() -> None:
    """An echo of a probe must never pass for the protocol it asks for."""
    for probes in udp.PORT_PROBES.values():
        for probe in probes:
            for other in probes:
                assert other.decode(probe.payload) is None or other.name == "echo", probe.name


#: A good reply for each specific port, and what identify makes of it.
REPLIES: list[tuple[int, bytes, str]] = [
    (53, DNS_CASES[0][1], "dns"), (5353, MDNS_CASES[0][1], "mdns"), (123, ntp_reply(), "ntp"),
    (161, v2c_reply(), "snmp"), (161, snmp_message(0, snmp.RESPONSE, V1_ID), "snmp"),
    (1900, MINIUPNPD, "ssdp"), (137, nbstat_reply(), "netbios-ns"), (500, IKE_CASES[0][1], "ike"),
    (500, IKE_CASES[2][1], "ike"), (5060, ASTERISK, "sip"),
    (11211, MEMCACHED_CASES[0][1], "memcached"),
    (111, RPC_OK, "rpcbind"),
]  # fmt: skip


@pytest.mark.parametrize(("port", "reply", "service"), REPLIES)
def test_identify_specific(port: int, reply: bytes, service: str) -> None:
    found = udp.identify(port, reply)
    assert found.service == service
    assert_clean(found)
    # The same bytes on a port that did not ask for them prove nothing specific.
    assert udp.identify(9999, reply).service == ""


IDENTIFY_CASES: list[tuple[int, bytes, Evidence]] = [
    (7, udp.ECHO_PAYLOAD, Evidence("echo", "echoed our 22-byte datagram", "echo")),
    (53, QUERY, Evidence("echo", f"echoed our {len(QUERY)}-byte datagram", "echo")),
    (161, snmp.build_request(1), Evidence("echo", "echoed our 43-byte datagram", "echo")),
    (9999, b"", Evidence("echo", "echoed our 0-byte datagram", "echo")),
    (7, b"something else\r\n", Evidence("", "something else", "udp")),
    (53, b"", Evidence("", "empty datagram", "udp")),
    (9999, b"\x00\x01\x02\x03", Evidence("", "4 bytes: 00010203", "udp")),
    (9999, b"\x1b[2Jhello\r\n", Evidence("", "\\x1b[2Jhello", "udp")),
    (123, b"\x00" * 48, Evidence("", "48 bytes: 00000000000000000000000000000000...", "udp")),
]  # fmt: skip


@pytest.mark.parametrize(("port", "reply", "expected"), IDENTIFY_CASES)
def test_identify(port: int, reply: bytes, expected: Evidence) -> None:
    found = udp.identify(port, reply)
    assert found == expected
    assert_clean(found)


# --------------------------------------------------------------------------- hypothesis

DECODERS: dict[str, Decoder] = {
    "dns.parse_reply": pdns.parse_reply,
    "dns.parse_mdns_reply": pdns.parse_mdns_reply,
    "ntp.parse_reply": ntp.parse_reply,
    "snmp.parse_reply": snmp.parse_reply,
    "ssdp.parse_reply": ssdp.parse_reply,
    "netbios.parse_reply": netbios.parse_reply,
    "ike.parse_reply": ike.parse_reply,
    "sip.parse_reply": sip.parse_reply,
    "memcached.parse_reply": memcached.parse_reply,
    "rpc.parse_reply": rpc.parse_reply,
}

# Prefixes that get decoders past their first checks: valid headers, IDs and cookies.
PREFIXES = [
    b"", DNS_CASES[0][1][:12], DNS_CASES[0][1][:40], MDNS_CASES[0][1][:12], ntp_reply()[:44],
    ntp_reply()[:24] + ntp.NONCE, v2c_reply()[:20], b"\x30\x82\x01\x00\x02\x01\x01\x04\x06public",
    b"HTTP/1.1 200 OK\r\nST: ", b"SIP/2.0 200 OK\r\nCall-ID: portprobe-5060@portprobe.invalid\r\n",
    nbstat_reply()[:56], nbstat_reply()[:12] + b"\xc0\x0c\x00\x21\x00\x01",
    IKE_CASES[0][1][:28], IKE_CASES[3][1][:28], b"\x70\x70\x00\x00\x00\x01\x00\x00",
    RPC_OK[:24], RPC_OK[:12],
]  # fmt: skip
ANY_BYTES = st.builds(lambda p, b: p + b, st.sampled_from(PREFIXES), st.binary(max_size=600))
# Good replies with a few bytes changed.
GOOD = [c[1] for cases in (DNS_CASES, NTP_CASES, SNMP_CASES, SSDP_CASES, NETBIOS_CASES, IKE_CASES,
                           SIP_CASES, MEMCACHED_CASES, RPC_CASES)
        for c in cases if c[2]]  # fmt: skip


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(GOOD)))
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


@pytest.mark.parametrize("name", sorted(DECODERS))
@given(data=st.one_of(ANY_BYTES, mangled()))
def test_decoders_never_raise_and_stay_clean(name: str, data: bytes) -> None:
    found = DECODERS[name](data)
    assert found is None or isinstance(found, Evidence)
    assert_clean(found)


@given(port=st.sampled_from([*udp.PORT_PROBES, 9999]), data=st.one_of(ANY_BYTES, mangled()))
def test_identify_never_raises_and_stays_clean(port: int, data: bytes) -> None:
    found = udp.identify(port, data)
    assert isinstance(found, Evidence) and found.proof
    assert_clean(found)


@given(port=st.integers(0, 65535))
def test_every_port_gets_a_probe(port: int) -> None:
    probes = udp.probes_for(port)
    assert probes and all(isinstance(p, udp.UdpProbe) for p in probes)


@pytest.mark.parametrize(
    "module_name",
    [f"scanner.protocols.{m}" for m in
     ("dns", "headers", "ike", "memcached", "netbios", "ntp", "rpc", "sip", "snmp", "ssdp", "udp")],
)  # fmt: skip
def test_public_names_exist_and_are_documented(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert module.__doc__ and "Rules and theory" in module.__doc__
    assert "RFC" in module.__doc__ or module_name.endswith(("udp", "memcached", "ssdp"))
    for name in module.__all__:
        obj = getattr(module, name)
        if callable(obj):
            assert obj.__doc__, f"{module_name}.{name} has no docstring"
