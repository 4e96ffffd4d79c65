"""TCP connect probes: non-blocking sockets harvested through one epoll instance.

Rules and theory:
- The TCP connect transport does not spend a coroutine, a future or an asyncio handle per
  probe. Its non-blocking sockets are registered with an epoll instance of its own, and only
  that epoll descriptor is registered with the event loop: one loop callback then harvests
  every connect that finished, in a plain loop. (Where there is no epoll, each socket is
  registered with ``loop.add_writer`` instead: slower, same results.)
- A finished connect is read with ``SO_ERROR`` and classified by
  :func:`~scanner.transport.classify.classify_errno`.
- Where the reply is processed before ``connect()`` returns (loopback, veth and other
  links of the same kernel: the SYN's RST is taken in as the call releases the socket),
  the connect has already ended although ``connect()`` said ``EINPROGRESS``. The
  transport then reads the outcome at once: the probe costs no epoll registration, no
  harvest and no deadline, and its answer is ``measured`` (its round trip is timed by the
  engine). On any other link that read finds nothing, so it is kept only while it pays:
  each answer found earns credit, each read that found nothing spends one, and without
  credit the transport stops reading early, trying again every ``EAGER_TRIAL_EVERY`` sends.
- On Linux that read is a second ``connect()`` to the same address: it returns the error
  the connect ended with (``EALREADY`` while it is under way, 0 once connected) and leaves
  a refused or unreachable socket unconnected, ready for the next probe. Such a socket is
  kept as the spare of its family and used again, instead of a ``close()`` now and a
  ``socket()`` next: two system calls a closed port instead of four (``getsockopt`` of
  ``SO_ERROR`` elsewhere, where a failed socket may not connect again). A socket whose
  connect failed at once (``ENETUNREACH`` with no route) is kept likewise.
- An open port's socket is closed with ``SO_LINGER`` 0, which sends a RST: no TIME_WAIT
  socket is left behind, and the server sees an aborted connection.
- Linux can connect a socket to itself when the ephemeral port equals the probed port on a
  local address; such a "self-connect" is retried, never reported as open.
"""

from __future__ import annotations

import _socket
import asyncio
import errno
import select
import socket
import struct
import sys
from collections.abc import Callable

from scanner.models import Proto
from scanner.transport.base import Answer, Backpressure, Deliver
from scanner.transport.classify import OPEN, TCP_ERRNO, classify_errno

#: ``SO_LINGER`` on, 0 seconds: ``close()`` sends a RST and leaves no TIME_WAIT.
LINGER_RST = struct.pack("ii", 1, 0)

# The C socket type without the Python wrapper of socket.socket: its __init__ and close()
# cost about a third of the time a probe spends in Python, and probes need none of it.
_RawSocket = _socket.socket
_STREAM_NONBLOCK = socket.SOCK_STREAM | socket.SOCK_NONBLOCK
_SOL_SOCKET, _SO_ERROR, _SO_LINGER = socket.SOL_SOCKET, socket.SO_ERROR, socket.SO_LINGER
_EINPROGRESS, _EALREADY = errno.EINPROGRESS, errno.EALREADY
# Whether a socket whose connect failed may connect again (see the rules). The same read
# finds an open port connected within the call (getsockopt cannot tell it from one still
# under way): the sweep then promotes it in the middle of a batch of sends.
CONNECT_AGAIN = sys.platform.startswith("linux")
_EPOLLOUT = getattr(select, "EPOLLOUT", 4)
_BATCH = 4096

# The TCP_ERRNO answers of a reply read right after connect(): timed by the engine.
_AT_ONCE: dict[int, Answer] = {
    err: Answer(answer.state, answer.reason, measured=True)
    for err, answer in TCP_ERRNO.items()
    if err
}
_OPEN_AT_ONCE = Answer(OPEN.state, OPEN.reason, measured=True)
EAGER_CREDIT = 64  # the most credit kept: 64 reads that find nothing turn early reads off
EAGER_HIT = 4  # credit an answer found early earns (early reads pay at one hit in five)
EAGER_TRIAL = 8  # credit of a trial, every EAGER_TRIAL_EVERY sends while they are off
EAGER_TRIAL_EVERY = 4096


class TcpConnectTransport:
    """TCP connect probes on non-blocking sockets, harvested through one epoll instance."""

    protocol = Proto.TCP

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deliver: Deliver | None = None
        # fd -> (key, socket) of every attempt in flight.
        self._pending: dict[int, tuple[object, _RawSocket]] = {}
        self._epoll: select.epoll | None = None
        self._register: Callable[[int, int], None] | None = None  # the epoll's, while open
        # Early reads of SO_ERROR (see the module's rules): on while credit lasts.
        self._eager = True
        self._credit = EAGER_CREDIT
        self._dormant = 0  # sends until the next trial while early reads are off
        # family -> a socket whose connect failed, to connect again (see the rules).
        self._spares: dict[int, _RawSocket] = {}

    def open(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        self._loop, self._deliver = loop, deliver
        if hasattr(select, "epoll"):
            self._epoll = select.epoll()
            self._register = self._epoll.register
            loop.add_reader(self._epoll.fileno(), self.flush)

    def send(self, key: object, family: int, address: str, port: int) -> object:
        sock = self._spares.pop(family, None)
        if sock is None:
            try:
                sock = _RawSocket(family, _STREAM_NONBLOCK)
            except OSError as exc:
                raise Backpressure(exc.errno or errno.EMFILE) from exc
        target = address, port
        err = sock.connect_ex(target)
        if err == _EINPROGRESS:
            if self._eager:
                if CONNECT_AGAIN:
                    err = sock.connect_ex(target)
                    found = err != _EALREADY
                else:
                    err = sock.getsockopt(_SOL_SOCKET, _SO_ERROR)
                    found = err != 0
                if found:
                    if self._credit < EAGER_CREDIT:
                        self._credit += EAGER_HIT
                    answer = _AT_ONCE.get(err)
                    if answer is not None:
                        self._done(family, sock)
                        return answer
                    try:
                        answer = self._finish(sock, err)
                    except Backpressure:
                        sock.close()
                        raise
                    return _OPEN_AT_ONCE if answer is OPEN else answer
                self._credit -= 1
                if self._credit <= 0:
                    self._eager, self._dormant = False, EAGER_TRIAL_EVERY
            else:
                self._dormant -= 1
                if not self._dormant:
                    self._eager, self._credit = True, EAGER_TRIAL
            fd = sock.fileno()
            self._pending[fd] = (key, sock)
            if self._register is not None:
                self._register(fd, _EPOLLOUT)
            else:
                assert self._loop is not None
                self._loop.add_writer(fd, self._on_writable, fd)
            return fd
        if err:
            answer = TCP_ERRNO.get(err)
            if answer is not None:  # failed at once (no route): the socket is as new
                self._done(family, sock)
                return answer
        try:
            return self._finish(sock, err)
        except Backpressure:
            sock.close()
            raise

    def _done(self, family: int, sock: _RawSocket) -> None:
        """Keep ``sock``, whose connect failed, as the spare of ``family`` (see the rules)."""
        if CONNECT_AGAIN and family not in self._spares:
            self._spares[family] = sock
        else:
            sock.close()

    def cancel(self, handle: object) -> None:
        entry = self._pending.pop(handle, None)  # type: ignore[call-overload]
        if entry is not None:
            self._forget(handle, entry[1])  # type: ignore[arg-type]

    def flush(self) -> None:
        if self._epoll is None:
            return
        pending, complete, deliver = self._pending, self._complete, self._deliver
        answers = TCP_ERRNO
        assert deliver is not None
        while True:
            events = self._epoll.poll(0, _BATCH)
            for fd, _ in events:
                entry = pending.pop(fd, None)
                if entry is None:
                    continue
                # A refused or unreachable port (most of a sweep) without _complete's calls;
                # closing the socket drops it from the epoll set.
                sock = entry[1]
                err = sock.getsockopt(_SOL_SOCKET, _SO_ERROR)
                answer = answers.get(err) if err else None
                if answer is None:
                    complete(entry, err)
                else:
                    sock.close()
                    deliver(entry[0], answer)
            if len(events) < _BATCH:
                return

    def reap(self, handle: object) -> Answer | None:
        return None  # flush() has harvested every connect that finished

    def close(self) -> None:
        for fd, entry in list(self._pending.items()):
            self._forget(fd, entry[1])
        self._pending.clear()
        for sock in self._spares.values():
            sock.close()
        self._spares.clear()
        if self._epoll is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
            self._epoll = None
            self._register = None

    def _on_writable(self, fd: int) -> None:
        # The portable path: one loop callback per finished connect.
        assert self._loop is not None
        self._loop.remove_writer(fd)
        entry = self._pending.pop(fd, None)
        if entry is not None:
            self._complete(entry)

    def _complete(self, entry: tuple[object, _RawSocket], err: int | None = None) -> None:
        """Read how a connect ended (unless ``err`` is given) and deliver it (closing the
        socket drops it from epoll)."""
        key, sock = entry
        if err is None:
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
            sock.setsockopt(_SOL_SOCKET, _SO_LINGER, LINGER_RST)
            sock.close()
            if selfconnect:
                raise Backpressure(errno.EADDRINUSE)
            return OPEN
        sock.close()
        return classify_errno(err)
