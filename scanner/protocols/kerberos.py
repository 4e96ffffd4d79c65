"""Kerberos (port 88) over TCP: an AS-REQ, and the KDC's KRB-ERROR (or AS-REP).

Rules and theory:
- Over TCP every Kerberos message is preceded by its length, 4 bytes big-endian, the
  high bit reserved (RFC 4120 7.2.2).
- The request is an AS-REQ (RFC 4120 5.4.1, ``[APPLICATION 10]``) for the client
  ``portprobe`` and the service ``krbtgt/PORTPROBE.INVALID`` in the realm
  ``PORTPROBE.INVALID`` (RFC 6761: a realm no KDC serves), without pre-authentication.
  A KDC must answer it, and can only refuse: a KRB-ERROR (``[APPLICATION 30]``, 5.9.1),
  typically WRONG_REALM (68) or C_PRINCIPAL_UNKNOWN (6), naming the realm it checked.
  An AS-REP (``[APPLICATION 11]``) would prove Kerberos as well.
- The reply is DER. Only what is needed is read, within bounds: the outer tag, the
  SEQUENCE, and the context-tagged fields ``error-code`` [6], ``realm`` [9] and
  ``e-text`` [11]. Each element's length is checked against what is left; a long-form
  length of more than 4 bytes, or one past the message, is not DER we accept.
- The detail is the error code's number and name, the realm (unless it is just ours
  echoed back, as MIT's KDC does), and the e-text if any (MIT: "CLIENT_NOT_FOUND").
"""

from __future__ import annotations

from scanner.protocols import Evidence, clean, join_detail
from scanner.protocols.tcp import TcpProbe

__all__ = ["REALM", "REQUEST", "TCP_PROBES", "build_request", "parse_reply"]

REALM = b"PORTPROBE.INVALID"
MAX_MESSAGE = 4096
_MAX_ELEMENTS = 32

_ERRORS = {
    6: "C_PRINCIPAL_UNKNOWN",
    7: "S_PRINCIPAL_UNKNOWN",
    12: "POLICY",
    14: "ETYPE_NOSUPP",
    24: "PREAUTH_FAILED",
    25: "PREAUTH_REQUIRED",
    37: "SKEW",
    60: "GENERIC",
    68: "WRONG_REALM",
}


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        length = bytes((n,))
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes((0x80 | len(raw),)) + raw
    return bytes((tag,)) + length + content


def _ctx(number: int, content: bytes) -> bytes:
    return _der(0xA0 | number, content)


def _int(value: int) -> bytes:
    return _der(0x02, value.to_bytes((value.bit_length() + 8) // 8, "big"))


def _seq(*parts: bytes) -> bytes:
    return _der(0x30, b"".join(parts))


def _principal(kind: int, *names: bytes) -> bytes:
    return _seq(_ctx(0, _int(kind)), _ctx(1, _seq(*(_der(0x1B, n) for n in names))))


def _build() -> bytes:
    body = _seq(
        _ctx(0, _der(0x03, b"\x00\x50\x80\x00\x10")),  # forwardable, proxiable, renewable-ok
        _ctx(1, _principal(1, b"portprobe")),  # NT-PRINCIPAL
        _ctx(2, _der(0x1B, REALM)),
        _ctx(3, _principal(2, b"krbtgt", REALM)),  # NT-SRV-INST
        _ctx(5, _der(0x18, b"20370913024805Z")),  # till: a fixed far date
        _ctx(7, _int(0x70707070)),  # nonce: fixed, we never check a ticket
        _ctx(8, _seq(_int(18), _int(17), _int(23))),  # aes256, aes128, rc4
    )
    as_req = _der(0x6A, _seq(_ctx(1, _int(5)), _ctx(2, _int(10)), _ctx(4, body)))
    return len(as_req).to_bytes(4, "big") + as_req


REQUEST = _build()


def build_request(_host: str = "", _port: int = 0) -> bytes:
    """The length-prefixed AS-REQ (always the same bytes)."""
    return REQUEST


def _element(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """(tag, content start, content end) of the DER element at ``pos``, or None."""
    if pos + 2 > len(data):
        return None
    tag, first = data[pos], data[pos + 1]
    start = pos + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if not 1 <= count <= 4 or start + count > len(data):
            return None
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    end = start + length
    return None if end > len(data) else (tag, start, end)


def _fields(data: bytes, start: int, end: int) -> dict[int, tuple[int, int]]:
    """The context-tagged fields [n] of the SEQUENCE content in ``data[start:end]``."""
    out: dict[int, tuple[int, int]] = {}
    pos = start
    for _ in range(_MAX_ELEMENTS):
        if pos >= end:
            break
        element = _element(data[:end], pos)
        if element is None:
            break
        tag, content_start, content_end = element
        if tag & 0xE0 == 0xA0:
            out.setdefault(tag & 0x1F, (content_start, content_end))
        pos = content_end
    return out


def _inner(data: bytes, span: tuple[int, int] | None, tag: int) -> bytes | None:
    """The content of the ``tag`` element inside a context field's span, or None."""
    if span is None:
        return None
    element = _element(data[: span[1]], span[0])
    if element is None or element[0] != tag:
        return None
    return data[element[1] : element[2]]


def parse_reply(data: bytes) -> Evidence | None:
    """``Evidence("kerberos", "KRB-ERROR 68 WRONG_REALM; realm X", ...)``, else None.

    None also while the length-prefixed message is incomplete.
    """
    if len(data) < 6:
        return None
    length = int.from_bytes(data[:4], "big")
    if not 2 <= length <= MAX_MESSAGE or len(data) < 4 + length:
        return None
    message = data[4 : 4 + length]
    outer = _element(message, 0)
    if outer is None or outer[0] not in (0x7E, 0x6B):
        return None
    seq = _element(message, outer[1])
    if seq is None or seq[0] != 0x30:
        return None
    fields = _fields(message, seq[1], seq[2])
    if outer[0] == 0x6B:
        pvno = _inner(message, fields.get(0), 0x02)
        if pvno != b"\x05":
            return None
        realm = _inner(message, fields.get(3), 0x1B) or b""
        return Evidence("kerberos", join_detail("AS-REP", f"realm {clean(realm, 64)}"),
                        "kerberos", rule="kerberos:as-rep")  # fmt: skip
    pvno, msg_type = _inner(message, fields.get(0), 0x02), _inner(message, fields.get(1), 0x02)
    code = _inner(message, fields.get(6), 0x02)
    if pvno != b"\x05" or msg_type != b"\x1e" or code is None or not 1 <= len(code) <= 4:
        return None
    number = int.from_bytes(code, "big", signed=True)
    realm = _inner(message, fields.get(9), 0x1B) or b""
    if realm == REALM:
        realm = b""  # our own realm echoed: it says nothing about the KDC's
    text = _inner(message, fields.get(11), 0x1B) or b""
    name = _ERRORS.get(number, "")
    return Evidence(
        "kerberos",
        join_detail(f"KRB-ERROR {number} {name}".strip(), f"realm {clean(realm, 64)}" if realm
                    else "", clean(text, 80)),
        "kerberos",
        rule="kerberos:krb-error",
    )  # fmt: skip


TCP_PROBES = (TcpProbe(name="kerberos", request=build_request, decode=parse_reply, rank=50),)
