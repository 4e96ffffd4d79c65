"""What an open port was seen to speak: the sans-I/O probes of ``protocols/`` over TCP.

Rules and theory:
- For one port three attempts start at once, each on its own connection, so a silent
  port costs one timeout, not the sum of three:

  1. *passive*: connect and listen. A banner (SSH, SMTP, FTP, POP3, IMAP, MySQL, VNC,
     telnet...) is classified by ``protocols.banner``. If the server stays silent for
     half its silence wait (below), an inline Redis ``PING`` goes out on the same
     connection; a greeting that comes instead of a reply is still classified.
  2. *http*: send ``GET /`` (``protocols.http``, h11) and parse the answer: status,
     Server header, title. An answer that is not HTTP may still be Redis's.
  3. *tls*: a TLS handshake (``protocols.tls``: ``ssl.SSLObject`` over memory buffers,
     no verification), then the same ``GET /`` inside TLS.

- Combining, strongest first: an identified banner or Redis reply; TLS with HTTP inside
  ("https"); plain HTTP; TLS alone ("tls"); an unidentified banner (service ""); nothing.
  TLS-with-HTTP outranks plain HTTP because a port that completes a TLS handshake speaks
  TLS: its answer to plain HTTP is an error page ("400 The plain HTTP request was sent to
  HTTPS port"), never the reverse.
- The verdict does not wait for the budget to run out. Once the strongest possible result
  is in, or every attempt has finished, it is final. Once an HTTP-grade result is in,
  the attempts that could still beat it get a grace period as long again as that result
  took (at least ``MIN_GRACE``): a server that speaks first, or answers a ClientHello,
  does so within about the same round trips. An attempt that has started to show its
  protocol (banner bytes without their line end, TLS handshake records) is waited for,
  up to the budget.
- A port that has sent nothing on any connection is given up after its *silence wait*:
  when the caller passes the host's RTT (the scan measured it), ``SILENCE_RTTS`` round
  trips, but never less than ``silence_floor`` (servers with a greet pause greet late,
  and must still be identified) nor more than ``timeout``; without an RTT, ``timeout``.
  So a silent port on a fast link costs the floor, not the whole budget; once a byte has
  come on any connection, the attempts get the whole budget.
- Bounds: the whole port gets ``timeout`` seconds (from when it gets its turn: at most
  ``concurrency`` ports are probed at once, fewer under a low open-file limit so that
  the process keeps descriptors to spare), a connection reads at most ``max_bytes``
  (the TLS handshake, certificate chain included, is bounded by ``tls.MAX_HANDSHAKE``
  instead), and a probe returns within ``timeout`` + ``SLACK`` whatever happens. Network
  errors end an attempt, never the probe; errors of this machine (out of descriptors or
  local ports, while the scan itself holds most of them) are retried within the budget.
  Every connection is closed with a RST (``SO_LINGER`` 0), as the scan's own connects
  are: no TIME_WAIT left behind. Sockets are the transport's (``transport.streams``:
  connect, bounded reads, the RST; ``transport.udp``: the UDP exchange); this module
  opens none of its own.

UDP (:meth:`Prober.probe_udp`):

- One exchange per port (``transport.udp.exchange``, the one the scan's UDP probes use:
  a connected socket, empty datagrams sent too) sends every payload the port has
  (``transport.udp.udp_payloads``), and sends them all once more at ``RESEND_AFTER`` of
  the budget if nothing came back (a datagram or its answer may be lost). The first
  reply within ``timeout`` decides, at most ``max_bytes`` of it, through
  ``protocols.udp.identify``; no reply is :data:`NO_EVIDENCE`.
- ICMP errors (port or host unreachable) mean no evidence, never an exception, and end
  the probe at once.
- UDP probes share the TCP probes' ``concurrency`` turns and ``timeout`` + ``SLACK`` bound.
"""

from __future__ import annotations

import asyncio
import resource
import ssl
from dataclasses import dataclass

from scanner.protocols import NO_EVIDENCE, Evidence, banner, http, join_detail, redis, tls, udp
from scanner.transport import FD_RESERVE
from scanner.transport import udp as udp_transport
from scanner.transport.streams import BoundedReader, abort, connect

__all__ = ["MIN_GRACE", "NO_EVIDENCE", "SLACK", "Evidence", "EvidenceConfig", "Prober", "rank"]

MIN_GRACE = 0.05  # seconds other attempts may still beat an HTTP-grade result
SLACK = 0.25  # seconds past the timeout a probe may take to tidy up, at most
SETTLE = 0.25  # seconds to wait for the rest of an identified banner without its line end
PING_AFTER = 0.5  # share of the silence wait a silent server gets before the Redis PING
SILENCE_RTTS = 10  # round trips a silent port is waited for, above the floor
CONNECTIONS_PER_PORT = 3  # passive, HTTP and TLS attempts at once
RESEND_AFTER = 0.5  # share of the budget after which unanswered UDP payloads go out again

# Ranks of evidence, strongest last (see the module's rules).
_NONE, _UNIDENTIFIED, _TLS, _HTTP, _HTTPS, _IDENTIFIED = range(6)


def rank(evidence: Evidence | None) -> int:
    """How strong ``evidence`` is: 0 for none up to 5 for an identified banner or reply."""
    if evidence is None or not evidence.proof:
        return _NONE
    if not evidence.service:
        return _UNIDENTIFIED
    return {"tls": _TLS, "http": _HTTP, "tls+http": _HTTPS}.get(evidence.proof, _IDENTIFIED)


@dataclass(frozen=True, slots=True, kw_only=True)
class EvidenceConfig:
    """Budgets of evidence gathering.

    ``timeout``: seconds for one port, all its attempts running concurrently within it.
    ``max_bytes``: most bytes read per connection. ``concurrency``: most ports at once.
    ``silence_floor``: the least time a port that sends nothing is waited for, however
    short its RTT (see the module's rules); at most ``timeout`` is used.

    These are the defaults of the command line's options too (``--evidence-timeout``).
    """

    timeout: float = 2.0
    max_bytes: int = 8192
    concurrency: int = 32
    silence_floor: float = 1.5

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
        """Seconds a port that sends nothing is waited for, given its host's RTT (if known)."""
        if rtt is None or not rtt >= 0:
            return self.timeout
        return min(self.timeout, max(self.silence_floor, SILENCE_RTTS * rtt))


class Prober:
    """Finds out what open ports speak; see the module's rules.

    Example::

        prober = Prober(EvidenceConfig())
        evidence = await prober.probe("198.18.0.2", socket.AF_INET, 2451)
        # Evidence(service='http', detail="lab-http/1.0; 200; title 'lab page'", proof='http')
        evidence = await prober.probe_udp("198.18.0.2", socket.AF_INET, 123)
        # Evidence(service='ntp', detail='v4; server; stratum 2; refid 198.18.0.254', proof='ntp')
    """

    def __init__(self, config: EvidenceConfig = EvidenceConfig()) -> None:
        """A prober with ``config``'s budgets; it may serve several event loops in turn."""
        self.config = config
        self._semaphore: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _turns(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._loop is not loop:
            self._semaphore = asyncio.Semaphore(_ports_at_once(self.config.concurrency))
            self._loop = loop
        return self._semaphore

    async def probe(
        self, address: str, family: int, port: int, *, rtt: float | None = None
    ) -> Evidence:
        """What ``address``:``port`` (TCP, ``family`` AF_INET/AF_INET6) was seen to speak.

        ``rtt``: the host's round-trip time in seconds, if known (a scan's
        ``Result.rtt``); a port that sends nothing is then given up sooner (see
        :meth:`EvidenceConfig.silence_wait`). Returns :data:`NO_EVIDENCE` when nothing was
        identified; network errors never raise. Takes at most ``timeout`` + ``SLACK``
        seconds once its turn has come.
        """
        async with self._turns():
            try:
                async with asyncio.timeout(self.config.timeout + SLACK):
                    probe = _PortProbe(address, family, port, self.config, rtt)
                    return await probe.run()
            except TimeoutError:
                return NO_EVIDENCE

    async def probe_udp(self, address: str, family: int, port: int) -> Evidence:
        """What ``address``:``port`` (UDP, ``family`` AF_INET/AF_INET6) answered, if anything.

        ``address`` is an IP address (a name would be resolved with a blocking call).
        Sends the port's payloads (``protocols.udp.probes_for``), once more at half the
        budget if nothing came back, and identifies the first reply. Returns
        :data:`NO_EVIDENCE` for silence and for ICMP errors; network errors never raise.
        Takes at most ``timeout`` + ``SLACK`` seconds once its turn has come.
        """
        async with self._turns():
            try:
                async with asyncio.timeout(self.config.timeout + SLACK):
                    return await _probe_udp(address, family, port, self.config)
            except TimeoutError:
                return NO_EVIDENCE


def _ports_at_once(concurrency: int) -> int:
    """``concurrency``, lowered so that probes leave descriptors for the rest of the process.

    A TCP port takes three connections at once. The scan's engine keeps ``FD_RESERVE``
    descriptors of the open-file limit free for the process; the prober keeps as many
    again free, so that output files and the registry can still be opened while both run.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return concurrency
    return max(1, min(concurrency, (soft - 2 * FD_RESERVE) // CONNECTIONS_PER_PORT))


class _Attempt:
    """One connection's attempt; its task fills ``best``/``partial`` and sets ``done``."""

    ceiling = _IDENTIFIED  # the strongest evidence this attempt can still produce

    def __init__(self, probe: _PortProbe) -> None:
        self.p = probe
        self.best: Evidence | None = None  # final for this attempt, so far
        self.partial: Evidence | None = None  # what would be shown if time ran out now
        self.found_at = 0.0
        self.promising = False  # the peer has started to speak this attempt's protocol
        self.done = False
        self._readers: list[BoundedReader] = []

    def reader(self, reader: asyncio.StreamReader, limit: int) -> BoundedReader:
        """``reader``, bounded to ``limit`` bytes, and counted for :attr:`heard`."""
        bounded = BoundedReader(reader, limit)
        self._readers.append(bounded)
        return bounded

    @property
    def heard(self) -> bool:
        """Whether the peer has sent anything on this attempt's connection."""
        return any(r.total for r in self._readers)

    def found(self, evidence: Evidence | None) -> None:
        if evidence is not None and rank(evidence) > rank(self.best):
            self.best = evidence
            self.found_at = asyncio.get_running_loop().time()

    async def run(self) -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout_at(self.p.deadline):
                # (An error of this machine is retried: the budget's timeout still applies.)
                reader, writer = await connect(self.p.address, self.p.family, self.p.port)
                await self.talk(reader, writer)
        except (OSError, EOFError, ValueError):
            pass  # refused, reset, unreachable, timed out, not this protocol: no evidence
        finally:
            self.done = True
            self.promising = False
            if writer is not None:
                abort(writer)

    async def talk(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class _Passive(_Attempt):
    """Listen for a banner; after half the budget of silence, try an inline Redis PING."""

    async def talk(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        bounded = self.reader(reader, self.p.config.max_bytes)
        data = bytearray()
        ping_at = self.p.started + self.p.quiet * PING_AFTER
        settle_at: float | None = None
        while not bounded.full:
            wait_until = settle_at or (ping_at if not data else self.p.deadline)
            try:
                async with asyncio.timeout_at(wait_until):
                    chunk = await bounded.read()
            except TimeoutError:
                if loop.time() >= self.p.deadline:
                    raise
                if settle_at is not None:
                    break  # identified, and no line end came: take it as it is
                writer.write(redis.build_probe())
                await self._redis_reply(reader)
                return
            if not chunk:
                break
            data += chunk
            self.promising = True
            self.partial = banner.classify(bytes(data))
            if banner.settled(bytes(data)):
                self.found(self.partial)
                self.promising = False
                if rank(self.partial) == _IDENTIFIED:
                    return
            elif rank(self.partial) == _IDENTIFIED and settle_at is None:
                settle_at = min(loop.time() + SETTLE, self.p.deadline)
        self.found(self.partial)

    async def _redis_reply(self, reader: asyncio.StreamReader) -> None:
        bounded = self.reader(reader, 512)
        reply = bytearray()
        while chunk := await bounded.read():
            reply += chunk
            if b"\n" in reply:
                break
        found = redis.parse_reply(bytes(reply))
        if found is None:
            # A server with a greet pause greets instead of replying: a greeting is evidence.
            greeting = banner.classify(bytes(reply))
            found = greeting if rank(greeting) == _IDENTIFIED else None
        self.found(found)


class _Http(_Attempt):
    """``GET /`` in clear; an answer that is not HTTP may still be Redis's."""

    async def talk(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(http.build_request(http.authority(self.p.address, self.p.port)))
        parser = http.ResponseParser()
        bounded = self.reader(reader, self.p.config.max_bytes)
        head = bytearray()
        while not parser.done and not bounded.full:
            chunk = await bounded.read()
            if not chunk:
                parser.close()
                break
            head += chunk[: 512 - len(head)]
            parser.feed(chunk)
            self.partial = parser.evidence()
        self.found(parser.evidence() or redis.parse_reply(bytes(head)))


class _Tls(_Attempt):
    """A TLS handshake, then ``GET /`` inside it."""

    ceiling = _HTTPS

    async def talk(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = tls.TlsClient()
        client.handshake()
        writer.write(client.data_to_send())
        if not await self._handshake(client, reader, writer):
            return
        tls_detail = client.describe()
        self.found(Evidence("tls", tls_detail, "tls"))
        self.promising = True

        client.send(
            http.build_request(http.authority(self.p.address, self.p.port, default_port=443))
        )
        writer.write(client.data_to_send())
        parser = http.ResponseParser()
        bounded = self.reader(reader, self.p.config.max_bytes)
        while not parser.done and not bounded.full:
            chunk = await bounded.read()
            client.receive(chunk)
            parser.feed(client.read(self.p.config.max_bytes))
            writer.write(client.data_to_send())  # key updates, alerts: usually nothing
            if not chunk or client.closed:
                parser.close()
            if (seen := parser.detail()) is not None:
                self.partial = Evidence("https", join_detail(tls_detail, seen), "tls+http")
        self.found(self.partial)

    async def _handshake(
        self, client: tls.TlsClient, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Run the handshake; True once complete. Evidence of TLS is kept even if it fails."""
        first = bytearray()
        bounded = self.reader(reader, tls.MAX_HANDSHAKE)
        while not bounded.full:
            chunk = await bounded.read()
            if len(first) < 7:
                first += chunk[: 7 - len(first)]
                kind = tls.record_kind(bytes(first)) if len(first) >= 3 else ""
                if kind is None:
                    return False  # the server said something, and it is not TLS
                if kind == "alert":
                    self.partial = tls.alert_evidence(bytes(first))
                    if len(first) >= 7:
                        self.found(self.partial)
                        return False
                elif kind == "handshake":
                    self.promising = True
                    self.partial = Evidence("tls", "handshake incomplete", "tls")
            client.receive(chunk)
            try:
                done = client.handshake()
            except ssl.SSLError:
                self.found(self.partial)  # it spoke TLS, then refused us
                return False
            writer.write(client.data_to_send())
            if done:
                return True
            if not chunk:
                break
        self.found(self.partial)
        return False


class _PortProbe:
    """The three attempts on one port, and the verdict over them."""

    def __init__(
        self, address: str, family: int, port: int, config: EvidenceConfig, rtt: float | None
    ) -> None:
        self.address = address
        self.family = family
        self.port = port
        self.config = config
        self.quiet = config.silence_wait(rtt)  # seconds a port that sends nothing gets
        self.started = 0.0
        self.deadline = 0.0

    async def run(self) -> Evidence:
        loop = asyncio.get_running_loop()
        self.started = loop.time()
        self.deadline = self.started + self.config.timeout
        attempts: list[_Attempt] = [_Passive(self), _Http(self), _Tls(self)]
        tasks = [asyncio.create_task(a.run()) for a in attempts]
        try:
            while True:
                verdict, wake = self._decide(attempts, loop.time())
                if verdict is not None:
                    return verdict
                pending = [t for t in tasks if not t.done()]
                done, _ = await asyncio.wait(
                    pending,
                    timeout=max(wake - loop.time(), 0.0),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for task in done:
                    task.result()  # a bug in an attempt surfaces here; network errors do not
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _decide(self, attempts: list[_Attempt], now: float) -> tuple[Evidence | None, float]:
        """(final evidence, or None and when to decide again)."""
        leader = max(attempts, key=lambda a: rank(a.best))
        best = leader.best
        contenders = [a for a in attempts if not a.done and a.ceiling > rank(best)]
        if not contenders or now >= self.deadline:
            candidates = [e for a in attempts for e in (a.best, a.partial) if e is not None]
            return max(candidates, key=rank, default=NO_EVIDENCE), 0.0
        if best is None or rank(best) < _HTTP:
            if any(a.heard for a in attempts):
                return None, self.deadline
            quiet_until = self.started + self.quiet
            if now >= quiet_until:
                return NO_EVIDENCE, 0.0  # silent on every connection: see the module's rules
            return None, min(quiet_until, self.deadline)
        if any(a.promising for a in contenders):
            # Look again soon: an attempt that stops being promising does not finish.
            return None, min(now + MIN_GRACE, self.deadline)
        grace_end = leader.found_at + max(MIN_GRACE, leader.found_at - self.started)
        if now >= grace_end:
            return best, 0.0
        return None, min(grace_end, self.deadline)


# --------------------------------------------------------------------------- UDP


async def _probe_udp(address: str, family: int, port: int, config: EvidenceConfig) -> Evidence:
    """The UDP probe of one port (see the module's rules)."""
    reply = await udp_transport.exchange(
        address,
        family,
        port,
        udp_transport.udp_payloads(port),
        config.timeout,
        config.timeout * RESEND_AFTER,
    )
    return NO_EVIDENCE if reply is None else udp.identify(port, reply[: config.max_bytes])
