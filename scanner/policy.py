"""Policies (``--expect FILE``): which host/port/protocol combinations may be open.

The format, one rule a line (``policy.example.txt`` at the top of the repository)::

    # comments start with '#'; blank lines are ignored
    198.18.0.2          22, 80, 443          # an address; ports and ranges, TCP by default
    198.18.0.0/24       53/udp, 123/udp      # a CIDR block; /udp for UDP ports
    198.18.0.10-20      8000-8100/tcp        # an nmap-style range
    2001:db8::/64       22
    *                   22/tcp               # '*' is any host

Rules:
- HOSTS is an address, a CIDR block, an nmap-style octet range or ``*``. Host names are
  refused: a policy is checked against addresses, without resolving anything.
- PORTS is one or more items separated by commas or spaces, each ``N`` or ``N-M``
  (1-65535), with an optional ``/tcp`` or ``/udp`` (default ``tcp``).
- A port is allowed when any rule names its host, protocol and port; an open port that no
  rule allows is a *violation*. Closed and filtered ports are not judged.
- Every fault is one :class:`~scanner.errors.PolicyError` naming ``FILE:LINE``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import reprlib
import socket
from dataclasses import dataclass

from scanner.errors import PolicyError, UsageError
from scanner.models import Assessment, Judgement, PortState, Proto, Result
from scanner.ports import parse_ports
from scanner.safeio import read_bounded
from scanner.targets import parse_network

__all__ = ["ALLOWED", "VIOLATION", "Policy", "Rule", "parse_policy", "read_policy"]

ALLOWED = Judgement.ALLOWED
VIOLATION = Judgement.VIOLATION

_repr = reprlib.Repr()
_repr.maxstring = 60


@dataclass(frozen=True, slots=True)
class Rule:
    """One allowed combination: hosts (``family`` None means any host), a protocol, ports."""

    family: int | None
    intervals: tuple[tuple[int, int], ...]
    protocol: Proto
    ports: frozenset[int]
    line: int

    def allows(self, family: int, address: int, protocol: Proto, port: int) -> bool:
        """Whether this rule names the address, protocol and port."""
        if protocol is not self.protocol or port not in self.ports:
            return False
        if self.family is None:
            return True
        return family == self.family and any(a <= address <= b for a, b in self.intervals)


@dataclass(frozen=True, slots=True)
class Policy:
    """The rules of a policy file; ``judge`` says whether a result is allowed."""

    rules: tuple[Rule, ...]
    source: str

    def allows(self, host: str, protocol: Proto, port: int) -> bool:
        """Whether any rule allows ``port``/``protocol`` on ``host`` (an address)."""
        address = ipaddress.ip_address(host)
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        value = int(address)
        return any(rule.allows(family, value, protocol, port) for rule in self.rules)

    def judge(self, result: Result) -> Judgement | None:
        """``allowed`` or ``violation`` for an open port; None for any other state."""
        if result.state is not PortState.OPEN:
            return None
        return ALLOWED if self.allows(result.host, result.protocol, result.port) else VIOLATION

    def mark(self, result: Result) -> Result:
        """``result`` with its assessment's ``policy`` set by :meth:`judge`."""
        judged = self.judge(result)
        if judged is None:
            return result
        assessment = result.assessment if result.assessment is not None else Assessment()
        return dataclasses.replace(
            result, assessment=dataclasses.replace(assessment, policy=judged)
        )


#: The largest policy file read (``--expect``).
MAX_POLICY_FILE = 16 * 1024 * 1024


def read_policy(path: str) -> Policy:
    """Read and parse the policy file at ``path`` (at most :data:`MAX_POLICY_FILE` bytes,
    read as :func:`scanner.safeio.read_bounded` reads); PolicyError on any fault."""
    data = read_bounded(path, MAX_POLICY_FILE, lambda message: PolicyError(f"{path}: {message}"))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PolicyError(f"{path}:{line}: not UTF-8 text") from None
    return parse_policy(text, path)


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Parse policy ``text`` (see the module docstring); ``source`` names it in messages."""
    rules: list[Rule] = []
    for number, line in enumerate(text.split("\n"), start=1):
        words = line.partition("#")[0].split()
        if not words:
            continue
        try:
            rules.extend(_rules(words, number))
        except UsageError as exc:
            raise PolicyError(f"{source}:{number}: {exc}") from None
    if not rules:
        raise PolicyError(f"{source}: no rules (nothing would be allowed; see policy.example.txt)")
    return Policy(tuple(rules), source)


def _rules(words: list[str], number: int) -> list[Rule]:
    hosts, items = words[0], " ".join(words[1:]).replace(",", " ").split()
    if not items:
        raise UsageError(f"no ports after {_repr.repr(hosts)} (a rule is: HOSTS PORTS)")
    family: int | None = None
    intervals: tuple[tuple[int, int], ...] = ()
    if hosts != "*":
        spec = parse_network(hosts)
        if spec.hostname is not None:
            raise UsageError(f"{_repr.repr(hosts)}: host names are not allowed, only addresses")
        family = spec.family
        intervals = spec.intervals
    by_protocol: dict[Proto, set[int]] = {}
    for item in items:
        ports, _, proto = item.partition("/")
        try:
            protocol = Proto(proto.lower()) if proto else Proto.TCP
        except ValueError:
            raise UsageError(f"unknown protocol {_repr.repr(proto)} (tcp or udp)") from None
        by_protocol.setdefault(protocol, set()).update(parse_ports(ports))
    return [
        Rule(family, intervals, protocol, frozenset(ports), number)
        for protocol, ports in by_protocol.items()
    ]
