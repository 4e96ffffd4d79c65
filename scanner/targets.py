"""Targets: addresses, networks, octet ranges, hostnames and files, as lazy sets of hosts.

Rules:
- Nothing proportional to the number of hosts is ever built. A target is a few sorted,
  disjoint, inclusive integer intervals of one address family; a :class:`TargetSet` keeps
  such intervals (plus one single-address interval per hostname) and computes the host at an
  index by bisection, so a /8 or a /64 costs a few hundred bytes.
- Accepted: ``198.18.0.2``, ``2001:db8::2``, ``[2001:db8::2]``, ``198.18.0.0/28`` (host bits
  may be set, as in nmap), ``2001:db8::/124``, nmap octet ranges ``198.18.0-1.1-20``,
  ``198.18.0.*``, ``198.18.0.1,3,5``, and RFC 1123 hostnames.
- Guards: an IPv4 target of more than 2**24 addresses (a prefix shorter than /8) and an IPv6
  prefix shorter than /64 are refused, as is an octet range that would need more than
  ``MAX_SPEC_INTERVALS`` separate intervals. Exclusions are not size-guarded: they are only
  subtracted, never expanded.
- An IPv4-mapped IPv6 address (``::ffff:198.18.0.2``) is its IPv4 address everywhere (in
  targets, exclusions, networks within ``::ffff:0:0/96`` and resolver answers), so an
  exclusion of the IPv4 address excludes it and the IPv4 size guard applies
  (``::ffff:0.0.0.0/96`` is ``0.0.0.0/0``). An IPv6 network that straddles the mapped block
  is refused.
- A hostname is one host, its resolver's first address (as nmap does); an excluded hostname
  removes every address it resolves to. When an address is given both as a name and as an
  address, the host keeps the name (the first name given, if several).
- Every bad target raises :class:`~scanner.errors.TargetError` (``TargetFileError`` for a file)
  with a one-line message naming it.
- The only network activity is name resolution: ``getaddrinfo`` or a resolver the caller passes.
"""

from __future__ import annotations

import asyncio
import bisect
import ipaddress
import itertools
import math
import re
import reprlib
import socket
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from scanner.errors import TargetError, TargetFileError
from scanner.safeio import read_bounded

__all__ = [
    "MAX_IPV4_HOSTS",
    "MAX_SPEC_INTERVALS",
    "MAX_TARGETS_FILE",
    "MIN_IPV4_PREFIX",
    "MIN_IPV6_PREFIX",
    "RESOLVE_TIMEOUT",
    "Host",
    "Resolver",
    "TargetSet",
    "TargetSpec",
    "Unresolved",
    "build_targets",
    "parse_exclude_file",
    "parse_network",
    "parse_target",
    "read_targets_file",
]

MIN_IPV4_PREFIX = 8
MAX_IPV4_HOSTS = 2 ** (32 - MIN_IPV4_PREFIX)  # also caps octet ranges such as "198.*.*.*"
MIN_IPV6_PREFIX = 64
MAX_SPEC_INTERVALS = 2**16  # e.g. "198.*.*.1" is 65536 single-address intervals
RESOLVE_TIMEOUT = 5.0  # seconds per name
#: The largest targets or exclusions file read (``-iL``, ``--exclude-file``).
MAX_TARGETS_FILE = 64 * 1024 * 1024
# Names resolved at once. getaddrinfo runs in the loop's default thread pool (at least five
# threads); staying near its size keeps a name's timeout from being spent waiting in its queue.
_RESOLVE_CONCURRENCY = 8

Resolver = Callable[[str], Awaitable[list[str]]]
"""Resolves a hostname to its addresses as text, preferred first; raises OSError on failure."""

_BITS = {socket.AF_INET: 32, socket.AF_INET6: 128}
_OCTET_TARGET = re.compile(r"[0-9*,-]+(?:\.[0-9*,-]+){3}")
_OCTET_ITEM = re.compile(r"([0-9]+)(?:-([0-9]+))?")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")  # ASCII only: no re.I, no \w
_PREFIX_LENGTH = re.compile(r"[0-9]{1,3}")

_Interval = tuple[int, int]  # inclusive first and last address, as integers

# Quotes user text in messages: one line (repr escapes newlines), bounded in length.
_repr = reprlib.Repr()
_repr.maxstring = 80


@dataclass(frozen=True, slots=True)
class Host:
    """One scanned address.

    ``address`` is the canonical text form (``str()`` of an :mod:`ipaddress` address),
    ``family`` is ``socket.AF_INET`` or ``socket.AF_INET6``, and ``hostname`` is the name the
    user gave for it, if any.
    """

    address: str
    family: int
    hostname: str | None = None


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """One validated target: either address intervals of one family, or a name to resolve.

    For an address, network or octet range, ``family`` is ``socket.AF_INET`` or
    ``socket.AF_INET6`` and ``intervals`` holds sorted, disjoint, non-adjacent inclusive
    ``(first, last)`` integer ranges (one, except for non-contiguous octet ranges); ``hostname``
    is None. For a hostname, ``hostname`` is the name, ``family`` is None and ``intervals`` is
    empty. ``text`` is the target as given, without surrounding whitespace.
    """

    text: str
    family: int | None = None
    intervals: tuple[_Interval, ...] = ()
    hostname: str | None = None

    @property
    def size(self) -> int:
        """How many addresses the target names (0 for a hostname, before resolution)."""
        return sum(last - first + 1 for first, last in self.intervals)


@dataclass(frozen=True, slots=True)
class Unresolved:
    """A target hostname left out of the scan because it did not resolve, and why."""

    name: str
    reason: str


def parse_target(text: str) -> TargetSpec:
    """Validate one target and return what it names, without resolving or expanding it.

    Raises :class:`~scanner.errors.TargetError` with a one-line message naming ``text``.
    """
    return _parse(text, guard=True)


def parse_network(text: str) -> TargetSpec:
    """:func:`parse_target` without the size guards: for exclusions and policies, where a
    large block (even ``0.0.0.0/0``) costs nothing because it is never expanded."""
    return _parse(text, guard=False)


def _parse(text: str, *, guard: bool) -> TargetSpec:
    """:func:`parse_target`, with the size guards on or off (off for exclusions)."""
    stripped = text.strip()
    if not stripped:
        raise TargetError("empty target")
    if "://" in stripped:
        raise _bad(text, "a URL is not a target; give the host name or address")
    if "%" in stripped:
        raise _bad(text, "IPv6 zone ids (%...) are not supported")
    if stripped.startswith("[") or stripped.endswith("]"):
        inner = stripped[1:-1] if stripped[:1] + stripped[-1:] == "[]" else ""
        address = _ip(inner) if ":" in inner else None
        if address is None:
            raise _bad(text, "brackets must enclose exactly one IPv6 address")
        return _single(stripped, address)
    if "/" in stripped:
        return _parse_network(text, stripped, guard=guard)
    address = _ip(stripped)
    if address is not None:
        return _single(stripped, address)
    if ":" in stripped:
        raise _bad(text, "not a valid IPv6 address")
    if _OCTET_TARGET.fullmatch(stripped):
        return _parse_octets(text, stripped, guard=guard)
    problem = _hostname_problem(stripped)
    if problem is not None:
        raise _bad(text, f"not an address, network, range or valid hostname ({problem})")
    return TargetSpec(text=stripped, hostname=stripped)


def _bad(text: str, reason: str) -> TargetError:
    """The error for target ``text``, which is wrong because of ``reason``."""
    return TargetError(f"invalid target {_repr.repr(text.strip())}: {reason}")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``text`` as an IP address (an IPv4-mapped one as IPv4), or None if it is not one."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return _unmapped(address)


def _unmapped(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``address``, or the IPv4 address an IPv4-mapped IPv6 address stands for."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _family(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    """The socket family of ``address``."""
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


def _single(text: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> TargetSpec:
    """The target naming just ``address``."""
    value = int(address)
    return TargetSpec(text=text, family=_family(address), intervals=((value, value),))


def _parse_network(text: str, stripped: str, *, guard: bool) -> TargetSpec:
    """An ``address/prefix`` target; host bits may be set (198.18.0.5/30 is .4 to .7)."""
    address_text, _, prefix_text = stripped.rpartition("/")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(
            address_text
        )
    except ValueError:
        address = None
    if address is None:
        if address_text and _hostname_problem(address_text) is None:
            raise _bad(text, "a hostname cannot take a /prefix; give an address/prefix")
        raise _bad(text, f"{_repr.repr(address_text)} before the '/' is not an IP address")
    if not _PREFIX_LENGTH.fullmatch(prefix_text):
        raise _bad(text, f"{_repr.repr(prefix_text)} is not a prefix length")
    prefix = int(prefix_text)
    bits = address.max_prefixlen
    if prefix > bits:
        raise _bad(text, f"prefix length /{prefix} is out of range for IPv{address.version}")
    if isinstance(address, ipaddress.IPv6Address):
        network = ipaddress.IPv6Network((address, prefix), strict=False)
        if prefix >= 96 and network.subnet_of(_MAPPED):  # an IPv4 network, written in IPv6
            address, prefix, bits = _unmapped(address), prefix - 96, 32
        elif network.overlaps(_MAPPED):
            raise _bad(text, "it straddles the IPv4-mapped block ::ffff:0:0/96; give IPv4")
    smallest = MIN_IPV4_PREFIX if address.version == 4 else MIN_IPV6_PREFIX
    if guard and prefix < smallest:
        raise _bad(
            text,
            f"/{prefix} is too large to scan (the largest IPv{address.version} network "
            f"is a /{smallest})",
        )
    host_mask = (1 << (bits - prefix)) - 1
    first = int(address) & ~host_mask
    return TargetSpec(
        text=stripped, family=_family(address), intervals=((first, first | host_mask),)
    )


def _parse_octets(text: str, stripped: str, *, guard: bool) -> TargetSpec:
    """An nmap octet-range target such as ``198.18.0-1.1-20``, ``198.18.0.*``, ``198.18.0.1,3``.

    Each octet is a set of values; the addresses are their product. Octets after the last
    one that is not ``0-255`` only widen each interval, so the interval count is the number
    of value combinations before that octet times its number of runs.
    """
    octets = [_octet_runs(text, part) for part in stripped.split(".")]
    counts = [sum(high - low + 1 for low, high in runs) for runs in octets]
    size = math.prod(counts)
    if guard and size > MAX_IPV4_HOSTS:
        raise _bad(text, f"{size} addresses is too many to scan (at most {MAX_IPV4_HOSTS}, a /8)")
    partial = [index for index, runs in enumerate(octets) if runs != [(0, 255)]]
    if not partial:
        return TargetSpec(text=stripped, family=socket.AF_INET, intervals=((0, 2**32 - 1),))
    last = partial[-1]
    interval_count = math.prod(counts[:last]) * len(octets[last])
    if interval_count > MAX_SPEC_INTERVALS:
        raise _bad(
            text,
            f"the range splits into {interval_count} separate intervals "
            f"(at most {MAX_SPEC_INTERVALS})",
        )
    scale = 1 << (8 * (3 - last))  # addresses per value of octet ``last``
    leading = [[v for low, high in runs for v in range(low, high + 1)] for runs in octets[:last]]
    intervals: list[_Interval] = []
    for values in itertools.product(*leading):
        base = sum(value << (8 * (3 - index)) for index, value in enumerate(values))
        intervals.extend(
            (base + low * scale, base + (high + 1) * scale - 1) for low, high in octets[last]
        )
    return TargetSpec(text=stripped, family=socket.AF_INET, intervals=tuple(_merge(intervals)))


def _octet_runs(text: str, part: str) -> list[_Interval]:
    """One octet of an octet-range target as merged runs of values: ``1-3,5`` -> [(1,3),(5,5)]."""
    runs: list[_Interval] = []
    for item in part.split(","):
        if item == "*":
            runs.append((0, 255))
            continue
        match = _OCTET_ITEM.fullmatch(item)
        if match is None:
            raise _bad(text, f"{_repr.repr(item)} is not an octet, octet range or '*'")
        low = _octet_value(text, match.group(1))
        high = low if match.group(2) is None else _octet_value(text, match.group(2))
        if low > high:
            raise _bad(text, f"reversed octet range {item}")
        runs.append((low, high))
    return _merge(runs)


def _octet_value(text: str, digits: str) -> int:
    """One decimal octet value of target ``text``."""
    if len(digits) > 1 and digits.startswith("0"):
        raise _bad(text, f"leading zeros are ambiguous in octet {_repr.repr(digits)}")
    if len(digits) > 3 or int(digits) > 255:
        raise _bad(text, f"octet {_repr.repr(digits)} is out of range 0-255")
    return int(digits)


def _hostname_problem(name: str) -> str | None:
    """Why ``name`` is not an RFC 1123 hostname, or None if it is one (one trailing dot allowed)."""
    if name.endswith("."):
        name = name[:-1]
    if not name:
        return "empty name"
    if len(name) > 253:
        return "longer than 253 characters"
    labels = name.split(".")
    for label in labels:
        if not label:
            return "empty label"
        if len(label) > 63:
            return f"label {_repr.repr(label)} is longer than 63 characters"
        if not _LABEL.fullmatch(label):
            if label.startswith("-") or label.endswith("-"):
                return f"label {_repr.repr(label)} starts or ends with a hyphen"
            return f"label {_repr.repr(label)} has a character other than a-z, 0-9 and '-'"
    if labels[-1].isdigit():
        return "the last label is all digits"
    return None


def _merge(intervals: Iterable[_Interval]) -> list[_Interval]:
    """Intervals sorted, with overlapping and adjacent ones joined."""
    merged: list[_Interval] = []
    for first, last in sorted(intervals):
        if merged and first <= merged[-1][1] + 1:
            if last > merged[-1][1]:
                merged[-1] = (merged[-1][0], last)
        else:
            merged.append((first, last))
    return merged


def _subtract(keep: Sequence[_Interval], remove: Sequence[_Interval]) -> list[_Interval]:
    """``keep`` minus ``remove``; both sorted and disjoint. Linear in their lengths."""
    result: list[_Interval] = []
    start = 0  # the first interval of ``remove`` that may still overlap ``keep``
    for first, last in keep:
        while start < len(remove) and remove[start][1] < first:
            start += 1
        current = first
        index = start
        while current <= last and index < len(remove) and remove[index][0] <= last:
            gone_first, gone_last = remove[index]
            if gone_first > current:
                result.append((current, gone_first - 1))
            current = max(current, gone_last + 1)
            index += 1
        if current <= last:
            result.append((current, last))
    return result


def _address_value(text: str) -> tuple[int, int]:
    """The family and integer value of address ``text``; ValueError if it is not one."""
    address = _unmapped(ipaddress.ip_address(text))
    return _family(address), int(address)


class TargetSet:
    """Disjoint sorted intervals of addresses, indexable without expansion.

    Hosts are ordered ascending within each family, IPv4 first. Memory is O(number of
    intervals + number of hostnames); :meth:`host` is O(log number of intervals).

    ``include`` and ``exclude`` are parsed targets; hostnames among them are looked up in
    ``resolved`` (name -> addresses as text, preferred first): an included name is its first
    address, an excluded name all of its addresses. A name missing from ``resolved`` (or
    mapped to no address) is a ValueError: :func:`build_targets` resolves names, reports the
    failures and leaves them out before it builds the set.
    """

    __slots__ = ("_ends", "_families", "_firsts", "_names", "_size", "_v4_size")

    def __init__(
        self,
        include: Iterable[TargetSpec] = (),
        *,
        exclude: Iterable[TargetSpec] = (),
        resolved: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        names = resolved if resolved is not None else {}
        plain: dict[int, list[_Interval]] = {family: [] for family in _BITS}
        named: dict[int, dict[int, str]] = {family: {} for family in _BITS}
        removed: dict[int, list[_Interval]] = {family: [] for family in _BITS}
        for spec in include:
            if spec.hostname is None:
                plain[_spec_family(spec)].extend(spec.intervals)
            else:
                family, value = _address_value(_addresses_of(spec.hostname, names)[0])
                named[family].setdefault(value, spec.hostname)  # the first name given wins
        for spec in exclude:
            if spec.hostname is None:
                removed[_spec_family(spec)].extend(spec.intervals)
            else:
                for text in _addresses_of(spec.hostname, names):
                    family, value = _address_value(text)
                    removed[family].append((value, value))

        self._firsts: list[int] = []
        self._ends: list[int] = []  # _ends[i]: hosts in intervals 0..i, i.e. index after i's last
        self._names: list[str | None] = []
        self._families: list[int] = []
        self._size = 0
        self._v4_size = 0
        for family in _BITS:  # AF_INET first
            gone = _merge(removed[family])
            points = _subtract([(value, value) for value in sorted(named[family])], gone)
            ranges = _subtract(_subtract(_merge(plain[family]), gone), points)
            rows: list[tuple[int, int, str | None]] = [
                (first, last, None) for first, last in ranges
            ]
            rows += [(value, value, named[family][value]) for value, _ in points]
            rows.sort(key=lambda row: row[0])
            for first, last, name in rows:
                self._size += last - first + 1
                self._firsts.append(first)
                self._ends.append(self._size)
                self._names.append(name)
                self._families.append(family)
            if family == socket.AF_INET:
                self._v4_size = self._size

    @property
    def size(self) -> int:
        """The number of hosts, exact even beyond ``sys.maxsize`` (a /64 has 2**64)."""
        return self._size

    def __len__(self) -> int:
        """The number of hosts; OverflowError above ``sys.maxsize`` (use :attr:`size`)."""
        if self._size > sys.maxsize:
            raise OverflowError(f"{self._size} hosts do not fit len(); use TargetSet.size")
        return self._size

    def __bool__(self) -> bool:
        """Whether there is any host."""
        return self._size > 0

    def host(self, index: int) -> Host:
        """The host at ``index`` (0 <= index < size): O(log number of intervals).

        Negative indexes are not counted from the end: they raise IndexError, like any index
        outside the set.
        """
        if not 0 <= index < self._size:
            raise IndexError(f"host index {index} out of range 0-{self._size - 1}")
        position = bisect.bisect_right(self._ends, index)
        before = self._ends[position - 1] if position else 0
        value = self._firsts[position] + index - before
        family = self._families[position]
        if family == socket.AF_INET:
            address = str(ipaddress.IPv4Address(value))
        else:
            address = str(ipaddress.IPv6Address(value))
        return Host(address, family, self._names[position])

    def __contains__(self, address: object) -> bool:
        """Whether IP address text ``address`` is one of the hosts: O(log intervals)."""
        if not isinstance(address, str):
            return False
        found = _ip(address)
        if found is None:
            return False
        family, value = _family(found), int(found)
        # IPv4's intervals come first, IPv6's after, each family's sorted by address.
        low = bisect.bisect_left(self._families, family)
        high = bisect.bisect_right(self._families, family)
        position = bisect.bisect_right(self._firsts, value, low, high) - 1
        if position < low:
            return False
        count = self._ends[position] - (self._ends[position - 1] if position else 0)
        return value < self._firsts[position] + count

    def address_family(self, index: int) -> int:
        """The family of the host at ``index`` (``socket.AF_INET`` or ``AF_INET6``), in O(1)."""
        if not 0 <= index < self._size:
            raise IndexError(f"host index {index} out of range 0-{self._size - 1}")
        return socket.AF_INET if index < self._v4_size else socket.AF_INET6

    def __iter__(self) -> Iterator[Host]:
        """Every host in index order, computed one at a time."""
        for family, first, last, name in self.intervals():
            make = ipaddress.IPv4Address if family == socket.AF_INET else ipaddress.IPv6Address
            for value in range(first, last + 1):
                yield Host(str(make(value)), family, name)

    def intervals(self) -> Iterator[tuple[int, int, int, str | None]]:
        """The set as ``(family, first, last, hostname)`` intervals, in index order.

        A hostname's interval is always its single address; other intervals have no name.
        """
        start = 0
        rows = zip(self._families, self._firsts, self._ends, self._names, strict=True)
        for family, first, end, name in rows:
            yield family, first, first + end - start - 1, name
            start = end

    def __repr__(self) -> str:
        return f"<TargetSet: {self._size} hosts in {len(self._ends)} intervals>"


def _spec_family(spec: TargetSpec) -> int:
    """The family of an address target (never called for a hostname)."""
    if spec.family is None or spec.family not in _BITS:
        raise ValueError(f"target {spec.text!r} has no address family")
    return spec.family


def _addresses_of(name: str, resolved: Mapping[str, Sequence[str]]) -> Sequence[str]:
    """The resolved addresses of ``name``; ValueError if there are none."""
    addresses = resolved.get(name)
    if not addresses:
        raise ValueError(f"hostname {name!r} has no address in resolved")
    return addresses


def read_targets_file(path: str) -> list[str]:
    """The targets listed in file ``path`` (``"-"``: standard input), each validated.

    One or more whitespace-separated targets per line (as nmap's ``-iL``); ``#`` starts a
    comment, to the end of the line; blank lines are skipped. The file must be UTF-8 (a BOM
    is allowed) and at most :data:`MAX_TARGETS_FILE` bytes (a FIFO or device is read as
    :func:`scanner.safeio.read_bounded` reads it). Raises
    :class:`~scanner.errors.TargetFileError` naming the file, and the line number for a
    bad target.
    """
    return _read_file(path, guard=True)


def parse_exclude_file(path: str) -> list[str]:
    """The exclusions listed in file ``path``: the format of :func:`read_targets_file`.

    Unlike targets, exclusions are not size-guarded (excluding a /48 is fine).
    """
    return _read_file(path, guard=False)


def _read_file(path: str, *, guard: bool) -> list[str]:
    """:func:`read_targets_file` with the size guards on or off."""
    shown = "<stdin>" if path == "-" else path
    data = read_bounded(path, MAX_TARGETS_FILE, lambda reason: TargetFileError(reason, path=shown))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1  # the object lacks any BOM
        raise TargetFileError("not UTF-8 text", path=shown, line=line) from None
    targets: list[str] = []
    for number, line_text in enumerate(text.split("\n"), start=1):
        for word in line_text.partition("#")[0].split():
            try:
                _parse(word, guard=guard)
            except TargetError as exc:
                raise TargetFileError(str(exc), path=shown, line=number) from None
            targets.append(word)
    return targets


async def _system_resolve(name: str) -> list[str]:
    """``name``'s addresses from the system resolver (getaddrinfo), in its order."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def _resolve(
    name: str, resolver: Resolver, timeout: float, limit: asyncio.Semaphore
) -> list[str] | str:
    """``name``'s distinct canonical addresses, or why there are none (a one-line reason)."""
    async with limit:
        try:
            async with asyncio.timeout(timeout):
                answers = await resolver(name)
        except TimeoutError:
            return f"no answer within {timeout:g} s"
        except OSError as exc:
            return " ".join((exc.strerror or str(exc) or type(exc).__name__).split())
    addresses: list[str] = []
    for answer in answers:
        address = _ip(answer.partition("%")[0])  # a link-local answer may carry a zone id
        if address is None:
            return f"the resolver returned {_repr.repr(answer)}, which is not an address"
        if str(address) not in addresses:
            addresses.append(str(address))
    return addresses or "no addresses"


async def build_targets(
    targets: Iterable[str],
    *,
    exclude: Iterable[str] = (),
    resolver: Resolver | None = None,
    timeout: float = RESOLVE_TIMEOUT,
) -> tuple[TargetSet, list[Unresolved]]:
    """Validate, resolve and combine targets and exclusions into a :class:`TargetSet`.

    Every target and exclusion is validated first (TargetError on a bad one). Hostnames are
    then resolved concurrently with ``resolver`` (default: the system's getaddrinfo), each
    within ``timeout`` seconds. A target name that does not resolve becomes an
    :class:`Unresolved` and the others go on; an *excluded* name that does not resolve raises
    TargetError, because scanning without knowing what it excludes could reach a host the
    user meant to spare. Exclusions are subtracted; duplicates and overlaps merge.
    """
    include_specs = [parse_target(text) for text in targets]
    exclude_specs = [_parse(text, guard=False) for text in exclude]
    names = list(
        dict.fromkeys(
            spec.hostname for spec in include_specs + exclude_specs if spec.hostname is not None
        )
    )
    limit = asyncio.Semaphore(_RESOLVE_CONCURRENCY)
    answers = await asyncio.gather(
        *(_resolve(name, resolver or _system_resolve, timeout, limit) for name in names)
    )
    outcome = dict(zip(names, answers, strict=True))
    for spec in exclude_specs:
        reason = outcome.get(spec.hostname) if spec.hostname is not None else None
        if isinstance(reason, str):
            raise TargetError(
                f"excluded host {_repr.repr(spec.hostname)} did not resolve ({reason}); "
                "not scanning without knowing what it excludes"
            )
    unresolved: dict[str, Unresolved] = {}
    kept: list[TargetSpec] = []
    for spec in include_specs:
        result = outcome.get(spec.hostname) if spec.hostname is not None else None
        if isinstance(result, str) and spec.hostname is not None:
            unresolved.setdefault(spec.hostname, Unresolved(spec.hostname, result))
        else:
            kept.append(spec)
    resolved = {name: result for name, result in outcome.items() if isinstance(result, list)}
    return TargetSet(kept, exclude=exclude_specs, resolved=resolved), list(unresolved.values())
