"""TCP probes: what to send once connected, and what the reply proves.

Rules and theory:
- A :class:`TcpProbe` is sans-I/O: ``request(host, port)`` gives the bytes to send right
  after the connection is up (``b""``: send nothing, wait for a greeting), and
  ``decode(reply)`` is called with every byte received so far (bounded by ``max_reply``)
  and returns an :class:`Evidence` once the reply proves the protocol, ``None`` while it
  does not (yet). The I/O (``scanner.evidence``) reads until a decoder answers, the peer
  closes, ``max_reply`` bytes have come, or the port's budget runs out.
- Which probes a port gets never depends on its registry label: labels lie, and this
  product exists to say so. Every open port gets every probe in :data:`TCP_PROBES`, run
  in a bounded parallel set, in the order of :attr:`TcpProbe.rank` (most often useful
  first, measured on real daemons).
- A decoder fills ``service``, ``detail`` (cleaned), and where the protocol gives them
  ``product``, ``version`` and ``rule`` (``"<module>:<what matched>"``). The I/O sets
  ``proof`` (the probe's name) and ``excerpt`` (the first bytes of the reply, escaped).
- Each protocol module that has a TCP probe exports ``TCP_PROBES``, a tuple of
  :class:`TcpProbe`; this module gathers them into :data:`TCP_PROBES`.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass

from scanner.protocols import Evidence

__all__ = ["DEFAULT_MAX_REPLY", "TcpProbe", "active_probes", "passive", "passive_probes"]

DEFAULT_MAX_REPLY = 8192


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpProbe:
    """One TCP probe (see the module's rules).

    ``name``: short and unique ("ldap", "smb2", "postgres"). ``request``: (host, port)
    to the bytes sent first, ``b""`` to only listen. ``decode``: the reply so far to
    evidence, or None. ``rank``: lower runs earlier. ``max_reply``: the most bytes
    ``decode`` is given.
    """

    name: str
    request: Callable[[str, int], bytes]
    decode: Callable[[bytes], Evidence | None]
    rank: int = 100
    max_reply: int = DEFAULT_MAX_REPLY


def passive(_host: str, _port: int) -> bytes:
    """The request of a probe that only listens for a greeting: nothing."""
    return b""


# The modules whose TCP_PROBES every open port gets (see the module's rules).
_MODULES = (
    "redis", "dns", "ldap", "postgres", "mongodb", "memcached", "mqtt", "amqp", "epmd",
    "smb2", "rdp", "kerberos", "x11", "telnet", "irc", "xmpp", "nats", "sip", "rtsp",
    "mssql", "rmi", "h2",
)  # fmt: skip


@functools.cache
def _all_probes() -> tuple[TcpProbe, ...]:
    found: list[TcpProbe] = []
    for name in _MODULES:
        module = importlib.import_module(f"scanner.protocols.{name}")
        found.extend(module.TCP_PROBES)
    return tuple(sorted(found, key=lambda p: (p.rank, p.name)))


def active_probes() -> tuple[TcpProbe, ...]:
    """The probes that send something first, most often useful first (by ``rank``)."""
    return tuple(p for p in _all_probes() if p.request is not passive)


def passive_probes() -> tuple[TcpProbe, ...]:
    """The probes that only listen: their decoders read what a server says first."""
    return tuple(p for p in _all_probes() if p.request is passive)
