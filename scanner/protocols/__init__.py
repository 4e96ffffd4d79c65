"""Sans-I/O protocol probes and decoders: bytes in, :class:`Evidence` out.

Rules and theory:
- No module in this package opens a socket, awaits anything or reads a clock. A probe is
  a function that returns the bytes to send (``build_request``, ``build_probe``); a
  decoder takes the bytes a peer sent and returns an :class:`Evidence`, or ``None`` when
  they do not prove its protocol. The I/O lives in ``scanner.evidence``, which runs these
  over real connections within a time and byte budget.
- Every byte a decoder sees is untrusted: it may be truncated, enormous, binary, or built
  to attack a terminal or a spreadsheet. Decoders look at bounded prefixes only, never
  raise on any input (the tests feed them arbitrary bytes with hypothesis), and every text
  they put into an :class:`Evidence` passes :func:`clean`: printable, one line, at most
  ``DETAIL_LIMIT`` characters.
- :class:`Evidence` lives here, at the bottom of the package graph, because the decoders
  return it; ``scanner.evidence`` re-exports it as part of its API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scanner.text import escape_controls

__all__ = [
    "DETAIL_LIMIT",
    "EXCERPT_BYTES",
    "NO_EVIDENCE",
    "Evidence",
    "clean",
    "excerpt",
    "join_detail",
]

DETAIL_LIMIT = 200
EXCERPT_BYTES = 64  # bytes of a reply kept as its excerpt

_SPACE = re.compile(r"[ \t\r\n\x0b\x0c]+")
_ELLIPSIS = "..."


@dataclass(frozen=True, slots=True)
class Evidence:
    """What an open port was seen to speak.

    ``service``: the protocol seen ("ssh", "http", "https", "tls", "smtp", ...), or ""
    when nothing was identified. ``detail``: printable, one line, at most
    :data:`DETAIL_LIMIT` characters (software, version, status, certificate name...).
    ``proof``: how it was seen ("banner", "http", "tls", "tls+http", "redis", or the name
    of the probe that drew it), "" for none.

    The trail (what a person needs to check the verdict): ``product`` and ``version`` as
    the protocol gives them ("OpenSSH", "9.2p1"); ``rule``, the decoder rule that named
    the service ("ssh:identification", "ldap:rootdse"); ``excerpt``, a bounded, escaped
    excerpt of the bytes that matched (:func:`clean`). All default to "".
    """

    service: str
    detail: str
    proof: str
    product: str = ""
    version: str = ""
    rule: str = ""
    excerpt: str = ""


NO_EVIDENCE = Evidence("", "", "")


def clean(text: str | bytes, limit: int = DETAIL_LIMIT) -> str:
    """``text`` made safe to show: one printable line of at most ``limit`` characters.

    Bytes are decoded as UTF-8 (invalid sequences become U+FFFD). Runs of whitespace,
    line breaks included, become one space; any other control, invisible, format or bidi
    character (:data:`scanner.text.CONTROL`) is shown as a ``\\xNN`` / ``\\uNNNN``
    escape. A longer result is cut and ends with "...".
    """
    if limit <= 0:
        return ""
    if isinstance(text, bytes | bytearray):
        # Only what can survive the cut is decoded: an escape is at most 6 characters
        # per byte, and a character is at least one byte.
        text = bytes(text[: limit * 4 + 4]).decode("utf-8", "replace")
    else:
        text = text[: limit * 4 + 4]
    text = _SPACE.sub(" ", text).strip()
    text = escape_controls(text)
    if len(text) > limit:
        cut = max(limit - len(_ELLIPSIS), 0)
        text = text[:cut].rstrip() + _ELLIPSIS[: limit - cut]
    return text


def join_detail(*parts: str) -> str:
    """Non-empty ``parts`` joined with "; ", cleaned and bounded to :data:`DETAIL_LIMIT`."""
    return clean("; ".join(p for p in parts if p))


_EXCERPT_KEEP = frozenset(range(0x20, 0x7F)) - {0x5C}  # printable ASCII but the backslash


def excerpt(data: bytes, limit: int = EXCERPT_BYTES) -> str:
    """The first ``limit`` bytes of ``data`` as one safe line: printable ASCII as it is, every
    other byte (and the backslash) as ``\\xNN``, "..." after a cut. Shows exactly which
    bytes a peer sent, binary or not."""
    head = data[:limit]
    text = "".join(chr(b) if b in _EXCERPT_KEEP else f"\\x{b:02x}" for b in head)
    return text + ("..." if len(data) > limit else "")
