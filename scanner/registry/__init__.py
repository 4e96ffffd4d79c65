"""IANA's Service Name and Transport Protocol Port Number Registry, and what it attests.

portprobe ships the whole registry in IANA's CSV format
(``scanner/data/iana-service-names-port-numbers.csv``, provenance in
``scanner/data/iana-registry.json``): today's names merged with the full records of 2015,
each record's ``origin`` saying which source gave which field (``bench/make_registry.py``).
It can replace them with IANA's own file, XML (:mod:`scanner.registry.xml`, the default) or
CSV (:func:`update_registry`, undone by :func:`rollback_registry`). Documented unofficial
uses of ports are in :mod:`scanner.registry.customary`::

    >>> from scanner.registry import attestation, load_registry
    >>> load_registry().label(2451, "tcp").service
    'netchat'
    >>> [r.service for r in load_registry().labels(853, "tcp")]
    ['domain-s']
    >>> str(attestation(2451, "tcp")), str(attestation(443, "tcp"))
    ('obscure', 'common')

Rules:
- A registry label is a claim, not evidence: a name in IANA's registry says someone asked for
  the number, not that the service is deployed or that it is what listens. Attestation says
  how much the claim is worth, from two documented sources and nothing else.
- :func:`attestation` of a port on a transport is, in this order:

  ``common``
      a named IANA assignment covers it AND the port is among the top 1000 ports of that
      transport in portprobe's shipped lists (``scanner.ports.top_ports(1000, Proto.TCP)``
      or ``Proto.UDP``), which come from the open-frequency column Nmap measures in large
      Internet scans: the service is widely deployed in practice. SCTP and DCCP have no
      such list, so their assignments are never common.
  ``obscure``
      a named assignment that is not common, e.g. 2451 netchat or 3451 asam: registered,
      but rarely seen listening.
  ``dynamic``
      no named assignment and the port is in IANA's dynamic range 49152-65535, which
      anyone may use for ephemeral ports.
  ``reserved``
      every record covering it is a Reserved one: IANA's "Reserved" entries (e.g. port 0,
      1023, 1024, 49151) and the "any private ..." numbers set aside for private systems.
  ``unassigned``
      otherwise: only Unassigned (or De-registered, Removed, ...) records cover it, or none.
- A record with an empty transport covers its ports on every transport; a record's status is
  ``assigned`` when it has a service name, else ``reserved`` or ``unassigned`` from IANA's
  description (:attr:`Registration.status`).
- :func:`port_range` is IANA's split (RFC 6335): system 0-1023, registered 1024-49151,
  dynamic 49152-65535.
- Data files and the user copy: :mod:`scanner.registry.store`; the CSV format:
  :mod:`scanner.registry.parse`. Nothing here opens a socket except an update from a URL.
"""

from __future__ import annotations

from scanner.registry.attest import Attestation, PortRange, attestation, port_range
from scanner.registry.index import Registry, Source
from scanner.registry.parse import (
    COLUMNS,
    NO_PORT,
    ORIGIN_COLUMN,
    Registration,
    RegistryError,
    Status,
    parse_registry_csv,
)
from scanner.registry.store import (
    IANA_XML,
    UpdateResult,
    default_data_dir,
    load_registry,
    registry_date,
    rollback_registry,
    update_registry,
)
from scanner.registry.xml import IanaXml, Person, parse_registry_xml

__all__ = [
    "COLUMNS",
    "IANA_XML",
    "NO_PORT",
    "ORIGIN_COLUMN",
    "Attestation",
    "IanaXml",
    "Person",
    "PortRange",
    "Registration",
    "Registry",
    "RegistryError",
    "Source",
    "Status",
    "UpdateResult",
    "attestation",
    "default_data_dir",
    "load_registry",
    "parse_registry_csv",
    "parse_registry_xml",
    "port_range",
    "registry_date",
    "rollback_registry",
    "update_registry",
]
