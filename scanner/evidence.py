"""What an open port was seen to speak: the sans-I/O probes of ``protocols/`` over TCP.

Rules and theory:
- For one port three attempts run side by side, each on its own connection, so a silent
  port costs one timeout, not the sum of three. The passive one starts first and listens
  alone for a head start (``HEAD_START_RTTS`` round trips, at least ``HEAD_START``, at
  most ``MAX_HEAD_START``): a server that greets within it (SSH, SMTP, FTP...) is named
  on that one connection, and is not sent an HTTP request, a ClientHello and probes it
  will never answer. (They cost the server a connection each: a forked sshd, a slot of
  its ``MaxStartups``.) The others start when the head start ends or the passive attempt
  is over, whichever comes first:

  1. *passive*: connect and listen. A banner (SSH, SMTP, FTP, POP3, IMAP, MySQL, VNC,
     telnet...) is classified by ``protocols.banner``, then by the decoders of the
     listening probes of ``protocols.tcp`` (``passive_probes``).
  2. *http*: send ``GET /`` (``protocols.http``, h11) and parse the answer: status,
     Server header, title. An answer that is not HTTP may still be Redis's; anything
     else it draws is kept as an unrecognised reply.
  3. *tls*: a TLS handshake (``protocols.tls``: ``ssl.SSLObject`` over memory buffers,
     no verification). Inside it, a server that speaks first (IMAPS, POP3S, SMTPS,
     FTPS) is read and classified; otherwise the same ``GET /`` goes in.

- Beside them, every *active probe* of ``protocols.tcp`` (LDAP, SMB, PostgreSQL, AMQP,
  ...) gets a connection of its own, at most ``PROBES_AT_ONCE`` at a time per port, in
  the order of their rank, whatever the port's registry label says: labels lie. A
  probe gives up its turn when its reply is decoded, when the peer closes, or after
  ``probe_wait`` without a byte. A reply no decoder names is still evidence: it is kept,
  unrecognised (service ""), with an escaped excerpt of its first bytes.
- At most ``HOST_PORTS`` ports of one host are probed at once (each takes up to
  ``3 + PROBES_AT_ONCE`` connections), so that one host is not flooded.
- Combining, strongest first: an identified banner or probe reply; TLS with HTTP inside
  ("https"); plain HTTP; TLS alone ("tls"); an unrecognised reply (service ""); nothing.
  TLS-with-HTTP outranks plain HTTP because a port that completes a TLS handshake speaks
  TLS: its answer to plain HTTP is an error page ("400 The plain HTTP request was sent to
  HTTPS port"), never the reverse.
- The verdict does not wait for the budget to run out. Once the strongest possible result
  is in, or every attempt has finished, it is final. Once an HTTP-grade result is in,
  the attempts that could still beat it get a grace period as long again as that result
  took (at least ``MIN_GRACE``): a server that speaks first, or answers a ClientHello,
  does so within about the same round trips. Active probes still queued then start only
  within that grace: an HTTP server does not wait for every probe's ``probe_wait``. Nor
  do they start once the passive connection was closed at once (within ``probe_wait``)
  without a byte, twice (it connects again after the first): a port that closes a
  connection on which nothing was sent closes every connection of ours (nmap's
  "tcpwrapped"); the attempts already running finish. (Once is not enough: Xvfb under
  a scan's load was seen to drop one idle connection, and the X11 probe, queued, never
  ran.) An attempt that has started to show its protocol (banner bytes without their
  line end, TLS handshake records) is waited for, up to the budget.
- A port that has sent nothing on any connection is given up after its *silence wait*
  (``EvidenceConfig.silence_wait``): ``SILENCE_RTTS`` round trips, but never less than
  ``silence_floor`` (servers with a greet pause greet late, and must still be identified)
  nor more than ``timeout``; until an RTT is known, ``timeout``. The RTT is the smallest
  known: the caller's (the scan measured it) and the time each of the port's own
  connects took. Each is a round trip plus whatever delay the measuring process added (a
  busy scan worker measured 30-190 ms on a link of 0.03 ms), so the smallest is the
  closest. So a silent port on a fast link costs the floor, not the whole budget; once a
  byte has come on any connection, the attempts get the whole budget. (The wait is
  counted from the start, head start included: the probes of a silent port lose that
  much of it. Counting from the head start's end cost every silent port 30 ms and did
  not spare the X11 probe its occasional miss: Xvfb closed it unanswered.)
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
import contextlib
import dataclasses
import resource
import ssl
from collections.abc import AsyncIterator

from scanner.models import EvidenceConfig
from scanner.protocols import (
    NO_EVIDENCE,
    Evidence,
    banner,
    excerpt,
    h2,
    http,
    join_detail,
    redis,
    tcp,
    tls,
    udp,
)
from scanner.transport import FD_RESERVE
from scanner.transport import udp as udp_transport
from scanner.transport.streams import BoundedReader, abort, connect

__all__ = ["MIN_GRACE", "NO_EVIDENCE", "SLACK", "Evidence", "EvidenceConfig", "Prober", "rank"]

MIN_GRACE = 0.05  # seconds other attempts may still beat an HTTP-grade result
SLACK = 0.25  # seconds past the timeout a probe may take to tidy up, at most
SETTLE = 0.25  # seconds to wait for the rest of an identified banner without its line end
PROBE_WAIT = 0.15  # share of the budget an active probe waits for its first reply byte
MIN_PROBE_WAIT = 0.2  # seconds, at least
PROBES_AT_ONCE = 4  # active probes of one port running at once
HEAD_START = 0.03  # seconds the passive connection listens alone, at least
HEAD_START_RTTS = 3  # round trips it listens alone, if longer
MAX_HEAD_START = 0.2  # seconds, at most
HOST_PORTS = 24  # ports of one host probed at once
GREETING_WAIT = 0.3  # seconds a server inside TLS gets to speak first
# TLS-wrapped services that speak first, by the service of their greeting.
_OVER_TLS = {"imap": "imaps", "pop3": "pop3s", "smtp": "smtps", "ftp": "ftps", "nntp": "nntps"}
CONNECTIONS_PER_PORT = 3 + PROBES_AT_ONCE  # passive, HTTP, TLS, and the active probes
RESEND_AFTER = 0.5  # share of the budget after which unanswered UDP payloads go out again

# Ranks of evidence, strongest last (see the module's rules).
_NONE, _UNIDENTIFIED, _TLS, _HTTP, _HTTPS, _IDENTIFIED = range(6)
_SERVICE_RANKS = {"tls": _TLS, "http": _HTTP, "https": _HTTPS}
# HTTP/2 is HTTP: an h2c answer (lighttpd answers the preface by default) ranks with the
# HTTP/1.1 answer, which names the server, and confirms an HTTP label as well.
_SERVICE_ALIASES = {"http2": "http"}


def rank(evidence: Evidence | None) -> int:
    """How strong ``evidence`` is: 0 for none up to 5 for an identified banner or reply."""
    if evidence is None or not evidence.proof:
        return _NONE
    if not evidence.service:
        return _UNIDENTIFIED
    return _SERVICE_RANKS.get(evidence.service, _IDENTIFIED)


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
        self._hosts: dict[str, _HostTurns] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def _turns(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._loop is not loop:
            self._semaphore = asyncio.Semaphore(_ports_at_once(self.config.concurrency))
            self._hosts = {}
            self._loop = loop
        return self._semaphore

    @contextlib.asynccontextmanager
    async def _turn(self, address: str) -> AsyncIterator[None]:
        """A turn of the host (``HOST_PORTS`` at once), then of the process."""
        ports = self._turns()
        host = self._hosts.get(address)
        if host is None:
            host = self._hosts[address] = _HostTurns()
        host.users += 1
        try:
            async with host.turns, ports:
                yield
        finally:
            host.users -= 1
            if not host.users:  # nobody waits on this host: forget it
                del self._hosts[address]

    async def probe(
        self, address: str, family: int, port: int, *, rtt: float | None = None
    ) -> Evidence:
        """What ``address``:``port`` (TCP, ``family`` AF_INET/AF_INET6) was seen to speak.

        ``rtt``: the host's round-trip time in seconds, if known (a scan's
        ``Result.rtt``). A port that sends nothing is given up after the silence wait
        (:meth:`EvidenceConfig.silence_wait`) of the smallest RTT known: this one, or the
        time one of the port's own connects took. Returns :data:`NO_EVIDENCE` when nothing was
        identified; network errors never raise. Takes at most ``timeout`` + ``SLACK``
        seconds once its turn has come.
        """
        async with self._turn(address):
            try:
                async with asyncio.timeout(self.config.timeout + SLACK):
                    probe = _PortProbe(address, family, port, self.config, rtt)
                    return await probe.run()
            except TimeoutError:
                return NO_EVIDENCE

    async def sweep_udp(self, address: str, family: int, port: int) -> Evidence:
        """What a UDP port that answered nothing to its own payloads answers to the others.

        Sends every payload of ``protocols.udp.SWEEP`` the port did not get already, at
        once (the scan proved the port silent, so no ICMP error is spent on it), once more
        at half the budget, and identifies the first reply. :data:`NO_EVIDENCE` when it
        stays silent; a reply proves the port open. Bounded as :meth:`probe_udp`.
        """
        async with self._turn(address):
            try:
                async with asyncio.timeout(self.config.timeout + SLACK):
                    return await _probe_udp(address, family, port, self.config, udp.sweep_for(port))
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
        async with self._turn(address):
            try:
                async with asyncio.timeout(self.config.timeout + SLACK):
                    return await _probe_udp(address, family, port, self.config)
            except TimeoutError:
                return NO_EVIDENCE


class _HostTurns:
    """The ports of one host being probed, or waiting to be."""

    def __init__(self) -> None:
        self.turns = asyncio.Semaphore(HOST_PORTS)
        self.users = 0


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
    proof = ""  # what this attempt sent, as its evidence names it

    def __init__(self, probe: _PortProbe) -> None:
        self.p = probe
        self.best: Evidence | None = None  # final for this attempt, so far
        self.partial: Evidence | None = None  # what would be shown if time ran out now
        self.found_at = 0.0
        self.promising = False  # the peer has started to speak this attempt's protocol
        self.done = False
        self.unnamed = b""  # a reply no decoder of this attempt named, for _cross_decoded
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
                loop = asyncio.get_running_loop()
                start = loop.time()
                reader, writer = await connect(self.p.address, self.p.family, self.p.port)
                self.p.connected(loop.time() - start)
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

    async def read_by(self, bounded: BoundedReader, until: float) -> bytes | None:
        """The next chunk, or None when ``until`` comes first; the port's deadline, when it
        comes first, raises TimeoutError (the attempt is over)."""
        try:
            async with asyncio.timeout_at(min(until, self.p.deadline)):
                return await bounded.read()
        except TimeoutError:
            if asyncio.get_running_loop().time() >= self.p.deadline:
                raise
            return None


def greeting(data: bytes, proof: str = "banner") -> Evidence | None:
    """What a server's first bytes show: a banner rule's or a listening probe's evidence, or
    the bytes unrecognised (service ""); with the proof and an excerpt of the bytes."""
    found = banner.classify(data)
    if found is not None and not found.service:
        for probe in tcp.passive_probes():
            named = probe.decode(data[: probe.max_reply])
            if named is not None:
                found = named
                break
    return None if found is None else _with_trail(found, proof, data)


def _with_trail(evidence: Evidence, proof: str, data: bytes) -> Evidence:
    """``evidence`` with how it was seen (``proof``) and an excerpt of the bytes."""
    service = _SERVICE_ALIASES.get(evidence.service, evidence.service)
    return dataclasses.replace(evidence, service=service, proof=proof, excerpt=excerpt(data))


def _unrecognised(proof: str, data: bytes) -> Evidence:
    """A reply no decoder names: shown as it is (text or hex), with an excerpt."""
    return _with_trail(banner.unidentified(data, proof), proof, data)


def _cross_decoded(proof: str, data: bytes) -> Evidence | None:
    """What the other probes' decoders make of a reply that was not to their request.

    A server may answer a foreign request in its own protocol (ngircd answers HTTP with
    ``ERROR :... This is IRC!``): when nothing better was found, that still names it.
    """
    for probe in tcp.active_probes():
        named = probe.decode(data[: probe.max_reply])
        if named is not None and named.service:
            return _with_trail(named, f"{proof}>{probe.name}", data)
    return None


class _Passive(_Attempt):
    """Listen for a banner."""

    async def talk(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not await self._listen(reader):
            return
        # Closed at once, though we sent nothing. Once may be the server's own business (an
        # X server under a scan's load dropped one such connection); a port that closes
        # every connection of ours closes the next one as well (see the module's rules).
        abort(writer)
        reader, writer = await connect(self.p.address, self.p.family, self.p.port)
        try:
            if await self._listen(reader):
                self.p.closes_at_once = True
        finally:
            abort(writer)

    async def _listen(self, reader: asyncio.StreamReader) -> bool:
        """Read a greeting; whether the peer closed at once (within ``probe_wait``) without
        a byte."""
        loop = asyncio.get_running_loop()
        connected = loop.time()
        bounded = self.reader(reader, self.p.config.max_bytes)
        data = bytearray()
        settle_at: float | None = None
        while not bounded.full:
            chunk = await self.read_by(bounded, settle_at or self.p.deadline)
            if chunk == b"" and not data and loop.time() - connected <= self.p.probe_wait:
                return True
            if not chunk:
                break  # closed; or identified, and no line end came: take it as it is
            data += chunk
            self.promising = True
            self.partial = greeting(bytes(data))
            if banner.settled(bytes(data)):
                self.found(self.partial)
                self.promising = False
                if rank(self.partial) == _IDENTIFIED:
                    return False
            elif rank(self.partial) == _IDENTIFIED and settle_at is None:
                settle_at = min(loop.time() + SETTLE, self.p.deadline)
        self.found(self.partial)
        return False


class _Http(_Attempt):
    """``GET /`` in clear; an answer that is not HTTP may still be Redis's, or unrecognised."""

    proof = "http"

    async def talk(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(http.build_request(http.authority(self.p.address, self.p.port)))
        parser = http.ResponseParser()
        head = bytearray()
        bounded = self.reader(reader, self.p.config.max_bytes)
        while not parser.done and not bounded.full:
            chunk = await bounded.read()
            if not chunk:
                parser.close()
                break
            head += chunk[: 512 - len(head)]
            parser.feed(chunk)
            self.partial = self._judge(parser, bytes(head))
        self.found(self._judge(parser, bytes(head)))

    def _judge(self, parser: http.ResponseParser, head: bytes) -> Evidence | None:
        """What the answer so far shows: HTTP, Redis, or bytes no decoder named (kept, also
        for the other probes' decoders: the peer may be waiting for more, a head never
        ends)."""
        answer = parser.evidence()
        if answer is not None:
            return _with_trail(answer, "http", head)
        named = redis.parse_reply(head)
        if named is not None:
            return _with_trail(named, "redis", head)
        if not head:
            return None
        self.unnamed = head
        return _unrecognised("http", head)


class _Tls(_Attempt):
    """A TLS handshake; then the greeting of a server that speaks first, or ``GET /``."""

    async def talk(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = tls.TlsClient()
        client.handshake()
        writer.write(client.data_to_send())
        if not await self._handshake(client, reader, writer):
            return
        tls_detail = client.describe()
        self.found(Evidence("tls", tls_detail, "tls"))
        self.promising = True

        if client.alpn == "h2":  # HTTP/2 only (gRPC, most often): ask as gRPC does
            await self._h2(client, reader, writer, tls_detail)
            return
        first = await self._greeting(client, reader, writer)
        if first:
            said = greeting(first, "tls+banner")
            if said is not None and said.service:
                self.found(
                    dataclasses.replace(
                        said,
                        service=_OVER_TLS.get(said.service, said.service),
                        detail=join_detail(said.detail, tls_detail),
                    )
                )
            else:  # TLS for sure; what it carries, unrecognised
                self.found(
                    Evidence(
                        "tls",
                        join_detail(tls_detail, f"then {excerpt(first, 32)}"),
                        "tls",
                        excerpt=excerpt(first),
                    )
                )
            return
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
            if (seen := parser.evidence()) is not None:
                self.partial = dataclasses.replace(
                    seen,
                    service="https",
                    detail=join_detail(tls_detail, seen.detail),
                    proof="tls+http",
                )
        self.found(self.partial)

    async def _h2(
        self,
        client: tls.TlsClient,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        tls_detail: str,
    ) -> None:
        """The server chose h2 by ALPN: send the gRPC health check, decode the answer."""
        client.send(h2.build_grpc_request(self.p.address, self.p.port))
        writer.write(client.data_to_send())
        self.found(Evidence("tls", join_detail(tls_detail, "ALPN h2"), "tls"))
        self.promising = True
        bounded = self.reader(reader, h2.MAX_REPLY)
        data = bytearray()
        while not bounded.full and not client.closed:
            chunk = await bounded.read()
            client.receive(chunk)
            data += client.read(h2.MAX_REPLY - len(data))
            writer.write(client.data_to_send())
            seen = h2.parse_grpc_reply(bytes(data))
            if seen is not None:
                self.found(
                    dataclasses.replace(
                        seen,
                        service="grpc" if seen.service == "grpc" else "https",
                        detail=join_detail(tls_detail, seen.detail),
                        proof="tls+http2",
                        excerpt=excerpt(bytes(data)),
                    )
                )
                return
            if not chunk:
                return

    async def _greeting(
        self, client: tls.TlsClient, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes:
        """What the server says first inside TLS, within ``GREETING_WAIT``: b"" if nothing.

        Session tickets and other records without application data may come first.
        """
        loop = asyncio.get_running_loop()
        wait_until = min(loop.time() + GREETING_WAIT, self.p.deadline)
        data = bytearray()
        limit = self.p.config.max_bytes
        bounded = self.reader(reader, limit)  # records without application data count too
        while len(data) < limit and not client.closed and not bounded.full:
            data += client.read(limit - len(data))
            if data and banner.settled(bytes(data)):
                break
            chunk = await self.read_by(bounded, wait_until)
            if chunk is None:
                break
            client.receive(chunk)
            writer.write(client.data_to_send())
            if not chunk:
                data += client.read(limit - len(data))
                break
        return bytes(data)

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


class _Probe(_Attempt):
    """One active probe of ``protocols.tcp``: send its request, decode the reply."""

    def __init__(self, port_probe: _PortProbe, spec: tcp.TcpProbe) -> None:
        super().__init__(port_probe)
        self.spec = spec
        self.proof = spec.name

    async def talk(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        spec = self.spec
        writer.write(spec.request(self.p.address, self.p.port))
        bounded = self.reader(reader, min(spec.max_reply, self.p.config.max_bytes))
        data = bytearray()
        while not bounded.full:
            # Silence gives the turn up; a peer that has started to answer gets the budget.
            chunk = await self.read_by(
                bounded, self.p.deadline if data else self.p.probe_wait_end()
            )
            if not chunk:
                break
            data += chunk
            self.promising = True
            named = spec.decode(bytes(data))
            if named is not None:
                self.found(_with_trail(named, spec.name, bytes(data)))
                return
            self.unnamed = bytes(data)
            self.partial = _unrecognised(spec.name, self.unnamed)
        self.found(self.partial)


class _PortProbe:
    """The attempts on one port, and the verdict over them."""

    def __init__(
        self, address: str, family: int, port: int, config: EvidenceConfig, rtt: float | None
    ) -> None:
        self.address = address
        self.family = family
        self.port = port
        self.config = config
        self.rtt = rtt if rtt is not None and rtt >= 0 else None  # the smallest one known
        self.quiet = config.silence_wait(self.rtt)  # seconds a port that sends nothing gets
        self.started = 0.0
        self.deadline = 0.0
        self.probe_wait = max(MIN_PROBE_WAIT, config.timeout * PROBE_WAIT)
        self.closes_at_once = False  # the passive connection was closed at once, unprompted

    def connected(self, seconds: float) -> None:
        """One of this port's connects took ``seconds``: a round trip, at most. The
        smallest one known, the scan's included, sets the silence wait."""
        if self.rtt is None or seconds < self.rtt:
            self.rtt = seconds
            self.quiet = self.config.silence_wait(seconds)

    def probe_wait_end(self) -> float:
        """Until when an active probe starting now waits for its first byte."""
        return asyncio.get_running_loop().time() + self.probe_wait

    async def run(self) -> Evidence:
        loop = asyncio.get_running_loop()
        self.started = loop.time()
        self.deadline = self.started + self.config.timeout
        passive = _Passive(self)
        attempts: list[_Attempt] = [passive]
        later: list[_Attempt] = [_Http(self), _Tls(self)]
        head = max(HEAD_START, HEAD_START_RTTS * (self.rtt or 0.0))
        head_end = self.started + min(head, MAX_HEAD_START)  # see the module's rules
        queued = [_Probe(self, spec) for spec in tcp.active_probes()]
        queued.reverse()  # pop() takes the best ranked first
        tasks: dict[asyncio.Task[None], _Attempt] = {asyncio.create_task(passive.run()): passive}

        def start_attempts() -> None:
            if later:
                if not passive.done and loop.time() < head_end:
                    return  # the passive connection listens alone for a while
                for attempt in later:
                    attempts.append(attempt)
                    tasks[asyncio.create_task(attempt.run())] = attempt
                later.clear()
            running = sum(1 for t, a in tasks.items() if isinstance(a, _Probe) and not t.done())
            while queued and running < PROBES_AT_ONCE and not self.closes_at_once:
                attempt = queued.pop()
                attempts.append(attempt)
                tasks[asyncio.create_task(attempt.run())] = attempt
                running += 1

        try:
            while True:
                start_attempts()
                verdict, wake = self._decide(attempts, loop.time(), waiting=bool(queued or later))
                if verdict is not None:
                    return verdict
                if later:
                    wake = min(wake, head_end)
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

    def _decide(
        self, attempts: list[_Attempt], now: float, *, waiting: bool = False
    ) -> tuple[Evidence | None, float]:
        """(final evidence, or None and when to decide again); ``waiting``: probes queued."""
        leader = max(attempts, key=lambda a: rank(a.best))
        best = leader.best
        contenders = [a for a in attempts if not a.done and a.ceiling > rank(best)]
        # Probes not started yet are waited for only while nothing HTTP-grade is in: after
        # that they may start during the grace period, as the running ones may finish.
        queued_may_win = waiting and rank(best) < _HTTP and not self.closes_at_once
        if (not contenders and not queued_may_win) or now >= self.deadline:
            candidates = [e for a in attempts for e in (a.best, a.partial) if e is not None]
            final = max(candidates, key=rank, default=NO_EVIDENCE)
            if rank(final) <= _UNIDENTIFIED:
                for attempt in attempts:
                    named = attempt.unnamed and _cross_decoded(attempt.proof, attempt.unnamed)
                    if named:
                        return named, 0.0
            return final, 0.0
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


async def _probe_udp(
    address: str,
    family: int,
    port: int,
    config: EvidenceConfig,
    probes: tuple[udp.UdpProbe, ...] | None = None,
) -> Evidence:
    """The UDP probe of one port (see the module's rules): its own payloads, or ``probes``."""
    payloads = udp_transport.udp_payloads(port) if probes is None else [p.payload for p in probes]
    reply = await udp_transport.exchange(
        address, family, port, payloads, config.timeout, config.timeout * RESEND_AFTER
    )
    if reply is None:
        return NO_EVIDENCE
    return udp.identify(port, reply[: config.max_bytes], probes)
