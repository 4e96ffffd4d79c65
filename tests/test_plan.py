"""The probe planner: a seeded permutation of host x port, and its shards."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.plan import Plan, Shard


@pytest.mark.parametrize(
    ("hosts", "ports"),
    [
        (0, [80]),
        (1, []),
        (1, [80]),
        (1, [22, 80]),
        (2, [1, 2, 3]),
        (7, list(range(1, 100))),
        (1, list(range(1, 65536))),
        (64, list(range(1, 1001))),
    ],
)
def test_plan_is_a_permutation_of_the_space(hosts: int, ports: list[int]) -> None:
    plan = Plan(hosts, ports, seed=42)
    order = list(plan)
    assert sorted(order) == [(h, p) for h in range(hosts) for p in sorted(ports)]
    assert plan.expected == len(order) == hosts * len(ports)


def test_same_seed_same_order_other_seed_other_order() -> None:
    ports = list(range(1, 1001))
    assert list(Plan(3, ports, seed=7)) == list(Plan(3, ports, seed=7))
    assert list(Plan(3, ports, seed=7)) != list(Plan(3, ports, seed=8))


def test_order_is_not_sequential_and_spreads_hosts() -> None:
    order = list(Plan(16, list(range(1, 1001)), seed=1))
    assert order != sorted(order)
    # No host is hit port after port: among any 64 consecutive probes, many hosts appear.
    windows = [len({h for h, _ in order[i : i + 64]}) for i in range(0, len(order) - 64, 64)]
    assert min(windows) >= 10
    # No long runs of consecutive ports either.
    ascending = sum(
        1 for (h1, p1), (h2, p2) in itertools.pairwise(order) if h1 == h2 and p2 == p1 + 1
    )
    assert ascending < len(order) // 100


def test_cell_is_a_bijection_on_its_power_of_two_domain() -> None:
    plan = Plan(3, list(range(1, 301)), seed=99)
    domain = 1 << plan._bits
    assert sorted(plan.cell(i) for i in range(domain)) == list(range(domain))


@given(
    hosts=st.integers(min_value=1, max_value=20),
    ports=st.lists(st.integers(min_value=1, max_value=65535), min_size=1, max_size=40),
    seed=st.integers(min_value=0, max_value=2**64),
    index=st.integers(min_value=0, max_value=3),
    sequential=st.booleans(),
)
def test_iteration_is_the_cell_permutation_walked(
    hosts: int, ports: list[int], seed: int, index: int, sequential: bool
) -> None:
    # __iter__ inlines cell() for speed: both must give the very same order.
    shard = Shard(index, 4)
    plan = Plan(hosts, ports, seed=seed, shard=shard, sequential=sequential)
    cells = (plan.cell(counter) for counter in range(index, 1 << plan._bits, 4))
    walked = [(c // len(ports), ports[c % len(ports)]) for c in cells if c < plan.size]
    assert list(plan) == walked


@pytest.mark.parametrize(("index", "count"), [(0, 0), (-1, 2), (2, 2), (5, 3)])
def test_bad_shards_are_refused(index: int, count: int) -> None:
    with pytest.raises(ValueError, match="shard"):
        Shard(index, count)


@given(
    hosts=st.integers(min_value=0, max_value=40),
    ports=st.lists(st.integers(min_value=1, max_value=65535), max_size=60, unique=True),
    seed=st.integers(min_value=0, max_value=2**64),
    count=st.integers(min_value=1, max_value=6),
)
def test_shards_are_disjoint_and_cover_the_space(
    hosts: int, ports: list[int], seed: int, count: int
) -> None:
    union: Counter[tuple[int, int]] = Counter()
    for index in range(count):
        union.update(Plan(hosts, ports, seed=seed, shard=Shard(index, count)))
    assert sorted(union) == sorted((h, p) for h in range(hosts) for p in ports)
    assert set(union.values()) <= {1}


def test_sequential_order_is_host_by_host_ports_in_order_and_shards_still_cover_it() -> None:
    ports = [22, 80, 443, 8080]
    plan = Plan(3, ports, seed=99, sequential=True)
    assert list(plan) == [(h, p) for h in range(3) for p in ports]
    parts = [list(Plan(3, ports, seed=99, sequential=True, shard=Shard(k, 3))) for k in range(3)]
    assert sorted(pair for part in parts for pair in part) == sorted(plan)
    assert list(Plan(3, ports, seed=99)) != list(plan)  # without it: the seeded order


@given(
    hosts=st.integers(min_value=0, max_value=20),
    ports=st.lists(st.integers(min_value=1, max_value=65535), max_size=50, unique=True),
    front=st.integers(min_value=0, max_value=60),
    seed=st.integers(min_value=0, max_value=2**64),
    count=st.integers(min_value=1, max_value=5),
)
def test_the_front_ports_come_first_and_shards_still_cover_the_space(
    hosts: int, ports: list[int], front: int, seed: int, count: int
) -> None:
    leading = set(ports[:front])
    union: Counter[tuple[int, int]] = Counter()
    for index in range(count):
        plan = Plan(hosts, ports, seed=seed, shard=Shard(index, count), front=front)
        order = list(plan)
        union.update(order)
        # Every front cell of the shard before every other one.
        flags = [port in leading for _, port in order]
        assert flags == sorted(flags, reverse=True)
        if count == 1:
            assert plan.expected == len(order)
    assert sorted(union) == sorted((h, p) for h in range(hosts) for p in ports)
    assert set(union.values()) <= {1}


def test_the_front_is_shuffled_with_the_seed_and_sequential_has_none() -> None:
    ports = list(range(1, 201))
    plan = Plan(4, ports, seed=5, front=50)
    order = list(plan)
    assert {p for _, p in order[: 4 * 50]} == set(range(1, 51))
    assert order[: 4 * 50] != sorted(order[: 4 * 50])  # shuffled, not walked in order
    assert order == list(Plan(4, ports, seed=5, front=50))  # the seed fixes it
    assert order != list(Plan(4, ports, seed=6, front=50))
    sequential = Plan(4, ports, seed=5, front=50, sequential=True)
    assert sequential.front == 0
    assert list(sequential) == [(h, p) for h in range(4) for p in ports]


@given(
    hosts=st.integers(1, 12),
    port_count=st.integers(1, 60),
    front=st.integers(0, 60),
    count=st.integers(1, 4),
    seed=st.integers(0, 2**64 - 1),
    sequential=st.booleans(),
)
def test_locate_gives_each_cell_its_place_in_the_walk_and_its_shard(
    hosts: int, port_count: int, front: int, count: int, seed: int, sequential: bool
) -> None:
    """The cells of a shard come in the order of their locations, and a shard owns
    exactly the cells it walks (what the sweep relies on to probe an open port's other
    hosts early, each cell once)."""
    ports = list(range(1000, 1000 + port_count))
    for index in range(count):
        plan = Plan(hosts, ports, seed=seed, shard=Shard(index, count), front=front,
                    sequential=sequential)  # fmt: skip
        walked = list(plan)
        places = [plan.locate(host, port) for host, port in walked]
        assert places == sorted(places) and len(set(places)) == len(places)
        mine = set(walked)
        for host in range(hosts):
            for port in ports:
                assert plan.owns(plan.locate(host, port)[1]) == ((host, port) in mine)
    with pytest.raises(KeyError):
        Plan(hosts, ports, seed=seed).locate(0, 999)
