"""The only package that touches sockets: TCP connects, UDP exchanges, OS errors mapped to states.

Rooms, each with its own "rules and theory" (arrows: may import):

```
base  <-  classify  <-  tcp, udp, icmp  <-  streams
```

- ``base``: the seam (:class:`Transport`, :class:`Answer`, :class:`Backpressure`).
- ``classify``: the errno and ICMP tables, the only place where either becomes a state.
- ``tcp``: the engine's TCP connect transport (epoll, a RST on close).
- ``udp``: the UDP exchange, for the engine (:class:`UdpTransport`) and for evidence
  (:func:`~scanner.transport.udp.exchange`).
- ``icmp``: ICMP echoes for host discovery (a ping socket, or a raw one as root).
- ``streams``: the TCP streams evidence uses (connect with retries of local errors,
  bounded reads, a RST on close).
"""

from __future__ import annotations

from scanner.transport.base import FD_RESERVE, Answer, Backpressure, Deliver, Transport
from scanner.transport.classify import (
    CLOSED,
    ICMP_REASONS,
    LOCAL_ERRNOS,
    OPEN,
    UDP_OPEN,
    classify_errno,
    classify_icmp,
    classify_udp_errno,
)
from scanner.transport.icmp import ECHO_REPLY, IcmpEchoTransport
from scanner.transport.tcp import TcpConnectTransport
from scanner.transport.udp import UdpTransport

__all__ = [
    "CLOSED",
    "ECHO_REPLY",
    "FD_RESERVE",
    "ICMP_REASONS",
    "LOCAL_ERRNOS",
    "OPEN",
    "UDP_OPEN",
    "Answer",
    "Backpressure",
    "Deliver",
    "IcmpEchoTransport",
    "TcpConnectTransport",
    "Transport",
    "UdpTransport",
    "classify_errno",
    "classify_icmp",
    "classify_udp_errno",
]
