"""Erlang's port mapper daemon, epmd (port 4369): the NAMES request.

Rules and theory:
- epmd (the Erlang "Distribution Protocol" reference) takes requests of a 2-byte
  big-endian length and a command byte. NAMES_REQ is ``110`` (``n``): epmd answers
  epmd's own port number as a 4-byte big-endian integer, then one text line per
  registered node, ``name <node> at port <port>\\n``, and closes.
- epmd writes the port number and each line separately, so the decoder may see the port
  alone. It answers then only if that number is the registered 4369 (a lone epmd with no
  node says nothing more); any other number must be followed by a whole node line, or
  it is not taken as epmd's. Every line that arrived must have the exact shape.
- The node names (RabbitMQ's ``rabbit``, an Elixir release's name...) and their
  distribution ports go in the detail, at most ``_MAX_NODES``. epmd gives no version.
"""

from __future__ import annotations

import re

from scanner.protocols import Evidence, clean, join_detail
from scanner.protocols.tcp import TcpProbe

__all__ = ["EPMD_PORT", "MAX_REPLY", "NAMES", "TCP_PROBES", "decode"]

NAMES = b"\x00\x01n"
EPMD_PORT = 4369
MAX_REPLY = 2048
_MAX_NODES = 4
_LINE = re.compile(rb"name ([!-~]{1,255}) at port (\d{1,5})")


def request(_host: str, _port: int) -> bytes:
    """The ``epmd`` probe's request: NAMES_REQ."""
    return NAMES


def decode(data: bytes) -> Evidence | None:
    """``Evidence("epmd", ..., product="epmd")`` for a NAMES answer, else None."""
    if len(data) < 4 or data[:2] != b"\x00\x00":
        return None
    port = int.from_bytes(data[:4], "big")
    lines = data[4:MAX_REPLY].split(b"\n")
    whole, tail = lines[:-1], lines[-1]
    nodes = []
    for line in whole:
        m = _LINE.fullmatch(line)
        if m is None or not 0 < int(m.group(2)) < 65536:
            return None
        nodes.append(f"{clean(m.group(1), 40)} at {int(m.group(2))}")
    if tail:
        if not (tail.startswith(b"name ") or b"name ".startswith(tail)):
            return None  # not a node line
        if len(data) < MAX_REPLY:
            return None  # wait for its line end
    if not nodes and port != EPMD_PORT:
        return None
    shown = nodes[:_MAX_NODES]
    if len(nodes) > _MAX_NODES:
        shown.append(f"{len(nodes) - _MAX_NODES} more")
    return Evidence(
        "epmd",
        join_detail(f"epmd port {port}", "nodes " + ", ".join(shown) if nodes else ""),
        "epmd",
        product="epmd",
        rule="epmd:names",
    )


TCP_PROBES = (TcpProbe(name="epmd", request=request, decode=decode, rank=70, max_reply=MAX_REPLY),)
