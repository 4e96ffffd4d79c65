"""The results layer: what the registry claims, what the port was seen to speak, the verdict.

Rules:
- Every reported port gets its IANA label (service name and description), its range
  (system, registered, dynamic) and the label's attestation (common, obscure, unassigned,
  reserved, dynamic; see ``scanner.registry.attestation``).
- Only an open port has evidence. Its verdict compares evidence with label:
  ``consistent`` when the port speaks what its label names (``CONSISTENT_WITH`` lists the
  label names that several protocols share, e.g. ``https`` is TLS), ``contradicts`` when it
  speaks something else, or anything at all on a port the registry leaves unassigned or
  reserved, and ``unverified`` when nothing was seen (or nothing was asked, or the registry
  makes no claim: the dynamic range).
- "A label is not evidence": an open port whose label is obscure, unassigned or
  contradicted gets a warning that begins with those words.
"""

from __future__ import annotations

import dataclasses

from scanner.evidence import Evidence
from scanner.models import Assessment, PortState, Result
from scanner.registry import Registry, attestation, load_registry, port_range

__all__ = ["CONSISTENT_WITH", "WARNING_PREFIX", "Assessor", "verdict"]

WARNING_PREFIX = "label is not evidence"

# IANA label -> the evidence services that confirm it, where the names differ.
CONSISTENT_WITH: dict[str, frozenset[str]] = {
    "http": frozenset({"http"}),
    "www-http": frozenset({"http"}),
    "http-alt": frozenset({"http", "https"}),
    "http-mgmt": frozenset({"http"}),
    "webcache": frozenset({"http"}),
    "https": frozenset({"https", "tls"}),
    "https-alt": frozenset({"https", "tls"}),
    "pcsync-https": frozenset({"https", "tls"}),
    "submission": frozenset({"smtp"}),
    "submissions": frozenset({"smtp", "tls", "https"}),
    "smtps": frozenset({"smtp", "tls"}),
    "urd": frozenset({"smtp", "tls"}),
    "imaps": frozenset({"imap", "tls"}),
    "pop3s": frozenset({"pop3", "tls"}),
    "ftps": frozenset({"ftp", "tls"}),
    "ldaps": frozenset({"tls"}),
    "rfb": frozenset({"vnc"}),
    "vnc-server": frozenset({"vnc"}),
    "mysql": frozenset({"mysql"}),
    "redis": frozenset({"redis"}),
    # UDP (scanner.protocols.udp)
    "domain": frozenset({"dns"}),
    "mdns": frozenset({"mdns", "dns"}),
    "isakmp": frozenset({"ike"}),
    "ipsec-nat-t": frozenset({"ike"}),
    "memcache": frozenset({"memcached"}),
    "sunrpc": frozenset({"rpcbind", "rpc"}),
    "nfs": frozenset({"rpc"}),
}


def verdict(label: str, attest: str, evidence: Evidence | None) -> str:
    """Compare an open port's label with its evidence (see the module's rules)."""
    if evidence is None or not evidence.service:
        return "unverified"
    if not label:
        return "unverified" if attest == "dynamic" else "contradicts"
    allowed = CONSISTENT_WITH.get(label, frozenset({label}))
    return "consistent" if evidence.service in allowed else "contradicts"


def _warning(
    port: int, protocol: str, label: str, attest: str, outcome: str, evidence: Evidence | None
) -> str:
    where = f"{port}/{protocol}"
    if outcome == "contradicts":
        seen = evidence.service if evidence is not None else "something else"
        claim = f"registered as {label!r}" if label else f"{attest} in the IANA registry"
        return f"{WARNING_PREFIX}: {where} is {claim}, but it speaks {seen}"
    if attest == "unassigned":
        return (
            f"{WARNING_PREFIX}: {where} is unassigned in the IANA registry; "
            "any traffic on it warrants scrutiny"
        )
    if attest == "obscure":
        confirmed = outcome == "consistent"
        tail = "it speaks what the label says" if confirmed else "nothing here confirms it"
        return (
            f"{WARNING_PREFIX}: {label!r} on {where} is an obscure registration with no sign "
            f"of real-world use; {tail}"
        )
    return ""


class Assessor:
    """Adds an :class:`~scanner.models.Assessment` to results."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry if registry is not None else load_registry()
        # Labels of ports that are not open depend on (port, protocol) only: one each.
        self._labels: dict[tuple[int, str], Assessment] = {}

    def label(self, port: int, protocol: str) -> Assessment:
        """The registry's side of the assessment, shared by every host."""
        key = (port, protocol)
        known = self._labels.get(key)
        if known is None:
            registration = self.registry.label(port, protocol)
            known = Assessment(
                label=registration.service if registration is not None else "",
                label_description=registration.description if registration is not None else "",
                range=port_range(port),
                attestation=attestation(port, protocol, self.registry),
            )
            self._labels[key] = known
        return known

    def assess(self, result: Result, evidence: Evidence | None = None) -> Result:
        """``result`` with its assessment; ``evidence`` counts only for open ports."""
        base = self.label(result.port, result.protocol.value)
        if result.state is not PortState.OPEN:
            return dataclasses.replace(result, assessment=base)
        outcome = verdict(base.label, base.attestation, evidence)
        seen = evidence if evidence is not None and evidence.service else None
        return dataclasses.replace(
            result,
            assessment=dataclasses.replace(
                base,
                evidence=seen.service if seen is not None else "",
                evidence_detail=seen.detail if seen is not None else "",
                verdict=outcome,
                warning=_warning(
                    result.port, result.protocol.value, base.label, base.attestation,
                    outcome, evidence,
                ),
            ),
        )  # fmt: skip
