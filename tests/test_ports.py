"""Tests of scanner.ports: port lists, top-ports lists and compact formatting."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.errors import PortSpecError
from scanner.models import Port, Proto
from scanner.ports import (
    MAX_PORT,
    format_port_spec,
    format_ports,
    parse_port_spec,
    parse_ports,
    top_ports,
)

ALL_PORTS = list(range(1, 65536))

ACCEPTED = [
    ("22", [22]),
    ("22,80", [22, 80]),
    ("80,22", [22, 80]),
    ("22,80,1000-1003", [22, 80, 1000, 1001, 1002, 1003]),
    (" 22 , 80 ", [22, 80]),
    ("\t22,\n80\n", [22, 80]),
    ("80,22,22,80", [22, 80]),
    ("1-3,2-5", [1, 2, 3, 4, 5]),
    ("4-5,1-3", [1, 2, 3, 4, 5]),
    ("10-12,11", [10, 11, 12]),
    ("5-5", [5]),
    ("1,65535", [1, 65535]),
    ("65533-", [65533, 65534, 65535]),
    ("-3", [1, 2, 3]),
    ("-3,65535-", [1, 2, 3, 65535]),
    ("-", ALL_PORTS),
    ("1-65535", ALL_PORTS),
    ("-,80", ALL_PORTS),
    ("080", [80]),
    ("00001-00002", [1, 2]),
]


@pytest.mark.parametrize(("spec", "expected"), ACCEPTED)
def test_parse_ports_accepts(spec: str, expected: list[int]) -> None:
    assert parse_ports(spec) == expected


REJECTED = [
    # (spec, a fragment the message must contain: the offending item)
    ("", "empty port specification"),
    ("   ", "empty port specification"),
    ("22,,80", "empty item #2"),
    ("22,", "empty item #2"),
    (",22", "empty item #1"),
    ("0", "'0'"),
    ("0-5", "'0-5'"),
    ("-0", "'-0'"),
    ("70000", "'70000'"),
    ("65536", "'65536'"),
    ("1-65536", "'1-65536'"),
    ("99999999999999999999999", "'99999999999999999999999'"),
    ("abc", "'abc'"),
    ("22,abc", "'abc'"),
    ("1e3", "'1e3'"),
    ("+5", "'+5'"),
    ("\u0663", "'\u0663'"),  # ARABIC-INDIC DIGIT THREE
    ("\uff18\uff10", "'\uff18\uff10'"),  # FULLWIDTH "80"
    ("5-1", "'5-1'"),
    ("--", "'--'"),
    ("1-2-3", "'1-2-3'"),
    ("1--", "'1--'"),
    ("1 2", "'1 2'"),
    ("1 -2", "'1 -2'"),
    ("0x50", "'0x50'"),
    ("T:80", "a protocol prefix (T:/U:) is not allowed here"),
    ("U:53,T:22", "a protocol prefix (T:/U:) is not allowed here"),
    ("22,u:53", "a protocol prefix (T:/U:) is not allowed here"),
]


@pytest.mark.parametrize(("spec", "fragment"), REJECTED)
def test_parse_ports_rejects(spec: str, fragment: str) -> None:
    with pytest.raises(PortSpecError) as caught:
        parse_ports(spec)
    message = str(caught.value)
    assert fragment in message
    assert "\n" not in message


def test_reversed_range_message_names_bounds() -> None:
    with pytest.raises(PortSpecError, match=r"reversed port range '5-1' \(5 > 1\)"):
        parse_ports("5-1")


def test_long_item_is_quoted_shortly() -> None:
    with pytest.raises(PortSpecError) as caught:
        parse_ports("x" * 10_000)
    assert len(str(caught.value)) < 200


# --- top_ports ----------------------------------------------------------------------------


def test_top_1000_tcp_structure() -> None:
    ports = top_ports(1000)
    assert len(ports) == 1000
    assert len(set(ports)) == 1000
    assert ports == sorted(ports)
    assert {22, 80, 443, 3389} <= set(ports)
    assert all(1 <= port <= MAX_PORT for port in ports)


def test_top_ports_first_is_http() -> None:
    assert top_ports(1) == [80]
    assert top_ports(1, Proto.TCP) == [80]


def test_top_ports_are_sorted_not_in_frequency_order() -> None:
    assert top_ports(3) == [23, 80, 443]  # the list starts 80, 23, 443


def test_top_ports_udp() -> None:
    ports = top_ports(100, Proto.UDP)
    assert len(ports) == len(set(ports)) == 100
    assert {53, 123, 161} <= set(ports)
    assert top_ports(1, Proto.UDP) == [631]


def test_top_ports_beyond_list_gives_whole_list() -> None:
    whole = top_ports(10**9)
    assert len(whole) == len(set(whole)) > 1000
    assert top_ports(len(whole)) == whole
    assert top_ports(len(whole) + 1) == whole


def test_top_ports_result_is_a_fresh_list() -> None:
    first = top_ports(5)
    first.append(1)
    assert top_ports(5) == [21, 22, 23, 80, 443]


@pytest.mark.parametrize("n", [0, -1, -1000])
def test_top_ports_rejects_n_below_one(n: int) -> None:
    with pytest.raises(PortSpecError, match="at least 1"):
        top_ports(n)


# --- format_ports -------------------------------------------------------------------------

FORMATTED = [
    ([], ""),
    ([1], "1"),
    ([1, 3, 4, 6, 7], "1,3-4,6-7"),
    ([7, 6, 4, 3, 1, 3], "1,3-4,6-7"),
    ([22, 80, 443], "22,80,443"),
    ([1, 2, 3], "1-3"),
    (ALL_PORTS, "1-65535"),
]


@pytest.mark.parametrize(("ports", "expected"), FORMATTED)
def test_format_ports(ports: list[int], expected: str) -> None:
    assert format_ports(ports) == expected


# --- properties ---------------------------------------------------------------------------

port_numbers = st.integers(min_value=1, max_value=MAX_PORT)
spaces = st.sampled_from(["", " ", "  ", "\t"])


@st.composite
def port_items(draw: st.DrawFn) -> tuple[str, range]:
    """One valid item of a port list and the ports it stands for."""
    kind = draw(st.sampled_from(["single", "range", "open-high", "open-low", "all"]))
    if kind == "single":
        port = draw(port_numbers)
        return str(port), range(port, port + 1)
    if kind == "range":
        low, high = sorted((draw(port_numbers), draw(port_numbers)))
        return f"{low}-{high}", range(low, high + 1)
    if kind == "open-high":
        low = draw(port_numbers)
        return f"{low}-", range(low, MAX_PORT + 1)
    if kind == "open-low":
        high = draw(port_numbers)
        return f"-{high}", range(1, high + 1)
    return "-", range(1, MAX_PORT + 1)


@st.composite
def port_specs(draw: st.DrawFn) -> tuple[str, set[int]]:
    """A valid port list and the set of ports it describes."""
    items = draw(st.lists(port_items(), min_size=1, max_size=8))
    expected: set[int] = set()
    texts = []
    for text, ports in items:
        expected.update(ports)
        texts.append(draw(spaces) + text + draw(spaces))
    return ",".join(texts), expected


@settings(deadline=None)
@given(port_specs())
def test_valid_specs_give_exactly_their_ports(case: tuple[str, set[int]]) -> None:
    spec, expected = case
    assert parse_ports(spec) == sorted(expected)


@given(st.one_of(st.text(), st.text(alphabet="0123456789-,: TUtu+e\u0663\t")))
def test_parse_ports_raises_only_port_spec_error(spec: str) -> None:
    try:
        ports = parse_ports(spec)
    except PortSpecError as exc:
        assert "\n" not in str(exc)
    else:
        assert ports == sorted(set(ports))
        assert all(1 <= port <= MAX_PORT for port in ports)


@settings(deadline=None)
@given(st.lists(port_numbers, min_size=1, max_size=50))
def test_format_then_parse_round_trips(ports: list[int]) -> None:
    assert parse_ports(format_ports(ports)) == sorted(set(ports))


# --- parse_port_spec: nmap's T:/U: prefixes ---------------------------------------------

TCP, UDP = Proto.TCP, Proto.UDP
BOTH = (TCP, UDP)

SPECS = [
    ("22,80", (TCP,), "22/tcp 80/tcp"),
    ("22,80", (UDP,), "22/udp 80/udp"),
    ("22", BOTH, "22/tcp 22/udp"),
    ("T:22,80,U:53,161", (TCP,), "22/tcp 80/tcp 53/udp 161/udp"),
    ("U:53,111,T:21-23", (TCP,), "21/tcp 22/tcp 23/tcp 53/udp 111/udp"),
    ("22,U:53", (TCP,), "22/tcp 53/udp"),  # before any prefix: the scan's protocols
    ("22,U:53", BOTH, "22/tcp 22/udp 53/udp"),
    ("u:53, t:22", (TCP,), "22/tcp 53/udp"),  # either case, spaces around items
    ("U: 53", (TCP,), "53/udp"),
    ("U:53,U:53,53", (UDP,), "53/udp"),  # duplicates merge
    ("U:-3", (TCP,), "1/udp 2/udp 3/udp"),
    ("T:65534-", (TCP,), "65534/tcp 65535/tcp"),
]


@pytest.mark.parametrize(("spec", "protocols", "expected"), SPECS)
def test_parse_port_spec(spec: str, protocols: tuple[Proto, ...], expected: str) -> None:
    assert " ".join(str(p) for p in parse_port_spec(spec, protocols)) == expected


SPEC_REJECTED = [
    ("S:80", "SCTP scanning is not supported"),
    ("P:6", "IP protocol scanning is not supported"),
    ("X:80", "unknown protocol prefix"),
    ("U:", "empty item #1"),
    ("22,T:,80", "empty item #2"),
    ("U:T:53", "a protocol prefix must start an item"),
    ("U:0", "out of range"),
    ("T:abc", "not a port number"),
    ("", "empty port specification"),
]


@pytest.mark.parametrize(("spec", "fragment"), SPEC_REJECTED)
def test_parse_port_spec_rejects(spec: str, fragment: str) -> None:
    with pytest.raises(PortSpecError) as caught:
        parse_port_spec(spec)
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


_PORT_SETS = st.sets(st.tuples(st.sampled_from(BOTH), st.integers(1, MAX_PORT)), max_size=60)


@given(_PORT_SETS)
def test_format_port_spec_round_trips(pairs: set[tuple[Proto, int]]) -> None:
    ports = sorted((Port(p, n) for p, n in pairs), key=lambda x: (x.protocol != TCP, x.number))
    if not ports:
        assert format_port_spec(ports) == ""
        return
    assert parse_port_spec(format_port_spec(ports)) == ports


@given(st.text(max_size=40))
def test_parse_port_spec_raises_only_port_spec_errors(spec: str) -> None:
    try:
        ports = parse_port_spec(spec, BOTH)
    except PortSpecError as exc:
        assert "\n" not in str(exc)
    else:
        assert all(1 <= p.number <= MAX_PORT for p in ports)
        assert ports == sorted(ports, key=lambda x: (x.protocol != TCP, x.number))


def test_likely_open_ports_come_first() -> None:
    from scanner.ports import likely_open_first

    ports = parse_port_spec("1-65535")
    ordered, front = likely_open_first(ports)
    assert sorted(ordered) == sorted(ports)  # the same ports, reordered
    head = {port.number for port in ordered[:front]}
    # nmap's top ports and IANA's named ones (3451 asam, 2451 netchat) lead; 3403 (no
    # named assignment in the snapshot, not a top port) does not.
    assert {80, 443, 22, 3389, 2451, 3451} <= head
    assert 3403 not in head
    assert 0 < front < 20_000
    # Each part keeps the given order.
    assert ordered[:front] == sorted(ordered[:front])
    assert ordered[front:] == sorted(ordered[front:])
    # All likely, or none: no front.
    assert likely_open_first([Port(Proto.TCP, 80), Port(Proto.TCP, 22)]) == (
        [Port(Proto.TCP, 80), Port(Proto.TCP, 22)],
        0,
    )
    udp = parse_port_spec("1-2000", (Proto.UDP,))
    ordered, front = likely_open_first(udp)
    assert Port(Proto.UDP, 53) in ordered[:front]
    mixed = parse_port_spec("1-5000", (Proto.TCP, Proto.UDP))
    ordered, front = likely_open_first(mixed)
    assert sorted(ordered) == sorted(mixed)
    assert {Port(Proto.UDP, 53), Port(Proto.TCP, 80)} <= set(ordered[:front])
    assert Port(Proto.TCP, 3403) in ordered[front:]
    # A flag is its own protocol's: 15/tcp is a top port, 15/udp is neither; 3451 (named
    # on both) leads on both.
    assert Port(Proto.TCP, 15) in ordered[:front]
    assert Port(Proto.UDP, 15) in ordered[front:]
    assert {Port(Proto.TCP, 3451), Port(Proto.UDP, 3451)} <= set(ordered[:front])
