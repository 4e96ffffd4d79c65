#!/usr/bin/env python3
"""Fake network services for the portprobe test lab (runs in the SERVER netns).

Started by ``netlab.Lab`` as::

    ip netns exec SERVER python3 tests/lab_services.py --spec JSON [--watch-stdin]

where JSON is ``{"tcp": {"22": "banner", ...}, "udp": {"53": "dns", ...},
"banner": "SSH-2.0-...\\r\\n"}``.  Every port is bound on both 0.0.0.0 and ::
(IPV6_V6ONLY=1).  Prints ``READY`` on stdout once every socket is bound.

TCP kinds: open (accept, close), banner (send a line, hold), http (minimal
HTTP/1.1, then close), silent (accept, hold, never send); and services as real
servers greet or answer: smtp (a Postfix greeting, hold), vsftpd (its greeting,
hold), mysql (a MySQL 8 handshake packet, hold), redis (answers inline commands
as Redis does, PING -> +PONG; drops the client at a "Host:" line), https (TLS with
a self-signed certificate for CN=lab.test, then the http kind's answer; a plain
HTTP request gets nginx's "400 The plain HTTP request was sent to HTTPS port"),
tls (TLS with the same certificate, then silence).  The certificate is made with
the ``openssl`` CLI at start-up, only when a TLS kind is asked for.
UDP kinds: dns, ntp, echo, silent; snmp (an agent for community "public", v1 and
v2c, that answers a GetRequest for sysDescr.0), memcached (answers ``version`` in its
UDP framing), sip (answers OPTIONS with 200 OK).

Hostile TCP kinds, for the hardening tests (tests/test_hostile_lab.py): tarpit (one byte
of a never-ending SSH-like banner per second, for TARPIT_SECONDS), endless (printable
bytes as fast as the client takes them, ENDLESS_BYTES in all, with no line end), garbage
(GARBAGE: 4 KiB of seeded random binary, then hold), ansi (an SMTP greeting full of
terminal escapes: CSI, OSC 0/8/52, C1 CSI, bidi overrides), ansi-http (an HTTP answer
whose title holds the same), formula and formula-http (an SMTP greeting's text, or an
HTTP Server header, that a spreadsheet would run as a formula; which one of FORMULAS
depends on the port, so a lab with several such ports tries each start character), rst
(accept, then RST at once), halfopen (a listener whose accept queue is full and is never
accepted from: the kernel drops new SYNs), noread (accept, never read, never send, a
tiny receive buffer, hold).

Robustness rules: one asyncio loop, no per-connection buffers beyond a few KiB,
held connections are capped and time out after HOLD_SECONDS, every callback
swallows its own errors, and UDP replies leave from the address the request
was sent to (IP_PKTINFO), so replies from the extra host addresses and from
the delayed path match the client's connected socket.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import random
import resource
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

TCP_KINDS = frozenset(
    {"open", "banner", "http", "silent", "smtp", "vsftpd", "mysql", "redis", "https", "tls"}
) | frozenset(
    {"tarpit", "endless", "garbage", "ansi", "ansi-http", "formula", "formula-http", "rst",
     "halfopen", "noread"}
)  # fmt: skip
TLS_KINDS = frozenset({"https", "tls"})
TLS_COMMON_NAME = "lab.test"
UDP_KINDS = frozenset({"dns", "ntp", "echo", "silent", "snmp", "memcached", "sip"})
DEFAULT_BANNER = "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"
HOLD_SECONDS = 30.0  # banner/silent connections are dropped after this
HTTP_TIMEOUT = 10.0
HTTP_MAX_REQUEST = 8192
MAX_HELD = 20000  # concurrent held connections; extra ones are closed at once
UDP_BATCH = 256  # datagrams handled per wake-up per socket
LISTEN_BACKLOG = 4096
DNS_ANSWER = "198.18.0.2"
NTP_EPOCH_OFFSET = 2208988800  # seconds between 1900-01-01 and 1970-01-01
PARENT_CHECK_S = 0.5
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
UDP_RCVBUF = 4 << 20
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # socket.IP_PKTINFO only exists from Python 3.12

SMTP_BANNER = b"220 lab.test ESMTP Postfix (Debian/GNU)\r\n"
FTP_BANNER = b"220 (vsFTPd 3.0.3)\r\n"
MYSQL_VERSION = b"8.0.36"
REDIS_MAX_LINE = 4096
HTTPS_PLAIN_BODY = (
    b"<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>"
    b"\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n</body>\r\n</html>\r\n"
)

HTTP_BODY = (
    b"<!DOCTYPE html>\n<html><head><title>lab page</title></head>\n"
    b"<body><h1>lab page</h1><p>portprobe test lab</p></body></html>\n"
)

_errors_logged = 0


def log_error(msg: str) -> None:
    """Log to stderr, at most 100 times (stderr is a file the lab keeps)."""
    global _errors_logged
    if _errors_logged < 100:
        _errors_logged += 1
        print(f"lab_services: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- TCP


class _Held(asyncio.Protocol):
    """Base for connections held open until the client closes or a timeout."""

    held = 0
    timeout = HOLD_SECONDS

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if _Held.held >= MAX_HELD:
            transport.abort()  # bounded resources beat perfect fidelity
            return
        _Held.held += 1
        self.counted = True
        self.timer = asyncio.get_running_loop().call_later(self.timeout, transport.close)
        self.started()

    def started(self) -> None:
        """Hook run once the connection is accepted and counted."""

    def data_received(self, data: bytes) -> None:
        pass  # discard: nothing is buffered

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.counted:
            _Held.held -= 1
            self.counted = False


class OpenProto(asyncio.Protocol):
    """tcp "open": accept and close at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class SilentProto(_Held):
    """tcp "silent": accept, never send, hold."""


class BannerProto(_Held):
    """tcp "banner": send the banner line on accept, then hold."""

    banner = DEFAULT_BANNER.encode()

    def started(self) -> None:
        assert self.transport is not None
        self.transport.write(self.banner)


class HttpProto(_Held):
    """tcp "http": read one request, answer it, close."""

    timeout = HTTP_TIMEOUT

    def __init__(self) -> None:
        super().__init__()
        self.buf = bytearray()
        self.done = False

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        self.buf += data[: HTTP_MAX_REQUEST + 4 - len(self.buf)]
        if b"\r\n\r\n" in self.buf or b"\n\n" in self.buf or len(self.buf) >= HTTP_MAX_REQUEST:
            self.respond()

    def eof_received(self) -> bool:
        if not self.done and self.buf:
            self.respond()  # half-closed client: still answer what it sent
        return False

    def respond(self) -> None:
        """Write the response for the buffered request and close."""
        assert self.transport is not None
        self.done = True
        self.transport.write(http_response(bytes(self.buf)))
        self.buf = bytearray()
        self.transport.close()  # flushes the write first


def http_request_complete(buf: bytes | bytearray) -> bool:
    """True once ``buf`` holds a whole request head (or as much as we ever read)."""
    return b"\r\n\r\n" in buf or b"\n\n" in buf or len(buf) >= HTTP_MAX_REQUEST


def http_response(request: bytes) -> bytes:
    """The lab page for a request line we accept, else a 400; a HEAD gets no body."""
    first = request.split(b"\n", 1)[0].strip()
    parts = first.split()
    method = parts[0] if parts else b""
    if parts and method.isalpha() and method.isupper() and len(parts) in (2, 3):
        status, body = b"200 OK", HTTP_BODY
    else:
        status = b"400 Bad Request"
        body = b"<html><head><title>lab page</title></head><body>bad request</body></html>\n"
    head = (
        b"HTTP/1.1 " + status + b"\r\n"
        b"Server: lab-http/1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: close\r\n\r\n"
    )
    return head if method == b"HEAD" else head + body


class SmtpProto(BannerProto):
    """tcp "smtp": a Postfix greeting, then hold (commands are ignored)."""

    banner = SMTP_BANNER


class FtpProto(BannerProto):
    """tcp "vsftpd": a vsftpd greeting, then hold (commands are ignored)."""

    banner = FTP_BANNER


def mysql_handshake() -> bytes:
    """A MySQL 8 initial handshake packet (protocol 10), sequence 0."""
    payload = (
        b"\x0a" + MYSQL_VERSION + b"\x00"
        + struct.pack("<I", 8)  # connection id
        + b"lab-salt"  # auth-plugin-data part 1 (8 bytes)
        + b"\x00"  # filler
        + struct.pack("<H", 0xFFFF)  # capability flags, low
        + b"\xff"  # character set utf8mb4_0900_ai_ci
        + struct.pack("<H", 0x0002)  # status: autocommit
        + struct.pack("<H", 0xDFFF)  # capability flags, high (CLIENT_PLUGIN_AUTH ...)
        + bytes([21])  # auth plugin data length
        + bytes(10)  # reserved
        + b"lab-salt-two\x00"  # auth-plugin-data part 2 (13 bytes)
        + b"caching_sha2_password\x00"
    )  # fmt: skip
    return len(payload).to_bytes(3, "little") + b"\x00" + payload


class MysqlProto(BannerProto):
    """tcp "mysql": a MySQL 8 handshake packet, then hold."""

    banner = mysql_handshake()


class RedisProto(_Held):
    """tcp "redis": inline commands answered as Redis answers them.

    PING -> +PONG; GET with the wrong argument count (an HTTP request line) -> the error
    Redis gives; a "Host:" or "POST" line closes the connection, as Redis does when it
    sees a cross-protocol attack; anything else -> "unknown command".
    """

    def __init__(self) -> None:
        super().__init__()
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buf += data[: REDIS_MAX_LINE - len(self.buf)]
        while b"\n" in self.buf:
            line, _, rest = bytes(self.buf).partition(b"\n")
            self.buf = bytearray(rest)
            words = line.strip().split()
            if not words:
                continue
            if line.startswith((b"Host:", b"POST")):
                self.transport.close()
                return
            command = words[0].lower()
            if command == b"ping":
                self.transport.write(b"+PONG\r\n")
            elif command == b"get" and len(words) != 2:
                self.transport.write(b"-ERR wrong number of arguments for 'get' command\r\n")
            else:
                name = command[:64].decode("ascii", "replace")
                self.transport.write(
                    f"-ERR unknown command `{name}`, with args beginning with: \r\n".encode()
                )
        if len(self.buf) >= REDIS_MAX_LINE:
            self.transport.close()  # Redis's inline buffer limit, much smaller here


class TlsProto(_Held):
    """tcp "https" and "tls": TLS over memory BIOs, so the first bytes can be sniffed.

    A ClientHello starts the handshake with the lab certificate; then "https" answers one
    HTTP request as the http kind does and "tls" holds the connection in silence. Plain
    text (not a TLS record) gets nginx's 400 from "https" and is dropped by "tls".
    """

    context: ssl.SSLContext | None = None  # set by serve() when a TLS kind is asked for
    speaks_http = True
    timeout = HTTP_TIMEOUT

    def __init__(self) -> None:
        super().__init__()
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls: ssl.SSLObject | None = None
        self.plain: bytearray | None = None
        self.request = bytearray()
        self.answered = False

    def data_received(self, data: bytes) -> None:
        try:
            self._received(data)
        except Exception as exc:  # a lab bug must not kill the service
            log_error(f"tls: {exc!r}")
            if self.transport is not None:
                self.transport.abort()

    def _received(self, data: bytes) -> None:
        assert self.transport is not None and self.context is not None
        if self.tls is None and self.plain is None:
            if data[:1] == b"\x16":
                self.tls = self.context.wrap_bio(self.incoming, self.outgoing, server_side=True)
            else:
                self.plain = bytearray()
        if self.plain is not None:
            self._plain(data)
            return
        assert self.tls is not None
        self.incoming.write(data)
        try:
            self.tls.do_handshake()
            if self.speaks_http and not self.answered:
                self._serve_http(self.tls)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError:
            self._flush()
            self.transport.close()
            return
        self._flush()

    def _serve_http(self, tls: ssl.SSLObject) -> None:
        while not http_request_complete(self.request):
            chunk = tls.read(HTTP_MAX_REQUEST)  # SSLWantReadError when nothing more yet
            if not chunk:
                break
            self.request += chunk[: HTTP_MAX_REQUEST + 4 - len(self.request)]
        if http_request_complete(self.request):
            self.answered = True
            tls.write(http_response(bytes(self.request)))
            with contextlib.suppress(ssl.SSLError):
                tls.unwrap()  # our close_notify; the client's never comes before we close
            self._flush()
            assert self.transport is not None
            self.transport.close()

    def _plain(self, data: bytes) -> None:
        assert self.transport is not None and self.plain is not None
        if not self.speaks_http:
            self.transport.close()
            return
        self.plain += data[: HTTP_MAX_REQUEST + 4 - len(self.plain)]
        if http_request_complete(self.plain) and not self.answered:
            self.answered = True
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\n"
                b"Server: nginx\r\n"
                b"Content-Type: text/html\r\n"
                b"Content-Length: " + str(len(HTTPS_PLAIN_BODY)).encode() + b"\r\n"
                b"Connection: close\r\n\r\n" + HTTPS_PLAIN_BODY
            )
            self.transport.close()

    def _flush(self) -> None:
        out = self.outgoing.read()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)


class TlsSilentProto(TlsProto):
    """tcp "tls": the handshake, then silence."""

    speaks_http = False


def make_tls_context() -> ssl.SSLContext:
    """A server context with a fresh self-signed EC certificate for CN=lab.test.

    Made with the ``openssl`` CLI (the stdlib cannot make certificates); the key and
    certificate files live in a temporary directory only until they are loaded.
    """
    openssl = shutil.which("openssl") or "/usr/bin/openssl"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory(prefix="portprobe-lab-tls-") as tmp:
        key, cert = os.path.join(tmp, "key.pem"), os.path.join(tmp, "cert.pem")
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", cert, "-days", "2",
             "-subj", f"/CN={TLS_COMMON_NAME}", "-addext", f"subjectAltName=DNS:{TLS_COMMON_NAME}"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        ctx.load_cert_chain(cert, key)
    return ctx


# --------------------------------------------------------------------------- hostile TCP

TARPIT_SECONDS = 120.0
TARPIT_BYTES = b"SSH-2.0-tarpit" + b"x" * 4096  # never a line end
ENDLESS_BYTES = 200 * 1024 * 1024  # per connection, far beyond any honest banner
ENDLESS_CHUNK = bytes(range(0x21, 0x7F)) * 700  # 65,800 printable bytes, no line end
GARBAGE = bytes([0x00, 0x1B, 0x9B, 0xFF]) + random.Random(7).randbytes(4092)
ANSI_EVIL = (
    "\x1b[2J\x1b[H\x1b]0;pwned\x07\x1b]52;c;ZWNobyBwd25lZA==\x07"  # clear, title, clipboard
    "\x1b]8;;http://198.18.0.66/\x1b\\click\x1b]8;;\x1b\\"  # a hyperlink
    "\u202etxt.exe\u202c\u2066\u200b\x9b31mred\x1b[0m\x00\x7f\x08\x08"  # bidi, C1 CSI, BS
)
ANSI_BANNER = ("220 evil.test ESMTP " + ANSI_EVIL + "\r\n").encode()
ANSI_TITLE = ("<title>" + ANSI_EVIL + "</title>").encode()
FORMULAS = (
    "=cmd|' /C calc'!A0",
    "+1+cmd|' /C calc'!A0",
    "-2+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    '=HYPERLINK("http://198.18.0.66/","x")',
    "=1+1\tcmd",
)
HOLD_HOSTILE = 60.0


def formula_for(port: int) -> str:
    """The formula a formula/formula-http port sends (chosen by its port number)."""
    return FORMULAS[port % len(FORMULAS)]


def _local_port(transport: asyncio.BaseTransport) -> int:
    name = transport.get_extra_info("sockname")
    return int(name[1]) if name else 0


class TarpitProto(_Held):
    """tcp "tarpit": one byte per second, never a line end."""

    timeout = TARPIT_SECONDS

    def started(self) -> None:
        self.sent = 0
        self.drip()

    def drip(self) -> None:
        assert self.transport is not None
        if self.transport.is_closing():
            return
        self.transport.write(TARPIT_BYTES[self.sent % len(TARPIT_BYTES) :][:1])
        self.sent += 1
        asyncio.get_running_loop().call_later(1.0, self.drip)


class EndlessProto(_Held):
    """tcp "endless": printable bytes as fast as the client reads, ENDLESS_BYTES in all."""

    timeout = HOLD_HOSTILE

    def started(self) -> None:
        self.sent = 0
        self.paused = False
        self.pump()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.pump()

    def pump(self) -> None:
        assert self.transport is not None
        while not self.paused and not self.transport.is_closing():
            if self.sent >= ENDLESS_BYTES:
                self.transport.close()
                return
            self.transport.write(ENDLESS_CHUNK)
            self.sent += len(ENDLESS_CHUNK)


class GarbageProto(BannerProto):
    """tcp "garbage": 4 KiB of binary, then hold."""

    banner = GARBAGE


class AnsiProto(BannerProto):
    """tcp "ansi": an SMTP greeting full of terminal escapes, then hold."""

    banner = ANSI_BANNER


class FormulaProto(_Held):
    """tcp "formula": an SMTP greeting whose text a spreadsheet would run (see FORMULAS)."""

    def started(self) -> None:
        assert self.transport is not None
        formula = formula_for(_local_port(self.transport))
        self.transport.write(b"220 " + formula.encode() + b" ESMTP\r\n")


def hostile_http_response(server: bytes, body: bytes) -> bytes:
    """A well-formed HTTP/1.1 200 with this Server header and body, connection closed."""
    return (
        b"HTTP/1.1 200 OK\r\nServer: " + server + b"\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: close\r\n\r\n" + body
    )


class AnsiHttpProto(HttpProto):
    """tcp "ansi-http": an HTTP answer whose title is full of terminal escapes."""

    def respond(self) -> None:
        assert self.transport is not None
        self.done = True
        body = b"<html><head>" + ANSI_TITLE + b"</head><body>x</body></html>\n"
        self.transport.write(hostile_http_response(b"evil-http/1.0", body))
        self.transport.close()


class FormulaHttpProto(HttpProto):
    """tcp "formula-http": an HTTP answer whose Server header is a formula."""

    def respond(self) -> None:
        assert self.transport is not None
        self.done = True
        server = formula_for(_local_port(self.transport)).encode()
        body = b"<html><head><title>formula</title></head><body>x</body></html>\n"
        self.transport.write(hostile_http_response(server, body))
        self.transport.close()


class RstProto(asyncio.Protocol):
    """tcp "rst": accept, then reset the connection at once (SO_LINGER 0)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()


class NoReadProto(_Held):
    """tcp "noread": accept, never read, never send, hold (the client's writes pile up)."""

    timeout = HOLD_HOSTILE

    def started(self) -> None:
        assert self.transport is not None
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
        self.transport.pause_reading()


def halfopen_listeners(port: int) -> list[socket.socket]:
    """tcp "halfopen": listen with backlog 0, fill the accept queue, never accept.

    Linux drops a SYN while the accept queue is full, so every later connect attempt
    goes unanswered. Returns the listeners and the connections that fill their queues.
    """
    held: list[socket.socket] = []
    for family, local in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        listener.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
        listener.listen(0)
        held.append(listener)
        # Backlog 0 holds one connection: fill it with our own, which is never accepted.
        filler = socket.socket(family, socket.SOCK_STREAM)
        filler.settimeout(2.0)
        filler.connect((local, port))
        held.append(filler)
    return held


TCP_PROTOCOLS: dict[str, type[asyncio.Protocol]] = {
    "open": OpenProto,
    "banner": BannerProto,
    "http": HttpProto,
    "silent": SilentProto,
    "smtp": SmtpProto,
    "vsftpd": FtpProto,
    "mysql": MysqlProto,
    "redis": RedisProto,
    "https": TlsProto,
    "tls": TlsSilentProto,
    "tarpit": TarpitProto,
    "endless": EndlessProto,
    "garbage": GarbageProto,
    "ansi": AnsiProto,
    "ansi-http": AnsiHttpProto,
    "formula": FormulaProto,
    "formula-http": FormulaHttpProto,
    "rst": RstProto,
    "noread": NoReadProto,
}


# --------------------------------------------------------------------------- UDP


def dns_reply(data: bytes) -> bytes | None:
    """Answer a well-formed DNS query: A -> DNS_ANSWER, version.bind CH TXT -> "lab-dns 1.0",
    anything else NXDOMAIN."""
    import dns.flags
    import dns.message
    import dns.opcode
    import dns.rcode
    import dns.rdataclass
    import dns.rdatatype
    import dns.rrset

    try:
        query = dns.message.from_wire(data)
    except Exception:
        return None  # malformed: stay silent
    if query.flags & dns.flags.QR or query.opcode() != dns.opcode.QUERY:
        return None
    if len(query.question) != 1:
        return None
    resp = dns.message.make_response(query)
    resp.flags |= dns.flags.AA
    q = query.question[0]
    if q.rdtype == dns.rdatatype.A and q.rdclass == dns.rdataclass.IN:
        resp.answer.append(dns.rrset.from_text(q.name, 60, "IN", "A", DNS_ANSWER))
    elif q.rdclass == dns.rdataclass.CH and q.name.to_text().lower() == "version.bind.":
        # As dnsmasq and BIND do: the server's software, in CHAOS TXT.
        resp.answer.append(dns.rrset.from_text(q.name, 0, "CH", "TXT", '"lab-dns 1.0"'))
    else:
        resp.set_rcode(dns.rcode.NXDOMAIN)
    return resp.to_wire()


def _ntp_ts(t: float) -> bytes:
    secs = int(t)
    frac = int((t - secs) * (1 << 32)) & 0xFFFFFFFF
    return struct.pack("!II", (secs + NTP_EPOCH_OFFSET) & 0xFFFFFFFF, frac)


def ntp_reply(data: bytes) -> bytes | None:
    """Answer an NTP client (mode 3) request with a stratum-2 server reply."""
    if len(data) < 48:
        return None
    version = (data[0] >> 3) & 7
    mode = data[0] & 7
    if mode != 3 or not 1 <= version <= 4:
        return None
    received = time.time()
    poll = max(4, min(17, struct.unpack("!b", data[2:3])[0]))
    header = struct.pack(
        "!BBbbII4s",
        (0 << 6) | (version << 3) | 4,  # LI=0, VN=client's, mode 4 (server)
        2,  # stratum 2
        poll,
        -23,  # precision ~ 119 ns
        0x00000100,  # root delay ~3.9 ms (16.16 fixed point)
        0x00000200,  # root dispersion ~7.8 ms
        socket.inet_aton("198.18.0.254"),  # refid of our pretend upstream
    )
    return (
        header
        + _ntp_ts(received - 64.0)  # reference: last sync a minute ago
        + data[40:48]  # originate = client's transmit timestamp
        + _ntp_ts(received)
        + _ntp_ts(time.time())
    )


SNMP_SYS_DESCR = b"Linux lab 6.1.0-13-amd64 portprobe-lab"
SNMP_SYS_DESCR_OID = bytes.fromhex("06082b06010201010100")  # 1.3.6.1.2.1.1.1.0


def _ber(tag: int, content: bytes) -> bytes:
    """A BER TLV, short or two-byte long form (enough for the lab's small messages)."""
    n = len(content)
    length = bytes((n,)) if n < 0x80 else b"\x81" + bytes((n,)) if n < 0x100 else None
    if length is None:
        raise ValueError("lab BER value too long")
    return bytes((tag,)) + length + content


def _ber_read(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start, end) of the TLV at ``pos`` (IndexError/ValueError when malformed)."""
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 2:
            raise ValueError("unsupported length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("truncated")
    return tag, pos, pos + length


def snmp_reply(data: bytes) -> bytes | None:
    """Answer a v1/v2c GetRequest for sysDescr.0 with community "public", as net-snmp does."""
    try:
        tag, start, _end = _ber_read(data, 0)
        if tag != 0x30:
            return None
        tag, v_start, v_end = _ber_read(data, start)
        version = data[v_start:v_end]
        tag, c_start, c_end = _ber_read(data, v_end)
        if tag != 0x04 or data[c_start:c_end] != b"public" or version not in (b"\x00", b"\x01"):
            return None  # an unknown community gets silence, as from real agents
        tag, p_start, p_end = _ber_read(data, c_end)
        if tag != 0xA0:
            return None
        tag, _r_start, r_end = _ber_read(data, p_start)
        if tag != 0x02 or SNMP_SYS_DESCR_OID not in data[r_end:p_end]:
            return None
    except (IndexError, ValueError):
        return None
    binding = _ber(0x30, SNMP_SYS_DESCR_OID + _ber(0x04, SNMP_SYS_DESCR))
    pdu = _ber(0xA2, data[p_start:r_end] + b"\x02\x01\x00\x02\x01\x00" + _ber(0x30, binding))
    return _ber(0x30, _ber(0x02, version) + _ber(0x04, b"public") + pdu)


MEMCACHED_VERSION = b"1.6.21"


def memcached_reply(data: bytes) -> bytes | None:
    """Answer ``version`` in memcached's UDP framing (same request ID, datagram 0 of 1)."""
    if len(data) < 8 or data[2:8] != b"\x00\x00\x00\x01\x00\x00" or data[8:] != b"version\r\n":
        return None
    return data[:2] + b"\x00\x00\x00\x01\x00\x00" + b"VERSION " + MEMCACHED_VERSION + b"\r\n"


SIP_SERVER = b"lab-sip/1.0"
_SIP_ECHOED = (b"via", b"v", b"from", b"f", b"to", b"t", b"call-id", b"i", b"cseq")


def sip_reply(data: bytes) -> bytes | None:
    """Answer an OPTIONS request with 200 OK, copying Via/From/To/Call-ID/CSeq (RFC 3261 8.2.6)."""
    if not data.startswith(b"OPTIONS ") or b"\r\n\r\n" not in data:
        return None
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    if not head[0].endswith(b" SIP/2.0"):
        return None
    copied = [line for line in head[1:] if line.split(b":", 1)[0].strip().lower() in _SIP_ECHOED]
    return b"\r\n".join(
        [b"SIP/2.0 200 OK", *copied, b"Server: " + SIP_SERVER, b"Allow: OPTIONS",
         b"Content-Length: 0", b"", b""]
    )  # fmt: skip


UDP_HANDLERS: dict[str, Callable[[bytes], bytes | None]] = {
    "dns": dns_reply,
    "ntp": ntp_reply,
    "echo": lambda data: data,
    "silent": lambda data: None,
    "snmp": snmp_reply,
    "memcached": memcached_reply,
    "sip": sip_reply,
}


class UdpService:
    """A UDP socket served with add_reader + recvmsg/sendmsg (for PKTINFO)."""

    def __init__(self, sock: socket.socket, kind: str) -> None:
        self.sock = sock
        self.v6 = sock.family == socket.AF_INET6
        self.handler = UDP_HANDLERS[kind]
        self.cmsg_space = socket.CMSG_SPACE(64)

    def readable(self) -> None:
        """Drain up to UDP_BATCH datagrams and answer them."""
        for _ in range(UDP_BATCH):
            try:
                data, anc, _flags, addr = self.sock.recvmsg(65535, self.cmsg_space)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log_error(f"udp recvmsg: {exc!r}")
                return
            try:
                reply = self.handler(data)
            except Exception as exc:  # a handler bug must not kill the service
                log_error(f"udp handler: {exc!r}")
                reply = None
            if reply is None:
                continue
            # EPERM from the lab's nft loss rule, ENOBUFS, ...: just drop it.
            with contextlib.suppress(OSError):
                self.sock.sendmsg([reply], self._reply_cmsg(anc), 0, addr)

    def _reply_cmsg(self, anc: list[tuple[int, int, bytes]]) -> list[tuple[int, int, bytes]]:
        """Build a PKTINFO cmsg so the reply's source is the request's destination."""
        for level, ctype, cdata in anc:
            if not self.v6 and level == socket.IPPROTO_IP and ctype == IP_PKTINFO:
                _ifindex, _spec, dst = struct.unpack("=I4s4s", cdata[:12])
                return [(socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=I4s4s", 0, dst, bytes(4)))]
            if self.v6 and level == socket.IPPROTO_IPV6 and ctype == socket.IPV6_PKTINFO:
                dst6, _ifindex = struct.unpack("=16sI", cdata[:20])
                if ipaddress.IPv6Address(dst6).is_multicast:
                    return []
                return [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, struct.pack("=16sI", dst6, 0))]
        return []


# --------------------------------------------------------------------------- main


def _bind(family: int, type_: int, port: int) -> socket.socket:
    sock = socket.socket(family, type_)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if type_ == socket.SOCK_DGRAM:
            _big_rcvbuf(sock)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _big_rcvbuf(sock: socket.socket) -> None:
    """Let a UDP socket absorb scanner bursts (SO_RCVBUFFORCE ignores rmem_max; we are root)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, UDP_RCVBUF)
    except OSError:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, 1 << 20), hard))


def _exception_handler(loop: asyncio.AbstractEventLoop, ctx: dict[str, object]) -> None:
    log_error(f"loop: {ctx.get('message')} {ctx.get('exception')!r}")


async def serve(spec: dict[str, object], watch_stdin: bool) -> None:
    """Bind every service in ``spec``, print READY and serve until told to stop."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_exception_handler)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)

    banner = spec.get("banner") or DEFAULT_BANNER
    assert isinstance(banner, str)
    if not banner.endswith("\n"):
        banner += "\r\n"  # a banner is a line
    BannerProto.banner = banner.encode("utf-8", "surrogateescape")

    tcp = dict(spec.get("tcp") or {})  # type: ignore[call-overload]
    udp = dict(spec.get("udp") or {})  # type: ignore[call-overload]
    servers = []
    udp_socks = []
    half_open: list[socket.socket] = []
    if TLS_KINDS & set(tcp.values()):
        TlsProto.context = make_tls_context()  # before READY: a failure shows in the lab log
    for port, kind in tcp.items():
        if kind not in TCP_KINDS:
            raise ValueError(f"unknown tcp kind {kind!r}")
        if kind == "halfopen":
            half_open += halfopen_listeners(int(port))
            continue
        for family in (socket.AF_INET, socket.AF_INET6):
            sock = _bind(family, socket.SOCK_STREAM, int(port))
            servers.append(
                await loop.create_server(TCP_PROTOCOLS[kind], sock=sock, backlog=LISTEN_BACKLOG)
            )
    for port, kind in udp.items():
        if kind not in UDP_KINDS:
            raise ValueError(f"unknown udp kind {kind!r}")
        if kind == "dns":
            import dns.message  # noqa: F401  # import now: fail before READY, not per query
        for family in (socket.AF_INET, socket.AF_INET6):
            sock = _bind(family, socket.SOCK_DGRAM, int(port))
            svc = UdpService(sock, kind)
            loop.add_reader(sock.fileno(), svc.readable)
            udp_socks.append(sock)

    if watch_stdin:
        # The lab holds the other end of our stdin pipe: EOF means it is gone.
        def on_stdin() -> None:
            try:
                if not os.read(0, 4096):
                    stop.set()
            except BlockingIOError:
                pass
            except OSError:
                stop.set()

        os.set_blocking(0, False)
        loop.add_reader(0, on_stdin)

    parent = os.getppid()

    async def watch_parent() -> None:
        while True:
            await asyncio.sleep(PARENT_CHECK_S)
            if os.getppid() != parent:
                stop.set()
                return

    watcher = asyncio.create_task(watch_parent())
    print("READY", flush=True)
    await stop.wait()
    watcher.cancel()
    for srv in servers:
        srv.close()
    for sock in udp_socks:
        loop.remove_reader(sock.fileno())
        sock.close()
    for sock in half_open:
        sock.close()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", required=True, help="JSON service spec")
    ap.add_argument("--watch-stdin", action="store_true", help="exit when stdin hits EOF")
    args = ap.parse_args(argv)
    spec = json.loads(args.spec)
    _raise_nofile()
    asyncio.run(serve(spec, args.watch_stdin))
    return 0


if __name__ == "__main__":
    sys.exit(main())
