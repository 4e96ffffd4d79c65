"""Tests of scanner.targets: parsing, lazy host sets, target files and resolution.

No test sends traffic: names are resolved by fake resolvers, except "localhost" through the
system resolver, and an autouse fixture makes any other system lookup fail the test.
Addresses come from 198.18.0.0/15, 2001:db8::/32, 127.0.0.0/8 and ::1 only.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import itertools
import os
import socket
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.errors import TargetError, TargetFileError
from scanner.targets import (
    Host,
    TargetSet,
    TargetSpec,
    Unresolved,
    build_targets,
    parse_exclude_file,
    parse_target,
    read_targets_file,
)

V4 = socket.AF_INET
V6 = socket.AF_INET6


@pytest.fixture(autouse=True)
def _only_localhost_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any system name lookup other than "localhost" (no test may reach real DNS)."""
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "localhost":
            raise AssertionError(f"test tried to resolve {host!r}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


def hosts(targets: TargetSet) -> list[str]:
    """Every address of ``targets``, in order (only for small sets)."""
    return [host.address for host in targets]


def target_set(*texts: str, exclude: tuple[str, ...] = ()) -> TargetSet:
    """A TargetSet of address targets (no hostnames)."""
    return TargetSet(
        [parse_target(text) for text in texts], exclude=[parse_target(t) for t in exclude]
    )


def fake_resolver(table: dict[str, list[str]]) -> Callable[[str], Awaitable[list[str]]]:
    """A resolver answering from ``table``, failing like getaddrinfo for other names."""

    async def resolve(name: str) -> list[str]:
        await asyncio.sleep(0)
        if name not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[name]

    return resolve


# --- parse_target: accepted forms ---------------------------------------------------------

ACCEPTED = [
    # (target, family, host count, first address, last address)
    ("198.18.0.2", V4, 1, "198.18.0.2", "198.18.0.2"),
    (" 198.18.0.2 ", V4, 1, "198.18.0.2", "198.18.0.2"),
    ("127.0.0.1", V4, 1, "127.0.0.1", "127.0.0.1"),
    ("2001:db8::2", V6, 1, "2001:db8::2", "2001:db8::2"),
    ("2001:DB8:0:0::2", V6, 1, "2001:db8::2", "2001:db8::2"),
    ("[2001:db8::2]", V6, 1, "2001:db8::2", "2001:db8::2"),
    ("::1", V6, 1, "::1", "::1"),
    ("198.18.0.0/28", V4, 16, "198.18.0.0", "198.18.0.15"),
    ("198.18.0.5/30", V4, 4, "198.18.0.4", "198.18.0.7"),
    ("198.18.0.5/32", V4, 1, "198.18.0.5", "198.18.0.5"),
    ("198.18.0.0/15", V4, 2**17, "198.18.0.0", "198.19.255.255"),
    ("127.0.0.0/8", V4, 2**24, "127.0.0.0", "127.255.255.255"),
    ("2001:db8::/124", V6, 16, "2001:db8::", "2001:db8::f"),
    ("2001:db8::5/127", V6, 2, "2001:db8::4", "2001:db8::5"),
    ("2001:db8::/64", V6, 2**64, "2001:db8::", "2001:db8::ffff:ffff:ffff:ffff"),
    ("198.18.0.1-20", V4, 20, "198.18.0.1", "198.18.0.20"),
    ("198.18.0-1.1-2", V4, 4, "198.18.0.1", "198.18.1.2"),
    ("198.18.0.*", V4, 256, "198.18.0.0", "198.18.0.255"),
    ("198.18.*.*", V4, 65536, "198.18.0.0", "198.18.255.255"),
    ("198.18-19.*.*", V4, 2**17, "198.18.0.0", "198.19.255.255"),
    ("198.18.0.1,3,5", V4, 3, "198.18.0.1", "198.18.0.5"),
    ("198.18.0.1-3,2-5", V4, 5, "198.18.0.1", "198.18.0.5"),
    ("198.18.0.0-255", V4, 256, "198.18.0.0", "198.18.0.255"),
    ("198.18.0.7,7", V4, 1, "198.18.0.7", "198.18.0.7"),
]


@pytest.mark.parametrize(("text", "family", "count", "first", "last"), ACCEPTED)
def test_parse_target_accepts(text: str, family: int, count: int, first: str, last: str) -> None:
    spec = parse_target(text)
    assert spec.hostname is None
    assert spec.family == family
    assert spec.size == count
    targets = TargetSet([spec])
    assert targets.size == count
    assert targets.host(0) == Host(first, family, None)
    assert targets.host(count - 1) == Host(last, family, None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("198.18.0-1.1-2", ["198.18.0.1", "198.18.0.2", "198.18.1.1", "198.18.1.2"]),
        ("198.18.0.1,3,5", ["198.18.0.1", "198.18.0.3", "198.18.0.5"]),
        ("198.18.2,0.9", ["198.18.0.9", "198.18.2.9"]),
        ("198.18.0-1.255,0", ["198.18.0.0", "198.18.0.255", "198.18.1.0", "198.18.1.255"]),
    ],
)
def test_octet_ranges_are_exact(text: str, expected: list[str]) -> None:
    assert hosts(target_set(text)) == expected


def test_non_contiguous_octet_range_is_several_intervals() -> None:
    spec = parse_target("198.18.0-1.1-2")
    first = int(ipaddress.IPv4Address("198.18.0.1"))
    second = int(ipaddress.IPv4Address("198.18.1.1"))
    assert spec.intervals == ((first, first + 1), (second, second + 1))


def test_adjacent_octet_runs_merge_across_octets() -> None:
    # 198.18.0.255 and 198.18.1.0 are neighbours: one interval of 2, not two of 1.
    assert len(parse_target("198.18.0-1.0,255").intervals) == 3


@pytest.mark.parametrize("name", ["localhost", "host-a.test", "a", "x1.example", "host.test."])
def test_parse_target_accepts_hostnames(name: str) -> None:
    spec = parse_target(name)
    assert spec == TargetSpec(text=name, hostname=name)
    assert spec.size == 0


def test_hostname_limits() -> None:
    label = "a" * 63
    name = ".".join([label, label, label, "b" * 61])  # 253 characters
    assert len(name) == 253
    assert parse_target(name).hostname == name
    with pytest.raises(TargetError, match="longer than 253"):
        parse_target(name + "b")
    with pytest.raises(TargetError, match="longer than 63"):
        parse_target("a" * 64 + ".test")


# --- parse_target: rejected forms ---------------------------------------------------------

REJECTED = [
    # (target, a fragment the message must contain)
    ("", "empty target"),
    ("   ", "empty target"),
    ("198.18.0.300", "'300' is out of range"),
    ("198.18.0.256", "out of range"),
    ("198.18.0.5-2", "reversed"),
    ("198.18.0.0/33", "/33 is out of range"),
    ("2001:db8::/129", "/129 is out of range"),
    ("198.18.0.0/-1", "not a prefix length"),
    ("198.18.0.0/", "not a prefix length"),
    ("198.18.0.0/2x", "not a prefix length"),
    ("198.18.0.0/\u0662\u0664", "not a prefix length"),
    ("198.18.0.0/24/24", "not an IP address"),
    ("/24", "not an IP address"),
    ("a..b", "empty label"),
    ("-x", "hyphen"),
    ("x-", "hyphen"),
    ("a_b.test", "character"),
    ("h\u00e9.test", "character"),
    ("http://x", "URL"),
    ("x/24", "hostname cannot take a /prefix"),
    ("1.2.3", "last label is all digits"),
    ("1.2.3.4.5", "last label is all digits"),
    ("12345", "last label is all digits"),
    (".", "empty name"),
    ("a.b..", "empty label"),
    ("198.018.0.1", "leading zeros"),
    ("198.18.0.1-", "not an octet"),
    ("198.18.0.,1", "not an octet"),
    ("198.18.0.**", "not an octet"),
    ("198.18.0.\u0663", "valid hostname"),
    ("198.18.0.1000", "out of range"),
    ("2001:db8::g", "not a valid IPv6 address"),
    ("2001:db8:::2", "not a valid IPv6 address"),
    ("fe80::1%eth0", "zone ids"),
    ("[198.18.0.1]", "brackets"),
    ("[2001:db8::2", "brackets"),
    ("2001:db8::2]", "brackets"),
    ("[2001:db8::]/124", "brackets"),
    ("a b", "character"),
    # the size guards
    ("127.0.0.0/7", "too large"),
    ("198.18.0.0/0", "too large"),
    ("2001:db8::/63", "too large"),
    ("2001:db8::/32", "too large"),
    ("*.*.*.*", "too many"),
    ("198.*.*.*", "16777216 addresses"),  # exactly a /8: allowed, below
    ("198.*.*.1,3", "separate intervals"),
]


@pytest.mark.parametrize(("text", "fragment"), REJECTED)
def test_parse_target_rejects(text: str, fragment: str) -> None:
    if text == "198.*.*.*":
        assert parse_target(text).size == 2**24  # the largest range the guard lets through
        return
    with pytest.raises(TargetError) as caught:
        parse_target(text)
    message = str(caught.value)
    assert fragment in message
    assert "\n" not in message
    if text.strip():
        assert repr(text.strip())[:20] in message  # the message names the target


def test_long_target_is_quoted_shortly() -> None:
    with pytest.raises(TargetError) as caught:
        parse_target("a" * 100_000)
    assert len(str(caught.value)) < 300


# --- TargetSet ----------------------------------------------------------------------------


def test_slash_8_is_instant_and_tiny() -> None:
    tracemalloc.start()
    try:
        started = time.perf_counter()
        targets = target_set("127.0.0.0/8")
        assert len(targets) == 2**24
        assert targets.host(2**24 - 1) == Host("127.255.255.255", V4, None)
        assert targets.host(2**23) == Host("127.128.0.0", V4, None)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 0.5
    assert peak < 64 * 1024


def test_slash_64_counts_beyond_len() -> None:
    targets = target_set("2001:db8::/64")
    assert targets.size == 2**64
    assert bool(targets)
    with pytest.raises(OverflowError, match="size"):
        len(targets)
    assert targets.host(2**64 - 1).address == "2001:db8::ffff:ffff:ffff:ffff"
    assert targets.address_family(2**64 - 1) == V6


def test_iteration_is_lazy() -> None:
    targets = target_set("127.0.0.0/8")
    first = list(itertools.islice(targets, 3))
    assert [host.address for host in first] == ["127.0.0.0", "127.0.0.1", "127.0.0.2"]


def test_index_outside_raises() -> None:
    targets = target_set("198.18.0.0/30")
    for index in (-1, 4, 2**70):
        with pytest.raises(IndexError):
            targets.host(index)
        with pytest.raises(IndexError):
            targets.address_family(index)


def test_empty_set() -> None:
    targets = TargetSet()
    assert len(targets) == 0
    assert not targets
    assert list(targets) == []
    with pytest.raises(IndexError):
        targets.host(0)


def test_order_is_ipv4_first_then_ascending() -> None:
    targets = target_set("2001:db8::2", "198.18.0.9", "::1", "198.18.0.1", "127.0.0.1")
    assert hosts(targets) == ["127.0.0.1", "198.18.0.1", "198.18.0.9", "::1", "2001:db8::2"]
    assert [targets.address_family(i) for i in range(5)] == [V4, V4, V4, V6, V6]
    assert [targets.host(i).family for i in range(5)] == [V4, V4, V4, V6, V6]


def test_overlaps_and_duplicates_merge() -> None:
    targets = target_set("198.18.0.0/29", "198.18.0.4-10", "198.18.0.3", "198.18.0.11")
    assert hosts(targets) == [f"198.18.0.{i}" for i in range(12)]
    assert list(targets.intervals()) == [
        (
            V4,
            int(ipaddress.IPv4Address("198.18.0.0")),
            int(ipaddress.IPv4Address("198.18.0.11")),
            None,
        )
    ]


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        (("198.18.0.0/28",), ("198.18.0.4-5",), [0, 1, 2, 3, *range(6, 16)]),
        (("198.18.0.0/28",), ("198.18.0.0/29",), list(range(8, 16))),
        (("198.18.0.0/28",), ("198.18.0.0/24",), []),
        (("198.18.0.0/28",), ("198.18.0.1,3,5,7-14",), [0, 2, 4, 6, 15]),
        (("198.18.0.0/28",), ("198.18.1.0/24", "2001:db8::/64"), list(range(16))),
        (("198.18.0.1", "198.18.0.3"), ("198.18.0.2",), [1, 3]),
    ],
)
def test_exclusions_split_intervals(
    include: tuple[str, ...], exclude: tuple[str, ...], expected: list[int]
) -> None:
    targets = target_set(*include, exclude=exclude)
    assert hosts(targets) == [f"198.18.0.{i}" for i in expected]


def test_exclusion_split_of_a_large_range_stays_small() -> None:
    targets = target_set("127.0.0.0/8", exclude=("127.0.0.1", "127.128.0.0/9"))
    assert targets.size == 2**23 - 1
    assert targets.host(0).address == "127.0.0.0"
    assert targets.host(1).address == "127.0.0.2"
    assert targets.host(2**23 - 2).address == "127.127.255.255"
    assert len(list(targets.intervals())) == 2


def test_hostnames_come_from_resolved() -> None:
    targets = TargetSet(
        [parse_target("host-a.test"), parse_target("198.18.0.0/30")],
        resolved={"host-a.test": ["198.18.0.2", "198.18.0.77"]},
    )
    assert [(h.address, h.hostname) for h in targets] == [
        ("198.18.0.0", None),
        ("198.18.0.1", None),
        ("198.18.0.2", "host-a.test"),
        ("198.18.0.3", None),
    ]


def test_unresolved_hostname_in_a_set_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"host-a\.test"):
        TargetSet([parse_target("host-a.test")])
    with pytest.raises(ValueError, match=r"host-a\.test"):
        TargetSet(exclude=[parse_target("host-a.test")], resolved={"host-a.test": []})


# --- read_targets_file --------------------------------------------------------------------


def write(tmp_path: Path, content: str | bytes, name: str = "targets.txt") -> str:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return str(path)


def test_read_targets_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "# lab targets\n"
        "\n"
        "198.18.0.1   198.18.0.2\t2001:db8::1  # three on a line\n"
        "   \n"
        "localhost#no space before the comment\r\n"
        "198.18.0.0/30\n"
        "   # indented comment\n"
        "198.18.1.1-3",
    )
    assert read_targets_file(path) == [
        "198.18.0.1",
        "198.18.0.2",
        "2001:db8::1",
        "localhost",
        "198.18.0.0/30",
        "198.18.1.1-3",
    ]


def test_read_targets_file_allows_a_bom(tmp_path: Path) -> None:
    assert read_targets_file(write(tmp_path, "\ufeff198.18.0.1\n")) == ["198.18.0.1"]


def test_read_targets_file_empty(tmp_path: Path) -> None:
    assert read_targets_file(write(tmp_path, "# nothing\n\n")) == []


def test_bad_target_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "198.18.0.1\n# comment\n198.18.0.2 198.18.0.300\n198.18.0.4\n")
    with pytest.raises(TargetFileError) as caught:
        read_targets_file(path)
    error = caught.value
    assert error.path == path
    assert error.line == 3
    assert str(error).startswith(f"{path}:3: invalid target '198.18.0.300'")
    assert "targets.txt:3: " in str(error)


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "missing.txt")
    with pytest.raises(TargetFileError) as caught:
        read_targets_file(path)
    assert str(caught.value) == f"{path}: cannot read: No such file or directory"
    assert caught.value.line is None


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(TargetFileError) as caught:
        read_targets_file(str(tmp_path))
    assert str(caught.value) == f"{tmp_path}: cannot read: Is a directory"


def test_not_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, b"198.18.0.1\n198.18.0.2\n\xff\xfe\n")
    with pytest.raises(TargetFileError) as caught:
        read_targets_file(path)
    assert str(caught.value) == f"{path}:3: not UTF-8 text"
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_not_utf8_after_bom(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbf198.18.0.1\n\xc3\n")
    with pytest.raises(TargetFileError, match=":2: not UTF-8"):
        read_targets_file(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, "198.18.0.1\n")
    os.chmod(path, 0)
    with pytest.raises(TargetFileError, match="cannot read: Permission denied"):
        read_targets_file(path)


def test_permission_error_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise PermissionError(13, "Permission denied")

    path = write(tmp_path, "198.18.0.1\n")
    with monkeypatch.context() as patch, pytest.raises(TargetFileError) as caught:
        patch.setattr(os, "open", refuse)  # files are opened by scanner.safeio
        read_targets_file(path)
    assert str(caught.value) == f"{path}: cannot read: Permission denied"


def test_stdin_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = io.BytesIO("198.18.0.1 # caf\u00e9\n2001:db8::1\n".encode())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(raw, encoding="ascii"))
    assert read_targets_file("-") == ["198.18.0.1", "2001:db8::1"]


def test_stdin_text_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("198.18.0.1\na..b\n"))
    with pytest.raises(TargetFileError, match=r"^<stdin>:2: invalid target 'a\.\.b'"):
        read_targets_file("-")


def test_exclude_file_is_not_size_guarded(tmp_path: Path) -> None:
    path = write(tmp_path, "2001:db8::/48\n127.0.0.0/7\n")
    assert parse_exclude_file(path) == ["2001:db8::/48", "127.0.0.0/7"]
    with pytest.raises(TargetFileError, match=r":1: .*too large"):
        read_targets_file(path)
    with pytest.raises(TargetFileError, match=":2: "):
        parse_exclude_file(write(tmp_path, "198.18.0.1\na..b\n", "exclude.txt"))


# --- build_targets ------------------------------------------------------------------------


def test_unresolved_names_are_reported_and_the_rest_goes_on() -> None:
    resolver = fake_resolver({"host-a.test": ["198.18.0.10"]})
    targets, unresolved = asyncio.run(
        build_targets(
            ["host-a.test", "nowhere.test", "198.18.0.1", "nowhere.test"], resolver=resolver
        )
    )
    assert [(h.address, h.hostname) for h in targets] == [
        ("198.18.0.1", None),
        ("198.18.0.10", "host-a.test"),
    ]
    assert unresolved == [Unresolved("nowhere.test", "Name or service not known")]


def test_name_and_same_address_keep_the_name() -> None:
    resolver = fake_resolver({"host-a.test": ["198.18.0.2"], "host-b.test": ["198.18.0.2"]})
    targets, unresolved = asyncio.run(
        build_targets(
            ["198.18.0.2", "host-a.test", "198.18.0.0/30", "host-b.test"], resolver=resolver
        )
    )
    assert unresolved == []
    assert [(h.address, h.hostname) for h in targets] == [
        ("198.18.0.0", None),
        ("198.18.0.1", None),
        ("198.18.0.2", "host-a.test"),  # the first name given wins
        ("198.18.0.3", None),
    ]


def test_first_address_of_a_name_is_used() -> None:
    resolver = fake_resolver({"host-a.test": ["2001:db8::5", "198.18.0.5"]})
    targets, _ = asyncio.run(build_targets(["host-a.test"], resolver=resolver))
    assert list(targets) == [Host("2001:db8::5", V6, "host-a.test")]


def test_excluded_name_removes_all_its_addresses() -> None:
    resolver = fake_resolver({"host-a.test": ["198.18.0.1", "198.18.0.3", "2001:db8::1"]})
    targets, _ = asyncio.run(
        build_targets(
            ["198.18.0.0/30", "2001:db8::/126"], exclude=["host-a.test"], resolver=resolver
        )
    )
    assert hosts(targets) == [
        "198.18.0.0",
        "198.18.0.2",
        "2001:db8::",
        "2001:db8::2",
        "2001:db8::3",
    ]


def test_exclusions_apply_to_names_and_ranges() -> None:
    resolver = fake_resolver({"host-a.test": ["198.18.0.9"], "host-b.test": ["198.18.0.20"]})
    targets, _ = asyncio.run(
        build_targets(
            ["host-a.test", "host-b.test", "198.18.0.0/30"],
            exclude=["198.18.0.8/29", "198.18.0.1"],
            resolver=resolver,
        )
    )
    assert [(h.address, h.hostname) for h in targets] == [
        ("198.18.0.0", None),
        ("198.18.0.2", None),
        ("198.18.0.3", None),
        ("198.18.0.20", "host-b.test"),
    ]


def test_exclusions_are_not_size_guarded() -> None:
    targets, _ = asyncio.run(build_targets(["2001:db8::/120"], exclude=["2001:db8::/48"]))
    assert targets.size == 0


def test_unresolvable_exclusion_is_an_error() -> None:
    resolver = fake_resolver({})
    with pytest.raises(TargetError, match=r"excluded host 'nowhere\.test' did not resolve"):
        asyncio.run(build_targets(["198.18.0.1"], exclude=["nowhere.test"], resolver=resolver))


def test_bad_target_fails_before_any_lookup() -> None:
    calls: list[str] = []

    async def resolver(name: str) -> list[str]:
        calls.append(name)
        return ["198.18.0.1"]

    with pytest.raises(TargetError, match=r"'a\.\.b'"):
        asyncio.run(build_targets(["host-a.test", "a..b"], resolver=resolver))
    with pytest.raises(TargetError, match=r"'198\.18\.0\.300'"):
        asyncio.run(build_targets(["host-a.test"], exclude=["198.18.0.300"], resolver=resolver))
    assert calls == []


def test_names_resolve_concurrently_and_once() -> None:
    calls: list[str] = []
    in_flight = peak = 0

    async def resolver(name: str) -> list[str]:
        nonlocal in_flight, peak
        calls.append(name)
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return [f"198.18.0.{name.split('.')[0].removeprefix('host-')}"]

    names = [f"host-{i}.test" for i in range(20)]
    targets, unresolved = asyncio.run(build_targets(names + names, resolver=resolver))
    assert sorted(calls) == sorted(names)
    assert 1 < peak <= 8  # concurrent, but bounded
    assert targets.size == 20
    assert unresolved == []


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ([], "no addresses"),
        (["not-an-address"], "not an address"),
        (TimeoutError(), "no answer within 0.05 s"),
        (OSError("resolver\nbroke"), "resolver broke"),
        (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), "Temporary"),
    ],
)
def test_resolution_failures_become_unresolved(answer: list[str] | Exception, reason: str) -> None:
    async def resolver(name: str) -> list[str]:
        if isinstance(answer, Exception):
            raise answer
        return answer

    targets, unresolved = asyncio.run(
        build_targets(["host-a.test", "198.18.0.1"], resolver=resolver, timeout=0.05)
    )
    assert hosts(targets) == ["198.18.0.1"]
    assert len(unresolved) == 1
    assert unresolved[0].name == "host-a.test"
    assert reason in unresolved[0].reason
    assert "\n" not in unresolved[0].reason


def test_resolver_timeout() -> None:
    async def slow(name: str) -> list[str]:
        await asyncio.sleep(10)
        return ["198.18.0.1"]

    started = time.perf_counter()
    targets, unresolved = asyncio.run(build_targets(["host-a.test"], resolver=slow, timeout=0.05))
    assert time.perf_counter() - started < 2
    assert targets.size == 0
    assert unresolved == [Unresolved("host-a.test", "no answer within 0.05 s")]


def test_resolver_answers_are_canonicalised() -> None:
    resolver = fake_resolver({"host-a.test": ["2001:DB8:0::1%eth0"]})
    targets, _ = asyncio.run(build_targets(["host-a.test"], resolver=resolver))
    assert list(targets) == [Host("2001:db8::1", V6, "host-a.test")]


def test_localhost_with_the_system_resolver() -> None:
    targets, unresolved = asyncio.run(build_targets(["localhost"]))
    assert unresolved == []
    assert targets.size == 1
    host = targets.host(0)
    assert host.hostname == "localhost"
    assert ipaddress.ip_address(host.address).is_loopback


def test_system_lookups_are_guarded() -> None:
    """The autouse fixture really stops lookups of other names."""
    targets, unresolved = asyncio.run(build_targets(["198.18.0.1"]))
    assert (targets.size, unresolved) == (1, [])
    with pytest.raises(AssertionError, match="tried to resolve"):
        socket.getaddrinfo("host-a.test", None)


# --- properties ---------------------------------------------------------------------------


@given(st.one_of(st.text(), st.text(alphabet="0123456789abcdefx:.-/,*[]% \n")))
def test_parse_target_raises_only_target_error(text: str) -> None:
    try:
        spec = parse_target(text)
    except TargetError as exc:
        assert "\n" not in str(exc)
    else:
        assert (spec.hostname is None) == bool(spec.intervals)


@st.composite
def ipv4_networks(draw: st.DrawFn) -> str:
    """A CIDR inside 198.18.0.0/15 or 127.0.0.0/8 (host bits possibly set)."""
    base, smallest = draw(st.sampled_from([("198.18.0.0", 15), ("127.0.0.0", 8)]))
    offset = draw(st.integers(0, 2 ** (32 - smallest) - 1))
    prefix = draw(st.integers(smallest, 32))
    return f"{ipaddress.IPv4Address(int(ipaddress.IPv4Address(base)) + offset)}/{prefix}"


@given(ipv4_networks(), st.data())
def test_ipv4_network_matches_ipaddress(text: str, data: st.DataObject) -> None:
    network = ipaddress.ip_network(text, strict=False)
    targets = target_set(text)
    assert len(targets) == network.num_addresses
    for index in (0, network.num_addresses - 1, data.draw(st.integers(0, len(targets) - 1))):
        assert targets.host(index) == Host(str(network[index]), V4, None)


@st.composite
def small_ranges(draw: st.DrawFn, family: int) -> str:
    """A CIDR or octet range inside 198.18.0.0/25 or 2001:db8::/121."""
    if family == V6:
        offset, prefix = draw(st.integers(0, 127)), draw(st.integers(121, 128))
        return f"2001:db8::{offset:x}/{prefix}"
    if draw(st.booleans()):
        offset, prefix = draw(st.integers(0, 127)), draw(st.integers(25, 32))
        return f"198.18.0.{offset}/{prefix}"
    items = draw(st.lists(st.tuples(st.integers(0, 127), st.integers(0, 8)), min_size=1))
    return "198.18.0." + ",".join(f"{low}-{min(low + width, 127)}" for low, width in items)


def brute(texts: list[str]) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address of address targets ``texts``, by full expansion."""
    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for text in texts:
        if "/" in text:
            found.update(ipaddress.ip_network(text, strict=False))
            continue
        for item in text.rpartition(".")[2].split(","):
            low, _, high = item.partition("-")
            for last in range(int(low), int(high or low) + 1):
                found.add(ipaddress.IPv4Address(f"198.18.0.{last}"))
    return found


@given(
    st.lists(st.one_of(small_ranges(V4), small_ranges(V6)), max_size=5),
    st.lists(st.one_of(small_ranges(V4), small_ranges(V6)), max_size=5),
    st.dictionaries(
        st.sampled_from(["host-a.test", "host-b.test", "host-c.test"]),
        st.integers(0, 127).map(lambda i: f"198.18.0.{i}"),
    ),
)
def test_exclusion_matches_brute_force(
    include: list[str], exclude: list[str], names: dict[str, str]
) -> None:
    specs = [parse_target(text) for text in include] + [parse_target(n) for n in names]
    resolved = {name: [address] for name, address in names.items()}
    targets = TargetSet(specs, exclude=[parse_target(t) for t in exclude], resolved=resolved)
    named = {ipaddress.ip_address(a): n for n, a in reversed(list(names.items()))}
    expected = sorted((brute(include) | set(named)) - brute(exclude), key=lambda a: (a.version, a))
    assert list(targets) == [
        Host(str(a), V4 if a.version == 4 else V6, named.get(a)) for a in expected
    ]
    assert [targets.host(i) for i in range(len(targets))] == list(targets)
    assert [targets.address_family(i) for i in range(len(targets))] == [h.family for h in targets]


@settings(deadline=None)
@given(
    st.lists(st.sets(st.integers(0, 255), min_size=1, max_size=4), min_size=2, max_size=2),
)
def test_octet_ranges_match_their_product(octets: list[set[int]]) -> None:
    third, fourth = (",".join(map(str, sorted(values))) for values in octets)
    targets = target_set(f"198.18-19.{third}.{fourth}")
    expected = [f"198.{a}.{b}.{c}" for a, b, c in itertools.product([18, 19], *map(sorted, octets))]
    assert hosts(targets) == expected
