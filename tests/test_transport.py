"""The TCP errno table, where a finished connect becomes a port state, and the TCP connect
transport on loopback."""

from __future__ import annotations

import asyncio
import errno
import itertools
import socket

import pytest

from scanner.models import PortState, Reason
from scanner.transport import Answer, Backpressure, classify_errno, tcp
from scanner.transport.tcp import TcpConnectTransport


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (0, ("open", "syn-ack")),
        (errno.ECONNRESET, ("open", "syn-ack")),  # accepted, then reset before we looked
        (errno.ECONNREFUSED, ("closed", "conn-refused")),
        (errno.ETIMEDOUT, ("filtered", "no-response")),
        (errno.EHOSTUNREACH, ("filtered", "host-unreach")),
        (errno.ENETUNREACH, ("filtered", "net-unreach")),
        (errno.EACCES, ("filtered", "admin-prohibited")),
        (errno.ENOPROTOOPT, ("filtered", "proto-unreach")),
        (errno.EPROTO, ("filtered", "error")),  # no known meaning: said, not guessed
    ],
)
def test_connect_errnos_map_to_states(err: int, expected: tuple[str, str]) -> None:
    answer = classify_errno(err)
    assert (answer.state.value, answer.reason.value) == expected


@pytest.mark.parametrize(
    "err", [errno.EMFILE, errno.ENFILE, errno.EADDRNOTAVAIL, errno.ENOBUFS, errno.EAGAIN]
)
def test_local_resource_errors_are_backpressure(err: int) -> None:
    with pytest.raises(Backpressure) as caught:
        classify_errno(err)
    assert caught.value.descriptors is (err in (errno.EMFILE, errno.ENFILE))


def _unused_port(family: int, host: str) -> int:
    """A loopback port nothing listens on (bound for a moment, then released)."""
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
)
def test_a_refusal_already_in_when_connect_returns_is_read_at_once_and_measured(
    family: int, host: str
) -> None:
    # On loopback the RST is taken in as connect() returns EINPROGRESS: SO_ERROR has it.
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6")
    transport = TcpConnectTransport()
    answers = [transport.send(n, family, host, _unused_port(family, host)) for n in range(20)]
    assert all(isinstance(a, Answer) for a in answers)
    assert {(a.state, a.reason, a.measured) for a in answers} == {  # type: ignore[union-attr]
        (PortState.CLOSED, Reason.CONN_REFUSED, True)
    }
    transport.close()


def test_an_open_loopback_port_is_read_at_once() -> None:
    # Connected before connect() returns: read at once like a refusal (Linux: the second
    # connect() returns 0), otherwise harvested from epoll.
    delivered: list[tuple[object, Answer | None]] = []

    async def scan(port: int) -> object:
        transport = TcpConnectTransport()
        transport.open(
            asyncio.get_running_loop(), lambda key, answer: delivered.append((key, answer))
        )
        try:
            handle = transport.send("key", socket.AF_INET, "127.0.0.1", port)
            for _ in range(100):
                if delivered or isinstance(handle, Answer):
                    break
                await asyncio.sleep(0.01)
            return handle
        finally:
            transport.close()

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        handle = asyncio.run(scan(server.getsockname()[1]))
    if tcp.CONNECT_AGAIN:
        assert isinstance(handle, Answer)
        assert (handle.state, handle.reason, handle.measured) == (
            PortState.OPEN,
            Reason.SYN_ACK,
            True,
        )
        assert delivered == []
    else:
        assert not isinstance(handle, Answer)
        assert delivered == [("key", tcp.OPEN)]


class _CountedSocket(tcp._RawSocket):  # type: ignore[misc,name-defined]
    """The real socket type, counting how many are made."""

    made = 0

    def __init__(self, family: int, kind: int) -> None:
        super().__init__(family, kind)
        _CountedSocket.made += 1


@pytest.mark.skipif(not tcp.CONNECT_AGAIN, reason="Linux only: a failed socket connects again")
def test_a_refused_socket_is_used_again_and_still_tells_each_port_right(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tcp, "_RawSocket", _CountedSocket)
    _CountedSocket.made = 0
    transport = TcpConnectTransport()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        listening = server.getsockname()[1]
        closed = [_unused_port(socket.AF_INET, "127.0.0.1") for _ in range(5)]
        ports = [*closed[:3], listening, *closed[3:], listening, closed[0]]
        answers = [transport.send(n, socket.AF_INET, "127.0.0.1", p) for n, p in enumerate(ports)]
    transport.close()
    assert [a.state for a in answers] == [  # type: ignore[union-attr]
        PortState.OPEN if p == listening else PortState.CLOSED for p in ports
    ]
    # One socket for the three refusals and the open port, one after each open port (an open
    # port's socket is closed with a RST), and none after the last refusals.
    assert _CountedSocket.made == 3


class _UnroutedSocket:
    """A socket whose connect fails at once: no route."""

    made = 0

    def __init__(self, family: int, kind: int) -> None:
        _UnroutedSocket.made += 1

    def connect_ex(self, address: tuple[str, int]) -> int:
        return errno.ENETUNREACH

    def close(self) -> None:
        pass


def test_a_socket_whose_connect_failed_at_once_is_used_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tcp, "_RawSocket", _UnroutedSocket)
    _UnroutedSocket.made = 0
    transport = TcpConnectTransport()
    answers = [transport.send(n, socket.AF_INET, "198.18.0.2", 80 + n) for n in range(10)]
    transport.close()
    assert {(a.state, a.reason) for a in answers} == {  # type: ignore[union-attr]
        (PortState.FILTERED, Reason.NET_UNREACH)
    }
    assert _UnroutedSocket.made == (1 if tcp.CONNECT_AGAIN else 10)


class _PendingSocket:
    """A socket whose connect is always in progress with nothing read yet (a remote link)."""

    reads = 0
    _fds = itertools.count(10_000)

    def __init__(self, family: int, kind: int) -> None:
        self._fd = next(self._fds)
        self._connecting = False

    def connect_ex(self, address: tuple[str, int]) -> int:
        if self._connecting:  # connect() again: the read of tcp.CONNECT_AGAIN
            _PendingSocket.reads += 1
            return errno.EALREADY
        self._connecting = True
        return errno.EINPROGRESS

    def getsockopt(self, level: int, option: int) -> int:
        _PendingSocket.reads += 1
        return 0

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        pass


def test_early_reads_stop_where_they_find_nothing_and_are_tried_again_now_and_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tcp, "_RawSocket", _PendingSocket)
    transport = TcpConnectTransport()
    registered: list[int] = []
    transport._register = lambda fd, events: registered.append(fd)  # (no epoll: a fake fd)

    def reads_over(sends: int) -> int:
        before = _PendingSocket.reads
        for n in range(sends):
            transport.send(n, socket.AF_INET, "198.18.0.2", 80)
        return _PendingSocket.reads - before

    assert reads_over(tcp.EAGER_CREDIT) == tcp.EAGER_CREDIT  # each read found nothing
    assert reads_over(tcp.EAGER_TRIAL_EVERY - 1) == 0  # off: no read at all
    assert reads_over(1 + tcp.EAGER_TRIAL + 100) == tcp.EAGER_TRIAL  # one trial, then off
    assert len(registered) == tcp.EAGER_CREDIT + tcp.EAGER_TRIAL_EVERY + tcp.EAGER_TRIAL + 100
    transport._pending.clear()
