"""Codecs of the second batch of TCP probes: SMB2, RDP, Kerberos, X11, telnet, IRC, XMPP,
NATS, SIP over TCP, RTSP, MSSQL, Java RMI, HTTP/2 and gRPC, rsync, HTTP products.

Replies from real daemons are read from ``tests/data/daemons-b/`` (captured in the lab,
see its README); protocols without a Debian server (RTSP, MSSQL, gRPC, the HTTP APIs) use
bytes built from their specifications or documented responses, said so at each table.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from pathlib import Path

import hpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_protocols import assert_clean

from scanner.protocols import (
    DETAIL_LIMIT,
    Evidence,
    banner,
    h2,
    http,
    http_products,
    irc,
    kerberos,
    mssql,
    nats,
    rdp,
    rmi,
    rtsp,
    sip,
    smb2,
    telnet,
    x11,
    xmpp,
)
from scanner.protocols.software import split_software
from scanner.protocols.tcp import TcpProbe

DATA = Path(__file__).resolve().parent / "data" / "daemons-b"
MODULES = (smb2, rdp, kerberos, x11, telnet, irc, xmpp, nats, rmi, sip, rtsp, mssql, h2)
PROBES: tuple[TcpProbe, ...] = tuple(p for m in MODULES for p in m.TCP_PROBES)
DECODERS: dict[str, Callable[[bytes], Evidence | None]] = {p.name: p.decode for p in PROBES}


def captured(name: str) -> bytes:
    """A reply captured from a real daemon (tests/data/daemons-b/<name>.bin)."""
    return (DATA / f"{name}.bin").read_bytes()


def ev(service: str, detail: str, proof: str, **trail: str) -> Evidence:
    """An Evidence with its trail (product, version, rule) by keyword."""
    return Evidence(service, detail, proof, **trail)


# --------------------------------------------------------------------------- real daemons

#: (capture, probe whose decoder reads it, expected evidence)
CAPTURED: list[tuple[str, str, Evidence | None]] = [
    ("smbd-negotiate", "smb2",
     ev("smb", "SMB 3.1.1; signing required", "smb2", rule="smb2:negotiate")),
    ("krb5kdc-krb-error", "kerberos",
     ev("kerberos", "KRB-ERROR 6 C_PRINCIPAL_UNKNOWN; CLIENT_NOT_FOUND", "kerberos",
        rule="kerberos:krb-error")),
    ("xrdp-confirm", "rdp", ev("rdp", "selected TLS", "rdp", rule="rdp:negotiation-response")),
    ("xvfb-setup-success", "x11",
     ev("x11", "X11.0 open (no authentication); The X.Org Foundation; release 21.1.7; 1 screen",
        "x11", product="The X.Org Foundation", version="21.1.7", rule="x11:setup-success")),
    ("xvfb-setup-failed", "x11",
     ev("x11", "X11.0 refused; Authorization required, but no authorization protocol specified",
        "x11", rule="x11:setup-failed")),
    ("telnetd-silent", "telnet", None),  # the first negotiation only: wait for more
    ("telnetd-refused", "telnet",
     ev("telnet", "DO TTYPE TSPEED XDISPLOC NEW-ENVIRON ENVIRON ECHO LINEMODE NAWS LFLOW; "
        "WILL AUTHENTICATION ENCRYPT SGA STATUS", "telnet", rule="telnet:negotiation")),
    ("telnetd-interactive", "telnet",
     ev("telnet", "Linux 6.18.44-fc-v657 (localhost) (pts/0) | vm login:", "telnet",
        rule="telnet:negotiation+prompt")),
    ("ngircd-welcome", "irc",
     ev("irc", "irc.portprobe.test; ngircd-26.1", "irc", product="ngircd", version="26.1",
        rule="irc:myinfo")),
    ("prosody-features", "xmpp",
     ev("xmpp", "from 198.18.0.2; version 1.0; SASL PLAIN SCRAM-SHA-1", "xmpp",
        rule="xmpp:stream-features")),
    ("nats-info", "nats",
     ev("nats", "nats-server 2.9.10; go1.19.8; name portprobe-lab", "nats",
        product="nats-server", version="2.9.10", rule="nats:info")),
    ("rmiregistry-ack", "rmi",
     ev("java-rmi", "ProtocolAck; sees us as 198.18.0.1:53024", "rmi", rule="rmi:protocol-ack")),
    ("kamailio-options", "sip-tcp",
     ev("sip", "200 OK; kamailio (5.6.3 (x86_64/linux))", "sip-tcp", product="kamailio",
        version="5.6.3", rule="sip:options-response")),
    ("nginx-h2c-settings", "http2",
     ev("http2", "HTTP/2; settings max_concurrent_streams=128 initial_window_size=65536 "
        "max_frame_size=16777215", "http2", rule="h2:server-settings")),
    ("nginx-h2c-grpc", "grpc",
     ev("http2", "HTTP/2; nginx/1.22.1; 200", "grpc", product="nginx", version="1.22.1",
        rule="h2:response")),
]  # fmt: skip


@pytest.mark.parametrize(("name", "probe", "expected"), CAPTURED, ids=[c[0] for c in CAPTURED])
def test_captured_replies(name: str, probe: str, expected: Evidence | None) -> None:
    found = DECODERS[probe](captured(name))
    assert found == expected
    assert_clean(found)


@pytest.mark.parametrize(("name", "probe", "expected"), CAPTURED, ids=[c[0] for c in CAPTURED])
def test_captured_replies_cut_short_prove_nothing_wrong(
    name: str, probe: str, expected: Evidence | None
) -> None:
    """Every prefix of a real reply gives None or the service the whole gives: a decoder
    never names a protocol from a half-read reply that the whole would not."""
    data = captured(name)
    for cut in range(len(data)):
        found = DECODERS[probe](data[:cut])
        assert found is None or (expected is not None and found.service == expected.service), cut


def test_captured_replies_prove_only_their_own_protocol() -> None:
    """No decoder takes another protocol's real reply for its own."""
    for name, own, _ in CAPTURED:
        data = captured(name)
        for probe, decode in DECODERS.items():
            same = {own, probe} <= {"http2", "grpc"} or {own, probe} == {"telnet"}
            if probe != own and not same:
                assert decode(data) is None, (name, probe)


def test_captured_greetings_of_the_banner_rules() -> None:
    """rsync 3.x's greeting (protocol 32 with digests) and telnetd's first negotiation."""
    assert banner.classify(captured("rsyncd-greeting")) == ev(
        "rsync", "protocol 32.0; digests sha512 sha256 sha1 md5 md4", "banner",
        product="rsync", rule="banner:rsync",
    )  # fmt: skip
    assert banner.classify(captured("telnetd-silent")) == ev(
        "telnet", "", "banner", rule="banner:telnet"
    )
    assert nats.parse_reply(captured("rsyncd-greeting")) is None


# --------------------------------------------------------------------------- requests


def test_probes_are_named_once_and_build_bytes() -> None:
    names = [p.name for p in PROBES]
    assert len(names) == len(set(names))
    for probe in PROBES:
        for host, port in (("198.18.0.2", 445), ("2001:db8::2", 6000)):
            request = probe.request(host, port)
            assert isinstance(request, bytes)
            assert len(request) < 1024
        assert 0 < probe.max_reply <= 64 * 1024


def test_smb2_request() -> None:
    request = smb2.build_request()
    assert request[0] == 0 and int.from_bytes(request[1:4], "big") == len(request) - 4
    assert request[4:8] == b"\xfeSMB"
    body = request[4 + 64 :]
    structure, count = struct.unpack_from("<HH", body)
    assert (structure, count) == (36, len(smb2.DIALECTS))
    offset = struct.unpack_from("<I", body, 28)[0]
    assert offset % 8 == 0
    assert request[4 + offset : 4 + offset + 2] == b"\x01\x00"  # preauth integrity first


def test_rdp_request() -> None:
    request = rdp.build_request()
    assert request[:4] == b"\x03\x00\x00\x13" and len(request) == 19
    assert request[5] == 0xE0  # Connection Request
    assert request[-4:] == b"\x03\x00\x00\x00"  # TLS | CredSSP


def test_kerberos_request_is_length_prefixed_der() -> None:
    request = kerberos.build_request()
    assert int.from_bytes(request[:4], "big") == len(request) - 4
    assert request[4] == 0x6A  # [APPLICATION 10] AS-REQ
    assert kerberos.REALM in request


def test_x11_request() -> None:
    assert x11.build_request() == b"l\x00\x0b\x00\x00\x00\x00\x00\x00\x00\x00\x00"


def test_mssql_request() -> None:
    request = mssql.build_request()
    assert request[0] == 0x12 and int.from_bytes(request[2:4], "big") == len(request)


def test_xmpp_request_names_the_address_and_nothing_else() -> None:
    assert b"to='198.18.0.2'" in xmpp.build_request("198.18.0.2")
    assert b"to='2001:db8::2'" in xmpp.build_request("2001:db8::2")
    assert b"<evil" not in xmpp.build_request("<evil'/>")


def test_h2_requests() -> None:
    assert h2.build_request().startswith(h2.PREFACE)
    frames = h2.parse_frames(h2.build_grpc_request("198.18.0.2", 50051)[len(h2.PREFACE) :])
    assert frames is not None
    assert [f.kind for f in frames] == [4, 1, 0]
    headers = dict(hpack.Decoder().decode(frames[1].payload))
    assert headers[":path"] == h2.GRPC_PATH.decode()
    assert headers["content-type"] == "application/grpc"
    assert headers[":authority"] == "198.18.0.2:50051"


# --------------------------------------------------------------------------- spec bytes


def _tds_prelogin(version: bytes, encryption: int) -> bytes:
    """A PRELOGIN response as MS-TDS 2.2.6.5 lays it out (no Debian SQL Server to ask)."""
    options = [(0, version), (1, bytes((encryption,))), (2, b"\x00"), (3, b""), (4, b"\x00")]
    offset, table, data = len(options) * 5 + 1, b"", b""
    for token, value in options:
        table += struct.pack(">BHH", token, offset + len(data), len(value))
        data += value
    payload = table + b"\xff" + data
    return struct.pack(">BBHHBB", 0x04, 0x01, 8 + len(payload), 0, 1, 0) + payload


MSSQL_2019 = _tds_prelogin(bytes.fromhex("0f0007d00000"), 0)
MSSQL_CASES: list[tuple[str, bytes, Evidence | None]] = [
    ("2019", MSSQL_2019, ev("mssql", "15.0.2000 (SQL Server 2019); encryption off", "mssql",
                            product="Microsoft SQL Server", version="15.0.2000",
                            rule="mssql:prelogin")),
    ("2022 tls required", _tds_prelogin(bytes.fromhex("100010f90000"), 3),
     ev("mssql", "16.0.4345 (SQL Server 2022); encryption required", "mssql",
        product="Microsoft SQL Server", version="16.0.4345", rule="mssql:prelogin")),
    ("cut", MSSQL_2019[:-3], None),
    ("not a response", b"\x12" + MSSQL_2019[1:], None),
    ("offset past the end", MSSQL_2019[:8] + b"\x00\x00\xff\x00\x06\xff" + MSSQL_2019[14:], None),
]  # fmt: skip


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in MSSQL_CASES],
                         ids=[c[0] for c in MSSQL_CASES])  # fmt: skip
def test_mssql(data: bytes, expected: Evidence | None) -> None:
    assert mssql.parse_reply(data) == expected


# RFC 2326 10.1's example response, with our CSeq; and servers' Server fields.
RTSP_CASES: list[tuple[str, bytes, Evidence | None]] = [
    ("rfc 2326", b"RTSP/1.0 200 OK\r\nCSeq: 7070\r\nPublic: DESCRIBE, SETUP, TEARDOWN, PLAY, "
     b"PAUSE\r\n\r\n", ev("rtsp", "200 OK; DESCRIBE, SETUP, TEARDOWN, PLAY, PAUSE", "rtsp",
                          rule="rtsp:options-response")),
    ("gstreamer", b"RTSP/1.0 200 OK\r\nCSeq: 7070\r\nServer: GStreamer RTSP server\r\n"
     b"Public: OPTIONS, DESCRIBE\r\n\r\n",
     ev("rtsp", "200 OK; GStreamer RTSP server; OPTIONS, DESCRIBE", "rtsp", product="GStreamer",
        rule="rtsp:options-response")),
    ("unauthorized", b"RTSP/1.0 401 Unauthorized\r\nCSeq: 7070\r\nServer: Hipcam RealServer/V1.0"
     b"\r\n\r\n", ev("rtsp", "401 Unauthorized; Hipcam RealServer/V1.0", "rtsp",
                     product="Hipcam RealServer", version="1.0", rule="rtsp:options-response")),
    ("head not complete", b"RTSP/1.0 200 OK\r\nCSeq: 7070\r\n", None),
    ("other cseq", b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n", None),
    ("http mirror", b"HTTP/1.1 400 Bad Request\r\nCSeq: 7070\r\n\r\n", None),
]  # fmt: skip


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in RTSP_CASES],
                         ids=[c[0] for c in RTSP_CASES])  # fmt: skip
def test_rtsp(data: bytes, expected: Evidence | None) -> None:
    assert rtsp.parse_reply(data) == expected


def test_rtsp_request() -> None:
    assert rtsp.build_request().startswith(b"OPTIONS * RTSP/1.0\r\nCSeq: 7070\r\n")


def _h2_frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (
        len(payload).to_bytes(3, "big")
        + bytes((kind, flags))
        + stream.to_bytes(4, "big")
        + (payload)
    )


SERVER_SETTINGS = _h2_frame(4, 0, 0, struct.pack(">HI", 3, 100))


def _grpc_reply(headers: list[tuple[str, str]], *, split: bool = False) -> bytes:
    """A server's answer as the gRPC PROTOCOL-HTTP2 document lays it out (Huffman-coded)."""
    block = hpack.Encoder().encode(headers)
    if not split:
        return SERVER_SETTINGS + _h2_frame(1, 0x4 | 0x1, 1, block)
    return SERVER_SETTINGS + _h2_frame(1, 0x1, 1, block[:3]) + _h2_frame(9, 0x4, 1, block[3:])


GRPC_TRAILERS_ONLY = [
    (":status", "200"),
    ("content-type", "application/grpc"),
    ("grpc-status", "12"),
    ("grpc-message", "unknown service grpc.health.v1.Health"),
]
GRPC_CASES: list[tuple[str, bytes, Evidence | None]] = [
    ("unimplemented", _grpc_reply(GRPC_TRAILERS_ONLY),
     ev("grpc", "grpc-status 12 UNIMPLEMENTED; unknown service grpc.health.v1.Health", "grpc",
        rule="h2:grpc-content-type")),
    ("continuation", _grpc_reply(GRPC_TRAILERS_ONLY, split=True),
     ev("grpc", "grpc-status 12 UNIMPLEMENTED; unknown service grpc.health.v1.Health", "grpc",
        rule="h2:grpc-content-type")),
    ("serving", _grpc_reply([(":status", "200"), ("content-type", "application/grpc+proto"),
                             ("server", "grpc-go/1.60.1")]),
     ev("grpc", "grpc-go/1.60.1", "grpc", product="grpc-go", version="1.60.1",
        rule="h2:grpc-content-type")),
    ("refused stream", SERVER_SETTINGS + _h2_frame(3, 0, 1, (7).to_bytes(4, "big")),
     ev("http2", "HTTP/2; stream refused REFUSED_STREAM", "grpc", rule="h2:rst-stream")),
    ("goaway", SERVER_SETTINGS + _h2_frame(7, 0, 0, bytes(4) + (1).to_bytes(4, "big")),
     ev("http2", "HTTP/2; goaway PROTOCOL_ERROR", "grpc", rule="h2:goaway")),
    ("settings only", SERVER_SETTINGS, None),
    ("continuation missing", _grpc_reply(GRPC_TRAILERS_ONLY, split=True)[:-20], None),
    ("headers first", _h2_frame(1, 0x4, 1, b"\x88"), None),
    ("broken hpack", SERVER_SETTINGS + _h2_frame(1, 0x4, 1, b"\xff\xff\xff\xff\xff"), None),
    ("http/1.1", b"HTTP/1.1 400 Bad Request\r\n\r\n", None),
]  # fmt: skip


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in GRPC_CASES],
                         ids=[c[0] for c in GRPC_CASES])  # fmt: skip
def test_grpc(data: bytes, expected: Evidence | None) -> None:
    assert h2.parse_grpc_reply(data) == expected


def test_h2_server_preface_is_the_first_frame_only() -> None:
    assert h2.parse_server_frames(SERVER_SETTINGS) == ev(
        "http2", "HTTP/2; settings max_concurrent_streams=100", "http2", rule="h2:server-settings"
    )
    assert h2.parse_server_frames(_h2_frame(4, 1, 0, b"")) is None  # an ACK is not a preface
    assert h2.parse_server_frames(_h2_frame(6, 0, 0, bytes(8)) + SERVER_SETTINGS) is None
    assert h2.parse_server_frames(_h2_frame(4, 0, 0, b"\x00" * 5)) is None
    assert h2.parse_frames((1 << 20).to_bytes(3, "big") + bytes(6)) is None  # too long


TELNET_PROMPT = (
    b"\xff\xfd\x18\xff\xfd\x20\xff\xfb\x01\xff\xfb\x03"
    b"\r\nDebian GNU/Linux 12\r\n\r\nlab login: "
)  # a Linux telnetd after its negotiation: /etc/issue.net, then login's prompt

IRC_CASES: list[tuple[str, bytes, Evidence | None]] = [
    ("notice first, then refusal", b":irc.example.net NOTICE * :*** Looking up your hostname\r\n"
     b"ERROR :Closing Link: 198.18.0.1 (Banned)\r\n",
     ev("irc", "irc.example.net; refused; Closing Link: 198.18.0.1 (Banned)", "irc",
        rule="irc:error")),
    ("ping cookie", b"NOTICE AUTH :*** Processing connection to irc.example.net\r\n"
     b"PING :4D2A1F0E\r\n", ev("irc", "PING before registration", "irc", rule="irc:ping")),
    ("numerics then not irc", b":irc.example.net 002 portprobe :Your host is irc.example.net, "
     b"running version hybrid-8.2.43\r\n\x00\x01\r\n",
     ev("irc", "irc.example.net; Your host is irc.example.net, running version hybrid-8.2.43",
        "irc", rule="irc:server-message")),
    ("banned numeric", b":irc.example.net 465 portprobe :You are banned from this server\r\n",
     ev("irc", "irc.example.net; refused 465; You are banned from this server", "irc",
        rule="irc:refused")),
    ("unreal", b":irc.example.net 004 portprobe irc.example.net UnrealIRCd-6.1.2 "
     b"iowrsxzdHtIDZRqpWGTSB lvhopsmntikraqbeIHzMQNRTOVKDdGLPZSCcf\r\n",
     ev("irc", "irc.example.net; UnrealIRCd-6.1.2", "irc", product="UnrealIRCd", version="6.1.2",
        rule="irc:myinfo")),
    ("only notices so far", b"NOTICE AUTH :*** Looking up your hostname...\r\n", None),
    ("line not complete", b":irc.example.net 004 portprobe irc.example.net ngircd-26", None),
    ("smtp", b"220 mail.example.com ESMTP\r\n", None),
]  # fmt: skip


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in IRC_CASES],
                         ids=[c[0] for c in IRC_CASES])  # fmt: skip
def test_irc(data: bytes, expected: Evidence | None) -> None:
    assert irc.parse_reply(data) == expected


XMPP_UNKNOWN_HOST = (
    b"<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' "
    b"xmlns='jabber:client' version='1.0' id='x' from='example.org'><stream:error>"
    b"<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"
)  # RFC 6120 4.9.3.6's shape

SMALL_CASES: list[tuple[str, Callable[[bytes], Evidence | None], bytes, Evidence | None]] = [
    ("telnet prompt", telnet.parse_reply, TELNET_PROMPT,
     ev("telnet", "Debian GNU/Linux 12 | lab login:", "telnet", rule="telnet:negotiation+prompt")),
    ("telnet text, no negotiation", telnet.parse_reply, b"login: ", None),
    ("xmpp host-unknown", xmpp.parse_reply, XMPP_UNKNOWN_HOST,
     ev("xmpp", "from example.org; version 1.0; stream error host-unknown", "xmpp",
        rule="xmpp:stream-error")),
    ("xmpp header only", xmpp.parse_reply, captured("prosody-features")[:260], None),
    ("xmpp wrong namespace", xmpp.parse_reply,
     captured("prosody-features").replace(b"etherx.jabber.org", b"example.org"), None),
    ("rdp failure", rdp.parse_reply, bytes.fromhex("030000130ed000001234000300080002000000"),
     ev("rdp", "negotiation failure: SSL not allowed by server", "rdp",
        rule="rdp:negotiation-failure")),
    ("rdp old server", rdp.parse_reply, bytes.fromhex("0300000b06d00000123400"),
     ev("rdp", "no negotiation", "rdp", rule="rdp:x224-confirm")),
    ("smb1 only", smb2.parse_reply, b"\x00\x00\x00\x23\xffSMB" + bytes(31),
     ev("smb", "SMB1", "smb2", rule="smb2:smb1-reply")),
    ("smb2 refused", smb2.parse_reply,
     captured("smbd-negotiate")[:12] + b"\x22\x00\x00\xc0" + captured("smbd-negotiate")[16:],
     ev("smb", "SMB2 negotiate refused (status 0xc0000022)", "smb2",
        rule="smb2:negotiate-error")),
    ("nats auth", nats.parse_reply, b'INFO {"server_id":"N1","version":"2.10.7","auth_required":'
     b'true,"tls_required":true}\r\n',
     ev("nats", "nats-server 2.10.7; auth and tls required", "nats", product="nats-server",
        version="2.10.7", rule="nats:info")),
    ("nats json list", nats.parse_reply, b"INFO [1,2]\r\n", None),
    ("nats not json", nats.parse_reply, b"INFO server ready\r\n", None),
    ("rmi not supported", rmi.parse_reply, b"\x4f", ev("java-rmi", "ProtocolNotSupported", "rmi",
                                                       rule="rmi:not-supported")),
    ("rmi bad host", rmi.parse_reply, b"\x4e\x00\x03a\x1bb\x00\x00\x00\x01", None),
    ("x11 authenticate", x11.parse_reply,
     b"\x02\x00\x00\x00\x00\x00\x04\x00" + b"need MIT-MAGIC\x00\x00",
     ev("x11", "X11 authentication required; need MIT-MAGIC", "x11",
        rule="x11:setup-authenticate")),
    ("x11 authenticate, binary", x11.parse_reply,
     b"\x02\x00\x00\x00\x00\x00\x01\x00\x01\x02\x03\x04", None),
    ("x11 wrong major", x11.parse_reply, b"\x01\x00\x0a\x00" + captured("xvfb-setup-success")[4:],
     None),
    ("kerberos as-rep", kerberos.parse_reply,
     (lambda m: len(m).to_bytes(4, "big") + m)(
         b"\x6b\x16\x30\x14\xa0\x03\x02\x01\x05\xa1\x03\x02\x01\x0b\xa3\x08\x1b\x06LAB.EX"),
     ev("kerberos", "AS-REP; realm LAB.EX", "kerberos", rule="kerberos:as-rep")),
    ("kerberos length past the message", kerberos.parse_reply,
     b"\x00\x00\x00\x06\x7e\x84\xff\xff\xff\xff", None),
]  # fmt: skip


@pytest.mark.parametrize(("decode", "data", "expected"), [c[1:] for c in SMALL_CASES],
                         ids=[c[0] for c in SMALL_CASES])  # fmt: skip
def test_decoder_cases(
    decode: Callable[[bytes], Evidence | None], data: bytes, expected: Evidence | None
) -> None:
    assert decode(data) == expected


def test_x11_versions() -> None:
    assert x11.xorg_version(12101007) == "21.1.7"
    assert x11.xorg_version(11906000) == "1.19.6"
    assert x11.xorg_version(12004000) == "1.20.4"


# --------------------------------------------------------------------------- banner products

BANNER_PRODUCTS: list[tuple[bytes, str, str, str]] = [
    (b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", "OpenSSH", "9.2p1", "banner:ssh"),
    (b"SSH-2.0-dropbear_2022.83\r\n", "dropbear", "2022.83", "banner:ssh"),
    (b"220 mx.example.net ESMTP Exim 4.96 Tue, 05 Mar 2024 10:00:00 +0000\r\n", "Exim", "4.96",
     "banner:smtp"),
    (b"220 mail.example.org ESMTP Postfix (Debian/GNU)\r\n", "Postfix", "", "banner:smtp"),
    (b"220 mx.example.com ESMTP Sendmail 8.17.1/8.17.1; Tue, 5 Mar 2024\r\n", "Sendmail",
     "8.17.1", "banner:smtp"),
    (b"220 (vsFTPd 3.0.3)\r\n", "vsFTPd", "3.0.3", "banner:ftp"),
    (b"220 ProFTPD 1.3.8 Server (Debian) [::ffff:198.18.0.2]\r\n", "ProFTPD", "1.3.8",
     "banner:ftp"),
    (b"220---------- Welcome to Pure-FTPd [privsep] [TLS] ----------\r\n", "Pure-FTPd", "",
     "banner:ftp"),
    (b"+OK Dovecot (Debian) ready.\r\n", "Dovecot", "", "banner:pop3"),
    (b"* OK [CAPABILITY IMAP4rev1 SASL-IR] Dovecot (Debian) ready.\r\n", "Dovecot", "",
     "banner:imap"),
    (b"200 news.example.com InterNetNews NNRP server INN 2.7.1 ready (posting ok)\r\n", "INN",
     "2.7.1", "banner:nntp"),
    (b"RFB 003.008\n", "", "", "banner:vnc"),
    (b"@RSYNCD: 31.0\n", "rsync", "", "banner:rsync"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "product", "version", "rule"), BANNER_PRODUCTS)
def test_banner_products(data: bytes, product: str, version: str, rule: str) -> None:
    found = banner.classify(data)
    assert found is not None
    assert (found.product, found.version, found.rule) == (product, version, rule)


def test_banner_mysql_products() -> None:
    from test_protocols import MARIADB, MYSQL8

    maria, mysql = banner.classify(MARIADB), banner.classify(MYSQL8)
    assert maria is not None and mysql is not None
    assert (maria.product, maria.version) == ("MariaDB", "10.11.6")
    assert (mysql.product, mysql.version) == ("MySQL", "8.0.36")


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"@RSYNCD: 32.0 sha512 sha256 sha1 md5 md4\n",
         "protocol 32.0; digests sha512 sha256 sha1 md5 md4"),
        (b"@RSYNCD: 32.0 sha512 sha256", "protocol 32.0; digests sha512 sha256"),
        (b"@RSYNCD: 30.0\r\n", "protocol 30.0"),
    ],
)  # fmt: skip
def test_banner_modern_rsync(data: bytes, detail: str) -> None:
    found = banner.classify(data)
    assert found is not None and (found.service, found.detail) == ("rsync", detail)


SOFTWARE_CASES = [
    ("nginx/1.22.1 (Debian)", ("nginx", "1.22.1")),
    ("OpenSSH_9.2p1", ("OpenSSH", "9.2p1")),
    ("kamailio (5.6.3 (x86_64/linux))", ("kamailio", "5.6.3")),
    ("Asterisk PBX 18.10.0", ("Asterisk PBX", "18.10.0")),
    ("ngircd-26.1", ("ngircd", "26.1")),
    ("Docker/24.0.7 (linux)", ("Docker", "24.0.7")),
    ("MinIO", ("MinIO", "")),
    ("1.2.3", ("", "")),
    ("", ("", "")),
    ("\x1b[2Jevil/1.0", ("", "")),
]


@pytest.mark.parametrize(("text", "expected"), SOFTWARE_CASES)
def test_split_software(text: str, expected: tuple[str, str]) -> None:
    assert split_software(text) == expected


# --------------------------------------------------------------------------- HTTP products

# Responses as each product documents them (their reference pages for GET /); no Debian
# package serves these APIs.
ES_ROOT = (
    b'{"name":"node-1","cluster_name":"lab","cluster_uuid":"x","version":{"number":"8.11.3",'
    b'"build_flavor":"default","lucene_version":"9.8.0"},"tagline":"You Know, for Search"}'
)
OPENSEARCH_ROOT = (
    b'{"name":"n","cluster_name":"lab","version":{"distribution":"opensearch","number":"2.11.1"},'
    b'"tagline":"The OpenSearch Project: https://opensearch.org/"}'
)
COUCHDB_ROOT = b'{"couchdb":"Welcome","version":"3.3.2","git_sha":"11a234070","features":[]}\n'
K8S_FORBIDDEN = (
    b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"forbidden: '
    b'User \\"system:anonymous\\" cannot get path \\"/\\"","reason":"Forbidden","code":403}'
)
HTTP_CASES: list[tuple[str, int, dict[str, str], bytes, tuple[str, str, str] | None]] = [
    ("elasticsearch", 200, {"x-elastic-product": "Elasticsearch",
                            "content-type": "application/json"}, ES_ROOT,
     ("elasticsearch", "Elasticsearch", "8.11.3")),
    ("elasticsearch 7 no header", 200, {}, ES_ROOT.replace(b"8.11.3", b"7.10.2"),
     ("elasticsearch", "Elasticsearch", "7.10.2")),
    ("elasticsearch 401", 401, {"X-elastic-product": "Elasticsearch",
                                "WWW-Authenticate": 'Basic realm="security"'},
     b'{"error":{"type":"security_exception"},"status":401}',
     ("elasticsearch", "Elasticsearch", "")),
    ("opensearch", 200, {}, OPENSEARCH_ROOT, ("opensearch", "OpenSearch", "2.11.1")),
    ("couchdb", 200, {"Server": "CouchDB/3.3.2 (Erlang OTP/24)"}, COUCHDB_ROOT,
     ("couchdb", "CouchDB", "3.3.2")),
    ("couchdb server only", 401, {"Server": "CouchDB/3.3.2 (Erlang OTP/24)"}, b"",
     ("couchdb", "CouchDB", "3.3.2")),
    ("docker", 404, {"Api-Version": "1.43", "Docker-Experimental": "false", "Ostype": "linux",
                     "Server": "Docker/24.0.7 (linux)"}, b'{"message":"page not found"}\n',
     ("docker", "Docker Engine", "24.0.7")),
    ("kubernetes", 403, {"Audit-Id": "1", "X-Kubernetes-Pf-Flowschema-Uid": "a",
                         "X-Kubernetes-Pf-Prioritylevel-Uid": "b"}, K8S_FORBIDDEN,
     ("kubernetes", "Kubernetes API server", "")),
    ("kubernetes body only", 401, {}, K8S_FORBIDDEN, ("kubernetes", "Kubernetes API server", "")),
    ("prometheus", 302, {"Location": "/graph"}, b'<a href="/graph">Found</a>.\n\n',
     ("prometheus", "Prometheus", "")),
    ("prometheus 3", 302, {"Location": "/query"}, b'<a href="/query">Found</a>.\n\n',
     ("prometheus", "Prometheus", "")),
    ("grafana", 302, {"Location": "/login"}, b'<a href="/login">Found</a>.\n\n',
     ("grafana", "Grafana", "")),
    ("consul", 200, {"X-Consul-Default-Acl-Policy": "allow", "X-Consul-Index": "12"}, b"[]",
     ("consul", "Consul", "")),
    ("vault", 307, {"Location": "/ui/", "Cache-Control": "no-store"}, b'{"errors":[]}',
     ("vault", "Vault", "")),
    ("influxdb", 404, {"X-Influxdb-Build": "OSS", "X-Influxdb-Version": "v2.7.4"}, b"",
     ("influxdb", "InfluxDB", "v2.7.4")),
    ("jenkins", 403, {"X-Jenkins": "2.426.2", "X-Hudson": "1.395"}, b"",
     ("jenkins", "Jenkins", "2.426.2")),
    ("kibana", 302, {"kbn-name": "kibana", "Location": "/spaces/enter"}, b"",
     ("kibana", "Kibana", "")),
    ("etcd", 404, {"X-Etcd-Cluster-Id": "cdf818194e3a8c32"}, b"404 page not found\n",
     ("etcd", "etcd", "")),
    ("minio", 403, {"Server": "MinIO"}, b"<?xml version=\"1.0\"?><Error><Code>AccessDenied",
     ("minio", "MinIO", "")),
    ("rabbitmq", 200, {}, b"<html><head><title>RabbitMQ Management</title>",
     ("rabbitmq-management", "RabbitMQ", "")),
    ("plain nginx", 200, {"Server": "nginx/1.22.1"}, b"<html><title>Welcome to nginx!</title>",
     None),
    ("redirect elsewhere", 302, {"Location": "/graph"}, b"moved", None),
    ("json, not a product", 200, {}, b'{"status":"ok","version":"1.0"}', None),
]  # fmt: skip


@pytest.mark.parametrize(("status", "headers", "body", "expected"), [c[1:] for c in HTTP_CASES],
                         ids=[c[0] for c in HTTP_CASES])  # fmt: skip
def test_http_products(
    status: int, headers: dict[str, str], body: bytes, expected: tuple[str, str, str] | None
) -> None:
    found = http_products.identify(status, headers, body)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert (found.service, found.product, found.version) == expected
        assert found.rule == f"http_products:{expected[0]}"


def test_http_products_take_h11_headers() -> None:
    found = http_products.identify(200, [(b"X-Elastic-Product", b"Elasticsearch")], ES_ROOT)
    assert found is not None and found.version == "8.11.3"


def test_http_products_from_the_http_probes_parser() -> None:
    """What the HTTP probe keeps (status, headers, body prefix) is what identify takes."""
    reply = (
        b"HTTP/1.1 200 OK\r\nX-elastic-product: Elasticsearch\r\ncontent-type: application/json"
        b"\r\ncontent-length: " + str(len(ES_ROOT)).encode() + b"\r\n\r\n" + ES_ROOT
    )
    parser = http.ResponseParser()
    parser.feed(reply)
    assert parser.status == 200 and parser.body == ES_ROOT
    found = http_products.identify(parser.status, parser.headers, parser.body)
    assert found == http_products.Product(
        "elasticsearch", "Elasticsearch", "8.11.3", "http_products:elasticsearch"
    )


# --------------------------------------------------------------------------- hostile bytes

ANY_REPLY = st.one_of(
    st.binary(max_size=2048),
    st.sampled_from([captured(c[0]) for c in CAPTURED]).flatmap(
        lambda real: st.builds(lambda cut, junk: real[:cut] + junk,
                               st.integers(0, len(real)), st.binary(max_size=64))
    ),
)  # fmt: skip


@settings(max_examples=300)
@given(data=ANY_REPLY)
def test_decoders_never_raise_and_stay_clean(data: bytes) -> None:
    for decode in (*DECODERS.values(), banner.classify):
        found = decode(data)
        assert_clean(found)
        if found is not None:
            for text in (found.product, found.version, found.rule):
                assert len(text) <= DETAIL_LIMIT and text == text.strip()


@settings(max_examples=100)
@given(data=st.binary(min_size=1, max_size=64))
def test_decoders_look_at_a_bounded_prefix(data: bytes) -> None:
    """A megabyte behind a real reply: every decoder still answers, clean and bounded."""
    tail = data * (1_000_000 // len(data) + 1)
    for probe in PROBES:
        found = probe.decode(captured_for(probe.name) + tail)
        assert_clean(found)


def captured_for(probe: str) -> bytes:
    """A real reply for ``probe``, or b"" when the lab has none (spec-only protocols)."""
    for name, own, _ in CAPTURED:
        if own == probe:
            return captured(name)
    return b""


@settings(max_examples=200)
@given(
    status=st.integers(100, 599),
    headers=st.dictionaries(st.text(max_size=30), st.text(max_size=100), max_size=10),
    body=st.binary(max_size=600),
)
def test_http_products_never_raise(status: int, headers: dict[str, str], body: bytes) -> None:
    found = http_products.identify(status, headers, body)
    if found is not None:
        for text in (found.service, found.product, found.version):
            assert len(text) <= 60 and "\x1b" not in text


def test_probe_requests_are_valid_for_both_families() -> None:
    """Requests that name the host take IPv6 literals too (never a DNS name lookup)."""
    for probe in PROBES:
        for family, host in ((socket.AF_INET, "198.18.0.2"), (socket.AF_INET6, "2001:db8::2")):
            socket.inet_pton(family, host)
            assert probe.request(host, 1) == probe.request(host, 1)  # deterministic
