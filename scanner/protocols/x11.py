"""X11 (ports 6000-6063): the connection setup, and the server's reply.

Rules and theory:
- A client opens an X connection with a 12-byte setup request (X Window System
  Protocol, "Connection Setup"): byte order (``l``: little-endian), protocol 11.0, and
  no authorization (empty name and data).
- The server replies with an 8-byte header whose first byte is the status: 0 Failed
  (byte 1: the reason's length), 1 Success, 2 Authenticate; bytes 2-5 the protocol
  version it speaks (unused in Authenticate), bytes 6-7 the length of what follows in
  4-byte units. A failure or
  authenticate reply carries a reason ("No protocol specified", "Authorization required,
  but no authorization protocol specified"); a success names the vendor and its release
  number. Any of them proves X11: the reason says whether a scanner would be let in.
- Only protocol major version 11 counts (an Authenticate reply, which has no version,
  counts only with a reason in plain text), and the announced length must be sane; the
  vendor and reason strings are bounded and cleaned.
- X.Org encodes its release as major*10^7 + minor*10^5 + patch*10^3 + snap; since 21.1
  the server is versioned by its minor part ("21.1.7" is release 12101007).
"""

from __future__ import annotations

import re
import struct

from scanner.protocols import Evidence, clean, join_detail
from scanner.protocols.tcp import TcpProbe

__all__ = ["REQUEST", "TCP_PROBES", "build_request", "parse_reply", "xorg_version"]

REQUEST = struct.pack("<cxHHHHxx", b"l", 11, 0, 0, 0)
_MAX_ADDITIONAL = 64 * 1024  # 4-byte units; a real success reply is a few hundred bytes
_XORG = "The X.Org Foundation"
_TEXT = re.compile(rb"[ -~\t\r\n]+")


def build_request(_host: str = "", _port: int = 0) -> bytes:
    """The little-endian setup request for X11.0 without authorization."""
    return REQUEST


def xorg_version(release: int) -> str:
    """X.Org's release number as a version: 12101007 -> "21.1.7", 11906000 -> "1.19.6"."""
    major, minor = release // 10_000_000, release // 100_000 % 100
    patch, snap = release // 1000 % 100, release % 1000
    if major == 1 and minor >= 21:
        return f"{minor}.{patch}.{snap}"
    return f"{major}.{minor}.{patch}" + (f".{snap}" if snap else "")


def parse_reply(data: bytes) -> Evidence | None:
    """``Evidence("x11", ..., "x11")`` for a setup reply (success or not), else None."""
    if len(data) < 8:
        return None
    status, reason_len, major, minor, additional = struct.unpack_from("<BBHHH", data)
    if additional > _MAX_ADDITIONAL:
        return None
    if status == 2:
        # Authenticate: 5 unused bytes, then the length; no version to check, so the
        # reason must be there, and be text.
        reason_len = additional * 4
        if not 0 < reason_len <= 1024 or len(data) < 8 + reason_len:
            return None
        raw = data[8 : 8 + reason_len].rstrip(b"\x00")
        if not raw or _TEXT.fullmatch(raw) is None:
            return None
        return Evidence("x11", join_detail("X11 authentication required", clean(raw, 120)),
                        "x11", rule="x11:setup-authenticate")  # fmt: skip
    if status not in (0, 1) or major != 11:
        return None
    if status == 1:
        return _success(data, minor)
    if len(data) < 8 + min(reason_len, additional * 4):
        return None
    reason = clean(data[8 : 8 + reason_len].rstrip(b"\x00"), 120)
    return Evidence("x11", join_detail(f"X11.{minor} refused", reason), "x11",
                    rule="x11:setup-failed")  # fmt: skip


def _success(data: bytes, minor: int) -> Evidence | None:
    if len(data) < 40:
        return None
    release = int.from_bytes(data[8:12], "little")
    vendor_len = int.from_bytes(data[24:26], "little")
    screens = data[28]
    if vendor_len > 256 or len(data) < 40 + vendor_len:
        return None
    vendor = clean(data[40 : 40 + vendor_len], 80)
    version = xorg_version(release) if vendor == _XORG else str(release)
    return Evidence(
        "x11",
        join_detail(f"X11.{minor} open (no authentication)", vendor, f"release {version}",
                    f"{screens} screen{'s' if screens != 1 else ''}"),
        "x11",
        product=vendor,
        version=version,
        rule="x11:setup-success",
    )  # fmt: skip


TCP_PROBES = (TcpProbe(name="x11", request=build_request, decode=parse_reply, rank=60),)
