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
- Bounded: the 12-byte header is checked by hand before dnspython sees at most
  ``MAX_MESSAGE`` bytes; the detail names the rcode, the AA/TC flags and at most
  ``_MAX_ANSWERS`` answer records, each cleaned.
"""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from scanner.protocols import Evidence, clean, join_detail

__all__ = [
    "MAX_MESSAGE",
    "MDNS_NAME",
    "QUERY_ID",
    "QUERY_NAME",
    "build_mdns_query",
    "build_query",
    "parse_mdns_reply",
    "parse_reply",
]

QUERY_NAME = "portprobe.invalid."
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


def _parse(
    data: bytes, name: str, rdtype: dns.rdatatype.RdataType, service: str
) -> Evidence | None:
    if len(data) < _HEADER.size:
        return None
    ident, flags, qdcount, *_ = _HEADER.unpack_from(data)
    if ident != QUERY_ID or not flags & dns.flags.QR or dns.opcode.from_flags(flags) != 0:
        return None
    if qdcount > 1:
        return None
    try:
        reply = dns.message.from_wire(data[:MAX_MESSAGE], ignore_trailing=True)
        answers = [
            f"{dns.rdatatype.to_text(rrset.rdtype)} {rdata.to_text()}"
            for rrset in reply.answer
            for rdata in rrset
        ]
        rcode = dns.rcode.to_text(reply.rcode())
    except Exception:  # dnspython raises many kinds on hostile input; any of them: not DNS
        return None
    if reply.question:
        asked = reply.question[0]
        if (
            asked.name != dns.name.from_text(name)
            or asked.rdtype != rdtype
            or asked.rdclass != dns.rdataclass.IN
        ):
            return None
    flag_words = [word for bit, word in ((dns.flags.AA, "aa"), (dns.flags.TC, "tc")) if flags & bit]
    shown = [clean(answer, _PART) for answer in answers[:_MAX_ANSWERS]]
    if len(answers) > _MAX_ANSWERS:
        shown.append(f"{len(answers) - _MAX_ANSWERS} more")
    return Evidence(
        service,
        join_detail(rcode, " ".join(flag_words), ", ".join(shown)),
        service,
    )
