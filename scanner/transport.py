"""The only module that touches sockets: TCP connects, UDP exchanges, OS errors mapped to states.

Rules and theory:
- A transport starts one probe attempt at a time with :meth:`Transport.send` and reports
  how it ended through the ``deliver`` callback it was opened with. It never times
  anything out: the engine owns time, and calls :meth:`Transport.cancel` when it gives up.
- The TCP connect transport does not spend a coroutine, a future or an asyncio handle per
  probe. Its non-blocking sockets are registered with an epoll instance of its own, and only
  that epoll descriptor is registered with the event loop: one loop callback then harvests
  every connect that finished, in a plain loop. (Where there is no epoll, each socket is
  registered with ``loop.add_writer`` instead: slower, same results.)
- A finished connect is read with ``SO_ERROR``. ``classify_errno`` is the one place where
  an errno becomes a port state; errors that say nothing about the port (out of file
  descriptors, out of ephemeral ports) raise :class:`Backpressure` so that the engine sends
  the probe again later instead of recording a false state.
- An open port's socket is closed with ``SO_LINGER`` 0, which sends a RST: no TIME_WAIT
  socket is left behind, and the server sees an aborted connection.
- Linux can connect a socket to itself when the ephemeral port equals the probed port on a
  local address; such a "self-connect" is retried, never reported as open.
- A UDP probe is an exchange on its own *connected* datagram socket (asyncio-dgram): the
  port's payloads go out, and the first datagram back means open. Because the socket is
  connected, the kernel hands it the ICMP error the probe drew, as an errno
  (``ECONNREFUSED`` for port-unreachable, ``EHOSTUNREACH``, ``ENETUNREACH``, ``EACCES``
  for ICMPv6 admin-prohibited, ...). Linux reports only "hard" errors that way unless
  ``IP_RECVERR`` is set, so it is, and the exact ICMP type and code are then read from
  the socket's error queue: :func:`classify_icmp` maps those, ``classify_udp_errno`` the
  errno when no queued error says more. Silence is for the engine to judge: it owns
  time, and knows the host's ICMP budget.
"""

from __future__ import annotations

import _socket
import asyncio
import errno
import ipaddress
import os
import select
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncio_dgram
from asyncio_dgram.aio import DatagramClient
from asyncio_dgram.aio import Protocol as DgramProtocol

from scanner.models import PortState, Proto, Reason

__all__ = [
    "ECHO_REPLY",
    "ICMP_REASONS",
    "Answer",
    "Backpressure",
    "Deliver",
    "IcmpEchoTransport",
    "TcpConnectTransport",
    "Transport",
    "UdpTransport",
    "classify_errno",
    "classify_icmp",
    "classify_udp_errno",
]


@dataclass(frozen=True, slots=True)
class Answer:
    """What one probe attempt established about a port."""

    state: PortState
    reason: Reason


OPEN = Answer(PortState.OPEN, Reason.SYN_ACK)
CLOSED = Answer(PortState.CLOSED, Reason.CONN_REFUSED)

_HOST = Answer(PortState.FILTERED, Reason.HOST_UNREACH)
_NET = Answer(PortState.FILTERED, Reason.NET_UNREACH)
_ADMIN = Answer(PortState.FILTERED, Reason.ADMIN_PROHIBITED)
_PROTO = Answer(PortState.FILTERED, Reason.PROTO_UNREACH)
_ERROR = Answer(PortState.FILTERED, Reason.ERROR)

# errno -> Answer for an ICMP unreachable other than port-unreachable, for either transport.
# Linux maps ICMP errors to these errnos (net/ipv4/icmp.c icmp_err_convert, net/ipv6/icmp.c
# icmpv6_err_convert; ICMPv6 admin-prohibited is EACCES, IPv4's arrives as EHOSTUNREACH).
_UNREACHABLE: dict[int, Answer] = {
    errno.EHOSTUNREACH: _HOST,
    errno.EHOSTDOWN: _HOST,
    errno.ENONET: _HOST,
    errno.ENETUNREACH: _NET,
    errno.ENETDOWN: _NET,
    errno.EACCES: _ADMIN,
    errno.ENOPROTOOPT: _PROTO,
}

# errno -> Answer for a TCP connect.
_TCP_ERRNO: dict[int, Answer] = {
    0: OPEN,
    # The handshake completed and the server reset the connection before we looked: open.
    # (A RST answering the SYN itself is ECONNREFUSED.)
    errno.ECONNRESET: OPEN,
    errno.ECONNREFUSED: CLOSED,
    errno.EPERM: _ADMIN,
    errno.ETIMEDOUT: Answer(PortState.FILTERED, Reason.NO_RESPONSE),
    **_UNREACHABLE,
}

# Errors of the local machine, not of the port: send again later.
_BACKPRESSURE = frozenset(
    {
        errno.EMFILE,
        errno.ENFILE,
        errno.ENOBUFS,
        errno.ENOMEM,
        errno.EADDRNOTAVAIL,
        errno.EAGAIN,
        errno.EADDRINUSE,
        errno.EINTR,
    }
)


class Backpressure(Exception):
    """The local machine is out of a resource (``errno``); send the probe again later.

    ``descriptors`` is true when the resource is file descriptors, so that the engine lowers
    its concurrency rather than only waiting.
    """

    def __init__(self, err: int) -> None:
        super().__init__(errno.errorcode.get(err, str(err)))
        self.errno = err
        self.descriptors = err in (errno.EMFILE, errno.ENFILE)


def classify_errno(err: int) -> Answer:
    """Map the errno that ended a TCP connect attempt to the port's state and reason.

    Raises :class:`Backpressure` for errors of the local machine that say nothing about the
    port. An errno with no known meaning for the port is reported as filtered with reason
    ``error`` rather than guessed at.
    """
    answer = _TCP_ERRNO.get(err)  # (the common case without a call: this is the hot path)
    return answer if answer is not None else _classify(_TCP_ERRNO, err)


def _classify(table: dict[int, Answer], err: int) -> Answer:
    answer = table.get(err)
    if answer is not None:
        return answer
    if err in _BACKPRESSURE:
        raise Backpressure(err)
    return _ERROR


UDP_OPEN = Answer(PortState.OPEN, Reason.UDP_RESPONSE)

# errno -> Answer for a UDP exchange: the ICMP error the probe drew.
_UDP_ERRNO: dict[int, Answer] = {
    errno.ECONNREFUSED: Answer(PortState.CLOSED, Reason.PORT_UNREACH),
    **_UNREACHABLE,
}

#: Reasons that are ICMP errors from the target: each cost it a token of its ICMP budget.
ICMP_REASONS = frozenset(
    {
        Reason.PORT_UNREACH,
        Reason.HOST_UNREACH,
        Reason.NET_UNREACH,
        Reason.ADMIN_PROHIBITED,
        Reason.PROTO_UNREACH,
    }
)


# sock_extended_err (linux/errqueue.h): errno, origin, type, code, pad, info, data.
_EXTENDED_ERR = struct.Struct("=IBBBBII")
_ORIGIN_ICMP, _ORIGIN_ICMP6 = 2, 3
_IP_RECVERR = getattr(socket, "IP_RECVERR", 11)  # Python 3.12 names them; Linux's values
_IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
_PORT_UNREACH = _UDP_ERRNO[errno.ECONNREFUSED]
# (origin, type, code) of a destination-unreachable -> Answer (RFC 792, RFC 1812, RFC 4443).
_ICMP_UNREACH: dict[tuple[int, int, int], Answer] = {
    (_ORIGIN_ICMP, 3, 0): _NET,
    (_ORIGIN_ICMP, 3, 1): _HOST,
    (_ORIGIN_ICMP, 3, 2): _PROTO,
    (_ORIGIN_ICMP, 3, 3): _PORT_UNREACH,
    (_ORIGIN_ICMP, 3, 6): _NET,  # destination network unknown
    (_ORIGIN_ICMP, 3, 7): _HOST,  # destination host unknown
    (_ORIGIN_ICMP, 3, 9): _ADMIN,  # network administratively prohibited
    (_ORIGIN_ICMP, 3, 10): _ADMIN,  # host administratively prohibited
    (_ORIGIN_ICMP, 3, 11): _NET,
    (_ORIGIN_ICMP, 3, 12): _HOST,
    (_ORIGIN_ICMP, 3, 13): _ADMIN,  # communication administratively prohibited
    (_ORIGIN_ICMP6, 1, 0): _NET,  # no route to destination
    (_ORIGIN_ICMP6, 1, 1): _ADMIN,
    (_ORIGIN_ICMP6, 1, 3): _HOST,  # address unreachable
    (_ORIGIN_ICMP6, 1, 4): _PORT_UNREACH,
    (_ORIGIN_ICMP6, 1, 5): _ADMIN,  # source address failed ingress/egress policy
    (_ORIGIN_ICMP6, 1, 6): _ADMIN,  # reject route to destination
}


def classify_icmp(origin: int, icmp_type: int, code: int) -> Answer | None:
    """Map an ICMP error read from a socket's error queue to a state, or None if unknown.

    ``origin`` is ``SO_EE_ORIGIN_ICMP`` (2) or ``SO_EE_ORIGIN_ICMP6`` (3).
    """
    return _ICMP_UNREACH.get((origin, icmp_type, code))


def classify_udp_errno(err: int) -> Answer:
    """Map the errno a UDP exchange ended with (an ICMP error it drew) to a state and reason.

    Raises :class:`Backpressure` for local resource errors, as :func:`classify_errno` does.
    ``EPERM`` is the local firewall refusing to send, not an answer from the network, so it
    is reported as filtered with reason ``error``, like any errno with no known meaning.
    """
    return _classify(_UDP_ERRNO, err)


Deliver = Callable[[object, "Answer | None"], None]
"""``deliver(key, answer)``: how a transport reports that an attempt has ended.

``answer`` is None when the attempt failed for a local reason (:class:`Backpressure`) and
must be sent again without counting as a try.
"""


class Transport(Protocol):
    """The seam between the engine and the network.

    ``send`` either returns an :class:`Answer` at once (the outcome was known without
    waiting) or returns an opaque handle and later calls ``deliver(key, answer)`` exactly
    once, unless the engine cancels the handle first.
    """

    protocol: Proto

    def open(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        """Attach to ``loop``; ``deliver`` receives the answers of later sends."""

    def send(self, key: object, family: int, address: str, port: int) -> object:
        """Start one attempt; return an :class:`Answer` or a handle for :meth:`cancel`."""

    def cancel(self, handle: object) -> None:
        """Abandon the attempt behind ``handle``; ``deliver`` is not called for it."""

    def flush(self) -> None:
        """Deliver every answer that has already arrived (called before timing out)."""

    def reap(self, handle: object) -> Answer | None:
        """The answer that has arrived for ``handle`` but was not delivered yet, if any.

        Called on an attempt about to time out, after :meth:`flush`; the attempt is then
        cancelled either way. (A transport whose ``flush`` delivers everything returns None.)
        """

    def close(self) -> None:
        """Abandon every attempt and release every resource."""


# The C socket type without the Python wrapper of socket.socket: its __init__ and close()
# cost about a third of the time a probe spends in Python, and probes need none of it.
_RawSocket = _socket.socket
_LINGER_RST = struct.pack("ii", 1, 0)
_STREAM_NONBLOCK = socket.SOCK_STREAM | socket.SOCK_NONBLOCK
_SOL_SOCKET, _SO_ERROR, _SO_LINGER = socket.SOL_SOCKET, socket.SO_ERROR, socket.SO_LINGER
_EINPROGRESS = errno.EINPROGRESS
_BATCH = 4096


class TcpConnectTransport:
    """TCP connect probes on non-blocking sockets, harvested through one epoll instance."""

    protocol = Proto.TCP

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deliver: Deliver | None = None
        # fd -> (key, socket) of every attempt in flight.
        self._pending: dict[int, tuple[object, _RawSocket]] = {}
        self._epoll: select.epoll | None = None

    def open(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        self._loop, self._deliver = loop, deliver
        if hasattr(select, "epoll"):
            self._epoll = select.epoll()
            loop.add_reader(self._epoll.fileno(), self.flush)

    def send(self, key: object, family: int, address: str, port: int) -> object:
        try:
            sock = _RawSocket(family, _STREAM_NONBLOCK)
        except OSError as exc:
            raise Backpressure(exc.errno or errno.EMFILE) from exc
        err = sock.connect_ex((address, port))
        if err == _EINPROGRESS:
            fd = sock.fileno()
            self._pending[fd] = (key, sock)
            if self._epoll is not None:
                self._epoll.register(fd, select.EPOLLOUT)
            else:
                assert self._loop is not None
                self._loop.add_writer(fd, self._on_writable, fd)
            return fd
        try:
            return self._finish(sock, err)
        except Backpressure:
            sock.close()
            raise

    def cancel(self, handle: object) -> None:
        entry = self._pending.pop(handle, None)  # type: ignore[call-overload]
        if entry is not None:
            self._forget(handle, entry[1])  # type: ignore[arg-type]

    def flush(self) -> None:
        if self._epoll is None:
            return
        pending, complete = self._pending, self._complete
        while True:
            events = self._epoll.poll(0, _BATCH)
            for fd, _ in events:
                entry = pending.pop(fd, None)
                if entry is not None:
                    complete(entry)
            if len(events) < _BATCH:
                return

    def reap(self, handle: object) -> Answer | None:
        return None  # flush() has harvested every connect that finished

    def close(self) -> None:
        for fd, entry in list(self._pending.items()):
            self._forget(fd, entry[1])
        self._pending.clear()
        if self._epoll is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
            self._epoll = None

    def _on_writable(self, fd: int) -> None:
        # The portable path: one loop callback per finished connect.
        assert self._loop is not None
        self._loop.remove_writer(fd)
        entry = self._pending.pop(fd, None)
        if entry is not None:
            self._complete(entry)

    def _complete(self, entry: tuple[object, _RawSocket]) -> None:
        """Read how a connect ended and deliver it (closing the socket drops it from epoll)."""
        key, sock = entry
        err = sock.getsockopt(_SOL_SOCKET, _SO_ERROR)
        answer: Answer | None
        try:
            answer = self._finish(sock, err)
        except Backpressure:
            answer = None
        assert self._deliver is not None
        self._deliver(key, answer)

    def _forget(self, fd: int, sock: _RawSocket) -> None:
        if self._epoll is None and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_writer(fd)
        sock.close()

    @staticmethod
    def _finish(sock: _RawSocket, err: int) -> Answer:
        """Turn a finished connect into an Answer and close the socket without TIME_WAIT."""
        if err == 0:
            try:
                selfconnect = sock.getsockname() == sock.getpeername()
            except OSError:
                selfconnect = False
            sock.setsockopt(_SOL_SOCKET, _SO_LINGER, _LINGER_RST)
            sock.close()
            if selfconnect:
                raise Backpressure(errno.EADDRINUSE)
            return OPEN
        sock.close()
        return classify_errno(err)


_WOKEN = object()
_RecvQueue = asyncio.Queue[tuple[bytes | None, Any]]


class _ExchangeProtocol(DgramProtocol):
    """asyncio-dgram's protocol, plus a wake-up for a ``recv()`` pending on an ICMP error.

    asyncio-dgram queues the error for the *next* call on the stream; the marker put in the
    receive queue makes the pending ``recv()`` return, so the next one raises the error.
    """

    def __init__(self, recvq: _RecvQueue, excq: asyncio.Queue[Exception],
                 drained: asyncio.Event) -> None:  # fmt: skip
        super().__init__(recvq, excq, drained)
        self._wake = recvq

    def error_received(self, exc: Exception) -> None:
        super().error_received(exc)
        self._wake.put_nowait((_WOKEN, None))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class _Exchange:
    """One UDP attempt's socket, and the queues asyncio-dgram reads into."""

    sock: socket.socket
    recvq: _RecvQueue
    excq: asyncio.Queue[Exception]


Payloads = Callable[[int], Sequence[bytes]]
"""``payloads(port)``: the datagrams a UDP probe of ``port`` sends (at least one)."""


def _protocol_payloads(port: int) -> Sequence[bytes]:
    from scanner.protocols.udp import probes_for  # the sans-I/O probes, loaded on first use

    return [probe.payload for probe in probes_for(port)]


class UdpTransport:
    """UDP probes: one connected asyncio-dgram socket per attempt, sending the port's payloads.

    A datagram back is ``open``; an ICMP error is mapped by :func:`classify_udp_errno`; the
    engine times out silence. ``payloads(port)`` gives the datagrams to send (by default the
    protocol probes of ``scanner.protocols.udp``: DNS on 53, NTP on 123, ..., an empty
    datagram elsewhere).
    """

    protocol = Proto.UDP

    def __init__(self, payloads: Payloads | None = None) -> None:
        self._payloads = payloads or _protocol_payloads
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deliver: Deliver | None = None
        # Every attempt in flight: its socket and the queues asyncio-dgram reads into.
        self._pending: dict[asyncio.Task[None], _Exchange] = {}

    def open(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        self._loop, self._deliver = loop, deliver

    def send(self, key: object, family: int, address: str, port: int) -> object:
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        except OSError as exc:
            raise Backpressure(exc.errno or errno.EMFILE) from exc
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
            sock.connect((address, port))  # no packet: it fixes the peer, and routes
        except OSError as exc:
            sock.close()
            return classify_udp_errno(exc.errno or 0)
        assert self._loop is not None
        exchange = _Exchange(sock, asyncio.Queue(), asyncio.Queue())
        task = self._loop.create_task(self._exchange(key, exchange, self._payloads(port)))
        self._pending[task] = exchange
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        exchange = self._pending.pop(task, None)
        if exchange is not None:  # a task cancelled before it ran leaves its socket to us
            exchange.sock.close()

    def cancel(self, handle: object) -> None:
        task: asyncio.Task[None] = handle  # type: ignore[assignment]
        task.cancel()

    def flush(self) -> None:
        """Nothing to harvest at once: :meth:`reap` looks at one attempt about to expire."""

    def reap(self, handle: object) -> Answer | None:
        """What came back for an attempt whose task has not seen it yet: a datagram or an
        error queued by asyncio-dgram, or still in the socket (a busy loop: a TCP sweep in
        the same scan delays the tasks by tens of milliseconds)."""
        exchange = self._pending.get(handle)  # type: ignore[call-overload]
        if exchange is None:
            return None
        while not exchange.recvq.empty():
            data, _ = exchange.recvq.get_nowait()
            if data is not _WOKEN:
                return UDP_OPEN
        if not exchange.excq.empty():
            error = exchange.excq.get_nowait()
            if isinstance(error, OSError):
                return _queued_icmp(exchange.sock) or self._answer(error)
        try:
            exchange.sock.recv(1)
        except BlockingIOError:
            return None
        except OSError as exc:
            return _queued_icmp(exchange.sock) or self._answer(exc)
        return UDP_OPEN

    def close(self) -> None:
        for task in list(self._pending):
            task.cancel()

    async def _exchange(self, key: object, exchange: _Exchange, payloads: Sequence[bytes]) -> None:
        assert self._loop is not None and self._deliver is not None
        sock, recvq, excq = exchange.sock, exchange.recvq, exchange.excq
        drained = asyncio.Event()
        try:
            transport, _ = await self._loop.create_datagram_endpoint(
                lambda: _ExchangeProtocol(recvq, excq, drained), sock=sock
            )
        except OSError as exc:
            sock.close()
            self._deliver(key, self._answer(exc))
            return
        # (asyncio-dgram annotates the transport parameter as a protocol, wrongly.)
        stream = DatagramClient(transport, recvq, excq, drained)  # type: ignore[arg-type]
        answer: Answer | None
        try:
            for payload in payloads:
                if payload:
                    await stream.send(payload)
                else:  # asyncio drops empty datagrams; nmap's generic probe is one
                    sock.send(b"")
            while True:
                data, _ = await stream.recv()
                if data is not _WOKEN:
                    answer = UDP_OPEN
                    break
        except OSError as exc:
            answer = _queued_icmp(sock) or self._answer(exc)
        except asyncio_dgram.TransportClosed:
            answer = Answer(PortState.FILTERED, Reason.ERROR)
        finally:
            stream.close()
        self._deliver(key, answer)

    @staticmethod
    def _answer(exc: OSError) -> Answer | None:
        try:
            return classify_udp_errno(exc.errno or 0)
        except Backpressure:
            return None


def _queued_icmp(sock: socket.socket) -> Answer | None:
    """The ICMP error at the head of ``sock``'s error queue (IP_RECVERR), if one is there."""
    try:
        _, ancillary, _, _ = sock.recvmsg(64, 256, socket.MSG_ERRQUEUE)
    except OSError:
        return None
    for level, kind, data in ancillary:
        recverr = _IP_RECVERR if level == socket.IPPROTO_IP else _IPV6_RECVERR
        if kind == recverr and len(data) >= _EXTENDED_ERR.size:
            _, origin, icmp_type, code, _, _, _ = _EXTENDED_ERR.unpack_from(data)
            return classify_icmp(origin, icmp_type, code)
    return None


# -- ICMP echo (host discovery) ---------------------------------------------------------------

#: An ICMP echo answered: the host is up (the state says "answered", there is no port).
ECHO_REPLY = Answer(PortState.OPEN, Reason.ECHO_REPLY)

_ECHO = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
_ECHO_REQUEST: dict[int, int] = {socket.AF_INET: 8, socket.AF_INET6: 128}
_ECHO_REPLY_TYPE: dict[int, int] = {socket.AF_INET: 0, socket.AF_INET6: 129}
_UNREACH_TYPE: dict[int, int] = {socket.AF_INET: 3, socket.AF_INET6: 1}
_ICMP_PROTO: dict[int, int] = {
    socket.AF_INET: socket.IPPROTO_ICMP,
    socket.AF_INET6: socket.IPPROTO_ICMPV6,
}
_ORIGIN: dict[int, int] = {socket.AF_INET: _ORIGIN_ICMP, socket.AF_INET6: _ORIGIN_ICMP6}
_ECHO_PAYLOAD = b"portprobe host discovery"


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _address(text: str) -> str:
    """An address as the kernel reports it, in canonical text (no IPv6 zone)."""
    return str(ipaddress.ip_address(text.split("%", 1)[0]))


class IcmpEchoTransport:
    """ICMP echo probes for host discovery, with the :class:`Transport` methods.

    Rules and theory:
    - Linux's unprivileged ICMP socket (``SOCK_DGRAM`` with ``IPPROTO_ICMP``, or
      ``IPPROTO_ICMPV6``) is used where ``net.ipv4.ping_group_range`` lets the process's
      group in: the kernel then picks the identifier, fills the checksum, and hands this
      socket only the replies to its own echoes. ICMP errors come through ``IP_RECVERR``'s
      error queue, with the address of the router or host that sent them (the offender).
    - Otherwise, as root, a raw ICMP socket: it sees every ICMP message, so replies are
      matched on our identifier, and errors on the echo they quote.
    - An echo reply is :data:`ECHO_REPLY`. An ICMP error counts only when the host itself
      sent it (offender = target): it is alive, and says so with ``closed`` and the
      error's reason. An error from a router (the host is unreachable) is silence here:
      the caller's other probes and its timeout decide.
    - ``send`` returns an :class:`Answer` at once when the kernel refuses the echo (no
      route: ``ENETUNREACH``), or ``filtered``/``error`` when no ICMP socket can be had.
    """

    protocol = Proto.TCP  # not a port protocol; kept for the Transport shape

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deliver: Deliver | None = None
        self._sockets: dict[int, tuple[socket.socket, bool] | None] = {}
        self._ident = os.getpid() & 0xFFFF
        self._sequence = 0
        # (family, address, sequence) -> key of every echo in flight
        self._pending: dict[tuple[int, str, int], object] = {}

    def open(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        self._loop, self._deliver = loop, deliver

    def kind(self, family: int) -> str:
        """``dgram`` (unprivileged), ``raw`` (root) or ``none``: the ICMP socket in use."""
        entry = self._socket(family)
        return "none" if entry is None else ("raw" if entry[1] else "dgram")

    def _socket(self, family: int) -> tuple[socket.socket, bool] | None:
        if family in self._sockets:
            return self._sockets[family]
        entry: tuple[socket.socket, bool] | None = None
        for kind, raw in ((socket.SOCK_DGRAM, False), (socket.SOCK_RAW, True)):
            try:
                sock = socket.socket(family, kind | socket.SOCK_NONBLOCK, _ICMP_PROTO[family])
            except OSError:  # EACCES: not in ping_group_range; EPERM: not root
                continue
            if not raw:
                level = socket.IPPROTO_IP if family == socket.AF_INET else socket.IPPROTO_IPV6
                recverr = _IP_RECVERR if family == socket.AF_INET else _IPV6_RECVERR
                sock.setsockopt(level, recverr, 1)
            entry = (sock, raw)
            if self._loop is not None:
                self._loop.add_reader(sock.fileno(), self._readable, family)
            break
        self._sockets[family] = entry
        return entry

    def send(self, key: object, family: int, address: str, port: int) -> object:
        entry = self._socket(family)
        if entry is None:
            return _ERROR
        sock, raw = entry
        self._sequence = (self._sequence + 1) & 0xFFFF
        header = _ECHO.pack(_ECHO_REQUEST[family], 0, 0, self._ident, self._sequence)
        packet = header + _ECHO_PAYLOAD
        if raw and family == socket.AF_INET:  # ICMPv6's checksum is the kernel's
            packet = _ECHO.pack(8, 0, _checksum(packet), self._ident, self._sequence)
            packet += _ECHO_PAYLOAD
        try:
            sock.sendto(packet, (address, 0))
        except BlockingIOError as exc:
            raise Backpressure(errno.EAGAIN) from exc
        except OSError as exc:
            return classify_udp_errno(exc.errno or 0)
        handle = (family, _address(address), self._sequence)
        self._pending[handle] = key
        return handle

    def cancel(self, handle: object) -> None:
        self._pending.pop(handle, None)  # type: ignore[call-overload]

    def flush(self) -> None:
        for family, entry in list(self._sockets.items()):
            if entry is not None:
                self._readable(family)

    def reap(self, handle: object) -> Answer | None:
        return None  # flush() reads everything that came

    def close(self) -> None:
        for entry in self._sockets.values():
            if entry is None:
                continue
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(entry[0].fileno())
            entry[0].close()
        self._sockets.clear()
        self._pending.clear()

    def _found(self, family: int, address: str, sequence: int, answer: Answer) -> None:
        key = self._pending.pop((family, address, sequence), _MISSING)
        if key is not _MISSING and self._deliver is not None:
            self._deliver(key, answer)

    def _readable(self, family: int) -> None:
        entry = self._sockets.get(family)
        if entry is None:
            return
        sock, raw = entry
        for _ in range(_BATCH):
            try:
                data, source = sock.recvfrom(2048)
            except BlockingIOError:
                return
            except OSError:
                self._queued_error(family, sock)
                continue
            if raw and family == socket.AF_INET:
                data = data[(data[0] & 0x0F) * 4 :] if data else b""  # past the IP header
            self._message(family, raw, data, _address(source[0]))

    def _message(self, family: int, raw: bool, data: bytes, source: str) -> None:
        if len(data) < _ECHO.size:
            return
        kind, code, _, ident, sequence = _ECHO.unpack_from(data)
        if kind == _ECHO_REPLY_TYPE[family]:
            if not raw or ident == self._ident:  # a ping socket sees only its own replies
                self._found(family, source, sequence, ECHO_REPLY)
            return
        if not raw or kind != _UNREACH_TYPE[family]:
            return
        # A raw socket sees errors too: the quoted packet names the echo they answer.
        quoted = data[8:]
        if family == socket.AF_INET:
            if len(quoted) < 20:
                return
            target = socket.inet_ntop(socket.AF_INET, quoted[16:20])
            inner = quoted[(quoted[0] & 0x0F) * 4 :]
        else:
            if len(quoted) < 40:
                return
            target = socket.inet_ntop(socket.AF_INET6, quoted[24:40])
            inner = quoted[40:]
        if len(inner) < _ECHO.size:
            return
        _, _, _, inner_ident, sequence = _ECHO.unpack_from(inner)
        answer = classify_icmp(_ORIGIN[family], kind, code)
        if inner_ident == self._ident and answer is not None and _address(target) == source:
            self._found(family, source, sequence, Answer(PortState.CLOSED, answer.reason))

    def _queued_error(self, family: int, sock: socket.socket) -> None:
        """An ICMP error on a ping socket: counted only if the target itself sent it."""
        try:
            data, ancillary, _, target = sock.recvmsg(64, 512, socket.MSG_ERRQUEUE)
        except OSError:
            return
        for _, _, extended in ancillary:
            if len(extended) < _EXTENDED_ERR.size + 8:
                continue
            _, origin, kind, code, _, _, _ = _EXTENDED_ERR.unpack_from(extended)
            offender = extended[_EXTENDED_ERR.size :]
            if family == socket.AF_INET:
                sender = socket.inet_ntop(socket.AF_INET, offender[4:8])
            elif len(offender) >= 24:
                sender = socket.inet_ntop(socket.AF_INET6, offender[8:24])
            else:
                continue
            answer = classify_icmp(origin, kind, code)
            if answer is None or len(data) < _ECHO.size or not target:
                continue
            _, _, _, _, sequence = _ECHO.unpack_from(data)
            address = _address(target[0])
            if _address(sender) == address:
                self._found(family, address, sequence, Answer(PortState.CLOSED, answer.reason))


_MISSING = object()
