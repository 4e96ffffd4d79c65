"""Java RMI (port 1099): the JRMP handshake, and the server's ProtocolAck.

Rules and theory:
- A JRMP client opens with the magic ``JRMI``, protocol version 2 and a protocol byte
  (Java RMI specification 10.2.1); ``StreamProtocol`` (0x4B) asks the server to answer
  before anything else is sent.
- The server answers ``ProtocolAck`` (0x4E), then the client's host as it sees it (Java
  ``writeUTF``: a 16-bit length and modified UTF-8) and the client's port (32 bits).
  ``ProtocolNotSupported`` (0x4F) proves JRMP as well. Nothing is ever deserialised:
  the probe stops at the handshake.
- Only a single 0x4F byte, or 0x4E with a host of printable characters and the whole
  port, counts.
"""

from __future__ import annotations

import re

from scanner.protocols import Evidence
from scanner.protocols.tcp import TcpProbe

__all__ = ["REQUEST", "TCP_PROBES", "build_request", "parse_reply"]

REQUEST = b"JRMI\x00\x02\x4b"
_ACK, _NOT_SUPPORTED = 0x4E, 0x4F
_HOST = re.compile(rb"[0-9A-Za-z.:%_-]{1,255}")


def build_request(_host: str = "", _port: int = 0) -> bytes:
    """The JRMP header for the stream protocol."""
    return REQUEST


def parse_reply(data: bytes) -> Evidence | None:
    """``Evidence("java-rmi", "ProtocolAck; sees us as <host>:<port>", "rmi")``, else None."""
    if data[:1] == bytes((_NOT_SUPPORTED,)) and len(data) == 1:
        return Evidence("java-rmi", "ProtocolNotSupported", "rmi", rule="rmi:not-supported")
    if len(data) < 3 or data[0] != _ACK:
        return None
    size = int.from_bytes(data[1:3], "big")
    if len(data) < 3 + size + 4:
        return None
    host = data[3 : 3 + size]
    if _HOST.fullmatch(host) is None:
        return None
    port = int.from_bytes(data[3 + size : 7 + size], "big")
    if port > 65535:
        return None
    return Evidence("java-rmi", f"ProtocolAck; sees us as {host.decode()}:{port}", "rmi",
                    rule="rmi:protocol-ack")  # fmt: skip


TCP_PROBES = (TcpProbe(name="rmi", request=build_request, decode=parse_reply, rank=60),)
