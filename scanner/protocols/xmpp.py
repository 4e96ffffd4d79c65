"""XMPP (port 5222): open a client stream, and read the server's stream header and features.

Rules and theory:
- An XMPP client opens a stream (RFC 6120 4.2): an XML declaration and a
  ``<stream:stream>`` start tag in the ``jabber:client`` namespace, version 1.0, ``to``
  the domain it wants. The probe names the address it connected to; a server that does
  not serve that domain still answers with its own stream header and then a
  ``<stream:error>`` (``host-unknown``, RFC 6120 4.9.3.6) before closing.
- The server's stream header proves XMPP: a ``stream`` element in the namespace
  ``http://etherx.jabber.org/streams``. Then come ``<stream:features>`` (STARTTLS, SASL
  mechanisms, ...) or a stream error. The probe waits for either, so the detail can say
  what the server offers (``starttls``, the SASL mechanisms) or why it refused.
- This is no XML parser: the first ``MAX_REPLY`` bytes are searched with bounded
  patterns, which is all a stream header and its features need. The ``from`` domain
  and every value are cleaned; the server's software is not on the wire at this point.
"""

from __future__ import annotations

import re

from scanner.protocols import Evidence, clean, join_detail
from scanner.protocols.tcp import TcpProbe

__all__ = ["TCP_PROBES", "build_request", "parse_reply"]

MAX_REPLY = 8192
_STREAMS_NS = b"http://etherx.jabber.org/streams"
_PREFIX = rb"[A-Za-z0-9_-]{1,32}:"
_HEADER = re.compile(rb"<(?:([A-Za-z0-9_-]{1,32}):)?stream\s([^>]{0,2000})>")
_ATTR = re.compile(rb"""([A-Za-z:_-]{1,40})\s*=\s*(?:'([^']{0,300})'|"([^"]{0,300})")""")
_FEATURES_END = re.compile(
    rb"</(?:" + _PREFIX + rb")?features\s*>|<(?:" + _PREFIX + rb")?features\s*/>"
)
_ERROR = re.compile(rb"<(?:[A-Za-z0-9_-]{1,32}:)?error[^>]{0,300}>\s*<([a-z-]{1,40})")
_MECHANISM = re.compile(rb"<mechanism>([A-Za-z0-9_-]{1,40})</mechanism>")


def build_request(host: str, _port: int = 0) -> bytes:
    """The client's stream header, ``to`` ``host`` (an IPv6 address as it is)."""
    to = re.sub(r"[^0-9A-Za-z.:_-]", "", host)[:255] or "portprobe.invalid"
    return (
        b"<?xml version='1.0'?><stream:stream to='" + to.encode() + b"' version='1.0' "
        b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    )


def parse_reply(data: bytes) -> Evidence | None:
    """``Evidence("xmpp", "from <domain>; features ...", "xmpp")`` once shown, else None."""
    head = data[:MAX_REPLY]
    m = _HEADER.search(head)
    if m is None:
        return None
    attrs = {k.lower(): v or w for k, v, w in _ATTR.findall(m.group(2))}
    prefix = m.group(1) or b""
    ns_name = b"xmlns:" + prefix if prefix else b"xmlns"
    if attrs.get(ns_name) != _STREAMS_NS:
        return None
    rest = head[m.end() :]
    error = _ERROR.search(rest)
    features = _FEATURES_END.search(rest)
    if error is None and features is None and len(head) < MAX_REPLY:
        return None  # features or an error will follow
    domain = clean(attrs.get(b"from", b""), 80)
    parts = [f"from {domain}" if domain else "", f"version {clean(attrs.get(b'version', b''), 8)}"
             if attrs.get(b"version") else ""]  # fmt: skip
    if error is not None:
        parts.append(f"stream error {error.group(1).decode()}")
        rule = "xmpp:stream-error"
    else:
        offered = rest[: features.end()] if features else rest
        if b"<starttls" in offered:
            parts.append("starttls")
        mechanisms = [x.decode() for x in _MECHANISM.findall(offered)[:8]]
        if mechanisms:
            parts.append("SASL " + " ".join(mechanisms))
        rule = "xmpp:stream-features"
    return Evidence("xmpp", join_detail(*parts), "xmpp", rule=rule)


TCP_PROBES = (TcpProbe(name="xmpp", request=build_request, decode=parse_reply, rank=70,
                       max_reply=MAX_REPLY),)  # fmt: skip
