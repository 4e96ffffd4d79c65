"""Where an errno or an ICMP type and code becomes a port state: the only such place.

Rules and theory:
- A TCP connect ends with an errno (``SO_ERROR``); a UDP exchange with the errno of the
  ICMP error it drew, and, with ``IP_RECVERR``, the exact ICMP type and code from the
  socket's error queue. Linux maps ICMP errors to errnos in net/ipv4/icmp.c
  (icmp_err_convert) and net/ipv6/icmp.c (icmpv6_err_convert); ICMPv6 admin-prohibited
  is EACCES, IPv4's arrives as EHOSTUNREACH.
- :data:`LOCAL_ERRNOS` are errors of this machine (out of descriptors, memory or local
  ports), never of the port: the engine sends again later (:class:`Backpressure`), and
  evidence probing connects again.
- An errno with no known meaning for the port is ``filtered`` with reason ``error``, not
  guessed at.
"""

from __future__ import annotations

import errno

from scanner.models import PortState, Reason
from scanner.transport.base import Answer, Backpressure

OPEN = Answer(PortState.OPEN, Reason.SYN_ACK)
CLOSED = Answer(PortState.CLOSED, Reason.CONN_REFUSED)
UDP_OPEN = Answer(PortState.OPEN, Reason.UDP_RESPONSE)
ERROR = Answer(PortState.FILTERED, Reason.ERROR)

_HOST = Answer(PortState.FILTERED, Reason.HOST_UNREACH)
_NET = Answer(PortState.FILTERED, Reason.NET_UNREACH)
_ADMIN = Answer(PortState.FILTERED, Reason.ADMIN_PROHIBITED)
_PROTO = Answer(PortState.FILTERED, Reason.PROTO_UNREACH)
_PORT_UNREACH = Answer(PortState.CLOSED, Reason.PORT_UNREACH)

# errno -> Answer for an ICMP unreachable other than port-unreachable, for either protocol.
_UNREACHABLE: dict[int, Answer] = {
    errno.EHOSTUNREACH: _HOST,
    errno.EHOSTDOWN: _HOST,
    errno.ENONET: _HOST,
    errno.ENETUNREACH: _NET,
    errno.ENETDOWN: _NET,
    errno.EACCES: _ADMIN,
    errno.ENOPROTOOPT: _PROTO,
}

# errno -> Answer for a TCP connect (classify_errno's table; the TCP transport reads it directly).
TCP_ERRNO: dict[int, Answer] = {
    0: OPEN,
    # The handshake completed and the server reset the connection before we looked: open.
    # (A RST answering the SYN itself is ECONNREFUSED.)
    errno.ECONNRESET: OPEN,
    errno.ECONNREFUSED: CLOSED,
    errno.EPERM: _ADMIN,
    errno.ETIMEDOUT: Answer(PortState.FILTERED, Reason.NO_RESPONSE),
    **_UNREACHABLE,
}

# errno -> Answer for a UDP exchange: the ICMP error the probe drew.
_UDP_ERRNO: dict[int, Answer] = {errno.ECONNREFUSED: _PORT_UNREACH, **_UNREACHABLE}

#: Errors of the local machine, not of the port: try again later.
LOCAL_ERRNOS = frozenset(
    {
        errno.EMFILE,
        errno.ENFILE,
        errno.ENOBUFS,
        errno.ENOMEM,
        errno.EADDRNOTAVAIL,
        errno.EAGAIN,
        errno.EADDRINUSE,
        errno.EINTR,
    }
)

#: Reasons that are ICMP errors from the target: each cost it a token of its ICMP budget.
ICMP_REASONS = frozenset(
    {
        Reason.PORT_UNREACH,
        Reason.HOST_UNREACH,
        Reason.NET_UNREACH,
        Reason.ADMIN_PROHIBITED,
        Reason.PROTO_UNREACH,
    }
)

ORIGIN_ICMP, ORIGIN_ICMP6 = 2, 3  # SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6 (linux/errqueue.h)
# (origin, type, code) of a destination-unreachable -> Answer (RFC 792, RFC 1812, RFC 4443).
_ICMP_UNREACH: dict[tuple[int, int, int], Answer] = {
    (ORIGIN_ICMP, 3, 0): _NET,
    (ORIGIN_ICMP, 3, 1): _HOST,
    (ORIGIN_ICMP, 3, 2): _PROTO,
    (ORIGIN_ICMP, 3, 3): _PORT_UNREACH,
    (ORIGIN_ICMP, 3, 6): _NET,  # destination network unknown
    (ORIGIN_ICMP, 3, 7): _HOST,  # destination host unknown
    (ORIGIN_ICMP, 3, 9): _ADMIN,  # network administratively prohibited
    (ORIGIN_ICMP, 3, 10): _ADMIN,  # host administratively prohibited
    (ORIGIN_ICMP, 3, 11): _NET,
    (ORIGIN_ICMP, 3, 12): _HOST,
    (ORIGIN_ICMP, 3, 13): _ADMIN,  # communication administratively prohibited
    (ORIGIN_ICMP6, 1, 0): _NET,  # no route to destination
    (ORIGIN_ICMP6, 1, 1): _ADMIN,
    (ORIGIN_ICMP6, 1, 3): _HOST,  # address unreachable
    (ORIGIN_ICMP6, 1, 4): _PORT_UNREACH,
    (ORIGIN_ICMP6, 1, 5): _ADMIN,  # source address failed ingress/egress policy
    (ORIGIN_ICMP6, 1, 6): _ADMIN,  # reject route to destination
}


def classify_errno(err: int) -> Answer:
    """Map the errno that ended a TCP connect attempt to the port's state and reason.

    Raises :class:`Backpressure` for errors of the local machine that say nothing about the
    port. An errno with no known meaning for the port is reported as filtered with reason
    ``error`` rather than guessed at.
    """
    answer = TCP_ERRNO.get(err)  # (the common case without a call: this is the hot path)
    return answer if answer is not None else _classify(TCP_ERRNO, err)


def classify_udp_errno(err: int) -> Answer:
    """Map the errno a UDP exchange ended with (an ICMP error it drew) to a state and reason.

    Raises :class:`Backpressure` for local resource errors, as :func:`classify_errno` does.
    ``EPERM`` is the local firewall refusing to send, not an answer from the network, so it
    is reported as filtered with reason ``error``, like any errno with no known meaning.
    """
    return _classify(_UDP_ERRNO, err)


def classify_icmp(origin: int, icmp_type: int, code: int) -> Answer | None:
    """Map an ICMP error read from a socket's error queue to a state, or None if unknown.

    ``origin`` is ``SO_EE_ORIGIN_ICMP`` (2) or ``SO_EE_ORIGIN_ICMP6`` (3).
    """
    return _ICMP_UNREACH.get((origin, icmp_type, code))


def _classify(table: dict[int, Answer], err: int) -> Answer:
    answer = table.get(err)
    if answer is not None:
        return answer
    if err in LOCAL_ERRNOS:
        raise Backpressure(err)
    return ERROR
