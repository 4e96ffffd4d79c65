"""What a scan found, in counts: the "Not shown" line, hosts up, and unreachable hosts.

Rules:
- Memory stays independent of the number of ports: counters by state and reason, the set
  of hosts that answered, and per-host counts only for hosts that reported unreachable.
- A host is *unreachable* when every port probed on it ended with an unreachable reason
  (no route, host or net unreachable); such hosts are reported one by one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from scanner.models import ClosedPorts, PortState, Reason, Result

UNREACHABLE = frozenset({Reason.HOST_UNREACH, Reason.NET_UNREACH})
_ANSWERED = frozenset({PortState.OPEN, PortState.CLOSED})


@dataclass(slots=True)
class Summary:
    """Counters fed with every result of a scan (:meth:`add`)."""

    ports_per_host: int = 0
    states: Counter[PortState] = field(default_factory=Counter)
    reasons: Counter[tuple[PortState, Reason]] = field(default_factory=Counter)
    hosts_answered: set[str] = field(default_factory=set)
    _unreachable: Counter[str] = field(default_factory=Counter)
    _unreach_reason: dict[str, Reason] = field(default_factory=dict)

    def add(self, result: Result) -> None:
        """Count one result."""
        self.states[result.state] += 1
        self.reasons[result.state, result.reason] += 1
        if result.state in _ANSWERED:
            self.hosts_answered.add(result.host)
        elif result.reason in UNREACHABLE:
            self._unreachable[result.host] += 1
            self._unreach_reason[result.host] = result.reason

    def add_closed(self, block: ClosedPorts) -> None:
        """Count a block of closed ports (as :meth:`add` counts each of its results)."""
        count = len(block)
        if count:
            self.states[PortState.CLOSED] += count
            self.reasons[PortState.CLOSED, block.reason] += count
            self.hosts_answered.add(block.host)

    @property
    def total(self) -> int:
        """How many results were counted."""
        return sum(self.states.values())

    def unreachable_hosts(self) -> list[tuple[str, Reason]]:
        """Hosts on which every probed port was unreachable, with the last reason seen."""
        full = self.ports_per_host
        return [
            (host, self._unreach_reason[host])
            for host, count in self._unreachable.items()
            if full and count >= full and host not in self.hosts_answered
        ]

    def not_shown(self, shown: frozenset[PortState]) -> str:
        """nmap's line for what the table leaves out, e.g. ``Not shown: 65528 closed, 2 filtered``.

        Empty when nothing was left out.
        """
        parts = [
            f"{count} {state.value}"
            for state, count in sorted(self.states.items(), key=lambda kv: -kv[1])
            if state not in shown and count
        ]
        return "Not shown: " + ", ".join(parts) if parts else ""

    def as_dict(self) -> dict[str, object]:
        """The summary as plain data, for JSON reports."""
        return {
            "results": self.total,
            "states": {state.value: n for state, n in sorted(self.states.items())},
            "reasons": {
                f"{state.value}/{reason.value}": n
                for (state, reason), n in sorted(self.reasons.items())
            },
            "hosts_answered": len(self.hosts_answered),
            "unreachable_hosts": [
                {"host": host, "reason": reason.value} for host, reason in self.unreachable_hosts()
            ],
        }
