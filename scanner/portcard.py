"""``portprobe port N``: a short reference card for one port, as plain lines of text.

Rules: the card states what the IANA registry says (for TCP and UDP), how much that label
is worth (attestation), what listens on the port on this machine, and how to check by
hand. It makes no network traffic and never guesses: an unassigned port says so.
"""

from __future__ import annotations

from collections.abc import Sequence

from scanner.localinfo import Listener
from scanner.registry import Registration, Registry, attestation, port_range

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


def _person(raw: str) -> str:
    # IANA writes people as [First_Last]; show "First Last [First_Last]".
    name = raw.strip("[]").replace("_", " ")
    return f"{name} {raw}" if raw.startswith("[") else raw


def _registration_lines(transport: str, records: Sequence[Registration]) -> list[str]:
    if not records:
        return [f"  {transport.upper()}: no IANA record"]
    lines = []
    for record in records:
        name = record.service or f"({record.status})"
        lines.append(f"  {transport.upper()}: {name} - {record.description or '-'}")
        facts = [
            f"registrant {_person(record.assignee)}" if record.assignee else "",
            f"registered {record.registered}" if record.registered else "",
            f"modified {record.modified}" if record.modified else "",
            f"reference {record.reference}" if record.reference else "",
        ]
        facts = [fact for fact in facts if fact]
        if facts:
            lines.append("       " + "; ".join(facts))
        if record.low != record.high:
            lines.append(f"       (the record covers {record.low}-{record.high})")
    return lines


def build_card(
    port: int, registry: Registry, found: Sequence[Listener], hidden: bool, *, can_list: bool = True
) -> list[str]:
    """The card's lines for ``port`` (0-65535)."""
    lines = [f"Port {port}: {_RANGES[port_range(port)]}"]
    lines.append("IANA registry:")
    for transport in ("tcp", "udp"):
        lines += _registration_lines(transport, registry.lookup(port, transport))
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
    return lines
