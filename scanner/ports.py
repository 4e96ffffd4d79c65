"""Port specifications: nmap-style port lists, the shipped top-ports lists, compact formatting.

Rules:
- A spec is comma-separated items, each ``N``, ``N-M``, ``N-`` (to 65535), ``-M`` (from 1) or
  ``-`` (1-65535); whitespace around an item is ignored. Overlaps and duplicates merge; the
  result is always sorted and unique.
- A number is ASCII digits only (no sign, exponent or other scripts' digits), 1-65535.
- Every bad spec raises :class:`~scanner.errors.PortSpecError` with one line naming the item.
- Protocol prefixes, as in nmap: ``T:`` or ``U:`` before an item applies to it and to the
  items after it, up to the next prefix (``T:22,80,U:53,161``). Items before any prefix
  apply to every protocol the scan was asked for (:func:`parse_port_spec`). nmap's ``S:``
  (SCTP) and ``P:`` (IP protocols) are refused explicitly.
- The only I/O is reading the package's own data files, once per protocol.
"""

from __future__ import annotations

import functools
import importlib.resources
import itertools
import operator
import re
import reprlib
from collections.abc import Sequence

from scanner.errors import PortSpecError
from scanner.models import Port, Proto

__all__ = [
    "MAX_PORT",
    "MIN_PORT",
    "format_port_spec",
    "format_ports",
    "likely_open_first",
    "parse_port_spec",
    "parse_ports",
    "top_ports",
]

MIN_PORT = 1
MAX_PORT = 65535

_NUMBER = re.compile(r"[0-9]+")  # explicit class: ASCII digits only, unlike \d or str.isdigit
_PROTOCOL_PREFIX = re.compile(r"[A-Za-z]:")  # nmap's T:, U:, S:, P:
_PREFIXES = {"T": Proto.TCP, "U": Proto.UDP}
_UNSUPPORTED_PREFIXES = {"S": "SCTP", "P": "IP protocol"}

# Quotes user text in messages: one line (repr escapes newlines), bounded in length.
_repr = reprlib.Repr()
_repr.maxstring = 60


def parse_ports(spec: str) -> list[int]:
    """Parse an nmap-style port list such as ``"22,80,1000-2000"`` into sorted unique ports.

    ``"-"`` means every port (1-65535), ``"1000-"`` runs to 65535, ``"-1024"`` starts at 1.

    >>> parse_ports("80, 22,20-23")
    [20, 21, 22, 23, 80]

    Raises :class:`~scanner.errors.PortSpecError` naming the offending item.
    """
    if not spec.strip():
        raise PortSpecError("empty port specification")
    ranges: list[tuple[int, int]] = []
    for position, raw in enumerate(spec.split(","), start=1):
        item = raw.strip()
        if not item:
            raise PortSpecError(f"empty item #{position} in port list {_repr.repr(spec)}")
        if _PROTOCOL_PREFIX.match(item):
            raise PortSpecError(
                f"a protocol prefix (T:/U:) is not allowed here (in {_repr.repr(item)})"
            )
        ranges.append(_parse_item(item))
    return _merge(ranges)


def parse_port_spec(spec: str, protocols: Sequence[Proto] = (Proto.TCP,)) -> list[Port]:
    """Parse a port list that may carry nmap's ``T:``/``U:`` prefixes into sorted Ports.

    Items before any prefix are ports of every protocol in ``protocols``; an item after
    ``T:`` or ``U:`` is a port of that protocol only, as are the items after it up to the
    next prefix. TCP ports come first, each protocol's in ascending order.

    >>> [str(p) for p in parse_port_spec("22,U:53,T:80", [Proto.TCP])]
    ['22/tcp', '80/tcp', '53/udp']

    Raises :class:`~scanner.errors.PortSpecError` naming the offending item.
    """
    if not spec.strip():
        raise PortSpecError("empty port specification")
    by_protocol: dict[Proto, list[tuple[int, int]]] = {p: [] for p in Proto}
    current: Sequence[Proto] = protocols
    for position, raw in enumerate(spec.split(","), start=1):
        item = raw.strip()
        if _PROTOCOL_PREFIX.match(item):
            letter = item[0].upper()
            if letter not in _PREFIXES:
                name = _UNSUPPORTED_PREFIXES.get(letter)
                what = f"{name} scanning is not supported" if name else "unknown protocol prefix"
                raise PortSpecError(f"{what} (in {_repr.repr(item)}); use T: or U:")
            current = (_PREFIXES[letter],)
            item = item[2:].strip()
        if not item:
            raise PortSpecError(f"empty item #{position} in port list {_repr.repr(spec)}")
        low_high = _parse_item(item)
        for protocol in current:
            by_protocol[protocol].append(low_high)
    make = tuple.__new__  # (the namedtuple's own __new__ costs 10 ms more for -p-)
    return [make(Port, (p, n)) for p in Proto for n in _merge(by_protocol[p])]


def _merge(ranges: list[tuple[int, int]]) -> list[int]:
    """The sorted, unique ports of some inclusive ranges."""
    ranges.sort()
    ports: list[int] = []
    next_free = MIN_PORT  # ports below this are already in the result
    for low, high in ranges:
        start = max(low, next_free)
        if start <= high:
            ports.extend(range(start, high + 1))
            next_free = high + 1
    return ports


def _parse_item(item: str) -> tuple[int, int]:
    """One stripped, non-empty item of a port list as an inclusive (low, high) range."""
    if _PROTOCOL_PREFIX.match(item):
        raise PortSpecError(f"a protocol prefix must start an item (in {_repr.repr(item)})")
    if "-" not in item:
        port = _parse_number(item, item)
        return port, port
    low_text, _, high_text = item.partition("-")
    if "-" in high_text:
        raise PortSpecError(f"malformed port range {_repr.repr(item)}")
    low = _parse_number(low_text, item) if low_text else MIN_PORT
    high = _parse_number(high_text, item) if high_text else MAX_PORT
    if low > high:
        raise PortSpecError(f"reversed port range {_repr.repr(item)} ({low} > {high})")
    return low, high


def _parse_number(text: str, item: str) -> int:
    """A port number from ``text``, part of ``item`` (named in errors)."""
    if not _NUMBER.fullmatch(text):
        raise PortSpecError(f"{_repr.repr(item)} is not a port number or range")
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(MAX_PORT)) or not MIN_PORT <= int(digits) <= MAX_PORT:
        raise PortSpecError(
            f"port {_repr.repr(text)} in {_repr.repr(item)} is out of range {MIN_PORT}-{MAX_PORT}"
        )
    return int(digits)


def top_ports(n: int, protocol: Proto = Proto.TCP) -> list[int]:
    """The ``n`` most frequently open ports of ``protocol``, sorted ascending.

    The ports are the first ``n`` of the shipped list ``scanner/data/top-ports-<proto>.txt``
    (ordered most common first), but they are returned in ascending port order, not in the
    list's order: the scan planner randomises the probe order anyway. An ``n`` larger than
    the list gives the whole list. ``n`` below 1 raises :class:`~scanner.errors.PortSpecError`.
    """
    if n < 1:
        raise PortSpecError(f"the number of top ports must be at least 1, not {n}")
    return sorted(_top_list(protocol)[:n])


@functools.cache
def _top_list(protocol: Proto) -> tuple[int, ...]:
    """The shipped top-ports list of ``protocol``, most common first; read once."""
    name = f"top-ports-{protocol.value}.txt"
    text = (importlib.resources.files("scanner") / "data" / name).read_text(encoding="utf-8")
    ports: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not _NUMBER.fullmatch(line) or not MIN_PORT <= int(line) <= MAX_PORT:
            raise ValueError(f"scanner/data/{name}:{number}: not a port number: {line!r}")
        ports.append(int(line))
    if len(set(ports)) != len(ports):
        raise ValueError(f"scanner/data/{name}: a port is listed twice")
    return tuple(ports)


def likely_open_first(ports: Sequence[Port]) -> tuple[list[Port], int]:
    """``ports`` with the ones most likely open first, and how many those are.

    Likely open: a port of nmap's measured top-ports list of its protocol, or one with a
    named assignment in IANA's registry (the shipped snapshot). The scan probes these
    first on every host (``Plan``'s ``front``), so that the evidence of open ports is
    gathered while the sweep goes on rather than after it; nmap likewise moves its most
    common ports to the front. Each group keeps its given order (the plan shuffles it).
    """
    protocols = {port.protocol for port in ports}  # (a set of at most two)
    if len(protocols) == 1:  # one flag per port, in C loops
        (protocol,) = protocols
        flags = bytes(map(_likely_open(protocol).__getitem__, map(_number, ports)))
    else:  # a UDP port's number is offset past the TCP mask
        both = _likely_open(Proto.TCP) + _likely_open(Proto.UDP)
        offset = {Proto.TCP: 0, Proto.UDP: MAX_PORT + 1}
        flags = bytes(
            map(both.__getitem__, map(operator.add, map(offset.__getitem__, map(_proto, ports)),
                                       map(_number, ports)))
        )  # fmt: skip
    front = list(itertools.compress(ports, flags))
    if not front or len(front) == len(ports):
        return list(ports), 0
    rest = list(itertools.compress(ports, flags.translate(_NOT)))
    return front + rest, len(front)


_proto, _number = operator.itemgetter(0), operator.itemgetter(1)
_NOT = bytes([1, 0]) + bytes(254)  # flags.translate(_NOT): 0 <-> 1


@functools.cache
def _named_records() -> list[tuple[bytes, bytes, bytes]]:
    """(first port, last port or b"", transport) of the shipped registry's named records."""
    data = importlib.resources.files("scanner") / "data"
    return _NAMED_RECORD.findall((data / "iana-service-names-port-numbers.csv").read_bytes())


# A registry CSV record that starts with a service name: name, port or range, transport.
_NAMED_RECORD = re.compile(rb"^[^,\n\"]+,([0-9]+)(?:-([0-9]+))?,(tcp|udp|),", re.MULTILINE)


@functools.cache
def _likely_open(protocol: Proto) -> bytes:
    """One byte per port number 0-65535 of ``protocol``: 1 for nmap's top ports and IANA's
    named ports, else 0. Made once (about 12 ms).

    The registry's CSV is only scanned for its first three fields: parsing it whole
    (``scanner.registry``) takes 0.07 s, before the scan could start.
    """
    wanted = protocol.value.encode()
    mask = bytearray(MAX_PORT + 1)
    for port in _top_list(protocol):
        mask[port] = 1
    for low, high, transport in _named_records():
        if transport in (wanted, b""):
            first = max(int(low), MIN_PORT)
            last = min(int(high) if high else first, MAX_PORT)
            if first <= last:
                mask[first : last + 1] = b"\x01" * (last + 1 - first)
    return bytes(mask)


def format_ports(ports: Sequence[int]) -> str:
    """Ports in compact, sorted form with runs collapsed: ``[7, 1, 3, 4, 6]`` -> ``"1,3-4,6-7"``.

    Duplicates are ignored; an empty sequence gives ``""``. The result parses back with
    :func:`parse_ports` to the same ports.
    """
    items: list[str] = []
    unique = sorted(set(ports))
    if unique and unique[-1] - unique[0] == len(unique) - 1:  # one run (-p-, -p 1-1000)
        first, last = unique[0], unique[-1]
        return str(first) if first == last else f"{first}-{last}"
    index = 0
    while index < len(unique):
        start = end = unique[index]
        index += 1
        while index < len(unique) and unique[index] == end + 1:
            end = unique[index]
            index += 1
        items.append(str(start) if start == end else f"{start}-{end}")
    return ",".join(items)


def format_port_spec(ports: Sequence[Port]) -> str:
    """Ports of one or more protocols in compact form: ``"22,80"`` for TCP only, else with
    prefixes, ``"T:22,80,U:53"``. It parses back with :func:`parse_port_spec` (TCP default).
    """
    by_protocol = {p: [port.number for port in ports if port.protocol is p] for p in Proto}
    if not by_protocol[Proto.UDP]:
        return format_ports(by_protocol[Proto.TCP])
    letters = {Proto.TCP: "T", Proto.UDP: "U"}
    return ",".join(
        f"{letters[p]}:{format_ports(numbers)}" for p, numbers in by_protocol.items() if numbers
    )
