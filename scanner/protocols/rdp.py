"""RDP (port 3389): an X.224 Connection Request, and the server's Connection Confirm.

Rules and theory:
- An RDP connection starts (MS-RDPBCGR 1.3.1.1, 2.2.1.1) with a TPKT header (RFC 1006:
  version 3, a reserved byte, a 16-bit big-endian length) around an X.224 Connection
  Request TPDU (ISO 8073: length indicator, code 0xE0, destination and source
  references, class 0), carrying an RDP Negotiation Request that asks for TLS or CredSSP
  (``requestedProtocols``). No cookie and no routing token: nothing names a user.
- The server answers with a Connection Confirm (code 0xD0) in a TPKT. Its optional
  negotiation part is an RDP Negotiation Response (type 2, the protocol selected) or a
  Negotiation Failure (type 3, a failure code, e.g. "SSL required by server"). Either
  proves RDP; a bare Connection Confirm (an old server: standard RDP security) too.
- Only a TPKT of version 3 whose TPDU is a Connection Confirm counts: other ISO-on-TCP
  services (S7comm, for one) answer a CR too, but without RDP's negotiation part the
  detail says so ("no negotiation").
"""

from __future__ import annotations

import struct

from scanner.protocols import Evidence
from scanner.protocols.tcp import TcpProbe

__all__ = ["REQUEST", "TCP_PROBES", "build_request", "parse_reply"]

_PROTOCOL_SSL, _PROTOCOL_HYBRID = 0x1, 0x2
_NEG_REQ = struct.pack("<BBHI", 0x01, 0, 8, _PROTOCOL_SSL | _PROTOCOL_HYBRID)
_TPDU = bytes((6 + len(_NEG_REQ), 0xE0, 0, 0, 0, 0, 0)) + _NEG_REQ
REQUEST = struct.pack(">BBH", 3, 0, 4 + len(_TPDU)) + _TPDU

_PROTOCOLS = {0: "standard RDP security", 1: "TLS", 2: "CredSSP", 4: "RDSTLS", 8: "CredSSP EX"}
_FAILURES = {
    1: "SSL required by server",
    2: "SSL not allowed by server",
    3: "SSL certificate not on server",
    4: "inconsistent flags",
    5: "hybrid required by server",
    6: "SSL with user auth required by server",
}
_CONFIRM = 0xD0


def build_request(_host: str = "", _port: int = 0) -> bytes:
    """The TPKT + X.224 Connection Request asking for TLS or CredSSP."""
    return REQUEST


def parse_reply(data: bytes) -> Evidence | None:
    """``Evidence("rdp", "selected TLS", "rdp")`` for a Connection Confirm, else None."""
    if len(data) < 11 or data[0] != 3 or data[1] != 0:
        return None
    length = int.from_bytes(data[2:4], "big")
    li = data[4]
    if not 11 <= length <= 64 or li + 5 > length or li < 6 or data[5] & 0xF0 != _CONFIRM:
        return None
    if len(data) < length:
        return None  # wait for the whole TPDU
    neg = data[11:length]
    if len(neg) < 8:
        return Evidence("rdp", "no negotiation", "rdp", rule="rdp:x224-confirm")
    kind, _flags, size, value = struct.unpack_from("<BBHI", neg)
    if size != 8:
        return None
    if kind == 2:
        name = _PROTOCOLS.get(value, f"protocol 0x{value:x}")
        return Evidence("rdp", f"selected {name}", "rdp", rule="rdp:negotiation-response")
    if kind == 3:
        reason = _FAILURES.get(value, f"failure {value}")
        return Evidence("rdp", f"negotiation failure: {reason}", "rdp",
                        rule="rdp:negotiation-failure")  # fmt: skip
    return None


TCP_PROBES = (TcpProbe(name="rdp", request=build_request, decode=parse_reply, rank=40),)
