"""What the registry says about a port, in one word: port_range and attestation.

Rules: see the package docstring (:mod:`scanner.registry`), which the README copies.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal

from scanner.models import Attestation, Proto
from scanner.ports import MAX_PORT, top_ports
from scanner.registry.index import Registry
from scanner.registry.parse import Registration
from scanner.registry.store import load_registry

__all__ = [
    "COMMON_TOP",
    "Attestation",
    "PortRange",
    "attestation",
    "attestation_of",
    "common_ports",
    "port_range",
]

PortRange = Literal["system", "registered", "dynamic"]

#: A named assignment is "common" when its port is among this many top ports.
COMMON_TOP = 1000

_FIRST_REGISTERED = 1024
_FIRST_DYNAMIC = 49152


def port_range(port: int) -> PortRange:
    """IANA's range of ``port`` (RFC 6335): "system" 0-1023, "registered" 1024-49151,
    "dynamic" 49152-65535. Raises ValueError outside 0-65535."""
    if not 0 <= port <= MAX_PORT:
        raise ValueError(f"port {port} is out of range 0-{MAX_PORT}")
    if port < _FIRST_REGISTERED:
        return "system"
    if port < _FIRST_DYNAMIC:
        return "registered"
    return "dynamic"


def attestation(port: int, transport: str, registry: Registry | None = None) -> Attestation:
    """How well attested ``port`` on ``transport`` is: common, obscure, reserved,
    unassigned or dynamic (the rule is in the :mod:`scanner.registry` docstring).

    ``registry`` defaults to :func:`load_registry`. Raises ValueError outside 0-65535.
    """
    records = (registry if registry is not None else load_registry()).covering(port, transport)
    return attestation_of(port, transport, records)


def attestation_of(
    port: int, transport: str, records: Sequence[Registration]
) -> Attestation:
    """:func:`attestation` of ``port`` from the ``records`` that cover it, as
    :meth:`Registry.lookup <scanner.registry.index.Registry.lookup>` returns them."""
    if records and records[0].service:  # named assignments come first
        common = port in common_ports(transport.lower())
        return Attestation.COMMON if common else Attestation.OBSCURE
    if port >= _FIRST_DYNAMIC:
        return Attestation.DYNAMIC
    if records and all(record.status == "reserved" for record in records):
        return Attestation.RESERVED
    return Attestation.UNASSIGNED


@functools.cache
def common_ports(transport: str) -> frozenset[int]:
    """The ports whose named assignments are "common" (:func:`attestation`): the top
    :data:`COMMON_TOP` ports of ``transport``; none for transports without a list."""
    try:
        protocol = Proto(transport)
    except ValueError:  # sctp, dccp: portprobe ships no frequency list for them
        return frozenset()
    return frozenset(top_ports(COMMON_TOP, protocol))
