"""TLS: a client handshake over memory buffers, and what the server's certificate says.

Rules and theory:
- :class:`TlsClient` is the stdlib's ``ssl.SSLObject`` between two ``ssl.MemoryBIO``
  buffers: the caller moves the bytes (``data_to_send`` / ``receive``), so this module
  never touches a socket, as in h11. OpenSSL does the whole handshake; nothing here
  re-implements TLS.
- We observe, we do not trust: no certificate verification (``CERT_NONE``,
  ``check_hostname`` off), the widest version range and cipher list the local OpenSSL
  allows, legacy renegotiation accepted, so that old and self-signed servers still show
  themselves. Nothing sent over this channel is secret; the only request is ``GET /``.
  No SNI is sent: the scanner probes addresses, not names.
- The certificate is read with ``getpeercert(binary_form=True)`` (available even
  unverified) and parsed by a minimal, bounded DER reader: the subject's common name,
  the first DNS subject alternative name when there is no common name, and whether the
  issuer equals the subject (self-signed).
- A server that answers the ClientHello with a TLS alert record (RFC 8446 6) still speaks
  TLS; :func:`parse_alert` names the alert from the raw record, so no error message text
  is ever matched.
- The first bytes decide quickly whether a port speaks TLS at all: a server that answers
  a ClientHello with anything but a handshake or alert record (an SSH banner, an HTTP
  400) is not TLS, see :func:`record_kind`.
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass

from scanner.protocols import Evidence, clean, join_detail

__all__ = [
    "MAX_HANDSHAKE",
    "CertInfo",
    "TlsClient",
    "alert_evidence",
    "cert_info",
    "client_context",
    "describe",
    "parse_alert",
    "record_kind",
]

MAX_HANDSHAKE = 64 * 1024  # bytes a server may send until the handshake ends (cert chains)
MAX_CERT = 64 * 1024  # DER bytes of a certificate we parse at all
_NAME = 80  # characters of a certificate name in the detail

_HANDSHAKE, _ALERT = 0x16, 0x15

# RFC 8446 6 and RFC 5246 7.2: alert description codes.
ALERTS: dict[int, str] = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
    21: "decryption_failed", 22: "record_overflow", 30: "decompression_failure",
    40: "handshake_failure", 41: "no_certificate", 42: "bad_certificate",
    43: "unsupported_certificate", 44: "certificate_revoked", 45: "certificate_expired",
    46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca", 49: "access_denied",
    50: "decode_error", 51: "decrypt_error", 60: "export_restriction", 70: "protocol_version",
    71: "insufficient_security", 80: "internal_error", 86: "inappropriate_fallback",
    90: "user_canceled", 100: "no_renegotiation", 109: "missing_extension",
    110: "unsupported_extension", 111: "certificate_unobtainable", 112: "unrecognized_name",
    113: "bad_certificate_status_response", 114: "bad_certificate_hash_value",
    115: "unknown_psk_identity", 116: "certificate_required", 120: "no_application_protocol",
}  # fmt: skip


@functools.cache
def client_context() -> ssl.SSLContext:
    """The one client context: no verification, every version and cipher OpenSSL allows."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # before verify_mode: the order the ssl module requires
    ctx.verify_mode = ssl.CERT_NONE
    ctx.options |= getattr(ssl, "OP_LEGACY_SERVER_CONNECT", 0)
    try:
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pass  # a build that refuses: its defaults still see every modern server
    # HTTP/1.1 first; a server that speaks only HTTP/2 (gRPC) may still pick h2.
    ctx.set_alpn_protocols(["http/1.1", "h2"])
    return ctx


def record_kind(data: bytes) -> str | None:
    """``"handshake"`` / ``"alert"`` when ``data`` starts a TLS record of that type, else None.

    Needs the first 3 bytes: content type, then the record version 3.x (SSL 3.0 to TLS 1.3,
    whose records still say 3.1 to 3.3).
    """
    if len(data) < 3 or data[1] != 3 or data[2] > 4:
        return None
    return {_HANDSHAKE: "handshake", _ALERT: "alert"}.get(data[0])


def parse_alert(data: bytes) -> str | None:
    """The name of the alert in a plaintext TLS alert record at the start of ``data``."""
    if record_kind(data) != "alert" or len(data) < 7:
        return None
    if int.from_bytes(data[3:5], "big") != 2 or data[5] not in (1, 2):
        return None
    return ALERTS.get(data[6], f"alert {data[6]}")


def alert_evidence(data: bytes) -> Evidence | None:
    """``Evidence("tls", "alert <name>", "tls")`` when the server answered with an alert."""
    name = parse_alert(data)
    return None if name is None else Evidence("tls", f"alert {name}", "tls")


class TlsClient:
    """A TLS client over memory buffers; the caller moves the bytes.

    Typical use: send ``data_to_send()``; for every chunk received call ``receive(chunk)``,
    then ``handshake()`` (True once done; ``ssl.SSLError`` when the server refuses) and
    send ``data_to_send()`` again. After the handshake, ``send(plaintext)`` and
    ``read()`` carry application data; ``receive(b"")`` signals the peer's EOF.
    """

    def __init__(
        self, context: ssl.SSLContext | None = None, server_hostname: str | None = None
    ) -> None:
        """Prepare the ClientHello (``data_to_send`` returns it after ``handshake()``)."""
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._obj = (context or client_context()).wrap_bio(
            self._incoming, self._outgoing, server_side=False, server_hostname=server_hostname
        )
        self.handshake_done = False
        self.closed = False

    def receive(self, data: bytes) -> None:
        """Bytes from the server; ``b""`` means the server closed the connection."""
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    def handshake(self) -> bool:
        """Advance the handshake with what was received; True once it is complete."""
        if not self.handshake_done:
            try:
                self._obj.do_handshake()
            except ssl.SSLWantReadError:
                return False
            self.handshake_done = True
        return True

    def data_to_send(self) -> bytes:
        """Bytes for the server (records OpenSSL produced), b"" when none."""
        return self._outgoing.read()

    def send(self, plaintext: bytes) -> None:
        """Encrypt application data (after the handshake); then send ``data_to_send()``."""
        self._obj.write(plaintext)

    def read(self, limit: int) -> bytes:
        """Decrypted application data received so far, at most ``limit`` bytes.

        Sets ``closed`` when the server ended the TLS session (close_notify, or EOF
        without it: a truncated session still delivered what it delivered).
        """
        out = bytearray()
        while len(out) < limit and not self.closed:
            try:
                chunk = self._obj.read(limit - len(out))
            except ssl.SSLWantReadError:
                break
            except ssl.SSLError:  # close_notify (SSLZeroReturnError), EOF, bad record...
                self.closed = True
                break
            if not chunk:
                self.closed = True
                break
            out += chunk
        return bytes(out)

    @property
    def alpn(self) -> str:
        """The application protocol the server chose by ALPN ("h2", "http/1.1"), or ""."""
        if not self.handshake_done:
            return ""
        return self._obj.selected_alpn_protocol() or ""

    @property
    def version(self) -> str:
        """The negotiated protocol version ("TLSv1.3"), "" before the handshake."""
        return (self._obj.version() or "") if self.handshake_done else ""

    def peer_certificate(self) -> bytes | None:
        """The server's certificate in DER (unverified), or None."""
        if not self.handshake_done:
            return None
        try:
            return self._obj.getpeercert(binary_form=True)
        except (ValueError, ssl.SSLError):
            return None

    def describe(self) -> str:
        """``TLSv1.3; CN=lab.test; self-signed`` for the completed handshake."""
        return describe(self.version, self.peer_certificate())


def describe(version: str, der: bytes | None) -> str:
    """The TLS part of a detail: version, certificate name, self-signed or not."""
    info = cert_info(der) if der else None
    parts = [clean(version, 16)]
    if info is not None:
        if info.common_name:
            parts.append(f"CN={info.common_name}")
        elif info.dns_name:
            parts.append(f"SAN={info.dns_name}")
        if info.self_signed:
            parts.append("self-signed")
    return join_detail(*parts)


# --------------------------------------------------------------------------- DER


@dataclass(frozen=True, slots=True)
class CertInfo:
    """The little we read from a certificate: names are cleaned, "" when absent."""

    common_name: str
    dns_name: str
    self_signed: bool


def _tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at ``pos``; ValueError if bad."""
    if pos + 2 > end:
        raise ValueError("truncated")
    tag, first = buf[pos], buf[pos + 1]
    if tag & 0x1F == 0x1F:
        raise ValueError("high tag numbers are not used in certificates")
    start = pos + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if not 1 <= count <= 3 or start + count > end:
            raise ValueError("bad length")
        length = int.from_bytes(buf[start : start + count], "big")
        start += count
    if start + length > end:
        raise ValueError("element overruns its parent")
    return tag, start, start + length


def _children(buf: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    pos = start
    while pos < end and len(out) < 64:
        tag, cstart, cend = _tlv(buf, pos, end)
        out.append((tag, cstart, cend))
        pos = cend
    return out


_OID_CN = b"\x55\x04\x03"  # 2.5.4.3
_OID_SAN = b"\x55\x1d\x11"  # 2.5.29.17
_STRING_CODECS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be"}


def _common_name(buf: bytes, start: int, end: int) -> str:
    for rdn_tag, rs, re_ in _children(buf, start, end):  # Name: SEQUENCE OF RDN (SET)
        if rdn_tag != 0x31:
            continue
        for atv_tag, as_, ae in _children(buf, rs, re_):
            if atv_tag != 0x30:
                continue
            parts = _children(buf, as_, ae)
            if (
                len(parts) >= 2
                and parts[0][0] == 0x06
                and buf[parts[0][1] : parts[0][2]] == _OID_CN
            ):
                vtag, vs, ve = parts[1]
                codec = _STRING_CODECS.get(vtag)
                if codec is not None:
                    return clean(buf[vs:ve].decode(codec, "replace"), _NAME)
    return ""


def _dns_name(buf: bytes, start: int, end: int) -> str:
    for tag, s, e in _children(buf, start, end):  # Extensions: SEQUENCE OF Extension
        if tag != 0x30:
            continue
        parts = _children(buf, s, e)
        if not parts or parts[0][0] != 0x06 or buf[parts[0][1] : parts[0][2]] != _OID_SAN:
            continue
        octets = parts[-1]
        if octets[0] != 0x04:
            return ""
        _, gs, ge = _tlv(buf, octets[1], octets[2])  # GeneralNames: SEQUENCE
        for gtag, ns, ne in _children(buf, gs, ge):
            if gtag == 0x82:  # dNSName [2] IMPLICIT IA5String
                return clean(buf[ns:ne].decode("ascii", "replace"), _NAME)
    return ""


def cert_info(der: bytes) -> CertInfo | None:
    """Subject CN, first DNS SAN and self-signedness of a DER certificate; None if unreadable."""
    buf = bytes(der[:MAX_CERT])
    try:
        tag, cs, ce = _tlv(buf, 0, len(buf))  # Certificate: SEQUENCE
        if tag != 0x30:
            return None
        tag, ts, te = _tlv(buf, cs, ce)  # TBSCertificate: SEQUENCE
        if tag != 0x30:
            return None
        fields = _children(buf, ts, te)
        i = 1 if fields and fields[0][0] == 0xA0 else 0  # [0] EXPLICIT version
        # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo
        issuer, subject = fields[i + 2], fields[i + 4]
        if issuer[0] != 0x30 or subject[0] != 0x30:
            return None
        dns = ""
        for ftag, fs, fe in fields[i + 6 :]:
            if ftag == 0xA3:  # [3] EXPLICIT Extensions
                _, es, ee = _tlv(buf, fs, fe)
                dns = _dns_name(buf, es, ee)
        return CertInfo(
            common_name=_common_name(buf, subject[1], subject[2]),
            dns_name=dns,
            self_signed=buf[issuer[1] : issuer[2]] == buf[subject[1] : subject[2]],
        )
    except (ValueError, IndexError):
        return None
