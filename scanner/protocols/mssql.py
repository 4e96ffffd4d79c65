"""Microsoft SQL Server (port 1433): a TDS PRELOGIN, and the server's PRELOGIN response.

Rules and theory:
- A TDS client starts (MS-TDS 2.2.6.5) with a PRELOGIN packet: an 8-byte TDS header
  (type 0x12, status 0x01 end of message, 16-bit big-endian length, SPID, packet id,
  window) and option tokens, each ``token, offset (16 bits), length (16 bits)``, ended
  by 0xFF, then their data. Ours: VERSION (0.0.0.0), ENCRYPTION (ENCRYPT_OFF), INSTOPT
  (an empty instance name, a NUL), THREADID (0), MARS (off).
- The server answers with a tabular-result packet (type 0x04) holding its own PRELOGIN
  options; its VERSION option is the server's version, 6 bytes: major, minor, build
  (16 bits big-endian) and sub-build (16 bits little-endian): 0F 00 07 D0 00 00 is
  15.0.2000 (SQL Server 2019). ENCRYPTION says whether it offers (or requires) TLS.
- Only a type-0x04 packet whose option table is well formed (offsets inside the packet,
  a VERSION of 6 bytes) counts. Sybase ASE and other TDS servers answer in the same
  shape; the product name says "Microsoft SQL Server" because that is what the version
  numbers are, by release.
"""

from __future__ import annotations

import struct

from scanner.protocols import Evidence, join_detail
from scanner.protocols.tcp import TcpProbe

__all__ = ["REQUEST", "TCP_PROBES", "build_request", "parse_reply"]

_VERSION, _ENCRYPTION, _INSTOPT, _THREADID, _MARS, _TERMINATOR = 0, 1, 2, 3, 4, 0xFF
_ENCRYPT = {0: "encryption off", 1: "encryption on", 2: "encryption not supported",
            3: "encryption required"}  # fmt: skip
_RELEASES = {8: "2000", 9: "2005", 10: "2008", 11: "2012", 12: "2014", 13: "2016", 14: "2017",
             15: "2019", 16: "2022"}  # fmt: skip
_MAX_PACKET = 4096


def _build() -> bytes:
    options = [
        (_VERSION, b"\x00\x00\x00\x00\x00\x00"),
        (_ENCRYPTION, b"\x00"),
        (_INSTOPT, b"\x00"),
        (_THREADID, b"\x00\x00\x00\x00"),
        (_MARS, b"\x00"),
    ]
    offset = len(options) * 5 + 1
    table, data = b"", b""
    for token, value in options:
        table += struct.pack(">BHH", token, offset + len(data), len(value))
        data += value
    payload = table + bytes((_TERMINATOR,)) + data
    return struct.pack(">BBHHBB", 0x12, 0x01, 8 + len(payload), 0, 0, 0) + payload


REQUEST = _build()


def build_request(_host: str = "", _port: int = 0) -> bytes:
    """The PRELOGIN packet (always the same bytes)."""
    return REQUEST


def parse_reply(data: bytes) -> Evidence | None:
    """``Evidence("mssql", "15.0.2000 (SQL Server 2019); encryption off", ...)``, else None."""
    if len(data) < 8 or data[0] != 0x04:
        return None
    length = int.from_bytes(data[2:4], "big")
    if not 8 + 6 <= length <= _MAX_PACKET or len(data) < length:
        return None
    payload = data[8:length]
    options: dict[int, bytes] = {}
    pos = 0
    while pos < len(payload) and payload[pos] != _TERMINATOR:
        if pos + 5 > len(payload) or len(options) > 16:
            return None
        token, offset, size = struct.unpack_from(">BHH", payload, pos)
        if offset + size > len(payload):
            return None
        options.setdefault(token, payload[offset : offset + size])
        pos += 5
    if pos >= len(payload):
        return None  # no terminator
    raw = options.get(_VERSION)
    if raw is None or len(raw) != 6:
        return None
    major, minor, build = raw[0], raw[1], int.from_bytes(raw[2:4], "big")
    version = f"{major}.{minor}.{build}"
    release = _RELEASES.get(major, "")
    encryption = options.get(_ENCRYPTION, b"")
    encrypt = _ENCRYPT.get(encryption[0], "") if len(encryption) == 1 else ""
    return Evidence(
        "mssql",
        join_detail(f"{version} (SQL Server {release})" if release else version, encrypt),
        "mssql",
        product="Microsoft SQL Server",
        version=version,
        rule="mssql:prelogin",
    )


TCP_PROBES = (TcpProbe(name="mssql", request=build_request, decode=parse_reply, rank=50),)
