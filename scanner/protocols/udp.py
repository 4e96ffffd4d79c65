"""UDP probes: what to send to a port, and what a reply to it proves.

Rules and theory:
- Most UDP services answer only a well-formed request of their own protocol: an empty
  datagram draws nothing from a DNS, NTP or SNMP server. So each well-known port gets
  the payloads of its protocol (:data:`PORT_PROBES`), most specific first, and a port
  may get several (SNMP v1 and v2c, IKEv1 and IKEv2). Every other port gets the generic
  probe, an empty datagram, as nmap sends.
- Payloads are fixed bytes, built once at import: the modules of this package make them
  (DNS through dnspython), each with a constant transaction ID, cookie or nonce that its
  decoder checks in the reply wherever the protocol echoes one.
- :func:`identify` tries, in order: an exact echo of one of the port's payloads (the echo
  service, RFC 862, on port 7 and anywhere else: a reflector is worth knowing about);
  then the decoders of the port's probes; and otherwise reports the reply as it is,
  unidentified (``service`` ""), text as a cleaned line and binary as a length and hex
  prefix. Any reply at all proves the port open; only a decoder's acceptance names it.
- Only the port's own decoders are tried: a reply is an answer to what we sent there.
  Decoders look at bounded prefixes and never raise; what they report is cleaned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from scanner.protocols import (
    Evidence,
    banner,
    dns,
    ike,
    memcached,
    netbios,
    ntp,
    rpc,
    sip,
    snmp,
    ssdp,
)

__all__ = [
    "ECHO_PAYLOAD",
    "GENERIC",
    "PORT_PROBES",
    "SWEEP",
    "UdpProbe",
    "identify",
    "probes_for",
    "sweep_for",
]

ECHO_PAYLOAD = b"portprobe echo probe\r\n"
MAX_REPLY = 65535  # a datagram's payload is never longer


@dataclass(frozen=True, slots=True)
class UdpProbe:
    """One payload to send, and the decoder of the replies it draws (None: not its protocol)."""

    name: str
    payload: bytes
    decode: Callable[[bytes], Evidence | None]


def _echo_of(payload: bytes) -> Callable[[bytes], Evidence | None]:
    def decode(reply: bytes) -> Evidence | None:
        return _echo(len(payload)) if reply == payload else None

    return decode


def _echo(size: int) -> Evidence:
    return Evidence("echo", f"echoed our {size}-byte datagram", "echo")


def _generic(reply: bytes) -> Evidence | None:
    return None  # an empty datagram's answer proves no protocol; identify shows it as is


GENERIC = UdpProbe("generic", b"", _generic)

_DNS = UdpProbe("dns", dns.build_query(), dns.parse_reply)
# version.bind CHAOS TXT first: its answer names the product (dnsmasq 2.90, BIND 9.18),
# and a server that refuses it still proves DNS; the A query's answer is the fallback.
_DNS_VERSION = UdpProbe("dns-version", dns.build_version_query(), dns.parse_version_reply)

#: Port -> its probes, most specific first. Ports not listed get ``(GENERIC,)``.
PORT_PROBES: dict[int, tuple[UdpProbe, ...]] = {
    7: (UdpProbe("echo", ECHO_PAYLOAD, _echo_of(ECHO_PAYLOAD)),),
    53: (_DNS_VERSION, _DNS),
    111: (UdpProbe("rpcbind", rpc.build_request(), rpc.parse_reply),),
    123: (UdpProbe("ntp", ntp.build_request(), ntp.parse_reply),),
    137: (UdpProbe("netbios-ns", netbios.build_request(), netbios.parse_reply),),
    161: (
        UdpProbe("snmp-v1", snmp.build_request(0), snmp.parse_v1_reply),
        UdpProbe("snmp-v2c", snmp.build_request(1), snmp.parse_v2c_reply),
    ),
    500: (
        UdpProbe("ike-v1", ike.build_v1_request(), ike.parse_reply),
        UdpProbe("ike-v2", ike.build_v2_request(), ike.parse_reply),
    ),
    1900: (UdpProbe("ssdp", ssdp.build_request(), ssdp.parse_reply),),
    5060: (UdpProbe("sip", sip.build_request(), sip.parse_reply),),
    5353: (UdpProbe("mdns", dns.build_mdns_query(), dns.parse_mdns_reply),),
    11211: (UdpProbe("memcached", memcached.build_request(), memcached.parse_reply),),
}

_GENERIC_ONLY = (GENERIC,)


def probes_for(port: int) -> tuple[UdpProbe, ...]:
    """Every payload to send to ``port``, most specific first (built once; a dict lookup).

    A port may get several (53: a DNS query; 161: SNMP v1 and v2c; ...). A port with no
    specific probe gets the generic one: an empty datagram (as nmap sends).
    """
    return PORT_PROBES.get(port, _GENERIC_ONLY)


#: Every protocol payload we have, once each (not the echo probe, not the empty datagram):
#: what a port that answered nothing to its own payload gets in turn (:func:`sweep_for`).
SWEEP: tuple[UdpProbe, ...] = tuple(
    {
        probe.name: probe
        for probes in PORT_PROBES.values()
        for probe in probes
        if probe.name != "echo"
    }.values()
)


def sweep_for(port: int) -> tuple[UdpProbe, ...]:
    """The payloads of :data:`SWEEP` that ``port`` did not get already: a service on a port
    that is not its own (DNS on 5300, SNMP on 1161) answers only its own protocol."""
    own = {probe.name for probe in probes_for(port)}
    return tuple(probe for probe in SWEEP if probe.name not in own)


def identify(
    port: int, reply: bytes, probes: tuple[UdpProbe, ...] | None = None
) -> Evidence:
    """What a reply to ``port``'s probes proves: the first decoder that accepts it, else a
    generic ``Evidence(service="", detail=<clean prefix or hex of the reply>, proof="udp")``.

    An exact echo of one of the port's payloads is the echo service, on any port.
    ``probes``: the probes that were sent, when not the port's own (a sweep).
    """
    reply = reply[:MAX_REPLY]
    probes = probes_for(port) if probes is None else probes
    for probe in probes:
        if reply == probe.payload:
            return _echo(len(reply))
    for probe in probes:
        found = probe.decode(reply)
        if found is not None:
            return found
    if not reply:
        return Evidence("", "empty datagram", "udp")
    return banner.unidentified(reply, "udp")
