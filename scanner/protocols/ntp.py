"""NTP (port 123): a client-mode request, and the server's reply.

Rules and theory:
- The probe is a 48-byte NTPv4 packet header (RFC 5905 7.3) in mode 3 (client), every
  field zero but the first byte and the transmit timestamp, which is a fixed 8-byte
  nonce. A server copies the client's transmit timestamp into its reply's origin
  timestamp (RFC 5905 8, the "bogus" check a client makes): a reply counts only if it
  carries our nonce there, is at least 48 bytes long, has version 1..4 and mode 4
  (server). An echo of the request has mode 3 and does not count.
- What the reply proves: version, mode, stratum and the reference ID (RFC 5905 7.3).
  Stratum 0 is a "kiss-o'-death" packet whose reference ID is a four-letter ASCII code
  (DENY, RATE, RSTR...); stratum 1 names its reference clock in ASCII (GPS, PPS...);
  stratum 2..15 give the IPv4 address of their upstream server (or the first four bytes
  of an MD5 of its IPv6 address, shown as an address all the same); 16 means unsynchronised.
"""

from __future__ import annotations

import ipaddress
import re

from scanner.protocols import Evidence, join_detail

__all__ = ["NONCE", "PACKET_SIZE", "build_request", "parse_reply"]

PACKET_SIZE = 48
VERSION = 4
NONCE = b"portprob"  # the request's transmit timestamp, echoed as the reply's origin
_CLIENT, _SERVER = 3, 4
_ORIGIN = slice(24, 32)
_TRANSMIT = slice(40, 48)
_ASCII_ID = re.compile(rb"[A-Z0-9][A-Za-z0-9 .-]{0,3}\x00*")


def build_request() -> bytes:
    """A 48-byte NTPv4 client request (LI 0, mode 3) whose transmit timestamp is NONCE."""
    packet = bytearray(PACKET_SIZE)
    packet[0] = VERSION << 3 | _CLIENT
    packet[_TRANSMIT] = NONCE
    return bytes(packet)


def parse_reply(data: bytes) -> Evidence | None:
    """``Evidence("ntp", "v4; server; stratum 2; refid 198.18.0.254", "ntp")``, or None."""
    if len(data) < PACKET_SIZE or data[_ORIGIN] != NONCE:
        return None
    version, mode, stratum = data[0] >> 3 & 7, data[0] & 7, data[1]
    if not 1 <= version <= 4 or mode != _SERVER:
        return None
    refid = data[12:16]
    if stratum <= 1:
        text = refid.decode("ascii") if _ASCII_ID.fullmatch(refid) else refid.hex()
        shown = text.rstrip("\x00")
        ref = f"kiss code {shown}" if stratum == 0 else f"refid {shown}"
    else:
        ref = f"refid {ipaddress.IPv4Address(refid)}"
    level = "unsynchronised" if stratum >= 16 else f"stratum {stratum}"
    return Evidence("ntp", join_detail(f"v{version}", "server", level, ref), "ntp")
