"""The results layer: what the registry claims, what the port was seen to speak, the verdict.

Rules:
- Every reported port gets its IANA label (every current service name of the port: 465/tcp
  is ``urd/submissions``), its range (system, registered, dynamic) and the label's
  attestation (:class:`~scanner.models.Attestation`; see ``scanner.registry.attestation``).
- Only an open port has evidence, and a verdict (:class:`~scanner.models.Verdict`),
  decided in this order (:func:`verdict`):

  ==============  =================================================================
  unverified      nothing was seen: no evidence, or a probe that drew no bytes
  unrecognised    the port answered, but no decoder could name what it speaks
  consistent      the evidence is what one of the port's registered names says
                  (``CONSISTENT_WITH``: ``https`` is TLS, ``domain`` is DNS, ...)
  customary       the evidence is a documented unofficial use of the port
                  (``scanner.registry.customary``), or anything on a dynamic port
                  without a name (RFC 6335 leaves that range free)
  contradicts     anything else: the port speaks something its label does not name,
                  or speaks at all where the registry assigns nothing
  ==============  =================================================================

- The alarm (``!!`` in the table, a warning line, and a count in the summary) is
  :attr:`Assessment.alarm <scanner.models.Assessment.alarm>`: ``contradicts``, and
  ``unrecognised`` on an obscure, unassigned or reserved port. A label the evidence does
  not confirm still gets a warning, without the ``!!``: an obscure one (2451 netchat, 3451
  asam), and an open port on an unassigned or reserved number. Every warning begins with
  "label is not evidence". ``consistent`` and ``customary`` are never warned about.
- The evidence trail goes into the assessment as it is: product, version, the probe that
  drew the evidence (``Evidence.proof``), the rule that named the service
  (``Evidence.rule``; the probe's name when the decoder gives none), and the excerpt of
  the bytes (``Evidence.excerpt``; for an unrecognised reply, which has no rule, the
  cleaned bytes its detail shows). :func:`check_command` gives the command a person can
  run to check the port by hand.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Collection, Sequence

from scanner.models import Assessment, Attestation, PortState, Proto, Result, Verdict
from scanner.protocols import NO_EVIDENCE, Evidence
from scanner.registry import PortRange, Registration, Registry, load_registry, port_range
from scanner.registry.attest import attestation_of, common_ports
from scanner.registry.customary import DYNAMIC_USE, CustomaryUse, customary_uses

__all__ = [
    "CONSISTENT_WITH",
    "WARNING_PREFIX",
    "Assessor",
    "check_command",
    "customary_for",
    "verdict",
]

WARNING_PREFIX = "label is not evidence"

# IANA label -> the evidence services that confirm it, where the names differ.
CONSISTENT_WITH: dict[str, frozenset[str]] = {
    "http": frozenset({"http"}),
    "www-http": frozenset({"http"}),
    "www": frozenset({"http"}),
    "http-alt": frozenset({"http", "https"}),
    "http-mgmt": frozenset({"http"}),
    "webcache": frozenset({"http"}),
    "https": frozenset({"https", "tls"}),
    "https-alt": frozenset({"https", "tls"}),
    "pcsync-https": frozenset({"https", "tls"}),
    "ipps": frozenset({"https", "tls"}),
    "ipp": frozenset({"http"}),
    "submission": frozenset({"smtp"}),
    "submissions": frozenset({"smtp", "smtps", "tls"}),
    "smtps": frozenset({"smtp", "smtps", "tls"}),
    "urd": frozenset({"smtp", "smtps", "tls"}),
    "imaps": frozenset({"imap", "imaps", "tls"}),
    "pop3s": frozenset({"pop3", "pop3s", "tls"}),
    "ftps": frozenset({"ftp", "ftps", "tls"}),
    "ldaps": frozenset({"tls"}),
    "domain-s": frozenset({"tls", "dns"}),
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


def _spoke(evidence: Evidence) -> bool:
    """Whether the evidence holds bytes the port sent (named or not)."""
    return bool(evidence.service or evidence.excerpt or evidence.detail)


def verdict(
    labels: Sequence[str],
    attest: Attestation,
    evidence: Evidence | None,
    customary: Sequence[CustomaryUse] = (),
) -> Verdict:
    """Compare an open port's registered names with its evidence (the module's rules).

    ``labels`` are every current name of the port; ``customary`` its documented
    unofficial uses (:func:`customary_for`).
    """
    if evidence is None or not _spoke(evidence):
        return Verdict.UNVERIFIED
    seen = evidence.service
    if not seen:
        return Verdict.UNRECOGNISED
    if any(seen in CONSISTENT_WITH.get(label, frozenset({label})) for label in labels):
        return Verdict.CONSISTENT
    if any(use is DYNAMIC_USE or seen in use.services for use in customary):
        return Verdict.CUSTOMARY
    return Verdict.CONTRADICTS


def customary_for(port: int, transport: str, attest: Attestation) -> tuple[CustomaryUse, ...]:
    """The customary uses that count for a port: the table's, and for a dynamic port
    without a name :data:`~scanner.registry.customary.DYNAMIC_USE`."""
    uses = customary_uses(port, transport)
    return (*uses, DYNAMIC_USE) if attest is Attestation.DYNAMIC else uses


def _claim(names: Sequence[str], attest: Attestation) -> str:
    """The registry's claim in words: "registered as 'netchat'", "unassigned in ..."."""
    if names:
        return "registered as " + " or ".join(repr(name) for name in names)
    return f"{attest} in the IANA registry"


def _warning(
    where: str, names: Sequence[str], attest: Attestation, outcome: Verdict, seen: str
) -> str:
    """The warning line of an open port (the module's rules), "" for none."""
    if outcome is Verdict.CONTRADICTS:
        return f"{WARNING_PREFIX}: {where} is {_claim(names, attest)}, but it speaks {seen}"
    if outcome in (Verdict.CONSISTENT, Verdict.CUSTOMARY):
        return ""
    if outcome is Verdict.UNRECOGNISED:
        if attest is Attestation.OBSCURE:
            return (
                f"{WARNING_PREFIX}: {where} is {_claim(names, attest)}, an obscure "
                "registration, and it answers with something portprobe cannot name"
            )
        if attest in (Attestation.UNASSIGNED, Attestation.RESERVED):
            return (
                f"{WARNING_PREFIX}: {where} is {attest} in the IANA registry, and it answers "
                "with something portprobe cannot name"
            )
        return ""
    if attest in (Attestation.UNASSIGNED, Attestation.RESERVED):
        return (
            f"{WARNING_PREFIX}: {where} is {attest} in the IANA registry; "
            "any traffic on it warrants scrutiny"
        )
    if attest is Attestation.OBSCURE:
        return (
            f"{WARNING_PREFIX}: {'/'.join(names)!r} on {where} is an obscure registration "
            "with no sign of real-world use; nothing here confirms it"
        )
    return ""


def check_command(host: str, port: int, protocol: str, service: str = "") -> str:
    """A command a person can run to check what ``host`` ``port``/``protocol`` speaks.

    By the service seen: ``curl -sv`` for HTTP, ``openssl s_client`` for TLS (``-dtls``
    over UDP), ``dig`` for DNS, ``snmpget`` for SNMP, else ``nc`` (``nc -u`` for UDP).
    Every part is shell-quoted.
    """
    bracketed = f"[{host}]" if ":" in host else host
    target = shlex.quote(f"{bracketed}:{port}")
    if service == "http":
        return f"curl -sv {shlex.quote(f'http://{bracketed}:{port}/')}"
    if service == "https":
        return f"curl -skv {shlex.quote(f'https://{bracketed}:{port}/')}"
    if service == "tls":
        dtls = "-dtls " if protocol == "udp" else ""
        return f"openssl s_client {dtls}-connect {target}"
    if service in ("dns", "mdns"):
        tcp = " +tcp" if protocol == "tcp" else ""
        return f"dig @{shlex.quote(host)} -p {port}{tcp} version.bind chaos txt"
    if service == "snmp":
        return f"snmpget -v2c -c public {target} 1.3.6.1.2.1.1.1.0"
    udp = "-u " if protocol == "udp" else ""
    return f"nc {udp}{shlex.quote(host)} {port}"


class Assessor:
    """Adds an :class:`~scanner.models.Assessment` to results."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry if registry is not None else load_registry()
        # Labels of ports that are not open depend on (port, protocol) only: one each. The
        # ports of one registry segment with one range and attestation share one label
        # (and so one Assessment object, which writers cache their cells by): a full range
        # builds a few thousand labels, not 65,535.
        self._labels: dict[tuple[int, str], _Label] = {}
        self._shared: dict[tuple[str, int, str, bool], _Label] = {}
        self._closed: dict[str, dict[int, Assessment]] = {}  # protocol -> port -> label

    def _base(self, port: int, protocol: str) -> _Label:
        """The registry's side of the assessment, and the port's current names."""
        key = (port, protocol)
        known = self._labels.get(key)
        if known is None:
            records = self.registry.covering(port, protocol)
            where = port_range(port)
            # What the attestation depends on besides the records: whether the port is
            # common, and its range. The covering tuple is the registry's own, alive as
            # long as it is: its id names the segment.
            shared_key = (protocol, id(records), where, port in common_ports(protocol))
            known = self._shared.get(shared_key)
            if known is None:
                attest = attestation_of(port, protocol, records)
                known = self._shared[shared_key] = _label(records, where, attest)
            self._labels[key] = known
        return known

    def labels(self, ports: Collection[int], protocol: Proto) -> list[Assessment]:
        """The assessments of ``ports`` of ``protocol`` when not open (what :meth:`assess`
        gives them), in bulk: the same shared objects."""
        name = protocol._value_
        table = self._closed.get(name)
        if table is None:
            table = self._closed[name] = {}
        try:
            return list(map(table.__getitem__, ports))
        except KeyError:  # some are new
            pass
        for port in set(ports).difference(table):
            table[port] = self._base(port, name).assessment
        return list(map(table.__getitem__, ports))

    def label(self, port: int, protocol: str) -> Assessment:
        """The registry's side of the assessment, shared by every host."""
        return self._base(port, protocol).assessment

    def assess(self, result: Result, evidence: Evidence | None = None) -> Result:
        """``result`` with its assessment; ``evidence`` counts only for open ports."""
        protocol = result.protocol._value_  # (the value property costs a call per result)
        known = self._base(result.port, protocol)
        base = known.assessment
        if result.state is not PortState.OPEN:
            return result.assessed(base)
        attest = Attestation(base.attestation) if base.attestation else Attestation.UNASSIGNED
        outcome = verdict(
            known.names, attest, evidence, customary_for(result.port, protocol, attest)
        )
        trail = evidence if evidence is not None and _spoke(evidence) else NO_EVIDENCE
        seen = trail.service
        where = f"{result.port}/{protocol}"
        return result.assessed(
            dataclasses.replace(
                base,
                evidence=seen,
                evidence_detail=trail.detail,
                verdict=outcome,
                warning=_warning(where, known.shown, attest, outcome, seen),
                product=trail.product,
                version=trail.version,
                evidence_probe=trail.proof,
                evidence_rule=(trail.rule or trail.proof) if seen else "",
                # An unrecognised reply has no excerpt of its own yet: its detail is the
                # cleaned bytes (scanner.protocols.banner.unidentified).
                evidence_excerpt=trail.excerpt or ("" if seen else trail.detail),
            ),
        )


def _label(records: Sequence[Registration], where: PortRange, attest: Attestation) -> _Label:
    """The label of the ports ``records`` cover, in range ``where``, attested ``attest``."""
    named: dict[str, Registration] = {}
    for record in records:  # one per service name, in the registry's order
        if record.service and record.service not in named:
            named[record.service] = record
    # Co-names with one description are aliases (80/tcp: http, www, www-http; the 2015
    # "well-formed" renames add a line to it): the label shows the first of them. Names
    # that describe different services (465/tcp) all show.
    shown: dict[str, str] = {}
    for record in named.values():
        first_line = record.description.split("\n")[0].strip()
        if first_line not in shown.values():
            shown[record.service] = first_line
    return _Label(
        Assessment(
            label="/".join(shown),
            label_description=" / ".join(d for d in shown.values() if d),
            range=where,
            attestation=attest,
        ),
        tuple(named),
        tuple(shown),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Label:
    """The registry's side of one (port, protocol): the assessment, every current name
    (for the verdict), and the names the label shows (for warnings)."""

    assessment: Assessment
    names: tuple[str, ...]
    shown: tuple[str, ...]
