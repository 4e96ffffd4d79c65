"""What a report probed: the record that lets ``diff`` and ``--resume`` tell "closed" from
"never probed".

Rules:
- A report lists the ports worth listing (open, filtered, ...; closed ones only with
  ``--all``, or folded into nmap's ``<extraports>``). A port it does not list was either
  probed and closed, or never probed (an interrupted scan, another port list, another
  shard). Only a record of what was probed tells them apart; without one, a reader may
  trust nothing but the ports listed.
- The writer side, :class:`ProbedLog`, is fed every result (listed or not) and writes, in
  the closing record of JSON and JSON Lines reports::

      "probed": {"complete_hosts": ["198.18.0.0/30", ...],
                 "unlisted": {"198.18.0.9": {"closed": "T:1-21,23-30"}}}

  A *complete* host got every port of the scan's list (``ports`` in the scan record):
  the ports of it not listed were closed. Other hosts (an interrupted scan, a shard) name
  their unlisted ports, by state. Complete hosts are kept as collapsed networks, so a
  whole /16 costs a line, and unlisted ports only until their host completes.
- nmap's XML says the same with ``<extrareasons ports=...>``; the reader turns either
  into a :class:`Coverage`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from scanner.errors import PortSpecError
from scanner.models import ClosedPorts, Port, PortState, Reason, Result
from scanner.ports import format_port_spec, parse_port_spec

__all__ = ["Coverage", "ProbedLog", "collapse_hosts", "ports_of_spec", "whole_scan"]

Key = tuple[str, str, int]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def ports_of_spec(spec: object) -> frozenset[Port] | None:
    """The ports of a spec written by portprobe (``T:22,U:53``); None if it is not one."""
    if not isinstance(spec, str) or not spec:
        return None
    try:
        return frozenset(parse_port_spec(spec))
    except PortSpecError:
        return None


def collapse_hosts(hosts: Iterable[str]) -> list[str]:
    """Addresses as the fewest networks that hold exactly them (IPv4 first)."""
    v4: list[ipaddress.IPv4Network] = []
    v6: list[ipaddress.IPv6Network] = []
    for host in hosts:
        network = ipaddress.ip_network(host)
        if isinstance(network, ipaddress.IPv4Network):
            v4.append(network)
        else:
            v6.append(network)
    collapsed: list[Network] = [
        *ipaddress.collapse_addresses(v4),
        *ipaddress.collapse_addresses(v6),
    ]
    return [str(n.network_address) if n.num_addresses == 1 else str(n) for n in collapsed]


def whole_scan(shard: str) -> bool:
    """Whether a report's shard text (``1/1``, or ``1/3,2/3,3/3`` for merged shards) covers
    the whole scan: then every host gets a result for every port."""
    parts = shard.split(",")
    counts = {part.partition("/")[2] for part in parts}
    if len(counts) != 1:
        return False
    total = counts.pop()
    return total.isdigit() and sorted(parts) == sorted(
        f"{k}/{total}" for k in range(1, int(total) + 1)
    )


class ProbedLog:
    """Counts every result a report writer sees, for the ``probed`` record.

    ``ports`` is the scan's port list; ``whole`` says that every host gets all of them
    (a scan that is not a shard), so a host is complete once it has that many results.
    """

    def __init__(self, ports: frozenset[Port] | None, *, whole: bool) -> None:
        self._size = len(ports) if ports and whole else 0
        self._count: dict[str, int] = {}
        self._unlisted: dict[str, dict[str, list[Port]]] = {}
        self._complete: set[str] = set()

    def _counted(self, host: str) -> None:
        count = self._count.get(host, 0) + 1
        if self._size and count == self._size:
            self._complete.add(host)
            self._count.pop(host, None)
            self._unlisted.pop(host, None)  # implied: every port not listed was closed
        else:
            self._count[host] = count

    def listed(self, result: Result) -> None:
        """Count a result the report lists."""
        self._counted(result.host)

    def unlisted(self, result: Result) -> None:
        """Count a result the report leaves out (a closed port, without ``--all``)."""
        by_state = self._unlisted.setdefault(result.host, {})
        by_state.setdefault(result.state.value, []).append(Port(result.protocol, result.port))
        self._counted(result.host)

    def unlisted_closed(self, block: ClosedPorts) -> None:
        """Count a block of closed ports the report leaves out (as :meth:`unlisted` each
        of its results, in bulk)."""
        host, ports, start = block.host, block.ports, 0
        make, key, state = tuple.__new__, block.protocol, PortState.CLOSED.value
        while start < len(ports):
            count = self._count.get(host, 0)
            # Up to the port that completes the host, if one does (a whole scan's host is
            # complete at its last port; a port counted again starts the count anew).
            end = len(ports) if not self._size else min(len(ports), start + self._size - count)
            by_state = self._unlisted.setdefault(host, {})
            by_state.setdefault(state, []).extend(
                [make(Port, (key, number)) for number in ports[start:end]]
            )
            count += end - start
            if self._size and count == self._size:
                self._complete.add(host)
                self._count.pop(host, None)
                self._unlisted.pop(host, None)
            else:
                self._count[host] = count
            start = end

    def as_dict(self) -> dict[str, Any]:
        """The ``probed`` record (see the module rules)."""
        return {
            "complete_hosts": collapse_hosts(self._complete),
            "unlisted": {
                host: {state: format_port_spec(ports) for state, ports in states.items()}
                for host, states in self._unlisted.items()
            },
        }


@dataclass(slots=True)
class Coverage:
    """What a report read back says was probed, beyond the ports it lists.

    ``ports`` is the scan's port list (None when the report does not say). ``exact`` is
    False when the report has no record of what it probed (CSV, older reports, an
    interrupted scan without one): then only its listed ports count as probed.
    ``complete`` holds the networks whose hosts got every port of ``ports``;
    ``unlisted`` the other ports probed and not listed, with their state.
    """

    ports: frozenset[Port] | None = None
    exact: bool = False
    complete: list[Network] = field(default_factory=list)
    unlisted: dict[str, dict[Port, PortState]] = field(default_factory=dict)
    _complete_cache: dict[str, bool] = field(default_factory=dict)

    def host_complete(self, host: str) -> bool:
        """Whether ``host`` got every port of the scan's list."""
        known = self._complete_cache.get(host)
        if known is None:
            address = ipaddress.ip_address(host)
            known = any(address in network for network in self.complete)
            self._complete_cache[host] = known
        return known

    def unlisted_state(self, host: str, port: Port) -> PortState | None:
        """The state of a probed port the report does not list; None if it was not probed."""
        state = self.unlisted.get(host, {}).get(port)
        if state is not None:
            return state
        if self.ports is not None and port in self.ports and self.host_complete(host):
            return PortState.CLOSED
        return None

    def probed(self, host: str, port: Port) -> bool:
        """Whether the report says ``port`` of ``host`` was probed, without listing it."""
        return self.unlisted_state(host, port) is not None

    def unlisted_results(self, listed: Iterable[Result]) -> list[Result]:
        """The closed ports probed and not listed (``listed`` are the report's results), as
        results without RTT or time: what a merge or a resumed scan carries over."""
        return list(self.closed_unlisted({(r.host, r.protocol.value, r.port) for r in listed}))

    def closed_unlisted(self, listed: Container[Key]) -> Iterator[Result]:
        """As :meth:`unlisted_results`, one by one, given the keys the report lists (a
        set, or a :class:`~scanner.report.runs.KeySet` for a big report)."""

        def closed(host: str, port: Port) -> Result:
            return Result(host, port.number, port.protocol, PortState.CLOSED, Reason.CONN_REFUSED)

        for host, ports in self.unlisted.items():
            for port, state in ports.items():
                if state is PortState.CLOSED:
                    yield closed(host, port)
        if self.ports and self.complete:
            every = sorted(self.ports)
            for network in self.complete:
                for address in network:
                    host = str(address)
                    for port in every:
                        if (host, port.protocol.value, port.number) not in listed:
                            yield closed(host, port)

    def unlisted_keys(self) -> Iterator[Key]:
        """The (host, protocol, port) of every port named as probed and not listed."""
        for host, ports in self.unlisted.items():
            for port in ports:
                yield host, port.protocol.value, port.number

    @classmethod
    def from_record(cls, record: object, ports: frozenset[Port] | None) -> Coverage:
        """The coverage in a ``probed`` record (see the module rules); not exact if absent
        or malformed (a report is untrusted: a bad record is no record)."""
        if not isinstance(record, Mapping):
            return cls(ports)
        hosts, unlisted = record.get("complete_hosts"), record.get("unlisted")
        if not isinstance(hosts, list) or not isinstance(unlisted, Mapping):
            return cls(ports)
        try:
            complete = [ipaddress.ip_network(h) for h in hosts if isinstance(h, str)]
            named: dict[str, dict[Port, PortState]] = {}
            for host, states in unlisted.items():
                address = str(ipaddress.ip_address(host))
                if not isinstance(states, Mapping):
                    return cls(ports)
                for state, spec in states.items():
                    found = ports_of_spec(spec)
                    if found is None:
                        return cls(ports)
                    for port in found:
                        named.setdefault(address, {})[port] = PortState(state)
        except ValueError:  # a bad address or state name
            return cls(ports)
        if len(complete) != len(hosts):
            return cls(ports)
        return cls(ports, True, complete, named)
