"""UDP exchanges: payloads out on a connected socket, the first datagram or ICMP error back.

Rules and theory:
- A UDP probe is an exchange on its own *connected* datagram socket (asyncio-dgram): the
  port's payloads go out, and the first datagram back means open. Because the socket is
  connected, the kernel delivers only the target's datagrams, and hands the socket the
  ICMP error the probe drew, as an errno (``ECONNREFUSED`` for port-unreachable,
  ``EHOSTUNREACH``, ``ENETUNREACH``, ``EACCES`` for ICMPv6 admin-prohibited, ...). Linux
  reports only "hard" errors that way unless ``IP_RECVERR`` is set, so it is, and the
  exact ICMP type and code are then read from the socket's error queue
  (``transport.classify``).
- Payloads go out with ``send`` on the socket itself: asyncio's datagram transport
  (Python 3.11) silently drops an empty datagram, and nmap's generic probe is one. A full
  send buffer loses the datagram, as the network may.
- asyncio-dgram queues a socket error for the *next* call on the stream without waking a
  pending ``recv()``; the protocol here puts a marker in the receive queue, so that the
  pending ``recv()`` returns and the error is raised at once.
- One exchange, :class:`DatagramExchange`, serves the engine's :class:`UdpTransport`
  (silence is for the engine to judge: it owns time, and knows the host's ICMP budget) and
  evidence probing (:func:`exchange`, which resends once and times out by itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Any

import asyncio_dgram
from asyncio_dgram.aio import DatagramClient
from asyncio_dgram.aio import Protocol as DgramProtocol

from scanner.models import Proto
from scanner.transport.base import Answer, Backpressure, Deliver
from scanner.transport.classify import ERROR, UDP_OPEN, classify_icmp, classify_udp_errno

# sock_extended_err (linux/errqueue.h): errno, origin, type, code, pad, info, data.
_EXTENDED_ERR = struct.Struct("=IBBBBII")
_IP_RECVERR = getattr(socket, "IP_RECVERR", 11)  # Python 3.12 names them; Linux's values
_IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)

_WOKEN = object()
_RecvQueue = asyncio.Queue[tuple[bytes | None, Any]]

Payloads = Callable[[int], Sequence[bytes]]
"""``payloads(port)``: the datagrams a UDP probe of ``port`` sends (at least one)."""


def udp_payloads(port: int) -> list[bytes]:
    """The datagrams a probe of UDP ``port`` sends: ``protocols.udp``'s probes for it."""
    from scanner.protocols.udp import probes_for  # the sans-I/O probes, loaded on first use

    return [probe.payload for probe in probes_for(port)]


def connected_datagram(family: int, address: str, port: int) -> socket.socket:
    """A non-blocking UDP socket with ``IP_RECVERR``, connected to ``address``:``port``.

    Connecting sends no packet: it fixes the peer, and routes. Raises OSError (having
    closed the socket) if the socket cannot be made or the address cannot be reached.
    """
    sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


class _ExchangeProtocol(DgramProtocol):
    """asyncio-dgram's protocol, plus a wake-up for a ``recv()`` pending on an ICMP error."""

    def __init__(self, recvq: _RecvQueue, excq: asyncio.Queue[Exception],
                 drained: asyncio.Event) -> None:  # fmt: skip
        super().__init__(recvq, excq, drained)
        self._wake = recvq

    def error_received(self, exc: Exception) -> None:
        super().error_received(exc)
        self._wake.put_nowait((_WOKEN, None))  # type: ignore[arg-type]


class DatagramExchange:
    """One UDP exchange on a connected socket (:func:`connected_datagram`); see the rules."""

    __slots__ = ("_stream", "excq", "recvq", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.recvq: _RecvQueue = asyncio.Queue()
        self.excq: asyncio.Queue[Exception] = asyncio.Queue()
        self._stream: DatagramClient | None = None

    async def start(self) -> None:
        """Attach the socket to the running loop (raises OSError)."""
        recvq, excq, drained = self.recvq, self.excq, asyncio.Event()
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _ExchangeProtocol(recvq, excq, drained), sock=self.sock
        )
        # (asyncio-dgram annotates the transport parameter as a protocol, wrongly.)
        self._stream = DatagramClient(transport, recvq, excq, drained)  # type: ignore[arg-type]

    def send(self, payloads: Sequence[bytes]) -> None:
        """Send ``payloads`` on the socket itself (empty ones too; raises OSError)."""
        for payload in payloads:
            with contextlib.suppress(BlockingIOError):  # a full send buffer: as good as lost
                self.sock.send(payload)

    async def recv(self) -> bytes:
        """The first datagram back; raises OSError for the ICMP error the probe drew."""
        assert self._stream is not None
        while True:
            data, _ = await self._stream.recv()
            if data is not _WOKEN:
                return data or b""

    def error_answer(self, exc: OSError) -> Answer | None:
        """The state an error of this exchange means: the queued ICMP error's, else the
        errno's (None for a local resource error)."""
        answer = self._queued_icmp()
        if answer is not None:
            return answer
        try:
            return classify_udp_errno(exc.errno or 0)
        except Backpressure:
            return None

    def reap(self) -> Answer | None:
        """What came back but was not seen yet: a datagram or an error queued by
        asyncio-dgram, or still in the socket (a busy loop: a TCP sweep in the same scan
        delays the tasks by tens of milliseconds)."""
        while not self.recvq.empty():
            data, _ = self.recvq.get_nowait()
            if data is not _WOKEN:
                return UDP_OPEN
        if not self.excq.empty():
            error = self.excq.get_nowait()
            if isinstance(error, OSError):
                return self.error_answer(error)
        try:
            self.sock.recv(1)
        except BlockingIOError:
            return None
        except OSError as exc:
            return self.error_answer(exc)
        return UDP_OPEN

    def close(self) -> None:
        """Release the socket (through the stream, once started)."""
        if self._stream is not None:
            self._stream.close()
        self.sock.close()

    def _queued_icmp(self) -> Answer | None:
        """The ICMP error at the head of the socket's error queue (IP_RECVERR), if any."""
        try:
            _, ancillary, _, _ = self.sock.recvmsg(64, 256, socket.MSG_ERRQUEUE)
        except OSError:
            return None
        for level, kind, data in ancillary:
            recverr = _IP_RECVERR if level == socket.IPPROTO_IP else _IPV6_RECVERR
            if kind == recverr and len(data) >= _EXTENDED_ERR.size:
                _, origin, icmp_type, code, _, _, _ = _EXTENDED_ERR.unpack_from(data)
                return classify_icmp(origin, icmp_type, code)
        return None


async def exchange(
    address: str,
    family: int,
    port: int,
    payloads: Sequence[bytes],
    timeout: float,
    resend_after: float,
) -> bytes | None:
    """Send ``payloads``, again after ``resend_after`` seconds of silence; the first
    datagram back within ``timeout`` seconds, or None for silence and for any error
    (an ICMP error ends the wait at once)."""
    try:
        sock = connected_datagram(family, address, port)
    except OSError:
        return None
    attempt = DatagramExchange(sock)
    try:
        await attempt.start()
        attempt.send(payloads)
        loop = asyncio.get_running_loop()
        started = loop.time()
        receiving = asyncio.ensure_future(attempt.recv())
        try:
            for until, again in ((started + resend_after, True), (started + timeout, False)):
                wait = until - loop.time()
                if wait > 0:
                    await asyncio.wait({receiving}, timeout=wait)
                if receiving.done():
                    return receiving.result()
                if again:
                    attempt.send(payloads)
            return None
        finally:
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)
    except (OSError, asyncio_dgram.TransportClosed):
        return None  # refused (port unreachable), host or network unreachable...
    finally:
        attempt.close()


class UdpTransport:
    """UDP probes for the engine: one :class:`DatagramExchange` per attempt.

    A datagram back is ``open``; an ICMP error is mapped by ``transport.classify``; the
    engine times out silence. ``payloads(port)`` gives the datagrams to send (by default
    :func:`udp_payloads`: DNS on 53, NTP on 123, ..., an empty datagram elsewhere).
    """

    protocol = Proto.UDP

    def __init__(self, payloads: Payloads | None = None) -> None:
        self._payloads = payloads or udp_payloads
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deliver: Deliver | None = None
        self._pending: dict[asyncio.Task[None], DatagramExchange] = {}  # attempts in flight

    def open(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        self._loop, self._deliver = loop, deliver

    def send(self, key: object, family: int, address: str, port: int) -> object:
        try:
            sock = connected_datagram(family, address, port)
        except OSError as exc:
            # (Out of descriptors raises Backpressure; an unreachable route is a state.)
            return classify_udp_errno(exc.errno or errno.EMFILE)
        assert self._loop is not None
        attempt = DatagramExchange(sock)
        task = self._loop.create_task(self._exchange(key, attempt, self._payloads(port)))
        self._pending[task] = attempt
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        attempt = self._pending.pop(task, None)
        if attempt is not None:  # a task cancelled before it ran leaves its socket to us
            attempt.sock.close()

    def cancel(self, handle: object) -> None:
        task: asyncio.Task[None] = handle  # type: ignore[assignment]
        task.cancel()

    def flush(self) -> None:
        """Nothing to harvest at once: :meth:`reap` looks at one attempt about to expire."""

    def reap(self, handle: object) -> Answer | None:
        """What came back for an attempt whose task has not seen it yet (see
        :meth:`DatagramExchange.reap`)."""
        attempt = self._pending.get(handle)  # type: ignore[call-overload]
        return None if attempt is None else attempt.reap()

    def close(self) -> None:
        for task in list(self._pending):
            task.cancel()

    async def _exchange(
        self, key: object, attempt: DatagramExchange, payloads: Sequence[bytes]
    ) -> None:
        assert self._deliver is not None
        answer: Answer | None
        try:
            await attempt.start()
            attempt.send(payloads)
            await attempt.recv()
            answer = UDP_OPEN
        except OSError as exc:
            answer = attempt.error_answer(exc)
        except asyncio_dgram.TransportClosed:
            answer = ERROR
        finally:
            attempt.close()
        self._deliver(key, answer)
