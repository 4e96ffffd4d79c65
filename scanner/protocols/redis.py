"""Redis: an inline ``PING``, and the replies only a Redis server gives.

Rules and theory:
- Redis never speaks first, so it needs an active probe. An inline command (one line of
  text, no RESP framing) is the cheapest: ``PING\\r\\n`` is answered ``+PONG``, or with an
  error that is just as telling (``-NOAUTH``: a password is set; ``-DENIED``: protected
  mode; ``-LOADING``: still reading its dataset).
- Redis also parses an HTTP request as inline commands: ``GET / HTTP/1.1`` becomes the
  Redis command GET with two arguments and is answered ``-ERR wrong number of arguments
  for 'get' command`` (Redis then drops the connection at the ``Host:`` line, which it
  treats as a cross-protocol attack). So the HTTP probe's answer can prove Redis too.
- Only the first line is looked at, and only these exact shapes count: a bare ``+OK`` or
  ``-ERR`` is said by POP3 and many others.
"""

from __future__ import annotations

import re

from scanner.protocols import Evidence, clean
from scanner.protocols.tcp import TcpProbe

__all__ = ["PROBE", "TCP_PROBES", "build_probe", "parse_reply"]

PROBE = b"PING\r\n"
_MAX_LINE = 512

_REPLY = re.compile(
    rb"\+PONG"
    rb"|-NOAUTH [ -~]*"
    rb"|-DENIED Redis [ -~]*"
    rb"|-LOADING Redis [ -~]*"
    rb"|-ERR wrong number of arguments for '(?:get|ping)' command"
    rb"|-ERR unknown command [`'][ -~]*"
)


def build_probe() -> bytes:
    """The probe: an inline ``PING``."""
    return PROBE


def parse_reply(data: bytes) -> Evidence | None:
    """``Evidence("redis", <reply>, "redis")`` for a reply only Redis gives, else None."""
    line = data[:_MAX_LINE].split(b"\n", 1)[0]
    if not line.endswith(b"\r"):
        return None  # RESP lines end with CRLF; a partial line proves nothing yet
    m = _REPLY.fullmatch(line[:-1])
    if m is None:
        return None
    return Evidence("redis", clean(line[1:-1]), "redis")


TCP_PROBES = (
    TcpProbe(name="redis", request=lambda _h, _p: PROBE, decode=parse_reply, rank=10),
)
