"""ICMP echo probes for host discovery (:class:`IcmpEchoTransport`).

Rules and theory: see the class. Like the rest of this package, it is the only place where
its sockets live; ``classify`` maps the ICMP errors it reads.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
import struct

from scanner.models import PortState, Proto, Reason
from scanner.transport.base import Answer, Backpressure, Deliver
from scanner.transport.classify import (
    ERROR,
    ORIGIN_ICMP,
    ORIGIN_ICMP6,
    classify_icmp,
    classify_udp_errno,
)

__all__ = ["ECHO_REPLY", "IcmpEchoTransport", "parse_icmp"]

# sock_extended_err (linux/errqueue.h): errno, origin, type, code, pad, info, data.
_EXTENDED_ERR = struct.Struct("=IBBBBII")
_IP_RECVERR = getattr(socket, "IP_RECVERR", 11)  # Python 3.12 names them; Linux's values
_IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
_BATCH = 4096

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
_ORIGIN: dict[int, int] = {socket.AF_INET: ORIGIN_ICMP, socket.AF_INET6: ORIGIN_ICMP6}
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
            return ERROR
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
        found = parse_icmp(family, data, source, None if not raw else self._ident)
        if found is not None:
            self._found(family, *found)

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


def parse_icmp(
    family: int, data: bytes, source: str, ident: int | None
) -> tuple[str, int, Answer] | None:
    """What an ICMP message from ``source`` says about one of our echoes: (address,
    sequence, answer), or None when it says nothing (not ours, malformed, from a router).

    ``data`` starts at the ICMP header (past IPv4's IP header). ``ident`` is our echo
    identifier on a raw socket, which sees every ICMP message and must match it; None on a
    ping socket, which gets only replies to its own echoes (and no errors: those come
    through the error queue). An echo reply is :data:`ECHO_REPLY`; a destination
    unreachable sent by the target itself about our echo is ``closed`` with its reason.
    Untrusted bytes: never raises.
    """
    if len(data) < _ECHO.size:
        return None
    kind, code, _, got_ident, sequence = _ECHO.unpack_from(data)
    if kind == _ECHO_REPLY_TYPE[family]:
        return (source, sequence, ECHO_REPLY) if ident is None or got_ident == ident else None
    if ident is None or kind != _UNREACH_TYPE[family]:
        return None
    # The quoted packet (our echo's IP header and first bytes) names the echo answered.
    quoted = data[8:]
    if family == socket.AF_INET:
        if len(quoted) < 20:
            return None
        target = socket.inet_ntop(socket.AF_INET, quoted[16:20])
        inner = quoted[(quoted[0] & 0x0F) * 4 :]
    else:
        if len(quoted) < 40:
            return None
        target = socket.inet_ntop(socket.AF_INET6, quoted[24:40])
        inner = quoted[40:]
    if len(inner) < _ECHO.size:
        return None
    inner_kind, _, _, inner_ident, sequence = _ECHO.unpack_from(inner)
    answer = classify_icmp(_ORIGIN[family], kind, code)
    if (
        inner_kind != _ECHO_REQUEST[family]
        or inner_ident != ident
        or answer is None
        or target != source
    ):
        return None
    return source, sequence, Answer(PortState.CLOSED, answer.reason)
