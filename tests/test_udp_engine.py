"""The engine's UDP side against simulated hosts that ration ICMP errors (tests/fakes.py).

The fake hosts keep Linux's token bucket, scaled down in time (a token per 20-50 ms
instead of per second) so that the tests run in a second or two.
"""

from __future__ import annotations

import asyncio
import errno

import pytest
from fakes import FakeTransport, Hosts, RateLimitedUdpHost, Reply

from scanner.engine import Scan
from scanner.models import Port, PortState, Proto, Reason, Result, ScanConfig, Timing
from scanner.transport import OPEN, Backpressure, classify_icmp, classify_udp_errno

TIMING = Timing(initial_rtt_timeout=0.2, min_rtt_timeout=0.02, max_rtt_timeout=0.5)
UDP = Proto.UDP


def run(scan: Scan) -> list[Result]:
    async def collect() -> list[Result]:
        return [r async for r in scan]

    return asyncio.run(collect())


def udp_ports(numbers: range | list[int]) -> list[Port]:
    return [Port(UDP, n) for n in numbers]


def by_port(results: list[Result]) -> dict[int, str]:
    return {r.port: r.state.value for r in results}


@pytest.mark.parametrize(("burst", "interval"), [(6, 0.05), (6, 0.02), (2, 0.03), (10, 0.04)])
def test_paced_scan_gets_every_closed_port_and_spends_no_token_twice(
    burst: int, interval: float
) -> None:
    closed = list(range(2000, 2030))
    host = RateLimitedUdpHost(burst=burst, interval=interval, ports={53: "open", 9999: "silent"})
    scan = Scan(
        Hosts("198.18.0.2"),
        udp_ports([53, 9999, *closed]),
        ScanConfig(seed=3, timing=TIMING, retries=2),
        transport=host,
    )
    results = run(scan)
    expected = {53: "open", 9999: "open|filtered", **dict.fromkeys(closed, "closed")}
    assert by_port(results) == expected
    assert all(r.protocol is UDP for r in results)
    # Every closed port cost the host exactly one error: no token was wasted on a port
    # already known, and no closed port was given up as silent.
    assert host.errors_sent == len(closed)
    assert scan.stats.paced_hosts == 1
    learned_burst, learned_interval, _ = scan.icmp_budgets()["198.18.0.2"]
    assert learned_burst == burst
    # The interval is only ever bounded from above: never faster than the host's.
    assert interval <= learned_interval <= 1.0


def test_the_refill_interval_is_learned_from_what_comes_back() -> None:
    host = RateLimitedUdpHost(burst=6, interval=0.01)
    scan = Scan(
        Hosts("198.18.0.2"),
        udp_ports(range(1000, 1200)),
        ScanConfig(seed=8, timing=TIMING),
        transport=host,
    )
    results = run(scan)
    assert {r.state for r in results} == {PortState.CLOSED}
    _, learned_interval, measured = scan.icmp_budgets()["198.18.0.2"]
    assert measured
    # (Learned from arrival times on a busy loop: a hair under the true 10 ms happens.)
    assert 0.0099 <= learned_interval <= 0.013


def test_a_silence_while_the_host_had_no_token_is_not_a_try() -> None:
    # Only 2 tokens: the first volley leaves most closed ports unanswered. Were those
    # silences counted, retries=1 would call them open|filtered.
    host = RateLimitedUdpHost(burst=2, interval=0.03)
    results = run(
        Scan(
            Hosts("198.18.0.2"),
            udp_ports(range(3000, 3015)),
            ScanConfig(seed=1, timing=TIMING, retries=1),
            transport=host,
        )
    )
    assert set(by_port(results).values()) == {"closed"}
    assert all(r.reason is Reason.PORT_UNREACH for r in results)


def test_hosts_budgets_are_spent_side_by_side() -> None:
    host = RateLimitedUdpHost(burst=2, interval=0.04)
    hosts = Hosts("198.18.0.2", "198.18.0.3", "198.18.0.4")
    scan = Scan(
        hosts, udp_ports(range(4000, 4012)), ScanConfig(seed=5, timing=TIMING), transport=host
    )
    results = run(scan)
    assert len(results) == 36
    assert {r.state for r in results} == {PortState.CLOSED}
    assert scan.stats.paced_hosts == 3
    # Each host's closed ports arrive over the same stretch of time, not one host after
    # another: the hosts' last results are close together.
    addresses = ("198.18.0.2", "198.18.0.3", "198.18.0.4")
    last = {h: max(r.timestamp for r in results if r.host == h) for h in addresses}
    first = min(r.timestamp for r in results)
    span = max(last.values()) - first
    assert max(last.values()) - min(last.values()) < span / 2


def test_addresses_sharing_one_bucket_still_get_every_closed_port() -> None:
    # Two addresses of one machine: one bucket, refilled at Linux's real pace (the model's
    # starting assumption). Judged by its own errors alone, each host would believe in
    # tokens that the other address had already spent.
    host = RateLimitedUdpHost(burst=1, interval=1.0, shared=True, ports={9999: "silent"})
    scan = Scan(
        Hosts("198.18.0.2", "198.18.0.3"),
        udp_ports([9999, 4000, 4001, 4002, 4003]),
        ScanConfig(seed=6, timing=TIMING),
        transport=host,
    )
    results = run(scan)
    assert {r.state for r in results if r.port != 9999} == {PortState.CLOSED}
    assert {r.state for r in results if r.port == 9999} == {PortState.OPEN_FILTERED}
    assert host.errors_sent == 8


def test_a_lost_probe_of_a_closed_port_is_retried_not_called_silent() -> None:
    host = RateLimitedUdpHost(burst=6, interval=0.03, drop_first={2001, 2002, 2003})
    results = run(
        Scan(
            Hosts("198.18.0.2"),
            udp_ports(range(2000, 2020)),
            ScanConfig(seed=2, timing=TIMING, retries=2),
            transport=host,
        )
    )
    assert set(by_port(results).values()) == {"closed"}


def test_fast_mode_does_not_wait_for_the_budget() -> None:
    host = RateLimitedUdpHost(burst=6, interval=10.0, ports={53: "open", 9999: "silent"})
    scan = Scan(
        Hosts("198.18.0.2"),
        udp_ports([53, 9999, *range(2000, 2020)]),
        ScanConfig(seed=4, timing=TIMING, defeat_icmp_ratelimit=True),
        transport=host,
    )
    results = run(scan)
    states = by_port(results)
    assert states[53] == "open"
    assert states[9999] == "closed|filtered"
    assert list(states.values()).count("closed") == 6  # the burst, nothing more
    assert list(states.values()).count("closed|filtered") == 15
    assert scan.stats.paced_hosts == 0
    assert scan.icmp_budgets() == {}


def test_a_host_that_never_sends_errors_is_not_paced() -> None:
    host = RateLimitedUdpHost(ports=dict.fromkeys(range(100, 120), "silent"))
    scan = Scan(
        Hosts("198.18.0.2"), udp_ports(range(100, 120)), ScanConfig(timing=TIMING), transport=host
    )
    results = run(scan)
    assert set(by_port(results).values()) == {"open|filtered"}
    assert {r.tries for r in results} == {3}  # every retry: a UDP silence shows no loss
    assert scan.stats.paced_hosts == 0


def test_tcp_and_udp_ports_in_one_scan_go_to_their_own_transports() -> None:
    tcp = FakeTransport(script={("198.18.0.2", 22): [Reply(OPEN, 0.001)]})
    udp = RateLimitedUdpHost(ports={22: "open"})
    ports = [Port(Proto.TCP, 22), Port(Proto.TCP, 23), Port(UDP, 22), Port(UDP, 23)]
    results = run(
        Scan(Hosts("198.18.0.2"), ports, ScanConfig(seed=1, timing=TIMING), transport=[tcp, udp])
    )
    got = {(r.protocol.value, r.port): (r.state.value, r.reason.value) for r in results}
    assert got == {
        ("tcp", 22): ("open", "syn-ack"),
        ("tcp", 23): ("filtered", "no-response"),
        ("udp", 22): ("open", "udp-response"),
        ("udp", 23): ("closed", "port-unreach"),
    }
    assert [s[1] for s in tcp.sends].count(22) == 1  # TCP probes went only to TCP


def test_ports_without_a_transport_for_their_protocol_are_refused() -> None:
    with pytest.raises(ValueError, match="no transport given for udp"):
        Scan(Hosts("198.18.0.2"), [Port(UDP, 53)], transport=FakeTransport())


def test_skip_receives_the_port_with_its_protocol() -> None:
    seen: list[tuple[str, Port]] = []

    def skip(address: str, port: Port) -> bool:
        seen.append((address, port))
        return port.protocol is UDP

    udp = RateLimitedUdpHost()
    tcp = FakeTransport(default=Reply(OPEN))
    ports = [Port(Proto.TCP, 1), Port(UDP, 1)]
    results = run(
        Scan(Hosts("198.18.0.2"), ports, ScanConfig(timing=TIMING), transport=[tcp, udp], skip=skip)
    )
    assert [(r.protocol, r.port) for r in results] == [(Proto.TCP, 1)]
    assert sorted(seen) == [("198.18.0.2", Port(Proto.TCP, 1)), ("198.18.0.2", Port(UDP, 1))]
    assert udp.sends == 0


ICMP_TABLE = [
    # (origin, type, code) -> (state, reason); origin 2 = ICMP, 3 = ICMPv6
    ((2, 3, 3), ("closed", "port-unreach")),
    ((2, 3, 0), ("filtered", "net-unreach")),
    ((2, 3, 1), ("filtered", "host-unreach")),
    ((2, 3, 2), ("filtered", "proto-unreach")),
    ((2, 3, 9), ("filtered", "admin-prohibited")),
    ((2, 3, 10), ("filtered", "admin-prohibited")),
    ((2, 3, 13), ("filtered", "admin-prohibited")),
    ((3, 1, 4), ("closed", "port-unreach")),
    ((3, 1, 0), ("filtered", "net-unreach")),
    ((3, 1, 1), ("filtered", "admin-prohibited")),
    ((3, 1, 3), ("filtered", "host-unreach")),
    ((3, 1, 6), ("filtered", "admin-prohibited")),
]


@pytest.mark.parametrize(("icmp", "expected"), ICMP_TABLE)
def test_icmp_errors_from_the_error_queue_map_to_states(
    icmp: tuple[int, int, int], expected: tuple[str, str]
) -> None:
    answer = classify_icmp(*icmp)
    assert answer is not None
    assert (answer.state.value, answer.reason.value) == expected


@pytest.mark.parametrize("icmp", [(2, 11, 0), (2, 3, 4), (3, 3, 0), (1, 0, 0)])
def test_other_icmp_messages_say_nothing_about_the_port(icmp: tuple[int, int, int]) -> None:
    assert classify_icmp(*icmp) is None


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (errno.ECONNREFUSED, ("closed", "port-unreach")),
        (errno.EHOSTUNREACH, ("filtered", "host-unreach")),
        (errno.ENETUNREACH, ("filtered", "net-unreach")),
        (errno.EACCES, ("filtered", "admin-prohibited")),
        (errno.EPERM, ("filtered", "error")),  # the local firewall, not the network
        (errno.EMSGSIZE, ("filtered", "error")),
    ],
)
def test_udp_errnos_map_to_states(err: int, expected: tuple[str, str]) -> None:
    answer = classify_udp_errno(err)
    assert (answer.state.value, answer.reason.value) == expected


@pytest.mark.parametrize("err", [errno.EMFILE, errno.ENOBUFS, errno.EADDRNOTAVAIL])
def test_local_resource_errors_are_backpressure_not_states(err: int) -> None:
    with pytest.raises(Backpressure):
        classify_udp_errno(err)
