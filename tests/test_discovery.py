"""Host discovery's logic with scripted probes: no network."""

from __future__ import annotations

import asyncio

from scanner.discovery import DiscoveryConfig, HostStatus, discover
from scanner.models import PortState, Reason, Timing
from scanner.transport import Answer, Deliver

UP_RST = Answer(PortState.CLOSED, Reason.CONN_REFUSED)
NO_ROUTE = Answer(PortState.FILTERED, Reason.NET_UNREACH)
ROUTER_SAYS_UNREACHABLE = Answer(PortState.FILTERED, Reason.HOST_UNREACH)


class Scripted:
    """A probe whose outcome per address is scripted: an Answer at once, ("later", Answer)
    delivered on the next loop turn, or nothing (silence). Counts what it sent."""

    def __init__(self, script: dict[str, Answer | tuple[str, Answer]]) -> None:
        self.script = script
        self.sent: list[tuple[str, int]] = []
        self.cancelled = 0
        self._deliver: Deliver | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        self._loop, self._deliver = loop, deliver

    def send(self, key: object, family: int, address: str, port: int) -> object:
        self.sent.append((address, port))
        outcome = self.script.get(address)
        if isinstance(outcome, Answer):
            return outcome
        handle = object()
        if isinstance(outcome, tuple):
            assert self._loop is not None and self._deliver is not None
            self._loop.call_soon(self._deliver, key, outcome[1])
        return handle

    def cancel(self, handle: object) -> None:
        self.cancelled += 1

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


FAST = DiscoveryConfig(
    tcp_ports=(80, 443), retries=1, timing=Timing(initial_rtt_timeout=0.2, min_rtt_timeout=0.05)
)


def run(hosts: list[str], probe: Scripted, config: DiscoveryConfig = FAST) -> dict[str, HostStatus]:
    async def collect() -> dict[str, HostStatus]:
        return {s.host: s async for s in discover(hosts, config, probes=[(probe, "tcp")])}

    return asyncio.run(collect())


def test_up_down_and_why() -> None:
    probe = Scripted(
        {
            "198.18.0.2": ("later", UP_RST),
            "198.18.0.3": NO_ROUTE,
            "198.18.0.4": ("later", ROUTER_SAYS_UNREACHABLE),
        }
    )
    found = run(["198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5"], probe)
    assert {h: (s.up, s.reason) for h, s in found.items()} == {
        "198.18.0.2": (True, "conn-refused"),
        "198.18.0.3": (False, "net-unreach"),
        "198.18.0.4": (False, "host-unreach"),  # a router's error is no sign of life
        "198.18.0.5": (False, "no-response"),
    }
    sent = [address for address, _ in probe.sent]
    # A live host: one round. Refused outright: no second round. Silent: retries + 1 rounds.
    assert sent.count("198.18.0.2") == 2
    assert sent.count("198.18.0.3") == 2
    assert sent.count("198.18.0.5") == 4
    assert probe.cancelled == 4  # the silent host's probes, both rounds


def test_no_host_no_probe() -> None:
    probe = Scripted({})
    assert run([], probe) == {} and probe.sent == []
