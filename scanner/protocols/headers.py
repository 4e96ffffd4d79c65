"""Start line and header fields of the text protocols on UDP that borrow HTTP's syntax.

Rules and theory:
- SSDP (HTTPU, UPnP Device Architecture 1.1 section 1) and SIP (RFC 3261 7) write a
  message as a start line, then ``Name: value`` header fields, one per line, then an
  empty line. A datagram holds the whole message, so no framing is needed: only the
  head is read, within ``MAX_HEAD`` bytes and ``MAX_FIELDS`` fields.
- Names are case-insensitive (RFC 3261 7.3.1, RFC 9110 5.1): they are returned lower-case.
  The first of repeated fields wins. Lines folded with leading whitespace (obsolete, but
  allowed by RFC 3261 7.3.1) are joined to the field before. Lines without a colon are
  skipped, not fatal: the callers decide what a message must have.
- Nothing here cleans text: callers pass what they show through ``clean``.
"""

from __future__ import annotations

__all__ = ["MAX_FIELDS", "MAX_HEAD", "parse_head"]

MAX_HEAD = 4096
MAX_FIELDS = 64


def parse_head(data: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """(start line, {lower-case name: value}) of the message at the start of ``data``."""
    head = data[:MAX_HEAD]
    for end in (b"\r\n\r\n", b"\n\n"):
        if end in head:
            head = head.split(end, 1)[0]
            break
    lines = head.replace(b"\r\n", b"\n").split(b"\n", MAX_FIELDS + 1)[: MAX_FIELDS + 1]
    fields: dict[bytes, bytes] = {}
    last: bytes | None = None
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t") and last is not None:
            fields[last] = fields[last] + b" " + line.strip()
            continue
        name, colon, value = line.partition(b":")
        name = name.strip().lower()
        if not colon or not name:
            last = None
            continue
        if name not in fields:
            fields[name] = value.strip()
            last = name
        else:
            last = None
    return lines[0].rstrip(b"\r"), fields
