"""DNS (port 53) and multicast DNS (port 5353): a standard query, and the reply to it.

Rules and theory:
- dnspython builds and parses every message; nothing here packs DNS by hand.
- The DNS probe is a standard query (RFC 1035 4.1, opcode QUERY, one question) for the A
  record of ``portprobe.invalid`` with RD (recursion desired) clear: a resolver answers
  from its cache or refuses, and is not asked to look anything up elsewhere (``.invalid``
  never resolves anyway, RFC 6761 6.4). Any reply proves DNS, NOERROR, NXDOMAIN and
  REFUSED alike; the question is only a well-formed thing to ask.
- The mDNS probe is a one-shot "legacy unicast" query (RFC 6762 6.7) for the DNS-SD
  service enumeration name ``_services._dns-sd._udp.local`` PTR (RFC 6763 9), sent to the
  target's port 5353 from an ephemeral port: a responder answers it by unicast, with our
  ID and our question echoed, and the answers list the service types it advertises.
- Both queries carry a fixed ID. A reply counts only if it is a response (QR set) to a
  QUERY, carries that ID and either echoes our question or has none (some servers leave
  it out of an error reply). An echo of the query itself has QR clear and does not count.
- Over TCP (RFC 1035 4.2.2, RFC 7766) each message has a 2-byte length before it. The
  TCP probe asks only ``version.bind. CH TXT`` (RD clear): any reply to it proves DNS, and
  where the server answers it (dnsmasq, BIND, Unbound, PowerDNS... unless hidden) the
  text names the product and version. One query, one round trip: a second query would
  make the decoder wait for a reply some servers never send.
- Bounded: the 12-byte header is checked by hand before dnspython sees at most
  ``MAX_MESSAGE`` bytes; the detail names the rcode, the AA/TC flags and at most
  ``_MAX_ANSWERS`` answer records, each cleaned.
"""

from __future__ import annotations

import re
import struct

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from scanner.protocols import Evidence, clean, join_detail
from scanner.protocols.tcp import TcpProbe

__all__ = [
    "MAX_MESSAGE",
    "MDNS_NAME",
    "QUERY_ID",
    "QUERY_NAME",
    "TCP_PROBES",
    "VERSION_NAME",
    "build_mdns_query",
    "build_query",
    "build_version_query",
    "decode_tcp",
    "parse_mdns_reply",
    "parse_reply",
    "parse_version_reply",
    "tcp_request",
]

QUERY_NAME = "portprobe.invalid."
VERSION_NAME = "version.bind."  # CHAOS TXT: the server's software, where it tells
MDNS_NAME = "_services._dns-sd._udp.local."
QUERY_ID = 0x7070  # fixed: the reply must echo it (RFC 1035 4.1.1)
MAX_MESSAGE = 4096  # bytes of a reply handed to dnspython
_MAX_ANSWERS = 3
_PART = 60  # characters of one answer in the detail
_HEADER = struct.Struct("!HHHHHH")


def _query(name: str, rdtype: dns.rdatatype.RdataType) -> dns.message.QueryMessage:
    return dns.message.make_query(name, rdtype, dns.rdataclass.IN, id=QUERY_ID, flags=0)


def build_query() -> bytes:
    """A standard query, RD clear, fixed ID: ``portprobe.invalid. IN A``."""
    return _query(QUERY_NAME, dns.rdatatype.A).to_wire()


def build_mdns_query() -> bytes:
    """A legacy unicast mDNS query, fixed ID: ``_services._dns-sd._udp.local. IN PTR``."""
    return _query(MDNS_NAME, dns.rdatatype.PTR).to_wire()


def parse_reply(data: bytes) -> Evidence | None:
    """``Evidence("dns", ...)`` if ``data`` is a DNS reply to :func:`build_query`."""
    return _parse(data, QUERY_NAME, dns.rdatatype.A, "dns")


def parse_mdns_reply(data: bytes) -> Evidence | None:
    """``Evidence("mdns", ...)`` if ``data`` is a reply to :func:`build_mdns_query`."""
    return _parse(data, MDNS_NAME, dns.rdatatype.PTR, "mdns")


def _read(
    data: bytes,
    name: str,
    rdtype: dns.rdatatype.RdataType,
    rdclass: dns.rdataclass.RdataClass = dns.rdataclass.IN,
) -> dns.message.Message | None:
    """``data`` as the reply to our query for ``name``/``rdtype``/``rdclass``, else None."""
    if len(data) < _HEADER.size:
        return None
    ident, flags, qdcount, *_ = _HEADER.unpack_from(data)
    if ident != QUERY_ID or not flags & dns.flags.QR or dns.opcode.from_flags(flags) != 0:
        return None
    if qdcount > 1:
        return None
    try:
        reply = dns.message.from_wire(data[:MAX_MESSAGE], ignore_trailing=True)
        for rrset in reply.answer:
            for rdata in rrset:
                rdata.to_text()  # a record that cannot be shown is not a reply we take
    except Exception:  # dnspython raises many kinds on hostile input; any of them: not DNS
        return None
    if reply.question:
        asked = reply.question[0]
        if (
            asked.name != dns.name.from_text(name)
            or asked.rdtype != rdtype
            or asked.rdclass != rdclass
        ):
            return None
    return reply


def _parse(
    data: bytes, name: str, rdtype: dns.rdatatype.RdataType, service: str
) -> Evidence | None:
    reply = _read(data, name, rdtype)
    if reply is None:
        return None
    answers = [
        f"{dns.rdatatype.to_text(rrset.rdtype)} {rdata.to_text()}"
        for rrset in reply.answer
        for rdata in rrset
    ]
    return Evidence(service, _summary(reply, answers), service)


def _summary(reply: dns.message.Message, answers: list[str]) -> str:
    """The rcode, the AA/TC flags and at most ``_MAX_ANSWERS`` answers, as one detail."""
    flags = reply.flags
    flag_words = [word for bit, word in ((dns.flags.AA, "aa"), (dns.flags.TC, "tc")) if flags & bit]
    shown = [clean(answer, _PART) for answer in answers[:_MAX_ANSWERS]]
    if len(answers) > _MAX_ANSWERS:
        shown.append(f"{len(answers) - _MAX_ANSWERS} more")
    return join_detail(dns.rcode.to_text(reply.rcode()), " ".join(flag_words), ", ".join(shown))


# --------------------------------------------------------------------------- over TCP

# version.bind's answer, as the common servers word it: (pattern, product).
_PRODUCTS = (
    (re.compile(r"dnsmasq-(\S+)"), "dnsmasq"),
    (re.compile(r"unbound (\S+)", re.IGNORECASE), "Unbound"),
    (re.compile(r"PowerDNS (?:Authoritative Server|Recursor) (\S+)"), "PowerDNS"),
    (re.compile(r"Knot DNS (\S+)"), "Knot DNS"),
    (re.compile(r"Knot Resolver (\S+)"), "Knot Resolver"),
    (re.compile(r"NSD (\S+)"), "NSD"),
    (re.compile(r"CoreDNS-(\S+)"), "CoreDNS"),
    (re.compile(r"Microsoft DNS (\S+)"), "Microsoft DNS"),
    # BIND answers its bare version ("9.18.28-1~deb12u2-Debian"): no other server does.
    (re.compile(r"(9\.\d{1,2}\.\d{1,3})(?:[-.~+ ]|$)"), "BIND"),
)
_NUMBER = re.compile(r"\d+(?:\.\d+){0,3}")
_TCP_LENGTH = struct.Struct("!H")


def build_version_query() -> bytes:
    """The CHAOS TXT query for ``version.bind.``, RD clear, fixed ID (dnspython-built)."""
    return dns.message.make_query(
        VERSION_NAME, dns.rdatatype.TXT, dns.rdataclass.CH, id=QUERY_ID, flags=0
    ).to_wire()


def tcp_request(_host: str, _port: int) -> bytes:
    """The ``dns-tcp`` probe: :func:`build_version_query` with its 2-byte length (RFC 1035
    4.2.2)."""
    query = build_version_query()
    return _TCP_LENGTH.pack(len(query)) + query


def decode_tcp(data: bytes) -> Evidence | None:
    """``Evidence("dns", ..., product="dnsmasq", version="2.89")`` for a reply over TCP.

    Any well-formed reply to the ``version.bind`` query proves DNS (REFUSED and NOTIMP
    too); a TXT answer names the product where the server is known (:data:`_PRODUCTS`).
    """
    if len(data) < _TCP_LENGTH.size:
        return None
    (length,) = _TCP_LENGTH.unpack_from(data)
    if length < _HEADER.size:
        return None
    message = data[_TCP_LENGTH.size : _TCP_LENGTH.size + length]
    if len(message) < min(length, MAX_MESSAGE):
        return None  # wait for the whole message (the first MAX_MESSAGE bytes of a longer one)
    return _version_reply(message, "dns-tcp")


def parse_version_reply(data: bytes) -> Evidence | None:
    """:func:`decode_tcp` for a datagram: the reply to :func:`build_version_query` over UDP."""
    return _version_reply(data[:MAX_MESSAGE], "dns")


def _version_reply(message: bytes, proof: str) -> Evidence | None:
    reply = _read(message, VERSION_NAME, dns.rdatatype.TXT, dns.rdataclass.CH)
    if reply is None:
        return None
    texts = [
        b"".join(rdata.strings).decode("utf-8", "replace")
        for rrset in reply.answer
        if rrset.rdtype == dns.rdatatype.TXT
        for rdata in rrset
    ]
    product = version = ""
    rule = "dns:reply"
    for pattern, name in _PRODUCTS:
        if texts and (m := pattern.match(texts[0])) is not None:
            number = _NUMBER.match(m.group(1))
            product, version, rule = name, number.group() if number else "", "dns:version.bind"
            break
    answers = [f"version.bind {text!r}" for text in texts]
    return Evidence(
        "dns", _summary(reply, answers), proof, product=product, version=version, rule=rule
    )


TCP_PROBES = (TcpProbe(name="dns-tcp", request=tcp_request, decode=decode_tcp, rank=35),)
