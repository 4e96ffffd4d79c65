"""AMQP 0-9-1 (port 5672): the protocol header, then the server's Connection.Start.

Rules and theory:
- The client opens with the protocol header ``AMQP\\x00\\x00\\x09\\x01`` (AMQP 0-9-1
  4.2.2). A server that speaks that version answers with a method frame (type 1, channel
  0, uint32 payload size, payload, frame-end ``0xCE``) carrying Connection.Start (class
  10, method 10): version-major and -minor octets, the server-properties field table,
  then the security mechanisms and locales as long strings. A server that does not speak
  0-9-1 answers with the header of the version it does speak (``AMQP\\x00\\x00\\x09\\x01``,
  ``AMQP\\x00\\x01\\x00\\x00`` for AMQP 1.0...) and closes: AMQP too.
- server-properties carries ``product`` ("RabbitMQ"), ``version`` ("3.10.8"),
  ``platform`` ("Erlang/OTP 25.2.3") and ``cluster_name``: the evidence's product,
  version and detail.
- A field table (4.2.5.5, as RabbitMQ implements it) is a uint32 size, then entries: a
  short string name (octet length), a type octet and a value. The walk is strict and
  bounded: every length is checked against the table, and a type we cannot size ends it
  (the entries before it are kept). The frame must fit in ``MAX_REPLY``.
"""

from __future__ import annotations

import struct

from scanner.protocols import Evidence, clean, join_detail
from scanner.protocols.tcp import TcpProbe

__all__ = ["HEADER", "MAX_REPLY", "TCP_PROBES", "decode"]

HEADER = b"AMQP\x00\x00\x09\x01"
MAX_REPLY = 4096
_FRAME = struct.Struct("!BHI")
_FRAME_END = 0xCE
_U32 = struct.Struct("!I")
# Field value types of known size (RabbitMQ's reading of the 0-9-1 errata).
_FIXED = {b"t": 1, b"b": 1, b"B": 1, b"s": 2, b"u": 2, b"I": 4, b"i": 4, b"l": 8, b"f": 4,
          b"d": 8, b"D": 5, b"T": 8, b"V": 0}  # fmt: skip
_LONG = (b"S", b"x", b"F", b"A")  # a uint32 length, then that many bytes


def request(_host: str, _port: int) -> bytes:
    """The ``amqp`` probe's request: the AMQP 0-9-1 protocol header."""
    return HEADER


def _table(buf: bytes) -> dict[str, bytes]:
    """The long-string entries of a field table's body ``buf`` (other types skipped)."""
    found: dict[str, bytes] = {}
    pos = 0
    while pos < len(buf):
        size = buf[pos]
        name = buf[pos + 1 : pos + 1 + size]
        pos += 1 + size
        kind = buf[pos : pos + 1]
        pos += 1
        if len(name) != size or not kind:
            break
        if kind in _FIXED:
            pos += _FIXED[kind]
        elif kind in _LONG and pos + 4 <= len(buf):
            (length,) = _U32.unpack_from(buf, pos)
            if kind == b"S" and pos + 4 + length <= len(buf):
                found[name.decode("ascii", "replace")] = buf[pos + 4 : pos + 4 + length]
            pos += 4 + length
        else:
            break  # a type of unknown size: the rest cannot be walked
        if pos > len(buf):
            break
    return found


def decode(data: bytes) -> Evidence | None:
    """``Evidence("amqp", ..., product="RabbitMQ", version="3.10.8")`` for Connection.Start."""
    if data.startswith(b"AMQP"):
        if len(data) < len(HEADER):
            return None
        ident, major, minor, revision = data[4:8]
        if ident > 3 or major > 9 or minor > 10 or revision > 10:
            return None
        kind = f"protocol header {major}-{minor}-{revision}" + (f" (id {ident})" if ident else "")
        return Evidence("amqp", kind, "amqp", rule="amqp:protocol-header")
    if len(data) < _FRAME.size:
        return None
    kind, channel, size = _FRAME.unpack_from(data)
    if kind != 1 or channel != 0 or not 12 <= size <= MAX_REPLY - 8:
        return None
    end = _FRAME.size + size
    if len(data) <= end:
        return None  # wait for the whole frame and its end octet
    payload = data[_FRAME.size : end]
    if data[end] != _FRAME_END or payload[:4] != b"\x00\x0a\x00\x0a":
        return None
    major, minor = payload[4], payload[5]
    (table_size,) = _U32.unpack_from(payload, 6)
    if 10 + table_size > len(payload):
        return None
    props = _table(payload[10 : 10 + table_size])
    rest = payload[10 + table_size :]
    mechanisms = b""
    if len(rest) >= 4 and 4 + _U32.unpack_from(rest)[0] <= len(rest):
        mechanisms = rest[4 : 4 + _U32.unpack_from(rest)[0]]
    product, version = (clean(props.get(k, b""), 60) for k in ("product", "version"))
    return Evidence(
        "amqp",
        join_detail(
            " ".join(p for p in (product, version) if p),
            clean(props.get("platform", b""), 60),
            f"cluster {clean(props['cluster_name'], 60)}" if "cluster_name" in props else "",
            f"AMQP {major}-{minor}",
            f"mechanisms {clean(mechanisms, 60)}" if mechanisms else "",
        ),
        "amqp",
        product=product,
        version=version,
        rule="amqp:connection.start",
    )


TCP_PROBES = (TcpProbe(name="amqp", request=request, decode=decode, rank=55, max_reply=MAX_REPLY),)
