"""SIP (port 5060): an OPTIONS request, and the response of a SIP user agent or proxy.

Rules and theory:
- OPTIONS asks a SIP element for its capabilities without setting up a call (RFC 3261
  11). Our request carries the fields RFC 3261 8.1.1 makes mandatory (Via, Max-Forwards,
  To, From, Call-ID, CSeq) plus Contact, Accept and Content-Length. The Via has a branch
  starting with the RFC 3261 magic cookie ``z9hG4bK`` and the ``rport`` parameter
  (RFC 3581), so the response comes back to the source port the datagram left from.
  Every value is fixed: the names are under ``.invalid`` (RFC 6761), never a real host.
- Any final or provisional response proves SIP, 200 OK and 403 Forbidden alike. A reply
  counts only if its status line is ``SIP/2.0 <3 digits>`` and it echoes our Call-ID
  (RFC 3261 8.2.6.2: a UAS copies it into the response; ``i`` is its compact form).
- The detail is the status code and reason, then the ``Server`` field (or the
  ``User-Agent``, which some servers send instead), each cleaned and bounded.
"""

from __future__ import annotations

import re

from scanner.protocols import Evidence, clean, join_detail
from scanner.protocols.headers import parse_head

__all__ = ["CALL_ID", "REQUEST", "build_request", "parse_reply"]

CALL_ID = b"portprobe-5060@portprobe.invalid"
REQUEST = (
    b"OPTIONS sip:portprobe.invalid SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP portprobe.invalid;branch=z9hG4bK-portprobe;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:portprobe.invalid>\r\n"
    b"From: <sip:portprobe@portprobe.invalid>;tag=portprobe\r\n"
    b"Call-ID: " + CALL_ID + b"\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Contact: <sip:portprobe@portprobe.invalid>\r\n"
    b"Accept: application/sdp\r\n"
    b"User-Agent: portprobe\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)
_STATUS = re.compile(rb"SIP/2\.0 ([1-6][0-9]{2})(?: (.*))?")
_PART = 80


def build_request() -> bytes:
    """An ``OPTIONS`` request with a fixed Call-ID."""
    return REQUEST


def parse_reply(data: bytes) -> Evidence | None:
    """``Evidence("sip", "200 OK; <Server or User-Agent>", "sip")`` for a response, else None."""
    start, fields = parse_head(data)
    m = _STATUS.fullmatch(start)
    if m is None or fields.get(b"call-id", fields.get(b"i")) != CALL_ID:
        return None
    status = clean(m.group(1) + b" " + (m.group(2) or b""), _PART)
    software = fields.get(b"server") or fields.get(b"user-agent") or b""
    return Evidence("sip", join_detail(status, clean(software, _PART)), "sip")
