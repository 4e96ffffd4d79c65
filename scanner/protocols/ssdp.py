"""SSDP (port 1900): an M-SEARCH, and the search response of a UPnP device.

Rules and theory:
- SSDP is HTTP over UDP (UPnP Device Architecture 1.1, section 1.3). A control point
  searches with ``M-SEARCH * HTTP/1.1``, ``MAN: "ssdp:discover"`` and a search target
  ``ST``; ``ssdp:all`` asks for every device and service. Our M-SEARCH is sent by unicast
  to the scanned address only. Its ``HOST`` field still names the SSDP multicast group
  and port, the one value UDA 1.1 defines for it and the value many devices insist on;
  it is a header field, not a destination: no packet goes to that group.
- A device answers with ``HTTP/1.1 200 OK`` and the fields ``ST`` (what it matched),
  ``USN``, ``LOCATION`` and ``SERVER`` (``OS/version UPnP/1.x product/version``). A reply
  counts only with status 200 and an ``ST`` or ``USN`` field: that pair is SSDP's own, where
  a mere HTTP status line could come from anything.
- The detail is ``SERVER``, then ``ST``, each cleaned and bounded.
"""

from __future__ import annotations

import re

from scanner.protocols import Evidence, clean, join_detail
from scanner.protocols.headers import parse_head

__all__ = ["REQUEST", "build_request", "parse_reply"]

REQUEST = (
    b"M-SEARCH * HTTP/1.1\r\n"
    b"HOST: 239.255.255.250:1900\r\n"  # UDA 1.1's fixed value; see the module's rules
    b'MAN: "ssdp:discover"\r\n'
    b"MX: 1\r\n"
    b"ST: ssdp:all\r\n"
    b"USER-AGENT: portprobe UPnP/1.1 portprobe/1\r\n"
    b"\r\n"
)
_STATUS = re.compile(rb"HTTP/1\.[01] 200(?: .*)?")
_PART = 80


def build_request() -> bytes:
    """``M-SEARCH * HTTP/1.1`` for ``ssdp:all``."""
    return REQUEST


def parse_reply(data: bytes) -> Evidence | None:
    """``Evidence("ssdp", "<SERVER>; ST <ST>", "ssdp")`` for a search response, else None."""
    start, fields = parse_head(data)
    if _STATUS.fullmatch(start) is None or not (b"st" in fields or b"usn" in fields):
        return None
    server = clean(fields.get(b"server", b""), _PART)
    target = clean(fields.get(b"st", b""), _PART)
    return Evidence("ssdp", join_detail(server, f"ST {target}" if target else ""), "ssdp")
