"""RTSP (port 554): an OPTIONS request, and the server's response.

Rules and theory:
- RTSP 1.0 (RFC 2326 10.1) borrows HTTP's syntax: ``OPTIONS * RTSP/1.0`` with a ``CSeq``
  is answered ``RTSP/1.0 200 OK`` with the same CSeq and a ``Public`` field listing the
  methods (DESCRIBE, SETUP, PLAY...). An error status (401, 454, 501) proves RTSP too.
- A response counts once its head is complete, its status line is ``RTSP/1.0 <3
  digits>`` (or RTSP/2.0, RFC 7826), and it echoes our CSeq: that tells an RTSP server
  from an HTTP server that only mirrors the version it was sent.
- The detail is the status, the ``Server`` field and the methods offered; product and
  version come from the ``Server`` field (``software.split_software``).
"""

from __future__ import annotations

import re

from scanner.protocols import Evidence, clean, join_detail
from scanner.protocols.headers import MAX_HEAD, parse_head
from scanner.protocols.software import split_software
from scanner.protocols.tcp import TcpProbe

__all__ = ["CSEQ", "TCP_PROBES", "build_request", "parse_reply"]

CSEQ = b"7070"
_STATUS = re.compile(rb"RTSP/[12]\.0 ([1-5][0-9]{2})(?: (.*))?")
_PART = 80


def build_request(host: str = "portprobe.invalid", port: int = 554) -> bytes:
    """``OPTIONS *`` with our CSeq (RFC 2326 10.1 allows ``*`` for the server as a whole)."""
    return b"OPTIONS * RTSP/1.0\r\nCSeq: " + CSEQ + b"\r\nUser-Agent: portprobe\r\n\r\n"


def parse_reply(data: bytes) -> Evidence | None:
    """``Evidence("rtsp", "200 OK; <Server>; <methods>", "rtsp")`` for a response, else None."""
    head = data[:MAX_HEAD]
    if b"\r\n\r\n" not in head and b"\n\n" not in head:
        return None
    start, fields = parse_head(head)
    m = _STATUS.fullmatch(start)
    if m is None or fields.get(b"cseq") != CSEQ:
        return None
    status = clean(m.group(1) + b" " + (m.group(2) or b""), _PART)
    server = clean(fields.get(b"server", b""), _PART)
    methods = clean(fields.get(b"public", b""), _PART)
    product, version = split_software(server) if server else ("", "")
    return Evidence("rtsp", join_detail(status, server, methods), "rtsp", product=product,
                    version=version, rule="rtsp:options-response")  # fmt: skip


TCP_PROBES = (TcpProbe(name="rtsp", request=build_request, decode=parse_reply, rank=65),)
