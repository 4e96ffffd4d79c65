"""SIP (port 5060): an OPTIONS request, and the response of a SIP user agent or proxy.

Over UDP (``build_request``) and over TCP (``build_tcp_request``, :data:`TCP_PROBES`).

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
- Over TCP (RFC 3261 18.2, 18.3) the request's Via names TCP, and a response counts
  only once its head is complete (the empty line after the header fields): a stream
  can deliver it in pieces.
- The detail is the status code and reason, then the ``Server`` field (or the
  ``User-Agent``, which some servers send instead), each cleaned and bounded.
"""

from __future__ import annotations

import re

from scanner.protocols import Evidence, clean, join_detail
from scanner.protocols.headers import MAX_HEAD, parse_head
from scanner.protocols.software import split_software
from scanner.protocols.tcp import TcpProbe

__all__ = [
    "CALL_ID",
    "REQUEST",
    "TCP_PROBES",
    "TCP_REQUEST",
    "build_request",
    "build_tcp_request",
    "parse_reply",
    "parse_tcp_reply",
]

CALL_ID = b"portprobe-5060@portprobe.invalid"


def _options(transport: bytes) -> bytes:
    return (
        b"OPTIONS sip:portprobe.invalid SIP/2.0\r\n"
        b"Via: SIP/2.0/" + transport + b" portprobe.invalid;branch=z9hG4bK-portprobe;rport\r\n"
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


REQUEST = _options(b"UDP")
TCP_REQUEST = _options(b"TCP")
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
    software = clean(fields.get(b"server") or fields.get(b"user-agent") or b"", _PART)
    product, version = split_software(software) if software else ("", "")
    return Evidence("sip", join_detail(status, software), "sip", product=product, version=version,
                    rule="sip:options-response")  # fmt: skip


def build_tcp_request(_host: str = "", _port: int = 0) -> bytes:
    """The ``OPTIONS`` request with a TCP Via."""
    return TCP_REQUEST


def parse_tcp_reply(data: bytes) -> Evidence | None:
    """:func:`parse_reply` once the response's head is complete, else None."""
    head = data[:MAX_HEAD]
    if b"\r\n\r\n" not in head and b"\n\n" not in head:
        return None
    found = parse_reply(head)
    if found is None:
        return None
    return Evidence(found.service, found.detail, "sip-tcp", product=found.product,
                    version=found.version, rule=found.rule)  # fmt: skip


TCP_PROBES = (TcpProbe(name="sip-tcp", request=build_tcp_request, decode=parse_tcp_reply, rank=45),)
