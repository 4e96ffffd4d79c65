"""NetBIOS name service (port 137): a node status (NBSTAT) query.

Rules and theory:
- A node status request (RFC 1002 4.2.17) asks a NetBIOS node for its name table. It
  is a name-service packet: a DNS-like 12-byte header (transaction ID, flags 0: a
  unicast query, one question), then the question name ``*`` padded with NULs to 16
  bytes in "first-level encoding" (RFC 1001 14.1: each half-byte becomes a letter
  ``A``..``P``, 32 letters behind a length byte of 32 and a terminating root label),
  type NBSTAT (0x0021) and class IN.
- The answer (RFC 1002 4.2.18) echoes the transaction ID with the response bit set, and
  has one resource record of type NBSTAT: its RDATA is a count, then 18 bytes per name
  (15 bytes of name padded with spaces, a suffix byte telling the name's role, 2 bytes
  of flags whose top bit marks a group name), then statistics starting with the
  adapter's MAC address. A reply counts only with our ID, the response bit, rcode 0 and
  an NBSTAT record; its record name may be written out or compressed.
- The detail lists the names as ``NAME<suffix>`` (``/group`` for group names), at most
  ``_MAX_NAMES`` of them, and the MAC address when it is not all zeros.
"""

from __future__ import annotations

import struct

from scanner.protocols import Evidence, clean, join_detail

__all__ = ["TRANSACTION_ID", "build_request", "encode_name", "parse_reply"]

TRANSACTION_ID = 0x7070
NBSTAT, IN = 0x0021, 0x0001
_HEADER = struct.Struct("!HHHHHH")
_RESPONSE = 0x8000
_MAX_NAMES = 8
_ENTRY = 18


def encode_name(name: bytes) -> bytes:
    """``name`` (at most 16 bytes) in first-level encoding, as a label list (RFC 1001 14.1)."""
    if len(name) > 16:
        raise ValueError("a NetBIOS name is at most 16 bytes")
    padded = name.ljust(16, b"\x00")
    letters = bytes(ch for byte in padded for ch in (0x41 + (byte >> 4), 0x41 + (byte & 0xF)))
    return b"\x20" + letters + b"\x00"


_WILDCARD = encode_name(b"*")


def build_request() -> bytes:
    """A unicast NBSTAT query for ``*``, transaction TRANSACTION_ID."""
    return _HEADER.pack(TRANSACTION_ID, 0, 1, 0, 0, 0) + _WILDCARD + struct.pack("!HH", NBSTAT, IN)


def parse_reply(data: bytes) -> Evidence | None:
    """``Evidence("netbios-ns", "LAB<00>, WORKGROUP<00>/group; MAC ...", "netbios")``."""
    if len(data) < _HEADER.size:
        return None
    ident, flags, _qd, ancount, _ns, _ar = _HEADER.unpack_from(data)
    if ident != TRANSACTION_ID or not flags & _RESPONSE or flags & 0xF or ancount < 1:
        return None
    pos = _HEADER.size
    if data[pos : pos + len(_WILDCARD)] == _WILDCARD:
        pos += len(_WILDCARD)
    elif data[pos : pos + 1] and data[pos] & 0xC0 == 0xC0:
        pos += 2  # a compressed pointer to a name
    else:
        return None
    if len(data) < pos + 11:
        return None
    rr_type, rr_class, _ttl, rdlength, count = struct.unpack_from("!HHIHB", data, pos)
    if rr_type != NBSTAT or rr_class != IN or rdlength < 1 + count * _ENTRY:
        return None
    pos += 11
    rdata_end = pos - 1 + rdlength
    if len(data) < pos + count * _ENTRY:
        return None
    names = []
    for i in range(min(count, _MAX_NAMES)):
        entry = data[pos + i * _ENTRY : pos + (i + 1) * _ENTRY]
        label = clean(entry[:15].rstrip(b" \x00"), 15)
        group = "/group" if entry[16] & 0x80 else ""
        names.append(f"{label}<{entry[15]:02x}>{group}")
    if count > _MAX_NAMES:
        names.append(f"{count - _MAX_NAMES} more")
    mac_at = pos + count * _ENTRY
    mac = data[mac_at : mac_at + 6] if mac_at + 6 <= min(rdata_end, len(data)) else b""
    shown_mac = f"MAC {mac.hex(':')}" if len(mac) == 6 and any(mac) else ""
    return Evidence("netbios-ns", join_detail(", ".join(names), shown_mac), "netbios")
