"""Engine logic against a scripted fake transport: states, retries, timeouts, pacing."""

from __future__ import annotations

import asyncio
import errno
import gc
import itertools
import logging
import resource
from typing import Any

import pytest
from fakes import FakeTransport, Hosts, Queued, Refuse, Reply, Silence

from scanner import engine as engine_module
from scanner.engine import Scan, fit_concurrency
from scanner.engine.base import GC_YOUNG, new_result, rare_collections
from scanner.models import PortState, Proto, Reason, Result, ScanConfig, Timing
from scanner.plan import Plan
from scanner.transport import CLOSED, OPEN, Answer, Backpressure

FAST = Timing(initial_rtt_timeout=0.05, min_rtt_timeout=0.02, max_rtt_timeout=0.5)
UNREACH = Answer(PortState.FILTERED, Reason.NET_UNREACH)
HOST_UNREACH = Answer(PortState.FILTERED, Reason.HOST_UNREACH)


def run(scan: Scan) -> list[Result]:
    async def collect() -> list[Result]:
        return [r async for r in scan]

    return asyncio.run(collect())


def states(results: list[Result]) -> dict[tuple[str, int], tuple[str, str, int]]:
    return {(r.host, r.port): (r.state.value, r.reason.value, r.tries) for r in results}


@pytest.mark.parametrize(
    ("steps", "retries", "expected"),
    [
        ([Reply(OPEN, 0.001)], 2, ("open", "syn-ack", 1)),
        ([Reply(CLOSED, 0.001)], 2, ("closed", "conn-refused", 1)),
        ([Reply(OPEN)], 2, ("open", "syn-ack", 1)),  # answered from send() itself
        ([Reply(UNREACH)], 2, ("filtered", "net-unreach", 1)),
        ([Reply(HOST_UNREACH, 0.01)], 2, ("filtered", "host-unreach", 1)),
        # Without evidence of loss, one retry (as nmap): the ceiling is not reached.
        ([Silence()], 2, ("filtered", "no-response", 2)),
        ([Silence()], 0, ("filtered", "no-response", 1)),
        ([Silence(), Reply(OPEN, 0.001)], 2, ("open", "syn-ack", 2)),
        ([Silence(), Silence(), Reply(CLOSED, 0.001)], 2, ("filtered", "no-response", 2)),
        ([Silence(), Silence(), Reply(OPEN, 0.001)], 1, ("filtered", "no-response", 2)),
        ([Queued(OPEN)], 2, ("open", "syn-ack", 1)),  # harvested before expiry, not lost
    ],
)
def test_state_of_one_port(steps: list, retries: int, expected: tuple[str, str, int]) -> None:
    fake = FakeTransport(script={("198.18.0.2", 80): steps})
    results = run(
        Scan(Hosts("198.18.0.2"), [80], ScanConfig(retries=retries, timing=FAST), transport=fake)
    )
    assert states(results) == {("198.18.0.2", 80): expected}
    assert len(fake.sends) == expected[2]
    assert fake.closed


def test_an_answered_retry_raises_retries_to_the_ceiling() -> None:
    # Port 1 answers its retransmission: evidence of loss. Port 99, silent, then gets every
    # retry up to the ceiling, where without that evidence it gets one.
    lossy = {("198.18.0.2", 1): [Silence(), Reply(CLOSED, 0.001)]}
    for script, tries in [(lossy, 4), ({("198.18.0.2", 1): [Reply(CLOSED, 0.001)]}, 2)]:
        fake = FakeTransport(script={**script, ("198.18.0.2", 99): [Silence()]})
        config = ScanConfig(retries=3, timing=FAST, concurrency=2)
        got = states(run(Scan(Hosts("198.18.0.2"), [1, 99], config, transport=fake)))
        assert got["198.18.0.2", 99] == ("filtered", "no-response", tries)
        assert got["198.18.0.2", 1] == ("closed", "conn-refused", len(script[("198.18.0.2", 1)]))


def test_every_pair_gets_exactly_one_result() -> None:
    hosts = Hosts("198.18.0.2", "198.18.0.3", "2001:db8::2")
    script = {
        ("198.18.0.2", 22): [Reply(OPEN, 0.002)],
        ("198.18.0.3", 81): [Silence()],
        ("2001:db8::2", 443): [Reply(OPEN, 0.001)],
    }
    fake = FakeTransport(script=script, default=Reply(CLOSED, 0.001))
    ports = list(range(1, 501))
    results = run(Scan(hosts, ports, ScanConfig(seed=3, timing=FAST, retries=1), transport=fake))
    got = states(results)
    assert len(results) == len(got) == 3 * 500
    assert got["198.18.0.2", 22] == ("open", "syn-ack", 1)
    assert got["198.18.0.3", 81] == ("filtered", "no-response", 2)  # retries=1 is the ceiling
    assert got["2001:db8::2", 443] == ("open", "syn-ack", 1)
    others = {k: v for k, v in got.items() if k not in script}
    assert set(others.values()) == {("closed", "conn-refused", 1)}


def test_concurrency_is_never_exceeded() -> None:
    fake = FakeTransport(default=Reply(CLOSED, 0.002))
    run(Scan(Hosts("198.18.0.2"), range(1, 2001), ScanConfig(concurrency=37), transport=fake))
    assert len(fake.sends) == 2000
    assert fake.max_inflight == 37


def test_probe_order_is_seeded_random_and_interleaves_hosts() -> None:
    def order(seed: int) -> list[tuple[str, int]]:
        fake = FakeTransport(default=Reply(CLOSED))
        hosts = Hosts(*(f"198.18.0.{i}" for i in range(2, 6)))
        run(Scan(hosts, range(1, 101), ScanConfig(seed=seed), transport=fake))
        return [(a, p) for a, p, _ in fake.sends]

    first, again, other = order(11), order(11), order(12)
    assert first == again
    assert first != other
    assert sorted(first) == sorted(other)
    assert first != sorted(first)
    assert len({address for address, _ in first[:20]}) >= 3


def test_timeout_adapts_to_measured_rtt() -> None:
    # Every port answers after 5 ms but two. The first port of the (seeded) order answers
    # only its retransmission, at about 0.3 s: evidence of loss, so the last port of the
    # order, silent and sent well after that, gets every retry; those must use a timeout
    # near the 20 ms floor, not the 300 ms initial timeout.
    ports = range(1, 401)
    order = [p for _, p in Plan(1, ports, seed=1)]
    first, silent = order[0], order[-1]
    timing = Timing(initial_rtt_timeout=0.3, min_rtt_timeout=0.02, max_rtt_timeout=1.0)
    script = {
        ("198.18.0.2", silent): [Silence()],
        ("198.18.0.2", first): [Silence(), Reply(CLOSED, 0.005)],
    }
    fake = FakeTransport(script=script, default=Reply(CLOSED, 0.005))
    config = ScanConfig(seed=1, retries=3, timing=timing, concurrency=4)
    results = run(Scan(Hosts("198.18.0.2"), ports, config, transport=fake))
    tries = [t for a, p, t in fake.sends if p == silent]
    assert tries[0] - fake.sends[0][2] > 0.35  # sent after the evidence of loss
    assert len(tries) == 4
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert all(0.02 <= gap < 0.15 for gap in gaps), gaps
    assert states(results)["198.18.0.2", silent] == ("filtered", "no-response", 4)


def test_first_timeout_is_the_initial_one() -> None:
    timing = Timing(initial_rtt_timeout=0.2, min_rtt_timeout=0.01, max_rtt_timeout=1.0)
    fake = FakeTransport()
    run(Scan(Hosts("198.18.0.2"), [1], ScanConfig(retries=1, timing=timing), transport=fake))
    (_, _, first), (_, _, second) = fake.sends
    assert 0.2 <= second - first < 0.4


def test_first_batch_is_retimed_by_the_first_measured_rtt() -> None:
    # All 21 probes leave before anything answers, under the 1 s initial timeout. The
    # answers after 5 ms give a 20 ms timeout, which the silent port's first try must get.
    timing = Timing(initial_rtt_timeout=1.0, min_rtt_timeout=0.02, max_rtt_timeout=1.0)
    fake = FakeTransport(script={("198.18.0.2", 21): [Silence()]}, default=Reply(CLOSED, 0.005))
    config = ScanConfig(retries=1, timing=timing, concurrency=100)
    run(Scan(Hosts("198.18.0.2"), range(1, 22), config, transport=fake))
    first, second = [t for _, p, t in fake.sends if p == 21]
    assert 0.02 <= second - first < 0.3


def test_rate_caps_probes_per_second() -> None:
    fake = FakeTransport(default=Reply(CLOSED))
    run(Scan(Hosts("198.18.0.2"), range(1, 101), ScanConfig(rate=400.0), transport=fake))
    times = [t for _, _, t in fake.sends]
    # 100 probes at 400/s take at least ~0.25 s whatever the machine's speed.
    assert times[-1] - times[0] >= 0.2


def test_descriptor_exhaustion_lowers_concurrency_and_loses_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The 21st and later sends fail with EMFILE while 20 attempts are in flight.
    class Limited(FakeTransport):
        def send(self, key: object, family: int, address: str, port: int) -> object:
            if len(self._inflight) >= 20:
                raise Backpressure(errno.EMFILE)
            return super().send(key, family, address, port)

    fake = Limited(default=Reply(CLOSED, 0.002))
    caplog.set_level(logging.WARNING, logger="scanner")
    scan = Scan(Hosts("198.18.0.2"), range(1, 301), ScanConfig(concurrency=100), transport=fake)
    results = run(scan)
    assert len(results) == 300
    assert {r.state for r in results} == {PortState.CLOSED}
    assert scan.stats.concurrency == 20
    assert "concurrency lowered from 100 to 20" in caplog.text


def test_ephemeral_port_pressure_is_deferred_not_closed() -> None:
    script = {("198.18.0.2", 80): [Refuse(errno.EADDRNOTAVAIL), Refuse(errno.EADDRNOTAVAIL)]}
    # Refuse steps do not count as attempts, so the last step repeats forever: replace it.
    calls = {"n": 0}

    class Recovering(FakeTransport):
        def send(self, key: object, family: int, address: str, port: int) -> object:
            if port == 80:
                calls["n"] += 1
                if calls["n"] <= 3:
                    raise Backpressure(errno.EADDRNOTAVAIL)
                return Reply(OPEN).answer
            return super().send(key, family, address, port)

    fake = Recovering(script=script, default=Reply(CLOSED, 0.001))
    scan = Scan(Hosts("198.18.0.2"), [79, 80, 81], ScanConfig(timing=FAST), transport=fake)
    got = states(run(scan))
    assert got["198.18.0.2", 80] == ("open", "syn-ack", 1)
    assert scan.stats.deferred == 3


def test_stop_ends_the_scan_with_finished_results_only() -> None:
    fake = FakeTransport(default=Reply(CLOSED, 0.01))
    scan = Scan(Hosts("198.18.0.2"), range(1, 10001), ScanConfig(concurrency=50), transport=fake)

    async def collect() -> list[Result]:
        out = []
        async for result in scan:
            out.append(result)
            if len(out) == 120:
                scan.stop()
        return out

    results = asyncio.run(collect())
    assert 120 <= len(results) < 10000
    assert scan.stats.interrupted
    assert fake.closed
    sent = len(fake.sends)
    assert sent < 10000
    assert len({(r.host, r.port) for r in results}) == len(results)


def test_fast_failing_scan_streams_without_piling_up() -> None:
    # Everything fails at once (no route): results must flow to the consumer in bounded
    # batches rather than all being produced before the first one is read.
    fake = FakeTransport(default=Reply(UNREACH))
    scan = Scan(Hosts(*(f"198.18.{i}.1" for i in range(40))), range(1, 1001), transport=fake)
    largest_gap = 0

    async def consume() -> int:
        nonlocal largest_gap
        seen = 0
        async for _ in scan:
            seen += 1
            largest_gap = max(largest_gap, len(fake.sends) - seen)
        return seen

    assert asyncio.run(consume()) == 40_000
    assert largest_gap <= engine_module.MAX_BUFFERED + engine_module.SEND_BATCH


@pytest.mark.parametrize(
    ("soft", "hard", "requested", "expected", "warned"),
    [
        (20000, 20000, 1024, 1024, False),
        (256, 4096, 1024, 1024, False),  # soft limit raised toward the hard one
        (256, 256, 1024, 256 - engine_module.FD_RESERVE, True),
        (64, 64, 10, 10, False),
    ],
)
def test_fit_concurrency(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    soft: int,
    hard: int,
    requested: int,
    expected: int,
    warned: bool,
) -> None:
    limits = {"now": (soft, hard)}
    monkeypatch.setattr(resource, "getrlimit", lambda _: limits["now"])

    def setrlimit(_: int, value: tuple[int, int]) -> None:
        if value[0] > limits["now"][1]:
            raise ValueError("over the hard limit")
        limits["now"] = value

    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    caplog.set_level(logging.WARNING, logger="scanner")
    assert fit_concurrency(requested) == expected
    assert ("concurrency lowered" in caplog.text) == warned


@pytest.mark.parametrize(
    "fields",
    [
        ("198.18.0.2", 22, Proto.TCP, PortState.OPEN, Reason.SYN_ACK, None, 0.0125, 1, 1.5),
        (
            "2001:db8::2",
            53,
            Proto.UDP,
            PortState.OPEN_FILTERED,
            Reason.NO_RESPONSE,
            "h",
            None,
            3,
            0,
        ),
    ],
)
def test_new_result_is_a_result(fields: tuple[Any, ...]) -> None:
    """The engine's fast constructor makes exactly what ``Result(...)`` makes."""
    made, expected = new_result(*fields), Result(*fields)
    assert type(made) is Result
    assert made == expected and hash(made) == hash(expected)
    assert made.assessment is None
    with pytest.raises(AttributeError):
        made.port = 1  # type: ignore[misc]  # still frozen


def test_batches_give_what_iteration_gives() -> None:
    """``Scan.batches()`` yields the same results as iterating the scan, in lists."""
    script = {
        ("198.18.0.2", p): [Reply(OPEN if p % 7 == 0 else CLOSED, 0.001)] for p in range(1, 300)
    }
    script[("198.18.0.2", 5)] = [Silence()]

    def scan() -> Scan:
        fake = FakeTransport(script=script)
        return Scan(Hosts("198.18.0.2"), range(1, 300), ScanConfig(timing=FAST), transport=fake)

    async def in_batches() -> list[list[Result]]:
        return [batch async for batch in scan().batches()]

    batches = asyncio.run(in_batches())
    assert all(batches)
    assert states([r for batch in batches for r in batch]) == states(run(scan()))
    assert states(run(scan()))[("198.18.0.2", 5)] == ("filtered", "no-response", 2)


def test_rare_collections_freezes_and_restores_the_collector() -> None:
    threshold = gc.get_threshold()
    with rare_collections():
        assert gc.get_threshold()[0] == GC_YOUNG
        assert gc.get_threshold()[1:] == threshold[1:]
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == threshold
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize(
    ("answer", "timed"),
    [
        (Answer(PortState.CLOSED, Reason.CONN_REFUSED, measured=True), True),  # read at once
        (CLOSED, False),  # a local answer, known before anything was sent: no round trip
        (UNREACH, False),
    ],
)
def test_an_answer_returned_by_send_is_timed_only_when_measured(
    answer: Answer, timed: bool
) -> None:
    fake = FakeTransport(default=Reply(answer))
    results = run(Scan(Hosts("198.18.0.2"), range(1, 41), ScanConfig(timing=FAST), transport=fake))
    assert len(results) == 40
    assert {(r.state, r.reason) for r in results} == {(answer.state, answer.reason)}
    if timed:
        assert all(r.rtt is not None and 0 <= r.rtt < 0.5 for r in results)
    else:
        assert all(r.rtt is None for r in results)
    assert answer == Answer(answer.state, answer.reason)  # measured takes no part in equality


def _fleet(
    hosts: int, open_ports: tuple[int, ...], delay: float = 0.001
) -> tuple[list[str], FakeTransport]:
    """``hosts`` addresses, each with ``open_ports`` open, the rest closed: answered after
    ``delay`` seconds, or read at once from ``send`` (timed, as on loopback) with 0."""
    addresses = [f"198.18.0.{n + 2}" for n in range(hosts)]
    opened, closed = OPEN, CLOSED
    if not delay:
        opened, closed = (Answer(a.state, a.reason, measured=True) for a in (OPEN, CLOSED))
    script = {(a, p): [Reply(opened, delay)] for a in addresses for p in open_ports}
    return addresses, FakeTransport(script=script, default=Reply(closed, delay))


@pytest.mark.parametrize("delay", [0.001, 0.0])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_port_found_open_is_probed_on_the_other_hosts_next_and_each_cell_once(
    seed: int, delay: float
) -> None:
    # delay 0: every answer is read at once, in the middle of a batch of sends (as on
    # loopback): the plan's cells that the promotion sent must still be skipped.
    addresses, fake = _fleet(8, (2999, 7), delay)
    ports = range(1, 3001)
    config = ScanConfig(timing=FAST, seed=seed, concurrency=64)
    results = run(Scan(Hosts(*addresses), ports, config, transport=fake))
    probed = [(address, port) for address, port, _ in fake.sends]
    # Every cell, once: one result each, and no send but its tries (a reply the busy
    # loop took in after the 20 ms timeout is a retry).
    assert len({(r.host, r.port) for r in results}) == len(results) == 8 * 3000
    assert len(set(probed)) == 8 * 3000
    assert len(probed) == sum(r.tries for r in results)
    opened = sorted((r.host, r.port) for r in results if r.state is PortState.OPEN)
    assert opened == sorted((a, p) for a in addresses for p in (2999, 7))
    # Once found on one host, a port is probed on the others within a few batches, not
    # spread over the whole sweep (24,000 probes).
    for port in (2999, 7):
        at = [n for n, (_, p) in enumerate(probed) if p == port]
        assert at[-1] - at[0] < 1500, (port, at)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_promotion_in_the_middle_of_a_batch_sends_no_cell_twice(seed: int) -> None:
    """On loopback most answers are read at once from ``send`` and a few come later: an
    open port found at once promotes in the middle of a batch of sends, and the batch
    goes on. The cells the promotion sent must not come again from the plan (a 3-worker
    loopback scan once yielded a port twice)."""
    addresses = [f"198.18.0.{n + 2}" for n in range(8)]
    at_once = {
        state: Answer(answer.state, answer.reason, measured=True)
        for state, answer in (("open", OPEN), ("closed", CLOSED))
    }
    script = {
        (a, p): [Reply(at_once["open"])] if p % 10 == 0 else [Reply(CLOSED, 0.002)]
        for a in addresses
        for p in range(1, 401)
        if p % 10 == 0 or p % 3 == 0
    }
    fake = FakeTransport(script=script, default=Reply(at_once["closed"]))
    config = ScanConfig(timing=FAST, seed=seed, concurrency=64)
    results = run(Scan(Hosts(*addresses), range(1, 401), config, transport=fake))
    assert len({(r.host, r.port) for r in results}) == len(results) == 8 * 400
    firsts = [(address, port) for address, port, _ in fake.sends]
    assert len(firsts) == sum(r.tries for r in results)
    assert sorted((r.host, r.port) for r in results if r.state is PortState.OPEN) == sorted(
        (a, p) for a in addresses for p in range(10, 401, 10)
    )


def test_a_shards_sweep_promotes_only_its_own_cells() -> None:
    """Two shards of one plan, each swept alone: together every cell once, each only its
    own, though both found the same ports open and probed them on the other hosts."""
    from fakes import Hosts as FakeHosts

    from scanner.engine.base import HostCache, ScanStats, ports_of
    from scanner.engine.core import Sweep
    from scanner.plan import Shard

    addresses, _ = _fleet(6, (1500, 3))
    ports = ports_of(range(1, 2001))
    sent: list[tuple[str, int]] = []
    for index in range(2):
        _, fake = _fleet(6, (1500, 3))
        plan = Plan(6, ports, seed=9, shard=Shard(index, 2), front=700)
        stats = ScanStats(total=plan.expected)
        sweep = Sweep(
            plan, HostCache(FakeHosts(*addresses)), ScanConfig(timing=FAST),
            {Proto.TCP: fake}, lambda attempt, answer, rtt: answer, stats,
        )  # fmt: skip

        async def drain(sweep: Sweep[Answer] = sweep) -> int:
            return sum([len(batch) async for batch in sweep.batches(64)])

        assert asyncio.run(drain()) == len({(a, p) for a, p, _ in fake.sends})
        own = {(addresses[h], p.number) for h, p in plan}
        mine = [(address, port) for address, port, _ in fake.sends]
        assert set(mine) == own  # (a retry sends a cell again: compared as sets)
        assert sweep._promoted  # (it did promote)
        sent += sorted(set(mine))
    assert sorted(sent) == sorted((a, p) for a in addresses for p in range(1, 2001))


@pytest.mark.parametrize(
    "config", [ScanConfig(timing=FAST, sequential=True), ScanConfig(timing=FAST, retries=0)]
)
def test_sequential_scans_keep_their_order(config: ScanConfig) -> None:
    """-r probes host by host in the given order: nothing found open jumps ahead."""
    addresses, fake = _fleet(3, (5,))
    run(Scan(Hosts(*addresses), range(1, 201), config, transport=fake))
    probed = [(address, port) for address, port, _ in fake.sends]
    assert len(set(probed)) == 600
    if config.sequential:  # (first tries: a retry comes again later)
        firsts = list(dict.fromkeys(probed))
        assert firsts == [(a, p) for a in addresses for p in range(1, 201)]


def test_a_silent_port_sent_after_a_reply_read_at_once_is_timed_by_that_rtt() -> None:
    """Replies read at once measure the scan's first RTT in the middle of a send batch: a
    silent port of another host, sent later in that batch, is timed by it, not by the
    initial timeout (2 s, twice: the retry). It was, until the batch looked the scan's
    estimate up again."""
    at_once = Reply(Answer(PortState.CLOSED, Reason.CONN_REFUSED, measured=True))
    fake = FakeTransport(script={("198.18.0.3", 1): [Silence()]}, default=at_once)
    slow_start = Timing(initial_rtt_timeout=2.0, min_rtt_timeout=0.02, max_rtt_timeout=2.0)
    # Host by host: 198.18.0.3's port 1 comes in the first batch, after 200 replies.
    config = ScanConfig(timing=slow_start, sequential=True)
    hosts = Hosts("198.18.0.2", "198.18.0.3")
    results = run(Scan(hosts, range(1, 201), config, transport=fake))
    assert states(results)["198.18.0.3", 1] == ("filtered", "no-response", 2)
    sends = [t for address, port, t in fake.sends if (address, port) == ("198.18.0.3", 1)]
    assert len(sends) == 2 and sends[1] - sends[0] < 1.0  # (not 2 s)
