"""memcached (port 11211): the ``version`` command over UDP and over TCP.

Rules and theory:
- memcached's UDP protocol (its protocol.txt, "UDP protocol") prefixes every datagram
  with an 8-byte frame header: request ID, sequence number, total number of datagrams in
  the message, and 2 reserved zero bytes, all 16-bit big-endian. A request is one
  datagram (sequence 0 of 1) holding a text command; ``version\\r\\n`` is the cheapest,
  and changes nothing on the server.
- The server answers with the same request ID, and a response of one or more datagrams
  numbered from 0; the first holds ``VERSION <version>\\r\\n``. A reply counts only if
  its header carries our request ID, sequence 0, a total of at least 1 and zero reserved
  bytes, and its text is a VERSION line (or ``ERROR`` / ``CLIENT_ERROR`` /
  ``SERVER_ERROR``, which a memcached-speaking server that refuses the command sends).
- Over TCP the same text command goes out bare (no frame header), and only a
  ``VERSION`` line counts: a lone ``ERROR`` is what many line-based servers answer to a
  word they do not know. A version that is a dotted number is memcached's own (the
  product); another text (a proxy's name) is shown in the detail only.
"""

from __future__ import annotations

import re
import struct

from scanner.protocols import Evidence, clean
from scanner.protocols.tcp import TcpProbe

__all__ = ["REQUEST_ID", "TCP_PROBES", "build_request", "decode_tcp", "parse_reply", "tcp_request"]

REQUEST_ID = 0x7070
_FRAME = struct.Struct("!HHHH")
_VERSION = re.compile(rb"VERSION ([!-~]{1,64})\r?\n")
_NUMBER = re.compile(rb"\d{1,3}\.\d{1,3}\.\d{1,4}")
_ERROR = re.compile(rb"(ERROR|CLIENT_ERROR|SERVER_ERROR)(?: ([ -~]{0,120}))?\r?\n")


def build_request() -> bytes:
    """Frame header (request REQUEST_ID, datagram 0 of 1) + ``version\\r\\n``."""
    return _FRAME.pack(REQUEST_ID, 0, 1, 0) + b"version\r\n"


def parse_reply(data: bytes) -> Evidence | None:
    """``Evidence("memcached", "1.6.21", "memcached")`` for a version reply, else None."""
    if len(data) < _FRAME.size:
        return None
    request, sequence, total, reserved = _FRAME.unpack_from(data)
    if request != REQUEST_ID or sequence != 0 or total < 1 or reserved != 0:
        return None
    text = data[_FRAME.size : _FRAME.size + 256]
    if (m := _VERSION.match(text)) is not None:
        return Evidence("memcached", clean(m.group(1)), "memcached")
    if (m := _ERROR.match(text)) is not None:
        return Evidence("memcached", clean(m.group(0)), "memcached")
    return None


def tcp_request(_host: str, _port: int) -> bytes:
    """The TCP probe: ``version\\r\\n``."""
    return b"version\r\n"


def decode_tcp(data: bytes) -> Evidence | None:
    """``Evidence("memcached", "1.6.18", ..., product="memcached")`` for a VERSION line."""
    m = _VERSION.match(data[:256])
    if m is None:
        return None
    text = m.group(1)
    number = _NUMBER.match(text)
    return Evidence(
        "memcached",
        clean(text),
        "memcached",
        product="memcached" if number else "",
        version=number.group().decode() if number else "",
        rule="memcached:version",
    )


TCP_PROBES = (TcpProbe(name="memcached", request=tcp_request, decode=decode_tcp, rank=45),)
