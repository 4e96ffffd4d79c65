"""Round-trip times: per host and protocol, and scan-wide, with the timeouts they give.

Rules and theory:
- The timeout of an attempt adapts as in nmap and RFC 6298: ``srtt + 4 * rttvar`` of the
  host (or of the whole scan, before the host has answered), clamped to the configured
  floor and ceiling (:class:`~scanner.models.Timing`).
- TCP and UDP are estimated apart, per host and scan-wide: a UDP answer may come from an
  application, or be starved by a TCP sweep sharing the loop. A host's UDP estimate is
  keyed by the bitwise complement of its index, so one dict holds both.
- After ``FULL_SAMPLES`` answers only every eighth one is folded in: the estimate is
  settled by then, and a full sweep would otherwise spend a tenth of its time here.
"""

from __future__ import annotations

from scanner.models import Timing


class RttEstimate:
    """Smoothed RTT and its variance (RFC 6298), with the timeout they give."""

    __slots__ = ("answers", "rttvar", "srtt", "timeout")
    FULL_SAMPLES = 32

    def __init__(self, sample: float, floor: float, ceiling: float) -> None:
        self.answers = 1
        self.srtt = sample
        self.rttvar = sample / 2
        self.timeout = min(ceiling, max(floor, self.srtt + 4 * self.rttvar))

    def add(self, sample: float, floor: float, ceiling: float) -> None:
        """Count one answer and fold its RTT into the estimate (thinned, see above)."""
        answers = self.answers = self.answers + 1
        if answers <= self.FULL_SAMPLES or not answers & 7:
            self.fold(sample, floor, ceiling)

    def fold(self, sample: float, floor: float, ceiling: float) -> None:
        """Fold one RTT into the estimate (RFC 6298's gains: 1/4 and 1/8)."""
        self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - sample)
        self.srtt = 0.875 * self.srtt + 0.125 * sample
        self.timeout = min(ceiling, max(floor, self.srtt + 4 * self.rttvar))


class RttTable:
    """The estimates of one scan: ``hosts`` (by index, ``~index`` for UDP), ``tcp``, ``udp``.

    The sending loop reads the attributes directly (the hot path); :meth:`add` writes them.
    """

    __slots__ = ("ceiling", "floor", "hosts", "tcp", "udp")

    def __init__(self, timing: Timing) -> None:
        self.floor, self.ceiling = timing.min_rtt_timeout, timing.max_rtt_timeout
        self.hosts: dict[int, RttEstimate] = {}
        self.tcp: RttEstimate | None = None
        self.udp: RttEstimate | None = None

    def add(self, host: int, udp: bool, sample: float) -> float | None:
        """Fold in one answer's RTT; the scan's first timeout of the protocol, if it is new."""
        floor, ceiling, full = self.floor, self.ceiling, RttEstimate.FULL_SAMPLES
        key = ~host if udp else host
        estimate = self.hosts.get(key)
        # (RttEstimate.add, inlined: this runs for every answer of a sweep.)
        if estimate is None:
            self.hosts[key] = RttEstimate(sample, floor, ceiling)
        else:
            answers = estimate.answers = estimate.answers + 1
            if answers <= full or not answers & 7:
                estimate.fold(sample, floor, ceiling)
        scan = self.udp if udp else self.tcp
        if scan is not None:
            answers = scan.answers = scan.answers + 1
            if answers <= full or not answers & 7:
                scan.fold(sample, floor, ceiling)
            return None
        scan = RttEstimate(sample, floor, ceiling)
        if udp:
            self.udp = scan
        else:
            self.tcp = scan
        return scan.timeout

    def of_udp(self, host: int) -> RttEstimate | None:
        """The UDP estimate of a host, else of the scan."""
        return self.hosts.get(~host) or self.udp
