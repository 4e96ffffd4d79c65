"""``portprobe port N``: a short reference card for one port, as plain lines of text.

Rules: the card states what the IANA registry says (for TCP and UDP: every current name,
its registrant resolved through the registry's people where it has them, and where each
record's fields come from), its documented customary uses with their sources, how much
the label is worth (attestation), what listens on the port on this machine, and how to
check by hand (for each local listener, the command that asks it what it speaks). It
makes no network traffic and never guesses: an unassigned port says so.
"""

from __future__ import annotations

from collections.abc import Sequence

from scanner.assess import CONSISTENT_WITH, check_command
from scanner.localinfo import Listener
from scanner.registry import Registration, Registry, attestation, port_range
from scanner.registry.customary import customary_uses

_RANGES = {
    "system": "system range (0-1023)",
    "registered": "registered (user) range (1024-49151)",
    "dynamic": "dynamic range (49152-65535)",
}

ATTESTATION_MEANING = {
    "common": "widely deployed in practice (among the 1,000 ports Nmap finds open most often)",
    "obscure": "registered, with no sign of real-world use: a label is not evidence",
    "unassigned": "no service is assigned: any traffic on it warrants scrutiny",
    "reserved": "reserved by IANA: no service should use it",
    "dynamic": "dynamic/private range: free for any use, so the registry says nothing",
}


# What a service check by hand can ask, best first: the rest get nc.
_CHECKABLE = ("https", "http", "tls", "dns", "snmp")


def _origin(record: Registration, registry: Registry) -> str:
    """Where a shipped record's fields come from, in words ("" for one-source data)."""
    names = registry.sources[0]
    full = registry.sources[-1]
    if record.origin == "both":
        return f"name and description as of {names.date}, other fields as of {full.date}"
    if record.origin == "current":
        return (
            f"name and description as of {names.date}; the shipped data has no registrant "
            "or dates for it: portprobe registry update reads them from IANA"
        )
    if record.origin == "2015":
        return f"every field as of {full.date}"
    return ""


def _registration_lines(
    transport: str, records: Sequence[Registration], registry: Registry
) -> list[str]:
    if not records:
        return [f"  {transport.upper()}: no IANA record"]
    # A named record outranks the unnamed ones around it (a 2015 "Unassigned" range
    # covering a port named since): those show only when nothing names the port.
    named = [record for record in records if record.service]
    lines = []
    for record in named or records:
        name = record.service or f"({record.status})"
        description = record.description.split("\n")[0] or "-"
        lines.append(f"  {transport.upper()}: {name} - {description}")
        facts = [
            f"registrant {registry.person(record.assignee)}" if record.assignee else "",
            f"registered {record.registered}" if record.registered else "",
            f"modified {record.modified}" if record.modified else "",
            f"reference {record.reference}" if record.reference else "",
        ]
        facts = [fact for fact in facts if fact]
        if facts:
            lines.append("       " + "; ".join(facts))
        if record.low != record.high:
            lines.append(f"       (the record covers {record.low}-{record.high})")
        if origin := _origin(record, registry):
            lines.append(f"       source: {origin}")
    return lines


def _guess(port: int, transport: str, registry: Registry) -> str:
    """The service a local listener most likely speaks, for the check by hand: what its
    names or customary uses say, when a command can ask it; else ""."""
    services: set[str] = set()
    for record in registry.labels(port, transport):
        services |= CONSISTENT_WITH.get(record.service, frozenset({record.service}))
    for use in customary_uses(port, transport):
        services |= use.services
    if "domain" in services:
        services.add("dns")
    return next((s for s in _CHECKABLE if s in services), "")


def _local_address(address: str) -> str:
    """Where to reach a listener bound to ``address`` from this machine."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "*": "127.0.0.1"}.get(address, address)


def build_card(
    port: int, registry: Registry, found: Sequence[Listener], hidden: bool, *, can_list: bool = True
) -> list[str]:
    """The card's lines for ``port`` (0-65535)."""
    lines = [f"Port {port}: {_RANGES[port_range(port)]}"]
    lines.append(f"IANA registry (dated {registry.date}):")
    for transport in ("tcp", "udp"):
        lines += _registration_lines(transport, registry.lookup(port, transport), registry)
    uses = [use for transport in ("tcp", "udp") for use in customary_uses(port, transport)]
    if uses:
        lines.append("Customary uses (documented, but not IANA's):")
        for use in uses:
            lines.append(f"  {use.transport.upper()}: {use.use}")
            lines.append(f"       source: {use.source}")
    kinds = {t: attestation(port, t, registry) for t in ("tcp", "udp")}
    for transport, kind in kinds.items():
        lines.append(f"Attestation ({transport}): {kind} - {ATTESTATION_MEANING[kind]}")
    if all(kind == "unassigned" for kind in kinds.values()):
        lines.append(f"Port {port} is unassigned: any traffic on it warrants scrutiny.")
    lines.append("Listening on this machine:")
    if not can_list:
        lines.append("  (this machine's sockets could not be read: run as root to see them)")
    elif not found:
        lines.append(f"  nothing on {port}/tcp or {port}/udp")
    for listener in found:
        owner = (
            f"pid {listener.pid} ({listener.process or '?'})" if listener.pid else "owner hidden"
        )
        lines.append(f"  {listener.protocol} {listener.address}:{listener.port}  {owner}")
    if hidden:
        lines.append(
            "  (some owners are hidden: without root, other users' processes are not shown)"
        )
    lines += [
        "Check by hand:",
        f"  ss -ltnup 'sport = :{port}'",
        f"  lsof -nP -i :{port}",
        f"  netstat -ltnup | grep ':{port} '",
    ]
    asked: set[str] = set()
    for listener in found:
        service = _guess(port, listener.protocol, registry)
        command = check_command(_local_address(listener.address), port, listener.protocol, service)
        if command not in asked:
            asked.add(command)
            lines.append(f"  {command}")
    return lines
