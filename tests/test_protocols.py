"""The sans-I/O protocol codecs of ``scanner.protocols``: tables of byte strings, plus hypothesis.

Every decoder is fed real-looking server bytes (OpenSSH, Postfix, Exim, vsftpd, ProFTPD,
Dovecot, MySQL 8, MariaDB, Redis, nginx, Apache...) and hostile or broken ones; on
arbitrary bytes each must return None or an Evidence whose detail is clean.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import itertools
import re
import shutil
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.protocols import (
    DETAIL_LIMIT,
    NO_EVIDENCE,
    Evidence,
    banner,
    clean,
    http,
    join_detail,
    redis,
    tls,
)

# Characters a clean detail must never contain (controls, zero-width, bidi, BOM).
UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def assert_clean(evidence: Evidence | None) -> None:
    """``evidence`` is None, or its every field is one printable, bounded line."""
    if evidence is None:
        return
    assert isinstance(evidence, Evidence)
    for text in (evidence.service, evidence.detail, evidence.proof):
        assert UNSAFE.search(text) is None, text
        assert len(text) <= DETAIL_LIMIT
        assert text == text.strip()


# --------------------------------------------------------------------------- clean

CLEAN_CASES = [
    ("plain", "plain"),
    ("  two\r\n\tlines  \n", "two lines"),
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
    ("bell\x07 and del\x7f", "bell\\x07 and del\\x7f"),
    ("rtl\u202eoverride", "rtl\\u202eoverride"),
    ("zero\u200bwidth", "zero\\u200bwidth"),
    ("c1\x9bcsi", "c1\\x9bcsi"),
    (b"bytes \xff\xfe ok", "bytes \ufffd\ufffd ok"),
    (b"caf\xc3\xa9", "caf\u00e9"),
    ("x" * 300, "x" * 197 + "..."),
]


@pytest.mark.parametrize(("raw", "expected"), CLEAN_CASES)
def test_clean(raw: str | bytes, expected: str) -> None:
    assert clean(raw) == expected


def test_clean_limits() -> None:
    assert clean("abcdef", 4) == "a..."
    assert clean("abcdef", 2) == ".."
    assert clean("abc", 0) == ""
    assert len(clean("\x00" * 1000)) == DETAIL_LIMIT
    assert join_detail("a", "", "b") == "a; b"


@given(st.one_of(st.text(), st.binary()), st.integers(min_value=0, max_value=300))
def test_clean_is_printable_bounded_and_idempotent(raw: str | bytes, limit: int) -> None:
    out = clean(raw, limit)
    assert len(out) <= limit
    assert UNSAFE.search(out) is None
    assert clean(out, limit) == out


# --------------------------------------------------------------------------- banners

MYSQL8 = bytes.fromhex(
    "4a0000000a382e302e3336000b0000001c1f0f194e711f1a00ffffff0200ffdf15"
    "000000000000000000001d3e1b061c100f0541381f4c0063616368696e675f7368"
    "61325f70617373776f726400"
)
MARIADB = (
    b"\x6f\x00\x00\x00\x0a5.5.5-10.11.6-MariaDB-0+deb12u1\x00\x1f\x00\x00\x00"
    b"Kx.<3k=[\x00\xfe\xf7\x2d\x02\x00\xff\x81\x15\x00\x00\x00\x00\x00\x00\x1d\x00\x00\x00"
    b"7l@3PxW]7cB-\x00mysql_native_password\x00"
)
_DENIED = b"\xff\x6a\x04Host '198.18.0.1' is not allowed to connect to this MySQL server"
MYSQL_DENIED = len(_DENIED).to_bytes(3, "little") + b"\x00" + _DENIED

BANNER_CASES: list[tuple[str, bytes, Evidence | None]] = [
    # SSH (RFC 4253 4.2)
    ("openssh", b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",
     Evidence("ssh", "OpenSSH_9.2p1 Debian-2", "banner")),
    ("openssh ubuntu", b"SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.6\r\n",
     Evidence("ssh", "OpenSSH_8.9p1 Ubuntu-3ubuntu0.6", "banner")),
    ("dropbear", b"SSH-2.0-dropbear_2022.83\r\n", Evidence("ssh", "dropbear_2022.83", "banner")),
    ("ssh 1.99", b"SSH-1.99-Cisco-1.25\r\n",
     Evidence("ssh", "Cisco-1.25; protocol 1.99", "banner")),
    ("ssh lf only", b"SSH-2.0-Go\n", Evidence("ssh", "Go", "banner")),
    ("ssh after other lines", b"Authorised use only\r\nSSH-2.0-OpenSSH_9.6\r\n",
     Evidence("ssh", "OpenSSH_9.6", "banner")),
    ("ssh escape in comment", b"SSH-2.0-OpenSSH_9.2p1 \x1b]0;owned\x07\r\n",
     Evidence("ssh", "OpenSSH_9.2p1", "banner")),
    # SMTP (RFC 5321 4.2)
    ("postfix", b"220 mail.example.org ESMTP Postfix (Debian/GNU)\r\n",
     Evidence("smtp", "mail.example.org ESMTP Postfix (Debian/GNU)", "banner")),
    ("exim", b"220 mx.example.net ESMTP Exim 4.96 Tue, 05 Mar 2024 10:00:00 +0000\r\n",
     Evidence("smtp", "mx.example.net ESMTP Exim 4.96 Tue, 05 Mar 2024 10:00:00 +0000", "banner")),
    ("exchange", b"220 EX01.corp.example Microsoft ESMTP MAIL Service ready\r\n",
     Evidence("smtp", "EX01.corp.example Microsoft ESMTP MAIL Service ready", "banner")),
    ("smtp multiline", b"220-mx.example.com ESMTP\r\n220 no UCE\r\n",
     Evidence("smtp", "mx.example.com ESMTP", "banner")),
    ("smtp refusal", b"554 5.7.1 No SMTP service here\r\n",
     Evidence("smtp", "5.7.1 No SMTP service here", "banner")),
    ("mail host, no words", b"220 mail.example.com\r\n",
     Evidence("smtp", "mail.example.com", "banner")),
    # FTP (RFC 959)
    ("vsftpd", b"220 (vsFTPd 3.0.3)\r\n", Evidence("ftp", "(vsFTPd 3.0.3)", "banner")),
    ("proftpd", b"220 ProFTPD Server (Debian) [::ffff:198.18.0.2]\r\n",
     Evidence("ftp", "ProFTPD Server (Debian) [::ffff:198.18.0.2]", "banner")),
    ("pure-ftpd", b"220---------- Welcome to Pure-FTPd [privsep] [TLS] ----------\r\n"
     b"220-You are user number 1 of 50 allowed.\r\n",
     Evidence("ftp", "--------- Welcome to Pure-FTPd [privsep] [TLS] ----------", "banner")),
    ("filezilla", b"220-FileZilla Server 1.8.0\r\n220 Please visit https://filezilla-project.org/\r\n",
     Evidence("ftp", "FileZilla Server 1.8.0", "banner")),
    ("ftp on a mail host", b"220 mail.example.com FTP server ready\r\n",
     Evidence("ftp", "mail.example.com FTP server ready", "banner")),
    ("ftp busy", b"421 Too many users, FTP server busy\r\n",
     Evidence("ftp", "Too many users, FTP server busy", "banner")),
    # POP3, IMAP (Dovecot, Cyrus)
    ("dovecot pop3", b"+OK Dovecot (Debian) ready.\r\n",
     Evidence("pop3", "Dovecot (Debian) ready.", "banner")),
    ("dovecot imap", b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE"
     b" LITERAL+ STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.\r\n",
     Evidence("imap", "Dovecot (Debian) ready.", "banner")),
    ("cyrus preauth", b"* PREAUTH [CAPABILITY IMAP4rev1] imap.example.com Cyrus IMAP ready\r\n",
     Evidence("imap", "imap.example.com Cyrus IMAP ready; PREAUTH", "banner")),
    # NNTP
    ("inn", b"200 news.example.com InterNetNews NNRP server INN 2.7.1 ready (posting ok)\r\n",
     Evidence("nntp", "news.example.com InterNetNews NNRP server INN 2.7.1 ready (posting ok)",
              "banner")),
    # MySQL / MariaDB
    ("mysql 8", MYSQL8, Evidence("mysql", "8.0.36; caching_sha2_password", "banner", "MySQL",
                                 "8.0.36", "mysql:handshake")),
    ("mariadb", MARIADB, Evidence("mysql", "10.11.6-MariaDB-0+deb12u1; mysql_native_password",
                                  "banner", "MariaDB", "10.11.6", "mysql:handshake")),
    ("mysql host denied", MYSQL_DENIED, Evidence(
        "mysql", "error 1130: Host '198.18.0.1' is not allowed to connect to this MySQL server",
        "banner", "MySQL", "", "mysql:error")),
    ("mysql first bytes only", MYSQL8[:20], Evidence("mysql", "8.0.36", "banner", "MySQL",
                                                     "8.0.36", "mysql:handshake")),
    # VNC, rsync, telnet
    ("vnc 3.8", b"RFB 003.008\n", Evidence("vnc", "RFB 3.8", "banner")),
    ("vnc 3.3", b"RFB 003.003\n", Evidence("vnc", "RFB 3.3", "banner")),
    ("rsync", b"@RSYNCD: 31.0\n", Evidence("rsync", "protocol 31.0", "banner")),
    ("telnet negotiation", b"\xff\xfd\x18\xff\xfd\x20\xff\xfd\x23\xff\xfd\x27",
     Evidence("telnet", "", "banner")),
    ("telnet with prompt", b"\xff\xfb\x01\xff\xfb\x03\xff\xfa\x18\x01\xff\xf0"
     b"Ubuntu 22.04.4 LTS\r\nhost login: ",
     Evidence("telnet", "Ubuntu 22.04.4 LTS host login:", "banner")),
    # Unidentified: still proof that something speaks first
    ("bare 220", b"220 ready\r\n", Evidence("", "220 ready", "banner")),
    ("text", b"hello there\r\nsecond line\r\n", Evidence("", "hello there", "banner")),
    ("ansi text", b"\x1b[2J\x1b[31mwelcome\x1b[0m\r\n",
     Evidence("", "\\x1b[2J\\x1b[31mwelcome\\x1b[0m", "banner")),
    ("binary", b"\x00\x01\x02\x03", Evidence("", "4 bytes: 00010203", "banner")),
    ("long binary", bytes(range(20)),
     Evidence("", "20 bytes: 000102030405060708090a0b0c0d0e0f...", "banner")),
    ("redis-like is not a banner", b"+PONG\r\n", Evidence("", "+PONG", "banner")),
    ("nothing", b"", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "expected"), [c[1:] for c in BANNER_CASES], ids=[c[0] for c in BANNER_CASES]
)
def test_banner_classify(data: bytes, expected: Evidence | None) -> None:
    """Service, detail and proof; the product trail is tested in test_protocols_b.py."""
    found = banner.classify(data)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        core = (found.service, found.detail, found.proof)
        assert core == (expected.service, expected.detail, expected.proof)
    assert_clean(found)


SETTLED_CASES = [
    (b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", True),
    (b"SSH-2.0-OpenSSH_9.2p1 Deb", False),
    (b"220 (vsFTPd 3.0.3)\r\n", True),
    (MYSQL8, True),
    (MYSQL8[:-1], False),
    (MYSQL_DENIED, True),
    (b"\xff\xfd\x18", False),
    (b"", False),
]


@pytest.mark.parametrize(("data", "expected"), SETTLED_CASES)
def test_banner_settled(data: bytes, expected: bool) -> None:
    assert banner.settled(data) is expected


def test_banner_looks_at_a_bounded_prefix() -> None:
    huge = b"220 " + b"x" * 1_000_000 + b" ESMTP\r\n"
    found = banner.classify(huge)
    assert found is not None and found.service == ""  # the SMTP hint lies past the bound
    assert len(found.detail) == DETAIL_LIMIT


# --------------------------------------------------------------------------- HTTP


def chunked(*parts: bytes) -> bytes:
    """``parts`` in HTTP/1.1 chunked coding, ended by the zero-size chunk."""
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


LAB_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>lab page</title></head>\n"
    b"<body><h1>lab page</h1><p>portprobe test lab</p></body></html>\n"
)

HTTP_CASES: list[tuple[str, bytes, Evidence | None]] = [
    ("lab page", b"HTTP/1.1 200 OK\r\nServer: lab-http/1.0\r\n"
     b"Content-Type: text/html; charset=utf-8\r\n"
     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(LAB_PAGE), LAB_PAGE),
     Evidence("http", "lab-http/1.0; 200; title 'lab page'", "http")),
    ("apache chunked", b"HTTP/1.1 200 OK\r\nDate: Tue, 05 Mar 2024 10:00:00 GMT\r\n"
     b"Server: Apache/2.4.57 (Debian)\r\nTransfer-Encoding: chunked\r\n"
     b"Content-Type: text/html;charset=UTF-8\r\n\r\n"
     + chunked(b"<html><head><title>Apache2 Deb", b"ian Default Page: It works</title></head>"),
     Evidence("http", "Apache/2.4.57 (Debian); 200; title 'Apache2 Debian Default Page: It works'",
              "http")),
    ("nginx redirect", b"HTTP/1.1 301 Moved Permanently\r\nServer: nginx/1.24.0\r\n"
     b"Location: https://example.org/\r\nContent-Length: 0\r\n\r\n",
     Evidence("http", "nginx/1.24.0; 301; location https://example.org/", "http")),
    ("nginx plain to https", b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\nContent-Length: 76\r\n"
     b"\r\n<html><head><title>400 The plain HTTP request was sent to HTTPS port</title>",
     Evidence("http", "nginx; 400; title '400 The plain HTTP request was sent to HTTPS port'",
              "http")),
    ("no server header, http/1.0 until eof", b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n"
     b"<TITLE>\n   Router &amp; Modem\n</TITLE>",
     Evidence("http", "200; title 'Router & Modem'", "http")),
    ("404 no body", b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
     Evidence("http", "404", "http")),
    ("no reason phrase", b"HTTP/1.1 204\r\n\r\n", Evidence("http", "204", "http")),
    ("interim then final", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nServer: a\r\n"
     b"Content-Length: 0\r\n\r\n", Evidence("http", "a; 200", "http")),
    ("truncated body keeps the head", b"HTTP/1.1 200 OK\r\nServer: big\r\nContent-Length: 100000"
     b"\r\n\r\n<html><title>cut</title>", Evidence("http", "big; 200; title 'cut'", "http")),
    ("broken chunk keeps the head", b"HTTP/1.1 500 Oops\r\nServer: s\r\n"
     b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", Evidence("http", "s; 500", "http")),
    ("escape in title", b"HTTP/1.1 200 OK\r\nContent-Length: 25\r\n\r\n<title>\x1b[2Jhi</title>",
     Evidence("http", "200; title '\\x1b[2Jhi'", "http")),
    # A head cut short: its whole status line proves HTTP (issue 11: a 10 KB Set-Cookie).
    ("truncated head", b"HTTP/1.1 200 OK\r\nServer: trunc", Evidence("http", "200", "http")),
    ("status line only", b"HTTP/1.1 200 OK\r\n", Evidence("http", "200", "http")),
    ("status line cut", b"HTTP/1.1 200 O", None),
    ("ssh banner", b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", None),
    ("tls alert", b"\x15\x03\x03\x00\x02\x02\x28", None),
    ("bad status", b"HTTP/1.1 abc OK\r\n\r\n", None),
    ("http/0.9 body", b"<html>hello</html>", None),
    ("redis error", b"-ERR wrong number of arguments for 'get' command\r\n", None),
    ("nothing", b"", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "expected"), [c[1:] for c in HTTP_CASES], ids=[c[0] for c in HTTP_CASES]
)
def test_http_parse_response(data: bytes, expected: Evidence | None) -> None:
    found = http.parse_response(data)
    bare = None if found is None else dataclasses.replace(found, product="", version="", rule="")
    assert bare == expected
    assert_clean(found)


@pytest.mark.parametrize(
    ("case", "software"),
    [
        ("lab page", ("lab-http", "1.0", "http:server")),
        ("apache chunked", ("Apache", "2.4.57", "http:server")),
        ("nginx redirect", ("nginx", "1.24.0", "http:server")),
        ("nginx plain to https", ("nginx", "", "http:server")),
        ("no server header, http/1.0 until eof", ("", "", "http:status-line")),
    ],
)
def test_http_software_comes_from_the_server_field(case: str, software: tuple[str, ...]) -> None:
    data = next(c[1] for c in HTTP_CASES if c[0] == case)
    found = http.parse_response(data)
    assert found is not None
    assert (found.product, found.version, found.rule) == software


@pytest.mark.parametrize(
    "data", [c[1] for c in HTTP_CASES if c[2] is not None], ids=[c[0] for c in HTTP_CASES if c[2]]
)
@given(cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_http_parser_is_incremental(data: bytes, cuts: list[int]) -> None:
    parser = http.ResponseParser()
    edges = [0, *sorted(c for c in cuts if c < len(data)), len(data)]
    for start, end in itertools.pairwise(edges):
        parser.feed(data[start:end])
    parser.close()
    assert parser.evidence() == http.parse_response(data)


def test_http_parser_stops_at_its_body_bound() -> None:
    parser = http.ResponseParser(max_body=10)
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n<title>x</title>")
    assert parser.done and parser.status == 200 and parser.title == ""


def test_http_build_request() -> None:
    assert http.build_request("198.18.0.2:2451") == (
        b"GET / HTTP/1.1\r\nHost: 198.18.0.2:2451\r\nUser-Agent: portprobe\r\n"
        b"Accept: */*\r\nConnection: close\r\n\r\n"
    )
    with pytest.raises(ValueError):
        http.build_request("bad\r\nInjected: yes")


AUTHORITY_CASES = [
    ("198.18.0.2", 80, 80, "198.18.0.2"),
    ("198.18.0.2", 2451, 80, "198.18.0.2:2451"),
    ("2001:db8::2", 80, 80, "[2001:db8::2]"),
    ("2001:db8::2", 8443, 80, "[2001:db8::2]:8443"),
    ("198.18.0.2", 443, 443, "198.18.0.2"),
    ("198.18.0.2", 80, 443, "198.18.0.2:80"),
    ("fe80::1%eth0", 81, 80, "[fe80::1%eth0]:81"),
    ("lab.test", 80, 80, "lab.test"),
]


@pytest.mark.parametrize(("address", "port", "default", "expected"), AUTHORITY_CASES)
def test_http_authority(address: str, port: int, default: int, expected: str) -> None:
    assert http.authority(address, port, default_port=default) == expected


# --------------------------------------------------------------------------- Redis

REDIS_CASES: list[tuple[bytes, Evidence | None]] = [
    (b"+PONG\r\n", Evidence("redis", "PONG", "redis")),
    (b"-NOAUTH Authentication required.\r\n",
     Evidence("redis", "NOAUTH Authentication required.", "redis")),
    (b"-DENIED Redis is running in protected mode because protected mode is enabled\r\n",
     Evidence("redis", "DENIED Redis is running in protected mode because protected mode is "
              "enabled", "redis")),
    (b"-LOADING Redis is loading the dataset in memory\r\n",
     Evidence("redis", "LOADING Redis is loading the dataset in memory", "redis")),
    (b"-ERR wrong number of arguments for 'get' command\r\n",
     Evidence("redis", "ERR wrong number of arguments for 'get' command", "redis")),
    (b"-ERR unknown command `FOO`, with args beginning with: \r\n",
     Evidence("redis", "ERR unknown command `FOO`, with args beginning with:", "redis")),
    (b"+PONG", None),  # no line end yet
    (b"+OK\r\n", None),
    (b"-ERR\r\n", None),
    (b"+OK Dovecot ready.\r\n", None),
    (b"-ERR unknown command\r\n", None),
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", None),
    (b"", None),
]  # fmt: skip


@pytest.mark.parametrize(("data", "expected"), REDIS_CASES)
def test_redis_parse_reply(data: bytes, expected: Evidence | None) -> None:
    found = redis.parse_reply(data)
    assert found == expected
    assert_clean(found)


def test_redis_probe() -> None:
    assert redis.build_probe() == b"PING\r\n"


# --------------------------------------------------------------------------- TLS

RECORD_CASES = [
    (b"\x16\x03\x03\x00\x7a\x02", "handshake"),
    (b"\x16\x03\x01", "handshake"),
    (b"\x15\x03\x03\x00\x02\x02\x28", "alert"),
    (b"\x17\x03\x03\x00\x10", None),  # application data first: not an answer to a hello
    (b"\x16\x02\x00", None),
    (b"\x16\x03\x09", None),
    (b"SSH-2.0-x", None),
    (b"HTTP/1.1 400", None),
    (b"\x16\x03", None),
    (b"", None),
]


@pytest.mark.parametrize(("data", "expected"), RECORD_CASES)
def test_tls_record_kind(data: bytes, expected: str | None) -> None:
    assert tls.record_kind(data) == expected


ALERT_CASES: list[tuple[bytes, Evidence | None]] = [
    (b"\x15\x03\x03\x00\x02\x02\x28", Evidence("tls", "alert handshake_failure", "tls")),
    (b"\x15\x03\x01\x00\x02\x02\x46", Evidence("tls", "alert protocol_version", "tls")),
    (b"\x15\x03\x03\x00\x02\x02\x70", Evidence("tls", "alert unrecognized_name", "tls")),
    (b"\x15\x03\x03\x00\x02\x02\xc8", Evidence("tls", "alert alert 200", "tls")),
    (b"\x15\x03\x03\x00\x02\x07\x28", None),  # no such level
    (b"\x15\x03\x03\x00\x03\x02\x28", None),  # an alert is 2 bytes
    (b"\x15\x03\x03\x00\x02\x02", None),
    (b"\x16\x03\x03\x00\x02\x02\x28", None),
]


@pytest.mark.parametrize(("data", "expected"), ALERT_CASES)
def test_tls_alert(data: bytes, expected: Evidence | None) -> None:
    assert tls.alert_evidence(data) == expected


def test_tls_context_observes_without_trusting() -> None:
    ctx = tls.client_context()
    assert ctx.verify_mode == ssl.CERT_NONE
    assert ctx.check_hostname is False
    assert tls.client_context() is ctx  # one context, made once


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Certificates made with the openssl CLI: self-signed with CN, SAN-only, CA-signed."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make test certificates")
    d = tmp_path_factory.mktemp("certs")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2")
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        str(d / "self.key"),
        "-out",
        str(d / "self.pem"),
        "-subj",
        "/O=Lab/CN=lab.test",
        "-addext",
        "subjectAltName=DNS:alt.lab.test",
    )
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        str(d / "san.key"),
        "-out",
        str(d / "san.pem"),
        "-subj",
        "/O=No Common Name",
        "-addext",
        "subjectAltName=DNS:san.lab.test",
    )
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.pem"),
        "-subj",
        "/CN=Lab CA",
    )
    _openssl(
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        str(d / "leaf.key"),
        "-out",
        str(d / "leaf.csr"),
        "-subj",
        "/C=DE/CN=www.lab.test",
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(d / "leaf.csr"),
        "-CA",
        str(d / "ca.pem"),
        "-CAkey",
        str(d / "ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        str(d / "leaf.pem"),
    )
    return {name: d / f"{name}.pem" for name in ("self", "san", "leaf")}  # fmt: skip


def _der(pem: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.read_text())


CERT_CASES = [
    ("self", tls.CertInfo("lab.test", "alt.lab.test", True), "TLSv1.3; CN=lab.test; self-signed"),
    ("san", tls.CertInfo("", "san.lab.test", True), "TLSv1.3; SAN=san.lab.test; self-signed"),
    ("leaf", tls.CertInfo("www.lab.test", "", False), "TLSv1.3; CN=www.lab.test"),
]


@pytest.mark.parametrize(("name", "info", "described"), CERT_CASES)
def test_tls_cert_info(
    certs: dict[str, Path], name: str, info: tls.CertInfo, described: str
) -> None:
    der = _der(certs[name])
    assert tls.cert_info(der) == info
    assert tls.describe("TLSv1.3", der) == described


def test_tls_cert_info_rejects_broken_der(certs: dict[str, Path]) -> None:
    der = _der(certs["self"])
    for broken in (der[:40], der[:1], b"", b"\x30\x84\xff\xff\xff\xff", b"\x31" + der[1:]):
        assert tls.cert_info(broken) is None
    assert tls.describe("TLSv1.2", b"junk") == "TLSv1.2"


def _pump(
    client: tls.TlsClient, server: ssl.SSLObject, s_in: ssl.MemoryBIO, s_out: ssl.MemoryBIO
) -> None:
    """Move bytes both ways once, as a network would."""
    s_in.write(client.data_to_send())
    with contextlib.suppress(ssl.SSLWantReadError):
        server.do_handshake()
    if out := s_out.read():
        client.receive(out)


def test_tls_client_handshake_and_http_in_memory(certs: dict[str, Path]) -> None:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certs["self"], certs["self"].with_suffix(".key"))
    s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = tls.TlsClient()
    assert client.version == "" and client.peer_certificate() is None
    for _ in range(10):
        if client.handshake():
            break
        _pump(client, server, s_in, s_out)
    assert client.handshake_done
    _pump(client, server, s_in, s_out)  # the client's Finished
    assert client.describe() == "TLSv1.3; CN=lab.test; self-signed"

    client.send(http.build_request("lab.test"))
    s_in.write(client.data_to_send())
    assert server.read(4096).startswith(b"GET / HTTP/1.1\r\n")
    server.write(b"HTTP/1.1 200 OK\r\nServer: mem\r\nContent-Length: 0\r\n\r\n")
    client.receive(s_out.read())
    assert http.parse_response(client.read(4096)) == Evidence(
        "http", "mem; 200", "http", product="mem", rule="http:server"
    )
    assert not client.closed
    client.receive(b"")  # EOF without close_notify
    assert client.read(10) == b"" and client.closed


def test_tls_client_refuses_what_is_not_tls() -> None:
    client = tls.TlsClient()
    client.handshake()
    assert client.data_to_send().startswith(b"\x16\x03")  # the ClientHello
    client.receive(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    with pytest.raises(ssl.SSLError):
        client.handshake()


# --------------------------------------------------------------------------- hypothesis

DECODERS: dict[str, Callable[[bytes], Evidence | None]] = {
    "banner.classify": banner.classify,
    "http.parse_response": http.parse_response,
    "redis.parse_reply": redis.parse_reply,
    "tls.alert_evidence": tls.alert_evidence,
}

# Arbitrary bytes, and arbitrary bytes after a prefix that gets a decoder past its first test.
PREFIXES = [b"", b"SSH-2.0-", b"220 ", b"+OK ", b"* OK [", b"RFB 003.", b"\xff\xfb",
            b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"\x4a\x00\x00\x00\x0a8.0", b"\x48\x00\x00\x00\xff\x6a\x04", b"-ERR ",
            b"\x15\x03\x03"]  # fmt: skip
ANY_BYTES = st.builds(lambda p, b: p + b, st.sampled_from(PREFIXES), st.binary(max_size=600))


@pytest.mark.parametrize("name", sorted(DECODERS))
@given(data=ANY_BYTES)
def test_decoders_never_raise_and_stay_clean(name: str, data: bytes) -> None:
    found = DECODERS[name](data)
    assert found is None or isinstance(found, Evidence)
    assert_clean(found)


@given(data=ANY_BYTES)
def test_banner_settled_never_raises(data: bytes) -> None:
    assert banner.settled(data) in (True, False)


@given(data=st.one_of(st.binary(max_size=600), st.builds(lambda b: b"\x30\x82" + b, st.binary())))
def test_cert_info_never_raises(data: bytes) -> None:
    info = tls.cert_info(data)
    assert info is None or isinstance(info, tls.CertInfo)
    if info is not None:
        assert UNSAFE.search(info.common_name + info.dns_name) is None


@given(data=st.binary(max_size=300))
def test_tls_client_never_crashes_on_arbitrary_bytes(data: bytes) -> None:
    client = tls.TlsClient()
    client.handshake()
    client.receive(data)
    with contextlib.suppress(ssl.SSLError):  # a refusal is an SSLError, never anything else
        client.handshake()


def test_no_evidence_is_empty() -> None:
    assert Evidence("", "", "") == NO_EVIDENCE


@pytest.mark.parametrize(
    "module_name",
    [
        "scanner.protocols",
        "scanner.protocols.banner",
        "scanner.protocols.http",
        "scanner.protocols.redis",
        "scanner.protocols.tls",
        "scanner.evidence",
    ],
)
def test_public_names_exist_and_are_documented(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert module.__doc__ and "Rules and theory" in module.__doc__
    for name in module.__all__:
        obj = getattr(module, name)
        if callable(obj):
            assert obj.__doc__, f"{module_name}.{name} has no docstring"
