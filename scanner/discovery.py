"""Host discovery: which hosts are up (nmap's ``-sn``), before or instead of a port scan.

Rules and theory:
- A host is *up* when it answers, itself, any of these probes, all sent at once:

  * a TCP connect to one of a few common ports (:data:`DISCOVERY_TCP_PORTS`), answered
    by SYN-ACK (``syn-ack``) or RST (``conn-refused``): a closed port proves a live host
    as well as an open one;
  * an ICMP echo (``echo-reply``), through Linux's unprivileged ICMP socket where
    ``net.ipv4.ping_group_range`` allows it, or a raw socket as root;
  * an ICMP error from the host itself: port-unreachable for a UDP datagram to an
    unlikely port (``port-unreach``; only the destination sends it), or any error the
    target sent about our echo. An ICMP error from a router means the opposite.

- A host is *down* when nothing came back after ``retries + 1`` rounds of probes, each
  waited for a timeout that follows the answers seen so far (RFC 6298's
  ``srtt + 4 * rttvar`` over every answer of the run, clamped to the timing's floor and
  ceiling; before any answer, its initial timeout), or at once when every probe was
  refused locally or by a router (no route, host unreachable).
- Live hosts answer within a round trip, so they are known long before the silent ones
  time out; a run's wall time is about ``(retries + 1)`` timeouts, whatever the number of
  hosts (up to ``concurrency`` at once).
- No sockets here: the probes are ``scanner.transport``'s, driven through their
  ``send``/``deliver`` seam, so tests can script them.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from scanner.models import PortState, Reason, Timing
from scanner.transport import (
    Answer,
    Backpressure,
    Deliver,
    IcmpEchoTransport,
    TcpConnectTransport,
    UdpTransport,
)

__all__ = [
    "DISCOVERY_TCP_PORTS",
    "DISCOVERY_UDP_PORT",
    "DiscoveryConfig",
    "HostStatus",
    "discover",
]

#: TCP ports a discovery connects to: nmap's unprivileged ``-sn`` probes 80 and 443; 22
#: is added because servers that filter the web often leave SSH reachable.
DISCOVERY_TCP_PORTS = (80, 443, 22)
#: nmap's default ``-PU`` port: almost never open, so a live host answers port-unreachable.
DISCOVERY_UDP_PORT = 40125


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscoveryConfig:
    """How hosts are probed for discovery (see the module rules)."""

    tcp_ports: tuple[int, ...] = DISCOVERY_TCP_PORTS
    udp_port: int | None = DISCOVERY_UDP_PORT
    icmp: bool = True
    retries: int = 1
    # Live hosts set the timeout (their RTT), but a slow host among fast ones must not be
    # missed: a round waits at least 300 ms.
    timing: Timing = Timing(min_rtt_timeout=0.3)
    concurrency: int = 512

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError("retries must not be negative")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")


@dataclass(frozen=True, slots=True)
class HostStatus:
    """Whether ``host`` is up, and why (nmap's reason names); ``rtt`` of the answer."""

    host: str
    up: bool
    reason: str
    rtt: float | None = None


class _Probe(Protocol):
    def open(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None: ...
    def send(self, key: object, family: int, address: str, port: int) -> object: ...
    def cancel(self, handle: object) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


def _is_up(answer: Answer) -> bool:
    # The host itself answered: a connect completed or was refused, a datagram or echo
    # came back, or the host sent an ICMP error (reported as closed by the transports).
    return answer.state in (PortState.OPEN, PortState.CLOSED)


@dataclass(slots=True)
class _Rtt:
    """The run's round-trip estimate (RFC 6298), for the timeout of each round."""

    timing: Timing
    srtt: float | None = None
    rttvar: float = 0.0

    def add(self, sample: float) -> None:
        if self.srtt is None:
            self.srtt, self.rttvar = sample, sample / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - sample)
            self.srtt = 0.875 * self.srtt + 0.125 * sample

    def timeout(self) -> float:
        if self.srtt is None:
            return self.timing.initial_rtt_timeout
        value = self.srtt + 4 * self.rttvar
        return min(max(value, self.timing.min_rtt_timeout), self.timing.max_rtt_timeout)


@dataclass(slots=True)
class _Round:
    """One host's probes of one round: what is in flight, and the first answer."""

    pending: dict[object, tuple[_Probe, object]] = field(default_factory=dict)  # key: handle
    answer: Answer | None = None
    refused: Answer | None = None  # the last "no" (a router's error, no route)
    sent: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)


class _Discovery:
    def __init__(self, config: DiscoveryConfig, probes: Sequence[tuple[_Probe, str]]) -> None:
        self.config = config
        self.probes = probes
        self.rtt = _Rtt(config.timing)
        self.rounds: dict[object, _Round] = {}

    def deliver(self, key: object, answer: Answer | None) -> None:
        token = key[0] if isinstance(key, tuple) else key
        current = self.rounds.get(token)
        if current is None:
            return
        current.pending.pop(key, None)
        self._settle(current, answer)

    def _settle(self, current: _Round, answer: Answer | None) -> None:
        if answer is not None and _is_up(answer):
            if current.answer is None:
                current.answer = answer
                self.rtt.add(time.monotonic() - current.sent)
            current.done.set()
        elif answer is not None:
            current.refused = answer
        if not current.pending:
            current.done.set()

    async def host(self, address: str) -> HostStatus:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        refused: Answer | None = None
        for attempt in range(self.config.retries + 1):
            token = object()
            current = self.rounds[token] = _Round(sent=time.monotonic())
            try:
                for index, (probe, _) in enumerate(self.probes):
                    self._send(current, token, index, probe, family, address)
                if current.pending and current.answer is None:
                    await self._wait(current)
            finally:
                del self.rounds[token]
                for probe, handle in current.pending.values():
                    probe.cancel(handle)
            if current.answer is not None:
                rtt = time.monotonic() - current.sent
                return HostStatus(address, True, current.answer.reason.value, rtt)
            refused = current.refused or refused
            if current.refused is not None and attempt == 0 and not current.pending:
                break  # every probe was refused outright (no route): no use in repeating
        reason = refused.reason.value if refused is not None else Reason.NO_RESPONSE.value
        return HostStatus(address, False, reason)

    def _send(
        self, current: _Round, token: object, index: int, probe: _Probe, family: int, address: str
    ) -> None:
        ports: Iterable[int]
        kind = self.probes[index][1]
        if kind == "tcp":
            ports = self.config.tcp_ports
        elif kind == "udp":
            ports = () if self.config.udp_port is None else (self.config.udp_port,)
        else:
            ports = (0,)
        for port in ports:
            key = (token, index, port)
            try:
                handle = probe.send(key, family, address, port)
            except Backpressure:
                continue  # out of sockets: the other probes (and the next round) still go
            if isinstance(handle, Answer):
                self._settle_now(current, handle)
            else:
                current.pending[key] = (probe, handle)

    def _settle_now(self, current: _Round, answer: Answer) -> None:
        if _is_up(answer):
            if current.answer is None:
                current.answer = answer
            current.done.set()
        else:
            current.refused = answer

    async def _wait(self, current: _Round) -> None:
        # The timeout shrinks as other hosts answer: look again every 50 ms.
        while not current.done.is_set():
            left = current.sent + self.rtt.timeout() - time.monotonic()
            if left <= 0:
                for probe, _ in self.probes:
                    probe.flush()  # an answer already in may not have been read yet
                return
            try:
                await asyncio.wait_for(current.done.wait(), min(left, 0.05))
            except TimeoutError:
                continue


async def discover(
    hosts: Iterable[str],
    config: DiscoveryConfig = DiscoveryConfig(),
    *,
    probes: Sequence[tuple[_Probe, str]] | None = None,
) -> AsyncGenerator[HostStatus, None]:
    """Probe ``hosts`` (addresses) and yield each one's :class:`HostStatus` as it is known.

    ``probes`` replaces the transports (tests): pairs of a transport and its kind,
    ``tcp``, ``udp`` or ``icmp``.
    """
    if probes is None:
        chosen: list[tuple[_Probe, str]] = [(TcpConnectTransport(), "tcp")]
        if config.udp_port is not None:
            chosen.append((UdpTransport(lambda port: [b""]), "udp"))
        if config.icmp:
            chosen.append((IcmpEchoTransport(), "icmp"))
        probes = chosen
    run = _Discovery(config, probes)
    loop = asyncio.get_running_loop()
    for probe, _ in probes:
        probe.open(loop, run.deliver)
    limit = asyncio.Semaphore(config.concurrency)

    async def one(address: str) -> HostStatus:
        async with limit:
            return await run.host(address)

    tasks = [loop.create_task(one(address)) for address in hosts]
    try:
        for finished in asyncio.as_completed(tasks):
            yield await finished
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for probe, _ in probes:
            probe.close()
