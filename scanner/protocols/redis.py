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
- The TCP probe ``redis`` sends ``INFO server`` then ``PING``, inline, in one write; Redis
  answers them in order, and the first answer decides. ``INFO server`` is answered with a
  RESP bulk string (``$<length>\\r\\n`` then that many bytes) of ``key:value`` lines under a
  ``# Server`` heading, and ``redis_version`` names the version. Valkey (a fork) keeps
  ``redis_version`` for old clients and adds ``server_name:valkey`` and
  ``valkey_version``, which win. A server that refuses (``-NOAUTH``, protected mode), or
  that has INFO renamed away (``-ERR unknown command``), or one that ignores it and
  answers only the PING (``+PONG``), still proves Redis through :func:`parse_reply`,
  without a version.
- Bounded: a bulk string longer than ``_MAX_INFO`` is read only that far; the fields are
  taken from the lines that arrived whole.
"""

from __future__ import annotations

import re

from scanner.protocols import Evidence, clean, join_detail
from scanner.protocols.tcp import TcpProbe

__all__ = [
    "INFO",
    "PROBE",
    "REQUEST",
    "TCP_PROBES",
    "build_probe",
    "decode",
    "parse_reply",
    "request",
]

PROBE = b"PING\r\n"
INFO = b"INFO server\r\n"
REQUEST = INFO + PROBE
_MAX_INFO = 4096  # bytes of an INFO answer looked at (Redis 7 sends about 1300)
_BULK = re.compile(rb"\$(\d{1,7})\r\n")
_FIELD = re.compile(rb"([a-z_]{1,40}):([ -~]{0,200})")
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
    head = data[:_MAX_LINE]
    line, newline, _ = head.partition(b"\n")
    if newline:
        if not line.endswith(b"\r"):
            return None  # RESP lines end with CRLF
        line = line[:-1]
    elif len(head) < _MAX_LINE:
        return None  # a partial line proves nothing yet
    # else a line longer than we look at (protected mode's -DENIED runs to 1 KB): its
    # first _MAX_LINE bytes are judged as they are.
    if _REPLY.fullmatch(line) is None:
        return None
    return Evidence("redis", clean(line[1:]), "redis")


def request(_host: str, _port: int) -> bytes:
    """The ``redis`` probe's request: inline ``INFO server``, then ``PING``."""
    return REQUEST


def decode(data: bytes) -> Evidence | None:
    """``Evidence("redis", ..., product="Redis", version="7.0.15")`` for an INFO answer.

    An error only Redis gives (:func:`parse_reply`) is evidence too, without a version.
    """
    m = _BULK.match(data[:16])
    if m is None:
        refused = parse_reply(data)
        return None if refused is None else _with(refused, rule="redis:reply")
    length = int(m.group(1))
    body = data[m.end() : m.end() + min(length, _MAX_INFO)]
    if len(body) < min(length, _MAX_INFO):
        return None  # wait for the rest
    lines = body.split(b"\r\n")
    if length > _MAX_INFO:
        lines.pop()  # cut at our bound: its last line may be cut too
    if not lines or lines[0] != b"# Server":
        return None
    fields = {}
    for line in lines[1:]:
        if (f := _FIELD.fullmatch(line)) is not None:
            fields[f.group(1).decode()] = f.group(2).decode()
    if "redis_version" not in fields:
        return None
    product, version = "Redis", fields["redis_version"]
    if fields.get("server_name") == "valkey" or "valkey_version" in fields:
        product, version = "Valkey", fields.get("valkey_version", version)
    detail = join_detail(f"{product} {version}", fields.get("redis_mode", ""), fields.get("os", ""))
    return Evidence(
        "redis", detail, "redis", product=product, version=clean(version, 40),
        rule="redis:info",
    )  # fmt: skip


def _with(found: Evidence, *, rule: str) -> Evidence:
    # "-DENIED Redis ..." and "-LOADING Redis ...": the refusal names the product.
    product = "Redis" if found.detail.split(" ", 2)[1:2] == ["Redis"] else ""
    return Evidence(found.service, found.detail, "redis", product=product, rule=rule)


TCP_PROBES = (TcpProbe(name="redis", request=request, decode=decode, rank=10),)
