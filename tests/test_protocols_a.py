"""The TCP probes of DNS, LDAP, PostgreSQL, MySQL, MongoDB, memcached, MQTT, AMQP, epmd and Redis.

Tables of bytes captured from the real daemons of Debian 12 (``tests/data/protocols_a.json``,
each entry naming the daemon and what it was asked; captured with ``tests/daemonlab_a.py``),
bytes built by hand from the specifications for the edge cases, and hypothesis: on arbitrary
bytes every decoder returns None or clean evidence, and never raises. MongoDB has no Debian
package: its replies are built from the wire protocol and BSON specifications.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.rdataclass
import dns.rdatatype
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_protocols import UNSAFE, assert_clean

from scanner.protocols import (
    DETAIL_LIMIT,
    Evidence,
    amqp,
    banner,
    epmd,
    ldap,
    memcached,
    mongodb,
    mqtt,
    postgres,
    redis,
)
from scanner.protocols import dns as dnsp
from scanner.protocols.tcp import TcpProbe, passive

CAPTURES = json.loads((Path(__file__).parent / "data" / "protocols_a.json").read_text())
MODULES = (dnsp, ldap, postgres, mongodb, memcached, mqtt, amqp, epmd, redis)


def identified_greeting(data: bytes) -> Evidence | None:
    """What ``scanner.evidence``'s listening attempt names in a whole greeting (MySQL's)."""
    found = banner.classify(data)
    return found if found is not None and found.service and banner.settled(data) else None


# The listening attempt, as a probe: it reads the greetings of servers that speak first.
GREETING = TcpProbe(name="greeting", request=passive, decode=identified_greeting, rank=0)
PROBES: dict[str, TcpProbe] = {
    "greeting": GREETING,
    **{p.name: p for m in MODULES for p in m.TCP_PROBES},
}


def captured(name: str) -> bytes:
    """The bytes a real daemon sent (see the entry's ``source``)."""
    return b"".join(bytes.fromhex(chunk) for chunk in CAPTURES[name]["chunks"])


def chunks(name: str) -> list[bytes]:
    """The same bytes as the reads that received them."""
    return [bytes.fromhex(chunk) for chunk in CAPTURES[name]["chunks"]]


def assert_evidence_clean(found: Evidence | None) -> None:
    """Every field of ``found`` (the trail too) is one printable, bounded line."""
    assert_clean(found)
    if found is not None:
        for text in (found.product, found.version, found.rule):
            assert UNSAFE.search(text) is None, text
            assert len(text) <= DETAIL_LIMIT


# --------------------------------------------------------------------------- captured replies

E = Evidence
REAL_CASES: list[tuple[str, str, Evidence]] = [
    ("dnsmasq-version", "dns-tcp", E(
        "dns", "NOERROR; aa; version.bind 'dnsmasq-2.90'", "dns-tcp", "dnsmasq", "2.90",
        "dns:version.bind")),
    ("bind9-version", "dns-tcp", E(
        "dns", "NOERROR; aa; version.bind '9.18.49-1~deb12u3-Debian'", "dns-tcp", "BIND",
        "9.18.49", "dns:version.bind")),
    ("slapd-rootdse", "ldap", E(
        "ldap", "RootDSE; OpenLDAP; LDAPv3; naming dc=portprobe,dc=test; SASL SCRAM-SHA-512 "
        "SCRAM-SHA-384 SCRAM-SHA-256 SCRAM-SHA-224 S...", "ldap", "OpenLDAP", "", "ldap:rootdse")),
    ("postgres-no-hba", "postgres", E(
        "postgresql", 'FATAL 28000; no pg_hba.conf entry for host "198.18.0.1", user "portprobe", '
        'database "portprobe", no encryption', "postgres", "PostgreSQL", "", "postgresql:error")),
    ("postgres-scram", "postgres", E(
        "postgresql", "auth SASL SCRAM-SHA-256", "postgres", rule="postgresql:auth")),
    ("postgres-trust-no-role", "postgres", E(
        "postgresql", 'auth ok; FATAL 28000; role "portprobe" does not exist', "postgres",
        "PostgreSQL", "", "postgresql:error")),
    ("postgres-trust-login", "postgres", E(
        "postgresql", "auth ok; PostgreSQL 15.18 (Debian 15.18-0+deb12u1)", "postgres",
        "PostgreSQL", "15.18", "postgresql:server_version")),
    ("mariadb-greeting", "greeting", E(
        "mysql", "10.11.19-MariaDB-0+deb12u1; mysql_native_password", "banner", "MariaDB",
        "10.11.19", "mysql:handshake")),
    ("mariadb-host-denied", "greeting", E(
        "mysql", "error 1130: Host '198.18.0.1' is not allowed to connect to this MariaDB server",
        "banner", "MariaDB", "", "mysql:error")),
    ("memcached-version", "memcached", E(
        "memcached", "1.6.18", "memcached", "memcached", "1.6.18", "memcached:version")),
    ("mosquitto-anonymous", "mqtt", E(
        "mqtt", "MQTT 3.1.1; accepted; Mosquitto 2.0.11", "mqtt", "Mosquitto", "2.0.11",
        "mqtt:$SYS/broker/version")),
    ("mosquitto-refused", "mqtt", E(
        "mqtt", "MQTT 3.1.1; refused: not authorized", "mqtt", rule="mqtt:connack")),
    ("epmd-rabbit", "epmd", E(
        "epmd", "epmd port 4369; nodes rabbit at 25672", "epmd", "epmd", "", "epmd:names")),
    ("epmd-empty-4370", "epmd", None),  # a lone epmd off its port: 4 bytes prove nothing
    ("rabbitmq-start", "amqp", E(
        "amqp", "RabbitMQ 3.10.8; Erlang/OTP 25.2.3; cluster rabbit@vm; AMQP 0-9; mechanisms "
        "AMQPLAIN PLAIN", "amqp", "RabbitMQ", "3.10.8", "amqp:connection.start")),
    ("redis-info", "redis", E(
        "redis", "Redis 7.0.15; standalone; Linux 6.18.44-fc-v657 x86_64", "redis", "Redis",
        "7.0.15", "redis:info")),
    ("redis-protected", "redis", E(
        "redis", "DENIED Redis is running in protected mode because protected mode is enabled and "
        "no password is set for the default user. In this mode connections are only accepted "
        "from the loopback interface. If y...", "redis", "Redis", "", "redis:reply")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("capture", "probe", "expected"), REAL_CASES, ids=[c[0] for c in REAL_CASES]
)
def test_decodes_what_real_daemons_sent(
    capture: str, probe: str, expected: Evidence | None
) -> None:
    assert PROBES[probe].decode(captured(capture)) == expected


@pytest.mark.parametrize(
    ("capture", "probe", "expected"), REAL_CASES, ids=[c[0] for c in REAL_CASES]
)
def test_decoders_wait_for_the_whole_reply(
    capture: str, probe: str, expected: Evidence | None
) -> None:
    """Cut anywhere, a reply gives nothing until its first message is whole, and then the
    same answer however much more comes; only epmd (whose node lines follow its port
    number, written apart) may answer earlier, with less detail."""
    data = captured(capture)
    answers = [PROBES[probe].decode(data[:cut]) for cut in range(len(data) + 1)]
    first = next((cut for cut, found in enumerate(answers) if found is not None), len(data) + 1)
    if expected is None:
        assert first == len(data) + 1
        return
    settled = answers.index(expected)
    assert all(found == expected for found in answers[settled:])
    if probe == "epmd":
        # The port number alone (4369) is an answer; a node line is waited for to its end.
        assert first == 4
        assert all(found is None or found.service == "epmd" for found in answers[first:])
    else:
        assert first == settled


def test_every_capture_is_in_a_table() -> None:
    assert {c[0] for c in REAL_CASES} == set(CAPTURES)
    assert all(CAPTURES[name]["source"] for name in CAPTURES)


# --------------------------------------------------------------------------- the probes


def test_probes_are_named_once_and_bounded() -> None:
    assert len(PROBES) - 1 == sum(len(m.TCP_PROBES) for m in MODULES) == 9
    for probe in PROBES.values():
        assert 64 <= probe.max_reply <= 8192
        assert probe.request("198.18.0.2", 2451) == probe.request("2001:db8::2", 1)


REQUESTS = {
    "dns-tcp": "001e7070000000010000000000000776657273696f6e0462696e640000100003",
    "greeting": "",
    "memcached": "76657273696f6e0d0a",
    "mqtt": "101500044d5154540402000a0009706f727470726f626582180001"
            "0013245359532f62726f6b65722f76657273696f6e00c000",
    "amqp": "414d515000000901",
    "epmd": "00016e",
    "redis": "494e464f207365727665720d0a50494e470d0a",
}  # fmt: skip


def test_dns_request_is_the_version_bind_query() -> None:
    wire = PROBES["dns-tcp"].request("198.18.0.2", 53)
    assert int.from_bytes(wire[:2], "big") == len(wire) - 2
    query = dns.message.from_wire(wire[2:])
    assert query.id == dnsp.QUERY_ID and query.flags == 0
    (question,) = query.question
    assert question.name.to_text() == "version.bind."
    assert (question.rdtype, question.rdclass) == (dns.rdatatype.TXT, dns.rdataclass.CH)
    assert wire.hex() == REQUESTS["dns-tcp"]


@pytest.mark.parametrize("name", ["greeting", "memcached", "mqtt", "amqp", "epmd", "redis"])
def test_requests_are_exact(name: str) -> None:
    assert PROBES[name].request("198.18.0.2", 1).hex() == REQUESTS[name]


def test_postgres_startup_message() -> None:
    wire = postgres.build_startup()
    length, version = struct.unpack_from("!II", wire)
    assert length == len(wire) and version == 3 << 16
    assert wire[8:].split(b"\0") == [
        b"user", b"portprobe", b"database", b"portprobe", b"application_name", b"portprobe", b"",
        b"",
    ]  # fmt: skip


def test_ldap_request_is_a_rootdse_search() -> None:
    wire = ldap.build_request()
    assert wire[0] == 0x30 and wire[1] == 0x81 and wire[2] == len(wire) - 3
    assert wire[3:6] == b"\x02\x01\x07"  # message ID 7
    assert wire[6] == 0x63  # searchRequest
    assert b"\x04\x00\x0a\x01\x00\x0a\x01\x00\x02\x01\x00\x02\x01\x00\x01\x01\x00" in wire
    assert b"\x87\x0bobjectClass" in wire
    for attribute in ldap.ATTRIBUTES:
        assert bytes([0x04, len(attribute)]) + attribute.encode() in wire


def test_mongodb_hello_follows_the_wire_spec() -> None:
    wire = mongodb.build_hello()
    length, request_id, response_to, opcode = struct.unpack_from("<iiii", wire)
    assert (length, request_id, response_to, opcode) == (len(wire), 0x7070, 0, 2013)
    assert wire[16:21] == b"\0\0\0\0\0"  # flagBits, then a kind-0 section
    assert wire[21:] == bson({"hello": 1, "$db": "admin"})


# --------------------------------------------------------------------------- hand-built edge cases


def bson(fields: dict[str, object]) -> bytes:
    """A BSON document from the spec (bsonspec.org): int32, double, bool, string, document."""
    body = b""
    for name, value in fields.items():
        key = name.encode() + b"\0"
        if isinstance(value, bool):
            body += b"\x08" + key + bytes([value])
        elif isinstance(value, int):
            body += b"\x10" + key + struct.pack("<i", value)
        elif isinstance(value, float):
            body += b"\x01" + key + struct.pack("<d", value)
        elif isinstance(value, str):
            raw = value.encode() + b"\0"
            body += b"\x02" + key + struct.pack("<i", len(raw)) + raw
        elif isinstance(value, dict):
            body += b"\x03" + key + bson(value)
        elif isinstance(value, bytes):  # raw element: type byte and value, for odd cases
            body += value[:1] + key + value[1:]
    return struct.pack("<i", len(body) + 5) + body + b"\0"


def op_msg(
    document: bytes, *, response_to: int = 0x7070, opcode: int = 2013, kind: int = 0
) -> bytes:
    """An OP_MSG reply (server request ID 99) carrying ``document`` in a section of ``kind``."""
    message = b"\0\0\0\0" + bytes([kind]) + document
    return struct.pack("<iiii", 16 + len(message), 99, response_to, opcode) + message


MONGO_7 = {
    "isWritablePrimary": True, "topologyVersion": {"counter": 0},
    "maxBsonObjectSize": 16777216, "maxMessageSizeBytes": 48000000, "maxWriteBatchSize": 100000,
    "localTime": b"\x09" + struct.pack("<q", 1764547200000), "logicalSessionTimeoutMinutes": 30,
    "connectionId": 4, "minWireVersion": 0, "maxWireVersion": 21, "readOnly": False, "ok": 1.0,
}  # fmt: skip

MONGO_CASES: list[tuple[str, bytes, Evidence | None]] = [
    ("7.0 primary", op_msg(bson(MONGO_7)), E(
        "mongodb", "wire 0-21; primary", "mongodb", "MongoDB", "", "mongodb:hello")),
    ("replica secondary", op_msg(bson({
        "isWritablePrimary": False, "secondary": True, "setName": "rs0", "minWireVersion": 0,
        "maxWireVersion": 17, "ok": 1.0})), E(
        "mongodb", "wire 0-17; secondary; replica set rs0", "mongodb", "MongoDB", "",
        "mongodb:hello")),
    ("mongos", op_msg(bson({"isWritablePrimary": True, "msg": "isdbgrid", "maxWireVersion": 21,
                            "minWireVersion": 0, "ok": 1.0})), E(
        "mongodb", "wire 0-21; mongos", "mongodb", "MongoDB", "", "mongodb:hello")),
    ("too old for hello", op_msg(bson({"ok": 0.0, "errmsg": "no such command: 'hello'",
                                       "code": 59, "codeName": "CommandNotFound"})), E(
        "mongodb", "error 59; no such command: 'hello'", "mongodb", "MongoDB", "",
        "mongodb:hello")),
    ("an unknown type ends the walk, ok before it kept",
     op_msg(bson({"ok": 1.0, "odd": b"\x0d\x05\x00\x00\x00code\x00", "maxWireVersion": 21})), E(
        "mongodb", "", "mongodb", "MongoDB", "", "mongodb:hello")),
    ("not our request ID", op_msg(bson(MONGO_7), response_to=1), None),
    ("OP_REPLY, not OP_MSG", op_msg(bson(MONGO_7), opcode=1), None),
    ("no ok field", op_msg(bson({"maxWireVersion": 21})), None),
    ("document longer than the message", op_msg(bson(MONGO_7))[:-1] + b"\x01", None),
    ("section of kind 1", op_msg(bson(MONGO_7), kind=1), None),
    ("string running past its document",
     op_msg(bson({"ok": 1.0, "s": b"\x02\xff\x00\x00\x00x\x00"})), None),
    ("an HTTP answer", b"HTTP/1.1 400 Bad Request\r\n\r\n", None),
]  # fmt: skip


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in MONGO_CASES],
                         ids=[c[0] for c in MONGO_CASES])  # fmt: skip
def test_mongodb_decode(data: bytes, expected: Evidence | None) -> None:
    assert mongodb.decode(data) == expected
    if expected is not None:
        assert all(mongodb.decode(data[:cut]) is None for cut in range(len(data)))


def ber(tag: int, value: bytes) -> bytes:
    """One BER element (definite length, short or long form)."""
    if len(value) < 0x80:
        return bytes([tag, len(value)]) + value
    raw = len(value).to_bytes(2, "big")
    return bytes([tag, 0x82]) + raw + value


def ldap_result(ident: int, op: int, code: int, message: bytes) -> bytes:
    result = ber(0x0A, bytes([code])) + ber(0x04, b"") + ber(0x04, message)
    return ber(0x30, ber(0x02, bytes([ident])) + ber(op, result))


def rootdse(*attributes: tuple[bytes, list[bytes]]) -> bytes:
    attrs = b"".join(
        ber(0x30, ber(0x04, name) + ber(0x31, b"".join(ber(0x04, v) for v in values)))
        for name, values in attributes
    )
    return ber(0x30, ber(0x02, b"\x07") + ber(0x64, ber(0x04, b"") + ber(0x30, attrs)))


LDAP_CASES: list[tuple[str, bytes, Evidence | None]] = [
    ("389 Directory Server", rootdse(
        (b"vendorName", [b"389 Project"]), (b"vendorVersion", [b"389-Directory/2.3.4"]),
        (b"supportedLDAPVersion", [b"2", b"3"]), (b"namingContexts", [b"dc=example,dc=com"])), E(
        "ldap", "RootDSE; 389 Project 389-Directory/2.3.4; LDAPv2 3; naming dc=example,dc=com",
        "ldap", "389 Project", "389-Directory/2.3.4", "ldap:rootdse")),
    ("Active Directory", rootdse(
        (b"forestFunctionality", [b"7"]), (b"supportedLDAPVersion", [b"3", b"2"])), E(
        "ldap", "RootDSE; Active Directory; LDAPv3 2", "ldap", "Active Directory", "",
        "ldap:rootdse")),
    ("confidentiality required", ldap_result(7, 0x65, 13, b"TLS confidentiality required"), E(
        "ldap", "confidentialityRequired; TLS confidentiality required", "ldap",
        rule="ldap:result")),
    ("notice of disconnection", ldap_result(0, 0x78, 2, b"bad message"), E(
        "ldap", "protocolError; bad message", "ldap", rule="ldap:result")),
    ("a done for another message", ldap_result(8, 0x65, 0, b""), None),
    ("a bind response", ldap_result(7, 0x61, 0, b""), None),
    ("a 5-byte length", b"\x30\x85\x00\x00\x00\x00\x10", None),
    ("an element's header cut by the message's end", b"\x30\x04\x02\x01\x07\x64", None),
    ("multi-byte tag", b"\x30\x05\x1f\x01\x01\x01\x00", None),
    ("an escape sequence in the vendor", rootdse((b"vendorName", [b"\x1b[31mEvil\x1b[0m"])), E(
        "ldap", "RootDSE; \\x1b[31mEvil\\x1b[0m", "ldap", "\\x1b[31mEvil\\x1b[0m", "",
        "ldap:rootdse")),
]  # fmt: skip


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in LDAP_CASES],
                         ids=[c[0] for c in LDAP_CASES])  # fmt: skip
def test_ldap_decode(data: bytes, expected: Evidence | None) -> None:
    assert ldap.decode(data) == expected


def test_ldap_entry_bigger_than_the_bound_is_read_from_its_start() -> None:
    big = rootdse((b"objectClass", [b"OpenLDAProotDSE"]), (b"namingContexts", [b"x" * 9000]))
    assert ldap.decode(big[:1000]) is None  # may still come: wait
    found = ldap.decode(big[: ldap.MAX_MESSAGE])
    assert found is not None and found.product == "OpenLDAP"


def pg_error(**fields: bytes) -> bytes:
    body = b"".join(k.encode() + v + b"\0" for k, v in fields.items()) + b"\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


def pg_auth(code: int, extra: bytes = b"") -> bytes:
    return b"R" + struct.pack("!II", 8 + len(extra), code) + extra


POSTGRES_CASES: list[tuple[str, bytes, Evidence | None]] = [
    ("md5", pg_auth(5, b"salt"), E("postgresql", "auth MD5 password", "postgres",
                                   rule="postgresql:auth")),
    ("cleartext", pg_auth(3), E("postgresql", "auth cleartext password", "postgres",
                                rule="postgresql:auth")),
    ("md5 without its salt", pg_auth(5), None),
    ("unknown code", pg_auth(42), None),
    ("SASL with a mechanism in lower case", pg_auth(10, b"scram\0\0"), None),
    ("error from another implementation (no C file)",
     pg_error(S=b"FATAL", C=b"28000", M=b"password authentication failed"),
     E("postgresql", "FATAL 28000; password authentication failed", "postgres",
       rule="postgresql:error")),
    ("error without SQLSTATE", pg_error(S=b"FATAL", M=b"no"), None),
    ("error with a bad severity", pg_error(S=b"fatal!", C=b"28000", M=b"x"), None),
    ("error field not ended", pg_error(S=b"FATAL", C=b"28000", M=b"x")[:-1], None),
    ("text that starts with E", b"ERROR: unknown command\r\n", None),
]  # fmt: skip


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in POSTGRES_CASES],
                         ids=[c[0] for c in POSTGRES_CASES])  # fmt: skip
def test_postgres_decode(data: bytes, expected: Evidence | None) -> None:
    assert postgres.decode(data) == expected


def test_postgres_trusted_login_stops_waiting_at_its_bound() -> None:
    noise = b"".join(
        b"S" + struct.pack("!I", 4 + 20) + b"k%02d\0" % i + b"v" * 15 + b"\0" for i in range(300)
    )
    data = pg_auth(0) + noise
    assert postgres.decode(data[:500]) is None  # server_version may still come
    assert postgres.decode(data[: postgres.MAX_REPLY]) == E(
        "postgresql", "auth ok", "postgres", rule="postgresql:auth"
    )


OTHER_CASES: list[tuple[str, str, bytes, Evidence | None]] = [
    # The RabbitMQ reply to an HTTP request: its own protocol header.
    ("amqp header 0-9-1", "amqp", b"AMQP\x00\x00\x09\x01", E(
        "amqp", "protocol header 0-9-1", "amqp", rule="amqp:protocol-header")),
    ("amqp 1.0 sasl header", "amqp", b"AMQP\x03\x01\x00\x00", E(
        "amqp", "protocol header 1-0-0 (id 3)", "amqp", rule="amqp:protocol-header")),
    ("amqp header, half", "amqp", b"AMQP\x00", None),
    ("amqp frame without its end octet", "amqp", b"\x01\x00\x00\x00\x00\x00\x0c" + b"\x00" * 12
     + b"\x00", None),
    ("memcached protocol, not a memcached version", "memcached", b"VERSION proxy-1.0\r\n", E(
        "memcached", "proxy-1.0", "memcached", rule="memcached:version")),
    ("memcached, no line end yet", "memcached", b"VERSION 1.6.18", None),
    ("a bare ERROR", "memcached", b"ERROR\r\n", None),
    ("mqtt connack, protocol refused", "mqtt", b"\x20\x02\x00\x01", E(
        "mqtt", "MQTT 3.1.1; refused: protocol level", "mqtt", rule="mqtt:connack")),
    ("mqtt accepted, pingresp, no version", "mqtt", b"\x20\x02\x00\x00\x90\x03\x00\x01\x80"
     b"\xd0\x00", E("mqtt", "MQTT 3.1.1; accepted", "mqtt", rule="mqtt:connack")),
    ("mqtt accepted, more to come", "mqtt", b"\x20\x02\x00\x00\x90\x03\x00\x01\x00", None),
    ("mqtt connack with a return code 6", "mqtt", b"\x20\x02\x00\x06", None),
    ("mqtt remaining length of 5 bytes", "mqtt", b"\x20\x02\x00\x00\x30\xff\xff\xff\xff\x01",
     E("mqtt", "MQTT 3.1.1; accepted", "mqtt", rule="mqtt:connack")),
    ("epmd, two nodes", "epmd", b"\x00\x00\x11\x11name rabbit at port 25672\nname ejabberd at "
     b"port 4200\n", E("epmd", "epmd port 4369; nodes rabbit at 25672, ejabberd at 4200", "epmd",
                       "epmd", "", "epmd:names")),
    ("epmd, other port, a node", "epmd", b"\x00\x00\x11\x12name a at port 1\n", E(
        "epmd", "epmd port 4370; nodes a at 1", "epmd", "epmd", "", "epmd:names")),
    ("epmd, a line of another shape", "epmd", b"\x00\x00\x11\x11hello\n", None),
    ("epmd, half a line", "epmd", b"\x00\x00\x11\x11name rab", None),
    ("redis INFO of Valkey", "redis", b"$96\r\n# Server\r\nredis_version:7.2.4\r\n"
     b"server_name:valkey\r\nvalkey_version:8.0.1\r\nredis_mode:standalone\r\n\r\n", E(
        "redis", "Valkey 8.0.1; standalone", "redis", "Valkey", "8.0.1", "redis:info")),
    ("redis INFO cut short", "redis", b"$577\r\n# Server\r\nredis_version:7.0.15\r\n", None),
    ("a server that ignored INFO and answered the PING", "redis", b"+PONG\r\n", E(
        "redis", "PONG", "redis", rule="redis:reply")),
    ("redis NOAUTH", "redis", b"-NOAUTH Authentication required.\r\n", E(
        "redis", "NOAUTH Authentication required.", "redis", rule="redis:reply")),
    ("a bulk string that is not INFO", "redis", b"$5\r\nhello\r\n", None),
    ("a long bulk string of one line", "redis", b"$5000\r\n" + b"x" * 5000, None),
    ("a long INFO", "redis", b"$5000\r\n# Server\r\nredis_version:7.0.15\r\n"
     + b"k:" + b"v" * 4970 + b"\r\n", E("redis", "Redis 7.0.15", "redis", "Redis", "7.0.15",
                                        "redis:info")),
]  # fmt: skip


@pytest.mark.parametrize(("probe", "data", "expected"), [c[1:] for c in OTHER_CASES],
                         ids=[c[0] for c in OTHER_CASES])  # fmt: skip
def test_edge_cases(probe: str, data: bytes, expected: Evidence | None) -> None:
    assert PROBES[probe].decode(data) == expected


def dns_tcp_reply(text: str, rdclass: dns.rdataclass.RdataClass = dns.rdataclass.CH) -> bytes:
    query = dns.message.make_query(
        "version.bind.", dns.rdatatype.TXT, rdclass, id=dnsp.QUERY_ID, flags=0
    )
    reply = dns.message.make_response(query)
    if text:
        reply.answer.append(
            dns.rrset.from_text("version.bind.", 0, rdclass, dns.rdatatype.TXT, f'"{text}"')
        )
    wire = reply.to_wire()
    return len(wire).to_bytes(2, "big") + wire


@pytest.mark.parametrize(
    ("text", "product", "version"),
    [
        ("9.18.28-1~deb12u2-Debian", "BIND", "9.18.28"),
        ("unbound 1.17.1", "Unbound", "1.17.1"),
        ("PowerDNS Recursor 4.8.8 (built Jun 20 2024)", "PowerDNS", "4.8.8"),
        ("Knot DNS 3.2.6", "Knot DNS", "3.2.6"),
        ("none of your business", "", ""),
        ("", "", ""),
    ],
)
def test_dns_version_bind_products(text: str, product: str, version: str) -> None:
    found = dnsp.decode_tcp(dns_tcp_reply(text))
    assert found is not None and (found.product, found.version) == (product, version)
    assert found.rule == ("dns:version.bind" if product else "dns:reply")


def test_dns_reply_to_an_in_class_question_is_not_ours() -> None:
    assert dnsp.decode_tcp(dns_tcp_reply("dnsmasq-2.90", dns.rdataclass.IN)) is None


# --------------------------------------------------------------------------- hypothesis

DECODERS: dict[str, Callable[[bytes], Evidence | None]] = {
    name: probe.decode for name, probe in PROBES.items()
}
# Arbitrary bytes, alone and after the start of a real reply (to get past the first tests).
PREFIXES = [b"", *sorted({captured(name)[:n] for name in CAPTURES for n in (4, 16, 40)})]
ANY_BYTES = st.builds(lambda p, b: p + b, st.sampled_from(PREFIXES), st.binary(max_size=700))


@pytest.mark.parametrize("name", sorted(DECODERS))
@given(data=ANY_BYTES)
def test_decoders_never_raise_and_stay_clean(name: str, data: bytes) -> None:
    found = DECODERS[name](data)
    assert found is None or isinstance(found, Evidence)
    assert_evidence_clean(found)


@pytest.mark.parametrize("capture", sorted(CAPTURES))
@given(position=st.integers(min_value=0, max_value=4096), byte=st.integers(0, 255))
def test_a_changed_byte_in_a_real_reply_never_breaks_a_decoder(
    capture: str, position: int, byte: int
) -> None:
    data = bytearray(captured(capture))
    data[position % len(data)] = byte
    for decode in DECODERS.values():
        assert_evidence_clean(decode(bytes(data)))


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_decoders_look_at_a_bounded_prefix(name: str) -> None:
    """A huge reply costs no more than its bounded prefix: same answer with a tail of junk."""
    for capture in CAPTURES:
        data = captured(capture)
        probe = PROBES[name]
        assert probe.decode(data + b"\0" * 1_000_000) == probe.decode(data + b"\0" * 10_000)
