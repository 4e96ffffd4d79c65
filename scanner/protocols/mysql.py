"""MySQL and MariaDB: the server's initial handshake names the product and its version.

Rules and theory:
- A MySQL-protocol server speaks first: an initial handshake packet (protocol 10) with
  its version string, or an error packet when it refuses the client's host. The packet
  itself is recognised by ``protocols.banner`` (its ``mysql`` rule); this module adds the
  product and version to that evidence, so the probe only listens (:func:`passive`).
- MariaDB announces itself in the version string (``10.11.6-MariaDB-0+deb12u1``, sent as
  ``5.5.5-10.11.6-MariaDB...`` to old clients; banner strips that prefix). Any other
  version string that starts with a number is taken as MySQL's: Oracle's server and its
  forks (Percona) send a bare ``8.0.36`` or ``8.0.36-28``. An error packet names the
  product only in its text ("... not allowed to connect to this MariaDB server").
- The version is the leading dotted number; the whole string stays in the detail.
- A decoder answers only once the whole packet has arrived (``banner.settled``).
"""

from __future__ import annotations

import re
from dataclasses import replace

from scanner.protocols import Evidence, banner
from scanner.protocols.tcp import TcpProbe, passive

__all__ = ["TCP_PROBES", "decode"]

_VERSION = re.compile(r"(\d{1,3}\.\d{1,3}(?:\.\d{1,4})?)")
_ERROR_PRODUCT = re.compile(r"\b(MariaDB|MySQL) server\b")


def decode(data: bytes) -> Evidence | None:
    """``Evidence("mysql", ..., product="MariaDB", version="10.11.6")`` for a whole greeting."""
    found = banner.classify(data)
    if found is None or found.service != "mysql" or not banner.settled(data):
        return None
    text = found.detail.split("; ", 1)[0]
    if text.startswith("error "):
        m = _ERROR_PRODUCT.search(text)
        product = m.group(1) if m else ""
        return replace(found, proof="mysql", product=product, rule="mysql:error")
    m = _VERSION.match(text)
    product = "MariaDB" if "mariadb" in text.lower() else "MySQL"
    return replace(
        found, proof="mysql", product=product, version=m.group(1) if m else "",
        rule="mysql:handshake",
    )  # fmt: skip


TCP_PROBES = (TcpProbe(name="mysql", request=passive, decode=decode, rank=10, max_reply=1024),)
