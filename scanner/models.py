"""The data portprobe passes around: frozen, typed, and free of I/O.

Rules:
- A port's outcome is data: a :class:`PortState` with a :class:`Reason`, never an exception.
- Settings travel as one frozen keyword-only :class:`ScanConfig`.
- Nothing here imports anything else from the package, so every module may import it.
"""

from __future__ import annotations

import enum
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Literal, NamedTuple


class Proto(enum.StrEnum):
    """Transport protocol of a probed port."""

    TCP = "tcp"
    UDP = "udp"


class Port(NamedTuple):
    """A port of one protocol: what a scan probes on each host (``53/udp``)."""

    protocol: Proto
    number: int

    def __str__(self) -> str:
        return f"{self.number}/{self.protocol.value}"


class PortState(enum.StrEnum):
    """What a port was found to be, with nmap's names.

    ``closed|filtered`` is only given by the UDP fast mode (nmap's
    ``--defeat-icmp-ratelimit``): no answer came, and the scan did not wait for the
    target's rate-limited ICMP errors that would have told closed from filtered.
    """

    OPEN = "open"
    CLOSED = "closed"
    FILTERED = "filtered"
    OPEN_FILTERED = "open|filtered"
    CLOSED_FILTERED = "closed|filtered"


class Reason(enum.StrEnum):
    """Why a port got its state; the names are nmap's ``--reason`` names."""

    SYN_ACK = "syn-ack"  # TCP connect completed
    CONN_REFUSED = "conn-refused"  # TCP RST in answer to our SYN
    NO_RESPONSE = "no-response"  # nothing came back before the last timeout
    HOST_UNREACH = "host-unreach"  # ICMP host unreachable (or no ARP/NDP answer)
    NET_UNREACH = "net-unreach"  # ICMP net unreachable, or no route at all
    ADMIN_PROHIBITED = "admin-prohibited"  # ICMP administratively prohibited
    PORT_UNREACH = "port-unreach"  # ICMP port unreachable (UDP closed)
    PROTO_UNREACH = "proto-unreach"  # ICMP protocol unreachable
    UDP_RESPONSE = "udp-response"  # a datagram came back
    HOST_DOWN = "host-down"  # the host was given up on (e.g. it never resolved)
    ERROR = "error"  # a local error the scanner could not map to the network
    ECHO_REPLY = "echo-reply"  # an ICMP echo was answered (host discovery, not a port)


class Attestation(enum.StrEnum):
    """How much a port's IANA label is worth (``scanner.registry.attestation`` decides)."""

    COMMON = "common"  # named, and among the 1,000 ports found open most often
    OBSCURE = "obscure"  # named, but rarely seen listening
    RESERVED = "reserved"  # set aside by IANA: no service should use it
    UNASSIGNED = "unassigned"  # no service is assigned
    DYNAMIC = "dynamic"  # 49152-65535 without a name: free for any use


class Verdict(enum.StrEnum):
    """What an open port's evidence says about its label (``scanner.assess`` decides)."""

    CONSISTENT = "consistent"  # it speaks what the registry names (any of its names)
    CUSTOMARY = "customary"  # it speaks a documented unofficial use of the port
    CONTRADICTS = "contradicts"  # it speaks something else
    UNRECOGNISED = "unrecognised"  # it answers, but with nothing portprobe can name
    UNVERIFIED = "unverified"  # nothing was seen (or nothing was asked)


class Judgement(enum.StrEnum):
    """A policy's (``--expect``) word on an open port."""

    ALLOWED = "allowed"
    VIOLATION = "violation"


#: The attestations on which an unrecognised answer is an alarm: the label, if any, is weak.
WEAK_ATTESTATIONS = frozenset({Attestation.OBSCURE, Attestation.UNASSIGNED, Attestation.RESERVED})


@dataclass(frozen=True, slots=True, kw_only=True)
class Assessment:
    """What the registry claims about a port, what the port was seen to speak, and the verdict.

    ``label`` and ``label_description`` are the IANA registration (every current name of
    the port, "/"-separated when their descriptions differ: ``urd/submissions``);
    ``range`` is ``system``, ``registered`` or ``dynamic``; ``attestation`` is how much the
    label is worth (:class:`Attestation`). ``evidence`` and ``evidence_detail`` are what an
    open port was seen to speak (empty when nothing was seen or nothing was probed);
    ``verdict`` compares the two (:class:`Verdict`; empty for ports that are not open);
    ``warning`` starts with "label is not evidence" where the label is contradicted, or
    weak and unconfirmed. ``policy`` is empty unless the scan was given a policy
    (``--expect``): then an open port is ``allowed`` or ``violation`` (:class:`Judgement`).
    ``product``, ``version``, ``evidence_probe``, ``evidence_rule`` and
    ``evidence_excerpt`` are the evidence trail (see ``scanner.protocols.Evidence``).
    """

    label: str = ""
    label_description: str = ""
    range: str = ""
    attestation: Attestation | Literal[""] = ""
    evidence: str = ""
    evidence_detail: str = ""
    verdict: Verdict | Literal[""] = ""
    warning: str = ""
    policy: Judgement | Literal[""] = ""
    product: str = ""
    version: str = ""
    evidence_probe: str = ""
    evidence_rule: str = ""
    evidence_excerpt: str = ""

    @property
    def alarm(self) -> bool:
        """Whether the verdict is an alarm (``!!`` in the table): the port contradicts its
        label, or answers unrecognisably on an obscure, unassigned or reserved port."""
        if self.verdict == Verdict.CONTRADICTS:
            return True
        return self.verdict == Verdict.UNRECOGNISED and self.attestation in WEAK_ATTESTATIONS


@dataclass(frozen=True, slots=True)
class Result:
    """The final outcome of probing one port of one host.

    ``host`` is the address as text; ``hostname`` is the name the user gave, if any.
    ``rtt`` is the round-trip time of the answering try in seconds (None without an answer).
    ``tries`` counts the probes sent. ``timestamp`` is a Unix time (UTC) when the result was final.
    ``assessment`` is added by the results layer (label, evidence, verdict); the engine
    leaves it None.
    """

    host: str
    port: int
    protocol: Proto
    state: PortState
    reason: Reason
    hostname: str | None = None
    rtt: float | None = None
    tries: int = 1
    timestamp: float = 0.0
    assessment: Assessment | None = None

    def assessed(self, assessment: Assessment | None) -> Result:
        """This result with ``assessment``: ``dataclasses.replace``, without its cost (the
        results path assesses every reported port, a million with ``--all``)."""
        return make_result(
            self.host, self.port, self.protocol, self.state, self.reason,
            self.hostname, self.rtt, self.tries, self.timestamp, assessment,
        )  # fmt: skip


def _result_maker() -> Callable[..., Result]:
    """The fastest way to make a :class:`Result`: every field, in order, positionally.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``: 1.2 us
    a result, a sixth of a probe's CPU in a sweep. Setting the slots through their
    descriptors makes the same object in a third of that. Should ``Result`` gain a field
    or a ``__post_init__`` this does not know, its own constructor is used.
    """
    known = ("host", "port", "protocol", "state", "reason", "hostname", "rtt", "tries",
             "timestamp", "assessment")  # fmt: skip
    if tuple(f.name for f in fields(Result)) != known or hasattr(Result, "__post_init__"):
        return Result
    new = object.__new__
    (s_host, s_port, s_protocol, s_state, s_reason, s_hostname, s_rtt, s_tries, s_timestamp,
     s_assessment) = (getattr(Result, name).__set__ for name in known)  # fmt: skip

    def make(
        host: str,
        port: int,
        protocol: Proto,
        state: PortState,
        reason: Reason,
        hostname: str | None,
        rtt: float | None,
        tries: int,
        timestamp: float,
        assessment: Assessment | None = None,
    ) -> Result:
        result: Result = new(Result)
        s_host(result, host)
        s_port(result, port)
        s_protocol(result, protocol)
        s_state(result, state)
        s_reason(result, reason)
        s_hostname(result, hostname)
        s_rtt(result, rtt)
        s_tries(result, tries)
        s_timestamp(result, timestamp)
        s_assessment(result, assessment)
        return result

    return make


#: ``make_result(host, port, protocol, state, reason, hostname, rtt, tries, timestamp,
#: assessment=None)``: a :class:`Result`, made fast (the engine makes one a probe, the
#: results layer a copy a reported port, a report reader one a record).
make_result = _result_maker()


@dataclass(frozen=True, slots=True)
class ClosedPorts:
    """Closed ports of one host, with one reason, in bulk: what a scan's worker processes
    send instead of a :class:`Result` per closed port (the usual answer, by far).

    ``ports``, ``rtts`` and ``tries`` are parallel columns; an RTT below zero means none
    (a :class:`Result`'s ``rtt`` None). ``timestamp`` is the block's, shared by its ports.
    ``assessments``, when set, are the ports' assessments, in order (the results layer
    adds them when closed ports are reported). :meth:`results` gives exactly the
    :class:`Result` s the block stands for; ``len(block)`` is how many.
    """

    host: str
    hostname: str | None
    protocol: Proto
    reason: Reason
    ports: array[int]
    rtts: array[float]
    tries: array[int]
    timestamp: float
    assessments: Sequence[Assessment] | None = None

    def __len__(self) -> int:
        return len(self.ports)

    def results(self) -> list[Result]:
        """The block as one :class:`Result` a port, in order."""
        host, hostname, protocol, reason = self.host, self.hostname, self.protocol, self.reason
        stamp, make, closed = self.timestamp, make_result, PortState.CLOSED
        assessments = self.assessments or (None,) * len(self.ports)
        return [
            make(host, port, protocol, closed, reason, hostname, None if rtt < 0 else rtt,
                 tries, stamp, assessment)
            for port, rtt, tries, assessment in zip(
                self.ports, self.rtts, self.tries, assessments, strict=True
            )
        ]  # fmt: skip

    def assessed(self, assessments: Sequence[Assessment]) -> ClosedPorts:
        """This block with ``assessments`` (one a port, in order)."""
        return ClosedPorts(
            self.host, self.hostname, self.protocol, self.reason, self.ports, self.rtts,
            self.tries, self.timestamp, assessments,
        )  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    """Adaptive per-probe timeout bounds, in seconds (nmap's ``--*-rtt-timeout`` options).

    The timeout of a probe is ``srtt + 4 * rttvar`` (RFC 6298) of the host it goes to,
    clamped to ``[min_rtt_timeout, max_rtt_timeout]``; before the first answer from a host
    the scan-wide estimate is used, and before any answer at all ``initial_rtt_timeout``.
    """

    initial_rtt_timeout: float = 1.0
    min_rtt_timeout: float = 0.1
    max_rtt_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not 0 < self.min_rtt_timeout <= self.max_rtt_timeout:
            raise ValueError("need 0 < min_rtt_timeout <= max_rtt_timeout")
        if self.initial_rtt_timeout <= 0:
            raise ValueError("initial_rtt_timeout must be positive")


MAX_WORKERS = 64
"""The most worker processes one scan may fork. More only cost time on any machine this
runs on (2,000 took 11.8 s where 4 took 0.44 s) and descriptors, and a report handed to
``--resume`` must not be able to fork thousands."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanConfig:
    """Everything that shapes a scan except what to scan.

    ``concurrency`` is the most probes in flight at once; the engine lowers it below the
    process's file-descriptor limit. ``rate`` caps probes sent per second (None: no cap).
    ``retries`` is how many times an unanswered probe is sent again. ``seed`` fixes the
    probe order (None: a random order). ``workers`` is how many processes share the scan
    (None: one per CPU, up to four, for scans large enough to gain from it; 1: this
    process only; at most :data:`MAX_WORKERS`). ``sequential`` probes host by host, ports
    in order (nmap's ``-r``) instead of the seeded random order.
    """

    concurrency: int = 1024
    rate: float | None = None
    retries: int = 2
    timing: Timing = Timing()
    seed: int | None = None
    workers: int | None = None
    defeat_icmp_ratelimit: bool = False
    sequential: bool = False

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be positive")
        if self.retries < 0:
            raise ValueError("retries must not be negative")
        if self.workers is not None and not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"workers must be from 1 to {MAX_WORKERS}")


SILENCE_RTTS = 10  # round trips a silent port is waited for, above the floor (EvidenceConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class EvidenceConfig:
    """Budgets of evidence gathering.

    ``timeout``: seconds for one port, all its attempts running concurrently within it.
    ``max_bytes``: most bytes read per connection. ``concurrency``: most ports at once.
    ``silence_floor``: the least time a port that sends nothing is waited for, however
    short its host's RTT (see :meth:`silence_wait`); at most ``timeout`` is used.
    """

    timeout: float = 2.0
    max_bytes: int = 8192
    concurrency: int = 32
    # A greeting 1 s late (a greet pause; tests/test_evidence_lab.py) with a fifth to spare.
    silence_floor: float = 1.2

    def __post_init__(self) -> None:
        """Reject budgets that cannot work."""
        if not self.timeout > 0:
            raise ValueError(f"timeout must be > 0, not {self.timeout!r}")
        if self.max_bytes < 64:
            raise ValueError(f"max_bytes must be >= 64, not {self.max_bytes!r}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, not {self.concurrency!r}")
        if not self.silence_floor > 0:
            raise ValueError(f"silence_floor must be > 0, not {self.silence_floor!r}")

    def silence_wait(self, rtt: float | None) -> float:
        """Seconds a port that sends nothing on any connection is waited for.

        With the host's RTT known (a scan's ``Result.rtt``): ``SILENCE_RTTS`` round trips,
        at least ``silence_floor`` (a server with a greet pause greets late, and must
        still be identified) and at most ``timeout``. Without one: ``timeout``.
        """
        if rtt is None or not rtt >= 0:
            return self.timeout
        return min(self.timeout, max(self.silence_floor, SILENCE_RTTS * rtt))
