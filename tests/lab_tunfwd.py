#!/usr/bin/env python3
"""TUN-pair delay forwarder for the portprobe network-namespace test lab.

The lab has no netem, so the "delayed path" between the client and server
namespaces is two TUN devices joined by this process: every packet read from
one TUN is written to the other one ``--delay-ms`` later (each way).

The TUN devices are created *inside* their namespaces: the process enters the
first namespace with setns(2), opens /dev/net/tun (a tun device is created in
the network namespace that was current when /dev/net/tun was opened), then
does the same for the second one.  The devices are non-persistent, so they
vanish when this process exits.  The lab configures addresses afterwards.

Prints ``READY <name-a> <name-b>`` on stdout once both devices exist.  Exits
on SIGTERM/SIGINT, when its parent process dies (it is re-parented), or, with
``--watch-stdin``, when stdin reaches EOF (the parent holds the pipe).
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import fcntl
import os
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000

READ_BATCH = 512  # packets read per wake-up per device, so one side can't starve the other
MAX_QUEUE_BYTES = 64 << 20  # per direction; beyond this packets are tail-dropped like a router
PARENT_CHECK_S = 0.25
MAX_PACKET = 65536

_libc = ctypes.CDLL(None, use_errno=True)


def enter_netns(path: str) -> None:
    """Move the calling thread into the network namespace bound at ``path``."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def open_tun(name: str) -> int:
    """Create a non-persistent IFF_TUN|IFF_NO_PI device ``name``; return its fd."""
    if not name or len(name) > 15:
        raise ValueError(f"bad interface name {name!r}")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        ifr = struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI)
        fcntl.ioctl(fd, TUNSETIFF, ifr)
    except BaseException:
        os.close(fd)
        raise
    return fd


class Direction:
    """One direction of the link: a FIFO of (due_time, packet) from ``src`` to ``dst``.

    The delay is constant, so due times are monotonic in arrival order and a
    deque (rather than a heap) keeps per-direction packet order for free.
    """

    def __init__(self, src: int, dst: int, delay: float) -> None:
        self.src = src
        self.dst = dst
        self.delay = delay
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.queued_bytes = 0
        self.forwarded = 0
        self.dropped = 0

    def read_batch(self) -> None:
        """Read up to READ_BATCH packets from ``src`` and queue them."""
        now = time.monotonic()
        due = now + self.delay
        for _ in range(READ_BATCH):
            try:
                pkt = os.read(self.src, MAX_PACKET)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. EIO while the device is being torn down
            if not pkt:
                return
            if self.queued_bytes + len(pkt) > MAX_QUEUE_BYTES:
                self.dropped += 1
                continue
            self.queue.append((due, pkt))
            self.queued_bytes += len(pkt)

    def flush(self, now: float) -> None:
        """Write every packet whose due time has passed to ``dst``."""
        q = self.queue
        while q and q[0][0] <= now:
            _, pkt = q.popleft()
            self.queued_bytes -= len(pkt)
            try:
                os.write(self.dst, pkt)
                self.forwarded += 1
            except OSError:
                # A TUN write only fails for malformed packets or a downed
                # device; dropping is what a real link would do.
                self.dropped += 1

    def next_due(self) -> float | None:
        """Due time of the oldest queued packet, or None when idle."""
        return self.queue[0][0] if self.queue else None


def run(
    a_netns: str, a_name: str, b_netns: str, b_name: str, delay_ms: float, watch_stdin: bool
) -> int:
    """Create both TUN devices and forward packets between them until told to stop."""
    parent = os.getppid()
    own_ns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        enter_netns(a_netns)
        fd_a = open_tun(a_name)
        enter_netns(b_netns)
        fd_b = open_tun(b_name)
        if _libc.setns(own_ns, CLONE_NEWNET) != 0:  # back home; the fds keep working
            raise OSError(ctypes.get_errno(), "setns(back)")
    finally:
        os.close(own_ns)

    delay = max(0.0, delay_ms) / 1000.0
    a_to_b = Direction(fd_a, fd_b, delay)
    b_to_a = Direction(fd_b, fd_a, delay)
    by_fd = {fd_a: a_to_b, fd_b: b_to_a}

    ep = select.epoll()
    ep.register(fd_a, select.EPOLLIN)
    ep.register(fd_b, select.EPOLLIN)
    if watch_stdin:
        ep.register(0, select.EPOLLIN | select.EPOLLHUP)

    print(f"READY {a_name} {b_name}", flush=True)

    next_parent_check = time.monotonic() + PARENT_CHECK_S
    try:
        while True:
            now = time.monotonic()
            timeout = PARENT_CHECK_S
            for d in (a_to_b, b_to_a):
                due = d.next_due()
                if due is not None:
                    timeout = min(timeout, max(0.0, due - now))
            # Python rounds epoll timeouts up to whole ms, so we never wake early
            # for long; flush() below re-checks the clock anyway.
            for fd, _ev in ep.poll(timeout):
                if fd == 0:
                    if not os.read(0, 4096):
                        return 0  # parent closed the pipe (or died)
                    continue
                by_fd[fd].read_batch()
            now = time.monotonic()
            a_to_b.flush(now)
            b_to_a.flush(now)
            if now >= next_parent_check:
                next_parent_check = now + PARENT_CHECK_S
                if os.getppid() != parent:
                    return 0  # re-parented: whoever started us is gone
    finally:
        print(
            f"tunfwd: a->b forwarded={a_to_b.forwarded} dropped={a_to_b.dropped}; "
            f"b->a forwarded={b_to_a.forwarded} dropped={b_to_a.dropped}",
            file=sys.stderr,
            flush=True,
        )


def _terminate(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a-netns", required=True, help="path of netns A (e.g. /run/netns/NAME)")
    ap.add_argument("--a-name", required=True, help="TUN device name in netns A")
    ap.add_argument("--b-netns", required=True, help="path of netns B")
    ap.add_argument("--b-name", required=True, help="TUN device name in netns B")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay")
    ap.add_argument("--watch-stdin", action="store_true", help="exit when stdin hits EOF")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    return run(
        args.a_netns, args.a_name, args.b_netns, args.b_name, args.delay_ms, args.watch_stdin
    )


if __name__ == "__main__":
    sys.exit(main())
